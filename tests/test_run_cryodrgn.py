"""Run: opening cryoDRGN run directories and bare checkpoints, parity with cryoDRGN 4.3.1's
eval_vol and latents, the eval-vol command, and cryoscape runs' extras."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml
from cryoscape.core.errors import CryoscapeError, InputFileError
from cryoscape.core.io.mrc import read_mrc
from cryoscape.core.run import Run


def rel_err(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def rundir(fixtures_dir):
    return fixtures_dir / "cryodrgn_rundir"


@pytest.fixture(scope="module")
def hetdir(fixtures_dir):
    return fixtures_dir / "cryodrgn_run"


@pytest.fixture(scope="module")
def rundir_vols(rundir):
    run = Run.open(rundir / "run")
    z = np.loadtxt(rundir / "expected" / "z.txt")
    return run.decode(z, epoch=3)


def test_rundir_opens(rundir):
    run = Run.open(rundir / "run")
    assert run.epochs == [1, 2, 3]
    assert (run.D, run.lattice_D, run.zdim) == (64, 65, 2)
    assert not run.is_cryoscape
    # the losses cryoDRGN logged for its 3 epochs (run.log)
    rows = run.metrics()
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[0] == pytest.approx({"epoch": 1, "loss": 1.306415, "mse": 1.3064,
                                     "kl": 0.082765, "time": 1.430632})
    assert rows[2]["loss"] == pytest.approx(1.231665)
    assert run.particles_path.name == "hand.mrcs"
    assert run.norm == pytest.approx((0.0, 94.45951080322266))
    assert run.weights_path().name == "weights.pkl" and run.weights_path(2).name == "weights.2.pkl"
    with pytest.raises(CryoscapeError):
        run.latents(epoch=7)


def test_rundir_latents(rundir):
    run = Run.open(rundir / "run")
    expected = np.load(rundir / "expected" / "z_mu.npy")
    mu = run.latents()
    assert mu.dtype == np.float32 and mu.shape == (100, 2)
    np.testing.assert_array_equal(mu, expected)
    np.testing.assert_array_equal(run.latents(epoch=3), expected)
    assert not np.array_equal(run.latents(epoch=1), expected)
    assert run.logvar().shape == (100, 2)


def test_rundir_decode_parity(rundir, rundir_vols):
    assert rundir_vols.shape == (3, 64, 64, 64) and rundir_vols.dtype == np.float32
    for i in range(3):
        ref, _ = read_mrc(rundir / "expected" / f"vol_00{i + 1}.mrc")
        assert rel_err(rundir_vols[i], ref) <= 1e-4


def test_het_checkpoint_decode_parity(hetdir):
    """Hartley-domain decoder, bare checkpoint + config, opened by folder or by files."""
    run = Run.open(hetdir)
    assert run.epochs == [] and run.zdim == 8 and run.model(None).decoder.domain == "hartley"
    assert Run.from_files(hetdir / "het_config.yaml", hetdir / "het_weights.pkl").D == 64
    z = np.loadtxt(hetdir / "expected" / "z.txt")
    vols = run.decode(z)
    for i in range(3):
        ref, _ = read_mrc(hetdir / "expected" / f"vol_00{i + 1}.mrc")
        assert rel_err(vols[i], ref) <= 1e-4
    with pytest.raises(CryoscapeError):
        run.latents()


def test_encode_new_images_matches_training_latents(rundir, fixtures_dir):
    run = Run.open(rundir / "run")
    images, _ = read_mrc(fixtures_dir / "hand" / "hand.mrcs")
    mu = run.encode(images[:40], epoch=3, batch_size=16)
    np.testing.assert_allclose(mu, np.load(rundir / "expected" / "z_mu.npy")[:40], atol=1e-4)
    from cryoscape.core.io.stack import open_images
    src = open_images(fixtures_dir / "hand" / "hand.mrcs", lazy=True)
    np.testing.assert_allclose(run.encode(src, epoch=3)[:40], mu, atol=1e-6)
    with pytest.raises(CryoscapeError):
        run.encode(images[:2, :32, :32])


def test_preview_and_map_options(rundir, rundir_vols):
    run = Run.open(rundir / "run")
    z = np.loadtxt(rundir / "expected" / "z.txt")[:1]
    from cryoscape.core.fourier import fourier_resample
    prev = run.decode(z, D=32, epoch=3)
    assert prev.shape == (1, 32, 32, 32) and run.voxel_size(32) == 2 * run.apix
    assert rel_err(prev[0], fourier_resample(rundir_vols[0], 32, sphere=True)) < 1e-4
    flipped = run.decode(z, epoch=3, flip=True, invert=True)
    np.testing.assert_allclose(flipped[0], -rundir_vols[0][::-1], atol=1e-5)


def test_zero_based_epochs_and_missing_inputs(rundir, tmp_path):
    run_dir = tmp_path / "old"
    run_dir.mkdir()
    cfg = yaml.safe_load((rundir / "run" / "config.yaml").read_text())
    cfg["dataset_args"]["particles"] = "/nonexistent/data/particles.mrcs"
    cfg["dataset_args"]["poses"] = "/nonexistent/data/poses.pkl"
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    for n in (1, 2, 3):  # an older cryoDRGN numbers epochs from 0
        (run_dir / f"weights.{n - 1}.pkl").symlink_to(rundir / "run" / f"weights.{n}.pkl")
        (run_dir / f"z.{n - 1}.pkl").symlink_to(rundir / "run" / f"z.{n}.pkl")
    run = Run.open(run_dir)
    assert run.epochs == [0, 1, 2]
    assert run.apix == 1.0 and not run.apix_known  # its inputs are gone: nothing needs them
    np.testing.assert_array_equal(run.latents(), np.load(rundir / "expected" / "z_mu.npy"))
    assert run.weights_path().name == "weights.2.pkl"


def test_cryoscape_run_extras(rundir, tmp_path):
    run_dir = tmp_path / "mine"
    shutil.copytree(rundir / "run", run_dir)
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    cfg["cryoscape"] = {"version": "0", "apix": 2.5, "D": 64}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    rows = [{"epoch": 1, "loss": 1.3}, {"epoch": 2, "loss": 1.2}]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"ep')
    run = Run.open(run_dir)
    assert run.is_cryoscape and run.apix == 2.5 and run.apix_known
    assert run.metrics() == rows  # a cut last line is skipped


def test_not_a_run(tmp_path):
    with pytest.raises(InputFileError):
        Run.open(tmp_path)
    with pytest.raises(InputFileError):
        Run.open(tmp_path / "missing")


def test_eval_vol_command(rundir, rundir_vols, tmp_path):
    from cryoscape.app.cli import main
    out = tmp_path / "vols"
    assert main(["eval-vol", str(rundir / "run"), "--epoch", "3", "--z-file",
                 str(rundir / "expected" / "z.txt"), "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["vol_000.mrc", "vol_001.mrc", "vol_002.mrc"]
    for i in range(3):  # 0-based, as analyze and cryoDRGN number maps (the fixture: 1-based)
        v, apix = read_mrc(out / f"vol_00{i}.mrc")
        ref, _ = read_mrc(rundir / "expected" / f"vol_00{i + 1}.mrc")
        assert rel_err(v, ref) <= 1e-4 and apix == pytest.approx(1.0)
    z = np.loadtxt(rundir / "expected" / "z.txt")[0]
    one = tmp_path / "one.mrc"
    assert main(["eval-vol", "-c", str(rundir / "run" / "config.yaml"), "--weights",
                 str(rundir / "run" / "weights.3.pkl"), "--z", *map(str, z), "-D", "32",
                 "--apix", "1.5", "-o", str(one)]) == 0
    v, apix = read_mrc(one)
    assert v.shape == (32, 32, 32) and apix == pytest.approx(3.0)
    assert main(["eval-vol", str(rundir / "run"), "--z", "1", "2", "3", "-o", str(one)]) == 1
    assert main(["eval-vol", str(rundir / "run"), "--z", "1", "2", "3", "4", "-o",
                 str(tmp_path / "x.mrc")]) == 1  # two volumes need a directory


def test_train_nn_style_homogeneous_run(tmp_path):
    """cryoDRGN train_nn: model_args layers/dim, the decoder's state dict alone, no z files."""
    import torch
    from cryoscape.core.decode import decode_volumes
    from cryoscape.core.models import build_model
    from cryoscape.core.models.cryodrgn_compat import to_cryodrgn_state_dict

    torch.manual_seed(3)
    args = {"zdim": 0, "players": 1, "pdim": 16, "pe_type": "gaussian", "pe_dim": 4,
            "feat_sigma": 0.5, "domain": "fourier", "activation": "relu"}
    model = build_model(args, 17).eval()
    sd = to_cryodrgn_state_dict(model.state_dict(), args)
    assert set(sd) == {"rand_freqs"} | {k[len("decoder."):] for k in model.state_dict()
                                        if k.startswith("decoder.decoder.")}
    torch.save({"epoch": 4, "model_state_dict": sd}, tmp_path / "weights.4.pkl")
    cfg = {"dataset_args": {"norm": [0.0, 5.0], "particles": "/gone.mrcs"},
           "lattice_args": {"D": 17, "extent": 0.5, "ignore_DC": True},
           "model_args": {"layers": 1, "dim": 16, "pe_type": "gaussian", "pe_dim": 4,
                          "feat_sigma": 0.5, "domain": "fourier", "activation": "relu"}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    run = Run.open(tmp_path)
    assert run.epochs == [4] and run.zdim == 0
    vol = run.decode()
    np.testing.assert_allclose(vol, decode_volumes(model.decoder, None, 16, (0.0, 5.0)).numpy(),
                               rtol=1e-6, atol=1e-6)
    with pytest.raises(CryoscapeError):
        run.encode(np.zeros((1, 16, 16), np.float32))


def test_preprocess_matches_cryodrgn(fixtures_dir, rundir):
    import torch
    from cryoscape.core.fourier import iht2_center
    from cryoscape.core.preprocess import estimate_norm, preprocess_images, window_mask

    images, _ = read_mrc(fixtures_dir / "hand" / "hand.mrcs")
    _, std = estimate_norm(images)  # cryoDRGN 4.3.1 estimates it without the window
    assert std == pytest.approx(94.45951080322266, rel=1e-5)
    w = window_mask(64)
    assert w[32, 32] == 1 and w[0, 0] == 0  # a linear ramp from r = 0.85 to 0.99 half-boxes
    assert w[32, 32 + 28].item() == pytest.approx(1 - (28 / 32 - 0.85) / 0.14, abs=1e-5)
    h = preprocess_images(images[:2], w, invert=True, norm=(0.0, std))
    assert h.shape == (2, 65, 65)
    torch.testing.assert_close(h[:, -1, :], h[:, 0, :])  # +0.5 repeats -0.5
    torch.testing.assert_close(h[:, :, -1], h[:, :, 0])
    back = iht2_center(h[:, :-1, :-1] * std)
    torch.testing.assert_close(back, -torch.from_numpy(images[:2]) * w, rtol=1e-4, atol=1e-3)


def test_run_in_progress_shows_new_epochs(rundir, tmp_path):
    shutil.copy(rundir / "run" / "config.yaml", tmp_path / "config.yaml")
    run = Run.open(tmp_path)  # training has not finished an epoch yet
    assert run.epochs == []
    with pytest.raises(CryoscapeError):
        run.latents()
    for name in ("weights.1.pkl", "z.1.pkl"):
        (tmp_path / name).symlink_to(rundir / "run" / name)
    assert run.epochs == [1] and run.latents().shape == (100, 2)


def test_training_log_lines(tmp_path):
    """run.log epoch lines of cryoDRGN's train_vae and train_nn (homogeneous), a day-long
    epoch, and other lines around them."""
    from cryoscape.core.io.cryodrgn import read_training_log

    log = tmp_path / "run.log"
    log.write_text(
        "Namespace(...)\n"
        "2024-01-01 10:00:00     # [Train Epoch: 1/2] [100/100 images] gen loss=1.2, kld=0.1\n"
        "2024-01-01 10:00:01     # =====> Epoch: 1 Average gen loss = 1.25, KLD = 0.5, "
        "total loss = 1.3; Finished in 1 day, 2:03:04.5\n"
        "# =====> Epoch: 2 Average loss = 0.75; Finished in 0:00:09.25\n"
        "# =====> Epoch: 3 Average gen loss = nan, KLD = 1.0, total loss = nan\n")
    rows = read_training_log(log)
    assert rows[0] == {"epoch": 1, "loss": 1.3, "mse": 1.25, "kl": 0.5,
                       "time": 26 * 3600 + 3 * 60 + 4.5}
    assert rows[1] == {"epoch": 2, "loss": 0.75, "time": 9.25}
    assert rows[2]["epoch"] == 3 and np.isnan(rows[2]["loss"]) and "time" not in rows[2]
    assert read_training_log(tmp_path / "missing.log") == []


def test_eval_vol_lowpass_follows_apix(rundir, tmp_path):
    """--lowpass A cuts at D * apix / A Fourier pixels with the --apix given (the run's own
    pixel size is 1 A): --apix 4 --lowpass 16 keeps radius <= 15 px untouched, none above 16."""
    import torch
    from cryoscape.app.cli import main
    from cryoscape.core.fourier import fft3_center

    z = [str(v) for v in np.loadtxt(rundir / "expected" / "z.txt")[0]]
    run = str(rundir / "run")
    assert main(["eval-vol", run, "--z", *z, "--apix", "4", "-o", str(tmp_path / "a.mrc")]) == 0
    assert main(["eval-vol", run, "--z", *z, "--apix", "4", "--lowpass", "16", "-o",
                 str(tmp_path / "b.mrc")]) == 0
    (full, _), (low, apix) = read_mrc(tmp_path / "a.mrc"), read_mrc(tmp_path / "b.mrc")
    assert apix == pytest.approx(4.0)
    F, G = (fft3_center(torch.as_tensor(v)).numpy() for v in (full, low))
    f = np.arange(64) - 32
    r = np.sqrt(f[:, None, None] ** 2 + f[None, :, None] ** 2 + f[None, None, :] ** 2)
    kept, cut = r <= 15, r > 16
    np.testing.assert_allclose(G[kept], F[kept], atol=1e-3 * np.abs(F).max())
    assert np.abs(G[cut]).max() <= 1e-4 * np.abs(F).max()
    assert np.abs(F[(r > 5) & kept]).sum() > 0.05 * np.abs(F).sum()  # a cut at 4 px would show
