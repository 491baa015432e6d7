"""Noise-free projection by the Fourier slice theorem, with shifts and the CTF.

The slice of a volume's centered 3D FFT at the 2D lattice `coords_2d(D) @ R` (R acts on row
vectors; cycles/px, voxel index D//2 + D*k along x, y, z of a [z, y, x] volume) is the Fourier
transform of the image. `fixtures/hand` pins this convention (tests/test_simulate.py).

Slices come from torch-fourier-slice's `project_3d_to_2d` (2x zero padding, sinc^2 correction
of its trilinear interpolation, slices sampled on the padded lattice and the image cropped, so
nothing wraps around). It rotates xyz column vectors, so cryoscape's R is passed as R^T; with
that, the test against the hand fixture holds. Measured against the exact (analytic) slices of
the built-in blob models it errs by 0.4% at D=32..64, half the error of sampling the padded
transform directly on the D lattice (which wraps the corners of the rotated box).

Images follow RELION's contrast: image = F^-1(-CTF . F(shifted projection)); without a CTF the
image is the projection itself (protein white).
"""
from __future__ import annotations

import numpy as np
import torch
from cryoscape.core.ctf import ctf_images
from cryoscape.core.errors import CryoscapeError
from cryoscape.core.fourier import fft2_center, ifft2_center
from cryoscape.core.lattice import phase_shift_2d
from torch_fourier_slice import project_3d_to_2d


def _tensor(x, dtype=torch.float32) -> torch.Tensor:
    if torch.is_tensor(x):
        return x.to(dtype)
    return torch.as_tensor(np.ascontiguousarray(x), dtype=dtype)


def form_images(slices_ft: torch.Tensor, shifts=None, ctf=None) -> torch.Tensor:
    """Real images [B, D, D] from centered projection transforms [B, D, D]: content moved by
    `shifts` [B, 2] px (x, y), CTF from cryoDRGN parameters [B, 9] with RELION's sign."""
    ft = slices_ft
    if shifts is not None:
        ft = phase_shift_2d(ft, _tensor(shifts).reshape(-1, 2))
    if ctf is not None:
        ft = -ctf_images(_tensor(ctf).reshape(-1, 9), ft.shape[-1]) * ft
    return ifft2_center(ft).real.contiguous()


def project_batch(volume: torch.Tensor, rotations, shifts=None, ctf=None) -> torch.Tensor:
    """Images [B, D, D] of one batch (see `project`); torch in and out."""
    if volume.shape[-1] < 10:
        raise CryoscapeError(f"box too small to project: {volume.shape[-1]} px (10 or more)")
    R = _tensor(rotations).reshape(-1, 3, 3)
    images = project_3d_to_2d(volume, R.transpose(-1, -2).contiguous(), pad_factor=2.0)
    if shifts is None and ctf is None:
        return images
    return form_images(fft2_center(images), shifts, ctf)


def project(volume, rotations, shifts=None, ctf=None, batch_size: int = 256):
    """Noise-free images [B, D, D] of `volume` [D, D, D] ([z, y, x]) along rotations [B, 3, 3]
    (row-vector convention), content moved by `shifts` [B, 2] px, CTF [B, 9] (cryoDRGN
    parameters) applied with RELION's contrast. numpy in, numpy out; torch in, torch out."""
    vol = _tensor(volume)
    R = _tensor(rotations).reshape(-1, 3, 3)
    shifts = None if shifts is None else _tensor(shifts).reshape(-1, 2)
    ctf = None if ctf is None else _tensor(ctf).reshape(-1, 9)
    out = [project_batch(vol, R[i:i + batch_size],
                         None if shifts is None else shifts[i:i + batch_size],
                         None if ctf is None else ctf[i:i + batch_size])
           for i in range(0, len(R), batch_size)]
    D = vol.shape[-1]
    images = torch.cat(out) if out else torch.zeros(0, D, D)
    return images if torch.is_tensor(volume) else images.numpy()
