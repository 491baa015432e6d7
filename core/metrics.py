"""Reconstruction and pose metrics: FSC and resolution, per-image FSC against ground truth,
pose error after optimal global alignment (both hands; in `poseerror`).

FSC follows cryoDRGN's shells exactly (DESIGN.md): on the centered FFT, shell i (1 .. D/2-1)
holds the voxels with i-1 <= r < i (r in voxels from DC), FSC[0] = 1, frequency i/D.
Written here rather than wrapped from torch-fourier-shell-correlation, whose shells are
rfft-based with weighted interpolation between neighbouring bins and do not match cryoDRGN's
hard i-1 <= r < i shells (needed for parity with cryoDRGN's FSC files).
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from cryoscape.core.errors import CryoscapeError
from cryoscape.core.fourier import fft3_center
from cryoscape.core.poseerror import pose_error  # noqa: F401 (re-exported)


def _as_numpy(vol) -> np.ndarray:
    if torch.is_tensor(vol):
        vol = vol.detach().cpu().numpy()
    return np.asarray(vol, dtype=np.float64)


def _shell_index(D: int) -> np.ndarray:
    """Shell number of each voxel of a centered D^3 FFT (0-based: floor(r))."""
    x = np.arange(D) - D // 2
    r2 = x[:, None, None] ** 2 + x[None, :, None] ** 2 + x[None, None, :] ** 2
    return np.floor(np.sqrt(r2)).astype(np.int64)


def fsc(vol1, vol2, mask=None) -> tuple[np.ndarray, np.ndarray]:
    """(freq [D//2] cycles/px, fsc [D//2]) between two cubic volumes, cryoDRGN's shells.

    `mask` (real space, same shape) multiplies both volumes first.
    """
    a, b = _as_numpy(vol1), _as_numpy(vol2)
    if a.shape != b.shape or a.ndim != 3 or len(set(a.shape)) != 1:
        raise CryoscapeError(f"FSC needs two cubic volumes of the same size, got {a.shape} "
                             f"and {b.shape}")
    if mask is not None:
        m = _as_numpy(mask)
        if m.shape != a.shape:
            raise CryoscapeError(f"mask shape {m.shape} differs from the volumes' {a.shape}")
        a, b = a * m, b * m
    D = a.shape[0]
    fa, fb = fft3_center(a), fft3_center(b)
    shell = _shell_index(D).ravel()
    n = D // 2 - 1  # shells 1 .. D/2-1 hold floor(r) = 0 .. D/2-2
    keep = shell < n
    idx = shell[keep]
    fa, fb = fa.ravel()[keep], fb.ravel()[keep]
    cross = np.bincount(idx, (fa * np.conj(fb)).real, minlength=n)
    pa = np.bincount(idx, np.abs(fa) ** 2, minlength=n)
    pb = np.bincount(idx, np.abs(fb) ** 2, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        curve = np.concatenate([[1.0], cross / np.sqrt(pa * pb)])
    return np.arange(D // 2) / D, curve


def resolution(freq, fsc_curve, threshold: float = 0.5, apix: float = 1.0) -> dict:
    """Where an FSC curve falls below `threshold`; frequencies in 1/px, resolutions in A.

    `highest`: cryoDRGN's value, the highest frequency (> 0) with FSC >= threshold.
    `first_crossing`: the cautious one, the last frequency before the curve first drops below
    the threshold (`first_crossing_interp`: linearly interpolated to the threshold).
    Values are None where no shell beyond DC reaches the threshold.
    """
    freq, curve = np.asarray(freq, dtype=float), np.asarray(fsc_curve, dtype=float)
    ok = (freq > 0) & (curve >= threshold)
    highest = float(freq[ok].max()) if ok.any() else None
    below = np.nonzero((freq > 0) & ~(curve >= threshold))[0]
    if len(below) == 0:
        first = interp = float(freq[-1])
    elif below[0] <= 1:
        first = interp = None
    else:
        j = below[0]
        first = float(freq[j - 1])
        c0, c1 = curve[j - 1], curve[j]
        t = (c0 - threshold) / (c0 - c1) if np.isfinite(c1) and c0 != c1 else 0.0
        interp = float(freq[j - 1] + t * (freq[j] - freq[j - 1]))

    def to_a(f):
        return None if f is None else apix / f

    return {"threshold": threshold, "apix": apix, "highest": highest,
            "highest_A": to_a(highest), "first_crossing": first, "first_crossing_A": to_a(first),
            "first_crossing_interp": interp, "first_crossing_interp_A": to_a(interp)}


def fsc_auc(freq, fsc_curve) -> float:
    """Area under an FSC curve over frequency in cycles/px (trapezoid; at most ~0.5)."""
    return float(np.trapezoid(np.nan_to_num(np.asarray(fsc_curve, float)), np.asarray(freq)))


def per_image_fsc(predicted: Iterable, truth: Iterable, mask=None, apix: float = 1.0,
                  threshold: float = 0.5) -> dict:
    """FSC between each image's predicted volume and its ground-truth volume.

    The paper's Table 2 metric (FSC = 0.5 resolution in pixels, mean and standard deviation
    over images; best possible 2 px) and CryoBench's area under the FSC curve. `predicted`
    yields the volume decoded at each image's z, `truth` that image's true volume (iterables
    of [D,D,D] arrays, consumed in step, so generators keep memory bounded). Returns `freq`,
    `curves` [M, D//2], `auc` [M] (cycles/px), `res_px` [M] (1 / the highest frequency with
    FSC >= threshold; D where no shell beyond DC reaches it), `res_A` (res_px x apix) and
    their summaries.
    """
    curves, freq = [], None
    for p, t in zip(predicted, truth, strict=True):
        freq, c = fsc(p, t, mask)
        curves.append(c)
    if not curves:
        raise CryoscapeError("per-image FSC needs at least one pair of volumes")
    curves = np.stack(curves)
    auc = np.array([fsc_auc(freq, c) for c in curves])
    res = np.array([1 / (resolution(freq, c, threshold)["highest"] or freq[1]) for c in curves])
    return {"freq": freq, "curves": curves, "mean_curve": curves.mean(0), "auc": auc,
            "mean_auc": float(auc.mean()), "median_auc": float(np.median(auc)),
            "res_px": res, "mean_res_px": float(res.mean()), "std_res_px": float(res.std()),
            "res_A": res * apix, "mean_res_A": float(res.mean() * apix),
            "median_res_A": float(np.median(res) * apix)}


# --- output --------------------------------------------------------------------------------

def save_fsc(path, freq, fsc_curve) -> None:
    """Write an FSC curve as cryoDRGN does: a `pixres fsc` header, one row per shell."""
    from cryoscape.core.io.atomic import atomic_open
    with atomic_open(path, "w") as f:
        f.write("pixres fsc\n")
        for x, y in zip(freq, fsc_curve):
            f.write(f"{float(x)!r} {float(y)!r}\n")


def format_resolution(freq, fsc_curve, apix: float = 1.0) -> str:
    """Lines reporting the FSC = 0.5 and 0.143 resolutions (cryoDRGN's and first crossing)."""
    lines = []
    for t in (0.5, 0.143):
        r = resolution(freq, fsc_curve, t, apix)
        if r["highest"] is None:
            lines.append(f"FSC={t}: not reached")
            continue
        first = (f"{r['first_crossing_A']:.3g} A" if r["first_crossing"] is not None
                 else "n/a")
        lines.append(f"FSC={t}: {r['highest_A']:.3g} A ({r['highest']:.4g} 1/px); "
                     f"first crossing {first}")
    return "\n".join(lines)


def plot_fsc(path, freq, curves: dict, apix: float = 1.0, title: str | None = None) -> None:
    """PNG of FSC curves {label: fsc} against frequency in 1/A, with 0.5 and 0.143 lines."""
    from cryoscape.core.io.atomic import atomic_path
    from matplotlib.figure import Figure  # no pyplot: renders with Agg, no global backend
    fig = Figure(figsize=(6, 4), dpi=120)
    ax = fig.add_subplot()
    x = np.asarray(freq) / apix
    for label, c in curves.items():
        ax.plot(x, c, label=label)
    for t, style in ((0.5, "--"), (0.143, ":")):
        ax.axhline(t, color="gray", linestyle=style, linewidth=1, label=f"FSC = {t}")
    ax.set_xlabel("spatial frequency (1/Å)")
    ax.set_ylabel("FSC")
    ax.set_ylim(min(-0.2, float(np.nanmin([np.nanmin(c) for c in curves.values()]))), 1.05)
    ax.set_xlim(0, x[-1])
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
