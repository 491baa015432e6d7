"""Positional encodings of 3D frequency coordinates, shared by every volume decoder.

Coordinates are in cycles/pixel on cryoDRGN's symmetric lattice ([-0.5, 0.5]); `D` is that
lattice's size (box + 1) and `D2 = D // 2`. Feature layouts follow cryoDRGN 4.3.1 so trained
weights transfer unchanged:

- geometric ('geom_ft', 'geom_full', 'geom_lowf', 'geom_nohighf') and 'linear_lowf': per axis
  x, y, z the block [sin(c f_0..f_{n-1}), cos(c f_0..f_{n-1})], n = pe_dim (D2 by default);
  'geom_ft' is the paper's series (wavelengths 2/D .. 1), 'geom_lowf' and 'geom_nohighf' drop
  the top frequencies, 'geom_full' spans 2/D .. 2 pi, 'linear_lowf' uses f = 1 .. D2.
- 'gaussian': random Fourier features k = D2 * (c . w_i), w_i ~ N(0, feat_sigma^2 I_3) for
  i < 3 pe_dim (a fixed parameter `rand_freqs`, saved with the weights), [sin(k), cos(k)].
- 'none': the coordinates themselves.
"""
from __future__ import annotations

import math

import torch
from torch import nn

PE_TYPES = ("gaussian", "geom_ft", "geom_full", "geom_lowf", "geom_nohighf", "linear_lowf",
            "none")


def geometric_freqs(pe_type: str, D: int, n: int) -> torch.Tensor:
    """The n angular frequencies of a geometric or linear encoding on a lattice of size D."""
    D2, DD = D // 2, 2 * (D // 2)
    t = torch.arange(n, dtype=torch.float32) / max(n - 1, 1)
    if pe_type == "geom_ft":
        return DD * math.pi * (2.0 / DD) ** t
    if pe_type == "geom_full":
        return DD * math.pi * (1.0 / DD / math.pi) ** t
    if pe_type == "geom_lowf":
        return D2 * (1.0 / D2) ** t
    if pe_type == "geom_nohighf":
        return D2 * (2.0 * math.pi / D2) ** t
    if pe_type == "linear_lowf":
        return torch.arange(1, D2 + 1, dtype=torch.float32)
    raise ValueError(f"unknown positional encoding {pe_type!r}; choose from {PE_TYPES}")


class PositionalEncoding(nn.Module):
    """coords [..., 3] -> features [..., out_dim]."""

    def __init__(self, pe_type: str = "gaussian", D: int = 65, pe_dim: int | None = None,
                 feat_sigma: float | None = 0.5):
        super().__init__()
        if pe_type not in PE_TYPES:
            raise ValueError(f"unknown positional encoding {pe_type!r}; choose from {PE_TYPES}")
        self.pe_type, self.D, self.D2 = pe_type, D, D // 2
        self.pe_dim = self.D2 if pe_dim is None else int(pe_dim)
        if pe_type == "linear_lowf" and self.pe_dim != self.D2:
            raise ValueError(f"linear_lowf uses D//2 = {self.D2} frequencies, not pe_dim "
                             f"{self.pe_dim}")
        if pe_type == "gaussian":
            sigma = 0.5 if feat_sigma is None else float(feat_sigma)
            self.rand_freqs = nn.Parameter(torch.randn(3 * self.pe_dim, 3) * sigma,
                                           requires_grad=False)
        elif pe_type != "none":
            self.register_buffer("freqs", geometric_freqs(pe_type, D, self.pe_dim),
                                 persistent=False)
        self.out_dim = 3 if pe_type == "none" else 6 * self.pe_dim

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """Always in float32, also under autocast: phases up to pi D need every bit."""
        if self.pe_type == "none":
            return coords
        with torch.autocast(coords.device.type, enabled=False):
            coords = coords.float()
            if self.pe_type == "gaussian":
                k = coords @ (self.rand_freqs * self.D2).t()
            else:
                k = coords.unsqueeze(-1) * self.freqs  # [..., 3, n]
            x = torch.cat([torch.sin(k), torch.cos(k)], -1)
        return x.reshape(*coords.shape[:-1], self.out_dim)
