"""A background cache of small decoded volumes spread over the embedding.

After a run opens, the decode thread fills the cache while it is otherwise idle: the volumes at
the k-means centres' on-data particles and at the medoid particle of every occupied cell of a
grid over the 2D view (UMAP cannot be inverted, so cells are represented by real particles).
The surface nearest in z is shown the moment the cursor moves or a point is clicked; the exact
decode replaces it when it arrives.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np


def grid_medoids(xy: np.ndarray, grid: int) -> np.ndarray:
    """For each occupied cell of a grid x grid partition of `xy`'s bounding box, the particle
    nearest the cell's mean position."""
    xy = np.asarray(xy, dtype=np.float64)
    lo, span = xy.min(0), np.ptp(xy, axis=0)
    span[span == 0] = 1.0
    cell = np.clip(((xy - lo) / span * grid).astype(np.int64), 0, grid - 1)
    key = cell[:, 0] * grid + cell[:, 1]
    order = np.argsort(key, kind="stable")
    bounds = np.flatnonzero(np.diff(key[order])) + 1
    out = []
    for members in np.split(order, bounds):
        d = ((xy[members] - xy[members].mean(0)) ** 2).sum(1)
        out.append(members[np.argmin(d)])
    return np.asarray(out, dtype=np.int64)


def cache_anchors(xy: np.ndarray, centre_index, grid: int) -> np.ndarray:
    """The particles whose maps are cached: the k-means centres' first, then the grid cells'
    medoids (a third of a second for a million particles: run it in a worker)."""
    anchors = [] if centre_index is None else [int(i) for i in centre_index]
    if len(xy) and grid:
        anchors += grid_medoids(xy, grid).tolist()
    return np.asarray(list(dict.fromkeys(anchors)), dtype=np.int64)


@dataclass
class CacheProgress:
    done: int
    total: int
    generation: int


class DecodeCache:
    """Volumes at a set of anchor particles, decoded at a small box `D` in the background."""

    def __init__(self, D: int = 24, grid: int = 8, chunk: int = 4):
        self.D, self.grid, self.chunk = D, grid, chunk
        self.index = np.zeros(0, np.int64)
        self.z = np.zeros((0, 1), np.float32)
        self.z_source: np.ndarray | None = None        # the latents planned for
        self.volumes: list[np.ndarray | None] = []
        self.meshes: dict[int, tuple[float, object]] = {}   # slot -> (sigma, mesh)
        self.generation = 0
        self._lock = threading.Lock()

    def plan(self, z: np.ndarray, anchors: np.ndarray) -> None:
        """Cache the maps at these particles (see `cache_anchors`); forget the old ones."""
        with self._lock:
            self.index = np.asarray(anchors, dtype=np.int64)
            self.z_source = z
            self.generation += 1
            self.z = np.asarray(z, np.float32)[self.index] if len(self.index) else \
                np.zeros((0, z.shape[1]), np.float32)
            self.volumes = [None] * len(self.index)
            self.meshes = {}

    def jobs(self, decode, mesher=None):
        """Background jobs for the decode thread: `decode(z [M, zdim], D) -> [M, D, D, D]`;
        `mesher(volume) -> (sigma, mesh)` also meshes each map, so a hit shows at once."""
        gen = self.generation
        total = len(self.index)

        def job(emit, is_stale, lo):
            if gen != self.generation:
                return
            vols = decode(self.z[lo:lo + self.chunk], self.D)
            with self._lock:
                if gen != self.generation:
                    return
                for k, v in enumerate(vols):
                    self.volumes[lo + k] = np.asarray(v, np.float32)
            if mesher is not None:
                for k, v in enumerate(vols):
                    self.set_mesh(lo + k, *mesher(v), generation=gen)
            with self._lock:
                done = sum(v is not None for v in self.volumes)
            emit(CacheProgress(done, total, gen))

        return [lambda emit, is_stale, lo=lo: job(emit, is_stale, lo)
                for lo in range(0, total, self.chunk)]

    @property
    def n_ready(self) -> int:
        return sum(v is not None for v in self.volumes)

    def set_mesh(self, slot: int, sigma: float, mesh, generation: int | None = None) -> None:
        with self._lock:
            if generation is None or generation == self.generation:
                self.meshes[slot] = (sigma, mesh)

    def mesh(self, slot: int, sigma: float):
        """The cached mesh of `slot` at level `sigma`, or None."""
        got = self.meshes.get(slot)
        return got[1] if got is not None and got[0] == sigma else None

    def nearest(self, z: np.ndarray):
        """(volume, particle index, distance in z, slot) of the nearest cached volume, or None."""
        with self._lock:
            ready = [k for k, v in enumerate(self.volumes) if v is not None]
            if not ready:
                return None
            d = np.linalg.norm(self.z[ready] - np.asarray(z, np.float32).reshape(1, -1), axis=1)
            k = ready[int(np.argmin(d))]
            return self.volumes[k], int(self.index[k]), float(d.min()), k
