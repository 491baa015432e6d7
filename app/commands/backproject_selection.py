"""Reconstruct a selection classically: backproject its particles into half maps + FSC.

SELECTION is an index pickle of particle-file indices (as `cryoscape select -o X.pkl`
writes). Poses and CTF come from the run's recorded files or the particle file itself;
give them with --poses/--ctf where those are elsewhere.
"""
from __future__ import annotations

from cryoscape.app.commands._common import add_pose_ctf_args, check_outputs


def add_args(parser):
    parser.add_argument("run", help="run directory (cryoscape or cryoDRGN)")
    parser.add_argument("selection", help="index pickle (.pkl) of the selected particles")
    parser.add_argument("--particles", help="particle file (default: the run's)")
    add_pose_ctf_args(parser, "the run's, else from the .star/.cs")
    parser.add_argument("--datadir", help="folder of the images")
    parser.add_argument("-o", "--outdir", required=True, help="folder for maps and FSC")


def main(args):
    from cryoscape.core.analysis.runfiles import load_run_particles
    from cryoscape.core.export import reconstruct_selection
    from cryoscape.core.io.cryodrgn import load_index
    from cryoscape.core.run import Run

    check_outputs([args.outdir], folder=True)
    run = Run.open(args.run)
    ind = load_index(args.selection)
    parts = load_run_particles(run, args.particles, args.poses, args.ctf, args.datadir)
    rec = reconstruct_selection(parts, ind, args.outdir)
    res = rec.resolution(0.143) or {}
    a = res.get("first_crossing_A")
    print(f"backproject-selection: {len(ind)} particles -> {args.outdir}/selection.mrc"
          + (f"; half-map FSC 0.143 at {a:.1f} A" if a else ""))
    return 0
