"""cryoDRGN pickles: poses `(R [N,3,3], trans [N,2] as a fraction of the box)` or `R` alone,
CTF `[N, 9]` (`D, apix, dfU, dfV, dfAng, kV, Cs, w, phase`), index arrays; and the per-epoch
losses of a training's run.log.

Inside cryoscape translations are `shifts` in pixels (see `cryoscape.core.poses`).
"""
from __future__ import annotations

import os
import re

import numpy as np
from cryoscape.core.errors import InputFileError
from cryoscape.core.io.pickles import load_pickle, save_pickle
from cryoscape.core.poses import shifts_from_cryodrgn, shifts_to_cryodrgn


def _rotations(R, path) -> np.ndarray:
    R = np.asarray(R)
    if R.ndim != 3 or R.shape[1:] != (3, 3) or not np.issubdtype(R.dtype, np.number):
        raise InputFileError(path, f"expected rotation matrices N x 3 x 3, found shape {R.shape}")
    err = np.abs(R @ R.transpose(0, 2, 1) - np.eye(3)).max(axis=(1, 2))
    bad = ~np.isfinite(err) | (err > 1e-2)  # NaN/inf, or not a rotation at all
    if bad.any():
        raise InputFileError(path, f"pose {int(np.argmax(bad))} (0-based) is not a rotation "
                                   "matrix (R R^T differs from the identity or is not finite)")
    return np.ascontiguousarray(R, dtype=np.float32)


def load_poses(path: str | os.PathLike, D: int | None = None
               ) -> tuple[np.ndarray, np.ndarray | None]:
    """(R [N,3,3] float32, shifts [N,2] px or None). D (box size in pixels) is needed to turn
    cryoDRGN's fractional translations into pixels."""
    obj = load_pickle(path)
    if isinstance(obj, (tuple, list)):
        if len(obj) != 2:
            raise InputFileError(path, f"expected (rotations, translations), found {len(obj)} items")
        R, trans = _rotations(obj[0], path), np.asarray(obj[1])
        if trans.shape != (len(R), 2):
            raise InputFileError(path, f"translations have shape {trans.shape}, "
                                       f"expected ({len(R)}, 2)")
        if not np.issubdtype(trans.dtype, np.number) or not np.isfinite(trans).all():
            raise InputFileError(path, "translations are not all finite numbers")
        if D is None:
            raise InputFileError(path, "holds translations as a fraction of the box: "
                                       "the box size D is needed to read them")
        return R, shifts_from_cryodrgn(trans, D)
    return _rotations(obj, path), None


def save_poses(path: str | os.PathLike, R, shifts=None, D: int | None = None) -> None:
    """Write cryoDRGN poses: `(R, trans)` if shifts are given (then D is required), else R."""
    R = np.asarray(R, dtype=np.float32)
    if shifts is None:
        save_pickle(path, R)
        return
    if D is None:
        raise ValueError("save_poses: D is needed to write translations")
    save_pickle(path, (R, shifts_to_cryodrgn(shifts, D)))


def load_ctf(path: str | os.PathLike) -> np.ndarray:
    """CTF parameters [N, 9] float32; finite, with positive box, pixel size and voltage."""
    p = np.asarray(load_pickle(path))
    if p.ndim != 2 or p.shape[1] != 9 or not np.issubdtype(p.dtype, np.number):
        raise InputFileError(path, f"expected CTF parameters N x 9, found shape {p.shape}")
    bad = ~np.isfinite(p).all(axis=1) | (p[:, [0, 1, 5]] <= 0).any(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise InputFileError(path, f"CTF parameters of particle {i} (0-based) are not usable: "
                                   f"box {p[i, 0]:g}, pixel size {p[i, 1]:g}, {p[i, 5]:g} kV "
                                   "(these must be positive) and every value finite")
    return p.astype(np.float32)


def save_ctf(path: str | os.PathLike, params) -> None:
    p = np.asarray(params, dtype=np.float32)
    if p.ndim != 2 or p.shape[1] != 9:
        raise ValueError(f"save_ctf: expected N x 9, got {p.shape}")
    save_pickle(path, p)


def load_index(path: str | os.PathLike) -> np.ndarray:
    """A 1D integer index array (a cryoDRGN `--ind` pickle) of distinct particles.

    Duplicates are refused: a particle listed twice would count twice (in training, in a
    reconstruction, in an exported subset), which an index is never meant to do."""
    ind = np.asarray(load_pickle(path))
    if ind.ndim != 1 or not (np.issubdtype(ind.dtype, np.integer) or ind.size == 0):
        raise InputFileError(path, f"expected a 1D array of integer indices, found "
                                   f"{ind.dtype} with shape {ind.shape}")
    if ind.size and ind.min() < 0:
        raise InputFileError(path, "index array holds negative indices")
    values, counts = np.unique(ind, return_counts=True)
    if (counts > 1).any():
        k = int(np.argmax(counts > 1))
        raise InputFileError(path, f"index lists {int((counts > 1).sum())} particle(s) more "
                                   f"than once (particle {values[k]} {counts[k]} times); each "
                                   "would count more than once: remove the duplicates")
    return ind.astype(np.int64)


def as_index(ind) -> np.ndarray:
    """Integer positions from an index array, a boolean mask or an index pickle's path."""
    if isinstance(ind, (str, os.PathLike)):
        return load_index(ind)
    ind = np.asarray(ind)
    return np.nonzero(ind)[0] if ind.dtype == bool else ind.astype(np.int64)


def save_index(path: str | os.PathLike, ind) -> None:
    save_pickle(path, np.asarray(ind, dtype=np.int64))


_NUMBER = r"([-+\d.eE]+|nan|inf)"
_EPOCH_LINE = re.compile(
    rf"=====> Epoch: (\d+) Average (?:gen )?loss = {_NUMBER}"
    rf"(?:, KLD = {_NUMBER}, total loss = {_NUMBER})?"
    r"(?:.*?Finished in (?:(\d+) days?, )?(\d+):(\d+):([\d.]+))?")


def read_training_log(path: str | os.PathLike) -> list[dict]:
    """The epochs' losses in a cryoDRGN run.log (`# =====> Epoch: N Average gen loss = ...,
    KLD = ..., total loss = ...; Finished in H:MM:SS`) as rows like cryoscape's
    metrics.jsonl: epoch, loss (the total), mse (cryoDRGN's "gen loss"), kl, time (s). A
    homogeneous run's lines (`Average loss = ...`) give epoch and loss; [] without a log."""
    try:
        with open(path, errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
        return []
    rows = []
    for m in _EPOCH_LINE.finditer(text):
        epoch, gen, kld, total, days, h, mins, secs = m.groups()
        row = {"epoch": int(epoch), "loss": float(total if total is not None else gen)}
        if kld is not None:
            row.update(mse=float(gen), kl=float(kld))
        if h is not None:
            row["time"] = (int(days or 0) * 24 + int(h)) * 3600 + int(mins) * 60 + float(secs)
        rows.append(row)
    return rows
