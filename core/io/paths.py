"""Finding the image stacks that a .star, .cs or .txt file names.

A name is tried as given (if absolute), then under `datadir` and the referring file's folder,
each both with the whole relative path and with the basename alone (cryoSPARC names are
prefixed with job folders like `J24/extract/...`; RELION's with `Extract/job012/...`), and
last under the referring file's parent folders (a RELION or cryoSPARC project root, where
such names start).
"""
from __future__ import annotations

import os
from pathlib import Path

from cryoscape.core.errors import InputFileError

PARENT_LEVELS = 3  # job folders sit 1-2 levels below a project root


def candidates(name: str, base_dir: str | os.PathLike,
               datadir: str | os.PathLike | None = None) -> list[Path]:
    name = name.strip().lstrip(">")  # cryoSPARC marks imported paths with '>'
    p = Path(name)
    out = [p] if p.is_absolute() else []
    for d in ([Path(datadir)] if datadir else []) + [Path(base_dir)]:
        if not p.is_absolute():
            out.append(d / p)
        out.append(d / p.name)
    if not p.is_absolute():
        out += [d / p for d in list(Path(base_dir).parents)[:PARENT_LEVELS]]
    return out


def resolve(name: str, referrer: str | os.PathLike, datadir: str | os.PathLike | None = None
            ) -> Path:
    """The existing file that `name`, read from the file `referrer`, refers to."""
    base = Path(referrer).resolve().parent
    tried = candidates(name, base, datadir)
    for c in tried:
        if c.is_file():
            return c
    where = ", ".join(dict.fromkeys(str(c.parent) for c in tried))
    hint = "" if datadir else " (give --datadir with the folder that holds the stacks)"
    raise InputFileError(referrer, f"image stack '{name}' not found (looked in {where}){hint}")
