"""Parse particle poses from a RELION .star or cryoSPARC .cs file into a cryoDRGN poses pickle.

Writes (rotations N x 3 x 3, translations N x 2 as a fraction of the box), as cryoDRGN's
parse_pose_star / parse_pose_csparc do. The box size comes from the file (or its first
stack) where -D is not given.
"""
from __future__ import annotations


def add_args(parser):
    parser.add_argument("input", help="RELION .star or cryoSPARC .cs file")
    parser.add_argument("-o", "--output", required=True, help="output poses .pkl")
    parser.add_argument("-D", type=int, help="box size in pixels (needed if the file lacks it)")
    parser.add_argument("--apix", type=float,
                        help="pixel size in A (needed for origins in A if the file lacks it)")
    parser.add_argument("--datadir", help="folder with the stacks (to read the box size from "
                                          "the first stack when the file lacks it)")


def main(args):
    from pathlib import Path

    from cryoscape.core.errors import InputFileError
    from cryoscape.core.io.cryodrgn import save_poses
    from cryoscape.core.io.stack import common_value

    path = Path(args.input)
    if path.suffix.lower() == ".star":
        from cryoscape.core.io.stack import star_box_or_stack
        from cryoscape.core.io.star import read_star, star_poses
        star = read_star(path)
        D = args.D or star_box_or_stack(star, args.datadir)
        if D is None:
            raise InputFileError(path, "box size unknown (no rlnImageSize, no stack to read it "
                                       "from): give -D")
        R, shifts = star_poses(star, D=D, apix=args.apix)
    elif path.suffix.lower() == ".cs":
        from cryoscape.core.io.cs import cs_box, cs_poses, read_cs
        arr = read_cs(path)
        D = args.D or common_value(cs_box(arr), "box size", path)
        if D is None:
            raise InputFileError(path, "box size unknown (no blob/shape): give -D")
        R, shifts = cs_poses(arr, D=D, path=path)
    else:
        raise InputFileError(path, "expected a .star or .cs file")
    save_poses(args.output, R, shifts, D)
    print(f"{args.output}: poses of {len(R)} particles (box {D})")
    return 0
