"""How well a reconstruction recovers a simulated ground truth (the paper's Table 2, CryoBench).

- Per-image accuracy: the map decoded at each of ~100 images' z against that image's true map
  (core.metrics.per_image_fsc: FSC = 0.5 resolution in px, 2 px is Nyquist; area under the FSC).
- Latent recovery, one number per kind of heterogeneity (1 is perfect):
  "linear": |Spearman| between the first principal component of z and the coordinate;
  "2d": R^2 of an affine fit from z to the two coordinates;
  "circular": R^2 of an affine fit from z to (cos, sin) of the angle (a circle in z is an
  ellipse under an affine map, so a faithful circular latent space fits exactly);
  "discrete": adjusted Rand index of k-means of z (k = the number of states) against the states.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from cryoscape.core.analysis.convergence import adjusted_rand, linear_r2
from cryoscape.core.errors import CryoscapeError

RECOVERY_METRIC = {"linear": "|Spearman| PC1", "2d": "linear-fit R^2",
                   "circular": "(cos, sin) fit R^2", "discrete": "k-means ARI"}


def _z2d(z) -> np.ndarray:
    z = np.asarray(z, np.float64)
    return z[:, None] if z.ndim == 1 else z


def first_pc(z) -> np.ndarray:
    """Scores of z [N, k] on its first principal component [N]."""
    z = _z2d(z)
    zc = z - z.mean(0)
    return zc @ np.linalg.svd(zc, full_matrices=False)[2][0]


def abs_spearman(x, y) -> float:
    """|Spearman rank correlation| of two sequences (ties get their average rank)."""
    from scipy.stats import spearmanr
    return float(abs(spearmanr(np.asarray(x).ravel(), np.asarray(y).ravel())[0]))


def kmeans_ari(z, states, seed: int = 0) -> float:
    """Adjusted Rand index of k-means of z (k = number of distinct states) against `states`."""
    from cryoscape.core.analysis.sampling import kmeans
    states = np.asarray(states).ravel()
    labels = kmeans(_z2d(z), k=len(np.unique(states)), seed=seed, n_init=10).labels
    return adjusted_rand(states, labels)


def latent_recovery(kind: str, z, truth: dict) -> float | None:
    """The recovery metric of `kind` (RECOVERY_METRIC) for latents z [N, k] against the
    simulator's truth.npz contents (`coords` [N, c] or `state` [N]); None for a kind with no
    latent truth (homogeneous)."""
    z = _z2d(z)
    if kind not in RECOVERY_METRIC:
        return None
    if kind == "discrete":
        return kmeans_ari(z, truth["state"])
    coords = np.asarray(truth["coords"], np.float64).reshape(len(z), -1)
    if kind == "linear":
        return abs_spearman(first_pc(z), coords[:, 0])
    if kind == "2d":
        return linear_r2(z, coords)
    angle = 2 * np.pi * coords[:, 0]
    return linear_r2(z, np.stack([np.cos(angle), np.sin(angle)], 1))


def eval_indices(n: int, m: int = 100) -> np.ndarray:
    """Up to m image indices spread evenly over range(n)."""
    return np.unique(np.linspace(0, n - 1, min(n, m)).round().astype(np.int64))


def true_map(kind: str, truth: dict, i: int, D: int) -> np.ndarray:
    """Image i's ground-truth volume [D, D, D] of a built-in simulated model."""
    from cryoscape.core.simulate.volumes import make_volume
    states = int(truth.get("states", 10))
    if kind == "discrete":
        return make_volume(kind, int(truth["state"][i]), D, states)
    if kind == "homogeneous":
        return make_volume(kind, None, D)
    return make_volume(kind, np.asarray(truth["coords"])[i], D)


def per_image_accuracy(decode: Callable[[np.ndarray], np.ndarray], kind: str, truth: dict,
                       z, idx, D: int, apix: float = 1.0) -> dict:
    """core.metrics.per_image_fsc of decode(z[i]) against image i's true map for i in idx."""
    from cryoscape.core.metrics import per_image_fsc
    z = _z2d(z)
    if len(idx) == 0:
        raise CryoscapeError("per-image accuracy needs at least one image")
    predicted = (decode(z[i]) for i in idx)
    return per_image_fsc(predicted, (true_map(kind, truth, i, D) for i in idx), apix=apix)
