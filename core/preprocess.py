"""Image preprocessing as cryoDRGN does it, for training and for encoding new images.

Real-space window (a linear ramp from `in_rad` to `out_rad` of the half box), contrast
inversion (RELION particles are protein-white; cryoDRGN's default `invert_data` flips them),
centered Hartley transform, extension to the symmetric (D+1)^2 lattice (the -0.5 row and column
repeated at +0.5), and normalisation `(h - mean) / std` with `norm = (mean, std)` as cryoDRGN's
`dataset_args.norm` (mean 0, std of the symmetrised Hartley images).
"""
from __future__ import annotations

import numpy as np
import torch
from cryoscape.core.fourier import ht2_center


def window_mask(D: int, in_rad: float = 0.85, out_rad: float = 0.99) -> torch.Tensor:
    """[D, D] float32: 1 inside radius in_rad (fraction of the half box), 0 beyond out_rad."""
    if D % 2:
        raise ValueError(f"box size must be even, got {D}")
    f = torch.from_numpy(np.linspace(-1, 1, D, endpoint=False, dtype=np.float32))
    y, x = torch.meshgrid(f, f, indexing="ij")
    r = (x ** 2 + y ** 2).sqrt()
    return (1 - (r - in_rad) / (out_rad - in_rad)).clamp(0.0, 1.0)


def symmetrize_ht(h: torch.Tensor) -> torch.Tensor:
    """[..., D, D] centered Hartley images -> [..., D+1, D+1] on the symmetric lattice."""
    top = torch.cat([h, h[..., :, :1]], -1)
    return torch.cat([top, top[..., :1, :]], -2)


def hartley_images(images, window: torch.Tensor | None = None, invert: bool = True) -> torch.Tensor:
    """Windowed, optionally inverted Hartley transforms [B, D+1, D+1] (not normalised)."""
    x = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images,
                        dtype=torch.float32)
    if window is not None:
        x = x * window
    h = ht2_center(x)
    if invert:
        h = -h
    return symmetrize_ht(h)


def estimate_norm(images, invert: bool = True,
                  window: torch.Tensor | None = None) -> tuple[float, float]:
    """cryoDRGN's normalisation (0, std) of the symmetrised Hartley images (float64 sum)."""
    h = hartley_images(images, window, invert).double()
    return 0.0, float(h.std(unbiased=False))


def preprocess_images(images, window: torch.Tensor | None = None, invert: bool = True,
                      norm: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """Real images [B, D, D] -> normalised symmetric-lattice Hartley images [B, D+1, D+1]."""
    h = hartley_images(images, window, invert)
    return (h - float(norm[0])) / float(norm[1])


def protein_white(images) -> bool | None:
    """Whether particles [N, D, D] are protein-white: brighter in the middle of the box (radius
    < D/4) than near its edge (0.75 .. 0.95 of the half box), on average over the images; None
    where the difference is within 3 standard errors of zero (the images do not tell)."""
    x = torch.as_tensor(np.asarray(images), dtype=torch.float64)
    f = torch.linspace(-1, 1, x.shape[-1] + 1, dtype=torch.float64)[:-1]
    r = (f[:, None] ** 2 + f[None, :] ** 2).sqrt()
    inner, edge = r < 0.5, (r >= 0.75) & (r < 0.95)
    d = x[:, inner].mean(1) - x[:, edge].mean(1)
    if len(d) < 2:
        return None
    mean, se = float(d.mean()), float(d.std()) / len(d) ** 0.5
    return None if abs(mean) <= 3 * se else mean > 0


def infer_invert(images, has_ctf: bool) -> bool:
    """`invert_data` for particles whose contrast nobody gave: the decoder's map is positive
    density when the images it fits are +CTF . projection. With a CTF the images follow RELION's
    convention (-CTF . projection: invert, cryoDRGN's default); without one they are projections
    (white protein: keep) or phase-flipped RELION images (black protein: invert), told apart by
    `protein_white` (inverting where the images do not tell, as cryoDRGN)."""
    return has_ctf or protein_white(images) is not True
