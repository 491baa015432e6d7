"""Frequency lattices, the circular mask and phase shifts for translations.

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


def circular_mask(D: int, radius_px: float | None = None) -> torch.Tensor:
    """Boolean [(D+1)^2] mask (flattened, x fastest) of the symmetric lattice of box D: the
    points within `radius_px` Fourier pixels (default D//2, i.e. 0.5 cycles/px) but the DC
    point, as cryoDRGN's `Lattice.get_circular_mask` with its DC ignored. radius_px <= 0: the
    whole lattice, DC included (cryoDRGN's enc_mask -1). The circle of the loss and of the
    encoder's input."""
    n = D + 1
    if radius_px is not None and radius_px <= 0:
        return torch.ones(n * n, dtype=torch.bool)
    r = 0.5 * (D // 2 if radius_px is None else radius_px) / (D // 2)
    mask = coords_2d(D, symmetric=True)[:, :2].pow(2).sum(1) <= r * r
    mask[(n * n) // 2] = False
    return mask


def phase_shift_2d(images_ft: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Move the content of centered-FFT images [B, D, D] by `shifts` [B, 2] pixels (x, y).

    Moving content by s multiplies its transform by exp(-2 pi i k.s).
    """
    D = images_ft.shape[-1]
    f = freqs_1d(D, dtype=shifts.dtype).to(shifts.device)
    phase = f[None, None, :] * shifts[:, 0, None, None] + f[None, :, None] * shifts[:, 1, None, None]
    return images_ft * torch.polar(torch.ones_like(phase), -2 * torch.pi * phase)
