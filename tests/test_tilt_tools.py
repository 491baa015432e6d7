"""The tools on runs trained with tilt pairs (the paper's D.2): `cryoscape encode --tilt` and
`cryoscape eval-images --tilt` on a tiny seeded cryoscape run, and cryoDRGN runs whose tilt
encoders cryoscape does not read (cryoDRGN-ET tilt series, old tilt pairs): they open with
their decoder and latents and refuse to encode, saying why."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import yaml
from cryoscape.core.ctf import ctf_from_params
from cryoscape.core.errors import CryoscapeError
from cryoscape.core.io.pickles import load_checkpoint
from cryoscape.core.models import VAE
from cryoscape.core.poses import tilt_rotation
from cryoscape.core.run import Run
from cryoscape.core.simulate.dataset import simulate
from cryoscape.core.train import TrainConfig, train
from cryoscape.core.train.data import TrainData
from cryoscape.core.train.forward import encoder_input

from tests.conftest import cli

TILT = 45.0


@pytest.fixture(scope="module")
def tilt_run(tmp_path_factory):
    """64 particles of linear motion with their tilt pairs (D=16, CTF, shifts up to 1 px,
    SNR 1) and a 2-epoch known-pose run on them (zdim 2, two-image encoder)."""
    data = tmp_path_factory.mktemp("tilt_data")
    simulate("linear", 64, data, D=16, ctf=True, max_shift=1.0, seed=11, snr=1.0,
             tilt_deg=TILT)
    cfg = TrainConfig(particles=str(data / "particles.mrcs"), poses=str(data / "poses.pkl"),
                      ctf=str(data / "ctf.pkl"), tilt=str(data / "particles_tilt.star"),
                      tilt_deg=TILT, tilt_emb_dim=16, zdim=2, num_epochs=2, batch_size=8,
                      lr=1e-3, enc_layers=1, enc_dim=32, dec_layers=1, dec_dim=32, seed=0,
                      threads=1, checkpoint_minutes=60.0)
    out = data / "run"
    train(cfg, out, progress=False)
    return data, out


def inputs(data):
    return [data / "particles.mrcs", "--poses", data / "poses.pkl", "--ctf", data / "ctf.pkl"]


def test_encode_with_the_tilt_stack_gives_the_training_z(tilt_run, tmp_path, capsys):
    data, out = tilt_run
    run = Run.open(out)
    assert cli("encode", out, *inputs(data), "--tilt", data / "particles_tilt.star",
               "-o", tmp_path / "z.npy", "--logvar", tmp_path / "logvar.npy") == 0
    np.testing.assert_allclose(np.load(tmp_path / "z.npy"), run.latents(), atol=1e-4)
    np.testing.assert_allclose(np.load(tmp_path / "logvar.npy"), run.logvar(), atol=1e-4)
    # a subset: the same index picks the particles and their tilted images
    ind = np.array([40, 3, 17])
    from cryoscape.core.io.cryodrgn import save_index
    save_index(tmp_path / "ind.pkl", ind)
    assert cli("encode", out, *inputs(data), "--tilt", data / "particles_tilt.star",
               "--ind", tmp_path / "ind.pkl", "-o", tmp_path / "sub.npy") == 0
    np.testing.assert_allclose(np.load(tmp_path / "sub.npy"), run.latents()[ind], atol=1e-4)
    # the untilted images alone: a one-line error naming the option, nothing written
    capsys.readouterr()
    assert cli("encode", out, *inputs(data), "-o", tmp_path / "none.npy") == 1
    assert "--tilt TILT_STACK" in capsys.readouterr().err
    assert not (tmp_path / "none.npy").exists()


def direct_errors(run, data, T):
    """Per-particle (mse, kl) written out from the model's parts: mu from both images, each
    image against its slice (at R, the tilted one at T @ R) times its CTF, mse the mean."""
    ds = run.config["dataset_args"]
    d = TrainData(str(data / "particles.mrcs"), poses=str(data / "poses.pkl"),
                  ctf=str(data / "ctf.pkl"), tilt=str(data / "particles_tilt.star"),
                  invert=ds["invert_data"], norm=ds["norm"], window_r=ds["window_r"])
    idx = torch.arange(d.N)
    (y, rot, ctf), (y_t, ctf_t) = d.batch(idx), d.tilt_batch(idx)
    lat, model = d.lattice, run.model()
    with torch.no_grad():
        mu, logvar = model.encode(encoder_input(lat, y, ctf), encoder_input(lat, y_t, ctf_t))

        def err(images, R, c):
            pred = model.decode(lat.coords @ R, mu) * ctf_from_params(c, lat.coords[:, :2], 16)
            return ((pred - images[:, lat.loss_sel]) ** 2).mean(-1)

        mse = 0.5 * (err(y, rot, ctf) + err(y_t, torch.as_tensor(T) @ rot, ctf_t))
    return mse.numpy(), VAE.kl_divergence(mu, logvar, per_image=True).numpy()


def test_eval_images_with_the_tilt_stack(tilt_run, tmp_path, capsys):
    data, out = tilt_run
    fit = tmp_path / "fit.npz"
    assert cli("eval-images", out, *inputs(data), "--tilt", data / "particles_tilt.star",
               "-o", fit) == 0
    with np.load(fit) as f:
        mse, kl, index = f["mse"], f["kl"], f["index"]
    assert mse.shape == (64,) and np.isfinite(mse).all() and (mse > 0).all()
    assert index.tolist() == list(range(64))
    run = Run.open(out)
    want_mse, want_kl = direct_errors(run, data, tilt_rotation(TILT))
    np.testing.assert_allclose(mse, want_mse, rtol=1e-4)
    np.testing.assert_allclose(kl, want_kl, rtol=1e-4, atol=1e-6)
    # its own training images: the tilt stack it recorded comes with them
    from cryoscape.core.analysis.fit import evaluate_images
    np.testing.assert_allclose(evaluate_images(run).mse, mse, rtol=1e-6)
    # the run's tilt was used: with none (T = I) the errors differ, and fit worse (2 epochs of
    # SNR 1 data fit little: 0.93 against 0.91)
    wrong, _ = direct_errors(run, data, np.eye(3, dtype=np.float32))
    assert np.abs(wrong - mse).max() > 100 * np.abs(want_mse - mse).max()
    assert wrong.mean() > mse.mean()
    capsys.readouterr()
    assert cli("eval-images", out, *inputs(data), "-o", tmp_path / "none.npz") == 1
    assert "--tilt TILT_STACK" in capsys.readouterr().err
    assert not (tmp_path / "none.npz").exists()


def test_tilt_stack_refused_for_a_one_image_run(tiny_run):
    run = Run.open(tiny_run.run)
    with pytest.raises(CryoscapeError, match="single images, not tilt pairs"):
        run.encode(np.zeros((2, run.D, run.D), np.float32), tilt=np.zeros((2, run.D, run.D)))


def cryodrgn_tilt_run(src, dst, tilt_params):
    """The fixture's cryoDRGN run with a tilt encoder of cryoDRGN's names and sizes in place
    of its own (`tilt_params` None: the old tilt-pair config, which records no sizes)."""
    shutil.copytree(src, dst)
    dst.chmod(0o755)
    cfg = yaml.safe_load((dst / "config.yaml").read_text())
    cfg["model_args"]["encode_mode"] = "tilt"
    if tilt_params:     # cryoDRGN 4.3.1's train_vae --encode-mode tilt
        cfg["model_args"]["tilt_params"] = tilt_params
        cfg["dataset_args"]["ntilts"] = tilt_params["ntilts"]
    else:               # abinit_het_old --tilt: no tilt_params
        del cfg["model_args"]["tilt_params"]
        cfg["dataset_args"]["particles_tilt"] = "particles_tilt.mrcs"
    (dst / "config.yaml").chmod(0o644)
    (dst / "config.yaml").write_text(yaml.safe_dump(cfg))
    ckpt = load_checkpoint(dst / "weights.pkl")
    sd = {k: v for k, v in ckpt["model_state_dict"].items() if not k.startswith("encoder.")}
    g = torch.Generator().manual_seed(0)
    n_in, emb, zdim = 3208, 8, cfg["model_args"]["zdim"]    # 3208 pixels inside enc_mask 32
    for name, shape in (("encoder1.main.0", (32, n_in)), ("encoder1.main.2", (emb, 32)),
                        ("encoder2.main.0", (16, 3 * emb)), ("encoder2.main.2", (2 * zdim, 16))):
        sd[f"encoder.{name}.weight"] = torch.randn(shape, generator=g)
        sd[f"encoder.{name}.bias"] = torch.randn(shape[:1], generator=g)
    (dst / "weights.pkl").chmod(0o644)
    torch.save({**ckpt, "model_state_dict": sd}, dst / "weights.pkl")
    return dst


@pytest.mark.parametrize("tilt_params, why", [
    ({"tdim": 16, "tlayers": 0, "t_emb_dim": 8, "ntilts": 3},
     r"cryoDRGN-ET's tilt-series encoder \(3 tilts a particle\)"),
    (None, "cryoDRGN's tilt-pair encoder, whose sizes its config does not record")])
def test_cryodrgn_tilt_runs_open_with_their_decoder(fixtures_dir, tmp_path, tilt_params, why):
    src = fixtures_dir / "cryodrgn_rundir" / "run"
    run = Run.open(cryodrgn_tilt_run(src, tmp_path / "run", tilt_params))
    ref = Run.open(src)
    z = ref.latents()[[0, 50, 99]]
    np.testing.assert_array_equal(run.latents(), ref.latents())
    np.testing.assert_array_equal(run.decode(z, epoch=None), ref.decode(z, epoch=None))
    images = np.zeros((2, run.D, run.D), np.float32)
    with pytest.raises(CryoscapeError, match=f"this run cannot encode images: its encoder is "
                                             f"{why}, which cryoscape does not read"):
        run.encode(images)
