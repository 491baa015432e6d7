"""The explorer on real runs: the cryoDRGN 4.3.1 fixture run (its particle files are missing
here), a star-file export from a lasso, the screenshot, and training from the panel."""
from __future__ import annotations

import numpy as np
import pytest
from PyQt6.QtCore import Qt

from tests.gui.conftest import WAIT_MS, surface_fraction, wait_surface


def _open(qtbot, window, path):
    window.open_run(path)
    assert not window.errors, window.errors
    qtbot.waitUntil(lambda: window.state.labels is not None, timeout=WAIT_MS)


def test_cryodrgn_run_opens_without_particles(qtbot, window, moved_run, fixtures_dir):
    _open(qtbot, window, moved_run)
    st = window.state
    expected = np.load(fixtures_dir / "cryodrgn_rundir" / "expected" / "z_mu.npy")
    assert st.epoch == 3 and list(st.run.epochs) == [1, 2, 3]
    assert window.latent.n_points == 100 == len(window.latent.scatter.data)
    assert np.allclose(st.z, expected, atol=1e-6)
    # the loss curve of cryoDRGN's run.log
    assert list(window.training.loss_plot.curve.xData) == [1, 2, 3]
    assert window.training.loss_plot.curve.yData[0] == pytest.approx(1.306415)
    assert not window.training.loss_plot.note.isVisible()
    # particle files dangle: the run still opens, and the colouring says why metadata is off
    qtbot.waitUntil(lambda: bool(st.metadata_note), timeout=WAIT_MS)
    assert st.metadata is None and "not found" in st.metadata_note
    note = window.latent_panel.colour_note
    assert note.isVisible() and "not found" in note.text()
    assert window.latent_panel.colour_box.count() == 3                    # k-means, density, none
    window.latent_panel.colour_box.setCurrentText("density")
    qtbot.waitUntil(lambda: window.state.colour_by == "density", timeout=WAIT_MS)
    assert not window.errors
    # maps still decode
    window.explorer.volumes.decode_particle(0)
    wait_surface(qtbot, window, "exact", timeout=WAIT_MS)
    assert window.volume.view.n_vertices > 100


def test_stack_without_metadata_says_so(qtbot, window, cryodrgn_run):
    _open(qtbot, window, cryodrgn_run)
    qtbot.waitUntil(lambda: bool(window.state.metadata_note), timeout=WAIT_MS)
    assert "image stack without metadata" in window.latent_panel.colour_note.text()


def test_click_decodes_real_map_and_screenshot(qtbot, window, cryodrgn_run, fixtures_dir,
                                               tmp_path):
    from cryoscape.core.io.mrc import read_mrc

    _open(qtbot, window, cryodrgn_run)
    lv = window.latent
    qtbot.mouseClick(lv.plot.viewport(), Qt.MouseButton.LeftButton, pos=lv.pixel_of(50))
    wait_surface(qtbot, window, "exact", timeout=WAIT_MS)
    assert window.state.current_index == 50
    assert window.volume.view.n_vertices > 500
    # the map under the click is the one cryoDRGN's eval_vol decodes for particle 50
    vol, apix = window.explorer.volumes.current_map()
    ref, _ = read_mrc(fixtures_dir / "cryodrgn_rundir" / "expected" / "vol_002.mrc")
    assert vol.shape == (64, 64, 64) and apix == pytest.approx(1.0)
    assert np.linalg.norm(vol - ref) / np.linalg.norm(ref) < 1e-3
    n1 = window.volume.view.n_vertices
    window.volume.set_sigma(window.volume.sigma + 1.5)
    qtbot.waitUntil(lambda: window.volume.view.n_vertices != n1, timeout=WAIT_MS)
    # save map and ChimeraX script
    window.explorer.volumes.save_map(tmp_path / "m.mrc")
    assert read_mrc(tmp_path / "m.mrc")[0].shape == (64, 64, 64)
    window.volume.set_sigma(2.0)
    wait_surface(qtbot, window, "exact")
    qtbot.wait(300)
    shot = window.save_screenshot(tmp_path / "window.png")
    from PyQt6.QtGui import QImage
    img = QImage(str(shot))
    assert img.width() >= 1000 and img.height() >= 600
    # the 3D view in the screenshot is not blank
    view = window.volume.view.canvas.native
    origin = view.mapTo(window, view.rect().topLeft())
    crop = img.copy(origin.x(), origin.y(), view.width(), view.height())
    px = np.frombuffer(crop.constBits().asstring(crop.sizeInBytes()), np.uint8)
    assert surface_fraction(px.reshape(-1, 4)[:, [2, 1, 0]]) > 0.01     # BGRA


def test_lasso_exports_star_with_selected_rows(qtbot, window, cryodrgn_run, tmp_path):
    from cryoscape.core.io.star import make_star, read_star, write_star

    _open(qtbot, window, cryodrgn_run)
    # a star file for the run's 100 particles (the fixture run was trained on an .mrcs)
    rng = np.random.default_rng(0)
    names = [f"{i + 1:06d}@hand.mrcs" for i in range(100)]
    src = tmp_path / "particles.star"
    write_star(src, make_star(names, rotations=np.tile(np.eye(3, dtype=np.float32), (100, 1, 1)),
                              shifts=rng.normal(size=(100, 2)).astype(np.float32), apix=1.0, D=64))
    xy = window.state.embedding
    lo, hi = np.percentile(xy, 20, axis=0), np.percentile(xy, 80, axis=0)
    poly = np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]])
    window.latent.set_mode("lasso")
    ind = window.latent.select_polygon(poly)
    assert 5 < len(ind) < 100
    name = list(window.state.selections)[-1]
    out = window.explorer.selections.export(name, tmp_path / "subset.star", source=src)
    full, sub = read_star(src).particles, read_star(out).particles
    assert len(sub) == len(ind)
    assert list(sub["rlnImageName"]) == [names[i] for i in ind]
    assert np.allclose(sub["rlnOriginXAngst"], full["rlnOriginXAngst"].to_numpy()[ind])


def _configure_hand_training(window, fixtures_dir, rundir, zdim, epochs, batch, pe_dim):
    """Fill the training panel for a tiny run on the hand fixture; returns the panel."""
    hand = fixtures_dir / "hand"
    tp = window.training
    tp.configure(str(hand / "hand.mrcs"), str(rundir), poses=str(hand / "hand_rot.pkl"),
                 zdim=zdim, epochs=epochs, batch=batch, enc=(1, 16), dec=(1, 16),
                 extra=f"--threads 1 --no-progress --pe-dim {pe_dim}")
    return tp


@pytest.mark.slow
def test_training_from_panel_updates_loss_and_scatter(qtbot, window, fixtures_dir, tmp_path):
    rundir = tmp_path / "run"
    tp = _configure_hand_training(window, fixtures_dir, rundir, zdim=1, epochs=100000, batch=20,
                                  pe_dim=8)
    qtbot.mouseClick(tp.start_button, Qt.MouseButton.LeftButton)
    training = window.explorer.training
    assert training.running and not tp.start_button.isEnabled()
    # the first epochs arrive: the run opens (a histogram: zdim 1) and the loss curve grows
    qtbot.waitUntil(lambda: window.state.run is not None and window.state.labels is not None,
                    timeout=WAIT_MS)
    assert window.latent.histogram and window.latent.hist.yData.sum() == 100
    qtbot.waitUntil(lambda: window.state.epoch is not None and window.state.epoch >= 2,
                    timeout=WAIT_MS)
    assert len(tp.loss_plot.curve.xData) >= 1
    first = window.state.epoch
    qtbot.waitUntil(lambda: len(tp.loss_plot.curve.xData) >= 2, timeout=WAIT_MS)
    lo, hi = tp.loss_plot.viewRange()[0]                 # epochs are ticked as whole numbers
    ticks = [v for _, vals in tp.loss_plot.getAxis("bottom").tickValues(lo, hi, 400)
             for v in vals]
    assert ticks and all(float(v).is_integer() for v in ticks)
    process = training.watcher.process
    with qtbot.waitSignal(training.finished, timeout=WAIT_MS):
        qtbot.mouseClick(tp.stop_button, Qt.MouseButton.LeftButton)
    assert process.poll() is not None                    # the child process has ended
    assert not training.running and tp.start_button.isEnabled()
    # stopped inside an epoch, the resume point saved there; the explorer shows the last
    # finished epoch and its loss, and Continue is offered
    import json
    status = json.loads((rundir / "status.json").read_text())
    epochs = sorted(int(p.name.split(".")[1]) for p in rundir.glob("weights.*.pkl"))
    assert status["state"] == "stopped" and status["epoch"] == epochs[-1] >= first
    assert 0 < status["batch"] <= 5                      # 100 images in batches of 20
    qtbot.waitUntil(lambda: window.state.epoch == epochs[-1], timeout=WAIT_MS)
    assert list(tp.loss_plot.curve.xData) == list(range(1, epochs[-1] + 1))
    assert tp.log.toPlainText().splitlines()[-1] == \
        f"training stopped in epoch {epochs[-1] + 1}: Continue resumes it"
    assert tp.continue_button.isEnabled()
    assert not window.errors, window.errors


def test_recent_files_drop_and_chimerax(qtbot, window, moved_run, tmp_path, monkeypatch):
    from PyQt6.QtCore import QMimeData, QPointF, QUrl
    from PyQt6.QtGui import QDropEvent

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(moved_run))])
    drop = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime,
                      Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    window.dropEvent(drop)
    qtbot.waitUntil(lambda: window.state.labels is not None, timeout=WAIT_MS)
    assert window.state.run.path.resolve() == moved_run.resolve()
    assert window.settings.value("recent", [], type=list) == [str(moved_run.resolve())]
    assert [a.text() for a in window.recent_menu.actions()] == [str(moved_run.resolve())]
    # "Open in ChimeraX" without ChimeraX installed: map + script written, the user is told
    monkeypatch.setenv("PATH", str(tmp_path))
    window.explorer.volumes.decode_particle(3)
    wait_surface(qtbot, window, "exact", timeout=WAIT_MS)
    window.open_chimerax()
    outdir = moved_run / "cryoscape_maps"
    cxc = (outdir / "particle_3.cxc").read_text()
    assert "open particle_3.mrc" in cxc and "level" in cxc
    assert (outdir / "particle_3.mrc").exists()
    assert "ChimeraX not found" in window.statusBar().currentMessage()


@pytest.mark.slow
def test_pause_after_epoch(qtbot, window, fixtures_dir, tmp_path):
    rundir = tmp_path / "run"
    tp = _configure_hand_training(window, fixtures_dir, rundir, zdim=2, epochs=500, batch=50,
                                  pe_dim=4)
    tp.start()
    qtbot.waitUntil(lambda: window.state.run is not None, timeout=WAIT_MS)
    training = window.explorer.training
    with qtbot.waitSignal(training.finished, timeout=WAIT_MS) as blocker:
        tp.pause()
    assert blocker.args[0] == 0                          # a clean exit after the epoch
    epochs = sorted(int(p.name.split(".")[1]) for p in rundir.glob("weights.*.pkl"))
    assert 1 <= epochs[-1] < 500
    assert not training.running and tp.start_button.isEnabled()
