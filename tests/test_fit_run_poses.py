"""eval-images on an ab initio run: with no --poses and none in the stack or the config, the
poses the run found (its pose.pkl) serve, row for row (a subset through --ind too); the run's
own images and the default output RUN/eval_images.final.npz when nothing else is given; and a
one-line error, with nothing written, when no poses are anywhere."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import yaml
from cryoscape.core.analysis.fit import evaluate_images, load_fit
from cryoscape.core.errors import InputFileError

from tests.conftest import cli

pytestmark = pytest.mark.slow  # trains the shared tiny run when run alone


@pytest.fixture
def posefree_run(tiny_run, tmp_path):
    """The tiny run copied, its config naming the bare .mrcs stack and the CTF (no poses), as an
    ab initio run records its inputs."""
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run.run, run_dir, ignore=shutil.ignore_patterns("analysis_cache"))
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["dataset_args"].update(particles=str(tiny_run.data / "particles.mrcs"),
                                  ctf=str(tiny_run.data / "ctf.pkl"), poses=None)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    return run_dir


@pytest.fixture(scope="module")
def reference(tiny_run):
    """The fit of the tiny run's images with their true poses (from the .star)."""
    from cryoscape.core.run import Run

    return evaluate_images(Run.open(tiny_run.run), tiny_run.data / "particles.star")


def test_found_poses_serve_when_none_are_given(posefree_run, tiny_run, reference, tmp_path):
    from cryoscape.core.io.cryodrgn import save_index
    from cryoscape.core.run import Run

    stack = tiny_run.data / "particles.mrcs"
    out = tmp_path / "fit.npz"
    # no poses anywhere: one line naming the stack, nothing written
    assert cli("eval-images", posefree_run, stack, "-o", out) == 1
    assert not out.exists()
    with pytest.raises(InputFileError, match=r"particles.mrcs: no poses: .*pose\*\.pkl"):
        evaluate_images(Run.open(posefree_run), stack)
    # the run's found poses (cryoDRGN's pose pickle, as ab initio writes it) are used
    shutil.copyfile(tiny_run.data / "poses.pkl", posefree_run / "pose.pkl")
    run = Run.open(posefree_run)
    fit = evaluate_images(run, stack)
    np.testing.assert_allclose(fit.mse, reference.mse, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(fit.kl, reference.kl, rtol=1e-4, atol=1e-6)
    # a subset in another order takes each image's own row of the found poses
    ind = np.array([17, 3, 250, 599, 0])
    save_index(tmp_path / "ind.pkl", ind)
    sub = evaluate_images(run, stack, ind=tmp_path / "ind.pkl")
    np.testing.assert_array_equal(sub.index, ind)
    np.testing.assert_allclose(sub.mse, reference.mse[ind], rtol=1e-4, atol=1e-7)
    # the CLI with neither particles nor -o: the run's own images, RUN/eval_images.final.npz
    assert cli("eval-images", posefree_run) == 0
    written = load_fit(posefree_run / "eval_images.final.npz")
    np.testing.assert_allclose(written.mse, reference.mse, rtol=1e-4, atol=1e-7)
    assert (posefree_run / "eval_images.final_hist.png").stat().st_size > 0


def test_found_poses_cover_only_the_training_images(posefree_run, tiny_run):
    """A run trained on a subset found poses for those images only: another particle is
    refused by number."""
    from cryoscape.core.io.cryodrgn import load_poses, save_index, save_poses
    from cryoscape.core.run import Run

    trained = np.arange(0, 600, 2)                      # the run's rows: even particles
    save_index(posefree_run / "ind.pkl", trained)
    config = yaml.safe_load((posefree_run / "config.yaml").read_text())
    config["dataset_args"]["ind"] = str(posefree_run / "ind.pkl")
    (posefree_run / "config.yaml").write_text(yaml.safe_dump(config))
    R, shifts = load_poses(tiny_run.data / "poses.pkl", D=tiny_run.D)
    save_poses(posefree_run / "pose.pkl", R[trained], shifts[trained], tiny_run.D)
    run = Run.open(posefree_run)
    stack = tiny_run.data / "particles.mrcs"
    fit = evaluate_images(run, stack, ind=np.array([4, 10]))     # rows 2 and 5 of the run
    ref = evaluate_images(run, stack, ind=np.array([4, 10]), poses=tiny_run.data / "poses.pkl")
    np.testing.assert_allclose(fit.mse, ref.mse, rtol=1e-5)
    with pytest.raises(InputFileError, match="particle 7 has no pose"):
        evaluate_images(run, stack, ind=np.array([4, 7]))
