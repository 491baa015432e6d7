"""The VAE of cryoDRGN with known poses: encoder q(z|X) and volume decoder p(V|k, z).

The encoder is an MLP (residual or plain) on the Hartley image restricted to a circle of radius
`enc_mask` lattice pixels (`lattice.circular_mask`), output (mu, logvar) of a diagonal Gaussian.
Parameter names equal cryoDRGN's HetOnlyVAE (`encoder.main.*`, `decoder.decoder.main.*`) except
the Gaussian features, stored at `decoder.pe.rand_freqs` (cryoDRGN: `decoder.rand_freqs`).
"""
from __future__ import annotations

import torch
from torch import nn

from .decoder import VolumeDecoder
from .mlp import MLP


class VAE(nn.Module):
    """encoder (MLP | None for zdim 0), decoder (VolumeDecoder), zdim."""

    def __init__(self, encoder: MLP | None, decoder: VolumeDecoder, zdim: int):
        super().__init__()
        self.encoder, self.decoder, self.zdim = encoder, decoder, zdim

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, n_enc] (the encoder's circle, `forward.encoder_input`) -> (mu, logvar)."""
        if self.encoder is None:
            raise ValueError("a homogeneous model (zdim 0) has no encoder")
        out = self.encoder(x)
        return out[:, : self.zdim], out[:, self.zdim:]

    @staticmethod
    def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor,
                      per_image: bool = False) -> torch.Tensor:
        """KL(q(z|X) || N(0, I)) summed over z, averaged over the batch (cryoDRGN's kld), or
        per image [B]."""
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)
        return kl if per_image else kl.mean()

    def decode(self, coords: torch.Tensor, z: torch.Tensor | None = None,
               symmetric: bool = False) -> torch.Tensor:
        """Hartley values [B, n] at coords [n, 3] or [B, n, 3] (cycles/px) for z [B, zdim].

        symmetric=True halves the work of a Fourier-domain decoder on centrosymmetric point
        lists (point n-1-i = -point i, e.g. a circle-masked odd lattice, any rotation).
        """
        return self.decoder(coords, z, symmetric=symmetric)

    forward = decode
