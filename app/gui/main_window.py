"""The main window: assembles the explorer's services (`Explorer`) and its panels (the latent
panel in the centre, docks for the volume, training, selections and trajectories), menus and
shortcuts, the status bar, file dialogs, recent runs, drag-and-drop and error dialogs."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from cryoscape.app.gui.services.explorer import Explorer
from cryoscape.app.gui.widgets.guard import guard
from cryoscape.app.gui.widgets.latent_panel import LatentPanel
from cryoscape.app.gui.widgets.selection_panel import SelectionPanel
from cryoscape.app.gui.widgets.training_panel import TrainingPanel
from cryoscape.app.gui.widgets.trajectory_panel import TrajectoryPanel
from cryoscape.app.gui.widgets.viewing_panel import ViewingPanel
from cryoscape.app.gui.widgets.volume_panel import VolumePanel
from cryoscape.core.errors import CryoscapeError
from PyQt6.QtCore import QSettings, Qt, QTimer
from PyQt6.QtGui import QAction, QKeySequence
from PyQt6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
)

MAX_RECENT = 10


class MainWindow(QMainWindow):
    """The cryoscape explorer: `explorer` holds the models and services, the panels draw and
    call them; the window only assembles them and asks the user for files."""

    def __init__(self, settings: QSettings | None = None, restore: bool = True):
        super().__init__()
        self.setWindowTitle("cryoscape")
        self.setAcceptDrops(True)
        self.settings = settings or QSettings()
        self.explorer = ex = Explorer(parent=self)
        self.state, self.activity = ex.state, ex.activity
        self.errors: list[str] = []
        self._cache_label_time = 0.0

        self.latent_panel = LatentPanel(ex)
        self.latent = self.latent_panel.view
        self.volume = VolumePanel(ex)
        self.training = TrainingPanel(ex)
        self.selections = SelectionPanel(ex.state)
        self.trajectory = TrajectoryPanel(ex)
        self.viewing = ViewingPanel(ex)
        self.setCentralWidget(self.latent_panel)
        self.docks = {}
        right, left = Qt.DockWidgetArea.RightDockWidgetArea, Qt.DockWidgetArea.LeftDockWidgetArea
        for name, widget, area in (("Volume", self.volume, right),
                                   ("Training", self.training, left),
                                   ("Selections", self.selections, right),
                                   ("Trajectory", self.trajectory, right),
                                   ("Viewing directions", self.viewing, right)):
            dock = QDockWidget(name, self)
            dock.setObjectName(f"dock{name.title().replace(' ', '')}")
            dock.setWidget(widget)
            self.addDockWidget(area, dock)
            self.docks[name] = dock
        self.tabifyDockWidget(self.docks["Selections"], self.docks["Trajectory"])
        self.tabifyDockWidget(self.docks["Trajectory"], self.docks["Viewing directions"])
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
            self._action(v, f"{mode.capitalize()} mode", lambda m=mode: self.latent.set_mode(m),
                         key)
        self._action(v, "Zoom in", lambda: self.volume.view.zoom(0.8), "+")
        self._action(v, "Zoom out", lambda: self.volume.view.zoom(1.25), "-")
        h = mb.addMenu("&Help")
        self._action(h, "&About cryoscape", self._about)

    def _action(self, menu, text, slot, shortcut=None) -> QAction:
        a = QAction(text, self)
        a.triggered.connect(lambda _=False: guard(self.activity, slot))
        if shortcut is not None:
            a.setShortcut(QKeySequence(shortcut))
        menu.addAction(a)
        self.addAction(a)
        return a

    def _connect(self) -> None:
        ex, act = self.explorer, self.activity
        act.status.connect(lambda msg, ms=10000: self.statusBar().showMessage(msg, ms))
        act.error.connect(self.show_error)
        act.busy_changed.connect(self._busy)
        ex.volumes.cache_progress.connect(self._cache_progress)
        ex.runs.opened.connect(self._opened)
        ex.trajectories.task_done.connect(self._task_done)
        self.volume.save_requested.connect(lambda: guard(act, self.save_map_dialog))
        self.volume.chimerax_requested.connect(lambda: guard(act, self.open_chimerax))
        self.selections.export_requested.connect(
            lambda name: guard(act, self.export_selection_dialog, name))
        self.trajectory.export_maps_requested.connect(lambda: guard(act, self.export_path_dialog))
        self.trajectory.export_movie_requested.connect(
            lambda: guard(act, self.export_movie_dialog))

    # -- errors and status -------------------------------------------------------------------
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
        guard(self.activity, self.explorer.runs.open_run, path, epoch)

    def _opened(self, run) -> None:
        path = Path(run.path)
        self._add_recent(str(path.resolve()))
        self.setWindowTitle(f"cryoscape — {path.name}")
        if run.pose_files():                    # an ab initio run: where its poses point
            self.docks["Viewing directions"].raise_()

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

    # -- files: maps, selections, trajectories, screenshots ----------------------------------
    def save_map_dialog(self) -> None:
        self.explorer.volumes.current_map()
        path, _ = QFileDialog.getSaveFileName(self, "Save map", "map.mrc", "MRC maps (*.mrc)")
        if path:
            self.explorer.volumes.save_map(path)

    def open_chimerax(self) -> None:
        base = Path(self.state.run.path) if self.state.run else Path(tempfile.gettempdir())
        outdir = base / "cryoscape_maps"
        try:
            outdir.mkdir(exist_ok=True)
        except OSError:
            outdir = Path(tempfile.mkdtemp(prefix="cryoscape_maps_"))
        self.explorer.volumes.open_in_chimerax(outdir)

    def export_selection_dialog(self, name: str | None = None) -> None:
        name = name or (self.selections.selected_names() or list(self.state.selections)[-1:]
                        or [None])[0]
        if name is None:
            raise CryoscapeError("no selection: draw a lasso or rectangle in the latent view first")
        src = self.state.run.particles_path
        suffix = Path(src).suffix if src and Path(src).exists() else ".pkl"
        path, _ = QFileDialog.getSaveFileName(
            self, f"Export {name}", name.replace(" ", "_") + suffix,
            "Index pickle (*.pkl);;RELION star (*.star);;cryoSPARC (*.cs);;Images (*.mrcs)")
        if path:
            out = self.explorer.selections.export(name, path)
            self.statusBar().showMessage(f"Wrote {out}", 10000)

    def export_path_dialog(self) -> None:
        outdir = QFileDialog.getExistingDirectory(self, "Folder for the trajectory maps")
        if outdir:
            self.explorer.trajectories.export_path(outdir)

    def export_movie_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save movie", "trajectory.gif",
                                              "Movies (*.gif *.mp4)")
        if path:
            self.explorer.trajectories.movie_meshes(path)

    def _task_done(self, name: str, result) -> None:
        if name == "export_path":
            self.statusBar().showMessage(f"Wrote {len(result.paths)} maps and {result.cxc}", 10000)
        elif name == "movie":
            self.statusBar().showMessage(f"Wrote {result}", 10000)

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
        """Stop playback, movie rendering, training (its child process) and the workers."""
        self.trajectory.timer.stop()
        self.volume.stop_movie()
        self.explorer.shutdown()
        self.volume.shutdown()
