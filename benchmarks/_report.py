"""Where the benchmark scripts put their tables: BENCHMARKS.md, one section per benchmark
between `<!-- name -->` and `<!-- /name -->` markers, each with the command that made it."""
from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from cryoscape.core.io.atomic import atomic_open

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def write_section(name: str, markdown: str, path: str | os.PathLike = BENCHMARKS) -> Path:
    """Replace section `name` of `path` with `markdown` (appended if absent), atomically."""
    path = Path(path)
    begin, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{begin}\n{markdown.strip()}\n{end}"
    i = old.find(begin)
    j = old.find(end, i) if i >= 0 else -1
    if j >= 0:
        new = old[:i] + block + old[j + len(end):]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    with atomic_open(path, "w") as f:
        f.write(new)
    print(f"written section '{name}' of {path}")
    return path


def command(script: str, argv: list[str] | None = None) -> str:
    """The command line that ran `script` (its path relative to the repository) with `argv`
    (default: this process's arguments)."""
    rel = Path(script).resolve().relative_to(BENCHMARKS.parent)
    args = sys.argv[1:] if argv is None else argv
    return shlex.join(["python", str(rel), *args])
