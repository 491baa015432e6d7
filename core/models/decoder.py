"""Volume decoders V(k, z): an MLP on the positional encoding of k (and z), in the Hartley or
the Fourier domain. Both return Hartley values, so images and volumes stay in one representation.

- `HartleyDecoder`: the MLP's single output is the Hartley value at k.
- `FourierDecoder`: the MLP outputs (Re, Im) of the Fourier transform and is only ever evaluated
  on one half of frequency space (z < 0, or z = 0 and y < 0, or z = y = 0 and x <= 0); values on
  the other half follow from Hermitian symmetry F(-k) = conj F(k), so the decoded volume is
  exactly real. Hartley value: H(k) = Re F(k) - Im F(k), H(-k) = Re F(k) + Im F(k).

Coordinates are [..., n, 3] in cycles/pixel; `z` is [B, zdim] (one latent per image) and is
applied to every point without materialising [B, n, pe + zdim] (see `MLP.forward`).
"""
from __future__ import annotations

import torch
from torch import nn

from .encoding import PositionalEncoding
from .mlp import MLP


def upper_half(coords: torch.Tensor) -> torch.Tensor:
    """True where k lies in the half of frequency space that is filled by symmetry."""
    x, y, z = coords[..., 0], coords[..., 1], coords[..., 2]
    return (z > 0) | ((z == 0) & ((y > 0) | ((y == 0) & (x > 0))))


def _cryodrgn_names(module, state_dict, prefix, *args):
    """load_state_dict pre-hook accepting cryoDRGN's spellings: `rand_freqs` at the decoder's
    top level, and the bare `main.*` of its encoding-free Hartley decoder (a ResidLinearMLP)."""
    if prefix + "rand_freqs" in state_dict:
        state_dict[prefix + "pe.rand_freqs"] = state_dict.pop(prefix + "rand_freqs")
    for k in [k for k in state_dict if k.startswith(prefix + "main.")]:
        state_dict[prefix + "decoder." + k[len(prefix):]] = state_dict.pop(k)


class VolumeDecoder(nn.Module):
    """Shared construction: `pe` (PositionalEncoding) and `decoder` (residual MLP)."""

    domain = ""
    n_out = 1

    def __init__(self, D: int, zdim: int = 0, players: int = 3, pdim: int = 1024,
                 pe_type: str = "gaussian", pe_dim: int | None = None,
                 feat_sigma: float | None = 0.5, activation: str = "relu"):
        super().__init__()
        self.D, self.zdim = D, zdim
        self.pe = PositionalEncoding(pe_type, D, pe_dim, feat_sigma)
        self.decoder = MLP(self.pe.out_dim + zdim, players, pdim, self.n_out, activation)
        self.register_load_state_dict_pre_hook(_cryodrgn_names)

    def mlp(self, coords: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        if (z is None) != (self.zdim == 0):
            got = None if z is None else tuple(z.shape)
            raise ValueError(f"decoder has zdim {self.zdim}; got z {got}")
        return self.decoder(self.pe(coords), z)


class HartleyDecoder(VolumeDecoder):
    """V(k, z) = MLP(pe(k), z): the Hartley value itself."""

    domain = "hartley"

    def forward(self, coords: torch.Tensor, z: torch.Tensor | None = None,
                symmetric: bool = False) -> torch.Tensor:
        """Hartley values [B, n] (or [..., n] without z); `symmetric` has no effect here."""
        return self.mlp(coords, z)[..., 0]


class FourierDecoder(VolumeDecoder):
    """MLP(pe(k), z) = (Re F, Im F) on the lower half space; Hartley values out."""

    domain = "fourier"
    n_out = 2

    def hartley_pair(self, coords: torch.Tensor, z: torch.Tensor | None = None):
        """(H(k), H(-k)) for every k, evaluating the MLP once per point at its lower-half twin."""
        flip = upper_half(coords)
        f = self.mlp(torch.where(flip[..., None], -coords, coords), z)
        re, im = f[..., 0], f[..., 1]
        im = torch.where(flip, -im, im)  # F(k) = conj F(-k) for k in the upper half
        return re - im, re + im

    def forward(self, coords: torch.Tensor, z: torch.Tensor | None = None,
                symmetric: bool = False) -> torch.Tensor:
        """Hartley values [B, n] (or [..., n] without z).

        symmetric=True: the points are centrosymmetric in order (point n-1-i = -point i, as on
        cryoDRGN's odd lattice, rotated and circle-masked alike); only the first ceil(n/2) are
        evaluated and the rest are filled by symmetry, halving the work.
        """
        if not symmetric:
            return self.hartley_pair(coords, z)[0]
        n = coords.shape[-2]
        h, h_neg = self.hartley_pair(coords[..., : (n + 1) // 2, :], z)
        return torch.cat([h, h_neg[..., : n // 2].flip(-1)], -1)


DECODERS = {"hartley": HartleyDecoder, "fourier": FourierDecoder}
