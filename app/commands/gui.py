"""Open the desktop explorer (optionally on a run); or script a screenshot or movie of a run.

Examples:
  cryoscape gui                                   # empty window: open or train a run
  cryoscape gui RUN                               # explore a cryoscape or cryoDRGN run
  cryoscape gui RUN --screenshot fig.png --particle 12 --threshold 2.5
  cryoscape gui RUN --movie path.gif --path 12 480
The scripted forms need an X server (e.g. xvfb-run) for OpenGL; they save and exit.
"""
from __future__ import annotations


def add_args(parser):
    parser.add_argument("run", nargs="?", help="run directory (cryoscape or cryoDRGN)")
    parser.add_argument("--epoch", type=int, help="epoch to show (default: the last)")
    parser.add_argument("--screenshot", metavar="OUT.png",
                        help="save the window with a decoded volume as PNG and exit")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--z", type=float, nargs="+", help="latent vector to decode")
    where.add_argument("--particle", type=int, metavar="I", help="decode particle I's z")
    parser.add_argument("--threshold", type=float, default=None, metavar="S",
                        help="isosurface level in standard deviations (default 2)")
    parser.add_argument("--movie", metavar="OUT.gif",
                        help="render a trajectory as GIF/MP4 and exit (with --path)")
    parser.add_argument("--path", type=int, nargs="+", metavar="I",
                        help="particles the trajectory visits (two or more)")
    parser.add_argument("-n", "--frames", type=int, default=20, help="frames of the movie")
    parser.add_argument("--umap", action="store_true", help="show the UMAP view")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds to wait for decoding in scripted mode")


def main(args):
    from cryoscape.app.gui.launch import run_gui

    return run_gui(args)
