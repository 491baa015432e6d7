"""The explorer on synthetic runs (analytic decoder): scatter, click-to-decode, threshold,
selections, trajectories, histogram for zdim 1, cache, pinning, errors and settings."""
from __future__ import annotations

import numpy as np
import pytest
from cryoscape.core.errors import CryoscapeError
from PyQt6.QtCore import QPoint, Qt

from tests.gui.conftest import WAIT_MS, SyntheticRun, open_run, surface_fraction, wait_surface


def test_scatter_holds_every_particle_and_colours(qtbot, window, synthetic_run):
    open_run(qtbot, window, synthetic_run)
    assert window.latent.n_points == 300 and window.latent.n_drawn == 300
    assert len(window.latent.scatter.data) == 300
    pca = window.state.embedding
    z = synthetic_run.latents()
    zc = z - z.mean(0)
    _, _, vt = np.linalg.svd(zc, full_matrices=False)
    assert np.allclose(np.abs(pca), np.abs(zc @ vt[:2].T), atol=1e-4)   # PCA of the latents
    # the clusters `cryoscape analyze/select` compute (library defaults: k 20, n_init 3)
    from cryoscape.core.analysis.sampling import kmeans
    km = kmeans(z)
    labels = window.state.labels
    assert labels.shape == (300,) and len(np.unique(labels)) == 20
    assert np.array_equal(labels, km.labels)
    assert np.array_equal(window.state.centre_index, km.medoids)
    brushes = {b.color().name() for b in window.latent.scatter.data["brush"]}
    assert len(brushes) == 20                                          # one colour per cluster
    window.latent_panel.colour_box.setCurrentText("density")       # in the colouring thread
    qtbot.waitUntil(lambda: window.state.colour_by == "density", timeout=WAIT_MS)
    from cryoscape.core.analysis.sampling import density_2d
    xy = window.state.embedding
    np.testing.assert_allclose(window.state.colour_values, density_2d(xy).at(xy))
    assert len({b.color().name() for b in window.latent.scatter.data["brush"]}) > 20
    # the epoch slider (a row of its own, not squeezed) shows the other epoch's latents
    assert window.latent_panel.epoch_slider.width() > 150
    window.latent_panel.epoch_slider.setValue(0)
    qtbot.waitUntil(lambda: window.state.epoch == 1 and window.state.labels is not None)
    assert np.allclose(window.state.z, synthetic_run.latents(1))
    xy = window.state.embedding                  # coloured by its own density, drawn with it
    assert window.state.colour_by == "density"
    np.testing.assert_allclose(window.state.colour_values, density_2d(xy).at(xy))
    # a colouring chosen while the latents are analysed is the one shown
    window.explorer.runs.set_run(synthetic_run)
    window.latent_panel.colour_box.setCurrentText("none")
    qtbot.waitUntil(lambda: window.state.labels is not None and window.state.colour_by == "none",
                    timeout=WAIT_MS)
    assert window.state.colours is None
    scatter = window.latent.scatter                          # one brush for every point
    assert set(scatter.data["brush"]) == {None} and scatter.opts["brush"].color().name() == \
        "#7cc4f0"


def test_click_decodes_and_threshold_remeshes(qtbot, window, synthetic_run):
    open_run(qtbot, window, synthetic_run)
    lv = window.latent
    i = int(np.argmax(window.state.embedding[:, 0]))      # an outlying, isolated point
    qtbot.mouseClick(lv.plot.viewport(), Qt.MouseButton.LeftButton, pos=lv.pixel_of(i))
    wait_surface(qtbot, window, "exact")
    assert window.state.current_index == i
    assert np.allclose(window.state.current_z, synthetic_run.latents()[i])
    n1 = window.volume.view.n_vertices
    assert n1 > 100
    level1 = window.volume.view.data[0].level
    window.volume.set_sigma(4.0)
    qtbot.waitUntil(lambda: window.volume.view.data[0].level != level1, timeout=WAIT_MS)
    n2 = window.volume.view.n_vertices
    assert n2 != n1 and window.volume.view.data[0].level > level1
    assert window.volume.shown.source == "exact"          # re-meshed, not decoded again


def test_cache_shows_nearest_surface_at_once(qtbot, window, synthetic_run):
    open_run(qtbot, window, synthetic_run)
    ex = window.explorer
    cache = ex.volumes.cache
    qtbot.waitUntil(lambda: cache.n_ready == len(cache.index) > 10, timeout=WAIT_MS)
    assert set(window.state.centre_index) <= set(ex.volumes.cache.index)       # k-means centres
    qtbot.waitUntil(lambda: len(cache.meshes) == len(cache.index), timeout=WAIT_MS)
    shown = []
    ex.volumes.shown.mesh_changed.connect(shown.append)
    ex.volumes.decode_particle(5)
    # synchronously, before any decode: the cached mesh of the cached map nearest in z
    _, _, _, slot = ex.volumes.cache.nearest(window.state.z[5])
    assert len(shown) == 1 and shown[0].volume.source == "cache"
    assert shown[0].mesh is ex.volumes.cache.mesh(slot, window.state.threshold)
    assert window.volume.shown.source == "cache"
    wait_surface(qtbot, window, "exact")
    ex.volumes.preview_particle(7)                                # hover: nearest cached surface
    assert window.volume.shown.source == "cache"
    ex.volumes.preview_particle(-1)                               # leaving the points restores it
    assert window.volume.shown.source == "exact"


def test_cache_box_follows_each_run(qtbot, window, tmp_path):
    """A small-box run caches small maps; the next, larger run gets the full cache box again."""
    ex = window.explorer
    for D, cached in ((16, 16), (32, 24), (64, 24)):
        open_run(qtbot, window, SyntheticRun(tmp_path / f"d{D}", n=120, D=D))
        qtbot.waitUntil(lambda: ex.volumes.cache.n_ready > 0, timeout=WAIT_MS)
        vol = ex.volumes.cache.nearest(window.state.z[0])[0]
        assert ex.volumes.cache.D == cached and vol.shape == (cached,) * 3


def test_lasso_and_rectangle_make_named_selections(qtbot, window, synthetic_run, tmp_path):
    open_run(qtbot, window, synthetic_run)
    lv = window.latent
    window.latent.set_mode("lasso")
    xy = window.state.embedding
    poly = np.array([[0, 0], [5, 0], [5, 5], [0, 5]], float)
    lv.select_polygon(poly)
    expected = np.flatnonzero((xy[:, 0] > 0) & (xy[:, 1] > 0))
    assert list(window.state.selections) == ["selection 1"]
    assert np.array_equal(window.state.selections["selection 1"], expected)
    # a real mouse drag in rectangle mode
    window.latent.set_mode("rect")
    vp = lv.plot.viewport()
    a, b = lv.pixel_of(int(np.argmin(xy[:, 0]))), lv.pixel_of(int(np.argmax(xy[:, 0])))
    p0, p1 = QPoint(int(a.x()) - 5, 5), QPoint(int(b.x()) + 5, vp.height() - 5)
    qtbot.mousePress(vp, Qt.MouseButton.LeftButton, pos=p0)
    for t in np.linspace(0, 1, 8):
        qtbot.mouseMove(vp, QPoint(int(p0.x() + t * (p1.x() - p0.x())),
                                   int(p0.y() + t * (p1.y() - p0.y()))))
        qtbot.wait(20)
    qtbot.mouseRelease(vp, Qt.MouseButton.LeftButton, pos=p1)
    qtbot.waitUntil(lambda: "selection 2" in window.state.selections, timeout=WAIT_MS)
    assert len(window.state.selections["selection 2"]) == 300
    window.state.rename_selection("selection 1", "upper right")
    assert "upper right" in window.state.selections
    path = window.explorer.selections.export("upper right", tmp_path / "sel.pkl")
    from cryoscape.core.io.cryodrgn import load_index
    assert np.array_equal(load_index(path), expected)


def test_trajectory_exports_maps_and_cxc(qtbot, window, synthetic_run, tmp_path):
    open_run(qtbot, window, synthetic_run)
    z = synthetic_run.latents()
    i, j = int(np.argmin(z[:, 0])), int(np.argmax(z[:, 0]))
    window.trajectory.set_waypoints([i, j])
    window.trajectory.n.setValue(6)
    window.trajectory._compute()
    qtbot.waitUntil(lambda: window.state.path_z is not None, timeout=WAIT_MS)
    assert window.state.path_z.shape == (6, 2)
    assert np.allclose(window.state.path_z[0], z[i]) and np.allclose(window.state.path_z[-1], z[j])
    assert window.latent.path.xData is not None and len(window.latent.path.xData) == 6
    qtbot.waitUntil(lambda: len(window.explorer.volumes.shown.path_volumes) == 6, timeout=WAIT_MS)
    window.trajectory.scrubber.setValue(3)
    wait_surface(qtbot, window, "preview")
    done = []
    window.explorer.trajectories.task_done.connect(lambda name, res: done.append(res))
    window.explorer.trajectories.export_path(tmp_path / "traj")
    qtbot.waitUntil(lambda: bool(done), timeout=WAIT_MS)
    maps = sorted((tmp_path / "traj").glob("traj_*.mrc"))
    assert len(maps) == 6
    cxc = (tmp_path / "traj" / "chimerax.cxc").read_text()
    for m in maps:
        assert m.name in cxc
    from cryoscape.core.io.mrc import read_mrc
    v0, apix = read_mrc(maps[0])
    v5, _ = read_mrc(maps[5])
    assert v0.shape == (32, 32, 32) and apix == pytest.approx(2.0)
    assert np.abs(v0 - v5).max() > 0.1                       # the maps change along the path


def test_path_through_data_reuses_the_graph(qtbot, window, synthetic_run):
    from cryoscape.core.analysis.trajectory import path_through

    open_run(qtbot, window, synthetic_run)
    ex, z = window.explorer, synthetic_run.latents()
    window.state.set_waypoints([0, 1, 2])
    ex.trajectories.compute_path(n=7, through_data=True)
    assert window.state.path_z is None                       # computed in the worker
    qtbot.waitUntil(lambda: window.state.path_z is not None, timeout=WAIT_MS)
    assert np.allclose(window.state.path_z, path_through(z, [0, 1, 2], n=7, graph=True),
                       atol=1e-6)
    graph = ex.trajectories._knn[1]
    window.state.set_waypoints([3, 4])
    ex.trajectories.compute_path(n=5, through_data=True)
    qtbot.waitUntil(lambda: len(window.state.path_z) == 5, timeout=WAIT_MS)
    assert ex.trajectories._knn[1] is graph                  # built once per epoch shown
    ex.trajectories.compute_pc_path(pc=2, n=3)
    qtbot.waitUntil(lambda: len(window.state.path_z) == 3, timeout=WAIT_MS)
    # two paths asked for at once: the second's previews are the ones played back
    window.state.set_waypoints([0, 1])
    ex.trajectories.compute_path(n=4)
    window.state.set_waypoints([2, 3])
    ex.trajectories.compute_path(n=6)
    qtbot.waitUntil(lambda: len(ex.volumes.shown.path_volumes) == 6, timeout=WAIT_MS)
    qtbot.wait(300)
    assert len(window.state.path_z) == 6 and len(ex.volumes.shown.path_volumes) == 6
    np.testing.assert_allclose(ex.volumes.shown.path_volumes[0],
                               synthetic_run.decode(z[2:3], D=32)[0],
                               atol=1e-5)
    with pytest.raises(CryoscapeError, match="two waypoints"):
        window.state.set_waypoints([3])
        ex.trajectories.compute_path()
    ex.trajectories.compute_pc_path(pc=5)                    # zdim 2: the worker says why
    qtbot.waitUntil(lambda: bool(window.errors), timeout=WAIT_MS)
    assert "PC5 does not exist" in window.errors[-1]


def test_trajectory_movie_gif(qtbot, window, synthetic_run, tmp_path):
    open_run(qtbot, window, synthetic_run)
    window.state.set_waypoints([0, 1])
    window.explorer.trajectories.compute_path(n=4)
    qtbot.waitUntil(lambda: window.state.path_z is not None, timeout=WAIT_MS)
    window.explorer.volumes.decode_particle(2)
    wait_surface(qtbot, window, "exact")
    view = window.volume.view
    shown = view.data[0]
    # a movie frame of the surface on show, with the view's camera, is the view's picture
    frame = view.render_mesh(shown, view.view.camera.get_state(), tuple(view.canvas.size))
    assert np.abs(frame.astype(int) - view.render()).mean() < 1 and surface_fraction(frame) > 0.01
    assert view.data[0] is shown and view.meshes[0].visible and not view.frame_mesh.visible
    written = []
    window.explorer.trajectories.task_done.connect(lambda name, res: written.append(res)
                                      if name == "movie" else None)
    with pytest.raises(CryoscapeError, match=r"path\.avi: a movie is written as \.gif or \.mp4"):
        window.explorer.trajectories.movie_meshes(tmp_path / "path.avi")   # before decoding
    out = tmp_path / "path.gif"
    window.explorer.trajectories.movie_meshes(out)
    assert not out.exists()                                  # decoded and meshed in a worker
    qtbot.waitUntil(lambda: bool(written), timeout=WAIT_MS)
    assert written == [out]
    import imageio.v3 as iio
    frames = iio.imread(out, index=None)
    view = window.volume.view.canvas.size
    assert frames.shape[0] == 4 and frames.shape[1:3] == (view[1], view[0])
    assert min(surface_fraction(f) for f in frames) > 0.01  # surfaces, not blank frames
    assert np.abs(frames[0].astype(int) - frames[-1]).max() > 50   # the frames differ
    assert window.volume.view.data[0] is shown               # the view shows what it did
    assert window.volume.movie is None and not window.errors
    # an OpenGL failure while rendering: said once, rendering stopped
    def broken(*args):
        raise RuntimeError("no GL")
    window.volume.view.render_mesh = broken
    window.explorer.trajectories.movie_meshes(tmp_path / "broken.gif")
    qtbot.waitUntil(lambda: bool(window.errors), timeout=WAIT_MS)
    qtbot.wait(100)
    assert len(window.errors) == 1 and "rendering frame 1: no GL" in window.errors[0]
    assert window.volume.movie is None and not (tmp_path / "broken.gif").exists()
    del window.volume.view.render_mesh


def test_zdim1_shows_histogram(qtbot, window, tmp_path):
    run = SyntheticRun(tmp_path / "z1", n=400, zdim=1)
    open_run(qtbot, window, run)
    lv = window.latent
    assert lv.histogram and lv.hist.isVisible() and not lv.scatter.isVisible()
    counts = lv.hist.yData
    assert counts.sum() == 400
    assert not window.latent_panel.embedding_box.isEnabled() and window.trajectory.pc.maximum() == 1
    i = int(np.argmax(run.latents()[:, 0]))
    qtbot.mouseClick(lv.plot.viewport(), Qt.MouseButton.LeftButton, pos=lv.pixel_of(i))
    wait_surface(qtbot, window, "exact")
    assert window.state.current_index == i
    assert lv.marker.isVisible()
    ind = lv.select_polygon(np.array([[0.0, 0], [10, 0], [10, 1]]))
    assert np.array_equal(ind, np.flatnonzero(run.latents()[:, 0] >= 0))
    x, counts = lv.hist_selected.getData()                   # outlined: its own histogram
    assert counts.sum() == len(ind) and x[np.flatnonzero(counts)[0]] >= lv.hist.xData[0]
    lv.set_message("a homogeneous run next")                 # the histograms make way
    assert lv.hist.getData()[0] is None or len(lv.hist.getData()[0]) == 0


def test_pin_and_side_by_side(qtbot, window, synthetic_run):
    open_run(qtbot, window, synthetic_run)
    ex = window.explorer
    ex.volumes.decode_particle(0)
    wait_surface(qtbot, window)
    window.volume.pin_button.setChecked(True)
    qtbot.waitUntil(lambda: window.volume.view.data[1] is not None, timeout=WAIT_MS)
    window.volume.side_box.setChecked(True)                  # a box to the right
    view = window.volume.view
    verts = view.data[1].vertices
    shifted = view.meshes[1].transform.map(verts)[:, :3]
    np.testing.assert_allclose(shifted, verts + [view.data[1].box_A, 0, 0], atol=1e-4)
    assert view.view.camera.center[0] > 0                    # both in view
    window.volume.pin_button.setChecked(False)
    qtbot.waitUntil(lambda: window.volume.view.data[1] is None, timeout=WAIT_MS)


def test_bad_run_gives_error_dialog_and_recent_files(qtbot, window, tmp_path):
    bad = tmp_path / "not_a_run"
    bad.mkdir()
    window.open_run(bad)
    assert window.errors and str(bad) in window.errors[-1]
    assert window.state.run is None
    assert window.settings.value("recent", [], type=list) == []


def test_docks_are_remembered(qtbot, tmp_path, qapp, no_leaks):
    from cryoscape.app.gui.main_window import MainWindow
    from PyQt6.QtCore import QSettings
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    w = MainWindow(settings=settings)
    w.show()
    w.docks["Training"].hide()
    w.close()
    w2 = MainWindow(settings=settings)
    w2.show()
    assert not w2.docks["Training"].isVisible() and w2.docks["Volume"].isVisible()
    w2.close()


def test_colour_by_metadata_column(qtbot, window, tmp_path):
    from cryoscape.core.io.star import make_star, write_star
    from cryoscape.core.rotations import random_rotations

    n = 300
    star = tmp_path / "particles.star"
    write_star(star, make_star([f"{i + 1:06d}@p.mrcs" for i in range(n)],
                               rotations=random_rotations(n, np.random.default_rng(0)),
                               apix=2.0, D=32))
    run = SyntheticRun(tmp_path / "meta", n=n, particles_path=star)
    open_run(qtbot, window, run)
    qtbot.waitUntil(lambda: window.state.metadata is not None, timeout=WAIT_MS)
    box = window.latent_panel.colour_box
    items = [box.itemText(k) for k in range(box.count())]
    assert "rlnAngleRot" in items and not window.latent_panel.colour_note.isVisible()
    window.latent_panel.colour_box.setCurrentText("rlnAngleRot")
    qtbot.waitUntil(lambda: window.state.colour_by == "rlnAngleRot", timeout=WAIT_MS)
    values = window.state.colour_values
    assert window.state.colour_by == "rlnAngleRot" and len(values) == n
    assert np.allclose(values, window.state.metadata["rlnAngleRot"])
    assert len({b.color().name() for b in window.latent.scatter.data["brush"]}) > 20
    # another run, without that column: k-means colours, said so in the box, which at once
    # no longer offers the last run's columns
    window.explorer.runs.set_run(SyntheticRun(tmp_path / "other", n=200))
    assert window.latent_panel.colour_box.count() == 3
    qtbot.waitUntil(lambda: window.state.labels is not None, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: bool(window.state.metadata_note), timeout=WAIT_MS)
    assert window.state.colour_by == "k-means" and box.currentText() == "k-means"
    assert len(window.state.colour_values) == 200 and not window.errors


def test_garbage_collector_scans_a_burst_once_and_freezes_it(qtbot, window):
    """A burst of new objects (a lazy import, a run loaded) is collected at once, its cycles
    freed, and the survivors frozen, so that later collections do not scan them again."""
    import gc
    import weakref

    class Node:
        pass

    from PyQt6.QtWidgets import QApplication

    collector = QApplication.instance()._cryoscape_gc
    gc.collect()
    burst = [[i] for i in range(20000)]                   # 20,000 new tracked objects
    cycle = Node()
    cycle.me = cycle
    dead = weakref.ref(cycle)
    del cycle
    frozen = gc.get_freeze_count()
    collector.check()
    assert dead() is None                                 # the cycle was collected
    assert gc.get_freeze_count() >= frozen + len(burst)   # the survivors are frozen
    assert gc.get_count()[0] < 100


def test_a_bug_in_a_slot_is_reported_not_fatal(qtbot, window, monkeypatch, capsys):
    """PyQt6 aborts on an exception escaping a slot under the default excepthook: the
    application's hook shows it in the error dialog instead (and scripted runs fail with it)."""
    import sys

    from cryoscape.app.gui.app import report_unexpected_errors
    from PyQt6.QtCore import QTimer

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)   # restored after the test
    report_unexpected_errors(window)

    def buggy():
        raise ZeroDivisionError("a bug")
    QTimer.singleShot(0, buggy)
    qtbot.waitUntil(lambda: bool(window.errors), timeout=WAIT_MS)
    assert window.errors[-1].startswith("ZeroDivisionError: a bug") and "bug in cryoscape" in \
        window.errors[-1]
    assert "Traceback" in capsys.readouterr().err and window.isVisible()


def test_window_fits_a_laptop_screen(qtbot, window, synthetic_run):
    """With a run open, every dock and the latent panel fit a 1366 x 768 screen."""
    open_run(qtbot, window, synthetic_run)
    hint = window.minimumSizeHint()
    assert hint.width() <= 1366 and hint.height() <= 768, hint
