"""Threads that keep slow work off the GUI thread.

`JobThread` runs jobs one at a time: a foreground slot where only the latest request counts
(a click supersedes the one before it: request coalescing) and a background queue that runs
while the foreground is idle (the decode cache). `TrainingWatcher` starts training as a child
process (`python -m cryoscape.app.cli train ...`) and reports new epochs and metrics by watching
the run directory.
"""
from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from cryoscape.core.errors import CryoscapeError
from cryoscape.core.run import numbered_files
from cryoscape.core.train.rundir import read_metrics
from PyQt6.QtCore import QThread, pyqtSignal


def lower_priority(task_id: int, by: int = 5) -> None:
    """Raise the nice value of a thread (its native id) or a child process by `by` (Linux), so
    that when the cores are busy the GUI thread gets them first; on an idle machine nothing
    changes. Threads and processes started from it inherit the value (torch's worker threads)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, task_id, os.getpriority(os.PRIO_PROCESS, task_id) + by)
    except OSError:                         # the task has ended, or no permission: no harm
        pass


class JobThread(QThread):
    """One worker thread with a latest-wins foreground slot and a FIFO background queue.

    A job is a callable `job(emit, is_stale)`: `emit(obj)` sends `obj` through `result` (a job
    may emit several results, e.g. a preview then the full map); `is_stale()` turns true when a
    newer foreground job has arrived, so a long job can give up early. `busy(True, what)` and
    `busy(False, what)` bracket each job, `what` being the words it was submitted with.
    """

    result = pyqtSignal(object)
    error = pyqtSignal(str)
    busy = pyqtSignal(bool, str)

    def __init__(self, name: str, parent=None):
        super().__init__(parent)
        self.setObjectName(name)
        self._cond = threading.Condition()
        self._pending = None
        self._background: collections.deque = collections.deque()
        self._generation = 0
        self._stopping = False

    def submit(self, job, what: str = "") -> None:
        """Run `job` next, replacing any foreground job that has not started yet."""
        with self._cond:
            self._pending = job, what
            self._generation += 1
            self._cond.notify()

    def submit_background(self, job, what: str = "") -> None:
        with self._cond:
            self._background.append((job, what))
            self._cond.notify()

    def clear_background(self) -> None:
        with self._cond:
            self._background.clear()

    def stop(self) -> None:
        """Drop queued jobs, let the running one finish and end the thread (waits for it: a
        QThread destroyed while running would abort the process)."""
        with self._cond:
            self._stopping = True
            self._pending = None
            self._background.clear()
            self._generation += 1
            self._cond.notify()
        self.wait()

    def run(self) -> None:
        lower_priority(threading.get_native_id())
        while True:
            with self._cond:
                while not self._stopping and self._pending is None and not self._background:
                    self._cond.wait()
                if self._stopping:
                    return
                if self._pending is not None:
                    (job, what), self._pending = self._pending, None
                    generation = self._generation
                    is_stale = lambda g=generation: self._generation != g or self._stopping
                else:
                    job, what = self._background.popleft()
                    is_stale = lambda: self._pending is not None or self._stopping
            self.busy.emit(True, what)
            try:
                job(self.result.emit, is_stale)
            except Exception as e:  # noqa: BLE001 (reported to the user; the thread serves on)
                msg = str(e) or type(e).__name__
                if not isinstance(e, (CryoscapeError, OSError)):
                    traceback.print_exc()
                self.error.emit(msg)
            self.busy.emit(False, what)


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
        (self.rundir / "PAUSE").touch()

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
        metrics_file = self.rundir / "metrics.jsonl"
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
