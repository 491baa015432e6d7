"""Latents of new images with a trained run (cryoscape or cryoDRGN): q(z|X) posterior means.

The images go through the run's own preprocessing (window, inversion, Hartley transform,
the run's `norm`), are centred with their translations and phase-flipped by their CTF, as in
training; rotations are not needed.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from cryoscape.core.errors import CryoscapeError, InputFileError
from cryoscape.core.models.cryodrgn_compat import load_config, load_model
from cryoscape.core.train.data import TrainData
from cryoscape.core.train.loop import encode_all


def _weights_path(run: Path, epoch: int | None) -> Path:
    if epoch is not None:
        p = run / f"weights.{epoch}.pkl"
        if not p.exists():
            raise InputFileError(p, "no such epoch in this run")
        return p
    if (run / "weights.pkl").exists():
        return run / "weights.pkl"
    numbered = sorted(run.glob("weights.*.pkl"), key=lambda q: int(q.name.split(".")[1]))
    if not numbered:
        raise InputFileError(run, "no weights*.pkl: not a trained run")
    return numbered[-1]


def encode_particles(run: str | os.PathLike, particles: str | os.PathLike, *, poses=None,
                     ctf=None, ind=None, datadir=None, lazy: bool = True,
                     epoch: int | None = None, batch_size: int = 256,
                     device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """(mu, logvar) [N, zdim] float32 of `particles` under the run's encoder."""
    run = Path(run)
    conf = load_config(run / "config.yaml")
    try:
        ds, model_args, lattice_D = conf["dataset_args"], conf["model_args"], \
            int(conf["lattice_args"]["D"])
    except (KeyError, TypeError, ValueError) as e:
        raise InputFileError(run / "config.yaml", f"not a usable run config ({e})") from None
    if not model_args.get("zdim"):
        raise CryoscapeError(f"{run}: a homogeneous run (zdim 0) has no encoder")
    data = TrainData(str(particles), poses=poses, ctf=ctf, ind=ind, datadir=datadir, lazy=lazy,
                     invert=ds.get("invert_data", True), window=ds.get("window", True),
                     window_r=ds.get("window_r", 0.85), norm=ds["norm"],
                     enc_radius=model_args.get("enc_mask"), need_poses=False, device=device)
    if data.D + 1 != lattice_D:
        raise InputFileError(particles, f"images are {data.D} px but the run was trained on "
                                        f"{lattice_D - 1} px; downsample them first")
    if (conf.get("cryoscape") or {}).get("uses_ctf", bool(ds.get("ctf"))) and data.ctf is None:
        raise CryoscapeError(f"{run} was trained with CTF correction: give --ctf (or a "
                             ".star/.cs with CTF) for the images")
    model = load_model(conf, _weights_path(run, epoch))[0].to(device)
    with torch.no_grad():
        return encode_all(model, data, batch_size)
