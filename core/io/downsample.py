"""Downsampling particle stacks by Fourier cropping, chunk by chunk in bounded memory, and
the matching star/cs metadata (new stack, box and pixel size).

Cropping keeps every Fourier coefficient strictly inside the new box (|k| < d/2) exactly,
scaled by (d/D)^2 so that real-space pixel values keep their scale.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from cryoscape.core.errors import CryoscapeError, InputFileError
from cryoscape.core.io.mrc import new_mrc_stack
from cryoscape.core.io.stack import ImageSource


def fourier_crop(images, d: int) -> np.ndarray:
    """Images [n, D, D] -> [n, d, d] by keeping the Fourier coefficients with |k| <= d/2
    (D, d even). Pixel j of the result lies at pixel j * D / d of the input, so the centre
    (D/2 -> d/2) stays put, as with cropping the centered FFT."""
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    D = x.shape[-1]
    if d == D:
        return x.numpy().copy()
    h = d // 2
    F = torch.fft.rfft2(x)  # half spectrum, uncentered: rows 0..D-1, columns 0..D/2
    crop = torch.cat([F[..., :h, :h + 1], F[..., D - h:, :h + 1]], dim=-2)
    return (torch.fft.irfft2(crop, s=(d, d)) * (d / D) ** 2).numpy()


class CroppedSource:
    """An image source seen Fourier-cropped to box d (`fourier_crop` on every access, nothing
    written): `len()`, `.D`, `.apix` (scaled by D/d) and `src[idx]` as ImageSource's."""

    def __init__(self, src, d: int):
        self.src, self.D, self.apix = src, int(d), src.apix * src.D / d

    def __len__(self) -> int:
        return len(self.src)

    def __getitem__(self, idx) -> np.ndarray:
        return fourier_crop(self.src[idx], self.D)


def check_run_box(p, D: int) -> None:
    """Refuse images smaller than the box D a run was trained on; larger ones serve, Fourier-
    cropped to D as they are read (TrainData's `downsample`, as `train --downsample`)."""
    if p.D < D:
        raise InputFileError(p.path, f"images are {p.D} px but the run was trained on {D} px "
                                     "(larger images are Fourier-cropped to it, smaller ones "
                                     "cannot serve)")


def downsample_particles(p, d: int):
    """Particles (core.io.particles) with images Fourier-cropped to box d as they are read,
    shifts in the new pixels and CTF parameters for box d at the new pixel size."""
    from cryoscape.core.io.particles import Particles
    if d % 2 or d < 2 or d > p.D:
        raise CryoscapeError(f"--downsample {d}: the new box must be even, at least 2 and at "
                             f"most the images' {p.D} px")
    if d == p.D:
        return p
    f = p.D / d
    ctf = None if p.ctf is None else np.array(p.ctf, dtype=np.float32)
    if ctf is not None:
        ctf[:, 0], ctf[:, 1] = d, ctf[:, 1] * f
    shifts = None if p.shifts is None else np.asarray(p.shifts, dtype=np.float32) / f
    return Particles(CroppedSource(p.images, d), p.rotations, shifts, ctf, p.apix * f, d,
                     p.metadata, p.path)


def auto_chunk(D: int, budget_bytes: int = 256 * 2**20) -> int:
    """Images per chunk so that one chunk's transforms stay within about `budget_bytes`."""
    return max(1, budget_bytes // (D * D * 4 * 4))


def downsample_stack(src: ImageSource, d: int, out: str | os.PathLike,
                     chunk: int | None = None, progress: bool = True) -> float:
    """Write the Fourier-cropped images of `src` to the stack `out` (atomically, memory-mapped
    so it may exceed memory); return the new pixel size."""
    if d % 2 or d < 2:
        raise CryoscapeError(f"the new box size must be even and at least 2 (got {d})")
    if d > src.D:
        raise CryoscapeError(f"the new box size {d} is larger than the images' {src.D}")
    chunk = chunk or auto_chunk(src.D)
    apix = src.apix * src.D / d
    from tqdm import tqdm
    with (new_mrc_stack(out, (len(src), d, d), apix=apix) as data,
          tqdm(total=len(src), unit="img", desc="downsample", disable=not progress) as bar):
        for i, imgs in src.chunks(chunk):
            data[i:i + len(imgs)] = fourier_crop(imgs, d)
            bar.update(len(imgs))
    return apix


def _image_names(n: int, stack_name: str) -> list[str]:
    return [f"{i + 1:06d}@{stack_name}" for i in range(n)]


def downsampled_star(star, stack_name: str, D: int, d: int):
    """A copy of a StarFile naming images 1..N of `stack_name`, with box d and pixel sizes
    (and pixel origins) scaled by D/d; every other column is kept."""
    from cryoscape.core.io.star import StarFile
    f = D / d
    parts = star.particles.copy()
    optics = None if star.optics is None else star.optics.copy()
    parts["rlnImageName"] = _image_names(len(parts), stack_name)
    for table in (t for t in (parts, optics) if t is not None):
        for c in ("rlnImagePixelSize", "rlnPixelSize"):
            if c in table.columns:
                table[c] = table[c].astype(np.float64) * f
        if "rlnImageSize" in table.columns:
            table["rlnImageSize"] = d
        if "rlnMagnification" in table.columns and "rlnImagePixelSize" not in table.columns:
            table["rlnMagnification"] = table["rlnMagnification"].astype(np.float64) / f
    for c in ("rlnOriginX", "rlnOriginY"):
        if c in parts.columns:
            parts[c] = parts[c].astype(np.float64) / f
    return StarFile(parts, optics, star.version, None, star.particles_block, dict(star.other))


def downsampled_cs(arr: np.ndarray, stack_name: str, D: int, d: int) -> np.ndarray:
    """A copy of a cryoSPARC array pointing at `stack_name` (blob/idx 0..N-1), with box d,
    pixel sizes scaled by D/d and shifts in the new pixels."""
    f = D / d
    names = arr.dtype.names
    descr = [(n, f"S{max(len(stack_name.encode()), 1)}", *s) if n == "blob/path" else
             (n, t, *s) for n, t, *s in arr.dtype.descr]
    out = np.empty(len(arr), dtype=np.dtype(descr))
    for n in names:
        out[n] = arr[n]
    out["blob/path"] = stack_name.encode()
    out["blob/idx"] = np.arange(len(arr))
    if "blob/shape" in names:
        out["blob/shape"] = d
    for n in names:
        if n.endswith("/psize_A"):
            out[n] = arr[n] * f
        if n.endswith("/shift") and n.startswith("alignment"):
            out[n] = arr[n] / f
    return out


def relative_name(stack: str | os.PathLike, meta: str | os.PathLike) -> str:
    """How the metadata file `meta` names `stack`: relative to its folder when possible."""
    stack, base = Path(stack).resolve(), Path(meta).resolve().parent
    try:
        return os.path.relpath(stack, base)
    except ValueError:  # another drive (Windows)
        return str(stack)
