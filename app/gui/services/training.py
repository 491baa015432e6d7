"""Training as a service: `cryoscape train` in a child process (`TrainingWatcher` starts it and
watches its run directory), and what the explorer does as epochs arrive (open the run, show
the new epoch unless the user looks back, keep UMAP for the epoch asked for)."""
from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from cryoscape.app.gui.services.jobs import lower_priority
from cryoscape.core.errors import CryoscapeError
from cryoscape.core.run import numbered_files
from cryoscape.core.train.rundir import RunDir, read_metrics
from PyQt6.QtCore import QObject, QThread, pyqtSignal


def _last_state(line: bytes) -> str:
    """What a terminal shows of `line`: the text after its last carriage return."""
    return line.rstrip(b"\r").rsplit(b"\r", 1)[-1].decode(errors="replace").rstrip()


class TrainingWatcher(QThread):
    """Runs `cryoscape train` in a child process and watches its run directory.

    Signals: `epoch(N)` when epoch N's files are complete, `metrics(list[dict])` with every row
    of `metrics.jsonl` when it changes, `log(str)` for each line of the child's output,
    `progress(str)` for its progress bar's line as it is redrawn,
    `finished_training(returncode, tail)`.
    """

    epoch = pyqtSignal(int)
    metrics = pyqtSignal(list)
    log = pyqtSignal(str)
    progress = pyqtSignal(str)
    finished_training = pyqtSignal(int, str)

    def __init__(self, train_args: list[str], rundir: str | os.PathLike, poll_s: float = 0.2,
                 parent=None):
        super().__init__(parent)
        self.setObjectName("training-watcher")
        self.rundir = Path(rundir)
        self.command = [sys.executable, "-m", "cryoscape.app.cli", "train", *train_args,
                        "-o", str(self.rundir)]
        self.poll_s = poll_s
        self.process: subprocess.Popen | None = None
        self._stop_requested = threading.Event()
        self._seen_epochs: set[int] = set()
        self._metrics_stamp = None
        self._tail: collections.deque = collections.deque(maxlen=40)

    # -- controls (GUI thread) ---------------------------------------------------------------
    def pause_after_epoch(self) -> None:
        """Ask training to stop cleanly after the current epoch (the PAUSE file)."""
        self.rundir.mkdir(parents=True, exist_ok=True)
        RunDir(self.rundir).pause.touch()

    def stop_training(self) -> None:
        """SIGTERM: the child stops after the current batch and writes a checkpoint."""
        self._stop_requested.set()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def kill(self, timeout_s: float = 20.0) -> None:
        """Stop the child (SIGTERM, then SIGKILL after `timeout_s`) and end this thread."""
        self.stop_training()
        self.wait(int(timeout_s * 1000))
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.wait()

    # -- thread ------------------------------------------------------------------------------
    def run(self) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("QT_QPA_PLATFORM", None)
        self.process = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        lower_priority(self.process.pid)
        os.set_blocking(self.process.stdout.fileno(), False)
        buf = b""
        while True:
            done = self.process.poll() is not None
            buf = self._read_output(buf)
            self._scan()
            if done:
                break
            time.sleep(self.poll_s)
        self._read_output(buf, final=True)
        self._scan()
        self.process.stdout.close()
        self.finished_training.emit(self.process.returncode, "\n".join(self._tail))

    def _read_output(self, buf: bytes, final: bool = False) -> bytes:
        """Emit the finished lines of the child's output (`final`: the last line too); a
        progress bar redraws its line with '\r': only its last state is logged, and the line
        being redrawn goes to `progress`."""
        try:
            chunk = self.process.stdout.read() or b""
        except (BlockingIOError, ValueError):
            chunk = b""
        buf += chunk + (b"\n" if final else b"")
        *lines, buf = buf.split(b"\n")
        for line in lines:
            text = _last_state(line)
            if text:
                self._tail.append(text)
                self.log.emit(text)
        if chunk and b"\r" in buf:
            buf = buf[buf.rstrip(b"\r").rfind(b"\r"):]
            self.progress.emit(_last_state(buf))
        return buf

    def _scan(self) -> None:
        """New epochs (weights.N.pkl: training writes it after z.N.pkl) and metrics rows."""
        metrics_file = RunDir(self.rundir).metrics
        try:
            stamp = metrics_file.stat().st_mtime_ns
        except OSError:
            stamp = None
        if stamp is not None and stamp != self._metrics_stamp:
            self._metrics_stamp = stamp
            self.metrics.emit(read_metrics(metrics_file))
        if self.rundir.is_dir():
            new = set(numbered_files(self.rundir, "weights")) - self._seen_epochs
            if new:                                  # several at once: show the latest
                self._seen_epochs |= new
                self.epoch.emit(max(new))


class TrainingService(QObject):
    """One training at a time, shown in the explorer as its epochs arrive: the run opens at its
    first epoch, then each new epoch is shown unless the user looks back at an earlier one; a
    UMAP view falls back to PCA for new epochs (UMAP takes longer than an epoch), and the
    decode cache is smaller while training. Signals: `started(rundir)`, `epoch_ready(rundir,
    epoch)` once an epoch is handled, `metrics(rows)`,
    `log(line)`, `progress(line)`, `finished(returncode, tail)`; `outcome` says in words how
    the last training ended."""

    started = pyqtSignal(str)
    epoch_ready = pyqtSignal(str, int)
    metrics = pyqtSignal(list)
    log = pyqtSignal(str)
    progress = pyqtSignal(str)
    finished = pyqtSignal(int, str)

    def __init__(self, state, activity, runs, embedding, volumes, parent=None):
        super().__init__(parent)
        self.state, self.activity = state, activity
        self.runs, self.embedding, self.volumes = runs, embedding, volumes
        self.watcher: TrainingWatcher | None = None
        self.outcome = ""
        self._running = False
        self._epoch_shown: int | None = None
        embedding.kind_changed.connect(self._kind_changed)

    @property
    def running(self) -> bool:
        """True from start() until the child process has ended."""
        return self._running

    def start(self, args: list[str], rundir) -> None:
        """`cryoscape train ARGS -o RUNDIR` in a child process (a stale PAUSE file removed)."""
        if self.running:
            return
        RunDir(rundir).pause.unlink(missing_ok=True)
        self.watcher = w = TrainingWatcher(args, rundir, parent=self)
        w.epoch.connect(self._on_epoch)          # bound methods: queued to the GUI thread
        w.metrics.connect(self.metrics)
        w.log.connect(self.log)
        w.progress.connect(self.progress)
        w.finished_training.connect(self._finished)
        self._epoch_shown = None
        self.volumes.set_cache_grid(3)           # new maps every epoch: a smaller cache
        w.start()
        self._running = True
        self.started.emit(str(rundir))
        self.activity.status.emit(f"Training into {rundir}…")

    def pause(self) -> None:
        if self.running:
            self.watcher.pause_after_epoch()

    def stop(self) -> None:
        if self.running:
            self.watcher.stop_training()

    def shutdown(self) -> None:
        """Stop the child process (if any) and wait for the watcher thread."""
        if self.watcher is not None:
            self.watcher.kill()
            self.watcher = None
        self._running = False

    def _kind_changed(self, kind: str) -> None:
        st = self.state
        if kind == "UMAP" and self.running and st.z is not None:
            self.activity.status.emit(
                f"Computing UMAP for epoch {st.epoch} only: while training, new epochs show "
                "PCA (pick UMAP again for them)")

    def _pca_for_new_epochs(self) -> str:
        """A new epoch is about to be shown: UMAP or the landscape is not recomputed for every
        epoch; show PCA and say so. Returns that note, or ''."""
        kind = self.embedding.kind
        if kind not in ("UMAP", "Landscape"):
            return ""
        self.embedding.set_kind("PCA", analyse=False)
        return f" (PCA view: {kind} is not recomputed every epoch while training; pick " \
               f"{kind} to compute it for the epoch shown)"

    def _on_epoch(self, epoch: int) -> None:
        self.show_epoch(self.watcher.rundir, epoch)

    def show_epoch(self, rundir, epoch: int) -> None:
        """Epoch `epoch` of the run training in `rundir` is complete: show it."""
        st, rundir = self.state, Path(rundir)
        note = ""
        try:
            if st.run is None or Path(st.run.path).resolve() != rundir.resolve():
                note = self._pca_for_new_epochs()
                self.runs.open_run(rundir, epoch)
            else:              # the new epoch, unless the user moved the slider back
                shown = self._epoch_shown
                if not (shown is not None and st.epoch is not None and st.epoch < shown):
                    note = self._pca_for_new_epochs()
                    self.runs.set_epoch(epoch)
        except (CryoscapeError, OSError) as e:
            self.activity.error.emit("cryoscape", str(e))
            return
        self._epoch_shown = epoch
        self.epoch_ready.emit(str(rundir), epoch)       # e.g. the epoch slider's range grows
        self.activity.status.emit(f"Training: epoch {epoch} done{note}")

    def _finished(self, rc: int, tail: str) -> None:
        self._running = False
        self.volumes.set_cache_grid(8)
        self.outcome = ending(self.watcher.rundir, rc)
        if rc not in (0, -15, 143):
            last = tail.strip().splitlines()[-1] if tail.strip() else f"exit status {rc}"
            self.activity.error.emit("Training failed", last)
        else:
            self.activity.status.emit(self.outcome.capitalize())
        self.finished.emit(rc, tail)


def ending(rundir, rc: int) -> str:
    """How a training ended, in words, from its status.json and return code `rc`."""
    import json

    rd = RunDir(rundir)
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
