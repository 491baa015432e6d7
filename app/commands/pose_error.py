"""Pose error of found poses (e.g. ab initio) against ground truth, up to the map's global
rotation, hand and 3D position.

POSES and TRUTH: cryoDRGN pose pickles (shifts as a fraction of the box), RELION .star or
cryoSPARC .cs files. The global rotation is fitted robustly for both hands, the better one kept;
shifts are compared in px after the least-squares 3D offset of the map is removed. Reports the
median and 90th percentile rotation error (degrees), the median squared Frobenius norm
||R_found - R_true||^2 (the paper's Table 1) and the translation error (px).
"""
from __future__ import annotations


def add_args(parser):
    parser.add_argument("poses", help="found poses: .pkl, .star or .cs")
    parser.add_argument("truth", help="true poses: .pkl, .star or .cs")
    parser.add_argument("-D", "--box", type=int, dest="D",
                        help="box size in px (default: from a .star/.cs; needed for two .pkl "
                             "files with shifts)")
    parser.add_argument("--ind", help="index .pkl of the particles POSES covers (a run trained "
                                      "with --ind): TRUTH, or both if equally long, is reduced "
                                      "to them")
    parser.add_argument("-o", "--output", help="write the report here (.json)")


def _load(paths, D):
    """(R, shifts, D) of each file; D from -D, else from whichever .star/.cs file has it."""
    from cryoscape.core.poseerror import read_poses
    order = sorted(range(len(paths)), key=lambda i: paths[i].lower().endswith(".pkl"))
    out = [None] * len(paths)
    for i in order:
        R, shifts, box = read_poses(paths[i], D)
        D = D or box
        out[i] = (R, shifts)
    return out, D


def main(args):
    import json

    import numpy as np
    from cryoscape.core.errors import InputFileError
    from cryoscape.core.io.atomic import atomic_open
    from cryoscape.core.io.cryodrgn import as_index
    from cryoscape.core.poseerror import check_rotations, pose_error, summary

    ((R, t), (R_true, t_true)), D = _load([args.poses, args.truth], args.D)
    if args.ind:
        ind = as_index(args.ind)
        if ind.size and ind.max() >= len(R_true):
            raise InputFileError(args.ind, f"selects particle {ind.max()}, but {args.truth} "
                                           f"holds {len(R_true)}")
        if len(R) == len(R_true):
            R, t = R[ind], None if t is None else t[ind]
        R_true, t_true = R_true[ind], None if t_true is None else t_true[ind]
    if len(R) != len(R_true):
        raise InputFileError(args.poses, f"holds {len(R)} poses, {args.truth} holds "
                                         f"{len(R_true)} (give --ind for a subset)")
    res = pose_error(check_rotations(R, args.poses), check_rotations(R_true, args.truth),
                     t, t_true)
    report = {"poses": args.poses, "truth": args.truth, "D": D, **summary(res)}
    rows = [("images", f"{res['n']}"), ("hand", res["hand"]),
            ("rotation error, median", f"{res['median_angle_deg']:.3f} deg"),
            ("rotation error, 90th pct", f"{res['p90_angle_deg']:.3f} deg"),
            ("||R - R_true||_F^2, median", f"{res['median_frob2']:.3g}"),
            ("other hand: ||.||_F^2, median", f"{res['other_hand_median_frob2']:.3g}")]
    if "median_trans_px" in res:
        rows += [("translation error, median", f"{res['median_trans_px']:.3f} px"),
                 ("translation error, 90th pct", f"{res['p90_trans_px']:.3f} px"),
                 ("3D offset removed", np.array2string(res["offset_px"], precision=2) + " px")]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))
    if args.output:
        with atomic_open(args.output, "w") as f:
            json.dump(report, f, indent=2)
    return 0
