"""Options and input handling several commands share (not a command: the CLI skips modules
whose name starts with '_')."""
from __future__ import annotations

import argparse
import os
from pathlib import Path


def positive_float(value: str) -> float:
    """argparse type: a number > 0 (argparse reports anything else in one line)."""
    try:
        x = float(value)
    except ValueError:
        x = 0.0
    if not x > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {value!r}")
    return x


def positive_int(value: str) -> int:
    """argparse type: a whole number > 0."""
    try:
        x = int(value)
    except ValueError:
        x = 0
    if x < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {value!r}")
    return x


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)  # hard links
    except OSError:
        return False


def check_outputs(outputs, inputs=(), folder: bool = False) -> None:
    """Refuse, before anything is written, outputs that would destroy an input (the same path,
    a link to it) or cannot be made (a file where a folder should be). `outputs`, `inputs`:
    paths (None entries are skipped); `folder`: the outputs are folders."""
    from cryoscape.core.errors import CryoscapeError, InputFileError

    inputs = [Path(i) for i in inputs if i is not None]
    for out in (Path(o) for o in outputs if o is not None):
        for inp in inputs:
            if _same_file(out, inp):
                raise CryoscapeError(f"{out}: the output is the input {inp}; writing it would "
                                     "destroy the input: choose another output name")
        parent = next((p for p in out.absolute().parents if p.exists()), None)
        if parent is not None and not parent.is_dir():
            raise InputFileError(out, f"cannot write: {parent} is a file, not a folder")
        if folder and out.exists() and not out.is_dir():
            raise InputFileError(out, "is a file; the output is a folder")
        if not folder and out.is_dir():
            raise InputFileError(out, "is a folder; the output is a file")


def add_pose_ctf_args(parser, default: str = "from the .star/.cs") -> None:
    """--poses and --ctf: cryoDRGN pickles that replace the poses/CTF of a .star/.cs."""
    parser.add_argument("--poses", help=f"cryoDRGN poses .pkl (default: {default})")
    parser.add_argument("--ctf", help=f"cryoDRGN CTF .pkl (default: {default})")


def add_metadata_args(parser, output: str, apix_help: str) -> None:
    """INPUT (.star/.cs), -o OUTPUT and the fallbacks -D, --apix and --datadir of the
    parse-* commands."""
    parser.add_argument("input", help="RELION .star or cryoSPARC .cs file")
    parser.add_argument("-o", "--output", required=True, help=output)
    parser.add_argument("-D", type=positive_int,
                        help="box size in pixels (if the file lacks it)")
    parser.add_argument("--apix", type=positive_float, help=apix_help)
    parser.add_argument("--datadir", help="folder with the stacks (to read the box size from "
                                          "the first stack when the file lacks it)")


def read_metadata(args):
    """The parse-* input: ("star", StarFile, box size or None) or ("cs", array, -D).

    A .star's box size is -D, else its rlnImageSize, else its first stack's."""
    from cryoscape.core.errors import InputFileError
    path = Path(args.input)
    check_outputs([args.output], [path])
    if path.suffix.lower() == ".star":
        from cryoscape.core.io.stack import star_box_or_stack
        from cryoscape.core.io.star import read_star
        star = read_star(path)
        return "star", star, args.D if args.D is not None else \
            star_box_or_stack(star, args.datadir)
    if path.suffix.lower() == ".cs":
        from cryoscape.core.io.cs import read_cs
        return "cs", read_cs(path), args.D
    raise InputFileError(path, "expected a .star or .cs file")
