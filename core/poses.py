"""Translations at the edges: cryoscape keeps `shifts` in pixels as how far each particle's
content is displaced in its image (+x along columns, +y along rows).

cryoDRGN pickles store trans = -shift / D; RELION's rlnOriginX(Angst) and cryoSPARC's
alignments3D/shift are the opposite of the displacement (the shift that re-centres), in
pixels (or A) of their own pixel size.

Tilt pairs (the paper's appendix D.2): each particle is imaged again with the stage tilted by
a known angle about the microscope's x axis (the images' columns). With poses acting on row
vectors (`coords_3d = coords_2d @ R`), the tilted image's pose is `tilt_rotation(deg) @ R`, as in
cryoDRGN: the specimen, as posed in the untilted image, turned by +deg about x (right-handed,
y towards z) before it is projected along z. Both images share the particle's shift, as
cryoDRGN's tilt-pair training assumes.

How far apart two poses of a particle are: the geodesic angle between the rotations,
`rotation_angles_deg`, from their chordal distance ||R_a - R_b||_F^2 = 8 sin^2(angle / 2)
(`angle_from_frob2`), which stays exact near 0 where arccos of the trace does not.

The other hand: projections cannot tell a map from its mirror image (z -> -z, `FLIP`); the
poses that give the mirror map the same projections are `mirrored_poses(R)` = FLIP @ R @ FLIP.
"""
from __future__ import annotations

import numpy as np


def shifts_from_cryodrgn(trans, D: int) -> np.ndarray:
    """cryoDRGN trans (fraction of the box) -> displacement in pixels."""
    return (-np.asarray(trans, dtype=np.float32) * D).astype(np.float32)


def shifts_to_cryodrgn(shifts, D: int) -> np.ndarray:
    """Displacement in pixels -> cryoDRGN trans (fraction of the box)."""
    return (-np.asarray(shifts, dtype=np.float32) / D).astype(np.float32)


def shifts_from_origin(origin_px) -> np.ndarray:
    """RELION origin / cryoSPARC shift in pixels -> displacement in pixels."""
    return -np.asarray(origin_px, dtype=np.float32)


def shifts_to_origin(shifts) -> np.ndarray:
    """Displacement in pixels -> RELION origin / cryoSPARC shift in pixels."""
    return -np.asarray(shifts, dtype=np.float32)


def angle_from_frob2(frob2) -> np.ndarray:
    """Geodesic angles (degrees) of rotation differences with squared chordal distances
    ||R_a - R_b||_F^2 `frob2`."""
    return np.degrees(2 * np.arcsin(np.clip(np.sqrt(np.asarray(frob2) / 8), 0.0, 1.0)))


def rotation_angles_deg(R_a, R_b) -> np.ndarray:
    """Geodesic angles (degrees) [N] between paired rotations R_a, R_b [N, 3, 3]."""
    d = np.asarray(R_a, np.float64) - np.asarray(R_b, np.float64)
    return angle_from_frob2((d * d).sum(axis=(-2, -1)))


FLIP = np.diag([1.0, 1.0, -1.0])


def mirrored_poses(R):
    """Poses R [..., 3, 3] (numpy or torch, the same type back) for the mirror image of the
    map: FLIP @ R @ FLIP, again rotations."""
    F = FLIP.astype(np.result_type(R.dtype, np.float32)) if isinstance(R, np.ndarray) \
        else R.new_tensor(FLIP)
    return F @ R @ F


def tilt_rotation(tilt_deg: float) -> np.ndarray:
    """The stage tilt: rotation by `tilt_deg` about x, [[1, 0, 0], [0, c, -s], [0, s, c]]
    (cryoDRGN's `xrot`), float32."""
    a = np.radians(tilt_deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=np.float32)


def tilted_poses(R, tilt_deg: float):
    """Poses [N, 3, 3] of the tilted images of particles with poses R (numpy or torch, the
    same type, dtype and device back): tilt_rotation(tilt_deg) @ R."""
    T = tilt_rotation(tilt_deg)
    if hasattr(R, "detach"):  # a torch tensor
        import torch
        return torch.as_tensor(T, dtype=R.dtype, device=R.device) @ R
    R = np.asarray(R)
    return T.astype(np.result_type(R.dtype, np.float32)) @ R
