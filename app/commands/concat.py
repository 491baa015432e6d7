"""Concatenate image stacks, .star files or cryoDRGN pickles (one kind), in the order given.

Stacks (.mrcs/.mrc): the images one after another (streamed). STAR: the particles, identical
optics groups merged and the others renumbered, image names rewritten where needed so that the
stacks are found from the output's folder. Pickles: poses, CTF parameters or latents (mu and
logvar) concatenated (as cryoDRGN's concat_pkls); index pickles of one particle file are
joined as the union of their selections. Boxes and pixel sizes must agree.
"""
from __future__ import annotations

STACK_SUFFIXES = (".mrcs", ".mrc")


def add_args(parser):
    parser.add_argument("inputs", nargs="+", metavar="FILE",
                        help="two or more .mrcs stacks, .star files or .pkl pickles")
    parser.add_argument("-o", "--output", required=True, help="output of the same kind")


def _kind(path) -> str | None:
    from pathlib import Path

    suffix = Path(path).suffix.lower()
    return "stack" if suffix in STACK_SUFFIXES else {".star": "star", ".pkl": "pickle"}.get(suffix)


def main(args):
    from cryoscape.app.commands._common import check_outputs
    from cryoscape.core.errors import CryoscapeError, InputFileError
    from cryoscape.core.io import concat

    inputs, out = args.inputs, args.output
    if len(inputs) < 2:
        raise CryoscapeError("give at least two files to concatenate")
    kinds = [_kind(p) for p in inputs]
    for p, k in zip(inputs, kinds):
        if k is None:
            raise InputFileError(p, "expected an .mrcs stack, a .star file or a .pkl pickle")
        if k != kinds[0]:
            raise InputFileError(p, f"is a {k}, {inputs[0]} a {kinds[0]}: concatenate files of "
                                    "one kind")
    if _kind(out) != kinds[0]:
        raise CryoscapeError(f"{out}: the output must be a {kinds[0]} like the inputs")
    check_outputs([out], inputs)
    if kinds[0] == "stack":
        n, D, apix = concat.concat_stacks(inputs, out)
        print(f"{out}: {n} images of {D} px at {apix:.4g} A/px from {len(inputs)} stacks")
    elif kinds[0] == "star":
        from cryoscape.core.io.star import write_star
        star = concat.concat_stars(inputs, out)
        write_star(out, star)
        groups = "" if star.optics is None else f", {len(star.optics)} optics group(s)"
        print(f"{out}: {len(star)} particles from {len(inputs)} files{groups}")
    else:
        kind, n = concat.concat_pickles(inputs, out)
        how = "union of the selections" if kind == "index" else "concatenated"
        print(f"{out}: {kind} of {n} particles ({how}) from {len(inputs)} files")
    return 0
