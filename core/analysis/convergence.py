"""Choosing an epoch: how much the latent space, its clusters and their maps still change.

For every epoch with latents, compared with the last one (and with the previous one):
- drift: Procrustes disparity of the latent vectors after optimal translation, scaling and
  rotation (0 = the same arrangement, 1 = unrelated), and R^2 of a linear (affine) map from
  the epoch's z onto the final z;
- cluster stability: adjusted Rand index of k-means labels (1 = identical clustering);
- maps: the particles nearest the final epoch's k-means centres, decoded with each epoch's
  own decoder, compared by FSC with the final maps (normalised area under the FSC, 1 = same).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from cryoscape.core.errors import CryoscapeError


def procrustes_disparity(z_ref, z) -> float:
    """Disparity (0..1) between two latent sets of the same particles after Procrustes
    alignment (translation, isotropic scaling, orthogonal transform)."""
    from scipy.spatial import procrustes

    a, b = np.asarray(z_ref, np.float64), np.asarray(z, np.float64)
    a, b = (a[:, None] if a.ndim == 1 else a), (b[:, None] if b.ndim == 1 else b)
    if np.allclose(a, a.mean(0)) or np.allclose(b, b.mean(0)):
        return float("nan")
    return float(procrustes(a, b)[2])


def linear_r2(z_src, z_dst) -> float:
    """Fraction of the variance of z_dst explained by an affine map of z_src (1 = exact)."""
    x = np.asarray(z_src, np.float64).reshape(len(z_src), -1)
    y = np.asarray(z_dst, np.float64).reshape(len(z_dst), -1)
    x1 = np.hstack([x, np.ones((len(x), 1))])
    coef, *_ = np.linalg.lstsq(x1, y, rcond=None)
    ss_res = ((y - x1 @ coef) ** 2).sum()
    ss_tot = ((y - y.mean(0)) ** 2).sum()
    return float(1 - ss_res / ss_tot) if ss_tot > 0 else float("nan")


def adjusted_rand(labels_a, labels_b) -> float:
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(labels_a, labels_b))


@dataclass
class ConvergenceResult:
    """Per-epoch measures (lists aligned with `epochs`; NaN where not computable)."""

    epochs: list[int]
    reference_epoch: int
    drift_final: list[float]
    drift_prev: list[float]
    r2_final: list[float]
    ari_final: list[float]
    ari_prev: list[float]
    map_fsc_final: list[float] = field(default_factory=list)
    map_fsc_min: list[float] = field(default_factory=list)
    loss_epochs: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    k: int = 0
    n_particles: int = 0

    def to_json(self, path: str | os.PathLike) -> Path:
        from cryoscape.core.io.atomic import atomic_open

        with atomic_open(path, "w") as f:
            json.dump(asdict(self), f, indent=1, default=float)
        return Path(path)


def _has_z(run, epoch) -> bool:
    try:
        return run.z_path(epoch) is not None if hasattr(run, "z_path") else True
    except CryoscapeError:
        return False


def _norm_auc(freq, curve) -> float:
    from cryoscape.core.metrics import fsc_auc

    return fsc_auc(freq, curve) / float(freq[-1])


def convergence(run, k: int = 10, D: int | None = 32, maps: bool = True, seed: int = 0,
                max_particles: int = 20000, epochs=None, progress: bool = True
                ) -> ConvergenceResult:
    """Compare every epoch of `run` (or the given `epochs`) with its last one."""
    from cryoscape.core.analysis.report import loss_curve
    from cryoscape.core.analysis.sampling import kmeans, nearest_on_data
    from cryoscape.core.metrics import fsc
    from tqdm import tqdm

    epochs = [e for e in sorted(run.epochs if epochs is None else epochs) if _has_z(run, e)]
    if len(epochs) < 2:
        raise CryoscapeError(f"{run.path}: convergence needs at least two epochs with latents "
                             f"(found {len(epochs)})")
    ref_epoch = epochs[-1]
    z_ref = np.asarray(run.latents(ref_epoch), np.float32)
    n = len(z_ref)
    sub = (np.sort(np.random.default_rng(seed).choice(n, max_particles, replace=False))
           if n > max_particles else np.arange(n))
    k = min(k, len(sub))
    zs = {e: (z_ref if e == ref_epoch else np.asarray(run.latents(e), np.float32))[sub]
          for e in epochs}
    fits = {e: kmeans(zs[e], k=k, seed=seed) for e in
            (tqdm(epochs, desc="k-means per epoch") if progress else epochs)}
    labels = {e: fit.labels for e, fit in fits.items()}
    res = ConvergenceResult(epochs=epochs, reference_epoch=ref_epoch, drift_final=[],
                            drift_prev=[], r2_final=[], ari_final=[], ari_prev=[], k=k,
                            n_particles=len(sub))
    for i, e in enumerate(epochs):
        prev = epochs[i - 1] if i else None
        res.drift_final.append(procrustes_disparity(zs[ref_epoch], zs[e]))
        res.r2_final.append(linear_r2(zs[e], zs[ref_epoch]))
        res.ari_final.append(adjusted_rand(labels[ref_epoch], labels[e]))
        res.drift_prev.append(procrustes_disparity(zs[prev], zs[e]) if prev else float("nan"))
        res.ari_prev.append(adjusted_rand(labels[prev], labels[e]) if prev else float("nan"))
    if maps:
        pos = nearest_on_data(zs[ref_epoch], fits[ref_epoch].centers)   # into the subset
        ref_maps = run.decode(zs[ref_epoch][pos], D=D, epoch=ref_epoch)
        for e in (tqdm(epochs, desc="maps per epoch", unit="epoch") if progress else epochs):
            try:
                vols = ref_maps if e == ref_epoch else run.decode(zs[e][pos], D=D, epoch=e)
            except CryoscapeError:  # no decoder saved for this epoch
                res.map_fsc_final.append(float("nan"))
                res.map_fsc_min.append(float("nan"))
                continue
            aucs = [_norm_auc(*fsc(a, b)) for a, b in zip(vols, ref_maps)]
            res.map_fsc_final.append(float(np.mean(aucs)))
            res.map_fsc_min.append(float(np.min(aucs)))
    curve = loss_curve(run.metrics())
    if curve is not None:
        res.loss_epochs = [int(x) for x in curve[0]]
        res.loss = [float(x) for x in curve[1]["loss"]]
    return res


def plot_convergence(res: ConvergenceResult, outdir: str | os.PathLike) -> list[Path]:
    """PNG plots of a ConvergenceResult: drift, cluster stability, map agreement, loss."""
    from cryoscape.core.analysis.plots import plot_curves
    from cryoscape.core.export import make_outdir

    out = make_outdir(outdir)
    ep = res.epochs
    ref = f"epoch {res.reference_epoch}"
    files = [
        plot_curves(out / "convergence_drift.png", ep,
                    {f"Procrustes disparity vs {ref}": res.drift_final,
                     "Procrustes disparity vs previous epoch": res.drift_prev,
                     f"1 - R^2 (linear map onto {ref})": [1 - r for r in res.r2_final]},
                    "latent-space drift", "epoch", "disparity (0 = same)"),
        plot_curves(out / "convergence_clusters.png", ep,
                    {f"ARI vs {ref}": res.ari_final, "ARI vs previous epoch": res.ari_prev},
                    f"k-means stability (k = {res.k})", "epoch", "adjusted Rand index",
                    hline=1.0),
    ]
    if res.map_fsc_final:
        files.append(plot_curves(
            out / "convergence_maps.png", ep,
            {"mean over centres": res.map_fsc_final, "worst centre": res.map_fsc_min},
            f"maps at the final k-means centres vs {ref}", "epoch",
            "FSC area (1 = identical)", hline=1.0))
    if res.loss:
        files.append(plot_curves(out / "loss.png", res.loss_epochs, {"loss": res.loss},
                                 "training loss", "epoch", "loss",
                                 logy=all(v > 0 for v in res.loss)))
    return files
