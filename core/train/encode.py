"""Latents of images under a trained encoder (cryoscape or cryoDRGN): q(z|X) posteriors.

One pipeline for particle files, `Particles` and image arrays, and it is training's own:
`TrainData` preprocesses the images as the run's training images were (window, inversion,
Hartley transform, the run's `norm`) and centres them by their translations, and
`forward.encoder_input` phase-flips them by the sign of their CTF. Rotations are not needed.
"""
from __future__ import annotations

import os

import numpy as np
import torch
from cryoscape.core.errors import CryoscapeError, InputFileError
from cryoscape.core.io.downsample import check_run_box
from cryoscape.core.io.particles import Particles, load_particles
from cryoscape.core.io.stack import ImageSource
from cryoscape.core.models.cryodrgn_compat import model_args, unsupported_encoder
from cryoscape.core.poses import tilt_rotation
from cryoscape.core.train.data import TrainData
from cryoscape.core.train.loop import encode_all


def as_particles(images, *, poses=None, ctf=None, shifts=None, ind=None,
                 datadir=None) -> Particles:
    """The `Particles` to encode: a particle file (.mrcs/.txt/.star/.cs; poses, ctf, ind and
    datadir as `load_particles` takes them), a `Particles` (as it is, index included), or images
    [N, D, D] (an array or ImageSource) with their CTF [N, 9] (cryoDRGN parameters) and the
    content shifts [N, 2] px that training undid (None: centred)."""
    if isinstance(images, Particles):
        return images
    if isinstance(images, (str, os.PathLike)):
        return load_particles(images, poses=poses, ctf=ctf, ind=ind, datadir=datadir, lazy=True)
    src = images if isinstance(images, ImageSource) else ImageSource.from_array(
        np.asarray(images, dtype=np.float32).reshape(-1, *np.shape(images)[-2:]))
    n = len(src)
    for what, arr, width in (("ctf", ctf, 9), ("shifts", shifts, 2)):
        if arr is not None and np.shape(arr) != (n, width):
            raise CryoscapeError(f"{what} must be [{n}, {width}] for {n} images, got "
                                 f"{list(np.shape(arr))}")
    ctf = None if ctf is None else np.asarray(ctf, dtype=np.float32)
    shifts = None if shifts is None else np.asarray(shifts, dtype=np.float32)
    apix = float(ctf[0, 1]) if ctf is not None and n else src.apix
    return Particles(src, None, shifts, ctf, apix, src.D, None, "images")


def uses_ctf(config: dict) -> bool:
    """Whether a run's encoder saw CTF-phase-flipped images."""
    ds = config.get("dataset_args") or {}
    return bool((config.get("cryoscape") or {}).get("uses_ctf", bool(ds.get("ctf"))))


def check_encoder(model, config: dict, tilt=None) -> None:
    """Refuse what a run's encoder cannot take: a tilt-pair encoder needs each particle's tilted
    image, a one-image encoder refuses them, and a cryoDRGN encoder that cryoscape does not read
    (`cryodrgn_compat.unsupported_encoder`: the run opened without it) encodes nothing."""
    if model.zdim and model.encoder is None:
        raise CryoscapeError(f"this run cannot encode images: {unsupported_encoder(config)}")
    if model.tilt and tilt is None:
        raise CryoscapeError("this run was trained on tilt pairs: encoding needs the images' "
                             "tilted pairs too (--tilt TILT_STACK; tilt= in Python)")
    if tilt is not None and model.zdim and not model.tilt:
        raise CryoscapeError("this run's encoder takes single images, not tilt pairs: leave "
                             "out the tilt stack")


def tilt_rotation_of(config: dict) -> np.ndarray:
    """The stage tilt T [3, 3] a tilt-pair run trained with (its config's tilt_deg)."""
    deg = (config.get("dataset_args") or {}).get("tilt_deg")
    if deg is None:
        raise CryoscapeError("the run's config records no tilt angle (dataset_args.tilt_deg): "
                             "it was not trained on tilt pairs by cryoscape")
    return tilt_rotation(float(deg))


def posterior(model, config: dict, particles: Particles, *, batch_size: int = 256,
              device="cpu", tilt: Particles | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(mu, logvar) [N, zdim] float32 of `particles` under `model`, a run's VAE with its
    config (cryoDRGN's sections: dataset_args, lattice_args, model_args). A model trained on
    tilt pairs needs the particles' tilted images, `tilt` (centred by the particles' shifts,
    with their own CTF or else the particles')."""
    check_encoder(model, config, tilt)
    ds = config["dataset_args"]
    D = int(config["lattice_args"]["D"]) - 1
    check_run_box(particles, D)
    if uses_ctf(config) and particles.ctf is None:
        raise InputFileError(particles.path, "the run was trained with CTF correction: give "
                                             "the images' CTF (--ctf, a .star/.cs with CTF, or "
                                             "ctf= for arrays)")
    data = TrainData(particles, invert=ds.get("invert_data", True),
                     window=ds.get("window", True), window_r=ds.get("window_r", 0.85),
                     norm=ds["norm"], enc_radius=model_args(config).get("enc_mask"),
                     lazy=True, need_poses=False, device=device, tilt=tilt, downsample=D)
    model = model.to(device)
    with torch.no_grad():
        return encode_all(model, data, batch_size)
