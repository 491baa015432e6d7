"""The rotation and hand that bring one map onto another, and the poses that follow them.

Heterogeneous ab initio (core/train/abinit) reconstructs each class in a frame of its own: any
rotation, and either hand, since projections cannot tell a map from its mirror image. Before
the classes become one latent space, every class's map is brought onto the largest class's and
its images' poses are moved with it, so that the conformations are superposed.

A candidate (Q, hand) is scored by the correlation of the reference's Hartley values H_ref(k)
with the moving map's at k @ Q (or k @ FLIP @ Q, the mirror z -> -z: core/poses) over lattice points of the
shell 2 < |k| <= kmax px: the whole SO(3) grid of `base_level` (core/so3grid), then the 8
children of the best `keep` candidates for `levels` rounds (~0.45 degrees at the defaults). The
maps' relative offset is not fitted: the search centres every class's images alike.
"""
from __future__ import annotations

import torch
from cryoscape.core.poses import FLIP, mirrored_poses
from cryoscape.core.so3grid import grid_size, so3_children, so3_rotations

POINTS = 8192          # lattice points of the shell scored (a seeded sample where there are more)


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
