"""The explorer computes what the CLI computes, with the library's own functions: k-means with
its defaults, the shared UMAP cache (RUN/analysis_cache), particle-file indices of a run trained
on a subset; UMAP is not recomputed for every training epoch; axes show plain values."""
from __future__ import annotations

import numpy as np

from tests.gui.conftest import WAIT_MS, SyntheticRun, child_pids, open_run


def test_clusters_are_the_cli_clusters(qtbot, window, tmp_path):
    from cryoscape.core.analysis.sampling import kmeans

    run = SyntheticRun(tmp_path / "r", seed=1)       # latents where n_init matters
    open_run(qtbot, window, run)
    z = run.latents()
    km = kmeans(z)                                    # as `cryoscape analyze/select` (defaults)
    assert np.array_equal(window.state.labels, km.labels)
    assert np.array_equal(window.state.centre_index, km.medoids)
    assert (kmeans(z, n_init=1).labels != km.labels).sum() > 100   # the old GUI setting differs


def _fake_umap(run, epoch):
    """Write a UMAP result where `cryoscape analyze/select` cache it; returns it."""
    from cryoscape.core.analysis.cache import analysis_cache_dir
    from cryoscape.core.analysis.embed import umap_cache_path

    z = run.latents(epoch)
    emb = np.stack([z[:, 1] * 3 + 1, -z[:, 0]], 1).astype(np.float32)
    np.save(umap_cache_path(z, analysis_cache_dir(run), epoch), emb)
    return emb


def test_umap_uses_the_cli_cache(qtbot, window, tmp_path):
    run = SyntheticRun(tmp_path / "r")
    run.path.mkdir()
    emb = _fake_umap(run, 2)
    open_run(qtbot, window, run)
    labels = window.state.labels
    window.latent.select_polygon(np.array([[0.0, 0], [5, 0], [5, 5], [0, 5]]))   # in PCA
    sel = window.state.selections["selection 1"]
    window.latent_panel.embedding_box.setCurrentText("UMAP")
    qtbot.waitUntil(lambda: window.state.embedding_kind == "UMAP", timeout=WAIT_MS)
    assert np.array_equal(window.state.embedding, emb)       # read back, not recomputed
    assert window.state.labels is labels                     # the same latents' clusters
    assert window.state._tree is not None                    # built in the analysis thread
    np.testing.assert_array_equal(window.state.project(run.latents()[[5, 9]]), emb[[5, 9]])
    x, y = window.latent.selected.getData()                  # the outline follows the view
    np.testing.assert_allclose(np.stack([x, y], 1), emb[sel], atol=1e-6)
    assert window.latent.plot.getAxis("bottom").labelText == "UMAP1"
    # another run: its clusters and PCA view at once, while its UMAP computes; no selections
    open_run(qtbot, window, SyntheticRun(tmp_path / "other"))
    assert len(window.latent.selected.getData()[0]) == 0
    assert sorted(p.name for p in run.path.iterdir()) == ["analysis_cache"]


def _umap_child(qtbot, window, run):
    """Open `run` in the UMAP view (not cached: computed in a child) and wait for that child;
    returns its pid."""
    before = child_pids()
    window.latent_panel.embedding_box.setCurrentText("UMAP")
    open_run(qtbot, window, run)
    assert window.state.embedding_kind == "PCA"              # shown while UMAP computes
    qtbot.waitUntil(lambda: bool(child_pids() - before), timeout=WAIT_MS)
    (pid,) = child_pids() - before
    return pid


def test_umap_child_ends_with_its_view(qtbot, window, tmp_path):
    """A UMAP still computing ends when another run opens (before writing its result) and
    when the explorer closes."""
    runs = [SyntheticRun(tmp_path / name, n=3000, zdim=8) for name in ("a", "b", "c")]
    for run in runs:
        run.path.mkdir()
    pid = _umap_child(qtbot, window, runs[0])
    window.latent_panel.embedding_box.setCurrentText("PCA")
    open_run(qtbot, window, runs[1])
    qtbot.waitUntil(lambda: pid not in child_pids(), timeout=WAIT_MS)
    assert not list((runs[0].path / "analysis_cache").glob("*.npy"))   # ended, not finished
    pid = _umap_child(qtbot, window, runs[2])
    window.close()                                            # waits for its threads
    assert pid not in child_pids()
    assert not list((runs[2].path / "analysis_cache").glob("*.npy"))


def test_training_epochs_do_not_recompute_umap(qtbot, window, tmp_path, monkeypatch):
    run = SyntheticRun(tmp_path / "r")
    run.path.mkdir()
    _fake_umap(run, 2)
    open_run(qtbot, window, run)
    from cryoscape.app.gui.services.training import TrainingService
    monkeypatch.setattr(TrainingService, "running", property(lambda self: True))
    box = window.latent_panel.embedding_box
    box.setCurrentText("UMAP")                           # the user asks for the epoch shown
    assert "UMAP for epoch 2 only" in window.statusBar().currentMessage()
    qtbot.waitUntil(lambda: window.state.embedding_kind == "UMAP", timeout=WAIT_MS)
    # a training epoch arrives (the watcher's signal)
    window.explorer.training.show_epoch(run.path, 1)
    qtbot.waitUntil(lambda: window.state.epoch == 1 and window.state.labels is not None,
                    timeout=WAIT_MS)
    assert window.state.embedding_kind == "PCA" and box.currentText() == "PCA"
    msg = window.statusBar().currentMessage()
    assert "epoch 1" in msg and "UMAP is not recomputed every epoch" in msg
    qtbot.wait(200)
    cache = sorted((run.path / "analysis_cache").iterdir())
    assert len(cache) == 1 and ".e2." in cache[0].name       # nothing computed for epoch 1


def test_exported_indices_follow_the_run_index(qtbot, window, tmp_path):
    """A run trained on a subset (dataset_args.ind, relative to the run directory): exported
    selections and metadata rows are the particle file's rows, via core.analysis.runfiles."""
    from cryoscape.core.io.cryodrgn import load_index, save_index
    from cryoscape.core.io.star import make_star, write_star
    from cryoscape.core.rotations import random_rotations

    total, n = 500, 300
    star = tmp_path / "particles.star"
    write_star(star, make_star([f"{i + 1:06d}@p.mrcs" for i in range(total)],
                               rotations=random_rotations(total, np.random.default_rng(0)),
                               apix=2.0, D=32))
    run = SyntheticRun(tmp_path / "r", n=n, particles_path=star)
    run.path.mkdir()
    ind = np.sort(np.random.default_rng(1).choice(total, n, replace=False))
    save_index(run.path / "ind.pkl", ind)
    run.config = {"dataset_args": {"ind": "ind.pkl"}}
    open_run(qtbot, window, run)
    sel = np.array([0, 5, 17, 299])
    name = window.state.add_selection(sel)
    out = window.explorer.selections.export(name, tmp_path / "sel.pkl")
    assert np.array_equal(load_index(out), ind[sel])
    qtbot.waitUntil(lambda: window.state.metadata is not None, timeout=WAIT_MS)
    names = window.state.metadata["rlnImageName"]
    assert list(names[sel]) == [f"{i + 1:06d}@p.mrcs" for i in ind[sel]]


def test_axes_have_no_si_prefix(qtbot, window, tmp_path):
    run = SyntheticRun(tmp_path / "r")
    run._z = {e: z * 1e-3 for e, z in run._z.items()}          # small latents
    open_run(qtbot, window, run)
    qtbot.wait(100)
    for axis in ("bottom", "left"):
        ax = window.latent.plot.getAxis(axis)
        assert ax.autoSIPrefixScale == 1.0 and "(x" not in ax.labelString()
    assert window.latent.plot.getAxis("bottom").labelText == "PC1"
    window.training.loss_plot.set_metrics([{"epoch": e, "loss": 1e-4 / e} for e in range(1, 6)])
    qtbot.wait(100)
    ax = window.training.loss_plot.getAxis("left")
    assert ax.autoSIPrefixScale == 1.0 and "(x" not in ax.labelString()
    assert not window.training.loss_plot.note.isVisible()
    window.training.loss_plot.set_metrics([])                # a run without metrics: no stale curve
    x = window.training.loss_plot.curve.xData
    assert x is None or len(x) == 0
    assert window.training.loss_plot.note.isVisible()
    # then a training's epochs arrive (its metrics.jsonl starts empty): all in view
    window.training.loss_plot.set_metrics([{"epoch": e, "loss": 3.0 / e} for e in range(1, 13)])
    qtbot.wait(100)
    (x0, x1), (y0, y1) = window.training.loss_plot.getViewBox().viewRange()
    assert x0 <= 1 and x1 >= 12 and y0 <= 0.25 and y1 >= 3.0
    # pyqtgraph would otherwise scale these axes
    import pyqtgraph as pg
    probe = pg.AxisItem("left")
    probe.setLabel("loss")
    probe.setRange(1e-5, 1e-4)
    assert probe.autoSIPrefixScale != 1.0
