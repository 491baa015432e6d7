"""Parse particle poses from a RELION .star or cryoSPARC .cs file into a cryoDRGN poses pickle.

Writes (rotations N x 3 x 3, translations N x 2 as a fraction of the box), as cryoDRGN's
parse_pose_star / parse_pose_csparc do. The box size comes from the file (or its first
stack) where -D is not given.
"""
from __future__ import annotations

from cryoscape.app.commands._common import add_metadata_args, read_metadata


def add_args(parser):
    add_metadata_args(parser, "output poses .pkl",
                      "pixel size in A (needed for origins in A if the file lacks it)")


def main(args):
    from cryoscape.core.errors import InputFileError
    from cryoscape.core.io.cryodrgn import save_poses

    kind, meta, D = read_metadata(args)
    if kind == "star":
        from cryoscape.core.io.star import star_poses
        if D is None:
            raise InputFileError(args.input, "box size unknown (no rlnImageSize, no stack to "
                                             "read it from): give -D")
        R, shifts = star_poses(meta, D=D, apix=args.apix)
    else:
        from cryoscape.core.io.cs import cs_box, cs_poses
        from cryoscape.core.io.stack import common_value
        D = D or common_value(cs_box(meta), "box size", args.input)
        if D is None:
            raise InputFileError(args.input, "box size unknown (no blob/shape): give -D")
        R, shifts = cs_poses(meta, D=D, path=args.input)
    save_poses(args.output, R, shifts, D)
    print(f"{args.output}: poses of {len(R)} particles (box {D})")
    return 0
