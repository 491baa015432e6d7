"""The contrast transfer function, in cryoDRGN's convention and parameter layout.

CTF = sqrt(1 - w^2) sin(g) - w cos(g), g = 2 pi (-0.5 df lambda s^2 + 0.25 Cs lambda^3 s^4) - phase,
lambda the relativistic electron wavelength, df interpolated between dfU and dfV by the
astigmatism angle. Parameters per image are cryoDRGN's 9 columns (PARAM_NAMES).

Written here rather than wrapped from torch-ctf: torch-ctf returns the negated CTF with its own
wavelength constants (0.004 from cryoDRGN's values at D=64, 1.5 A), and parity with cryoDRGN's
CTF pickles and decoders needs the exact formula.
"""
from __future__ import annotations

import numpy as np
import torch
from cryoscape.core.lattice import coords_2d

PARAM_NAMES = ("D", "apix", "dfU", "dfV", "dfAng", "kV", "Cs", "w", "phase")
"""Columns of a cryoDRGN CTF array: box, A/px, defocus U/V (A), angle (deg), kV, Cs (mm),
amplitude contrast, phase shift (deg)."""


def wavelength(kv):
    """Relativistic electron wavelength in A at an acceleration voltage in kV."""
    volt = kv * 1000.0
    return 12.2639 / (volt + 0.97845e-6 * volt**2) ** 0.5


def compute_ctf(freqs: torch.Tensor, dfu, dfv, dfang, kv, cs, w, phase=0.0, bfactor=None):
    """CTF at spatial frequencies `freqs` [..., n, 2] (x, y in 1/A).

    Per-image parameters are tensors [B, 1] (or scalars) that broadcast over the n points:
    defocus in A, angle and phase in degrees, kV, Cs in mm, amplitude contrast w.
    """
    lam = wavelength(kv)
    cs_a = cs * 1e7
    x, y = freqs[..., 0], freqs[..., 1]
    angle = torch.atan2(y, x)
    s2 = x**2 + y**2
    df = 0.5 * (dfu + dfv + (dfu - dfv) * torch.cos(2 * (angle - torch.deg2rad(torch.as_tensor(dfang)))))
    gamma = 2 * torch.pi * (-0.5 * df * lam * s2 + 0.25 * cs_a * lam**3 * s2**2)
    gamma = gamma - torch.deg2rad(torch.as_tensor(phase))
    ctf = (1 - w**2) ** 0.5 * torch.sin(gamma) - w * torch.cos(gamma)
    if bfactor is not None:
        ctf = ctf * torch.exp(-bfactor / 4 * s2)
    return ctf


def ctf_from_params(params: torch.Tensor, freqs: torch.Tensor, D: int) -> torch.Tensor:
    """CTF [B, n] at lattice frequencies `freqs` [n, 2] (cycles/px) from cryoDRGN rows [B, 9].

    The pixel size is rescaled to the box D (a downsampled stack keeps its physics).
    """
    apix = params[:, 1:2] * params[:, 0:1] / D
    return compute_ctf(freqs[None] / apix[:, :, None], *(params[:, i:i + 1] for i in range(2, 9)))


def ctf_images(params, D: int | None = None) -> torch.Tensor:
    """CTF images [B, D, D] on the centered lattice from cryoDRGN parameter rows [B, 9].

    D defaults to the box in the parameters; the pixel size is scaled so that a smaller D is
    the same physical CTF at the downsampled pixel size (Fourier cropping keeps frequencies).
    """
    p = torch.as_tensor(np.asarray(params) if not torch.is_tensor(params) else params,
                        dtype=torch.float32)
    p = p.reshape(-1, 9)
    box = int(p[0, 0]) if D is None else D
    freqs = coords_2d(box, dtype=p.dtype)[:, :2].to(p.device)
    return ctf_from_params(p, freqs, box).reshape(-1, box, box)
