"""The main window: latent view in the centre, docks for the volume, training, selections and
trajectories; menus, shortcuts, recent runs, drag-and-drop, status bar, error dialogs."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from cryoscape.app.gui.controller import Explorer
from cryoscape.app.gui.latent_view import LatentView
from cryoscape.app.gui.models.colour import COLOURINGS
from cryoscape.app.gui.selection_panel import SelectionPanel
from cryoscape.app.gui.training_panel import TrainingPanel
from cryoscape.app.gui.trajectory_panel import TrajectoryPanel
from cryoscape.app.gui.volume_panel import VolumePanel
from cryoscape.core.errors import CryoscapeError
from PyQt6.QtCore import QSettings, Qt, QTimer
from PyQt6.QtGui import QAction, QKeySequence
from PyQt6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QSlider,
    QVBoxLayout,
    QWidget,
)

MAX_RECENT = 10
HOMOGENEOUS_NOTE = ("homogeneous run: no latent space\n\n(zdim 0: the run has one map, "
                    "shown in the volume view)")


class MainWindow(QMainWindow):
    """The cryoscape explorer. `explorer` holds the logic; the widgets only draw and forward."""

    def __init__(self, settings: QSettings | None = None, restore: bool = True):
        super().__init__()
        self.setWindowTitle("cryoscape")
        self.setAcceptDrops(True)
        self.settings = settings or QSettings()
        self.explorer = Explorer(parent=self)
        self.state = self.explorer.state
        self.errors: list[str] = []
        self._training_epoch_shown: int | None = None
        self._cache_label_time = 0.0
        self._movie = None                # MovieRenderer while a movie's frames render

        self.latent = LatentView()
        self.volume = VolumePanel(sigma=self.state.threshold)
        self.training = TrainingPanel()
        self.selections = SelectionPanel(self.state)
        self.trajectory = TrajectoryPanel()
        self.setCentralWidget(self._latent_panel())
        self.docks = {}
        right, left = Qt.DockWidgetArea.RightDockWidgetArea, Qt.DockWidgetArea.LeftDockWidgetArea
        for name, widget, area in (("Volume", self.volume, right), ("Training", self.training, left),
                                   ("Selections", self.selections, right),
                                   ("Trajectory", self.trajectory, right)):
            dock = QDockWidget(name, self)
            dock.setObjectName(f"dock{name}")
            dock.setWidget(widget)
            self.addDockWidget(area, dock)
            self.docks[name] = dock
        self.tabifyDockWidget(self.docks["Selections"], self.docks["Trajectory"])
        self.docks["Trajectory"].raise_()
        self._status_bar()
        self._menus()
        self._connect()
        self.resize(1400, 860)
        if not (restore and self._restore()):
            QTimer.singleShot(0, self._default_layout)

    def _default_layout(self) -> None:
        """Dock sizes for a first start: a large 3D view, a slim training panel."""
        w = self.width()
        self.resizeDocks([self.docks["Training"], self.docks["Volume"]],
                         [int(w * 0.22), int(w * 0.4)], Qt.Orientation.Horizontal)
        h = self.height()
        self.resizeDocks([self.docks["Volume"], self.docks["Trajectory"]],
                         [int(h * 0.68), int(h * 0.25)], Qt.Orientation.Vertical)

    # -- layout ------------------------------------------------------------------------------
    def _latent_panel(self) -> QWidget:
        w = QWidget()
        self.epoch_slider = QSlider(Qt.Orientation.Horizontal)
        self.epoch_slider.setRange(0, 0)
        self.epoch_slider.setToolTip("Look back at earlier epochs")
        self.epoch_label = QLabel("no run")
        self.embedding_box = QComboBox()
        self.embedding_box.addItems(["PCA", "UMAP"])
        self.colour_box = QComboBox()
        self.colour_box.addItems(COLOURINGS)
        self.colour_note = QLabel()
        self.colour_note.setObjectName("colourNote")
        self.colour_note.setStyleSheet("color: #d9a05b;")
        self.hover_box = QCheckBox("Preview on hover")
        self.hover_box.setChecked(True)
        self.hover_box.setToolTip("Show the nearest cached surface under the cursor")
        self.epoch_label.setMinimumWidth(70)
        row = QHBoxLayout()                     # the epoch slider gets a row of its own: it
        row.addWidget(self.epoch_label)         # would be squeezed to nothing beside the boxes
        row.addWidget(self.epoch_slider, 1)
        self.view_controls = QWidget()          # hidden for runs without latents
        controls = QHBoxLayout(self.view_controls)
        controls.setContentsMargins(0, 0, 0, 0)
        controls.addWidget(QLabel("View"))
        controls.addWidget(self.embedding_box)
        controls.addWidget(QLabel("Colour"))
        controls.addWidget(self.colour_box)
        controls.addWidget(self.hover_box)
        controls.addStretch(1)
        layout = QVBoxLayout(w)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.view_controls)
        layout.addLayout(row)
        layout.addWidget(self.colour_note)
        layout.addWidget(self.latent, 1)
        self.colour_note.hide()
        return w

    def _status_bar(self) -> None:
        sb = self.statusBar()
        self.cache_label = QLabel()
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(160)
        self.progress.setRange(0, 0)
        policy = self.progress.sizePolicy()     # shown and hidden without moving the layout:
        policy.setRetainSizeWhenHidden(True)    # a relayout resizes and repaints every dock
        self.progress.setSizePolicy(policy)
        self.progress.hide()
        self.progress_label = QLabel()
        sb.addPermanentWidget(self.progress_label)
        sb.addPermanentWidget(self.progress)
        sb.addPermanentWidget(self.cache_label)
        sb.showMessage("Open a run (Ctrl+O), drop a run folder here, or train one in the "
                       "Training panel.")

    def _menus(self) -> None:
        mb = self.menuBar()
        m = mb.addMenu("&File")
        self._action(m, "&Open run…", self.open_dialog, QKeySequence.StandardKey.Open)
        self.recent_menu = m.addMenu("Open &recent")
        self._fill_recent()
        m.addSeparator()
        self._action(m, "&Save map…", self.save_map_dialog, QKeySequence.StandardKey.Save)
        self._action(m, "Open in &ChimeraX", self.open_chimerax, "Ctrl+Shift+C")
        self._action(m, "&Export selection…", self.export_selection_dialog, "Ctrl+E")
        self._action(m, "Save screens&hot…", self.screenshot_dialog, "Ctrl+Shift+S")
        m.addSeparator()
        self._action(m, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        v = mb.addMenu("&View")
        for dock in self.docks.values():
            v.addAction(dock.toggleViewAction())
        v.addSeparator()
        self._action(v, "Reset &camera", self.volume.view.reset_camera, "Home")
        self._action(v, "&Fit latent view", self.latent.fit, "F")
        for mode, key in (("pick", "P"), ("lasso", "L"), ("rect", "R"), ("path", "W")):
            self._action(v, f"{mode.capitalize()} mode", lambda m=mode: self.latent.set_mode(m), key)
        self._action(v, "Zoom in", lambda: self.volume.view.zoom(0.8), "+")
        self._action(v, "Zoom out", lambda: self.volume.view.zoom(1.25), "-")
        h = mb.addMenu("&Help")
        self._action(h, "&About cryoscape", self._about)

    def _action(self, menu, text, slot, shortcut=None) -> QAction:
        a = QAction(text, self)
        a.triggered.connect(lambda _=False: self._guard(slot))
        if shortcut is not None:
            a.setShortcut(QKeySequence(shortcut))
        menu.addAction(a)
        self.addAction(a)
        return a

    def _connect(self) -> None:
        ex, st = self.explorer, self.state
        ex.status.connect(lambda msg: self.statusBar().showMessage(msg, 10000))
        ex.error.connect(self.show_error)
        ex.mesh_ready.connect(self.volume.show_mesh)
        ex.busy.connect(self._busy)
        ex.cache_progress.connect(self._cache_progress)
        ex.task_done.connect(self._task_done)
        st.latents_changed.connect(self._latents_changed)
        st.embedding_changed.connect(self._embedding_changed)
        st.colouring_changed.connect(lambda: self.latent.set_brushes(st.colours))
        st.metadata_changed.connect(self._metadata_changed)
        st.current_changed.connect(self._current_changed)
        st.path_changed.connect(self._path_changed)
        self.latent.particle_clicked.connect(lambda i: self._guard(ex.decode_particle, i))
        self.latent.particle_hovered.connect(self._hovered)
        self.latent.polygon_selected.connect(self._polygon_selected)
        self.latent.waypoint_clicked.connect(
            lambda i: (st.set_waypoints(st.waypoints + [i]),
                       self.trajectory.set_waypoints(st.waypoints)))
        self.volume.threshold_changed.connect(st.set_threshold)
        self.volume.save_requested.connect(lambda: self._guard(self.save_map_dialog))
        self.volume.chimerax_requested.connect(lambda: self._guard(self.open_chimerax))
        self.volume.pin_requested.connect(lambda on: ex.pin_current() if on else ex.unpin())
        self.epoch_slider.valueChanged.connect(self._epoch_moved)
        self.embedding_box.currentTextChanged.connect(self._embedding_picked)
        self.colour_box.currentTextChanged.connect(
            lambda by: by and self._guard(ex.set_colouring, by))
        self.selections.export_requested.connect(
            lambda name: self._guard(self.export_selection_dialog, name))
        self.selections.highlight.connect(lambda _: self._highlight_selection())
        st.selections_changed.connect(self._highlight_selection)   # after the panel's refresh
        self.training.started.connect(self._training_started)
        self.training.epoch_ready.connect(self._training_epoch)
        self.training.finished.connect(self._training_finished)
        tp = self.trajectory
        tp.compute_requested.connect(lambda w, n, g: self._guard(self._compute_path, w, n, g))
        tp.pc_requested.connect(lambda pc, n: self._guard(ex.compute_pc_path, pc, n))
        tp.frame_changed.connect(lambda k: self._guard(self._path_frame, k))
        tp.export_maps_requested.connect(lambda: self._guard(self.export_path_dialog))
        tp.export_movie_requested.connect(lambda: self._guard(self.export_movie_dialog))
        tp.cleared.connect(lambda: (st.set_waypoints([]), st.set_path(None)))

    # -- errors and status -------------------------------------------------------------------
    def _guard(self, fn, *args):
        """Run a user action; problems become an error dialog instead of a traceback."""
        try:
            return fn(*args)
        except CryoscapeError as e:
            self.show_error("cryoscape", str(e))
        except OSError as e:
            self.show_error("File problem", f"{e.filename or ''}: {e.strerror or e}")

    def show_error(self, title: str, message: str) -> None:
        self.errors.append(message)
        self.statusBar().showMessage(message, 15000)
        box = QMessageBox(QMessageBox.Icon.Warning, title, message,
                          QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    def _cache_progress(self, done: int, total: int) -> None:
        """At most a few label updates a second: each repaint recomposes the GL window."""
        now = time.monotonic()
        if done == total or now - self._cache_label_time > 0.5:
            self._cache_label_time = now
            self.cache_label.setText(f"cache {done}/{total}" if done < total
                                     else f"{total} maps cached")

    def _busy(self, busy: bool, what: str) -> None:
        self.progress.setVisible(busy)
        self.progress_label.setText(what if busy else "")

    def _about(self) -> None:
        from cryoscape.core import __version__
        QMessageBox.about(self, "About cryoscape",
                          f"cryoscape {__version__}\nHeterogeneous cryo-EM reconstruction after "
                          "cryoDRGN (Zhong et al., ICLR 2020) with a live latent-space explorer.")

    # -- runs --------------------------------------------------------------------------------
    def open_run(self, path, epoch: int | None = None) -> None:
        """Open a run directory; a bad one gives an error dialog and leaves the window as is."""
        path = Path(path)
        if path.is_file():
            path = path.parent
        self._guard(self._open_run, path, epoch)

    def _open_run(self, path: Path, epoch) -> None:
        run = self.explorer.open_run(path, epoch)
        self.training.show_run(run)
        self._add_recent(str(path.resolve()))
        self.setWindowTitle(f"cryoscape — {path.name}")

    def open_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a cryoscape or cryoDRGN run")
        if path:
            self.open_run(path)

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        recent = self.settings.value("recent", [], type=list)
        for p in recent:
            self.recent_menu.addAction(p, lambda p=p: self.open_run(p))
        self.recent_menu.setEnabled(bool(recent))

    def _add_recent(self, path: str) -> None:
        recent = [path] + [p for p in self.settings.value("recent", [], type=list) if p != path]
        self.settings.setValue("recent", recent[:MAX_RECENT])
        self._fill_recent()

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        urls = event.mimeData().urls()
        if urls:
            self.open_run(urls[0].toLocalFile())

    # -- latent view -------------------------------------------------------------------------
    def _latents_changed(self) -> None:
        run, st = self.state.run, self.state
        epochs = list(run.epochs)
        self.epoch_slider.blockSignals(True)
        self.epoch_slider.setRange(0, max(len(epochs) - 1, 0))
        if st.epoch in epochs:
            self.epoch_slider.setValue(epochs.index(st.epoch))
        self.epoch_slider.blockSignals(False)
        self.epoch_label.setText(f"epoch {st.epoch}" if st.epoch is not None else "final")
        self.embedding_box.setEnabled(st.zdim > 1)
        self.view_controls.setVisible(not st.homogeneous)
        for w in (self.trajectory, self.selections):
            w.setEnabled(not st.homogeneous)
        if self.trajectory.pc.maximum() != max(st.zdim, 1):   # the PCs there are (no repaint
            self.trajectory.pc.setMaximum(max(st.zdim, 1))    # each epoch)
        if st.homogeneous:
            self.latent.set_message(HOMOGENEOUS_NOTE)
        elif st.zdim == 1:
            self.latent.set_histogram(st.z[:, 0], keep_view=False)
            self._highlight_selection()

    def _embedding_picked(self, kind: str) -> None:
        if kind == "UMAP" and self.training.running and self.state.z is not None:
            self.statusBar().showMessage(
                f"Computing UMAP for epoch {self.state.epoch} only: while training, new epochs "
                "show PCA (pick UMAP again for them)", 15000)
        self.explorer.set_embedding_kind(kind)

    def _umap_on_request(self) -> str:
        """A training epoch is about to be shown: UMAP is not recomputed for every epoch (it
        takes longer than an epoch); show PCA, and say so. Returns that note, or ''."""
        if self.explorer.embedding_kind != "UMAP":
            return ""
        self.explorer.embedding_kind = "PCA"
        self.embedding_box.blockSignals(True)
        self.embedding_box.setCurrentText("PCA")
        self.embedding_box.blockSignals(False)
        return " (PCA view: UMAP is not recomputed every epoch while training; pick UMAP to " \
               "compute it for the epoch shown)"

    def _embedding_changed(self) -> None:
        st = self.state
        if st.embedding is None:
            return
        names = ("PC1", "PC2") if st.embedding_kind == "PCA" else ("UMAP1", "UMAP2")
        keep = self.latent.n_points == st.n and not self.latent.histogram
        self.latent.set_points(st.embedding, names, keep_view=keep, colours=st.colours)
        self._highlight_selection()
        self._current_changed()
        self._path_changed()

    def _metadata_changed(self) -> None:
        st = self.state
        self.colour_box.blockSignals(True)
        self.colour_box.clear()
        self.colour_box.addItems(COLOURINGS + tuple(st.metadata_columns))
        self.colour_box.setCurrentText(self.explorer.colour_by)
        self.colour_box.blockSignals(False)
        self.colour_note.setText(st.metadata_note)
        self.colour_note.setVisible(bool(st.metadata_note))
        self.colour_box.setToolTip(st.metadata_note or "Colour the particles")

    def _current_changed(self) -> None:
        st = self.state
        shown = st.current_z is not None and st.z is not None
        self.latent.set_current(st.project(st.current_z)[0] if shown else None)

    def _hovered(self, i: int) -> None:
        if i >= 0:
            self.statusBar().showMessage(f"particle {i}", 2000)
        if self.hover_box.isChecked() and self.state.run is not None and self.latent.mode == "pick":
            self.explorer.preview_particle(i)

    def _polygon_selected(self, ind) -> None:
        if len(ind):
            name = self.state.add_selection(ind)           # highlighted as the newest
            self.statusBar().showMessage(f"{name}: {len(ind)} particles", 5000)

    def _highlight_selection(self) -> None:
        """Outline the selection highlighted in the Selections panel, on the points shown."""
        self.latent.set_selected(self.state.selections.get(self.selections.current_name()))

    def _epoch_moved(self, k: int) -> None:
        epochs = list(self.state.run.epochs) if self.state.run else []
        if k < len(epochs) and epochs[k] != self.state.epoch:
            self._guard(self.state.set_epoch, epochs[k])

    # -- training ----------------------------------------------------------------------------
    def _training_started(self, rundir: str) -> None:
        self._training_epoch_shown = None
        self.explorer.cache.grid = 3          # new maps every epoch: a smaller cache per epoch
        self.statusBar().showMessage(f"Training into {rundir}…")

    def _training_epoch(self, rundir: str, epoch: int) -> None:
        st = self.state
        same = st.run is not None and Path(st.run.path).resolve() == Path(rundir).resolve()
        note = ""
        if not same:
            note = self._umap_on_request()
            self.open_run(rundir, epoch)
        else:                  # the new epoch, unless the user moved the slider back
            shown = self._training_epoch_shown
            looking_back = shown is not None and st.epoch is not None and st.epoch < shown
            if not looking_back:
                note = self._umap_on_request()
                self._guard(st.set_epoch, epoch)
            else:
                self._latents_changed()           # the slider's range grows
        self._training_epoch_shown = epoch
        self.statusBar().showMessage(f"Training: epoch {epoch} done{note}",
                                     15000 if note else 5000)

    def _training_finished(self, rc: int, tail: str) -> None:
        self.explorer.cache.grid = 8
        if rc not in (0, -15, 143):
            last = tail.strip().splitlines()[-1] if tail.strip() else f"exit status {rc}"
            self.show_error("Training failed", last)
        else:
            self.statusBar().showMessage(self.training.outcome.capitalize(), 15000)

    # -- trajectories ------------------------------------------------------------------------
    def _compute_path(self, waypoints, n, through) -> None:
        if waypoints:
            self.state.set_waypoints(waypoints)
        self.explorer.compute_path(n, through)

    def _path_changed(self) -> None:
        st = self.state
        wp = st.project(st.z[st.waypoints]) if st.waypoints and st.z is not None else None
        self.latent.set_path(st.path_xy, wp)
        self.trajectory.set_path_length(0 if st.path_z is None else len(st.path_z))

    def _path_frame(self, k: int) -> None:
        if self.state.path_z is not None and k < len(self.state.path_z):
            self.explorer.show_path_frame(k)

    def export_path_dialog(self) -> None:
        outdir = QFileDialog.getExistingDirectory(self, "Folder for the trajectory maps")
        if outdir:
            self.explorer.export_path(outdir)

    def export_movie_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save movie", "trajectory.gif",
                                              "Movies (*.gif *.mp4)")
        if path:
            self.export_movie(path)

    def export_movie(self, path, D: int | None = None) -> None:
        """Write the trajectory as a GIF or MP4: its maps decoded at `D` and meshed in a worker,
        rendered here with the 3D view's camera a frame at a time, encoded in a worker;
        `explorer.task_done('movie', path)` at the end."""
        self.explorer.movie_meshes(path, D)

    def _render_movie(self, out, meshes) -> None:
        """Render the movie's frames here (OpenGL), a frame per event-loop turn; a movie
        rendering already replaces the one before."""
        from cryoscape.app.gui.movie import MovieRenderer

        self._stop_movie()
        self._movie = movie = MovieRenderer(self.volume.view, meshes, parent=self)
        self.explorer.set_busy("movie", f"Rendering {len(meshes)} movie frames")

        def finished(frames=None, error=None):
            self._stop_movie()
            if error:
                self.show_error("Movie failed", f"{out}: {error}")
            else:
                self.explorer.write_movie(frames, out)
        movie.done.connect(lambda frames: finished(frames))
        movie.failed.connect(lambda error: finished(error=error))

    def _stop_movie(self) -> None:
        if self._movie is not None:
            self._movie.cancel()
            self._movie.deleteLater()
            self._movie = None
            self.explorer.set_busy("movie", None)

    def _task_done(self, name: str, result) -> None:
        if name == "export_path":
            self.statusBar().showMessage(f"Wrote {len(result.paths)} maps and {result.cxc}", 10000)
        elif name == "movie_meshes":
            self._guard(self._render_movie, *result)
        elif name == "movie":
            self.statusBar().showMessage(f"Wrote {result}", 10000)

    # -- maps, selections, screenshots -------------------------------------------------------
    def save_map_dialog(self) -> None:
        self.explorer.current_map()
        path, _ = QFileDialog.getSaveFileName(self, "Save map", "map.mrc", "MRC maps (*.mrc)")
        if path:
            self.explorer.save_map(path)

    def open_chimerax(self) -> None:
        base = Path(self.state.run.path) if self.state.run else Path(tempfile.gettempdir())
        outdir = base / "cryoscape_maps"
        try:
            outdir.mkdir(exist_ok=True)
        except OSError:
            outdir = Path(tempfile.mkdtemp(prefix="cryoscape_maps_"))
        self.explorer.open_in_chimerax(outdir)

    def export_selection_dialog(self, name: str | None = None) -> None:
        name = name or (self.selections.selected_names() or list(self.state.selections)[-1:]
                        or [None])[0]
        if name is None:
            raise CryoscapeError("no selection: draw a lasso or rectangle in the latent view first")
        src = self.state.run.particles_path
        suffix = Path(src).suffix if src and Path(src).exists() else ".pkl"
        path, _ = QFileDialog.getSaveFileName(
            self, f"Export {name}", name.replace(" ", "_") + suffix,
            "Index pickle (*.pkl);;RELION star (*.star);;cryoSPARC (*.cs)")
        if path:
            out = self.explorer.export_selection(name, path)
            self.statusBar().showMessage(f"Wrote {out}", 10000)

    def screenshot_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save screenshot", "cryoscape.png",
                                              "PNG images (*.png)")
        if path:
            self.save_screenshot(path)

    def save_screenshot(self, path) -> Path:
        """The whole window, 3D view included, as a PNG."""
        self.volume.view.canvas.update()
        QApplication.processEvents()
        if not self.grab().save(str(path)):
            raise CryoscapeError(f"{path}: could not write the screenshot")
        return Path(path)

    # -- waiting (scripts and tests) ---------------------------------------------------------
    def wait_for(self, condition, timeout_s: float = 60.0) -> bool:
        """Process events until `condition()` holds (scripted screenshots, tests)."""
        end = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > end:
                return False
            QApplication.processEvents()
            time.sleep(0.005)
        return True

    # -- settings and shutdown ---------------------------------------------------------------
    def _restore(self) -> bool:
        """Window geometry and dock layout from the last session; False if there is none."""
        geom = self.settings.value("geometry")
        state = self.settings.value("windowState")
        if geom is not None:
            self.restoreGeometry(geom)
        return state is not None and self.restoreState(state)

    def closeEvent(self, event) -> None:
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("windowState", self.saveState())
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop training (child process), the worker threads and the playback timer."""
        self.trajectory.timer.stop()
        self._stop_movie()
        self.training.shutdown()
        self.explorer.shutdown()
        self.volume.view.close_canvas()
