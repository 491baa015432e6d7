"""The images' contrast is decided from the data when nobody gives it: a simulation without a
CTF (white protein) is not inverted and trains to a positive map, one with a CTF (RELION's
convention) is inverted; an explicit choice wins."""
from __future__ import annotations

import numpy as np
import pytest
import yaml
from cryoscape.core.io.mrc import read_mrc
from cryoscape.core.preprocess import infer_invert, protein_white
from cryoscape.core.simulate import simulate
from cryoscape.core.train import TrainConfig, train
from cryoscape.core.train.data import TrainData


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """300 noisy images (SNR 0.1) of the homogeneous model, no CTF, with its map."""
    return simulate("homogeneous", 300, tmp_path_factory.mktemp("plain"), D=32, snr=0.1,
                    max_shift=1.0, save_volumes=True, seed=2).path


def test_protein_white_tells_the_sign(plain):
    images = read_mrc(plain / "particles.mrcs")[0]
    assert protein_white(images) is True and protein_white(-images) is False
    rng = np.random.default_rng(0)
    assert protein_white(rng.normal(size=(300, 32, 32))) is None        # noise tells nothing
    assert infer_invert(images, has_ctf=False) is False
    assert infer_invert(-images, has_ctf=False) is True          # e.g. phase-flipped RELION
    assert infer_invert(images, has_ctf=True) is True            # RELION's -CTF convention


def test_training_data_decide_unless_told(plain, tiny_data):
    kw = {"poses": plain / "poses.pkl", "lazy": True}
    assert TrainData(str(plain / "particles.mrcs"), **kw).invert is False
    assert TrainData(str(plain / "particles.mrcs"), invert=True, **kw).invert is True
    assert TrainData(str(tiny_data / "particles.star"), lazy=True).invert is True   # with CTF
    assert TrainData(str(tiny_data / "particles.star"), invert=False, lazy=True).invert is False


def test_no_ctf_simulation_trains_to_a_positive_map(plain, tmp_path):
    cfg = TrainConfig(str(plain / "particles.mrcs"), poses=str(plain / "poses.pkl"), zdim=0,
                      num_epochs=3, batch_size=16, lr=3e-3, dec_layers=2, dec_dim=64, seed=0,
                      threads=1)
    assert cfg.invert_data is None
    train(cfg, tmp_path / "run", progress=False)
    conf = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert conf["dataset_args"]["invert_data"] is False             # recorded as decided
    assert conf["cryoscape"]["train_args"]["invert_data"] is False  # and kept by --resume
    from cryoscape.core.run import Run
    vol = Run.open(tmp_path / "run").decode()[0]
    truth = read_mrc(plain / "volumes" / "vol_000.mrc")[0]
    corr = np.corrcoef(vol.ravel(), truth.ravel())[0, 1]
    assert corr > 0.5, corr
