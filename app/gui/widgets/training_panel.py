"""The training panel: inputs and architecture, start / continue / pause after the epoch / stop,
a live loss curve and the training's output. The form makes `cryoscape train` arguments
(`train_args`: a new option is a field and its flags there); the training service runs them.
Its defaults are `cryoscape train`'s (cryoDRGN's: `TrainConfig`); an opened run fills the form,
and an unfinished one can be continued (`cryoscape train --resume`)."""
from __future__ import annotations

from pathlib import Path

from cryoscape.app.gui.visuals.loss_plot import LossPlot
from cryoscape.app.gui.widgets.guard import guard
from cryoscape.core.errors import CryoscapeError
from cryoscape.core.run import numbered_files
from cryoscape.core.train.config import TrainConfig
from cryoscape.core.train.rundir import RunDir
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


def _spin(lo, hi, value, step=1) -> QSpinBox:
    s = QSpinBox()
    s.setRange(lo, hi)
    s.setValue(value)
    s.setSingleStep(step)
    return s


class TrainingPanel(QWidget):
    """Configure a training run and control `explorer.training`; show its loss and output."""

    def __init__(self, explorer, parent=None):
        super().__init__(parent)
        self.training, self.activity = explorer.training, explorer.activity
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
            row.addWidget(QLabel("layers ×"))
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
        self.start_button.clicked.connect(lambda: guard(self.activity, self.start))
        self.continue_button.clicked.connect(lambda: guard(self.activity, self.continue_run))
        self.pause_button.clicked.connect(self.pause)
        self.stop_button.clicked.connect(self.stop)
        self.epochs.valueChanged.connect(self._update_buttons)
        self.outdir.edit.textChanged.connect(self._update_buttons)
        buttons = QHBoxLayout()
        for b in (self.start_button, self.continue_button, self.pause_button, self.stop_button):
            buttons.addWidget(b)

        self.loss_plot = LossPlot()
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

        tr = self.training
        tr.metrics.connect(self.loss_plot.set_metrics)
        tr.log.connect(self._on_log)
        tr.progress.connect(self.progress.setText)
        tr.finished.connect(self._finished)
        explorer.runs.opened.connect(self.show_run)
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
                 "--enc-layers", str(self.enc_layers.value()),
                 "--enc-dim", str(self.enc_dim.value()),
                 "--dec-layers", str(self.dec_layers.value()),
                 "--dec-dim", str(self.dec_dim.value())]
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
        if self.training.running:
            return
        self.loss_plot.set_metrics(run.metrics())
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
    def start(self) -> None:
        """Train a new run from the form."""
        if self.training.running:
            return
        args = self.train_args()
        self.loss_plot.set_metrics([])
        self._launch(args)

    def continue_run(self) -> None:
        """Continue the run in the run directory up to the Epochs field (`--resume -n`)."""
        if self.training.running:
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
        self.log.clear()
        self.progress.clear()
        self._on_log("$ cryoscape train " + " ".join(args) + f" -o {rundir}")
        self.training.start(args, rundir)
        self._update_buttons()

    def _on_log(self, line: str) -> None:
        """Append a line and show it: the log follows the newest line."""
        self.log.appendPlainText(line)
        bar = self.log.verticalScrollBar()
        bar.setValue(bar.maximum())

    def pause(self) -> None:
        if self.training.running:
            self.training.pause()
            self._on_log("pausing after this epoch…")

    def stop(self) -> None:
        if self.training.running:
            self.training.stop()
            self._on_log("stopping…")

    def _finished(self, rc: int, tail: str) -> None:
        self.progress.clear()                   # its last state is in the log
        self._on_log(self.training.outcome)
        self._update_buttons()

    def _update_buttons(self) -> None:
        running = self.training.running
        trained = None if running else self.trained_epochs()
        self.start_button.setEnabled(not running)
        self.continue_button.setEnabled(trained is not None and trained < self.epochs.value())
        self.pause_button.setEnabled(running)
        self.stop_button.setEnabled(running)
