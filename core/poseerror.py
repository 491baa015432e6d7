"""Pose error of a reconstruction against ground truth, up to the map's global rotation, hand
and 3D position (ab initio poses are defined only up to these).

Poses act on row vectors (`coords_3d = coords_2d @ R`). A map rotated so that
V_found(k) = V_true(k @ G) has poses R_true @ G^T, so found poses are modelled as R_true @ B.
Its mirror V_true(k @ F), F = diag(1, 1, -1), has poses F @ R_true @ F (the left F only turns
the det -1 matrix R_true @ F into a rotation: it leaves the image plane's z = 0 lattice alone),
hence F @ R_true @ F @ B for the other hand. Both hands are fitted; the better one is reported.

The global rotation B is found robustly, as cryoDRGN's and CryoBench's pose metrics do, from
single images: each image's R_true_i^T R_found_i is a candidate, the candidate with the smallest
median error over the images is kept, then refined by the chordal L2 mean (orthogonal Procrustes)
over the images it fits (squared error under 9x the median, i.e. angles under ~3x), twice.

Shifts (px, the displacement of an image's content) change with a 3D offset of the map: the
point p of a map appears at (R p)[:2] in the image of pose R, so the images of a map moved by
o show their content moved by (R o)[:2], and the poses found against a map moved by -o have
t_found = t_true + (R o)[:2]. The least-squares o (`offset_px`: the found map is the true one
moved by -o) over the well-aligned images is removed before the translation error is measured.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from cryoscape.core.errors import CryoscapeError, InputFileError
from cryoscape.core.poses import angle_from_frob2, mirrored_poses

HANDS = ("same", "mirrored")
_CANDIDATES = 200     # images whose single-image alignment is tried as the global rotation
_SCORED = 4000        # images that score each candidate


def _spread(n: int, k: int) -> np.ndarray:
    """Up to k indices spread evenly over range(n) (deterministic)."""
    return np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(np.int64))


def _nearest_rotation(M: np.ndarray) -> np.ndarray:
    """The rotation B maximising <M, B> (trace of M^T B): the projection of M onto SO(3)."""
    U, _, Vt = np.linalg.svd(M)
    return U @ np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))]) @ Vt


def _inliers(err: np.ndarray) -> np.ndarray:
    return err <= 9 * np.median(err) + 1e-12


def align_rotations(R_found, R_ref) -> tuple[np.ndarray, np.ndarray]:
    """Global rotation B with R_found ~ R_ref @ B, found robustly (see the module docstring);
    returns (B, per-image squared Frobenius error ||R_found_i - R_ref_i B||^2)."""
    M = np.einsum("nji,njk->nik", R_ref, R_found)           # R_ref_i^T R_found_i: exact B_i
    flat = M.reshape(-1, 9)
    cand = flat[_spread(len(M), _CANDIDATES)]
    scores = 6 - 2 * flat[_spread(len(M), _SCORED)] @ cand.T  # ||R_f - R_ref B||^2 = 6 - 2<M,B>
    B = cand[np.argmin(np.median(scores, axis=0))].reshape(3, 3)

    def err(B):   # directly, not as 6 - 2<M, B>, which cancels to ~1e-7 in float32 poses
        return ((R_found - R_ref @ B) ** 2).sum((1, 2))

    for _ in range(2):
        B = _nearest_rotation(M[_inliers(err(B))].sum(0))
    return B, err(B)


def fit_offset(R_aligned, d, keep) -> np.ndarray:
    """Least-squares 3D offset o (px) with d_i ~ (R_i o)[:2] over the images `keep`."""
    P = np.asarray(R_aligned)[keep, :2, :]
    o, *_ = np.linalg.lstsq(P.reshape(-1, 3), d[keep].reshape(-1), rcond=None)
    return o


def check_rotations(R, name: str) -> np.ndarray:
    """R as float64 [N, 3, 3]; CryoscapeError naming `name` if they are not rotations."""
    R = np.asarray(R, dtype=np.float64)
    if R.ndim != 3 or R.shape[1:] != (3, 3):
        raise CryoscapeError(f"{name}: expected rotation matrices N x 3 x 3, got {R.shape}")
    if not np.isfinite(R).all():
        raise CryoscapeError(f"{name}: rotations hold NaN or infinite values")
    dev = np.abs(R @ R.transpose(0, 2, 1) - np.eye(3)).max(axis=(1, 2))
    det = np.linalg.det(R)
    bad = np.flatnonzero((dev > 1e-3) | (det < 0))
    if bad.size:
        i = bad[0]
        raise CryoscapeError(f"{name}: {bad.size} matrices are not rotations (first: #{i}, "
                             f"|R R^T - I| = {dev[i]:.3g}, det {det[i]:.3g})")
    return R


def pose_error(R_found, R_true, t_found=None, t_true=None) -> dict:
    """Pose error after the best global rotation and hand (and 3D offset, with shifts in px).

    Returns `hand` ("same" or "mirrored"), `alignment` B (R_found ~ ref_true @ B),
    `angles_deg` [N] (geodesic), `frob2` [N] (the paper's ||R_found - R_aligned||_F^2),
    their `median_angle_deg`, `p90_angle_deg`, `mean_angle_deg`, `median_frob2`,
    `mean_frob2`, `median_frob`, and `other_hand_median_frob2`; with both shift sets,
    `offset_px` (3D, in the found map's frame), `trans_err_px` [N], `median_trans_px`,
    `p90_trans_px`, `mean_trans_px`.
    """
    R_found = check_rotations(R_found, "found poses")
    R_true = check_rotations(R_true, "true poses")
    if len(R_found) != len(R_true) or len(R_found) == 0:
        raise CryoscapeError(f"pose error needs matching non-empty pose sets, got "
                             f"{len(R_found)} and {len(R_true)}")
    fits = {}
    for hand, ref in zip(HANDS, (R_true, mirrored_poses(R_true))):
        B, err = align_rotations(R_found, ref)
        fits[hand] = (float(np.median(err)), B, err, ref)
    hand = min(HANDS, key=lambda h: fits[h][0])
    med, B, err, ref = fits[hand]
    angles = angle_from_frob2(err)
    out = {"n": len(err), "hand": hand, "alignment": B, "angles_deg": angles, "frob2": err,
           "median_angle_deg": float(np.median(angles)),
           "p90_angle_deg": float(np.percentile(angles, 90)),
           "mean_angle_deg": float(angles.mean()), "median_frob2": med,
           "mean_frob2": float(err.mean()), "median_frob": float(np.median(np.sqrt(err))),
           "other_hand_median_frob2": fits[HANDS[1 - HANDS.index(hand)]][0]}
    if t_found is not None and t_true is not None:
        d = (np.asarray(t_found, np.float64).reshape(-1, 2)
             - np.asarray(t_true, np.float64).reshape(-1, 2))
        if len(d) != len(err):
            raise CryoscapeError(f"pose error: {len(d)} shifts for {len(err)} rotations")
        R_al, keep = ref @ B, _inliers(err)
        res = np.linalg.norm(d - R_al[:, :2, :] @ fit_offset(R_al, d, keep), axis=1)
        keep &= res <= 3 * np.median(res[keep]) + 1e-9   # without gross shift outliers
        o = fit_offset(R_al, d, keep)
        res = np.linalg.norm(d - R_al[:, :2, :] @ o, axis=1)
        out.update(offset_px=o, trans_err_px=res, median_trans_px=float(np.median(res)),
                   p90_trans_px=float(np.percentile(res, 90)), mean_trans_px=float(res.mean()))
    return out


SUMMARY_KEYS = ("n", "hand", "median_angle_deg", "p90_angle_deg", "mean_angle_deg",
                "median_frob2", "other_hand_median_frob2", "median_trans_px", "p90_trans_px",
                "mean_trans_px")


def summary(result: dict) -> dict:
    """The JSON-ready part of a pose_error result (no per-image arrays)."""
    out = {k: result[k] for k in SUMMARY_KEYS if k in result}
    out["global_rotation"] = np.asarray(result["alignment"]).round(8).tolist()
    if "offset_px" in result:
        out["offset_px"] = np.asarray(result["offset_px"]).round(6).tolist()
    return out


def read_poses(path: str | os.PathLike, D: int | None = None
               ) -> tuple[np.ndarray, np.ndarray | None, int | None]:
    """(R [N,3,3], shifts [N,2] px or None, box size or None) of a cryoDRGN pose pickle, a
    RELION .star or a cryoSPARC .cs file. Shifts are in px of a box of D where D is given
    (a .star/.cs file's own box otherwise); a pickle's fractional shifts need D."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "file not found")
    suffix = path.suffix.lower()
    if suffix not in (".star", ".cs"):
        from cryoscape.core.io.cryodrgn import load_poses
        return (*load_poses(path, D=D), D)
    from cryoscape.core.io.cs import cs_box, cs_poses, read_cs
    from cryoscape.core.io.stack import common_value
    from cryoscape.core.io.star import read_star, star_box, star_poses
    star = suffix == ".star"
    meta = read_star(path) if star else read_cs(path)
    box = common_value(star_box(meta) if star else cs_box(meta), "box size", path)
    D = D or (None if box is None else int(box))
    R, shifts = star_poses(meta, D=D) if star else cs_poses(meta, D=D, path=path)
    return R, shifts, D
