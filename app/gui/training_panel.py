"""The training panel: inputs and architecture, start / pause after the epoch / stop, a live loss
curve. Training runs in a child process that `TrainingWatcher` starts and watches."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from cryoscape.app.gui.latent_view import plain_axes
from cryoscape.app.gui.workers import TrainingWatcher
from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

PARTICLE_FILTER = "Particles (*.mrcs *.mrc *.star *.cs *.txt);;All files (*)"
PICKLE_FILTER = "Pickles (*.pkl);;All files (*)"


class _PathField(QWidget):
    def __init__(self, caption: str, filter_: str, directory=False, parent=None):
        super().__init__(parent)
        self.edit = QLineEdit()
        button = QPushButton("…")
        button.setFixedWidth(30)
        button.setStyleSheet("padding: 2px;")
        button.setToolTip(f"Choose the {caption.lower()}")
        button.clicked.connect(lambda: self._browse(caption, filter_, directory))
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.edit, 1)
        row.addWidget(button)

    def _browse(self, caption, filter_, directory):
        if directory:
            path = QFileDialog.getExistingDirectory(self, caption)
        else:
            path, _ = QFileDialog.getOpenFileName(self, caption, "", filter_)
        if path:
            self.edit.setText(path)

    def text(self) -> str:
        return self.edit.text().strip()

    def setText(self, text: str) -> None:
        self.edit.setText(str(text))


class EpochAxis(pg.AxisItem):
    """Epochs are whole numbers: ticks at integers only, however few epochs are shown."""

    def tickSpacing(self, minVal, maxVal, size):
        levels = super().tickSpacing(minVal, maxVal, size)
        return [(s, o) for s, o in levels if s >= 1 and float(s).is_integer()] or [(1.0, 0.0)]


def _spin(lo, hi, value, step=1) -> QSpinBox:
    s = QSpinBox()
    s.setRange(lo, hi)
    s.setValue(value)
    s.setSingleStep(step)
    return s


class TrainingPanel(QWidget):
    """Configure and control a training run; emits `epoch_ready(rundir, epoch)` per epoch."""

    epoch_ready = pyqtSignal(str, int)
    finished = pyqtSignal(int, str)
    started = pyqtSignal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.particles = _PathField("Particles", PARTICLE_FILTER)
        self.poses = _PathField("Poses", PICKLE_FILTER)
        self.ctf = _PathField("CTF", PICKLE_FILTER)
        self.outdir = _PathField("Run directory", "", directory=True)
        self.zdim = _spin(0, 128, 8)
        self.zdim.setSpecialValueText("0 (homogeneous)")
        self.zdim.setToolTip("Latent dimension; 0 trains one homogeneous map (decoder only)")
        self.epochs = _spin(1, 1000, 20)
        self.batch = _spin(1, 4096, 8)
        self.enc_layers, self.enc_dim = _spin(1, 16, 3), _spin(8, 4096, 256, 8)
        self.dec_layers, self.dec_dim = _spin(1, 16, 3), _spin(8, 4096, 256, 8)
        self.extra = QLineEdit()
        self.extra.setPlaceholderText("more train options, e.g. --lazy")
        form = QFormLayout()
        form.addRow("Particles", self.particles)
        form.addRow("Poses (.pkl)", self.poses)
        form.addRow("CTF (.pkl)", self.ctf)
        form.addRow("Run directory", self.outdir)
        form.addRow("Latent dimension", self.zdim)
        form.addRow("Epochs", self.epochs)
        form.addRow("Batch size", self.batch)
        for name, layers, dim in (("Encoder", self.enc_layers, self.enc_dim),
                                  ("Decoder", self.dec_layers, self.dec_dim)):
            row = QHBoxLayout()
            row.addWidget(layers)
            row.addWidget(pg.QtWidgets.QLabel("layers ×"))
            row.addWidget(dim)
            form.addRow(name, row)
        form.addRow("Options", self.extra)

        self.start_button = QPushButton("Start")
        self.pause_button = QPushButton("Pause after epoch")
        self.stop_button = QPushButton("Stop")
        self.start_button.clicked.connect(self.start)
        self.pause_button.clicked.connect(self.pause)
        self.stop_button.clicked.connect(self.stop)
        buttons = QHBoxLayout()
        for b in (self.start_button, self.pause_button, self.stop_button):
            buttons.addWidget(b)

        self.loss_plot = pg.PlotWidget(background="#10161d",
                                       axisItems={"bottom": EpochAxis("bottom")})
        plain_axes(self.loss_plot)
        self.loss_plot.setLabel("bottom", "epoch")
        self.loss_plot.setLabel("left", "loss")
        self.loss_plot.setMinimumHeight(120)
        self.loss_curve = self.loss_plot.plot(pen=pg.mkPen("#7cc4f0", width=2), symbol="o",
                                              symbolSize=5, symbolBrush="#7cc4f0")
        self.loss_note = pg.TextItem("no loss record", color="#8a97a6", anchor=(0.5, 0.5))
        self.loss_note.setPos(0.5, 0.5)
        self.loss_plot.addItem(self.loss_note, ignoreBounds=True)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(200)
        self.log.setMaximumHeight(90)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.loss_plot, 1)
        layout.addWidget(self.log)

        self.watcher: TrainingWatcher | None = None
        self._training = False
        self.metrics: list[dict] = []
        self._update_buttons()

    # -- configuration -----------------------------------------------------------------------
    def train_args(self) -> list[str]:
        """`cryoscape train` arguments for the current form (without -o)."""
        from cryoscape.core.errors import CryoscapeError

        if not self.particles.text():
            raise CryoscapeError("choose a particle file (.mrcs, .star, .cs or .txt) first")
        if not self.outdir.text():
            raise CryoscapeError("choose a run directory for the results")
        args = [self.particles.text()]
        if self.poses.text():
            args += ["--poses", self.poses.text()]
        if self.ctf.text():
            args += ["--ctf", self.ctf.text()]
        args += ["--zdim", str(self.zdim.value()), "-n", str(self.epochs.value()),
                 "-b", str(self.batch.value()),
                 "--enc-layers", str(self.enc_layers.value()), "--enc-dim", str(self.enc_dim.value()),
                 "--dec-layers", str(self.dec_layers.value()), "--dec-dim", str(self.dec_dim.value())]
        return args + self.extra.text().split()

    def configure(self, particles, outdir, poses=None, ctf=None, zdim=8, epochs=20, batch=8,
                  enc=(3, 256), dec=(3, 256), extra: str = "") -> None:
        self.particles.setText(particles)
        self.outdir.setText(outdir)
        self.poses.setText(poses or "")
        self.ctf.setText(ctf or "")
        self.zdim.setValue(zdim)
        self.epochs.setValue(epochs)
        self.batch.setValue(batch)
        self.enc_layers.setValue(enc[0])
        self.enc_dim.setValue(enc[1])
        self.dec_layers.setValue(dec[0])
        self.dec_dim.setValue(dec[1])
        self.extra.setText(extra)

    # -- control -----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """True from start() until the watcher reports that the child process ended."""
        return self._training

    def start(self) -> None:
        if self.running:
            return
        args = self.train_args()
        rundir = self.outdir.text()
        pause = Path(rundir) / "PAUSE"
        if pause.exists():
            pause.unlink()
        self.metrics = []
        self.loss_curve.setData([], [])
        self.log.clear()
        self.watcher = TrainingWatcher(args, rundir, parent=self)
        self.watcher.epoch.connect(self._on_epoch)       # bound methods: queued to this thread
        self.watcher.metrics.connect(self._set_metrics)
        self.watcher.log.connect(self._on_log)
        self.watcher.finished_training.connect(self._finished)
        self.watcher.start()
        self._training = True
        self.log.appendPlainText("$ cryoscape train " + " ".join(args) + f" -o {rundir}")
        self.started.emit(rundir)
        self._update_buttons()

    def _on_epoch(self, epoch: int) -> None:
        self.epoch_ready.emit(str(self.watcher.rundir), epoch)

    def _on_log(self, line: str) -> None:
        self.log.appendPlainText(line)

    def pause(self) -> None:
        if self.running:
            self.watcher.pause_after_epoch()
            self.log.appendPlainText("pausing after this epoch…")

    def stop(self) -> None:
        if self.running:
            self.watcher.stop_training()
            self.log.appendPlainText("stopping…")

    def shutdown(self) -> None:
        """Stop the child process (if any) and wait for the watcher thread."""
        if self.watcher is not None:
            self.watcher.kill()
            self.watcher = None
        self._training = False

    def _finished(self, rc: int, tail: str) -> None:
        self._training = False
        self.log.appendPlainText(f"training ended (exit status {rc})")
        self._update_buttons()
        self.finished.emit(rc, tail)

    def _update_buttons(self) -> None:
        running = self.running
        self.start_button.setEnabled(not running)
        self.pause_button.setEnabled(running)
        self.stop_button.setEnabled(running)

    def _set_metrics(self, rows: list) -> None:
        self.metrics = rows
        pts = [(r.get("epoch", i + 1), r["loss"]) for i, r in enumerate(self.metrics)
               if isinstance(r.get("loss"), (int, float))]
        self.loss_note.setVisible(not pts)    # e.g. a cryoDRGN run: no metrics.jsonl
        if pts:
            x, y = np.array(pts, dtype=float).T
            self.loss_curve.setData(x, y)
            self.loss_plot.enableAutoRange()   # setRange below turned it off
        else:                                 # a run without metrics: not the last run's curve
            self.loss_curve.setData([], [])
            self.loss_plot.setRange(xRange=(0, 1), yRange=(0, 1), padding=0)
