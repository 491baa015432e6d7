"""Translations at the edges: cryoscape keeps `shifts` in pixels as how far each particle's
content is displaced in its image (+x along columns, +y along rows).

cryoDRGN pickles store trans = -shift / D; RELION's rlnOriginX(Angst) and cryoSPARC's
alignments3D/shift are the opposite of the displacement (the shift that re-centres), in
pixels (or A) of their own pixel size.
"""
from __future__ import annotations

import numpy as np


def shifts_from_cryodrgn(trans, D: int) -> np.ndarray:
    """cryoDRGN trans (fraction of the box) -> displacement in pixels."""
    return (-np.asarray(trans, dtype=np.float32) * D).astype(np.float32)


def shifts_to_cryodrgn(shifts, D: int) -> np.ndarray:
    """Displacement in pixels -> cryoDRGN trans (fraction of the box)."""
    return (-np.asarray(shifts, dtype=np.float32) / D).astype(np.float32)


def shifts_from_origin(origin_px) -> np.ndarray:
    """RELION origin / cryoSPARC shift in pixels -> displacement in pixels."""
    return -np.asarray(origin_px, dtype=np.float32)


def shifts_to_origin(shifts) -> np.ndarray:
    """Displacement in pixels -> RELION origin / cryoSPARC shift in pixels."""
    return -np.asarray(shifts, dtype=np.float32)
