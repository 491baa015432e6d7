"""Analyse a trained run: PCA/UMAP plots, k-means and PC-traversal maps, an HTML report.

Writes DIR/index.html with PCA and UMAP scatter plots and densities, the loss curve, the maps
at the particles nearest k-means centres and along PC1/PC2 (MRC + ChimeraX .cxc scripts).
UMAP embeddings are cached in RUN/analysis_cache.
"""
from __future__ import annotations

from cryoscape.app.commands._common import positive_int


def add_args(parser):
    parser.add_argument("run", help="run directory (cryoscape or cryoDRGN)")
    parser.add_argument("--epoch", type=int, help="epoch to analyse (default: the latest)")
    parser.add_argument("--k", type=positive_int, default=20,
                        help="k-means clusters (default 20)")
    parser.add_argument("--skip-umap", action="store_true", help="no UMAP (it is slow)")
    parser.add_argument("-D", "--box", type=int, dest="D",
                        help="decode maps at this box size (default: the run's)")
    parser.add_argument("-n", "--n-traverse", type=positive_int, default=10,
                        help="maps per PC traversal (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (k-means, UMAP)")
    parser.add_argument("-o", "--outdir", help="report folder (default RUN/analyze.EPOCH)")


def main(args):
    from pathlib import Path

    from cryoscape.app.commands._common import check_outputs
    from cryoscape.core.analysis.report import analyze, resolve_epoch
    from cryoscape.core.run import Run

    run = Run.open(args.run)
    epoch = resolve_epoch(run, args.epoch)
    out = args.outdir or Path(run.path) / f"analyze.{epoch if epoch is not None else 'final'}"
    check_outputs([out], folder=True)
    analyze(run, out, epoch=epoch, k=args.k, skip_umap=args.skip_umap, D=args.D,
            n_traverse=args.n_traverse, seed=args.seed)
    return 0
