"""The volume panel: the 3D view of the maps shown, the threshold slider (standard deviations),
pinning, map actions, and the rendering of a trajectory's movie frames with the view's camera."""
from __future__ import annotations

from cryoscape.app.gui.visuals.movie import MovieRenderer
from cryoscape.app.gui.visuals.volume_view import VolumeView
from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

SOURCE_TEXT = {"cache": "nearest cached map", "preview": "preview", "exact": "exact",
               "landscape": "mean map of the landscape"}


class VolumePanel(QWidget):
    """A VolumeView of `explorer.volumes.shown` plus controls: the slider sets the state's
    threshold, Pin keeps the current map; `save_requested` and `chimerax_requested` ask the
    window for a file."""

    save_requested = pyqtSignal()
    chimerax_requested = pyqtSignal()

    def __init__(self, explorer, parent=None):
        super().__init__(parent)
        self.state, self.activity = explorer.state, explorer.activity
        self.volumes, self.trajectories = explorer.volumes, explorer.trajectories
        self.movie: MovieRenderer | None = None      # while a movie's frames render
        sigma = self.state.threshold
        self.view = VolumeView(self)
        self.info = QLabel("Click a point in the latent view to see its volume.")
        self.info.setObjectName("volumeInfo")
        self.info.setWordWrap(True)          # a long map description wraps, the dock stays narrow
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(-20, 100)                 # tenths of a standard deviation
        self.slider.setValue(round(sigma * 10))
        self.slider.setToolTip("Isosurface level in standard deviations above the map's mean")
        self.level = QLabel()
        self.slider.valueChanged.connect(self._slider_moved)
        self._slider_moved(self.slider.value())
        self.shown = None                              # VolumeResult of the surface on show

        self.save_button = QPushButton("Save map…")
        self.chimerax_button = QPushButton("Open in ChimeraX")
        self.reset_button = QPushButton("Reset view")
        self.pin_button = QPushButton("Pin to compare")
        self.pin_button.setCheckable(True)
        self.pin_button.setToolTip("Keep this map as an orange surface to compare with the next")
        self.side_box = QCheckBox("Side by side")
        self.save_button.clicked.connect(self.save_requested)
        self.chimerax_button.clicked.connect(self.chimerax_requested)
        self.reset_button.clicked.connect(self.view.reset_camera)
        self.pin_button.toggled.connect(
            lambda on: self.volumes.pin_current() if on else self.volumes.unpin())
        self.side_box.toggled.connect(self.view.set_side_by_side)

        row = QHBoxLayout()
        row.addWidget(QLabel("Threshold"))
        row.addWidget(self.slider, 1)
        row.addWidget(self.level)
        row.addWidget(self.reset_button)
        buttons = QHBoxLayout()              # four, not five: the window fits a 1366 px screen
        for w in (self.save_button, self.chimerax_button, self.pin_button, self.side_box):
            buttons.addWidget(w)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.info)
        layout.addLayout(row)
        layout.addLayout(buttons)
        self.volumes.shown.mesh_changed.connect(self.show_mesh)
        self.trajectories.task_done.connect(self._task_done)

    @property
    def sigma(self) -> float:
        return self.slider.value() / 10

    def set_sigma(self, sigma: float) -> None:
        self.slider.setValue(round(sigma * 10))

    def _slider_moved(self, v: int) -> None:
        self.level.setText(f"{v / 10:+.1f} σ")
        self.state.set_threshold(v / 10)

    def show_mesh(self, res) -> None:
        """A MeshResult from the explorer: upload it and describe where it came from."""
        self.view.set_mesh(res.mesh, res.which)
        if res.which or res.volume is None:
            return
        v = self.shown = res.volume
        if v.label:
            what = v.label
        elif v.index is not None:
            what = f"particle {v.index}"
        elif not len(v.z):
            what = "homogeneous map"
        else:
            what = "z = [" + ", ".join(f"{x:.2f}" for x in v.z[:4]) + \
                (", …]" if len(v.z) > 4 else "]")
        self.info.setText(f"{what} · {SOURCE_TEXT[v.source]} {v.D}³ · "
                          f"{len(res.mesh.vertices)} vertices")

    # -- movies ------------------------------------------------------------------------------
    def _task_done(self, name: str, result) -> None:
        if name == "movie_meshes":
            self.render_movie(*result)

    def render_movie(self, out, meshes) -> None:
        """Render a movie's frames here (OpenGL, the view's camera), a frame per event-loop
        turn, then have them encoded (trajectories.write_movie); a new movie replaces one
        still rendering."""
        self.stop_movie()
        self.movie = movie = MovieRenderer(self.view, meshes, parent=self)
        self.activity.set_busy("movie", f"Rendering {len(meshes)} movie frames")

        def finished(frames=None, error=None):
            self.stop_movie()
            if error:
                self.activity.error.emit("Movie failed", f"{out}: {error}")
            else:
                self.trajectories.write_movie(frames, out)
        movie.done.connect(lambda frames: finished(frames))
        movie.failed.connect(lambda error: finished(error=error))

    def stop_movie(self) -> None:
        if self.movie is not None:
            self.movie.cancel()
            self.movie.deleteLater()
            self.movie = None
            self.activity.set_busy("movie", None)

    def shutdown(self) -> None:
        self.stop_movie()
        self.view.close_canvas()
