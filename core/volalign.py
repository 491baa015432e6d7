"""The rotation, hand and offset that bring one map onto another, and the poses that follow.

Heterogeneous ab initio (core/train/abinit) reconstructs each class in a frame of its own: any
rotation, either hand (projections cannot tell a map from its mirror image), and a position in
the box that the search's centring of the images fixes only to a pixel or two. Before the
classes become one latent space, every class's map is brought onto the largest class's and its
images' poses and shifts are moved with it, so that the conformations are superposed.

A candidate (Q, hand) is scored by the correlation of the reference's Hartley values H_ref(k)
with the moving map's at k @ Q (or k @ FLIP @ Q, the mirror z -> -z: core/poses) over lattice
points of the shell 2 < |k| <= kmax px: the whole SO(3) grid of `base_level` (core/so3grid),
then the 8 children of the best `keep` candidates for `levels` rounds (~0.45 degrees at the
defaults). Hartley values change with a map's position, so `superpose_maps` first centres both
maps on their density's centre of mass.

Two conformations differ somewhere, and whole maps superposed that way are pulled off their
shared part by the part that moved (two true states of the simulated two-conformation set:
7.1 degrees). `superpose_maps` therefore goes on: the maps' shared support (both thresholded
at `masks.auto_threshold` after the low-pass the score sees, intersected in the reference's
frame, a one-voxel soft edge; dilated by a voxel it reaches into the moved part, and the same
pair ends 4.8 degrees off) masks both, the offset is refined by their cross-correlation and
the rotation locally about the shared part's centre (a pattern search over small rotations,
2 down to 0.05 degrees), and the mask is made again until a round moves the map less than
0.1 degrees and 0.05 px (same pair: 0.7 degrees and 0.2 px off). On the two-conformation
benchmark's classes (core/train/abinit, 1-2 px apart in the box) fitting the offset takes
the backprojections' FSC area from 0.93 to 0.965 of the true poses' (benchmarks/ab_initio.py).
"""
from __future__ import annotations

import itertools

import numpy as np
import torch
from cryoscape.core.poses import FLIP, mirrored_poses
from cryoscape.core.so3grid import grid_size, so3_children, so3_rotations

POINTS = 8192          # lattice points of the shell scored (a seeded sample where there are more)
ROUNDS = 12            # shared-support rounds of superpose_maps at most
TOLERANCE_DEG = 0.1    # ... until a round turns the map less than this
TOLERANCE_PX = 0.05    # ... and moves it less than this
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


def superpose_maps(ref, mov, kmax: int, hands: bool = True
                   ) -> tuple[torch.Tensor, bool, torch.Tensor, float]:
    """(Q, mirrored, p, correlation) for real-space maps ref and mov [D, D, D] ([z, y, x]),
    superposed on their shared part (module docstring): ref(x) ~ mov(x @ M + p), M = Q or
    FLIP @ Q when mirrored, p [3] px (x, y, z) in mov's frame."""
    from cryoscape.core.decode import lowpass
    from cryoscape.core.masks import auto_threshold, soft_mask
    from cryoscape.core.posesearch import VolumeSlicer

    ref, mov = (torch.as_tensor(v, dtype=torch.float32) for v in (ref, mov))
    D = ref.shape[-1]
    smooth = [lowpass(v, D / kmax, 1.0) for v in (ref, mov)]
    c = [centre_of_mass(v) for v in smooth]        # whole maps aligned about their centres
    Q, mirrored, corr = align_maps(*(VolumeSlicer.from_map(shift_map(v, cv))
                                     for v, cv in zip((ref, mov), c)), D, kmax, hands)
    F = torch.as_tensor(FLIP, dtype=torch.float32)
    M = F @ Q if mirrored else Q
    p = c[1] - c[0] @ M
    inside_ref = (smooth[0] > auto_threshold(smooth[0])).numpy()
    k = shell_points(D, kmax)
    for _ in range(ROUNDS):
        moved = rotate_map(shift_map(smooth[1], p), M)
        shared = inside_ref & (moved > auto_threshold(moved)).numpy()
        if not shared.any():
            break
        w = torch.as_tensor(soft_mask(shared, 1.0, soft_edge=1.0))
        d = translation(smooth[0] * w, moved * w) @ M
        p = p + d
        # turned about the shared part's centre c (not the box's: a turn about a point off
        # the part would move it too, and the offset would have to follow it round by round)
        c = centre_of_mass(w)
        c_mov = c @ M + p                                 # where c lies in mov
        w_c = shift_map(w, c)
        new, corr = refine_alignment(
            VolumeSlicer.from_map(shift_map(ref, c) * w_c),
            VolumeSlicer.from_map(shift_map(mov, c_mov) * rotate_map(w_c, M.T)), M, k)
        step, M, p = rotation_angle(new @ M.T), new, c_mov - c @ new
        if step < TOLERANCE_DEG and float(d.norm()) < TOLERANCE_PX:
            break
    return (F @ M if mirrored else M), mirrored, p, corr


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


def centre_of_mass(vol: torch.Tensor) -> torch.Tensor:
    """[3] px (x, y, z) from the box centre D // 2: the centre of the map's density above
    `masks.auto_threshold`."""
    from cryoscape.core.masks import auto_threshold
    D = vol.shape[-1]
    w = (vol - auto_threshold(vol)).clamp_min(0)
    i = torch.arange(D, dtype=torch.float32) - D // 2
    total = w.sum().clamp_min(1e-12)
    return torch.stack([(w.sum((0, 1)) * i).sum(), (w.sum((0, 2)) * i).sum(),
                        (w.sum((1, 2)) * i).sum()]) / total


def shift_map(vol: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """out(x) = vol(x + p), p [3] px in (x, y, z) order (vol [z, y, x]), by a Fourier phase
    shift (periodic, exact for band-limited maps)."""
    D = vol.shape[-1]
    f = torch.fft.fftfreq(D)
    phase = (f[:, None, None] * float(p[2]) + f[None, :, None] * float(p[1])
             + f[None, None, :] * float(p[0]))
    return torch.fft.ifftn(torch.fft.fftn(vol.float()) * torch.exp(2j * torch.pi * phase)).real


def translation(ref: torch.Tensor, mov: torch.Tensor) -> torch.Tensor:
    """d [3] px (x, y, z) with ref(x) ~ mov(x + d): the peak of the maps' cross-correlation,
    refined to a fraction of a voxel by a parabola through it and its neighbours on each
    axis."""
    D = ref.shape[-1]
    cc = torch.fft.ifftn(torch.fft.fftn(ref.float()).conj() * torch.fft.fftn(mov.float())).real
    peak = np.array(np.unravel_index(int(cc.argmax()), cc.shape))
    d = []
    for axis in range(3):
        lo, mid, hi = (float(cc[tuple((peak + j * np.eye(3, dtype=int)[axis]) % D)])
                       for j in (-1, 0, 1))
        den = lo - 2 * mid + hi
        d.append((peak[axis] + D // 2) % D - D // 2 + (0.5 * (lo - hi) / den if den < 0 else 0))
    return torch.tensor(d[::-1], dtype=torch.float32)


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


def moved_shifts(rot: torch.Tensor, shift: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Shifts [n, 2] px in the reference's frame of images posed at `rot` [n, 3, 3] with
    `shift` against the moving map, superposed with offset p (superpose_maps): the point p of
    the moving map, the reference's origin, appears at (R p)[:2] in an image of pose R."""
    return shift + (rot @ p.to(rot.dtype))[:, :2]
