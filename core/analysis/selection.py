"""Particle selections as sorted index arrays: by cluster, polygon, outliers; set algebra;
a run's selection exported for other programs."""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from functools import reduce

import numpy as np
from cryoscape.core.errors import CryoscapeError, InputFileError


def as_index(ind, n: int | None = None) -> np.ndarray:
    """Sorted unique int64 indices (from indices or a boolean mask); checked against n."""
    ind = np.asarray(ind)
    if ind.dtype == bool:
        ind = np.flatnonzero(ind)
    ind = np.unique(ind.astype(np.int64).ravel())
    if n is not None and len(ind) and (ind[0] < 0 or ind[-1] >= n):
        raise CryoscapeError(f"selection has indices outside 0..{n - 1}")
    return ind


def by_cluster(labels, clusters: Iterable[int]) -> np.ndarray:
    """Particles whose label is one of `clusters`."""
    labels = np.asarray(labels)
    clusters = [int(c) for c in clusters]
    k = int(labels.max()) + 1 if len(labels) else 0
    bad = [c for c in clusters if not 0 <= c < k]
    if bad:
        raise CryoscapeError(f"cluster {bad} does not exist (clusters are 0..{k - 1})")
    return np.flatnonzero(np.isin(labels, clusters)).astype(np.int64)


def in_polygon(xy, polygon) -> np.ndarray:
    """Particles whose 2D embedding point lies inside the polygon [m, 2] (closed implicitly)."""
    from matplotlib.path import Path

    polygon = np.asarray(polygon, dtype=np.float64)
    if polygon.ndim != 2 or polygon.shape[1] != 2 or len(polygon) < 3:
        raise CryoscapeError(f"a polygon needs at least 3 (x, y) vertices, got {polygon.shape}")
    xy = np.asarray(xy, dtype=np.float64)
    return np.flatnonzero(Path(polygon).contains_points(xy)).astype(np.int64)


def load_polygon(path: str | os.PathLike) -> np.ndarray:
    """Read polygon vertices [m, 2]: a JSON list of [x, y] (or {"vertices": ...}), or a text
    file with two numbers per line."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise InputFileError(path, f"cannot read polygon: {e.strerror}") from e
    try:
        if text.lstrip().startswith(("[", "{")):
            data = json.loads(text)
            verts = np.asarray(data["vertices"] if isinstance(data, dict) else data, float)
        else:
            verts = np.loadtxt(path, dtype=np.float64, ndmin=2, delimiter=None)
    except (ValueError, KeyError, TypeError) as e:
        raise InputFileError(path, f"not a polygon (a list of x y vertices): {e}") from e
    if verts.ndim != 2 or verts.shape[1] != 2 or len(verts) < 3:
        raise InputFileError(path, f"a polygon needs at least 3 (x, y) vertices, got {verts.shape}")
    return verts


def outliers(z, sigma: float = 3.0) -> np.ndarray:
    """Particles whose distance from the latent mean, ||z - mean||, exceeds the mean of those
    distances by more than `sigma` standard deviations."""
    z = np.asarray(z, dtype=np.float64)
    z = z[:, None] if z.ndim == 1 else z
    d = np.linalg.norm(z - z.mean(0), axis=1)
    sd = d.std()
    if sd == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero((d - d.mean()) / sd > sigma).astype(np.int64)


def union(*sels) -> np.ndarray:
    """Particles in any of the selections."""
    return reduce(np.union1d, [as_index(s) for s in sels], np.zeros(0, np.int64))


def intersection(*sels) -> np.ndarray:
    """Particles in every selection."""
    if not sels:
        return np.zeros(0, np.int64)
    return reduce(np.intersect1d, [as_index(s) for s in sels])


def difference(a, b) -> np.ndarray:
    """Particles in a but not in b."""
    return np.setdiff1d(as_index(a), as_index(b))


def invert(sel, n: int) -> np.ndarray:
    """Particles 0..n-1 not in the selection."""
    return np.setdiff1d(np.arange(n, dtype=np.int64), as_index(sel, n))


def export_selection(run, sel, out: str | os.PathLike, *, particles=None, ind=None,
                     labels=None, datadir=None):
    """The latent rows `sel` of `run` as `out` (`export.export_subset`: .pkl, .star, .cs or
    .mrcs by its extension), in rows of the run's particle file (through its training index,
    or the index pickle `ind`); `particles`: that file (default: the run's)."""
    from pathlib import Path

    from cryoscape.core.analysis import runfiles
    from cryoscape.core.export import export_subset

    rows = runfiles.to_particle_indices(run, sel, ind)
    src = None if Path(out).suffix.lower() == ".pkl" else runfiles.particles_file(run, particles)
    return export_subset(out, rows, src, labels=labels, datadir=datadir)
