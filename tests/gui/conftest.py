"""GUI test fixtures: real OpenGL under Xvfb (pytest-xvfb), one main window per test, and a check
after every test that no window, thread or child process is left behind."""
from __future__ import annotations

import os

os.environ["QT_QPA_PLATFORM"] = "xcb"          # before Qt is imported: real X11 + Mesa GL
os.environ.setdefault("PYQTGRAPH_QT_LIB", "PyQt6")

import threading
from pathlib import Path

import numpy as np
import pytest


def pytest_collection_modifyitems(config, items):
    """Without an X server (e.g. `-p no:xvfb` on a headless box) Qt would abort the whole
    session: skip the GUI tests instead, saying why."""
    if os.environ.get("DISPLAY"):
        return
    here = Path(__file__).parent
    reason = "no X display: GUI tests need Xvfb (pytest-xvfb) or a desktop session"
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.skip(reason=reason))


class SyntheticRun:
    """A stand-in with the Run API and an analytic decoder (no torch): two blobs whose distance
    and size follow z[0] and z[-1]. For tests that need no trained model."""

    def __init__(self, path, n=300, zdim=2, D=32, epochs=(1, 2), particles_path=None, seed=0):
        rng = np.random.default_rng(seed)
        self._z = {e: rng.normal(size=(n, zdim)).astype(np.float32) * (0.5 + 0.25 * k)
                   for k, e in enumerate(epochs)}
        self.epochs, self.D, self.apix, self.zdim = list(epochs), D, 2.0, zdim
        self.path = Path(path)
        self.particles_path = particles_path
        self.config = {}

    def latents(self, epoch=None):
        return self._z[self.epochs[-1] if epoch is None else epoch]

    def decode(self, z, D=None, epoch=None, bf16=False):   # analytic: bf16 changes nothing
        D = D or self.D
        x = (np.arange(D) - D / 2) / D
        Z, Y, X = np.meshgrid(x, x, x, indexing="ij")
        out = []
        for zz in np.atleast_2d(z):
            c, r = 0.12 + 0.08 * np.tanh(zz[0]), 0.12 + 0.05 * np.tanh(zz[-1])
            out.append(np.exp(-((X - c) ** 2 + Y ** 2 + Z ** 2) / r ** 2)
                       + np.exp(-((X + 0.15) ** 2 + (Y - 0.1) ** 2 + Z ** 2) / 0.1 ** 2))
        return np.asarray(out, np.float32)

    def metrics(self):
        return []

    def voxel_size(self, D=None):
        return self.apix * self.D / (D or self.D)


def child_pids() -> set[int]:
    """This process's live child processes, less multiprocessing's resource tracker (one per
    interpreter, started with the first spawned child and kept until exit: not a leak)."""
    from multiprocessing import resource_tracker

    tracker = getattr(resource_tracker._resource_tracker, "_pid", None)
    return _child_pids() - {tracker}


def _child_pids() -> set[int]:
    me, kids = os.getpid(), set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == me and fields[0] != "Z":
                kids.add(int(d))
    return kids


@pytest.fixture
def no_leaks(qapp):
    """After the test: no visible top-level widget, no extra Python thread, no child process."""
    threads_before = {t.ident for t in threading.enumerate()}
    kids_before = child_pids()
    yield
    from PyQt6.QtWidgets import QApplication
    for w in QApplication.topLevelWidgets():
        if w.isVisible():
            w.close()
    QApplication.processEvents()
    visible = [w for w in QApplication.topLevelWidgets() if w.isVisible()]
    extra_threads = [t for t in threading.enumerate() if t.ident not in threads_before
                     and not isinstance(t, threading._DummyThread)]  # Qt's own, checked apart
    extra_kids = child_pids() - kids_before
    assert not visible, f"windows left open: {visible}"
    assert not extra_threads, f"threads left running: {extra_threads}"
    assert not extra_kids, f"child processes left: {extra_kids}"


@pytest.fixture
def window(qtbot, qapp, tmp_path, no_leaks):
    """A shown MainWindow with its own settings file; closed (threads stopped) afterwards."""
    from cryoscape.app.gui.app import application
    from cryoscape.app.gui.main_window import MainWindow
    from PyQt6.QtCore import QSettings

    application()
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    w = MainWindow(settings=settings, restore=False)
    w.resize(1280, 760)
    w.show()
    qtbot.waitExposed(w)
    yield w
    w.close()
    for t in w.explorer.threads:
        assert t.isFinished(), f"worker thread {t.objectName()} still running"
    w.deleteLater()
    qapp.processEvents()


@pytest.fixture
def synthetic_run(tmp_path):
    return SyntheticRun(tmp_path / "synthetic")


@pytest.fixture
def cryodrgn_run(fixtures_dir):
    """The real cryoDRGN 4.3.1 run (zdim 2, D 64, 100 particles; its particle paths dangle)."""
    path = fixtures_dir / "cryodrgn_rundir" / "run"
    return path


@pytest.fixture
def moved_run(cryodrgn_run, tmp_path):
    """The fixture run copied elsewhere, its config naming particles that do not exist here (as
    when a run made on a cluster is explored on a laptop)."""
    import shutil

    import yaml
    dst = tmp_path / "moved_run"
    shutil.copytree(cryodrgn_run, dst, copy_function=shutil.copyfile)
    cfg = yaml.safe_load((dst / "config.yaml").read_text())
    cfg["dataset_args"]["particles"] = "/cluster/project/Extract/job012/particles.star"
    cfg["dataset_args"]["poses"] = "/cluster/project/poses.pkl"
    (dst / "config.yaml").write_text(yaml.safe_dump(cfg))
    return dst


# Waits end when what they wait for happens; this bound only stops a test that hangs (a busy
# machine may be many times slower than an idle one).
WAIT_MS = 600_000

VIEW_BACKGROUND = (16, 22, 29)            # the 3D view's background, #10161d


def surface_fraction(img) -> float:
    """Fraction of a 3D-view image's pixels that are not its background: 0 for a blank view
    (whose RGB values alone differ by channel: a `std()` would not tell)."""
    rgb = np.asarray(img)[..., :3].astype(int)
    return float((np.abs(rgb - VIEW_BACKGROUND).sum(-1) > 40).mean())


def window_surface_fraction(img) -> float:
    """In a screenshot of the main window (default layout, the 3D view on the right), the
    fraction of its right 40% that is surface-blue: ~0.001 without a surface, 0.02-0.06
    with one."""
    rgb = np.asarray(img)[..., :3].astype(int)
    right = rgb[:, int(0.6 * rgb.shape[1]):]
    return float(((right[..., 2] > 120) & (right[..., 2] - right[..., 0] > 50)).mean())


def open_run(qtbot, window, run):
    """Show `run` (a Run or SyntheticRun) and wait for its embedding and clusters."""
    window.explorer.runs.set_run(run)
    qtbot.waitUntil(lambda: window.state.labels is not None, timeout=WAIT_MS)


def wait_surface(qtbot, window, source="exact", timeout=WAIT_MS):
    """Wait until the volume view shows a surface from `source` ('exact', 'preview', 'cache')."""
    qtbot.waitUntil(lambda: window.volume.shown is not None
                    and window.volume.shown.source == source, timeout=timeout)
