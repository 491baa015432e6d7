"""Per-image fit under a trained run: reconstruction error and KL of every image, outliers flagged.

As cryoDRGN's eval_images: each image is encoded and compared with the decoder's slice at its
posterior mean z, with its pose and CTF, through training's own loss. Poses and CTF come from
--poses/--ctf, else the .star/.cs, else the files the run was trained with, else (an ab initio
run) the poses the run found. Without PARTICLES, the run's own training images. Images whose
error exceeds median + K x 1.4826 MAD (--k, default 3) are flagged as likely junk. Writes -o
(.npz: arrays index, mse, kl, flagged, threshold, k; or .csv; default RUN/eval_images.EPOCH.npz,
where the explorer finds it) and a histogram beside it (_hist.png). A run trained on tilt pairs
takes the tilt stack (--tilt): each particle's error is then the mean over its two images.
"""
from __future__ import annotations

from cryoscape.app.commands._common import add_pose_ctf_args, positive_float, positive_int


def add_args(parser):
    parser.add_argument("run", help="run directory (cryoscape or cryoDRGN)")
    parser.add_argument("particles", nargs="?",
                        help="particle stack (.mrcs/.txt/.star/.cs; default: the run's own)")
    parser.add_argument("-o", "--output", help="per-image table (.npz or .csv; default "
                                               "RUN/eval_images.EPOCH.npz)")
    add_pose_ctf_args(parser, "from the .star/.cs, else the run's (recorded or found)")
    parser.add_argument("--tilt", metavar="TILT_STACK",
                        help="the particles' tilted images, for a run trained on tilt pairs")
    parser.add_argument("--ind", help="index .pkl of the particles to evaluate (and of "
                                      "TILT_STACK)")
    parser.add_argument("--datadir", help="folder of the stacks a .star/.cs refers to")
    parser.add_argument("--epoch", type=int, help="weights of this epoch (default: final)")
    parser.add_argument("--k", type=positive_float, default=3.0,
                        help="outliers: error above median + K x 1.4826 MAD (default 3)")
    parser.add_argument("-b", "--batch-size", type=positive_int, default=256,
                        help="(default: 256)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")


def main(args):
    from pathlib import Path

    import numpy as np
    from cryoscape.app.commands._common import check_outputs
    from cryoscape.core.analysis.fit import default_fit_path, evaluate_images, plot_fit, write_fit
    from cryoscape.core.errors import InputFileError
    from cryoscape.core.run import Run

    run = Run.open(args.run)
    out = Path(args.output) if args.output else default_fit_path(run, args.epoch)
    if out.suffix.lower() not in (".npz", ".csv"):
        raise InputFileError(out, "the output must be a .npz or a .csv file")
    hist = out.with_name(out.stem + "_hist.png")
    check_outputs([out, hist], [args.particles, args.poses, args.ctf, args.ind, args.tilt])
    fit = evaluate_images(run, args.particles, poses=args.poses, ctf=args.ctf,
                          ind=args.ind, datadir=args.datadir, epoch=args.epoch,
                          batch_size=args.batch_size, k=args.k, device=args.device,
                          progress=True, tilt=args.tilt)
    write_fit(fit, out)
    plot_fit(fit, hist)
    print(f"cryoscape eval-images: {len(fit.mse)} images, median error "
          f"{float(np.median(fit.mse)):.4g}; {int(fit.flagged.sum())} flagged ({fit.rule}) "
          f"-> {out}, {hist.name}")
    return 0
