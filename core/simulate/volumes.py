"""Built-in heterogeneous test "proteins": sums of 3D Gaussian blobs with moving domains.

A rigid, chiral core of blobs carries two arms on hinges. The kinds follow the paper's
appendix D.1 (there a bond of an atomic model was rotated; here an arm of blobs):
- "homogeneous": the core with both arms at rest (no coordinate);
- "linear": arm 1 swings -60..+60 degrees about its hinge, coordinate t in [0, 1];
- "2d": arm 1 as in "linear" (t1) and arm 2 swings -60..+60 degrees (t2), both in [0, 1];
- "circular": arm 1 turns a full circle, coordinate phi in [0, 1) (fraction of a turn, periodic);
- "discrete": K states, state k has arm 1 at 360 k/K degrees and arm 2 at a fixed
  pseudo-random angle (the same for every dataset).

Geometry is in fractions of the box (x, y, z), so a model looks the same at any D. A volume is
band-limited by construction: its centered 3D DFT is the Gaussians' analytic Fourier transform
sampled on the lattice, so slices of that transform (`blob_slices`) are exact projections of
the same volumes that `make_volume` returns. Volumes are [D, D, D] indexed [z, y, x].
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from cryoscape.core.errors import CryoscapeError
from cryoscape.core.lattice import freqs_1d

KINDS = ("homogeneous", "linear", "2d", "circular", "discrete")
COORD_DIMS = {"homogeneous": 0, "linear": 1, "2d": 2, "circular": 1, "discrete": 0}
MODEL_BOX_A = 256.0
"""Physical box of the built-in models in A: the default pixel size is MODEL_BOX_A / D."""

# (x, y, z, sigma, peak amplitude), fractions of the box
_CORE = np.array([
    [-0.02, 0.00, 0.00, 0.070, 1.0],
    [-0.10, 0.08, 0.05, 0.050, 0.9],
    [-0.05, -0.08, -0.06, 0.050, 0.9],
    [0.06, 0.05, -0.04, 0.045, 0.8],
    [-0.14, -0.02, 0.12, 0.040, 0.8],
    [0.03, -0.02, 0.13, 0.035, 0.8],
    [-0.16, 0.12, -0.10, 0.035, 0.7],
    [0.08, 0.10, 0.08, 0.030, 0.7],
    [0.00, 0.10, -0.12, 0.020, 0.6],
    [-0.08, -0.12, 0.08, 0.020, 0.6],
])
_ARM1 = np.array([  # offsets from hinge 1
    [0.02, 0.06, 0.00, 0.035, 0.9],
    [0.04, 0.12, 0.01, 0.030, 0.8],
    [0.06, 0.18, 0.03, 0.028, 0.8],
    [0.08, 0.17, -0.03, 0.020, 0.6],
])
_ARM2 = np.array([  # offsets from hinge 2
    [0.00, -0.06, 0.02, 0.035, 0.9],
    [-0.02, -0.11, 0.05, 0.030, 0.8],
])
_HINGE1, _AXIS1 = np.array([0.12, 0.0, 0.0]), np.array([1.0, 0.1, 0.05])
_HINGE2, _AXIS2 = np.array([-0.10, -0.14, 0.0]), np.array([0.1, 0.0, 1.0])


@dataclass
class Blobs:
    """Gaussian blobs of M volumes in pixels relative to the box center (index D//2):
    centers [M, n, 3] (x, y, z), sigmas [n], masses [n] (sum of the blob's voxel values)."""
    centers: torch.Tensor
    sigmas: torch.Tensor
    masses: torch.Tensor


def _axis_angle(axis: np.ndarray, deg: np.ndarray) -> np.ndarray:
    """Rotation matrices [M, 3, 3] (column-vector form) about a unit axis by angles in degrees."""
    a = axis / np.linalg.norm(axis)
    t = np.deg2rad(deg)[:, None, None]
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(t) * K + (1 - np.cos(t)) * (K @ K)


def _arm(hinge, axis, offsets, deg) -> np.ndarray:
    return hinge + np.einsum("mij,nj->mni", _axis_angle(axis, deg), offsets[:, :3])


def _discrete_angles(states: int) -> tuple[np.ndarray, np.ndarray]:
    a1 = 360.0 * np.arange(states) / states
    a2 = np.random.default_rng(1234).uniform(-60, 60, states)
    return a1, a2


def check_coords(kind: str, coords, states: int = 10) -> np.ndarray:
    """Validate coordinates of a kind: float [M, k] for continuous kinds, int [M] states for
    "discrete", ignored (any length M) for "homogeneous"."""
    if kind not in KINDS:
        raise CryoscapeError(f"unknown model kind {kind!r}; choose one of {', '.join(KINDS)}")
    c = np.asarray(coords)
    if kind == "discrete":
        c = c.reshape(-1)
        if (not np.issubdtype(c.dtype, np.integer) or c.min(initial=0) < 0
                or c.max(initial=0) >= states):
            raise CryoscapeError(f"discrete states must be integers in 0..{states - 1}")
        return c.astype(np.int64)
    k = COORD_DIMS[kind]
    if kind == "homogeneous":
        return np.zeros((len(c) if c.ndim else 1, 0))
    return c.astype(np.float64).reshape(-1, k)


def draw_coords(kind: str, n: int, rng: np.random.Generator, states: int = 10) -> np.ndarray:
    """Per-image coordinates drawn uniformly: [n, k] floats in [0, 1), or [n] int states."""
    check_coords(kind, np.zeros(0, dtype=np.int64), states)
    if kind == "discrete":
        return rng.integers(0, states, n)
    return rng.random((n, COORD_DIMS[kind]))


def model_blobs(kind: str, coords, D: int, states: int = 10) -> Blobs:
    """The blobs of the volumes at `coords` (see check_coords), in pixels of a D box."""
    c = check_coords(kind, coords, states)
    m = len(c)
    a1, a2 = np.zeros(m), np.zeros(m)
    if kind in ("linear", "2d"):
        a1 = -60 + 120 * c[:, 0]
    if kind == "2d":
        a2 = -60 + 120 * c[:, 1]
    if kind == "circular":
        a1 = 360 * c[:, 0]
    if kind == "discrete":
        d1, d2 = _discrete_angles(states)
        a1, a2 = d1[c], d2[c]
    centers = np.concatenate([np.broadcast_to(_CORE[:, :3], (m, len(_CORE), 3)),
                              _arm(_HINGE1, _AXIS1, _ARM1, a1),
                              _arm(_HINGE2, _AXIS2, _ARM2, a2)], axis=1)
    table = np.concatenate([_CORE, _ARM1, _ARM2])
    sig = table[:, 3] * D
    mass = table[:, 4] * (2 * np.pi) ** 1.5 * sig**3
    return Blobs(torch.as_tensor(centers * D, dtype=torch.float32),
                 torch.as_tensor(sig, dtype=torch.float32),
                 torch.as_tensor(mass, dtype=torch.float32))


def _blob_ft_1d(f: torch.Tensor, c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """exp(-2 pi^2 s^2 f^2 - 2 pi i f c) for each blob: [n, len(f)] complex."""
    env = torch.exp(-2 * torch.pi**2 * (s[:, None] * f[None]) ** 2)
    return torch.polar(env, -2 * torch.pi * c[:, None] * f[None])


def blobs_to_volume(blobs: Blobs, index: int, D: int) -> np.ndarray:
    """Band-limited volume [D, D, D] ([z, y, x]) of volume `index` of `blobs`."""
    from cryoscape.core.fourier import ifft3_center
    f = freqs_1d(D)
    c = blobs.centers[index]
    gx, gy, gz = (_blob_ft_1d(f, c[:, i], blobs.sigmas) for i in range(3))
    gx = gx * blobs.masses[:, None]
    ft = torch.einsum("nz,ny,nx->zyx", gz, gy, gx)
    return ifft3_center(ft).real.numpy().astype(np.float32)


def blob_slices(blobs: Blobs, rotations: torch.Tensor, D: int) -> torch.Tensor:
    """Central slices [B, D, D] (complex, centered) of the blob volumes' Fourier transforms,
    one volume per rotation (or one for all): the value at 2D frequency k is F(k @ R), R acting
    on row vectors. Since k @ R . c = kx (R c)_x + ky (R c)_y, each blob's slice is separable
    in x and y: a 2D Gaussian at its projected center, summed by one batched product."""
    f = freqs_1d(D)
    R = rotations.to(torch.float32)
    centers = blobs.centers.expand(len(R), -1, -1)
    proj = torch.einsum("bij,bnj->bni", R, centers)                   # [B, n, 3] px
    env = torch.exp(-2 * torch.pi**2 * (blobs.sigmas[:, None] * f[None]) ** 2)        # [n, D]
    gx = torch.polar(env.expand(len(proj), -1, -1), -2 * torch.pi * proj[..., 0:1] * f)
    gy = torch.polar(env.expand(len(proj), -1, -1), -2 * torch.pi * proj[..., 1:2] * f)
    return torch.einsum("bny,bnx->byx", gy * blobs.masses[:, None], gx)


def make_volume(kind: str, coord_or_state=None, D: int = 64, states: int = 10) -> np.ndarray:
    """One volume [D, D, D] of a built-in model at a coordinate (float or [k]) or a state."""
    if kind == "homogeneous":
        coord_or_state = np.zeros((1, 0))
    elif kind == "discrete":
        coord_or_state = np.asarray([coord_or_state]).astype(np.int64)
    return blobs_to_volume(model_blobs(kind, np.atleast_1d(coord_or_state), D, states), 0, D)


def make_volumes(kind: str, D: int, coords, states: int = 10) -> np.ndarray:
    """Volumes [M, D, D, D] of a built-in model at M coordinates or states (check_coords)."""
    blobs = model_blobs(kind, coords, D, states)
    return np.stack([blobs_to_volume(blobs, i, D) for i in range(len(blobs.centers))])
