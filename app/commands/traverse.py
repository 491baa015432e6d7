"""Maps along a path in latent space: a principal component, or through chosen particles.

--pc I: from the 5th to the 95th percentile of PC I (other PCs at the mean).
--path I J ...: through the latents of particles I, J, ... (row numbers of the run's
latents): straight segments, or with --graph the shortest path through the data on a
k-nearest-neighbour graph, so that it stays where particles are.
"""
from __future__ import annotations

from cryoscape.app.commands._common import positive_int


def add_args(parser):
    parser.add_argument("run", help="run directory (cryoscape or cryoDRGN)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--pc", type=int, help="principal component (1-based)")
    what.add_argument("--path", type=int, nargs="+", metavar="I",
                      help="particles (latent rows) to pass through, in order")
    parser.add_argument("--graph", action="store_true",
                        help="with --path: follow the data (kNN-graph shortest path)")
    parser.add_argument("--neighbors", type=int, default=10,
                        help="k of the kNN graph (default 10)")
    parser.add_argument("-n", type=positive_int, default=10, help="number of maps (default 10)")
    parser.add_argument("--lo", type=float, default=5.0, help="with --pc: start percentile")
    parser.add_argument("--hi", type=float, default=95.0, help="with --pc: end percentile")
    parser.add_argument("--epoch", type=int, help="epoch (default: the latest)")
    parser.add_argument("-D", "--box", type=int, dest="D", help="decode at this box size")
    parser.add_argument("-o", "--outdir", required=True, help="folder for the maps")


def main(args):
    from cryoscape.app.commands._common import check_outputs
    from cryoscape.core.analysis import trajectory
    from cryoscape.core.analysis.maps import write_maps
    from cryoscape.core.analysis.report import resolve_epoch
    from cryoscape.core.errors import CryoscapeError
    from cryoscape.core.run import Run

    if args.graph and args.path is None:
        raise CryoscapeError("--graph goes with --path")
    check_outputs([args.outdir], folder=True)
    run = Run.open(args.run)
    epoch = resolve_epoch(run, args.epoch)
    z = run.latents(epoch)
    if args.pc is not None:
        zs, _ = trajectory.pc_traversal(z, pc=args.pc, n=args.n, lo=args.lo, hi=args.hi)
    else:
        zs = trajectory.path_through(z, args.path, n=args.n, graph=args.graph,
                                     k=args.neighbors)
    series = write_maps(run, zs, args.outdir, D=args.D, epoch=epoch, desc="traversal")
    print(f"traverse: {len(series.paths)} maps in {args.outdir}; ChimeraX: {series.cxc}")
    return 0
