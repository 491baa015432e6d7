"""QApplication setup: names (for QSettings), icon and style sheet from resources/."""
from __future__ import annotations

import os
import sys
import time

from cryoscape.resources import resource


class GuiGarbageCollector:
    """Python's cycle collector run from a GUI-thread timer instead of automatically.

    A cycle holding Qt or OpenGL objects collected inside a worker thread would crash Qt; and a
    full collection over everything torch, scikit-learn and Qt allocate at import stalls the
    event loop for a few hundred ms, so after each full collection the survivors are frozen
    (gc.freeze: long-lived objects are not scanned again). A burst of new objects (a lazy import
    of pandas or scikit-learn, a run being loaded) is scanned once, at once, and frozen: left
    to the generations it would be scanned three times, the last one seconds later, while the
    user works.
    """

    def __init__(self, parent, interval_ms: int = 250):
        import gc

        from PyQt6.QtCore import QTimer

        self.thresholds = gc.get_threshold()
        gc.disable()
        gc.collect()
        gc.freeze()
        self.timer = QTimer(parent)
        self.timer.timeout.connect(self.check)
        self.timer.start(interval_ms)

    def check(self) -> None:
        import gc

        (t0, t1, t2), (n0, n1, n2) = self.thresholds, gc.get_count()
        if n0 > 10 * t0:
            gc.collect()
            gc.freeze()
        elif n0 > t0:
            gc.collect(0)
            if n1 > t1:
                start = time.perf_counter()
                gc.collect(1)
                if n2 > t2 or time.perf_counter() - start > 0.02:   # many new long-lived
                    gc.collect()
                    gc.freeze()


def report_unexpected_errors(window) -> None:
    """An exception escaping a Qt slot or QThread (a bug) goes to stderr and to the window's
    error dialog (scripted runs then fail with it), instead of aborting the application, which
    PyQt6 does under the default `sys.excepthook`. From any thread: the dialog is opened on the
    GUI thread (a queued signal)."""
    import traceback

    from PyQt6.QtCore import QObject, pyqtSignal

    class Relay(QObject):
        error = pyqtSignal(str, str)
        interrupted = pyqtSignal()

    relay = Relay(window)
    relay.error.connect(window.show_error)
    relay.interrupted.connect(window.close)

    def hook(kind, value, tb):
        sys.stderr.write("".join(traceback.format_exception(kind, value, tb)))
        if issubclass(kind, KeyboardInterrupt):
            relay.interrupted.emit()
            return
        relay.error.emit("Unexpected error", f"{kind.__name__}: {value}\n\nThis is a bug in "
                         "cryoscape; the traceback is on the terminal. Please report it.")
    sys.excepthook = hook


def application(argv: list[str] | None = None):
    """The QApplication (created once), styled and named for QSettings."""
    from PyQt6.QtGui import QIcon
    from PyQt6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        os.environ.setdefault("PYQTGRAPH_QT_LIB", "PyQt6")
        app = QApplication(argv if argv is not None else sys.argv[:1])
    if not app.property("cryoscapeStyled"):
        app.setOrganizationName("cryoscape")
        app.setApplicationName("cryoscape")
        app.setApplicationDisplayName("cryoscape")
        app.setWindowIcon(QIcon(str(resource("icon.png"))))
        app.setStyleSheet(resource("style.qss").read_text())
        app.setProperty("cryoscapeStyled", True)
        app._cryoscape_gc = GuiGarbageCollector(app)
        # decoding uses all cores but one: the event loop keeps a core to itself
        import torch
        torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
    import pyqtgraph as pg
    pg.setConfigOptions(antialias=False, foreground="#c8d3de")
    return app
