"""Insertion of central slices into 3D Fourier grids (backprojection).

Conventions (DESIGN.md): volumes [z, y, x] with DC at D//2, slice coordinates
`coords_2d(D) @ R` (row vectors), trilinear weights, slice points at radius < D/2 px, on
cryoDRGN's symmetric (D+1)^3 grid (every point has its Friedel mate inside it).

Written here rather than wrapped from torch-fourier-slice (used for projection by
core/simulate): its insertion accumulates only the interpolation weights, so a
CTF^2-weighted Wiener backprojection would need extra complex channels per insert, and its
rfft half-volume grid differs from the symmetric D+1 grid that backproject follows. Here any
number of real channels (numerator parts, CTF^2 weights) share one set of trilinear corners.
"""
from __future__ import annotations

import torch
from cryoscape.core.lattice import coords_2d


def slice_points(D: int, device=None, half: bool = False) -> torch.Tensor:
    """Pixel coordinates [P, 3] (x, y, 0) of the central-slice points with radius < D/2, in
    coords_2d order; with `half`, only kx > 0 or (kx = 0, ky >= 0): one point of each
    Friedel pair, plus DC."""
    c = coords_2d(D).to(device) * D
    ok = c[:, :2].norm(dim=1) < D / 2
    if half:
        ok &= (c[:, 0] > 0) | ((c[:, 0] == 0) & (c[:, 1] >= 0))
    return c[ok]


def insert_slices(acc: torch.Tensor, values: torch.Tensor, points: torch.Tensor,
                  rotations: torch.Tensor, group: torch.Tensor | None = None) -> None:
    """Add real slice data into accumulators, in place, by trilinear insertion.

    acc [C, G, n^3]: channel c of group g sums w * values[c] on the symmetric n^3 grid of
    group g (n = D+1, index D//2 is DC; G e.g. two half-maps), w the trilinear weights.
    values [C, B, P] at slice points [P, 3] (pixels, radius < D/2) rotated by rotations
    [B, 3, 3]; group [B] picks each slice's grid (default 0).
    """
    n = round(acc.shape[2] ** (1 / 3))
    q = points @ rotations + (n - 1) // 2  # [B, P, 3] grid coordinates, all in [0, n-1]
    base = torch.floor(q)
    f = q - base
    b = base.long()
    lin = (b[..., 2] * n + b[..., 1]) * n + b[..., 0]  # [B, P]
    if group is not None:
        lin = lin + (group * n**3)[:, None]
    off = torch.tensor([(k * n + j) * n + i for k in (0, 1) for j in (0, 1) for i in (0, 1)],
                       device=q.device)
    lin = (lin.unsqueeze(-1) + off).reshape(-1)  # [B * P * 8]
    wx = torch.stack([1 - f[..., 0], f[..., 0]], -1)
    wy = torch.stack([1 - f[..., 1], f[..., 1]], -1)
    wz = torch.stack([1 - f[..., 2], f[..., 2]], -1)
    w = (wz[..., :, None, None] * wy[..., None, :, None] * wx[..., None, None, :]).flatten(-3)
    for c in range(len(values)):
        acc[c].view(-1).index_add_(0, lin, (w * values[c].unsqueeze(-1)).reshape(-1))
