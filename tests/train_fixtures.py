"""A session-wide tiny trained heterogeneous run for tests (register with `pytest_plugins`).

`tiny_run`: 600 noiseless simulated images (D=32, 8 A/px) of two discrete states (an arm at
0 or 180 degrees), with random shifts up to 2 px and CTFs, trained from the RELION .star for
18 epochs, zdim 1, small MLPs: about 15-20 s on one thread (one thread also keeps it fast on
a busy machine).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

TINY_N, TINY_D, TINY_EPOCHS = 600, 32, 18


def tiny_config(particles: str, **overrides):
    """The tiny run's training settings (small MLPs, zdim 1, Fourier-domain decoder)."""
    from cryoscape.core.train import TrainConfig
    values = {"particles": particles, "zdim": 1, "num_epochs": TINY_EPOCHS, "batch_size": 16,
              "lr": 2e-3, "enc_layers": 3, "enc_dim": 256, "dec_layers": 3, "dec_dim": 64,
              "pe_type": "gaussian", "domain": "fourier", "seed": 1, "threads": 1,
              "checkpoint_minutes": 60.0}
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="session")
def tiny_settings():
    """`tiny_config(particles, **overrides)`: the tiny run's TrainConfig factory."""
    return tiny_config


@dataclass
class TinyRun:
    """A trained run (`run`) and its simulated data (`data`: particles.mrcs/.star, poses.pkl,
    ctf.pkl, truth.npz, volumes/vol_00{0,1}.mrc); `state` [N] true state of each image;
    `volumes` [2, D, D, D] the truth maps; `epochs` trained."""
    run: Path
    data: Path
    state: np.ndarray
    volumes: np.ndarray
    D: int
    apix: float
    epochs: int = TINY_EPOCHS


def make_tiny_data(root: Path) -> Path:
    from cryoscape.core.simulate.dataset import simulate
    sim = simulate("discrete", TINY_N, root, D=TINY_D, states=2, save_volumes=True,
                   max_shift=2.0, ctf=True, seed=0)
    return sim.path


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """The simulated two-state dataset alone (D=32, 600 images, shifts up to 2 px, CTF)."""
    return make_tiny_data(tmp_path_factory.mktemp("tiny_data"))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_data) -> TinyRun:
    from cryoscape.core.io.mrc import read_mrc
    from cryoscape.core.train import train
    out = tmp_path_factory.mktemp("tiny_run") / "run"
    train(tiny_config(str(tiny_data / "particles.star")), out, progress=False)
    truth = np.load(tiny_data / "truth.npz")
    vols = np.stack([read_mrc(tiny_data / "volumes" / f"vol_{k:03d}.mrc")[0] for k in (0, 1)])
    return TinyRun(out, tiny_data, truth["state"], vols, TINY_D, float(truth["apix"]))
