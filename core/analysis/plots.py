"""PNG plots for reports (matplotlib's Agg canvas directly: no GUI backend is touched)."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from cryoscape.core.io.atomic import atomic_path


def _figure(w: float = 5.0, h: float = 4.5):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> Path:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


def plot_scatter(path: str | os.PathLike, xy, title: str = "", labels: Sequence[str] = ("", ""),
                 color=None, marks=None, mark_labels: Sequence[str] | None = None,
                 path_xy=None, cmap: str = "tab20") -> Path:
    """Scatter of a 2D embedding (downsampled display for huge N), optional per-point colour
    (e.g. cluster labels; `cmap` colours them), marked points (e.g. k-means medoids) and a path
    drawn over it."""
    xy = np.asarray(xy)
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    n = len(xy)
    sel = np.random.default_rng(0).permutation(n)[:50000] if n > 50000 else slice(None)
    size = float(np.clip(2e4 / max(n, 1), 0.3, 8))
    if color is None:
        ax.scatter(xy[sel, 0], xy[sel, 1], s=size, alpha=0.4, lw=0, color="0.3")
    else:
        ax.scatter(xy[sel, 0], xy[sel, 1], s=size, alpha=0.6, lw=0,
                   c=np.asarray(color)[sel], cmap=cmap)
    if path_xy is not None:
        p = np.asarray(path_xy)
        ax.plot(p[:, 0], p[:, 1], "-o", color="crimson", ms=3, lw=1.5)
    if marks is not None:
        m = np.asarray(marks)
        ax.scatter(m[:, 0], m[:, 1], s=30, color="k", marker="x")
        for i, (x, y) in enumerate(m):
            ax.annotate(mark_labels[i] if mark_labels else str(i), (x, y), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_title(title)
    return _save(fig, path)


def plot_hexbin(path: str | os.PathLike, xy, title: str = "",
                labels: Sequence[str] = ("", "")) -> Path:
    """Hexagonal-bin density of a 2D embedding (log counts)."""
    xy = np.asarray(xy)
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    hb = ax.hexbin(xy[:, 0], xy[:, 1], gridsize=60, bins="log", cmap="viridis", mincnt=1)
    fig.colorbar(hb, ax=ax, label="particles (log)")
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_title(title)
    return _save(fig, path)


def plot_histogram(path: str | os.PathLike, counts, edges, title: str = "",
                   xlabel: str = "z", vline: float | None = None) -> Path:
    """Histogram (for a 1D latent space); `vline`: a value marked (e.g. a threshold)."""
    fig = _figure(5, 3.5)
    ax = fig.add_subplot(1, 1, 1)
    ax.stairs(counts, edges, fill=True, color="steelblue")
    if vline is not None:
        ax.axvline(vline, color="crimson", ls="--", lw=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("particles")
    ax.set_title(title)
    return _save(fig, path)


def plot_bars(path: str | os.PathLike, values, title: str = "", xlabel: str = "",
              ylabel: str = "") -> Path:
    """Bar chart of values [M] over categories 0..M-1 (e.g. particles per state)."""
    values = np.asarray(values)
    fig = _figure(5, 3.5)
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(np.arange(len(values)), values, color="steelblue")
    ax.set_xticks(np.arange(len(values)))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return _save(fig, path)


def plot_curves(path: str | os.PathLike, x, ys: dict, title: str = "", xlabel: str = "",
                ylabel: str = "", logy: bool = False, hline: float | None = None) -> Path:
    """Line plot of several named curves sharing x (loss curves, convergence measures)."""
    fig = _figure(5.5, 3.8)
    ax = fig.add_subplot(1, 1, 1)
    for name, y in ys.items():
        xs = x if not isinstance(y, tuple) else y[0]
        ax.plot(xs, y if not isinstance(y, tuple) else y[1], "-o", ms=3, label=name)
    if hline is not None:
        ax.axhline(hline, color="0.5", ls="--", lw=0.8)
    if logy:
        ax.set_yscale("log")
    if np.issubdtype(np.asarray(x).dtype, np.integer):
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if len(ys) > 1:
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_map_montage(path: str | os.PathLike, volumes, titles: Sequence[str] | None = None,
                     title: str = "", ncols: int = 10) -> Path:
    """Projections (sums along z) of maps [M, D, D, D] in a grid, to see a series at a
    glance without a 3D viewer."""
    volumes = [np.asarray(v, dtype=np.float32) for v in volumes]
    m = len(volumes)
    ncols = min(ncols, m)
    nrows = -(-m // ncols)
    fig = _figure(1.3 * ncols + 0.2, 1.4 * nrows + 0.4)
    for i, vol in enumerate(volumes):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ax.imshow(vol.sum(0), cmap="gray", origin="lower")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(titles[i] if titles else str(i), fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)
