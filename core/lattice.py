"""Frequency lattices, circular masks and phase shifts for translations.

Frequencies are in cycles/pixel. A native lattice of an even box D has D points per axis,
(i - D//2)/D, in [-0.5, 0.5). cryoDRGN's symmetric lattice has D+1 points, linspace(-0.5, 0.5),
which for i < D equals the native one. 2D coordinates are [D*D, 3] with x (columns) varying
fastest, then y (rows), z = 0: a central slice rotated by R is `coords @ R`.
"""
from __future__ import annotations

import torch


def freqs_1d(D: int, symmetric: bool = False, dtype=torch.float32) -> torch.Tensor:
    """Frequencies of one axis: D points (i - D//2)/D, or D+1 points from -0.5 to 0.5."""
    if symmetric:
        return torch.linspace(-0.5, 0.5, D + 1, dtype=dtype)
    return (torch.arange(D, dtype=dtype) - D // 2) / D


def coords_2d(D: int, symmetric: bool = False, dtype=torch.float32) -> torch.Tensor:
    """Central-slice coordinates [n*n, 3] (x fastest, then y; z = 0)."""
    f = freqs_1d(D, symmetric, dtype)
    y, x = torch.meshgrid(f, f, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1), torch.zeros(x.numel(), dtype=dtype)], 1)


def coords_3d(D: int, symmetric: bool = False, dtype=torch.float32) -> torch.Tensor:
    """Volume coordinates [n**3, 3] as (x, y, z), for a volume indexed [z, y, x]."""
    f = freqs_1d(D, symmetric, dtype)
    z, y, x = torch.meshgrid(f, f, f, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1), z.reshape(-1)], 1)


def radius_2d(D: int, symmetric: bool = False) -> torch.Tensor:
    """Radius in cycles/pixel of each point of the 2D lattice, [n, n]."""
    c = coords_2d(D, symmetric)
    n = D + 1 if symmetric else D
    return c[:, :2].norm(dim=1).reshape(n, n)


def circular_mask(D: int, radius: float | None = None, symmetric: bool = False) -> torch.Tensor:
    """Boolean [n, n] mask of the lattice points within `radius` cycles/pixel (default 0.5)."""
    return radius_2d(D, symmetric) <= (0.5 if radius is None else radius)


def phase_shift_2d(images_ft: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Move the content of centered-FFT images [B, D, D] by `shifts` [B, 2] pixels (x, y).

    Moving content by s multiplies its transform by exp(-2 pi i k.s).
    """
    D = images_ft.shape[-1]
    f = freqs_1d(D, dtype=shifts.dtype).to(shifts.device)
    phase = f[None, None, :] * shifts[:, 0, None, None] + f[None, :, None] * shifts[:, 1, None, None]
    return images_ft * torch.polar(torch.ones_like(phase), -2 * torch.pi * phase)
