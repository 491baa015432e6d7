"""Select particles by k-means cluster, a polygon on the embedding, or latent outliers.

The output's extension chooses the format: .pkl (cryoDRGN index pickle), .star (the run's
particle .star filtered, every column and the optics table kept), .cs (the run's .cs
filtered, same fields, plus a .csg for cryoSPARC), .mrcs (the selected images). Indices refer
to the run's particle file (through its training index, if it had one).
"""
from __future__ import annotations


def add_args(parser):
    parser.add_argument("run", help="run directory (cryoscape or cryoDRGN)")
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--cluster", type=int, nargs="+", metavar="K",
                     help="k-means cluster numbers (0-based, as in `analyze`)")
    how.add_argument("--polygon", metavar="FILE",
                     help="polygon vertices (text: x y per line, or JSON) on the embedding")
    how.add_argument("--outliers", type=float, metavar="S",
                     help="particles whose |z - mean| is S standard deviations above average")
    parser.add_argument("--k", type=int, default=20, help="k-means clusters (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="k-means/UMAP seed (default 0)")
    parser.add_argument("--embedding", choices=("pca", "umap"), default="pca",
                        help="embedding the polygon is drawn on (default pca)")
    parser.add_argument("--invert", action="store_true", help="take the other particles")
    parser.add_argument("--epoch", type=int, help="epoch (default: the latest)")
    parser.add_argument("--particles", help="particle file (default: the run's)")
    parser.add_argument("--ind", help="the run's training index pickle, if not found")
    parser.add_argument("--datadir", help="folder of the images (for .mrcs output)")
    parser.add_argument("--labels", action="store_true",
                        help=".star: write k-means labels as rlnClassNumber (1-based)")
    parser.add_argument("-o", "--output", required=True,
                        help="subset file: .pkl, .star, .cs or .mrcs")


def main(args):
    from pathlib import Path

    import numpy as np
    from cryoscape.app.commands._common import check_outputs
    from cryoscape.core.analysis import sampling, selection
    from cryoscape.core.analysis.report import resolve_epoch
    from cryoscape.core.errors import CryoscapeError
    from cryoscape.core.export import SUBSET_FORMATS
    from cryoscape.core.run import Run

    out = Path(args.output)
    if out.suffix.lower() not in SUBSET_FORMATS:
        raise CryoscapeError(f"{out}: output must end in {', '.join(SUBSET_FORMATS)}")
    run = Run.open(args.run)
    check_outputs([out], [args.particles, run.particles_path, args.ind, args.polygon])
    epoch = resolve_epoch(run, args.epoch)
    z = np.asarray(run.latents(epoch))
    km = None
    if args.cluster is not None or args.labels:
        km = sampling.kmeans(z, k=args.k, seed=args.seed)
    if args.cluster is not None:
        sel = selection.by_cluster(km.labels, args.cluster)
    elif args.polygon is not None:
        poly = selection.load_polygon(args.polygon)
        sel = selection.in_polygon(_embedding(run, z, epoch, args, out), poly)
    else:
        sel = selection.outliers(z, args.outliers)
    if args.invert:
        sel = selection.invert(sel, len(z))
    print(f"select: {len(sel)} of {len(z)} particles")
    if not len(sel):
        raise CryoscapeError("the selection is empty; nothing written")
    labels = km.labels[sel] if args.labels else None
    try:
        selection.export_selection(run, sel, out, particles=args.particles, ind=args.ind,
                                   labels=labels, datadir=args.datadir)
    except OSError as e:
        raise CryoscapeError(f"{out}: cannot write ({e.strerror or e})") from None
    print(f"select: wrote {out}")
    return 0


def _embedding(run, z, epoch, args, out):
    from cryoscape.core.analysis import embed
    from cryoscape.core.analysis.cache import analysis_cache_dir

    if args.embedding == "pca":
        return embed.pca(z, 2).coords
    return embed.umap_embedding(z, cache_dir=analysis_cache_dir(run), epoch=epoch,
                                seed=args.seed)
