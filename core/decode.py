"""Volumes from a trained decoder: batched over latents, chunked over voxels, real by design.

The decoder is evaluated on the box-D frequency lattice (i - D/2)/D (which is cryoDRGN's
(D+1)-lattice without its last +0.5 row/column/plane, i.e. exactly the voxels cryoDRGN keeps),
scaled by `norm`, and inverse Hartley transformed. A Fourier-domain decoder is evaluated only on
the lower half of the sphere |k| <= 0.5 and the upper half is filled by Hermitian symmetry, as
cryoDRGN's `eval_volume` does; a Hartley-domain one is evaluated on every voxel (cryoDRGN) or on
the sphere only (`sphere=True`).

A preview box b < D evaluates only the central b^3 frequencies (with `sphere`, only those
inside the preview's own Nyquist sphere |k| <= b / 2D, as cryoDRGN's `eval_vol --downsample`):
the map of the same object, low-passed to the new Nyquist limit, on a b^3 grid with voxel size
apix * D / b. Its values are scaled by (b/D)^3 so the density (and an isosurface threshold)
stays comparable to the full map; `fourier.fourier_resample` does the same to an existing map.
"""
from __future__ import annotations

import numpy as np
import torch
from cryoscape.core.device import CPU_CHUNK_FLOATS, decode_chunk, free_memory
from cryoscape.core.fourier import fft3_center, ifft3_center, iht3_center
from cryoscape.core.models.decoder import FourierDecoder, upper_half

# floats per chunk of MLP activations of the pose search's slices (core.posesearch); maps are
# decoded in chunks sized from the free memory (core.device.decode_chunk)
CHUNK_FLOATS = {"cpu": CPU_CHUNK_FLOATS, "cuda": 2 ** 24}
# voxels of the maps decoded in one call (32 maps of 64^3, 4 of 128^3, one of 256^3): a call
# holds about 40 bytes a voxel (decoder output, inverse transform, result), ~330 MB at most
# however many maps are asked for
MAP_BATCH_VOXELS = 2 ** 23


def maps_per_call(box: int) -> int:
    """How many maps of box^3 one decoder call decodes: memory bounded whatever their number."""
    return max(1, MAP_BATCH_VOXELS // int(box) ** 3)


def _grid(b: int, D: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(coords [b^3, 3] (x, y, z) cycles/px of box D, integer indices [b^3, 3] (x, y, z))."""
    i = torch.arange(b, device=device)
    iz, iy, ix = torch.meshgrid(i, i, i, indexing="ij")
    idx = torch.stack([ix.reshape(-1), iy.reshape(-1), iz.reshape(-1)], 1)
    return (idx - b // 2).float() / D, idx


def _evaluate(fn, coords: torch.Tensor, z: torch.Tensor | None, chunk: int, n_out: int):
    """fn(coords chunk, z) over point chunks, its n_out outputs written into [M, n] tensors
    made first (gathering the chunks' outputs instead leaves them between the chunks' freed
    activations: the heap fragments, 32 maps of 64^3 peaked at 3.8 GB)."""
    M = 1 if z is None else len(z)
    outs = [coords.new_empty(M, len(coords)) for _ in range(n_out)]
    for s in range(0, len(coords), chunk):
        r = fn(coords[s:s + chunk], z)
        for o, v in zip(outs, r if isinstance(r, tuple) else (r,)):
            o[:, s:s + chunk] = v.reshape(M, -1)
    return outs


@torch.inference_mode()
def decode_hartley(decoder, z: torch.Tensor | None, D: int, box: int | None = None,
                   sphere: bool | None = None, chunk: int | None = None,
                   bf16: bool = False) -> torch.Tensor:
    """Decoder output (Hartley values, before `norm`) on the central box^3 frequencies of box D.

    z [M, zdim] or None (homogeneous: M = 1). sphere: evaluate only |k| <= b / 2D, the output
    box's Nyquist sphere (default: True for Fourier-domain decoders, False for Hartley-domain
    ones, as cryoDRGN). bf16: the MLP's products in bfloat16 autocast (the positional encoding
    stays float32): 3-4x faster where the device has native bf16 (`device.native_bf16`), maps
    within 0.3% (correlation 0.99999 on a trained 3x256 run); for many maps at once (the
    landscape's sketch), not for the maps a user exports. -> [M, b, b, b].
    """
    b = D if box is None else int(box)
    if b % 2 or D % 2 or not 2 <= b <= D:
        raise ValueError(f"box sizes must be even with preview box <= {D}; got {b}")
    fourier = isinstance(decoder, FourierDecoder)
    sphere = fourier if sphere is None else sphere
    device = next(decoder.parameters()).device
    if z is not None:
        z = torch.as_tensor(z, dtype=torch.float32, device=device).reshape(-1, decoder.zdim)
    M = 1 if z is None else len(z)
    coords, idx = _grid(b, D, device)
    keep = (coords.pow(2).sum(1) <= (b / (2 * D)) ** 2 if sphere
            else torch.ones(len(coords), dtype=torch.bool, device=device))
    hidden = max(m.out_features for m in decoder.decoder.modules()
                 if isinstance(m, torch.nn.Linear))
    chunk = chunk or decode_chunk(device.type, free_memory(device), hidden, M)
    out = torch.zeros(M, b ** 3, device=device)
    if fourier:
        upper = upper_half(coords)
        has_twin = (idx > 0).all(1)
        origin = (idx == b // 2).all(1)
        ev = keep & (~upper | ~has_twin)
        sel = ev.nonzero().squeeze(1)
        with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
            h, h_neg = _evaluate(decoder.hartley_pair, coords[sel], z, chunk, 2)
        out[:, sel] = h.reshape(M, -1)
        mirror = (~upper & has_twin & ~origin)[sel]
        tw = b - idx[sel[mirror]]
        out[:, tw[:, 0] + b * (tw[:, 1] + b * tw[:, 2])] = h_neg.reshape(M, -1)[:, mirror]
    else:
        sel = keep.nonzero().squeeze(1)
        with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
            out[:, sel] = _evaluate(decoder, coords[sel], z, chunk, 1)[0]
    return out.reshape(M, b, b, b)


def decode_volumes(decoder, z: torch.Tensor | None, D: int, norm=(0.0, 1.0),
                   box: int | None = None, sphere: bool | None = None,
                   chunk: int | None = None, bf16: bool = False) -> torch.Tensor:
    """Real-space volumes [M, b, b, b] float32 ([z, y, x]) at latents z [M, zdim] (or None).

    norm = (mean, std) of the training images' Hartley transforms (cryoDRGN dataset_args.norm).
    """
    h = decode_hartley(decoder, z, D, box, sphere, chunk, bf16)
    b = h.shape[-1]
    vol = iht3_center(h * float(norm[1]) + float(norm[0]))
    if b != D:
        vol = vol * (b / D) ** 3
    return vol.float().cpu()


def decode_batches(decoder, z: torch.Tensor | None, D: int, norm=(0.0, 1.0),
                   box: int | None = None, sphere: bool | None = None,
                   batch: int | None = None, bf16: bool = False):
    """Yield volumes [m, b, b, b] (`decode_volumes`) of consecutive rows of z [M, zdim], at
    most `batch` (default `maps_per_call(b)`) at a time; one volume for z None."""
    if z is None:
        yield decode_volumes(decoder, None, D, norm, box, sphere, bf16=bf16)
        return
    batch = batch or maps_per_call(D if box is None else box)
    for s in range(0, len(z), batch):
        yield decode_volumes(decoder, z[s:s + batch], D, norm, box, sphere, bf16=bf16)


def flip_hand(vol):
    """The mirror image (handedness flipped) by reversing the z axis of [..., z, y, x] maps."""
    return np.flip(vol, -3).copy() if isinstance(vol, np.ndarray) else vol.flip(-3)


def invert_contrast(vol):
    return -vol


def lowpass(vol, resolution: float, apix: float, edge_px: float = 1.0):
    """Low-pass [..., D, D, D] maps to `resolution` Å: Fourier components beyond 1/resolution
    removed, with a cosine edge `edge_px` Fourier pixels wide just below the cutoff."""
    t = torch.as_tensor(vol, dtype=torch.float32)
    D = t.shape[-1]
    if resolution <= 0:
        raise ValueError(f"low-pass resolution must be positive, got {resolution}")
    cutoff = D * apix / resolution  # in Fourier pixels
    f = torch.arange(D) - D // 2
    r = (f[:, None, None] ** 2 + f[None, :, None] ** 2 + f[None, None, :] ** 2).float().sqrt()
    x = ((r - (cutoff - edge_px)) / edge_px).clamp(0, 1)
    filt = torch.where(r > cutoff, 0.0, 0.5 * (1 + torch.cos(torch.pi * x)))
    out = ifft3_center(fft3_center(t) * filt).real
    return out.numpy() if isinstance(vol, np.ndarray) else out


def apply_map_options(vol, apix: float, flip: bool = False, invert: bool = False,
                      lowpass_A: float | None = None):
    """The map options users expect: low-pass to lowpass_A Å, flip hand, invert contrast."""
    if lowpass_A:
        vol = lowpass(vol, lowpass_A, apix)
    if flip:
        vol = flip_hand(vol)
    if invert:
        vol = invert_contrast(vol)
    return vol
