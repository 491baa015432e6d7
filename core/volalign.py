"""The rotation and hand that bring one map onto another, and the poses that follow them.

Heterogeneous ab initio (core/train/abinit) reconstructs each class in a frame of its own: any
rotation, and either hand, since projections cannot tell a map from its mirror image. Before
the classes become one latent space, every class's map is brought onto the largest class's and
its images' poses are moved with it, so that the conformations are superposed.

A candidate (Q, hand) is scored by the correlation of the reference's Hartley values H_ref(k)
with the moving map's at k @ Q (or k @ FLIP @ Q, the mirror z -> -z: core/poses) over lattice
points of the shell 2 < |k| <= kmax px: the whole SO(3) grid of `base_level` (core/so3grid),
then the 8 children of the best `keep` candidates for `levels` rounds (~0.45 degrees at the
defaults). The maps' relative offset is not fitted: the search centres every class's images
alike.

Two conformations differ somewhere, and whole maps superposed that way are pulled off their
shared part by the part that moved (two true states of the simulated two-conformation set:
7.1 degrees). `superpose_maps` therefore goes on: the maps' shared support (both thresholded
at `masks.auto_threshold` after the low-pass the score sees, intersected in the reference's
frame, dilated with a soft edge) masks both, the superposition is refined locally on the
masked maps (a pattern search over small rotations, 2 down to 0.05 degrees), and the mask is
made again at the new superposition until it moves less than 0.1 degrees (same maps: 0.4
degrees off, ~5 CPU s at D=64).
"""
from __future__ import annotations

import itertools

import numpy as np
import torch
from cryoscape.core.poses import FLIP, mirrored_poses
from cryoscape.core.so3grid import grid_size, so3_children, so3_rotations

POINTS = 8192          # lattice points of the shell scored (a seeded sample where there are more)
ROUNDS = 12            # shared-support rounds of superpose_maps at most
TOLERANCE_DEG = 0.1    # ... until a round moves the map less than this
# the 27 small rotations (axis-angle -1, 0, +1 times a step about x, y, z) of the local search
STEPS = torch.tensor(list(itertools.product((-1.0, 0.0, 1.0), repeat=3)))


def shell_points(D: int, kmax: int, seed: int = 0) -> torch.Tensor:
    """Lattice points [n, 3] (cycles/px) with 2 < |k| <= kmax px, at most POINTS of them."""
    r = torch.arange(-kmax, kmax + 1, dtype=torch.float32)
    k = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    rad = k.norm(dim=1)
    k = k[(rad > 2) & (rad <= kmax)]
    if len(k) > POINTS:
        k = k[torch.randperm(len(k), generator=torch.Generator().manual_seed(seed))[:POINTS]]
    return k / D


def align_maps(ref, mov, D: int, kmax: int, hands: bool = True, base_level: int = 1,
               levels: int = 4, keep: int = 8) -> tuple[torch.Tensor, bool, float]:
    """(Q [3, 3], mirrored, correlation): mov(k @ Q), or mov(k @ FLIP @ Q) when mirrored,
    matches ref(k) best. `ref`, `mov`: Hartley values at coords [..., 3] in cycles/px (a
    posesearch.VolumeSlicer); `hands`: also try the other hand."""
    k = shell_points(D, kmax)
    a = ref(k)
    a = (a - a.mean()) / a.norm()
    best = None
    for mirrored in (False, True) if hands else (False,):
        kk = k @ k.new_tensor(FLIP) if mirrored else k
        level, idx = base_level, torch.arange(grid_size(base_level))
        for r in range(levels + 1):
            R = so3_rotations(level, idx)
            score = torch.cat([_corr(a, mov(kk @ Rc)) for Rc in R.split(256)])
            top = score.topk(min(keep, len(score))).indices
            if r < levels:
                idx, level = so3_children(level, idx[top]).reshape(-1), level + 1
        if best is None or score[top[0]] > best[2]:
            best = (R[top[0]], mirrored, float(score[top[0]]))
    return best


def superpose_maps(ref, mov, kmax: int, hands: bool = True) -> tuple[torch.Tensor, bool, float]:
    """(Q, mirrored, correlation) as `align_maps`, for real-space maps ref and mov [D, D, D]
    ([z, y, x]), superposed on their shared part (module docstring)."""
    from cryoscape.core.decode import lowpass
    from cryoscape.core.masks import auto_threshold, soft_mask
    from cryoscape.core.posesearch import VolumeSlicer

    ref, mov = (torch.as_tensor(v, dtype=torch.float32) for v in (ref, mov))
    D = ref.shape[-1]
    Q, mirrored, corr = align_maps(VolumeSlicer.from_map(ref), VolumeSlicer.from_map(mov), D,
                                   kmax, hands)
    F = torch.as_tensor(FLIP, dtype=torch.float32)
    M = F @ Q if mirrored else Q                                    # ref(x) ~ mov(x @ M)
    smooth = [lowpass(v, D / kmax, 1.0) for v in (ref, mov)]
    inside_ref = (smooth[0] > auto_threshold(smooth[0])).numpy()
    k = shell_points(D, kmax)
    for _ in range(ROUNDS):
        moved = rotate_map(smooth[1], M)
        shared = inside_ref & (moved > auto_threshold(moved)).numpy()
        if not shared.any():
            break
        w = torch.as_tensor(soft_mask(shared, 1.0, dilate=1.0, soft_edge=3.0))
        new, corr = refine_alignment(VolumeSlicer.from_map(ref * w),
                                     VolumeSlicer.from_map(mov * rotate_map(w, M.T)), M, k)
        step, M = rotation_angle(new @ M.T), new
        if step < TOLERANCE_DEG:
            break
    return (F @ M if mirrored else M), mirrored, corr


def refine_alignment(ref, mov, M: torch.Tensor, k: torch.Tensor, step: float = 2.0,
                     min_step: float = 0.05) -> tuple[torch.Tensor, float]:
    """(M', correlation): the orthogonal M' = R M near M (R a small rotation) that best matches
    mov(k @ M') to ref(k) over points k [n, 3], by pattern search: the best of the 27 rotations
    of `step` degrees about x, y, z and their combinations, the step halved when staying put
    is best, down to `min_step`."""
    from scipy.spatial.transform import Rotation

    a = ref(k)
    a = (a - a.mean()) / a.norm()
    M, corr = M.float(), float(_corr(a, mov(k @ M)[None])[0])
    while step >= min_step:
        R = torch.as_tensor(Rotation.from_rotvec(np.radians(step) * STEPS.numpy()).as_matrix(),
                            dtype=torch.float32)
        score = _corr(a, mov(k @ (R @ M)))
        j = int(score.argmax())
        if score[j] <= corr:
            step /= 2
            continue
        M, corr = R[j] @ M, float(score[j])
    return M, corr


def rotate_map(vol: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    """out(x) = vol(x @ M) on the voxel grid centred at D // 2 (x in (x, y, z) order, vol
    [z, y, x]), trilinear, zero outside; M orthogonal (a rotation or a reflection). Fourier
    transforms follow: out's Hartley values at k are vol's at k @ M, as `align_maps` scores."""
    D = vol.shape[-1]
    i = torch.arange(D, dtype=torch.float32) - D // 2
    zz, yy, xx = torch.meshgrid(i, i, i, indexing="ij")
    x = torch.stack([xx, yy, zz], -1).reshape(-1, 3) @ M.float()
    g = ((x + D // 2) * (2.0 / (D - 1)) - 1).reshape(1, D, D, D, 3)
    return torch.nn.functional.grid_sample(vol.float()[None, None], g, align_corners=True)[0, 0]


def rotation_angle(R: torch.Tensor) -> float:
    """Degrees of the rotation R [3, 3]."""
    return float(np.degrees(np.arccos(np.clip((float(torch.trace(R)) - 1) / 2, -1.0, 1.0))))


def _corr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Correlations [n] of a [P] (centred, unit norm) with each row of b [n, P]."""
    b = b - b.mean(1, keepdim=True)
    return (b @ a) / b.norm(dim=1).clamp_min(1e-12)


def moved_poses(rot: torch.Tensor, Q: torch.Tensor, mirrored: bool) -> torch.Tensor:
    """Rotations [n, 3, 3] in the reference's frame of poses `rot` found against the moving
    map (align_maps' Q and hand): its slice at R is the reference's at R @ Q^T, or, mirrored,
    at R @ Q^T @ FLIP, whose third row is negated to make it a rotation (a central slice uses
    only the first two rows): mirrored_poses(R @ Q^T)."""
    out = rot @ Q.T
    return mirrored_poses(out) if mirrored else out
