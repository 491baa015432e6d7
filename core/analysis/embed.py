"""Embeddings of the latent space: PCA, UMAP (cached on disk) and t-SNE; zdim 1 as a histogram."""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cryoscape.core.errors import CryoscapeError
from cryoscape.core.io.atomic import atomic_open


@dataclass
class PCAResult:
    """PCA of z: `coords` [N, n] projections, `components` [n, zdim] unit rows (PC1 first),
    `explained_variance` [n] (variance along each PC, ddof=1), `explained_variance_ratio` [n],
    `mean` [zdim]."""

    coords: np.ndarray
    components: np.ndarray
    explained_variance: np.ndarray
    explained_variance_ratio: np.ndarray
    mean: np.ndarray

    def transform(self, z) -> np.ndarray:
        """Project latent vectors [M, zdim] onto the PCs -> [M, n]."""
        return (np.asarray(z, dtype=np.float64) - self.mean) @ self.components.T

    def inverse_transform(self, coords) -> np.ndarray:
        """PC coordinates [M, k<=n] back into z [M, zdim] (missing PCs at 0)."""
        coords = np.atleast_2d(np.asarray(coords, dtype=np.float64))
        return self.mean + coords @ self.components[: coords.shape[1]]


def _as_z(z) -> np.ndarray:
    z = np.asarray(z)
    if z.ndim == 1:
        z = z[:, None]
    if z.ndim != 2 or len(z) < 2:
        raise CryoscapeError(f"latent array must be [N, zdim] with N >= 2, got shape {z.shape}")
    if not np.all(np.isfinite(z)):
        raise CryoscapeError("latent array contains NaN or infinite values")
    return z


def pca(z, n_components: int | None = None) -> PCAResult:
    """Principal components of z (all zdim of them by default), via scikit-learn."""
    from sklearn.decomposition import PCA

    z = _as_z(z).astype(np.float64)
    n = min(z.shape) if n_components is None else min(n_components, *z.shape)
    model = PCA(n_components=n, svd_solver="full").fit(z)
    return PCAResult(coords=model.transform(z), components=model.components_,
                     explained_variance=model.explained_variance_,
                     explained_variance_ratio=model.explained_variance_ratio_,
                     mean=model.mean_)


def latent_histogram(z, bins: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """For zdim 1 (no 2D embedding needed): (counts [bins], edges [bins+1])."""
    z = _as_z(z)
    if z.shape[1] != 1:
        raise CryoscapeError(f"latent_histogram wants zdim 1, got zdim {z.shape[1]}")
    return np.histogram(z[:, 0], bins=bins)


UMAP_MAX_FIT = 25000  # particles UMAP is fitted on; the others are placed by neighbours


def umap_cache_key(z, epoch, n_neighbors: int, min_dist: float, seed: int,
                   max_fit: int | None = UMAP_MAX_FIT) -> str:
    """File name of the cached embedding: epoch, parameters and a digest of z itself."""
    digest = hashlib.sha1(np.ascontiguousarray(z, dtype=np.float32).tobytes()).hexdigest()[:12]
    ep = "final" if epoch is None else f"e{int(epoch)}"
    fit = "" if max_fit is None or len(z) <= max_fit else f".fit{max_fit}"
    return f"umap.{ep}.nn{n_neighbors}.md{min_dist:g}.s{seed}{fit}.{digest}.npy"


def umap_cache_path(z, cache_dir: str | os.PathLike, epoch: int | None = None,
                    n_neighbors: int = 15, min_dist: float = 0.1, seed: int = 0,
                    max_fit: int | None = UMAP_MAX_FIT) -> Path:
    """Where `umap_embedding` with these arguments caches its result (it may not exist)."""
    return Path(cache_dir) / umap_cache_key(_as_z(z), epoch, n_neighbors, min_dist, seed,
                                            max_fit)


def place_by_neighbors(z, z_fit, emb_fit, k: int = 10) -> np.ndarray:
    """Embed points z [M, zdim] at the inverse-distance-weighted mean of the embeddings of
    their k nearest neighbours among the fitted points z_fit (in latent space)."""
    from scipy.spatial import cKDTree

    k = min(k, len(z_fit))
    d, idx = cKDTree(np.asarray(z_fit, np.float64)).query(np.asarray(z, np.float64), k=k)
    d, idx = d.reshape(len(z), k), idx.reshape(len(z), k)
    w = 1.0 / np.maximum(d, 1e-9)
    w /= w.sum(1, keepdims=True)
    return np.einsum("mk,mkj->mj", w, np.asarray(emb_fit, np.float64)[idx]).astype(np.float32)


def umap_embedding(z, *, n_neighbors: int = 15, min_dist: float = 0.1, seed: int = 0,
                   cache_dir: str | os.PathLike | None = None, epoch: int | None = None,
                   max_fit: int | None = UMAP_MAX_FIT,
                   progress: Callable[[str], None] | None = print) -> np.ndarray:
    """2D UMAP of z [N, 2] float32 (umap-learn). For zdim 1 the z themselves come back [N, 1].

    Beyond `max_fit` particles (None: no limit), UMAP is fitted on a seeded random subset of
    that size and every other particle is placed by its nearest fitted neighbours in z
    (`place_by_neighbors`): minutes instead of tens of minutes for 1e5-1e6 particles.
    With `cache_dir`, the result is stored there as .npy (atomic write), keyed by epoch,
    parameters and a digest of z, and later calls with the same key read it back.
    """
    z = _as_z(z)
    if z.shape[1] == 1:
        return z.astype(np.float32)
    path = None
    if cache_dir is not None:
        path = umap_cache_path(z, cache_dir, epoch, n_neighbors, min_dist, seed, max_fit)
        if path.is_file():
            try:
                emb = np.load(path, allow_pickle=False)
                if emb.shape == (len(z), 2):
                    if progress:
                        progress(f"UMAP: using cached embedding {path}")
                    return emb
            except (OSError, ValueError):
                pass  # unreadable cache: recompute and overwrite it
    subset = max_fit is not None and len(z) > max_fit
    fit = (np.sort(np.random.default_rng(seed).choice(len(z), max_fit, replace=False))
           if subset else np.arange(len(z)))
    if progress:
        progress(f"UMAP: embedding {len(z)} points (zdim {z.shape[1]}"
                 + (f", fitted on {max_fit} of them" if subset else "")
                 + "); this can take a few minutes")
    import umap  # slow import (numba); only when needed

    model = umap.UMAP(n_neighbors=min(n_neighbors, len(fit) - 1), min_dist=min_dist,
                      random_state=seed, n_jobs=1 if seed is not None else -1)
    emb_fit = np.asarray(model.fit_transform(z[fit].astype(np.float32)), np.float32)
    if subset:
        emb = place_by_neighbors(z, z[fit], emb_fit)
        emb[fit] = emb_fit
    else:
        emb = emb_fit
    if path is not None:
        try:
            with atomic_open(path, "wb") as f:
                np.save(f, emb, allow_pickle=False)
        except OSError as e:
            if progress:
                progress(f"UMAP: could not cache the embedding in {cache_dir}: {e}")
    return emb


class UmapJob:
    """`umap_embedding` computed in a spawned child process (umap's numba code holds the GIL
    for seconds: a thread would stall its caller's other threads), or at once when cached or
    `background` is False. `ready()` polls, `result()` waits; `close()` ends the child."""

    def __init__(self, z, cache_dir, epoch=None, seed: int = 0, progress: bool = False,
                 background: bool = True):
        self._pool = self._async = self._emb = None
        kwargs = {"cache_dir": cache_dir, "epoch": epoch, "seed": seed,
                  "progress": print if progress else None}
        if not background or umap_cache_path(z, cache_dir, epoch, seed=seed).is_file():
            self._emb = umap_embedding(z, **kwargs)
            return
        import multiprocessing

        self._pool = multiprocessing.get_context("spawn").Pool(1)
        self._async = self._pool.apply_async(umap_embedding, (z,), kwargs)

    def ready(self, wait_s: float = 0.0) -> bool:
        """Whether the embedding is there (waiting up to `wait_s` for it)."""
        if self._emb is None and wait_s > 0:
            self._async.wait(wait_s)
        return self._emb is not None or self._async.ready()

    def result(self) -> np.ndarray:
        if self._emb is None:
            self._emb = self._async.get()
        return self._emb

    def close(self) -> None:
        """End the child: let it exit if its work is done (so that it cleans up after
        itself), else terminate it."""
        if self._pool is not None:
            if self._async.ready():
                self._pool.close()
            else:
                self._pool.terminate()
            self._pool.join()
            self._pool = None


def tsne_embedding(z, *, perplexity: float = 30.0, seed: int = 0,
                   max_iter: int = 1000) -> np.ndarray:
    """2D t-SNE of z [N, 2] float32 (scikit-learn); slow beyond ~20k points."""
    from sklearn.manifold import TSNE

    z = _as_z(z)
    if z.shape[1] == 1:
        return z.astype(np.float32)
    perplexity = min(perplexity, (len(z) - 1) / 3)
    return TSNE(n_components=2, perplexity=perplexity, random_state=seed, init="pca",
                max_iter=max_iter).fit_transform(z.astype(np.float32)).astype(np.float32)


def embed(z, method: str = "pca", **kwargs) -> np.ndarray:
    """[N, 2] embedding by `method` ('pca', 'umap' or 'tsne'); [N, 1] (z itself) for zdim 1."""
    z = _as_z(z)
    if method == "pca":
        return pca(z, 2).coords.astype(np.float32)
    if method == "umap":
        return umap_embedding(z, **kwargs)
    if method == "tsne":
        return tsne_embedding(z, **kwargs)
    raise CryoscapeError(f"unknown embedding {method!r} (choose pca, umap or tsne)")
