"""Render a trajectory through the latent space as a GIF or MP4 movie of isosurfaces.

Examples:
  cryoscape movie RUN --path 12 480 -o path.mp4            # straight line between particles
  cryoscape movie RUN --path 12 77 480 --through-data -o path.gif
  cryoscape movie RUN --pc 1 -n 30 -o pc1.gif              # along the first principal component
Needs an X server for OpenGL (use xvfb-run on a headless machine).
"""
from __future__ import annotations


def add_args(parser):
    parser.add_argument("run", help="run directory (cryoscape or cryoDRGN)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--path", type=int, nargs="+", metavar="I",
                      help="particles the trajectory visits (two or more)")
    what.add_argument("--pc", type=int, metavar="K", help="traverse principal component K")
    parser.add_argument("--through-data", action="store_true",
                        help="follow the nearest-neighbour graph instead of straight lines")
    parser.add_argument("-o", "--out", required=True, help="output .gif or .mp4")
    parser.add_argument("-n", "--frames", type=int, default=20, help="number of frames")
    parser.add_argument("--epoch", type=int, help="epoch (default: the last)")
    parser.add_argument("--threshold", type=float, default=2.0,
                        help="isosurface level in standard deviations")
    parser.add_argument("-D", "--box", type=int, help="decode at this box (default: training box)")
    parser.add_argument("--fps", type=float, default=8.0, help="frames per second")
    parser.add_argument("--size", type=int, default=480, help="frame width and height (px)")


def main(args):
    from cryoscape.app.commands._common import check_outputs
    from cryoscape.app.gui.app import application
    from cryoscape.app.gui.visuals.movie import movie_path, render_trajectory
    from cryoscape.core.analysis.trajectory import path_through, pc_traversal
    from cryoscape.core.errors import CryoscapeError
    from cryoscape.core.run import Run

    check_outputs([movie_path(args.out)])
    run = Run.open(args.run)
    if not run.zdim:
        raise CryoscapeError(f"{args.run}: a homogeneous run (zdim 0) has no latent space to "
                             "traverse (write its map with `cryoscape eval-vol`)")
    z = run.latents(args.epoch)
    if args.pc is not None:
        path, _ = pc_traversal(z, pc=args.pc, n=args.frames)
    else:
        path = path_through(z, args.path, n=args.frames, graph=args.through_data)
    app = application()
    out = render_trajectory(run, path, args.out, sigma=args.threshold, D=args.box,
                            epoch=args.epoch, fps=args.fps, size=(args.size, args.size))
    app.processEvents()
    print(f"wrote {out} ({args.frames} frames)")
    return 0
