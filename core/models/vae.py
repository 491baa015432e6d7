"""The VAE of cryoDRGN with known poses: encoder q(z|X) and volume decoder p(V|k, z).

The encoder is an MLP (residual or plain) on the Hartley image restricted to a circle of radius
`enc_mask` lattice pixels (the DC term excluded), output (mu, logvar) of a diagonal Gaussian.
Parameter names equal cryoDRGN's HetOnlyVAE (`encoder.main.*`, `decoder.decoder.main.*`) except
the Gaussian features, stored at `decoder.pe.rand_freqs` (cryoDRGN: `decoder.rand_freqs`).
"""
from __future__ import annotations

import torch
from torch import nn

from .decoder import VolumeDecoder
from .mlp import MLP


def encoder_mask(lattice_D: int, enc_mask: int | None, extent: float = 0.5) -> torch.Tensor | None:
    """Boolean [lattice_D**2] mask of the encoder's input pixels on the odd lattice, or None.

    As cryoDRGN: radius enc_mask pixels (enc_mask / (D//2) * extent in lattice units), DC
    excluded; enc_mask -1 (or None, <= 0) means the whole image.
    """
    if enc_mask is None or enc_mask <= 0:
        return None
    if 2 * enc_mask + 1 > lattice_D:
        raise ValueError(f"enc_mask {enc_mask} too large for lattice size {lattice_D}")
    f = torch.linspace(-extent, extent, lattice_D, dtype=torch.float64).float()
    y, x = torch.meshgrid(f, f, indexing="ij")
    r = enc_mask / (lattice_D // 2) * extent
    mask = (x.pow(2) + y.pow(2)).reshape(-1) <= r ** 2
    mask[lattice_D ** 2 // 2] = False
    return mask


class VAE(nn.Module):
    """encoder (MLP | None for zdim 0), decoder (VolumeDecoder), zdim, enc_mask (buffer)."""

    def __init__(self, encoder: MLP | None, decoder: VolumeDecoder, zdim: int,
                 enc_mask: torch.Tensor | None = None):
        super().__init__()
        self.encoder, self.decoder, self.zdim = encoder, decoder, zdim
        self.register_buffer("enc_mask", enc_mask, persistent=False)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, n_enc] (already masked) -> (mu, logvar), each [B, zdim]."""
        if self.encoder is None:
            raise ValueError("a homogeneous model (zdim 0) has no encoder")
        out = self.encoder(x)
        return out[:, : self.zdim], out[:, self.zdim:]

    def encode_images(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised Hartley images [B, Dl, Dl] on the odd lattice -> (mu, logvar)."""
        x = images.reshape(images.shape[0], -1)
        return self.encode(x if self.enc_mask is None else x[:, self.enc_mask])

    @staticmethod
    def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(q(z|X) || N(0, I)) summed over z, averaged over the batch (cryoDRGN's kld)."""
        return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)).mean()

    def decode(self, coords: torch.Tensor, z: torch.Tensor | None = None,
               symmetric: bool = False) -> torch.Tensor:
        """Hartley values [B, n] at coords [n, 3] or [B, n, 3] (cycles/px) for z [B, zdim].

        symmetric=True halves the work of a Fourier-domain decoder on centrosymmetric point
        lists (point n-1-i = -point i, e.g. a circle-masked odd lattice, any rotation).
        """
        return self.decoder(coords, z, symmetric=symmetric)

    forward = decode
