"""Import contracts of the explorer's house (app/gui/README.md): models import neither Qt nor
vispy nor pyqtgraph, nor any other layer; visuals call no service or widget; services use no
widget; widgets draw through visuals and never import vispy or pyqtgraph themselves; `core`
imports nothing from `app`. Read from the source (every import, also inside functions)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUI = ROOT / "app" / "gui"
DRAWING = ("PyQt6", "PyQt5", "PySide6", "pyqtgraph", "vispy")


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import statement in a file, relative ones made absolute."""
    package = "cryoscape." + ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0]
                base = f"{parent}.{base}" if base else parent
            out.append((node.lineno, base))
    return out


def offenders(folder: Path, forbidden: tuple[str, ...]) -> list[str]:
    """'file:line module' for each import of a module under one of `forbidden`."""
    bad = []
    for path in sorted(folder.rglob("*.py")):
        for line, module in imports(path):
            if any(module == f or module.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(ROOT)}:{line} {module}")
    return bad


def layer(name: str) -> str:
    return f"cryoscape.app.gui.{name}"


@pytest.mark.parametrize("folder, forbidden", [
    ("models", DRAWING + (layer("services"), layer("widgets"), layer("visuals"),
                          layer("main_window"))),
    ("visuals", (layer("services"), layer("widgets"), layer("main_window"))),
    ("services", (layer("widgets"), layer("main_window"))),
    ("widgets", ("pyqtgraph", "vispy", layer("main_window"))),
])
def test_gui_layers(folder, forbidden):
    assert (GUI / folder / "__init__.py").is_file()
    assert offenders(GUI / folder, forbidden) == []


def test_core_imports_no_app():
    assert offenders(ROOT / "core", ("cryoscape.app",)) == []


def test_the_check_finds_imports():
    """The checks above can fail: they see imports at the top and inside functions."""
    found = {m for _, m in imports(GUI / "widgets" / "volume_panel.py")}
    assert {layer("visuals.volume_view"), "PyQt6.QtWidgets"} <= found
    assert "cryoscape.core.io.mrc" in {m for _, m in imports(GUI / "services" / "volumes.py")}
    assert offenders(GUI / "visuals", ("vispy",)) and offenders(GUI / "widgets", ("PyQt6",))


def test_models_load_without_qt():
    """Importing every model pulls in no Qt, pyqtgraph or vispy at all (not even indirectly)."""
    names = [f"cryoscape.app.gui.models.{p.stem}" for p in sorted((GUI / "models").glob("*.py"))]
    code = ("import importlib, sys\n"
            f"for n in {names!r}: importlib.import_module(n)\n"
            f"bad = [m for m in sys.modules if m.split('.')[0] in {DRAWING!r}]\n"
            "print(bad); sys.exit(1 if bad else 0)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
