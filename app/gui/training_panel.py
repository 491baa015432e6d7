"""The training panel: inputs and architecture, start / continue / pause after the epoch / stop,
a live loss curve. Training runs in a child process that `TrainingWatcher` starts and watches.
Its defaults are `cryoscape train`'s (cryoDRGN's: `TrainConfig`); an opened run fills the form,
and an unfinished one can be continued (`cryoscape train --resume`)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from cryoscape.app.gui.latent_view import plain_axes
from cryoscape.app.gui.workers import TrainingWatcher
from cryoscape.core.errors import CryoscapeError
from cryoscape.core.run import numbered_files
from cryoscape.core.train.config import TrainConfig
from cryoscape.core.train.rundir import RunDir
from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

PARTICLE_FILTER = "Particles (*.mrcs *.mrc *.star *.cs *.txt);;All files (*)"
PICKLE_FILTER = "Pickles (*.pkl);;All files (*)"
DEFAULTS = TrainConfig(particles="")          # `cryoscape train`'s defaults (cryoDRGN's)
ARCHITECTURE_TIP = ("hidden layers x width; the default is `cryoscape train`'s (cryoDRGN's "
                    "3 x 1024); narrower networks train faster on a CPU, and resolve less")


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
        d = DEFAULTS
        self.zdim = _spin(0, 128, d.zdim)
        self.zdim.setSpecialValueText("0 (homogeneous)")
        self.zdim.setToolTip("Latent dimension; 0 trains one homogeneous map (decoder only)")
        self.epochs = _spin(1, 1000, d.num_epochs)
        self.epochs.setToolTip("Epochs to train; raise it to continue a finished run")
        self.batch = _spin(1, 4096, d.batch_size)
        self.enc_layers, self.enc_dim = _spin(1, 16, d.enc_layers), _spin(8, 4096, d.enc_dim, 8)
        self.dec_layers, self.dec_dim = _spin(1, 16, d.dec_layers), _spin(8, 4096, d.dec_dim, 8)
        for w in (self.enc_layers, self.enc_dim, self.dec_layers, self.dec_dim):
            w.setToolTip(ARCHITECTURE_TIP)
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
        self.start_button.setToolTip("Train a new run into the run directory")
        self.continue_button = QPushButton("Continue")
        self.continue_button.setToolTip("Continue the run in the run directory from its last "
                                        "checkpoint (cryoscape train --resume) up to Epochs")
        self.pause_button = QPushButton("Pause after epoch")
        self.stop_button = QPushButton("Stop")
        self.start_button.clicked.connect(self.start)
        self.continue_button.clicked.connect(self.continue_run)
        self.pause_button.clicked.connect(self.pause)
        self.stop_button.clicked.connect(self.stop)
        self.epochs.valueChanged.connect(self._update_buttons)
        self.outdir.edit.textChanged.connect(self._update_buttons)
        buttons = QHBoxLayout()
        for b in (self.start_button, self.continue_button, self.pause_button, self.stop_button):
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
        self.progress = QLabel()                # the progress bar's line, as it is redrawn
        self.progress.setObjectName("trainingProgress")
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.loss_plot, 1)
        layout.addWidget(self.log)
        layout.addWidget(self.progress)

        self.watcher: TrainingWatcher | None = None
        self._training = False
        self.outcome = ""                       # how the last training ended, in words
        self.metrics: list[dict] = []
        self._update_buttons()

    # -- configuration -----------------------------------------------------------------------
    def train_args(self) -> list[str]:
        """`cryoscape train` arguments for the current form (without -o)."""
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

    def configure(self, particles, outdir, poses=None, ctf=None, zdim=DEFAULTS.zdim,
                  epochs=DEFAULTS.num_epochs, batch=DEFAULTS.batch_size,
                  enc=(DEFAULTS.enc_layers, DEFAULTS.enc_dim),
                  dec=(DEFAULTS.dec_layers, DEFAULTS.dec_dim), extra: str = "") -> None:
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

    def show_run(self, run) -> None:
        """An opened run: its loss curve, and (unless training) its settings in the form, so
        that an unfinished run can be continued or a similar one started."""
        if self.running:
            return
        self.set_metrics(run.metrics())
        config = getattr(run, "config", None) or {}
        data, model = config.get("dataset_args") or {}, config.get("model_args") or {}
        saved = (config.get("cryoscape") or {}).get("train_args") or {}
        d = DEFAULTS
        self.configure(data.get("particles") or "", str(run.path), poses=data.get("poses"),
                       ctf=data.get("ctf"), zdim=model.get("zdim", getattr(run, "zdim", d.zdim)),
                       epochs=saved.get("num_epochs", max(run.epochs, default=d.num_epochs)),
                       batch=saved.get("batch_size", d.batch_size),
                       enc=(model.get("qlayers", d.enc_layers), model.get("qdim", d.enc_dim)),
                       dec=(model.get("players", d.dec_layers), model.get("pdim", d.dec_dim)))

    def trained_epochs(self) -> int | None:
        """Epochs the run in the run directory has finished, or None if it cannot be
        continued (no cryoscape checkpoint there)."""
        rundir = self.outdir.text()
        if not rundir or not RunDir(rundir).checkpoint.is_file():
            return None
        return max(numbered_files(Path(rundir), "weights"), default=0)

    # -- control -----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """True from start() until the watcher reports that the child process ended."""
        return self._training

    def start(self) -> None:
        """Train a new run from the form."""
        if self.running:
            return
        args = self.train_args()
        self.set_metrics([])
        self._launch(args)

    def continue_run(self) -> None:
        """Continue the run in the run directory up to the Epochs field (`--resume -n`)."""
        if self.running:
            return
        trained = self.trained_epochs()
        if trained is None:
            raise CryoscapeError(f"{self.outdir.text() or 'no run directory'}: nothing to "
                                 "continue (no cryoscape checkpoint.pt there)")
        if trained >= self.epochs.value():
            raise CryoscapeError(f"the run has finished {trained} epochs: raise Epochs to "
                                 "continue it")
        self._launch(["--resume", "-n", str(self.epochs.value())])

    def _launch(self, args: list[str]) -> None:
        rundir = self.outdir.text()
        pause = RunDir(rundir).pause
        if pause.exists():
            pause.unlink()
        self.log.clear()
        self.progress.clear()
        self.watcher = TrainingWatcher(args, rundir, parent=self)
        self.watcher.epoch.connect(self._on_epoch)       # bound methods: queued to this thread
        self.watcher.metrics.connect(self.set_metrics)
        self.watcher.log.connect(self._on_log)
        self.watcher.progress.connect(self.progress.setText)
        self.watcher.finished_training.connect(self._finished)
        self.watcher.start()
        self._training = True
        self._on_log("$ cryoscape train " + " ".join(args) + f" -o {rundir}")
        self.started.emit(rundir)
        self._update_buttons()

    def _on_epoch(self, epoch: int) -> None:
        self.epoch_ready.emit(str(self.watcher.rundir), epoch)

    def _on_log(self, line: str) -> None:
        """Append a line and show it: the log follows the newest line."""
        self.log.appendPlainText(line)
        bar = self.log.verticalScrollBar()
        bar.setValue(bar.maximum())

    def pause(self) -> None:
        if self.running:
            self.watcher.pause_after_epoch()
            self._on_log("pausing after this epoch…")

    def stop(self) -> None:
        if self.running:
            self.watcher.stop_training()
            self._on_log("stopping…")

    def shutdown(self) -> None:
        """Stop the child process (if any) and wait for the watcher thread."""
        if self.watcher is not None:
            self.watcher.kill()
            self.watcher = None
        self._training = False

    def _finished(self, rc: int, tail: str) -> None:
        self._training = False
        self.progress.clear()                   # its last state is in the log
        self.outcome = self._ending(rc)
        self._on_log(self.outcome)
        self._update_buttons()
        self.finished.emit(rc, tail)

    def _ending(self, rc: int) -> str:
        """What the run's status.json says of how training ended."""
        rd = RunDir(self.watcher.rundir)
        try:
            status = json.loads(rd.status.read_text())
        except (OSError, ValueError):
            status = {}
        state, epoch = status.get("state"), status.get("epoch")
        if state == "done":
            return f"training finished: {epoch} epochs, in {rd.path}"
        if state == "paused":
            return f"training paused after epoch {epoch}: Continue resumes it"
        if state == "stopped":
            return f"training stopped in epoch {epoch + 1}: Continue resumes it"
        return f"training failed (exit status {rc}): see the lines above"

    def _update_buttons(self) -> None:
        running = self.running
        trained = None if running else self.trained_epochs()
        self.start_button.setEnabled(not running)
        self.continue_button.setEnabled(trained is not None and trained < self.epochs.value())
        self.pause_button.setEnabled(running)
        self.stop_button.setEnabled(running)

    def set_metrics(self, rows: list) -> None:
        """The loss curve of metrics.jsonl's `rows` (none: a note says so)."""
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
