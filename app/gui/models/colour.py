"""Colouring the particles: by k-means cluster, density, values the explorer computed per
particle (fit error, landscape state), a metadata column or nothing; and the mapping of values
to RGBA (a palette for categories, viridis for numbers)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COLOURINGS = ("k-means", "density", "none")    # besides the metadata columns
FIT_ERROR, LANDSCAPE_STATE = "fit error", "landscape state"   # values the explorer computes
COMPUTED = (FIT_ERROR, LANDSCAPE_STATE)

PALETTE = np.array([[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40],
                    [148, 103, 189], [140, 86, 75], [227, 119, 194], [127, 127, 127],
                    [188, 189, 34], [23, 190, 207], [174, 199, 232], [255, 187, 120],
                    [152, 223, 138], [255, 152, 150], [197, 176, 213], [196, 156, 148],
                    [247, 182, 210], [199, 199, 199], [219, 219, 141], [158, 218, 229]], np.uint8)


@dataclass
class Colouring:
    """What the particles are coloured by: `values` [N] (None: one colour) and their RGBA
    `colours` [N, 4] uint8."""
    by: str
    values: np.ndarray | None = None
    colours: np.ndarray | None = None


def _viridis(steps: int) -> np.ndarray:
    from matplotlib import colormaps

    return np.round(colormaps["viridis"](np.linspace(0, 1, steps))[:, :3] * 255).astype(np.uint8)


def colourise(values, max_categories: int = 40) -> np.ndarray:
    """RGBA colours [N, 4] uint8: a palette for categories (integers or text with few distinct
    values), viridis in 64 steps between the 1st and 99th percentile for numbers."""
    v = np.asarray(values)
    n = len(v)
    alpha = 200 if n > 20000 else 230
    categorical = v.dtype.kind in "OUSb" or (v.dtype.kind in "iu" and
                                             len(np.unique(v)) <= max_categories)
    if categorical:
        _, codes = np.unique(v.astype(str) if v.dtype.kind == "O" else v, return_inverse=True)
        rgb = PALETTE[codes.ravel() % len(PALETTE)]
    else:
        v = v.astype(np.float64)
        finite = np.isfinite(v)
        lo, hi = np.percentile(v[finite], [1, 99]) if finite.any() else (0.0, 1.0)
        t = np.clip((np.nan_to_num(v, nan=lo) - lo) / (hi - lo or 1.0), 0, 1)
        rgb = _viridis(64)[np.minimum((t * 64).astype(int), 63)]
    return np.concatenate([rgb, np.full((n, 1), alpha, np.uint8)], 1)


def category_colours(values) -> dict:
    """{value: (r, g, b)}: the colour `colourise` gives each distinct value of categorical
    `values` (a legend)."""
    distinct = np.unique(np.asarray(values))
    return {v.item(): tuple(int(c) for c in PALETTE[k % len(PALETTE)])
            for k, v in enumerate(distinct)}


def can_colour(by: str, metadata, values=None) -> bool:
    """Whether the points can be coloured by `by`: a built-in colouring, one of `values`
    ({name: [N]}, the explorer's per-particle values) or a column of `metadata` (a DataFrame
    or None)."""
    return (by in COLOURINGS or by in (values or {})
            or (metadata is not None and by in metadata.columns))


def colouring(by: str, labels, xy, metadata, values=None) -> Colouring:
    """Colour by k-means `labels`, the density of the 2D view `xy` (none for a histogram),
    one of `values` ({name: [N]}), a `metadata` column, or 'none'; an unknown name falls back
    to k-means. Costly for a million particles (a density, two sorts): run it in a worker
    thread."""
    if not can_colour(by, metadata, values):
        by = "k-means"
    if by == "k-means":
        values = labels
    elif by == "density":
        from cryoscape.core.analysis.sampling import density_2d
        values = density_2d(xy).at(xy) if xy is not None else None
    elif by == "none":
        values = None
    elif by in (values or {}):
        values = values[by]
    else:
        values = metadata[by].to_numpy()
    return Colouring(by, values, None if values is None else colourise(values))


def colour_columns(table) -> list[str]:
    """Metadata columns worth colouring by: numbers, or text with few distinct values."""
    if table is None:
        return []
    cols = []
    for c in table.columns:
        s = table[c]
        if (s.dtype.kind in "iuf" and s.nunique() > 1
                or s.dtype.kind == "O" and 1 < s.nunique() <= 40):
            cols.append(c)
    return cols
