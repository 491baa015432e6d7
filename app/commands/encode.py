"""Encode new particle images with a trained run: their latent posterior means as z.npy.

Images are preprocessed as the run's training images were (same box, normalisation); their
translations (from --poses or the .star/.cs) centre them and their CTF phase-flips them. A run
trained on tilt pairs encodes each particle from both its images: give the tilt stack (--tilt,
the same particles in the same order, centred by the particles' shifts).
"""
from __future__ import annotations

from cryoscape.app.commands._common import add_pose_ctf_args, check_outputs, positive_int


def add_args(parser):
    parser.add_argument("run", help="run directory (cryoscape or cryoDRGN)")
    parser.add_argument("particles", help="particle stack (.mrcs/.txt/.star/.cs)")
    parser.add_argument("-o", "--output", required=True, help="output .npy of [N, zdim] means")
    add_pose_ctf_args(parser)
    parser.add_argument("--tilt", metavar="TILT_STACK",
                        help="the particles' tilted images, for a run trained on tilt pairs")
    parser.add_argument("--ind", help="index .pkl of the particles to encode (and of TILT_STACK)")
    parser.add_argument("--datadir", help="folder of the stacks a .star/.cs refers to")
    parser.add_argument("--epoch", type=int, help="weights of this epoch (default: final)")
    parser.add_argument("--logvar", help="also write the log-variances to this .npy")
    parser.add_argument("-b", "--batch-size", type=positive_int, default=256, help="(default: 256)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")


def main(args):
    import numpy as np
    from cryoscape.core.io.atomic import atomic_open
    from cryoscape.core.run import Run

    check_outputs([args.output, args.logvar],
                  [args.particles, args.poses, args.ctf, args.ind, args.tilt])
    mu, logvar = Run.open(args.run).posterior(
        args.particles, args.epoch, args.batch_size, poses=args.poses, ctf=args.ctf,
        ind=args.ind, datadir=args.datadir, device=args.device, tilt=args.tilt)
    for path, arr in ((args.output, mu), (args.logvar, logvar)):
        if path:
            with atomic_open(path, "wb") as f:
                np.save(f, arr)
    print(f"cryoscape encode: {len(mu)} images -> {args.output} (zdim {mu.shape[1]})")
    return 0
