"""The explorer's landscape and per-image fit on the tiny trained run (two states, zdim 1): the
Landscape view places the particles at landscape.npz's volume PCs coloured by state, lists
the states' occupancy, shows a clicked state's map; computed in a child process with its
progress and cached in the run folder (a read-only one left alone); the fit error colours the
points and the worst images become an exportable junk selection."""
from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest
from PyQt6.QtCore import Qt

from tests.conftest import cli
from tests.gui.conftest import WAIT_MS, child_pids

pytestmark = pytest.mark.slow  # trains the shared tiny run when run alone


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    """The tiny run copied without its analysis cache (a fresh run folder)."""
    dst = tmp_path / "run"
    shutil.copytree(tiny_run.run, dst, ignore=shutil.ignore_patterns("analysis_cache"))
    return dst


def open_run(qtbot, window, path):
    window.open_run(path)
    assert not window.errors, window.errors
    qtbot.waitUntil(lambda: window.state.labels is not None, timeout=WAIT_MS)


def show_landscape(qtbot, window):
    window.latent_panel.embedding_box.setCurrentText("Landscape")
    qtbot.waitUntil(lambda: window.state.embedding_kind == "Landscape" or bool(window.errors),
                    timeout=WAIT_MS)
    assert not window.errors, window.errors


def click_state(qtbot, window, s):
    table = window.latent_panel.states.table
    rect = table.visualItemRect(table.item(s, 1))
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.waitUntil(lambda: window.volume.shown is not None
                    and window.volume.shown.source == "landscape"
                    and window.volume.shown.label.startswith(f"state {s} "), timeout=WAIT_MS)


def test_landscape_view_of_the_cli_landscape(qtbot, window, run_copy):
    """`cryoscape landscape RUN --states 3` first: the explorer reads its cache (no child, no
    progress; its 3 states though 5 is the explorer's default) and shows exactly its
    particles, states and maps."""
    from cryoscape.core.io.mrc import read_mrc

    assert cli("landscape", run_copy, "--states", "3") == 0
    out = next(run_copy.glob("landscape.*"))
    npz = np.load(out / "landscape.npz")
    open_run(qtbot, window, run_copy)
    model = window.explorer.landscape.model
    progress = []
    model.progress_changed.connect(lambda *p: progress.append(p))
    panel = window.latent_panel
    assert not panel.states.isVisible()
    show_landscape(qtbot, window)
    assert progress == []                                   # read from the CLI's cache
    st, lv = window.state, window.latent
    np.testing.assert_array_equal(lv.xy, npz["volume_pcs"][:, :2])
    assert lv.n_points == len(npz["state"]) == 600
    assert panel.states.isVisible()
    occupancy = np.bincount(npz["state"])
    assert panel.states.occupancy == occupancy.tolist() and len(occupancy) == 3
    assert panel.states.states_box.value() == 3
    # coloured by state: the state of each particle, one colour per state
    qtbot.waitUntil(lambda: st.colour_by == "landscape state", timeout=WAIT_MS)
    np.testing.assert_array_equal(st.colour_values, npz["state"])
    assert len({b.color().name() for b in lv.scatter.data["brush"]}) == len(occupancy)
    assert panel.colour_box.currentText() == "landscape state"
    # a click on a state shows its map: the CLI's state map
    for s in (int(np.argmax(occupancy)), int(np.argmin(occupancy))):
        click_state(qtbot, window, s)
        shown = window.explorer.volumes.shown.current
        ref = read_mrc(out / "states" / f"state_{s:03d}.mrc")[0]
        np.testing.assert_allclose(shown.volume, ref, atol=1e-6)
        assert shown.D == 32 and window.explorer.landscape.model.selected == s
        qtbot.waitUntil(lambda: window.volume.view.n_vertices > 100, timeout=WAIT_MS)
        assert window.volume.info.text().startswith(f"state {s} ({occupancy[s]} particles)")
    # the latent view again: zdim 1 shows its histogram, still coloured by state
    panel.embedding_box.setCurrentText("PCA")
    qtbot.waitUntil(lambda: window.state.embedding_kind == "histogram" and lv.histogram,
                    timeout=WAIT_MS)
    assert not panel.states.isVisible()


def test_landscape_computed_in_a_child_and_cached(qtbot, window, run_copy):
    from cryoscape.core.analysis.landscape import Landscape, compute_landscape
    from cryoscape.core.run import Run

    before = child_pids()
    open_run(qtbot, window, run_copy)
    model = window.explorer.landscape.model
    progress = []
    model.progress_changed.connect(lambda *p: progress.append(p))
    show_landscape(qtbot, window)
    # its progress came from the child as it worked: every sketch map decoded, then the states
    assert ("decoding the sketch", 60, 60) in progress
    assert progress[-1] == ("volume PCA and states", 3, 3)
    assert child_pids() == before                        # the child has ended
    cached = list((run_copy / "analysis_cache").glob("landscape.e18.*.npz"))
    assert len(cached) == 1
    mine = Landscape.load(cached[0])
    np.testing.assert_array_equal(window.latent.xy, mine.volume_pcs[:, :2])
    # the same landscape as the library computes here
    ref = compute_landscape(Run.open(run_copy), 18, progress=False)
    np.testing.assert_array_equal(mine.state, ref.state)
    np.testing.assert_allclose(mine.state_maps, ref.state_maps, atol=1e-4)
    assert window.latent_panel.states.occupancy == np.bincount(ref.state).tolist()
    # another number of states: computed again (the maps' clusters) from the cached sketch
    # (nothing decoded), listed
    del progress[:]
    window.latent_panel.states.states_box.setValue(2)
    qtbot.waitUntil(lambda: model.landscape is not None and len(model.occupancy) == 2,
                    timeout=WAIT_MS)
    assert window.latent_panel.states.occupancy == np.bincount(model.landscape.state).tolist()
    assert len(list((run_copy / "analysis_cache").glob("landscape.e18.*.npz"))) == 2
    assert progress and not any(p[0] == "decoding the sketch" for p in progress)
    assert model.landscape.info["sketch_cached"]


def test_cli_landscape_of_a_read_only_run_is_shown(qtbot, window, run_copy, tmp_path,
                                                   monkeypatch):
    """`cryoscape landscape` on a run folder without write bits caches in the shared
    temporary folder, where the explorer finds it as soon as the run opens."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    run_copy.chmod(0o555)
    try:
        assert cli("landscape", run_copy, "--states", 2, "-o", tmp_path / "out") == 0
        open_run(qtbot, window, run_copy)
        model = window.explorer.landscape.model
        qtbot.waitUntil(lambda: model.landscape is not None, timeout=WAIT_MS)
    finally:
        run_copy.chmod(0o755)
    assert not (run_copy / "analysis_cache").exists()
    np.testing.assert_array_equal(model.landscape.state,
                                  np.load(tmp_path / "out" / "landscape.npz")["state"])


def wait_forever(progress):
    """A child job that reports once, then never ends by itself."""
    progress("started", 0, 1)
    threading.Event().wait()


def test_child_is_ended_when_superseded(tmp_path):
    from cryoscape.app.gui.services.child import on_run, run_in_child
    from cryoscape.core.analysis.landscape import compute_landscape
    from cryoscape.core.errors import CryoscapeError

    before = child_pids()
    seen = []
    result = run_in_child(wait_forever, progress=lambda *p: seen.append(p),
                          stop=lambda: bool(seen))
    assert result is None and seen == [("started", 0, 1)]
    assert child_pids() == before                        # terminated and reaped
    with pytest.raises(CryoscapeError, match="no such run directory"):
        run_in_child(on_run, (compute_landscape, tmp_path / "missing"))
    assert child_pids() == before


def test_fit_error_and_junk_selection_from_eval_images(qtbot, window, run_copy, tiny_run,
                                                       tmp_path):
    """eval-images' output in the run folder colours the points and gives the junk."""
    from cryoscape.core.analysis.fit import load_fit
    from cryoscape.core.io.star import read_star

    assert cli("eval-images", run_copy, "--k", "1") == 0     # RUN/eval_images.final.npz
    fit = load_fit(run_copy / "eval_images.final.npz")
    open_run(qtbot, window, run_copy)
    st, panel = window.state, window.latent_panel
    qtbot.waitUntil(lambda: "fit error" in st.particle_values, timeout=WAIT_MS)
    panel.colour_box.setCurrentText("fit error")
    qtbot.waitUntil(lambda: st.colour_by == "fit error", timeout=WAIT_MS)
    np.testing.assert_array_equal(st.colour_values, fit.mse)
    qtbot.mouseClick(panel.junk_button, Qt.MouseButton.LeftButton)
    junk = np.flatnonzero(fit.mse > fit.threshold)
    assert 30 < len(junk) < 300                          # k = 1: a good share flagged
    np.testing.assert_array_equal(st.selections["junk (fit error)"], junk)
    # exported like any other selection: those rows of the run's .star
    out = window.explorer.selections.export("junk (fit error)", tmp_path / "junk.star")
    rows = read_star(out).particles["rlnImageName"].tolist()
    every = read_star(tiny_run.data / "particles.star").particles["rlnImageName"]
    assert rows == every.iloc[junk].tolist()


def test_fit_computed_in_a_child_for_a_read_only_run(qtbot, window, run_copy, tmp_path,
                                                     monkeypatch):
    """No eval-images output: one click computes the fit in a child process and selects the
    images above eval-images' threshold; a run folder without write bits stays untouched
    (the fit's and the landscape's caches go to the temporary folder)."""
    import tempfile

    from cryoscape.core.analysis.fit import evaluate_images
    from cryoscape.core.run import Run

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    before, kids = sorted(p.name for p in run_copy.iterdir()), child_pids()
    run_copy.chmod(0o555)
    try:
        open_run(qtbot, window, run_copy)
        st, panel = window.state, window.latent_panel
        assert "fit error" not in st.particle_values and panel.junk_button.isEnabled()
        qtbot.mouseClick(panel.junk_button, Qt.MouseButton.LeftButton)   # evaluates, selects
        qtbot.waitUntil(lambda: "junk (fit error)" in st.selections or bool(window.errors),
                        timeout=WAIT_MS)
        assert not window.errors, window.errors
        show_landscape(qtbot, window)                # the landscape's cache goes there too
        assert sorted(p.name for p in run_copy.iterdir()) == before
    finally:
        run_copy.chmod(0o755)
    ref = evaluate_images(Run.open(run_copy), epoch=18)
    np.testing.assert_allclose(st.particle_values["fit error"], ref.mse, rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(st.selections["junk (fit error)"],
                                  np.flatnonzero(st.particle_values["fit error"]
                                                 > ref.threshold))
    fallback = tmp_path / "tmp" / "cryoscape_analysis_cache"
    assert len(list(fallback.glob("eval_images.e18.*"))) == 1
    assert len(list(fallback.glob("landscape.e18.*"))) == 1
    assert child_pids() == kids


def test_fit_failure_is_reported_and_can_be_retried(qtbot, window, run_copy, tiny_run):
    """An ab initio-like run (a bare stack, no poses anywhere): the fit fails in one line; with
    the poses the run found at the epoch shown (pose.18.pkl) the next click evaluates and
    selects."""
    import yaml

    config = yaml.safe_load((run_copy / "config.yaml").read_text())
    config["dataset_args"].update(particles=str(tiny_run.data / "particles.mrcs"),
                                  ctf=str(tiny_run.data / "ctf.pkl"), poses=None)
    (run_copy / "config.yaml").write_text(yaml.safe_dump(config))
    open_run(qtbot, window, run_copy)
    st, panel = window.state, window.latent_panel
    qtbot.mouseClick(panel.junk_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(window.errors), timeout=WAIT_MS)
    assert len(window.errors) == 1 and "particles.mrcs: no poses" in window.errors[0]
    assert "junk (fit error)" not in st.selections
    shutil.copyfile(tiny_run.data / "poses.pkl", run_copy / "pose.18.pkl")   # epoch 18's
    qtbot.mouseClick(panel.junk_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "junk (fit error)" in st.selections or len(window.errors) > 1,
                    timeout=WAIT_MS)
    assert len(window.errors) == 1
    fit = window.explorer.fit.fit
    np.testing.assert_array_equal(st.selections["junk (fit error)"],
                                  np.flatnonzero(fit.mse > fit.threshold))


def test_landscape_of_a_cryodrgn_run(qtbot, window, moved_run):
    """cryoDRGN's own run (zdim 2, 100 particles, its particle files elsewhere): the Landscape
    view from its PCA view, its 10-map sketch's states, a state's map."""
    from cryoscape.core.analysis.landscape import Landscape

    moved_run.chmod(0o755)                     # the copy keeps shared/'s read-only mode
    open_run(qtbot, window, moved_run)
    items = window.latent_panel.embedding_box.model()
    assert all(items.item(i).isEnabled() for i in range(3))      # PCA, UMAP, Landscape
    assert not window.latent_panel.junk_button.isEnabled()       # no images here to evaluate
    show_landscape(qtbot, window)
    cached = list((moved_run / "analysis_cache").glob("landscape.e3.*.npz"))
    assert len(cached) == 1
    ls = Landscape.load(cached[0])
    assert len(ls.centres) == 10 and ls.info["box"] == 64
    np.testing.assert_array_equal(window.latent.xy, ls.volume_pcs[:, :2])
    assert window.latent_panel.states.occupancy == np.bincount(ls.state, minlength=5).tolist()
    s = int(np.argmax(ls.occupancy))
    click_state(qtbot, window, s)
    np.testing.assert_array_equal(window.explorer.volumes.shown.current.volume,
                                  ls.state_maps[s])
