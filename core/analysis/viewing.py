"""Viewing directions of posed particles: how the projections cover the sphere.

With `coords_3d = coords_2d @ R` a particle's image is the central slice spanned by the first
two rows of R, so it was viewed along the third row, R[2], in the map's frame. The plot shows
those directions as azimuth (atan2(v_y, v_x)) and elevation (asin v_z), binned on an
equal-area grid (uniform in sin(elevation)), as RELION's and cryoSPARC's orientation plots do.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def viewing_directions(rot) -> np.ndarray:
    """Unit viewing directions [N, 3] (x, y, z in the map's frame) of rotations [N, 3, 3]."""
    v = np.asarray(rot, dtype=np.float64)[:, 2, :]
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def direction_histogram(rot, n_azimuth: int = 72, n_elevation: int = 36):
    """Counts [n_elevation, n_azimuth] on an equal-area grid, with the bin edges (azimuth in
    degrees -180..180, sin(elevation) -1..1)."""
    v = viewing_directions(rot)
    az = np.degrees(np.arctan2(v[:, 1], v[:, 0]))
    az_edges = np.linspace(-180.0, 180.0, n_azimuth + 1)
    s_edges = np.linspace(-1.0, 1.0, n_elevation + 1)
    counts, _, _ = np.histogram2d(np.clip(v[:, 2], -1, 1), az, bins=(s_edges, az_edges))
    return counts, az_edges, s_edges


def plot_viewing_directions(path: str | os.PathLike, rot, title: str = "") -> Path:
    """PNG: particles per viewing direction (equal-area bins; a uniform set is flat)."""
    from cryoscape.core.analysis.plots import _figure, _save

    counts, az_edges, s_edges = direction_histogram(rot)
    fig = _figure(6.4, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    elev = np.degrees(np.arcsin(s_edges))
    mesh = ax.pcolormesh(az_edges, elev, counts, cmap="viridis", shading="flat")
    fig.colorbar(mesh, ax=ax, label="particles per bin")
    ax.set_xlabel("azimuth (deg)")
    ax.set_ylabel("elevation (deg)")
    ax.set_xlim(-180, 180)
    ax.set_ylim(-90, 90)
    ax.set_title(title or f"viewing directions ({len(np.asarray(rot))} particles)")
    return _save(fig, path)
