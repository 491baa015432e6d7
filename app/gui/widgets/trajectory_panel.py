"""The trajectory panel: waypoints, straight or through-the-data paths, PC traversals, playback
with a scrubber, and exports (MRC series + .cxc, GIF/MP4)."""
from __future__ import annotations

from cryoscape.app.gui.widgets.guard import guard
from cryoscape.core.errors import CryoscapeError
from PyQt6.QtCore import Qt, QTimer, pyqtSignal
from PyQt6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)


class TrajectoryPanel(QWidget):
    """Asks `explorer.trajectories` for paths and frames and shows the state's waypoints and
    path; `export_maps_requested` and `export_movie_requested` ask the window where to."""

    export_maps_requested = pyqtSignal()
    export_movie_requested = pyqtSignal()

    def __init__(self, explorer, parent=None):
        super().__init__(parent)
        self.state, self.activity = explorer.state, explorer.activity
        self.trajectories = explorer.trajectories
        self.waypoints = QLineEdit()
        self.waypoints.setPlaceholderText("particle indices, e.g. 12 480 (or use Path mode)")
        self.kind = QComboBox()
        self.kind.addItems(["straight line", "through the data"])
        self.n = QSpinBox()
        self.n.setRange(2, 200)
        self.n.setValue(10)
        self.pc = QSpinBox()
        self.pc.setRange(1, 128)
        self.pc.setPrefix("PC")
        compute = QPushButton("Path")
        compute.clicked.connect(lambda: guard(self.activity, self._compute))
        along_pc = QPushButton("Along PC")
        along_pc.clicked.connect(lambda: guard(self.activity, self.trajectories.compute_pc_path,
                                               self.pc.value(), self.n.value()))
        clear = QPushButton("Clear")
        clear.clicked.connect(self.clear)

        self.play_button = QPushButton("Play")
        self.play_button.setCheckable(True)
        self.play_button.toggled.connect(self._toggle_play)
        self.scrubber = QSlider(Qt.Orientation.Horizontal)
        self.scrubber.setRange(0, 0)
        self.scrubber.valueChanged.connect(
            lambda k: guard(self.activity, self.trajectories.show_frame, k))
        self.frame_label = QLabel("no path")
        export_maps = QPushButton("Export maps…")
        export_maps.clicked.connect(self.export_maps_requested)
        export_movie = QPushButton("Export movie…")
        export_movie.clicked.connect(self.export_movie_requested)

        row1 = QHBoxLayout()
        row1.addWidget(QLabel("Waypoints"))
        row1.addWidget(self.waypoints, 1)
        row2 = QHBoxLayout()                # two rows, not one: the dock stays narrow
        for w in (self.kind, QLabel("steps"), self.n, compute):
            row2.addWidget(w)
        row2.addStretch(1)
        row2b = QHBoxLayout()
        for w in (self.pc, along_pc):
            row2b.addWidget(w)
        row2b.addStretch(1)
        row2b.addWidget(clear)
        row3 = QHBoxLayout()
        row3.addWidget(self.play_button)
        row3.addWidget(self.scrubber, 1)
        row3.addWidget(self.frame_label)
        row4 = QHBoxLayout()
        row4.addWidget(export_maps)
        row4.addWidget(export_movie)
        row4.addStretch(1)
        layout = QVBoxLayout(self)
        for r in (row1, row2, row2b, row3, row4):
            layout.addLayout(r)
        layout.addStretch(1)
        self.timer = QTimer(self)
        self.timer.setInterval(150)
        self.timer.timeout.connect(self._next_frame)
        self.state.path_changed.connect(self._path_changed)
        self.state.latents_changed.connect(self._latents_changed)

    def set_waypoints(self, indices: list[int]) -> None:
        self.waypoints.setText(" ".join(str(i) for i in indices))

    def waypoint_list(self) -> list[int]:
        try:
            return [int(t) for t in self.waypoints.text().replace(",", " ").split()]
        except ValueError:
            raise CryoscapeError("waypoints are particle indices (whole numbers)") from None

    def _compute(self) -> None:
        waypoints = self.waypoint_list()
        if waypoints:
            self.state.set_waypoints(waypoints)
        self.trajectories.compute_path(self.n.value(), self.kind.currentIndex() == 1)

    def _path_changed(self) -> None:
        st = self.state
        self.set_waypoints(st.waypoints)
        self.set_path_length(0 if st.path_z is None else len(st.path_z))

    def _latents_changed(self) -> None:
        st = self.state
        self.setEnabled(not st.homogeneous)
        if self.pc.maximum() != max(st.zdim, 1):   # the PCs there are (no repaint each epoch)
            self.pc.setMaximum(max(st.zdim, 1))

    def set_path_length(self, n: int) -> None:
        self.scrubber.blockSignals(True)
        self.scrubber.setRange(0, max(n - 1, 0))
        self.scrubber.setValue(0)
        self.scrubber.blockSignals(False)
        self.frame_label.setText(f"1 / {n}" if n else "no path")

    def _toggle_play(self, on: bool) -> None:
        self.play_button.setText("Pause" if on else "Play")
        if on and self.scrubber.maximum() > 0:
            self.timer.start()
        else:
            self.timer.stop()
            self.play_button.setChecked(False)

    def _next_frame(self) -> None:
        k = (self.scrubber.value() + 1) % (self.scrubber.maximum() + 1)
        self.scrubber.setValue(k)
        self.frame_label.setText(f"{k + 1} / {self.scrubber.maximum() + 1}")

    def clear(self) -> None:
        self.play_button.setChecked(False)
        self.state.set_waypoints([])
        self.state.set_path(None)
