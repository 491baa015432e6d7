"""Atomic, `weights_only`-loadable checkpoints and latent files.

`weights.N.pkl` holds what cryoDRGN's holds (`epoch` 1-based, `model_state_dict` under
cryoDRGN's parameter names, `optimizer_state_dict`); `checkpoint.pt` adds the exact resume
point: the position inside the epoch, the random generator states (as tensors), the epoch's
running sums and elapsed time.
"""
from __future__ import annotations

import os
import pickle

import numpy as np
import torch
from cryoscape.core.io.atomic import atomic_open
from cryoscape.core.io.pickles import load_checkpoint
from cryoscape.core.models.cryodrgn_compat import to_cryodrgn_state_dict

FORMAT = "cryoscape-checkpoint-1"


def save(path: str | os.PathLike, obj: dict) -> None:
    """torch.save `obj` atomically (temporary file, fsync, rename)."""
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def load(path: str | os.PathLike) -> dict:
    """torch.load with weights_only=True onto the CPU; unreadable or unsafe files raise
    InputFileError (see `cryoscape.core.io.pickles.load_checkpoint`)."""
    return load_checkpoint(path)


def weights_dict(model: torch.nn.Module, optim: torch.optim.Optimizer, epoch: int,
                 model_args: dict) -> dict:
    """cryoDRGN's weights.N.pkl content, parameters under cryoDRGN's names."""
    return {"epoch": epoch,
            "model_state_dict": to_cryodrgn_state_dict(model.state_dict(), model_args),
            "optimizer_state_dict": optim.state_dict()}


def resume_dict(model, optim, *, epoch: int, batch: int, noise: torch.Generator,
                sums: torch.Tensor, elapsed: float, epoch_elapsed: float,
                loss_mean: float) -> dict:
    """checkpoint.pt content: `epoch` epochs done plus `batch` batches of the next one
    (parameters under cryoscape's names)."""
    return {"format": FORMAT, "epoch": epoch, "model_state_dict": model.state_dict(),
            "optimizer_state_dict": optim.state_dict(), "batch": batch,
            "rng_torch": torch.get_rng_state(), "rng_noise": noise.get_state(),
            "sums": sums.clone(), "elapsed": float(elapsed),
            "epoch_elapsed": float(epoch_elapsed), "loss_mean": float(loss_mean)}


def save_latents(path: str | os.PathLike, mu: np.ndarray, logvar: np.ndarray) -> None:
    """A cryoDRGN z file: pickle of mu then pickle of logvar (float32), atomically."""
    with atomic_open(path, "wb") as f:
        pickle.dump(np.asarray(mu, dtype=np.float32), f, protocol=4)
        pickle.dump(np.asarray(logvar, dtype=np.float32), f, protocol=4)
