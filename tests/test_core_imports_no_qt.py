"""cryoscape.core must be usable without Qt: importing every module pulls in none of it."""
import pkgutil
import subprocess
import sys

import cryoscape.core


def test_core_imports_no_qt():
    names = [m.name for m in pkgutil.walk_packages(cryoscape.core.__path__, "cryoscape.core.")]
    assert "cryoscape.core.fourier" in names
    code = (
        "import importlib, sys\n"
        f"for n in {names!r}: importlib.import_module(n)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('PyQt6', 'PyQt5', 'PySide6', 'pyqtgraph', 'vispy')]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_cli_imports_no_qt():
    code = ("import sys; from cryoscape.app.cli import build_parser; build_parser(); "
            "sys.exit(any(m.startswith(('PyQt6', 'pyqtgraph', 'vispy')) for m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
