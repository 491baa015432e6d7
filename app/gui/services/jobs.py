"""Worker threads that keep slow work off the GUI thread, and the base of the services.

`JobThread` runs jobs one at a time: a foreground slot where only the latest request counts
(a click supersedes the one before it: request coalescing) and a background queue that runs
while the foreground is idle (the decode cache). A `Service` owns its job threads and reports
their work and errors to the `Activity` model.
"""
from __future__ import annotations

import collections
import os
import sys
import threading
import traceback

from cryoscape.core.errors import CryoscapeError
from PyQt6.QtCore import QObject, QThread, pyqtSignal


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


class Service(QObject):
    """A concern of the explorer with its own worker threads (`threads`, started here): their
    results go to the subclass's slots, their busy spans and errors to `activity`."""

    def __init__(self, activity, names: tuple[str, ...], parent=None):
        super().__init__(parent)
        self.activity = activity
        self.threads = [JobThread(name, self) for name in names]
        for t in self.threads:      # bound methods: delivered on the GUI thread (queued)
            t.busy.connect(self._on_busy)
            t.error.connect(self._on_error)
            t.start()

    def _on_busy(self, busy: bool, what: str) -> None:
        if what:                    # jobs submitted without words are not shown as busy
            self.activity.set_busy(self.sender().objectName(), what if busy else None)

    def _on_error(self, message: str) -> None:
        name = self.sender().objectName() if self.sender() is not None else "worker"
        self.activity.error.emit(f"{name.capitalize()} failed", message)

    def shutdown(self) -> None:
        """Stop the threads (each finishes the job it is running)."""
        for t in self.threads:
            t.stop()
