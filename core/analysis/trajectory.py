"""Paths through the latent space: straight lines, PC traversals and kNN-graph shortest paths.

Every path is a polyline in z; `resample_path` samples it into N points equally spaced by
arc length, which are then decoded into a volume series.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
from cryoscape.core.errors import CryoscapeError


def _z2d(z) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    return z[:, None] if z.ndim == 1 else z


def straight_line(z0, z1, n: int = 10) -> np.ndarray:
    """n points [n, zdim] from z0 to z1 inclusive, equally spaced."""
    z0, z1 = np.asarray(z0, dtype=np.float64).ravel(), np.asarray(z1, dtype=np.float64).ravel()
    if z0.shape != z1.shape:
        raise CryoscapeError(f"end points differ in dimension: {z0.shape} vs {z1.shape}")
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) * z0 + t * z1


def pc_traversal(z, pc: int = 1, n: int = 10, lo: float = 5.0, hi: float = 95.0,
                 pca_result=None) -> tuple[np.ndarray, np.ndarray]:
    """Points along principal component `pc` (1-based) from its `lo` to `hi` percentile of the
    data, the other PCs at the mean. Returns (z [n, zdim], PC coordinate [n])."""
    from cryoscape.core.analysis.embed import pca

    z = _z2d(z)
    res = pca_result if pca_result is not None else pca(z)
    if not 1 <= pc <= len(res.components):
        raise CryoscapeError(f"PC{pc} does not exist (the latent space has "
                             f"{len(res.components)} principal components)")
    proj = res.coords[:, pc - 1] if pca_result is None else res.transform(z)[:, pc - 1]
    values = np.linspace(np.percentile(proj, lo), np.percentile(proj, hi), n)
    return res.mean + values[:, None] * res.components[pc - 1], values


def knn_graph(z, k: int = 10):
    """Symmetric k-nearest-neighbour graph of z (scipy CSR, Euclidean edge lengths)."""
    from scipy.sparse import csr_matrix
    from scipy.spatial import cKDTree

    z = _z2d(z)
    k = min(k, len(z) - 1)
    if k < 1:
        raise CryoscapeError("a kNN graph needs at least 2 particles")
    dist, idx = cKDTree(z).query(z, k=k + 1)
    rows = np.repeat(np.arange(len(z)), k)
    d = np.maximum(dist[:, 1:].ravel(), 1e-12)  # duplicates stay connected
    g = csr_matrix((d, (rows, idx[:, 1:].ravel())), shape=(len(z), len(z)))
    return g.maximum(g.T).tocsr()


def graph_path(z, anchors: Sequence[int], k: int = 10, graph=None) -> np.ndarray:
    """Shortest path through the data between consecutive anchor particles on the kNN graph.

    Returns the particle indices visited [m], starting at anchors[0] and ending at anchors[-1];
    the path hops only between neighbouring particles, so it stays where the data are.
    """
    from scipy.sparse.csgraph import dijkstra

    z = _z2d(z)
    anchors = [int(a) for a in anchors]
    if len(anchors) < 2:
        raise CryoscapeError("a path needs at least two particles")
    bad = [a for a in anchors if not 0 <= a < len(z)]
    if bad:
        raise CryoscapeError(f"particle index out of range 0..{len(z) - 1}: {bad}")
    g = knn_graph(z, k) if graph is None else graph
    path = [anchors[0]]
    for a, b in itertools.pairwise(anchors):
        _, pred = dijkstra(g, indices=a, return_predecessors=True)
        if a != b and pred[b] < 0:
            raise CryoscapeError(f"particles {a} and {b} are not connected in the {k}-nearest-"
                                 "neighbour graph; use a larger k or a straight line")
        seg = [b]
        while seg[-1] != a:
            seg.append(int(pred[seg[-1]]))
        path.extend(reversed(seg[:-1]))
    return np.asarray(path, dtype=np.int64)


def resample_path(points, n: int) -> np.ndarray:
    """Sample a polyline [m, zdim] into n points [n, zdim] equally spaced by arc length."""
    p = _z2d(points)
    if n < 1:
        raise CryoscapeError("a path needs n >= 1 points")
    if len(p) == 1:
        return np.repeat(p, n, axis=0)
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=1))])
    if s[-1] == 0:
        return np.repeat(p[:1], n, axis=0)
    t = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(t, s, p[:, j]) for j in range(p.shape[1])], axis=1)


def path_through(z, anchors: Sequence[int], n: int = 10, graph: bool = False,
                 k: int = 10, knn=None) -> np.ndarray:
    """n points [n, zdim] along a path visiting the anchor particles in order: straight
    segments between their z, or (graph=True) the kNN-graph shortest path through the data
    (`knn`: a `knn_graph(z, k)` built before, to reuse)."""
    z = _z2d(z)
    if graph:
        return resample_path(z[graph_path(z, anchors, k=k, graph=knn)], n)
    anchors = list(anchors)
    if len(anchors) < 2:
        raise CryoscapeError("a path needs at least two particles")
    if any(not 0 <= int(a) < len(z) for a in anchors):
        raise CryoscapeError(f"particle index out of range 0..{len(z) - 1}: {anchors}")
    return resample_path(z[np.asarray(anchors, dtype=np.int64)], n)
