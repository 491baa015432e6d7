"""Options and input handling several commands share (not a command: the CLI skips modules
whose name starts with '_')."""
from __future__ import annotations

import argparse


def positive_float(value: str) -> float:
    """argparse type: a number > 0 (argparse reports anything else in one line)."""
    try:
        x = float(value)
    except ValueError:
        x = 0.0
    if not x > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {value!r}")
    return x


def add_pose_ctf_args(parser, default: str = "from the .star/.cs") -> None:
    """--poses and --ctf: cryoDRGN pickles that replace the poses/CTF of a .star/.cs."""
    parser.add_argument("--poses", help=f"cryoDRGN poses .pkl (default: {default})")
    parser.add_argument("--ctf", help=f"cryoDRGN CTF .pkl (default: {default})")


def add_metadata_args(parser, output: str, apix_help: str) -> None:
    """INPUT (.star/.cs), -o OUTPUT and the fallbacks -D, --apix and --datadir of the
    parse-* commands."""
    parser.add_argument("input", help="RELION .star or cryoSPARC .cs file")
    parser.add_argument("-o", "--output", required=True, help=output)
    parser.add_argument("-D", type=int, help="box size in pixels (if the file lacks it)")
    parser.add_argument("--apix", type=float, help=apix_help)
    parser.add_argument("--datadir", help="folder with the stacks (to read the box size from "
                                          "the first stack when the file lacks it)")


def read_metadata(args):
    """The parse-* input: ("star", StarFile, box size or None) or ("cs", array, -D).

    A .star's box size is -D, else its rlnImageSize, else its first stack's."""
    from pathlib import Path

    from cryoscape.core.errors import InputFileError
    path = Path(args.input)
    if path.suffix.lower() == ".star":
        from cryoscape.core.io.stack import star_box_or_stack
        from cryoscape.core.io.star import read_star
        star = read_star(path)
        return "star", star, args.D or star_box_or_stack(star, args.datadir)
    if path.suffix.lower() == ".cs":
        from cryoscape.core.io.cs import read_cs
        return "cs", read_cs(path), args.D
    raise InputFileError(path, "expected a .star or .cs file")
