"""Latents of new images with a trained run (cryoscape or cryoDRGN): q(z|X) posterior means.

The images go through the run's own preprocessing (window, inversion, Hartley transform,
the run's `norm`), are centred with their translations and phase-flipped by their CTF, as in
training; rotations are not needed.
"""
from __future__ import annotations

import os

import numpy as np
import torch
from cryoscape.core.errors import CryoscapeError, InputFileError
from cryoscape.core.train.data import TrainData
from cryoscape.core.train.loop import encode_all


def encode_particles(run, particles: str | os.PathLike, *, poses=None,
                     ctf=None, ind=None, datadir=None, lazy: bool = True,
                     epoch: int | None = None, batch_size: int = 256,
                     device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """(mu, logvar) [N, zdim] float32 of `particles` under the encoder of `run` (a Run or
    its folder)."""
    from cryoscape.core.run import Run
    run = run if isinstance(run, Run) else Run.open(run)
    conf, ds, model_args = run.config, run.config["dataset_args"], run.model_args
    if not run.zdim:
        raise CryoscapeError(f"{run.path}: a homogeneous run (zdim 0) has no encoder")
    data = TrainData(str(particles), poses=poses, ctf=ctf, ind=ind, datadir=datadir, lazy=lazy,
                     invert=ds.get("invert_data", True), window=ds.get("window", True),
                     window_r=ds.get("window_r", 0.85), norm=ds["norm"],
                     enc_radius=model_args.get("enc_mask"), need_poses=False, device=device)
    if data.D != run.D:
        raise InputFileError(particles, f"images are {data.D} px but the run was trained on "
                                        f"{run.D} px; downsample them first")
    if (conf.get("cryoscape") or {}).get("uses_ctf", bool(ds.get("ctf"))) and data.ctf is None:
        raise CryoscapeError(f"{run.path} was trained with CTF correction: give --ctf (or a "
                             ".star/.cs with CTF) for the images")
    model = run.model(epoch).to(device)
    with torch.no_grad():
        return encode_all(model, data, batch_size)
