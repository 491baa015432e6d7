"""The VAE of cryoDRGN with known poses: encoder q(z|X) and volume decoder p(V|k, z).

The encoder is an MLP (residual or plain) on the Hartley image restricted to a circle of radius
`enc_mask` lattice pixels (`lattice.circular_mask`), output (mu, logvar) of a diagonal Gaussian.
Parameter names equal cryoDRGN's HetOnlyVAE (`encoder.main.*`, `decoder.decoder.main.*`) except
the Gaussian features, stored at `decoder.pe.rand_freqs` (cryoDRGN: `decoder.rand_freqs`).

Tilt pairs (the paper's appendix D.2): `TiltEncoder` encodes each particle from its two images,
each through one shared MLP to an intermediate vector, the two concatenated into a second MLP
that gives (mu, logvar) (names `encoder.encoder1.*`, `encoder.encoder2.*`, as cryoDRGN's).
"""
from __future__ import annotations

import torch
from torch import nn

from .decoder import VolumeDecoder
from .mlp import MLP


class TiltEncoder(nn.Module):
    """(x, x_tilt) [B, n_enc] each -> encoder2(cat(encoder1(x), encoder1(x_tilt)))."""

    def __init__(self, encoder1: MLP, encoder2: MLP):
        super().__init__()
        self.encoder1, self.encoder2 = encoder1, encoder2

    def forward(self, x: torch.Tensor, x_tilt: torch.Tensor) -> torch.Tensor:
        h = self.encoder1(torch.cat([x, x_tilt]))          # the shared MLP, in one pass
        return self.encoder2(torch.cat(h.chunk(2), -1))


class VAE(nn.Module):
    """encoder (MLP, TiltEncoder for tilt pairs, None for zdim 0), decoder (VolumeDecoder),
    zdim."""

    def __init__(self, encoder: MLP | TiltEncoder | None, decoder: VolumeDecoder, zdim: int):
        super().__init__()
        self.encoder, self.decoder, self.zdim = encoder, decoder, zdim

    @property
    def tilt(self) -> bool:
        """Whether the encoder takes tilt pairs."""
        return isinstance(self.encoder, TiltEncoder)

    def encode(self, x: torch.Tensor,
               x_tilt: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, n_enc] (the encoder's circle, `forward.encoder_input`), and for a tilt-pair
        encoder the tilted images x_tilt [B, n_enc] -> (mu, logvar)."""
        if self.encoder is None:
            raise ValueError("a homogeneous model (zdim 0) has no encoder")
        if self.tilt != (x_tilt is not None):
            raise ValueError("this model was trained on tilt pairs: encoding needs each "
                             "image's tilted pair" if self.tilt else
                             "this model's encoder takes single images, not tilt pairs")
        out = self.encoder(x) if x_tilt is None else self.encoder(x, x_tilt)
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
