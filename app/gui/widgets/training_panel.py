"""The training panel: inputs and architecture, start / continue / pause after the epoch / stop,
a live loss curve and the training's output. The form makes `cryoscape train` arguments
(`train_args`: a new option is a field and its flags there); the training service runs them.
Its defaults are `cryoscape train`'s (cryoDRGN's: `TrainConfig`; with "Poses: search (ab initio)"
those of `--pose-search`, whose architecture is the 'abinit' preset); an opened run fills the
form, and an unfinished one can be continued (`cryoscape train --resume`). The loss curve marks
each epoch's pose phase (pretrain / search / refine) and the log gives the search's ms per
image."""
from __future__ import annotations

from pathlib import Path

from cryoscape.app.gui.visuals.loss_plot import LossPlot
from cryoscape.app.gui.widgets.guard import guard
from cryoscape.core.analysis.posechanges import phase_text
from cryoscape.core.errors import CryoscapeError
from cryoscape.core.run import numbered_files
from cryoscape.core.train.config import TrainConfig
from cryoscape.core.train.rundir import RunDir
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
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
SEARCH_DEFAULTS = TrainConfig.with_preset("abinit", particles="", pose_search=True)
POSE_MODES = ("known", "search (ab initio)")
ARCHITECTURE = ("enc_layers", "enc_dim", "dec_layers", "dec_dim")
ARCHITECTURE_TIP = ("hidden layers x width; the default is `cryoscape train`'s (cryoDRGN's "
                    "3 x 1024; 3 x 256 with a pose search, as cryoDRGN's ab initio); narrower "
                    "networks train faster on a CPU, and resolve less")


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


def _or(value, auto: int) -> int:
    """A spin box's value for a setting, `auto` (its "auto" text) where it is None."""
    return auto if value is None else int(value)


def _spin(lo, hi, value, step=1, tip="") -> QSpinBox:
    s = QSpinBox()
    s.setRange(lo, hi)
    s.setValue(value)
    s.setSingleStep(step)
    s.setToolTip(tip)
    return s


class _SearchOptions(QWidget):
    """`cryoscape train --pose-search`'s options, with its defaults."""

    def __init__(self, parent=None):
        super().__init__(parent)
        d = SEARCH_DEFAULTS
        self.pretrain_epochs = _spin(-1, 1000, -1, tip="epochs with random poses before the "
                                     "first search (auto: 1, more with fewer than 3000 images)")
        self.pretrain_epochs.setSpecialValueText("auto")
        self.search_epochs = _spin(0, 1000, 0,
                                   tip="epochs whose poses are searched; later epochs refine "
                                       "them by gradient descent (auto: 4, or 8 with z dim > 0; "
                                       "more with fewer than 3000 images, with z dim > 0 than "
                                       "1500 per class)")
        self.search_epochs.setSpecialValueText("auto")
        self.search_chunk = _spin(1, 1_000_000, d.search_chunk, 32,
                                  tip="images searched with one frozen decoder")
        self.search_classes = _spin(1, 64, d.search_classes,
                                    tip="heterogeneous (z dim > 0): volumes each image is "
                                        "searched against while the poses are searched, as "
                                        "classes of a 3D classification")
        self.method = QComboBox()
        self.method.addItems(["beam", "bnb"])
        self.method.setCurrentText(d.search_method)
        self.method.setToolTip("keep the best K candidates per round (beam), or the paper's "
                               "branch and bound (bnb)")
        self.beam = _spin(1, 1024, d.beam, tip="candidates kept per image and round")
        self.t_extent = QDoubleSpinBox()
        self.t_extent.setRange(0.0, 1000.0)
        self.t_extent.setDecimals(1)
        self.t_extent.setSpecialValueText("auto")
        self.t_extent.setValue(d.t_extent or 0.0)
        self.t_extent.setToolTip("largest shift searched, +- px (auto: scaled with the box)")
        self.pose_sgd = QCheckBox("refine poses by gradient descent after the search")
        self.pose_sgd.setChecked(d.pose_sgd)
        self.pose_lr = QDoubleSpinBox()
        self.pose_lr.setDecimals(5)
        self.pose_lr.setRange(1e-5, 1.0)
        self.pose_lr.setSingleStep(1e-4)
        self.pose_lr.setValue(d.pose_lr)
        self.pose_lr.setToolTip("learning rate of the pose refinement")
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Pretrain epochs", self.pretrain_epochs)
        form.addRow("Search epochs", self.search_epochs)
        form.addRow("Search chunk", self.search_chunk)
        form.addRow("Classes", self.search_classes)
        row = QHBoxLayout()
        row.addWidget(self.method)
        row.addWidget(QLabel("keep"))
        row.addWidget(self.beam)
        form.addRow("Search", row)
        form.addRow("Shifts (px)", self.t_extent)
        form.addRow(self.pose_sgd)
        form.addRow("Pose lr", self.pose_lr)

    def args(self) -> list[str]:
        args = ["--pose-search", "--search-chunk", str(self.search_chunk.value()),
                "--search-classes", str(self.search_classes.value()),
                "--search-method", self.method.currentText(), "--beam", str(self.beam.value())]
        if self.pretrain_epochs.value() >= 0:
            args += ["--pretrain-epochs", str(self.pretrain_epochs.value())]
        if self.search_epochs.value() > 0:
            args += ["--search-epochs", str(self.search_epochs.value())]
        if self.t_extent.value() > 0:
            args += ["--t-extent", f"{self.t_extent.value():g}"]
        if not self.pose_sgd.isChecked():
            args.append("--no-pose-sgd")
        return args + ["--pose-lr", f"{self.pose_lr.value():g}"]

    def set_values(self, values: dict) -> None:
        """From TrainConfig field names (missing ones: the defaults)."""
        v = {**SEARCH_DEFAULTS.to_dict(), **{k: x for k, x in values.items() if x is not None}}
        self.pretrain_epochs.setValue(_or(v["pretrain_epochs"], -1))       # -1: auto
        self.search_epochs.setValue(_or(v["search_epochs"], 0))            # 0: auto
        self.search_chunk.setValue(int(v["search_chunk"]))
        self.search_classes.setValue(int(v["search_classes"]))
        self.method.setCurrentText(v["search_method"])
        self.beam.setValue(int(v["beam"]))
        self.t_extent.setValue(float(v["t_extent"] or 0.0))
        self.pose_sgd.setChecked(bool(v["pose_sgd"]))
        self.pose_lr.setValue(float(v["pose_lr"]))


class TrainingPanel(QWidget):
    """Configure a training run and control `explorer.training`; show its loss and output."""

    def __init__(self, explorer, parent=None):
        super().__init__(parent)
        self.training, self.activity = explorer.training, explorer.activity
        self.particles = _PathField("Particles", PARTICLE_FILTER)
        self.pose_mode = QComboBox()
        self.pose_mode.addItems(POSE_MODES)
        self.pose_mode.setToolTip("known: the poses file, or the .star/.cs's poses; search: "
                                  "find them (ab initio, cryoscape train --pose-search)")
        self.poses = _PathField("Poses", PICKLE_FILTER)
        self.search = _SearchOptions()
        self.ctf = _PathField("CTF", PICKLE_FILTER)
        self.tilt = _PathField("Tilted particles", PARTICLE_FILTER)
        self.tilt.edit.setPlaceholderText("none (single images)")
        self.tilt.setToolTip("tilt pairs: the particles imaged again with the stage tilted "
                             "about x, one image per particle in the same order")
        self.tilt_deg = QDoubleSpinBox()
        self.tilt_deg.setRange(-90.0, 90.0)
        self.tilt_deg.setDecimals(1)
        self.tilt_deg.setSuffix("°")
        self.tilt_deg.setValue(DEFAULTS.tilt_deg)
        self.tilt_deg.setToolTip("the stage tilt of the tilted particles")
        self.outdir = _PathField("Run directory", "", directory=True)
        d = DEFAULTS
        self.zdim = _spin(0, 128, d.zdim)
        self.zdim.setSpecialValueText("0 (homogeneous)")
        self.zdim.setToolTip("Latent dimension; 0 trains one homogeneous map (decoder only)")
        self.epochs = _spin(0, 1000, d.num_epochs)
        self.epochs.setSpecialValueText("auto")
        self.epochs.setToolTip("Epochs to train; raise it to continue a finished run (auto: "
                               "20, with a pose search as many as its schedule needs)")
        self.batch = _spin(1, 4096, d.batch_size)
        self.downsample = _spin(0, 1024, 0, 2, "Fourier-crop the images to this box as they "
                                "are read (--downsample; even, smaller than the particles' "
                                "box): faster training, a lower resolution limit")
        self.downsample.setSpecialValueText("full box")
        self.downsample.setSuffix(" px")
        self.enc_layers, self.enc_dim = _spin(1, 16, d.enc_layers), _spin(8, 4096, d.enc_dim, 8)
        self.dec_layers, self.dec_dim = _spin(1, 16, d.dec_layers), _spin(8, 4096, d.dec_dim, 8)
        for w in (self.enc_layers, self.enc_dim, self.dec_layers, self.dec_dim):
            w.setToolTip(ARCHITECTURE_TIP)
        self.extra = QLineEdit()
        self.extra.setPlaceholderText("more train options, e.g. --lazy --workers 2")
        form = QFormLayout()
        form.addRow("Particles", self.particles)
        form.addRow("Poses", self.pose_mode)
        form.addRow("Poses (.pkl)", self.poses)
        form.addRow(self.search)
        form.addRow("CTF (.pkl)", self.ctf)
        row = QHBoxLayout()
        row.addWidget(self.tilt, 1)
        row.addWidget(self.tilt_deg)
        form.addRow("Tilt pairs", row)
        form.addRow("Run directory", self.outdir)
        form.addRow("Latent dimension", self.zdim)
        form.addRow("Epochs", self.epochs)
        form.addRow("Batch size", self.batch)
        form.addRow("Downsample to", self.downsample)
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
        self._mode = 0
        self.pose_mode.currentIndexChanged.connect(self._pose_mode_changed)
        self._pose_mode_changed(0)
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
        tr.metrics.connect(self._log_epochs)
        self._logged_epoch = 0
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
        if self.pose_search:
            args += self.search.args()
        elif self.poses.text():
            args += ["--poses", self.poses.text()]
        if self.ctf.text():
            args += ["--ctf", self.ctf.text()]
        if self.tilt.text():
            args += ["--tilt", self.tilt.text(), "--tilt-deg", f"{self.tilt_deg.value():g}"]
        if self.epochs.value():
            args += ["-n", str(self.epochs.value())]
        args += ["--zdim", str(self.zdim.value()), "-b", str(self.batch.value()),
                 "--enc-layers", str(self.enc_layers.value()),
                 "--enc-dim", str(self.enc_dim.value()),
                 "--dec-layers", str(self.dec_layers.value()),
                 "--dec-dim", str(self.dec_dim.value())]
        if self.downsample.value():
            args += ["--downsample", str(self.downsample.value())]
        return args + self.extra.text().split()

    @property
    def pose_search(self) -> bool:
        return self.pose_mode.currentIndex() == 1

    def _pose_mode_changed(self, mode: int) -> None:
        """Known poses: the poses file; search: its options, and an architecture and epochs left
        at the other mode's default become this mode's (3 x 256 and auto for a search)."""
        self.poses.setEnabled(mode == 0)
        self.search.setVisible(mode == 1)
        old, new = (DEFAULTS, SEARCH_DEFAULTS)[self._mode], (DEFAULTS, SEARCH_DEFAULTS)[mode]
        self._mode = mode
        for name in ARCHITECTURE:
            spin = getattr(self, name)
            if spin.value() == getattr(old, name):
                spin.setValue(getattr(new, name))
        if self.epochs.value() == _or(old.num_epochs, 0):
            self.epochs.setValue(_or(new.num_epochs, 0))

    def configure(self, particles, outdir, poses=None, ctf=None, zdim=DEFAULTS.zdim,
                  epochs=DEFAULTS.num_epochs, batch=DEFAULTS.batch_size,
                  enc=(DEFAULTS.enc_layers, DEFAULTS.enc_dim),
                  dec=(DEFAULTS.dec_layers, DEFAULTS.dec_dim), extra: str = "",
                  pose_search: bool = False, search: dict | None = None, tilt=None,
                  tilt_deg: float = DEFAULTS.tilt_deg, downsample: int | None = None) -> None:
        """Fill the form; `search`: the ab initio options by TrainConfig field name."""
        self._mode = int(pose_search)           # the architecture given is kept as it is
        self.pose_mode.setCurrentIndex(int(pose_search))
        self.search.set_values(search or {})
        self.particles.setText(particles)
        self.outdir.setText(outdir)
        self.poses.setText(poses or "")
        self.ctf.setText(ctf or "")
        self.tilt.setText(tilt or "")
        self.tilt_deg.setValue(tilt_deg)
        self.zdim.setValue(zdim)
        self.epochs.setValue(_or(epochs, 0))
        self.batch.setValue(batch)
        self.downsample.setValue(downsample or 0)
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
        pose_files = getattr(run, "pose_files", dict)()    # cryoDRGN ab initio runs too
        pose_search = bool(saved.get("pose_search", bool(pose_files)))
        d = SEARCH_DEFAULTS if pose_search else DEFAULTS
        self.configure(data.get("particles") or "", str(run.path), poses=data.get("poses"),
                       pose_search=pose_search, search=saved, tilt=data.get("tilt"),
                       tilt_deg=data.get("tilt_deg") or DEFAULTS.tilt_deg,
                       ctf=data.get("ctf"), zdim=model.get("zdim", getattr(run, "zdim", d.zdim)),
                       epochs=saved.get("num_epochs", max(run.epochs, default=d.num_epochs)),
                       batch=saved.get("batch_size", d.batch_size),
                       downsample=saved.get("downsample"),
                       enc=(model.get("qlayers", d.enc_layers),
                            model.get("qdim", d.enc_dim)),
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
        self._logged_epoch = self.trained_epochs() or 0 if "--resume" in args else 0
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

    def _log_epochs(self, rows: list) -> None:
        """A line per new epoch of metrics.jsonl: its loss, pose phase and search speed."""
        for r in rows:
            epoch = r.get("epoch")
            if not isinstance(epoch, int) or epoch <= self._logged_epoch:
                continue
            self._logged_epoch = epoch
            self._on_log(epoch_line(r))

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


def epoch_line(row: dict) -> str:
    """'epoch 3: loss 0.812, poses: search (15.4 ms/image; poses moved 4.1 deg, 0.42 px)'
    from a metrics.jsonl row."""
    line = f"epoch {row['epoch']}"
    if isinstance(row.get("loss"), (int, float)):
        line += f": loss {row['loss']:.4g}"
    if row.get("poses"):
        line += f", poses: {phase_text(row)}"
    return line
