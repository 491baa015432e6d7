"""Sampling the latent space: k-means with on-data medoids, and density on a 2D embedding."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from cryoscape.core.errors import CryoscapeError


@dataclass
class KMeansResult:
    """k-means of z: `labels` [N] in 0..k-1, `centers` [k, zdim] (cluster means),
    `medoids` [k] index of the particle nearest each centre (an on-data point),
    `counts` [k] particles per cluster."""

    labels: np.ndarray
    centers: np.ndarray
    medoids: np.ndarray
    counts: np.ndarray

    @property
    def k(self) -> int:
        return len(self.centers)


def nearest_on_data(z, points) -> np.ndarray:
    """Index of the particle whose z is nearest each of `points` [M, zdim] -> [M] int64."""
    from scipy.spatial import cKDTree

    z = np.asarray(z, dtype=np.float64)
    points = np.atleast_2d(np.asarray(points, dtype=np.float64))
    if z.ndim == 1:
        z = z[:, None]
    if points.shape[1] != z.shape[1]:
        raise CryoscapeError(f"points have dimension {points.shape[1]}, latents {z.shape[1]}")
    return cKDTree(z).query(points)[1].astype(np.int64)


def kmeans(z, k: int = 20, seed: int = 0, n_init: int = 3) -> KMeansResult:
    """k-means clustering of z (scikit-learn, seeded) with the on-data particle of each centre.

    Clusters are ordered by their centre's first principal coordinate, so that labels are
    stable and maps come out in a meaningful order.
    """
    from sklearn.cluster import KMeans

    z = np.asarray(z, dtype=np.float64)
    if z.ndim == 1:
        z = z[:, None]
    if not 1 <= k <= len(z):
        raise CryoscapeError(f"k-means needs 1 <= k <= number of particles ({len(z)}), got {k}")
    model = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(z)
    # centres as the exact means of the final clusters (consistent with the labels)
    counts = np.bincount(model.labels_, minlength=k)
    centers = np.where(counts[:, None] > 0, np.stack(
        [z[model.labels_ == c].mean(0) if counts[c] else model.cluster_centers_[c]
         for c in range(k)]), model.cluster_centers_)
    mean = z.mean(0)
    # order clusters along the leading direction of the centres (deterministic labels)
    if k > 1:
        _, _, vt = np.linalg.svd(centers - mean, full_matrices=False)
        axis = vt[0] * (np.sign(vt[0][np.argmax(np.abs(vt[0]))]) or 1.0)
        order = np.argsort((centers - mean) @ axis, kind="stable")
    else:
        order = np.zeros(1, dtype=np.int64)
    rank = np.empty(k, dtype=np.int64)
    rank[order] = np.arange(k)
    labels = rank[model.labels_]
    centers = centers[order]
    return KMeansResult(labels=labels, centers=centers, medoids=nearest_on_data(z, centers),
                        counts=np.bincount(labels, minlength=k))


@dataclass
class Density2D:
    """Kernel density of a 2D embedding on a regular grid: `x` [gx], `y` [gy] cell centres,
    `density` [gy, gx] (integrates to 1), `bandwidth` (x, y) in embedding units."""

    x: np.ndarray
    y: np.ndarray
    density: np.ndarray
    bandwidth: tuple[float, float]

    def at(self, xy) -> np.ndarray:
        """Density interpolated at points [M, 2] (for colouring a scatter by density)."""
        from scipy.ndimage import map_coordinates

        xy = np.asarray(xy, dtype=np.float64)
        fx = (xy[:, 0] - self.x[0]) / (self.x[1] - self.x[0])
        fy = (xy[:, 1] - self.y[0]) / (self.y[1] - self.y[0])
        return map_coordinates(self.density, [fy, fx], order=1, mode="nearest")


def density_2d(xy, gridsize: int = 128, bandwidth: float | None = None,
               pad: float = 0.1) -> Density2D:
    """Gaussian kernel density estimate of 2D points on a grid (binned KDE, fast for 1e6 pts).

    The points are binned on a `gridsize`^2 grid and smoothed with a Gaussian of Scott's
    bandwidth per axis (or `bandwidth`, in embedding units, for both axes).
    """
    from scipy.ndimage import gaussian_filter

    xy = np.asarray(xy, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) < 2:
        raise CryoscapeError(f"density_2d wants points [N, 2], got shape {xy.shape}")
    n = len(xy)
    std = xy.std(0)
    std[std == 0] = 1.0
    bw = np.full(2, bandwidth, dtype=np.float64) if bandwidth else std * n ** (-1 / 6)
    lo, hi = xy.min(0), xy.max(0)
    span = np.maximum(hi - lo, 1e-12)
    lo, hi = lo - pad * span - 2 * bw, hi + pad * span + 2 * bw
    edges = [np.linspace(lo[i], hi[i], gridsize + 1) for i in range(2)]
    counts, _, _ = np.histogram2d(xy[:, 1], xy[:, 0], bins=[edges[1], edges[0]])
    cell = np.array([edges[0][1] - edges[0][0], edges[1][1] - edges[1][0]])
    dens = gaussian_filter(counts, sigma=(bw[1] / cell[1], bw[0] / cell[0]), mode="constant")
    dens /= dens.sum() * cell[0] * cell[1]
    centres = [(e[:-1] + e[1:]) / 2 for e in edges]
    return Density2D(x=centres[0], y=centres[1], density=dens, bandwidth=(bw[0], bw[1]))
