"""Fourier shell correlation between two maps, with the FSC = 0.5 and 0.143 resolutions.

Shells as cryoDRGN computes them (shell i holds 1/px frequencies i-1 <= r < i of a D box,
reported at i/D). Prints cryoDRGN's resolution (the highest frequency at or above the
threshold) and the first crossing. The curve file has cryoDRGN's format (`pixres fsc`).
"""
from __future__ import annotations


def add_args(parser):
    parser.add_argument("volumes", nargs=2, metavar="MAP", help="two .mrc maps of one size")
    parser.add_argument("--mask", help="real-space mask .mrc applied to both maps first")
    parser.add_argument("--apix", type=float,
                        help="pixel size in A (default: from the first map's header)")
    parser.add_argument("-o", "--output", help="write the curve here (.txt)")
    parser.add_argument("--plot", help="write a plot here (.png)")


def main(args):
    from pathlib import Path

    from cryoscape.app.commands._common import check_outputs
    from cryoscape.core.errors import InputFileError
    from cryoscape.core.io.mrc import read_mrc
    from cryoscape.core.metrics import format_resolution, fsc, plot_fsc, save_fsc

    check_outputs([args.output, args.plot], [*args.volumes, args.mask])
    (a, apix_a), (b, _) = (read_mrc(p) for p in args.volumes)
    for p, v in zip(args.volumes, (a, b)):
        if v.ndim != 3 or len(set(v.shape)) != 1:
            raise InputFileError(p, f"not a cubic map (shape {v.shape})")
    if a.shape != b.shape:
        raise InputFileError(args.volumes[1], f"shape {b.shape} differs from "
                                              f"{args.volumes[0]}'s {a.shape}")
    mask = None
    if args.mask:
        mask, _ = read_mrc(args.mask)
        if mask.shape != a.shape:
            raise InputFileError(args.mask, f"mask shape {mask.shape} differs from the "
                                            f"maps' {a.shape}")
    apix = args.apix or apix_a
    freq, curve = fsc(a, b, mask)
    if args.output:
        save_fsc(args.output, freq, curve)
    if args.plot:
        names = " vs ".join(Path(p).name for p in args.volumes)
        plot_fsc(args.plot, freq, {names: curve}, apix, title=names)
    print(format_resolution(freq, curve, apix))
    return 0
