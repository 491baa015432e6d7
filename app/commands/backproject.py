"""Reconstruct a map from particles with known poses (and CTF) by voxel backprojection.

PARTICLES is a .mrcs/.mrc stack, a .txt list of stacks, a RELION .star or a cryoSPARC .cs
file; poses and CTF come from the .star/.cs unless cryoDRGN pickles are given. Images are
taken in RELION's contrast (protein white). Writes OUT.mrc, the half-maps OUT_half1.mrc and
OUT_half2.mrc (even/odd images), their FSC curve OUT_fsc.txt and plot OUT_fsc.png, and
prints the half-map resolution.
"""
from __future__ import annotations

from cryoscape.app.commands._common import (
    add_pose_ctf_args,
    check_outputs,
    positive_float,
    positive_int,
)


def _reg(value: str):
    if value == "auto":
        return value
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"--reg must be 'auto' or a number, got {value!r}") from None


def add_args(parser):
    parser.add_argument("particles", help="particles: .mrcs, .mrc, .txt, .star or .cs")
    parser.add_argument("-o", "--output", required=True, help="output map (.mrc)")
    add_pose_ctf_args(parser)
    parser.add_argument("--no-ctf", action="store_true", help="ignore the CTF")
    parser.add_argument("--ind", help="index .pkl: backproject only these particles")
    parser.add_argument("--datadir", help="folder of the stacks a .star/.cs refers to")
    parser.add_argument("--lazy", action="store_true",
                        help="read images from disk chunk by chunk (for large stacks)")
    parser.add_argument("--no-half-maps", action="store_true",
                        help="skip writing half-maps and their FSC")
    parser.add_argument("--split", choices=("evenodd", "random"), default="evenodd",
                        help="how images are split into half-maps (default: evenodd)")
    parser.add_argument("--reg", type=_reg, default="auto",
                        help="Wiener regularisation: 'auto' (from the half-map FSC, default) "
                             "or a fraction of the mean weight")
    parser.add_argument("--invert", action="store_true",
                        help="negate the images (protein-black data; cryoDRGN's "
                             "backproject_voxel does this by default)")
    parser.add_argument("--apix", type=positive_float,
                        help="pixel size in A (default: from the data)")
    parser.add_argument("--batch-size", type=positive_int, default=256, help="images per chunk")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")


def main(args):
    from pathlib import Path

    from cryoscape.core.backproject import backproject
    from cryoscape.core.errors import CryoscapeError
    from cryoscape.core.io.mrc import write_mrc
    from cryoscape.core.io.particles import load_particles
    from cryoscape.core.metrics import format_resolution, plot_fsc, save_fsc

    out = Path(args.output)
    if out.suffix.lower() != ".mrc":
        raise CryoscapeError(f"{out}: the output map must be a .mrc file")
    particles = load_particles(args.particles, poses=args.poses,
                               ctf=None if args.no_ctf else args.ctf, ind=args.ind,
                               datadir=args.datadir, lazy=args.lazy, need_poses=True)
    stem = out.with_suffix("")
    extra = [] if args.no_half_maps else [f"{stem}_half1.mrc", f"{stem}_half2.mrc",
                                          f"{stem}_fsc.txt", f"{stem}_fsc.png"]
    check_outputs([out, *extra], [args.particles, args.poses, args.ctf, args.ind,
                                  *particles.images.stacks])
    if args.no_ctf:
        particles.ctf = None
    if args.apix:
        particles.apix = args.apix
    print(f"backprojecting {len(particles)} images of {particles.D} px at "
          f"{particles.apix:g} A/px ({'with' if particles.ctf is not None else 'no'} CTF, "
          f"{'with' if particles.shifts is not None else 'no'} shifts)")
    rec = backproject(particles, half_maps=not args.no_half_maps, reg=args.reg,
                      split=args.split, chunk=args.batch_size, device=args.device,
                      invert=args.invert)
    write_mrc(out, rec.volume, apix=rec.apix)
    print(f"wrote {out}")
    if rec.fsc is None:
        if not args.no_half_maps:
            print("half-maps skipped: too few images")
        return 0
    write_mrc(f"{stem}_half1.mrc", rec.half1, apix=rec.apix)
    write_mrc(f"{stem}_half2.mrc", rec.half2, apix=rec.apix)
    save_fsc(f"{stem}_fsc.txt", *rec.fsc)
    plot_fsc(f"{stem}_fsc.png", rec.fsc[0], {"half-maps": rec.fsc[1]}, rec.apix,
             title=f"{out.name}: half-map FSC ({rec.n_images} images)")
    print(f"wrote {stem}_half1.mrc, {stem}_half2.mrc, {stem}_fsc.txt, {stem}_fsc.png")
    print("half-map " + format_resolution(*rec.fsc, rec.apix).replace("\n", "\nhalf-map "))
    return 0
