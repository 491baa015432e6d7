"""Write a synthetic dataset with ground truth (the paper's appendix B.1 / D.1, CTF optional).

Each image: a uniformly random rotation, a coordinate or state of the model drawn uniformly,
a shift drawn uniformly in [-max_shift, max_shift]^2 px, optionally a CTF with random defocus
and astigmatism, then white Gaussian noise at the requested SNR: the variance of the
noise-free images (after the CTF, over the whole D x D image, averaged over the dataset) over
the variance of the noise. The stack is written chunk by chunk into a memory map (clean images
first, noise added in a second pass once the signal variance is known), so memory stays bounded.

The folder holds `particles.mrcs`, `particles.star` (RELION 3.1, poses and CTF), `poses.pkl`
and `ctf.pkl` (cryoDRGN), `truth.npz` and, on request, `volumes/` (MRC maps and coords.txt).
With a tilt (tilt pairs, the paper's appendix D.2) every particle is imaged a second time with
the stage tilted about x (poses `core.poses.tilted_poses`; same conformation, shift and CTF,
independent noise at the same SNR): `particles_tilt.mrcs`, `particles_tilt.star` and
`poses_tilt.pkl` beside the others, the tilt in truth.npz. Everything is deterministic given
the seed; the untilted files do not depend on whether a tilt is asked for.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from cryoscape.core.errors import CryoscapeError
from cryoscape.core.io.atomic import atomic_open
from cryoscape.core.io.cryodrgn import save_ctf, save_poses
from cryoscape.core.io.mrc import new_mrc_stack, write_mrc
from cryoscape.core.io.star import make_star, write_star
from cryoscape.core.poses import tilted_poses
from cryoscape.core.rotations import random_rotations
from cryoscape.core.simulate.projection import form_images, project_batch
from cryoscape.core.simulate.volumes import (
    COORD_DIMS,
    KINDS,
    MODEL_BOX_A,
    blob_slices,
    draw_coords,
    make_volumes,
    model_blobs,
)
from tqdm import tqdm


@dataclass
class SimulatedDataset:
    """What `simulate` wrote: the folder, the sizes and the noise level it used."""
    path: Path
    n: int
    D: int
    apix: float
    kind: str
    snr: float | None
    signal_var: float
    noise_std: float
    tilt_deg: float | None = None


def _random_ctf(n, D, apix, rng, defocus, astigmatism, voltage, cs, amp_contrast) -> np.ndarray:
    df = rng.uniform(defocus[0], defocus[1], n)
    astig = rng.uniform(0, astigmatism, n)
    ang = rng.uniform(0, 180, n)
    p = np.zeros((n, 9), dtype=np.float32)
    p[:, 0], p[:, 1], p[:, 2], p[:, 3], p[:, 4] = D, apix, df + astig / 2, df - astig / 2, ang
    p[:, 5], p[:, 6], p[:, 7], p[:, 8] = voltage, cs, amp_contrast, 0.0
    return p


def _truth_volume_coords(kind: str, states: int, n_vol: int = 10):
    """Coordinates (or states) at which `volumes/` holds the model's maps."""
    if kind in ("discrete", "volumes"):
        return np.arange(states)
    if kind in ("homogeneous", "volume"):
        return np.zeros((1, 0))
    if kind == "2d":
        g = np.linspace(0, 1, 5)
        return np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    return np.linspace(0, 1, n_vol, endpoint=kind != "circular")[:, None]


def _clean_chunks(kind, volumes, labels, R, shifts, ctf, D, states, batch_size):
    """Yield (index array, clean images [b, D, D]) covering every image once."""
    n = len(R)

    def sub(a, i):
        return None if a is None else torch.from_numpy(a[i])

    if volumes is not None:
        for k, vol in enumerate(volumes):
            idx = np.flatnonzero(labels == k)
            for s in range(0, len(idx), batch_size):
                i = idx[s:s + batch_size]
                yield i, project_batch(vol, torch.from_numpy(R[i]), sub(shifts, i), sub(ctf, i))
        return
    for s in range(0, n, batch_size):
        i = np.arange(s, min(n, s + batch_size))
        sl = blob_slices(model_blobs(kind, labels[i], D, states), torch.from_numpy(R[i]), D)
        yield i, form_images(sl, sub(shifts, i), sub(ctf, i))


def _resolve_source(source, D, apix, states):
    """(kind, volumes as tensors or None, D, apix, states) of a model name or volume arrays."""
    if isinstance(source, str):
        if source not in KINDS:
            raise CryoscapeError(f"unknown model {source!r}; choose one of {', '.join(KINDS)}")
        if D is None:
            raise CryoscapeError("a box size D is needed to simulate a built-in model")
        if source == "discrete" and states < 2:
            raise CryoscapeError(f"a discrete model needs at least 2 states, got {states}")
        D = int(D)
        if D % 2:
            raise CryoscapeError(f"the box size must be even, got {D}")
        return source, None, D, MODEL_BOX_A / D if apix is None else apix, states
    vols = np.asarray(source, dtype=np.float32)
    if vols.ndim == 3:
        vols = vols[None]
    if vols.ndim != 4 or len(set(vols.shape[1:])) != 1:
        raise CryoscapeError("volumes must be cubic [D, D, D] or [K, D, D, D], "
                             f"got {vols.shape}")
    if D is not None and D != vols.shape[-1]:
        raise CryoscapeError(f"D={D} differs from the volumes' box {vols.shape[-1]}")
    D, states = vols.shape[-1], len(vols)
    if D % 2:
        raise CryoscapeError(f"the box size must be even, got {D}")
    return ("volume" if states == 1 else "volumes", [torch.from_numpy(v) for v in vols], D,
            1.0 if apix is None else apix, states)


def _write_truth(out, kind, labels, states, D, apix, volumes, save_volumes, truth):
    """truth.npz with the per-image state or coordinate and, on request, volumes/."""
    if kind in ("discrete", "volumes", "volume"):
        truth["state"] = np.asarray(labels, dtype=np.int64)
    if COORD_DIMS.get(kind, 0):
        truth["coords"] = labels.astype(np.float32)
    if save_volumes:
        vc = _truth_volume_coords(kind, states)
        vols = (np.stack([v.numpy() for v in volumes]) if volumes is not None
                else make_volumes(kind, D, vc, states))
        for j, v in enumerate(vols):
            write_mrc(out / "volumes" / f"vol_{j:03d}.mrc", v, apix)
        with atomic_open(out / "volumes" / "coords.txt", "w") as f:
            np.savetxt(f, np.asarray(vc, dtype=np.float64).reshape(len(vols), -1), fmt="%.6g")
        truth["volume_coords"] = vc
    with atomic_open(out / "truth.npz", "wb") as f:
        np.savez(f, **truth)


def _write_stack(path, chunks, n, D, apix, snr, noise_seed, batch_size, progress,
                 desc="simulate"):
    """Write the clean images, then add the noise for `snr` (None: none) in a second pass.
    Returns (signal variance, noise standard deviation)."""
    bar = tqdm(total=n * (1 if snr is None else 2), unit="img", disable=not progress,
               desc=desc)
    var_sum, noise_std = 0.0, 0.0
    with new_mrc_stack(path, (n, D, D), apix) as data:
        for i, img in chunks:
            data[i] = img.numpy()
            var_sum += float(img.double().var(dim=(1, 2), unbiased=False).sum())
            bar.update(len(i))
        if snr is not None:
            noise_std = float(np.sqrt(var_sum / n / snr))
            noise_rng = np.random.default_rng(noise_seed)
            for s in range(0, n, batch_size):
                e = min(n, s + batch_size)
                data[s:e] += noise_std * noise_rng.standard_normal((e - s, D, D), np.float32)
                bar.update(e - s)
    bar.close()
    return var_sum / n, noise_std


def simulate(source, n: int, outdir: str | os.PathLike, *, D: int | None = None,
             apix: float | None = None, snr: float | None = None, ctf: bool = False,
             max_shift: float = 0.0, states: int = 10, save_volumes: bool = False, seed: int = 0,
             defocus: tuple[float, float] = (10000.0, 30000.0), astigmatism: float = 500.0,
             voltage: float = 300.0, cs: float = 2.7, amp_contrast: float = 0.1,
             tilt_deg: float | None = None, batch_size: int = 256,
             progress: bool = False) -> SimulatedDataset:
    """Simulate `n` particle images into `outdir` (see the module docstring).

    `source`: a built-in model kind (volumes.KINDS; needs D; apix defaults to MODEL_BOX_A / D;
    `states` is K for "discrete"), or a volume [D, D, D] or K volumes [K, D, D, D] as arrays
    ([z, y, x]; each image then shows one of them, drawn uniformly; apix defaults to 1).
    `snr` None (or inf) writes noise-free images; defocus range (A), astigmatism (largest
    dfU - dfV, A), voltage (kV), cs (mm) and amp_contrast describe the random CTFs.
    `tilt_deg`: also write the tilted image of every particle (tilt pairs).
    """
    if n < 1:
        raise CryoscapeError("the number of images must be at least 1")
    if snr is not None and not snr > 0:
        raise CryoscapeError(f"SNR must be positive, got {snr}")
    if max_shift < 0:
        raise CryoscapeError(f"the largest shift must not be negative, got {max_shift}")
    if tilt_deg is not None and not abs(tilt_deg) <= 90:
        raise CryoscapeError(f"the tilt must lie within -90 .. 90 degrees, got {tilt_deg}")
    kind, volumes, D, apix, states = _resolve_source(source, D, apix, states)

    rng = np.random.default_rng(seed)
    R = random_rotations(n, rng)
    shifts = (rng.uniform(-max_shift, max_shift, (n, 2)) if max_shift > 0
              else np.zeros((n, 2))).astype(np.float32)
    if volumes is not None:
        labels = rng.integers(0, states, n)
    else:
        labels = draw_coords(kind, n, rng, states)
    ctf_params = (_random_ctf(n, D, apix, rng, defocus, astigmatism, voltage, cs, amp_contrast)
                  if ctf else None)
    noisy = snr is not None and np.isfinite(snr)

    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    stale = [out / "ctf.pkl", out / "volumes" / "coords.txt", *out.glob("volumes/vol_*.mrc"),
             *(out / f for f in ("particles_tilt.mrcs", "particles_tilt.star", "poses_tilt.pkl"))]
    for f in stale:  # outputs of an earlier run that this one would not overwrite
        f.unlink(missing_ok=True)
    batch_size = max(1, min(batch_size, 2**24 // (D * D)))

    def write_stack(name, rotations, noise_seed, desc):
        chunks = _clean_chunks(kind, volumes, labels, rotations, shifts if max_shift > 0 else None,
                               ctf_params, D, states, batch_size)
        return _write_stack(out / f"{name}.mrcs", chunks, n, D, apix, snr if noisy else None,
                            noise_seed, batch_size, progress, desc)

    def write_metadata(name, poses_name, rotations):
        save_poses(out / poses_name, rotations, shifts, D)
        names = [f"{i + 1:06d}@{name}.mrcs" for i in range(n)]
        write_star(out / f"{name}.star", make_star(names, rotations, shifts, ctf_params, apix, D))

    signal_var, noise_std = write_stack("particles", R, [seed, 1], "simulate")

    if ctf_params is not None:
        save_ctf(out / "ctf.pkl", ctf_params)
    truth = {"kind": kind, "rotations": R, "shifts": shifts, "D": D, "apix": apix, "seed": seed,
             "snr": snr if noisy else np.inf, "signal_var": signal_var,
             "noise_std": noise_std, "states": states}
    if ctf_params is not None:
        truth["ctf"] = ctf_params
    if tilt_deg is not None:
        R_tilt = tilted_poses(R, tilt_deg)
        var_tilt, std_tilt = write_stack("particles_tilt", R_tilt, [seed, 2], "simulate tilt")
        write_metadata("particles_tilt", "poses_tilt.pkl", R_tilt)
        truth.update(tilt_deg=float(tilt_deg), rotations_tilt=R_tilt, signal_var_tilt=var_tilt,
                     noise_std_tilt=std_tilt)
    _write_truth(out, kind, labels, states, D, apix, volumes, save_volumes, truth)
    write_metadata("particles", "poses.pkl", R)
    return SimulatedDataset(out, n, D, float(apix), kind, snr if noisy else None, signal_var,
                            noise_std, None if tilt_deg is None else float(tilt_deg))
