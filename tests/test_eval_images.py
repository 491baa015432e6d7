"""Per-image fit: the tiny run's own images fit, planted junk (pure noise, another particle)
does not and is flagged; the per-image numbers are training's loss; files round-trip; a
known-pose run's recorded poses serve when the stack has none."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from cryoscape.core.analysis.fit import (
    ImageFit,
    evaluate_images,
    load_fit,
    robust_threshold,
    write_fit,
)
from cryoscape.core.errors import InputFileError

from tests.conftest import cli

pytestmark = pytest.mark.slow  # trains the shared tiny run when run alone

N_GOOD, N_NOISE, N_WRONG = 200, 40, 40


def rod(D: int) -> np.ndarray:
    """Another particle: six Gaussian blobs along a bent rod, nothing like the tiny run's."""
    g = np.arange(D) - D / 2
    zz, yy, xx = np.meshgrid(g, g, g, indexing="ij")
    vol = np.zeros((D,) * 3, np.float32)
    for t in np.linspace(-1, 1, 6):
        c = (0.25 * D * t, 0.2 * D * t ** 2 - 3, -0.15 * D * t)
        vol += np.exp(-((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2) / (2 * 1.8 ** 2))
    return vol


@pytest.fixture(scope="module")
def junk_stack(tiny_run, tmp_path_factory):
    """Good images of the tiny run's data, then pure noise, then a wrong particle: a stack
    with its poses and CTF (cryoDRGN pickles); [N] bool, True for junk."""
    from cryoscape.core.io.cryodrgn import save_ctf, save_poses
    from cryoscape.core.io.mrc import read_mrc, write_mrc
    from cryoscape.core.simulate.dataset import simulate

    root = tmp_path_factory.mktemp("junk")
    truth = np.load(tiny_run.data / "truth.npz")
    good = read_mrc(tiny_run.data / "particles.mrcs")[0][:N_GOOD]
    rng = np.random.default_rng(7)
    noise = rng.normal(0, good.std(), (N_NOISE,) + good.shape[1:]).astype(np.float32)
    wrong_vol = rod(tiny_run.D) * (tiny_run.volumes[0].sum() / rod(tiny_run.D).sum())
    sim = simulate(wrong_vol, N_WRONG, root / "wrong", apix=tiny_run.apix, ctf=True,
                   max_shift=2.0, seed=3)
    wt = np.load(sim.path / "truth.npz")
    wrong = read_mrc(sim.path / "particles.mrcs")[0]
    write_mrc(root / "stack.mrcs", np.concatenate([good, noise, wrong]), apix=tiny_run.apix)
    noise_idx = rng.integers(0, len(truth["rotations"]), N_NOISE)   # any poses and CTFs
    R = np.concatenate([truth["rotations"][:N_GOOD], truth["rotations"][noise_idx],
                        wt["rotations"]])
    shifts = np.concatenate([truth["shifts"][:N_GOOD], truth["shifts"][noise_idx],
                             wt["shifts"]])
    save_poses(root / "poses.pkl", R, shifts, tiny_run.D)
    save_ctf(root / "ctf.pkl", np.concatenate([truth["ctf"][:N_GOOD], truth["ctf"][noise_idx],
                                               wt["ctf"]]))
    junk = np.r_[np.zeros(N_GOOD, bool), np.ones(N_NOISE + N_WRONG, bool)]
    return root, junk


def test_flags_planted_junk(tiny_run, junk_stack, tmp_path):
    from cryoscape.core.run import Run
    from sklearn.metrics import roc_auc_score

    root, junk = junk_stack
    fit = evaluate_images(Run.open(tiny_run.run), root / "stack.mrcs", poses=root / "poses.pkl",
                          ctf=root / "ctf.pkl")
    assert fit.mse.shape == fit.kl.shape == (len(junk),)
    assert roc_auc_score(junk, fit.mse) >= 0.95
    for part in (slice(N_GOOD, N_GOOD + N_NOISE), slice(N_GOOD + N_NOISE, None)):
        assert roc_auc_score(junk[np.r_[:N_GOOD, part]], fit.mse[np.r_[:N_GOOD, part]]) >= 0.95
    flagged = fit.flagged
    assert flagged[junk].mean() >= 0.9 and flagged[~junk].mean() <= 0.1
    # the CLI writes the same numbers, in both formats, with the histogram beside them
    for name in ("fit.npz", "fit.csv"):
        assert cli("eval-images", tiny_run.run, root / "stack.mrcs", "--poses",
                   root / "poses.pkl", "--ctf", root / "ctf.pkl", "-o", tmp_path / name) == 0
        back = load_fit(tmp_path / name)
        assert np.allclose(back.mse, fit.mse, rtol=1e-5) and np.array_equal(back.flagged, flagged)
    assert (tmp_path / "fit_hist.png").stat().st_size > 0
    d = np.load(tmp_path / "fit.npz")
    assert d["threshold"] == pytest.approx(fit.threshold) and int(d["flagged"].sum()) == \
        int(flagged.sum())


def test_per_image_numbers_are_the_training_loss(tiny_run):
    """The per-image MSE and KL average to run_batch's batch loss terms (the training code)."""
    from cryoscape.core.models.cryodrgn_compat import model_args
    from cryoscape.core.run import Run
    from cryoscape.core.train.data import TrainData
    from cryoscape.core.train.forward import run_batch

    run = Run.open(tiny_run.run)
    path = tiny_run.data / "particles.star"
    fit = evaluate_images(run, path, batch_size=64)
    ds = run.config["dataset_args"]
    data = TrainData(str(path), invert=ds["invert_data"], norm=ds["norm"],
                     enc_radius=model_args(run.config).get("enc_mask"), lazy=True)
    idx = torch.arange(100)
    with torch.no_grad():
        _, mse, kl = run_batch(run.model(), data.lattice, *data.batch(idx), 0.0, None)
    assert fit.mse[:100].mean() == pytest.approx(float(mse), rel=1e-4)
    assert fit.kl[:100].mean() == pytest.approx(float(kl), rel=1e-4)
    last = run.metrics()[-1]      # the last epoch's training MSE (with sampling) is close
    assert 0.5 < float(np.mean(fit.mse)) / last["mse"] < 2


def test_recorded_poses_of_a_known_pose_run(tiny_run, tmp_path):
    """A stack without poses: the run's recorded pose and CTF files are used; without them
    the command says so in one line."""
    import shutil

    from cryoscape.core.run import Run

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run.run, run_dir, ignore=shutil.ignore_patterns("analysis_cache"))
    stack = tiny_run.data / "particles.mrcs"
    assert cli("eval-images", run_dir, stack, "-o", tmp_path / "x.npz") == 1
    with pytest.raises(InputFileError, match="no poses"):
        evaluate_images(Run.open(run_dir), stack)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["dataset_args"].update(particles=str(stack), poses=str(tiny_run.data / "poses.pkl"),
                                  ctf=str(tiny_run.data / "ctf.pkl"))
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    from_star = evaluate_images(Run.open(tiny_run.run), tiny_run.data / "particles.star")
    recorded = evaluate_images(Run.open(run_dir), stack)
    assert np.allclose(recorded.mse, from_star.mse, rtol=1e-4, atol=1e-7)


def test_robust_threshold_and_bad_outputs(tmp_path):
    x = np.r_[np.random.default_rng(0).normal(1.0, 0.1, 1000), [50.0] * 20]
    t = robust_threshold(x, 3.0)
    assert 1.25 < t < 1.35       # about 1 + 3 x 0.1: the outliers do not move it
    fit = ImageFit(mse=x.astype(np.float32), kl=np.zeros(len(x), np.float32),
                   index=np.arange(len(x)))
    assert fit.flagged[-20:].all() and fit.flagged[:1000].mean() < 0.01
    with pytest.raises(InputFileError, match="npz or a .csv"):
        write_fit(fit, tmp_path / "fit.txt")
    (tmp_path / "bad.csv").write_text("hello\n")
    with pytest.raises(InputFileError, match="bad.csv: not a per-image fit"):
        load_fit(tmp_path / "bad.csv")
