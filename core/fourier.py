"""Centered Fourier and Hartley transforms (DC at index D//2), 2D and 3D, torch or numpy.

Convention (DESIGN.md): H = Re F - Im F of the centered FFT; the inverse Hartley transform is
the forward one divided by the number of samples. Functions accept torch tensors or numpy
arrays and return the same kind; the transform acts on the last 2 (or 3) axes.
"""
from __future__ import annotations

import functools

import numpy as np
import torch


def _numpy_in_numpy_out(fn):
    @functools.wraps(fn)
    def wrapper(x, *args, **kwargs):
        if isinstance(x, np.ndarray):
            return fn(torch.from_numpy(x), *args, **kwargs).numpy()
        return fn(x, *args, **kwargs)
    return wrapper


def _dims(ndim: int) -> tuple[int, ...]:
    return tuple(range(-ndim, 0))


def _fft_center(x: torch.Tensor, ndim: int) -> torch.Tensor:
    d = _dims(ndim)
    return torch.fft.fftshift(torch.fft.fftn(torch.fft.ifftshift(x, dim=d), dim=d), dim=d)


def _ifft_center(x: torch.Tensor, ndim: int) -> torch.Tensor:
    d = _dims(ndim)
    return torch.fft.fftshift(torch.fft.ifftn(torch.fft.ifftshift(x, dim=d), dim=d), dim=d)


@_numpy_in_numpy_out
def fft2_center(x):
    """Centered 2D FFT of real or complex images [..., D, D]."""
    return _fft_center(x, 2)


@_numpy_in_numpy_out
def ifft2_center(x):
    """Inverse of fft2_center (complex result)."""
    return _ifft_center(x, 2)


@_numpy_in_numpy_out
def fft3_center(x):
    """Centered 3D FFT of volumes [..., D, D, D]."""
    return _fft_center(x, 3)


@_numpy_in_numpy_out
def ifft3_center(x):
    """Inverse of fft3_center (complex result)."""
    return _ifft_center(x, 3)


def fourier_to_hartley(f):
    """Hartley coefficients Re F - Im F of Fourier coefficients."""
    return f.real - f.imag


@_numpy_in_numpy_out
def ht2_center(x):
    """Centered 2D Hartley transform of real images."""
    return fourier_to_hartley(_fft_center(x, 2))


@_numpy_in_numpy_out
def iht2_center(h):
    """Inverse centered 2D Hartley transform (real images)."""
    n = h.shape[-1] * h.shape[-2]
    return fourier_to_hartley(_fft_center(h, 2)) / n


@_numpy_in_numpy_out
def ht3_center(x):
    """Centered 3D Hartley transform of real volumes."""
    return fourier_to_hartley(_fft_center(x, 3))


@_numpy_in_numpy_out
def iht3_center(h):
    """Inverse centered 3D Hartley transform (real volumes)."""
    n = h.shape[-1] * h.shape[-2] * h.shape[-3]
    return fourier_to_hartley(_fft_center(h, 3)) / n


def hartley_to_fourier(h, h_neg):
    """Fourier coefficients from Hartley values at k (`h`) and at -k (`h_neg`).

    For a real signal F(k) = (H(k) + H(-k))/2 - i (H(k) - H(-k))/2.
    """
    return torch.complex((h + h_neg) / 2, (h_neg - h) / 2)
