"""Ab initio in the explorer: the training panel's "Poses: known / search (ab initio)" with
`cryoscape train --pose-search`'s defaults, an opened ab initio run that fills the form and
continues, each epoch's pose phase on the loss curve and in the log, the viewing directions of
the epoch shown, and a homogeneous run's map following the newest epoch."""
from __future__ import annotations

import argparse
import shutil

import numpy as np
import pytest

from tests.gui.conftest import WAIT_MS, SyntheticRun


@pytest.fixture(scope="module")
def abinit_run(tmp_path_factory):
    """A tiny homogeneous ab initio run: 96 images (D 32, CTF, shifts up to 1 px), epochs
    pretrain / search / refine, a 2 x 32 decoder, one thread (~5-10 s)."""
    from cryoscape.core.simulate.dataset import simulate
    from cryoscape.core.train import TrainConfig, train

    root = tmp_path_factory.mktemp("abinit")
    sim = simulate("homogeneous", 96, root / "data", D=32, max_shift=1.0, ctf=True, seed=0)
    cfg = TrainConfig.with_preset(
        "abinit", particles=str(sim.path / "particles.mrcs"), ctf=str(sim.path / "ctf.pkl"),
        pose_search=True, zdim=0, num_epochs=3, pretrain_epochs=1, search_epochs=1,
        search_chunk=48, dec_layers=2, dec_dim=32, batch_size=8, t_extent=2.0, threads=1,
        seed=0, checkpoint_minutes=60.0)
    train(cfg, root / "run", progress=False)
    return root / "run"


def _parsed(args):
    """The TrainConfig `cryoscape train ARGS` would train with (as its main builds it)."""
    from cryoscape.app.commands import train as train_cmd
    from cryoscape.core.train import TrainConfig

    parser = argparse.ArgumentParser()
    train_cmd.add_args(parser)
    ns = parser.parse_args([*args, "-o", "RUN"])
    preset = ns.preset or ("abinit" if ns.pose_search else "cryodrgn")
    return TrainConfig.with_preset(preset, particles=ns.particles,
                                   **{k: getattr(ns, k) for k in train_cmd.FIELDS})


def test_pose_search_options_are_the_cli_defaults(window):
    from cryoscape.core.train import TrainConfig

    tp = window.training
    tp.configure("p.mrcs", "RUN", poses="poses.pkl")
    assert tp.pose_mode.currentText() == "known" and not tp.search.isVisible()
    known = _parsed(tp.train_args())
    assert known.poses == "poses.pkl" and not known.pose_search and known.dec_dim == 1024
    assert tp.epochs.value() == 20
    tp.pose_mode.setCurrentIndex(1)                         # search (ab initio)
    assert tp.search.isVisible() and not tp.poses.isEnabled()
    args = tp.train_args()
    assert "--poses" not in args and "--pose-search" in args
    # epochs left to the number of images (core/train/abinit.auto_schedule)
    assert {"-n", "--pretrain-epochs", "--search-epochs"}.isdisjoint(args)
    assert tp.epochs.text() == tp.search.pretrain_epochs.text() == "auto"
    cli = TrainConfig.with_preset("abinit", particles="p.mrcs", pose_search=True)
    got = _parsed(args)
    for name in ("pose_search", "pretrain_epochs", "search_epochs", "search_chunk",
                 "search_classes", "search_method", "beam", "t_extent", "pose_sgd", "pose_lr", "enc_layers",
                 "enc_dim", "dec_layers", "dec_dim", "zdim", "num_epochs", "batch_size"):
        assert getattr(got, name) == getattr(cli, name), name
    assert (got.enc_dim, got.dec_dim) == (256, 256)         # --pose-search's 3 x 256
    s = tp.search                                           # the user's choices go through
    s.method.setCurrentText("bnb")
    s.t_extent.setValue(3.0)
    s.pose_sgd.setChecked(False)
    s.search_epochs.setValue(7)
    s.pretrain_epochs.setValue(0)
    tp.epochs.setValue(30)
    s.search_classes.setValue(2)
    got = _parsed(tp.train_args())
    assert (got.search_method, got.t_extent, got.pose_sgd, got.search_epochs,
            got.pretrain_epochs, got.num_epochs, got.search_classes) == \
        ("bnb", 3.0, False, 7, 0, 30, 2)
    assert got.tilt is None
    tp.tilt.setText("tilted.mrcs")                          # tilt pairs
    tp.tilt_deg.setValue(-30)
    got = _parsed(tp.train_args())
    assert (got.tilt, got.tilt_deg) == ("tilted.mrcs", -30.0)
    tp.dec_dim.setValue(128)                                # a chosen width stays
    tp.pose_mode.setCurrentIndex(0)
    assert (tp.enc_dim.value(), tp.dec_dim.value(), tp.epochs.value()) == (1024, 128, 30)
    assert "--pose-search" not in tp.train_args()


def test_epoch_lines_say_the_pose_phase():
    from cryoscape.app.gui.widgets.training_panel import epoch_line

    assert epoch_line({"epoch": 2, "loss": 0.85211, "poses": "search",
                       "search_ms_per_image": 15.404}) == \
        "epoch 2: loss 0.8521, poses: search (15.4 ms/image)"
    assert epoch_line({"epoch": 3, "loss": 1.5, "poses": "refine", "pose_change_deg": 0.834,
                       "shift_change_px": 0.0512}) == \
        "epoch 3: loss 1.5, poses: refine (poses moved 0.83 deg, 0.051 px)"
    assert epoch_line({"epoch": 4, "loss": 2.0}) == "epoch 4: loss 2"


def _wait_directions(qtbot, window, epoch):
    d = window.explorer.poses.directions
    qtbot.waitUntil(lambda: d.counts is not None and d.epoch == epoch, timeout=WAIT_MS)
    return d


def test_viewing_directions_follow_the_epoch(qtbot, window, abinit_run, moved_run):
    from cryoscape.core.analysis.posechanges import pose_changes
    from cryoscape.core.analysis.viewing import direction_histogram
    from cryoscape.core.run import Run

    run = Run.open(abinit_run)
    window.open_run(abinit_run)
    assert not window.errors, window.errors
    d = _wait_directions(qtbot, window, 3)
    assert d.found and d.n == 96
    assert np.array_equal(d.counts, direction_histogram(run.poses(3)[0])[0])
    img = window.viewing.plot.image.image
    assert img.shape == (36, 72) and img.sum() == 96             # elevation x azimuth
    moved = pose_changes(*run.poses(2), *run.poses(3))        # since the epoch before
    assert d.change == {"since": 2, **moved}
    assert window.viewing.info.text() == (
        f"poses found (ab initio), epoch 3: 96 particles; since epoch 2 moved a median "
        f"{moved['pose_change_deg']:.2g}° and {moved['shift_change_px']:.2g} px")
    assert not window.docks["Viewing directions"].visibleRegion().isEmpty()   # raised
    # the slider back to epoch 1: its random poses, its map
    shown = window.explorer.volumes.shown
    qtbot.waitUntil(lambda: shown.current is not None and shown.current.source == "exact",
                    timeout=WAIT_MS)
    before = shown.current
    window.latent_panel.epoch_slider.setValue(0)
    d = _wait_directions(qtbot, window, 1)
    first = direction_histogram(run.poses(1)[0])[0]
    assert np.array_equal(d.counts, first) and d.change is None
    assert not np.array_equal(first, direction_histogram(run.poses(3)[0])[0])
    qtbot.waitUntil(lambda: shown.current is not before and shown.current.source == "exact",
                    timeout=WAIT_MS)
    assert np.allclose(shown.current.volume, run.decode(None, epoch=1)[0], atol=1e-5)
    # a run without poses here (its particle file dangles) or with none at all: a note
    window.open_run(moved_run)
    qtbot.waitUntil(lambda: d.counts is None and d.note.startswith("no poses"),
                    timeout=WAIT_MS)
    window.explorer.runs.set_run(SyntheticRun(abinit_run.parent / "synthetic"))
    assert d.counts is None and window.viewing.info.text() == "no poses: the run records none"
    assert not window.errors, window.errors


@pytest.mark.slow
def test_known_poses_are_shown(qtbot, window, tiny_run):
    from cryoscape.core.analysis.viewing import direction_histogram
    from cryoscape.core.io.pickles import load_pickle

    window.open_run(tiny_run.run)
    d = window.explorer.poses.directions
    qtbot.waitUntil(lambda: d.counts is not None, timeout=WAIT_MS)
    rot = load_pickle(tiny_run.data / "poses.pkl")[0]
    assert not d.found and d.n == len(rot)
    assert np.array_equal(d.counts, direction_histogram(rot)[0])
    assert window.viewing.info.text().startswith("poses given to the run")


@pytest.mark.slow
def test_opened_abinit_run_continues_with_its_map_and_poses(qtbot, window, abinit_run,
                                                            tmp_path):
    """The opened run fills the form (search mode, its options and architecture), the loss
    curve marks each epoch's phase; Continue trains epoch 4 (refine): its line in the log, its
    map in the volume view and its viewing directions follow."""
    from cryoscape.core.analysis.viewing import direction_histogram
    from cryoscape.core.run import Run

    rundir = tmp_path / "run"
    shutil.copytree(abinit_run, rundir)
    window.open_run(rundir)
    assert not window.errors, window.errors
    tp = window.training
    assert tp.pose_search and tp.search.isVisible() and not tp.poses.isEnabled()
    s = tp.search
    assert (s.pretrain_epochs.value(), s.search_epochs.value(), s.search_chunk.value()) == \
        (1, 1, 48)
    assert (s.t_extent.value(), s.method.currentText(), s.pose_sgd.isChecked()) == \
        (2.0, "beam", True)
    assert (tp.zdim.value(), tp.epochs.value(), tp.batch.value()) == (0, 3, 8)
    assert (tp.dec_layers.value(), tp.dec_dim.value(), tp.enc_dim.value()) == (2, 32, 256)
    phases = tp.loss_plot.phase_points
    assert [list(phases[p].xData) for p in ("pretrain", "search", "refine")] == [[1], [2], [3]]
    mse = [r["mse"] for r in Run.open(rundir).metrics()]    # the data term beside the loss
    assert len(mse) == 3 and list(tp.loss_plot.mse_curve.yData) == pytest.approx(mse)
    tp.epochs.setValue(4)
    assert tp.continue_button.isEnabled()
    with qtbot.waitSignal(window.explorer.training.finished, timeout=WAIT_MS) as done:
        tp.continue_button.click()
    assert done.args[0] == 0, done.args[1]
    log = tp.log.toPlainText().splitlines()
    epoch4 = [line for line in log if line.startswith("epoch 4: loss ")]
    assert len(epoch4) == 1 and ", poses: refine (poses moved " in epoch4[0], log
    assert not any(line.startswith("epoch 3") for line in log)        # logged once, before
    run = Run.open(rundir)
    qtbot.waitUntil(lambda: window.state.epoch == 4, timeout=WAIT_MS)
    d = _wait_directions(qtbot, window, 4)
    assert np.array_equal(d.counts, direction_histogram(run.poses(4)[0])[0])
    shown, ref = window.explorer.volumes.shown, run.decode(None, epoch=4)[0]
    assert not np.allclose(ref, run.decode(None, epoch=3)[0], atol=1e-4)
    qtbot.waitUntil(lambda: shown.current is not None and shown.current.source == "exact"
                    and np.allclose(shown.current.volume, ref, atol=1e-5), timeout=WAIT_MS)
    assert list(phases["refine"].xData) == [3, 4] and not window.errors


def test_homogeneous_run_without_weights_yet_opens(qtbot, window, abinit_run, tmp_path):
    """A zdim 0 run opened before its first epoch is written (no weights, no poses, a stack
    without poses): no error anywhere, no map, the status says no epoch is saved yet."""
    rundir = tmp_path / "run"
    shutil.copytree(abinit_run, rundir)
    for f in [*rundir.glob("weights*.pkl"), *rundir.glob("pose*.pkl")]:
        f.unlink()
    window.open_run(rundir)
    d = window.explorer.poses.directions
    qtbot.waitUntil(lambda: d.note.startswith("no poses"), timeout=WAIT_MS)
    st = window.state
    assert st.homogeneous and st.epoch is None and st.z is None
    assert window.statusBar().currentMessage().endswith("no epoch saved yet")
    assert window.explorer.volumes.shown.current is None
    assert window.training.pose_search                 # its config says so
    assert not window.errors, window.errors


def test_opened_tilt_pair_run_fills_the_form(window, tmp_path):
    run = SyntheticRun(tmp_path / "synthetic")
    run.config = {"dataset_args": {"particles": "p.star", "tilt": "/data/tilt.mrcs",
                                   "tilt_deg": 40.0},
                  "model_args": {"zdim": 2, "qdim": 64}}
    tp = window.training
    tp.show_run(run)
    assert (tp.tilt.text(), tp.tilt_deg.value()) == ("/data/tilt.mrcs", 40.0)
    assert not tp.pose_search and (tp.zdim.value(), tp.enc_dim.value()) == (2, 64)
    args = tp.train_args()
    assert args[args.index("--tilt") + 1:args.index("--tilt") + 4] == \
        ["/data/tilt.mrcs", "--tilt-deg", "40"]
