"""cryoSPARC .cs files: numpy structured arrays (`.npy` format, read without pickle).

Fields: `blob/path`, `blob/idx` (0-based), `blob/shape`, `blob/psize_A`, `blob/sign`,
`alignments3D/pose` (axis-angle, rad), `alignments3D/shift` (px at `alignments3D/psize_A`),
`ctf/*` (defocus in A, angles in rad). Exports often split the fields between the particle file
and a `*_passthrough_particles.cs`; `read_cs` joins them by `uid`.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from cryoscape.core.errors import InputFileError
from cryoscape.core.io.atomic import atomic_open
from cryoscape.core.io.cryodrgn import as_index
from cryoscape.core.poses import shifts_from_origin, shifts_to_origin
from cryoscape.core.rotations import cryosparc_pose_to_matrix, matrix_to_cryosparc_pose

CTF_FIELDS = ("ctf/df1_A", "ctf/df2_A", "ctf/df_angle_rad", "ctf/accel_kv", "ctf/cs_mm",
              "ctf/amp_contrast", "ctf/phase_shift_rad")
ALIGN_PREFIXES = ("alignments3D", "alignments_class_0")


def _load(path) -> np.ndarray:
    if not os.path.isfile(path):
        raise InputFileError(path, "file not found")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise InputFileError(path, f"not a readable cryoSPARC .cs file ({e})") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.names is None:
        raise InputFileError(path, "not a cryoSPARC .cs file (no structured fields)")
    return arr


def find_passthrough(path: str | os.PathLike) -> Path | None:
    """The one `*passthrough_particles*.cs` beside a cryoSPARC particle file (of the same job
    where its name says which), if exactly one."""
    path = Path(path)
    found = sorted(p for p in path.parent.glob("*passthrough_particles*.cs") if p != path)
    job = next((part for part in path.stem.split("_") if part[:1] == "J" and part[1:].isdigit()),
               None)
    if job is not None:
        same_job = [p for p in found if p.name.startswith(job + "_") or f"_{job}_" in p.name]
        found = same_job or found
    return found[0] if len(found) == 1 else None


def rows_by_uid(table: np.ndarray, uids: np.ndarray, path, problem: str) -> np.ndarray:
    """The row of `table` holding each of `uids`; InputFileError(path, problem) if one is
    missing."""
    if len(table) == 0:
        raise InputFileError(path, problem)
    order = np.argsort(table["uid"], kind="stable")
    rows = order[np.clip(np.searchsorted(table["uid"], uids, sorter=order), 0, len(table) - 1)]
    if not np.array_equal(table["uid"][rows], uids):
        raise InputFileError(path, problem)
    return rows


def join_passthrough(arr: np.ndarray, extra: np.ndarray, path="<cs>") -> np.ndarray:
    """Add to `arr` the fields of `extra` it lacks, matching rows by `uid`."""
    if "uid" not in (arr.dtype.names or ()) or "uid" not in (extra.dtype.names or ()):
        raise InputFileError(path, "cannot join the passthrough file: no uid field")
    new = [n for n in extra.dtype.names if n not in arr.dtype.names]
    rows = rows_by_uid(extra, arr["uid"], path, "the passthrough file lacks some particles' uid")
    dtype = np.dtype(arr.dtype.descr + [d for d in extra.dtype.descr if d[0] in new])
    out = np.empty(len(arr), dtype=dtype)
    for n in arr.dtype.names:
        out[n] = arr[n]
    for n in new:
        out[n] = extra[n][rows]
    return out


def read_cs(path: str | os.PathLike, passthrough: str | os.PathLike | bool | None = None
            ) -> np.ndarray:
    """Read a .cs file. `passthrough`: a file to join by uid; None = look for the job's
    `*_passthrough_particles.cs` beside it when blob or CTF fields are missing; False = never."""
    path = Path(path)
    arr = _load(path)
    names = set(arr.dtype.names)
    if passthrough is None and not ({"blob/path", "ctf/df1_A"} <= names):
        passthrough = find_passthrough(path)
    if passthrough:
        arr = join_passthrough(arr, _load(passthrough), passthrough)
    return arr


def write_cs(path: str | os.PathLike, arr: np.ndarray) -> None:
    """Write a structured array as a .cs file (what cryoSPARC reads), atomically."""
    with atomic_open(path, "wb") as f:
        np.save(f, np.ascontiguousarray(arr), allow_pickle=False)


def subset_cs(arr: np.ndarray, ind) -> np.ndarray:
    """Rows at `ind`, with every field."""
    return arr[as_index(ind)]


def _has(arr, *fields) -> bool:
    return all(f in (arr.dtype.names or ()) for f in fields)


def cs_box(arr: np.ndarray) -> np.ndarray | None:
    return arr["blob/shape"][:, 0].astype(np.int64) if _has(arr, "blob/shape") else None


def cs_poses(arr: np.ndarray, D: int | None = None, path="<cs>"
             ) -> tuple[np.ndarray, np.ndarray]:
    """(R [N,3,3], shifts [N,2] px of the blob). Shifts measured at another pixel size
    (alignments3D/psize_A != blob/psize_A) are rescaled; if D differs from the blob's box,
    shifts are scaled to a box of D."""
    prefix = next((p for p in ALIGN_PREFIXES if _has(arr, f"{p}/pose")), None)
    if prefix is None:
        raise InputFileError(path, "no poses: the file has no alignments3D/pose field "
                                   "(use the particles file of a refinement job)")
    R = cryosparc_pose_to_matrix(arr[f"{prefix}/pose"])
    shift = (arr[f"{prefix}/shift"].astype(np.float64) if _has(arr, f"{prefix}/shift")
             else np.zeros((len(arr), 2)))
    if _has(arr, f"{prefix}/psize_A", "blob/psize_A"):
        a, b = arr[f"{prefix}/psize_A"].astype(np.float64), arr["blob/psize_A"].astype(np.float64)
        ok = (a > 0) & (b > 0)
        shift[ok] *= (a[ok] / b[ok])[:, None]
    box = cs_box(arr)
    if D is not None and box is not None:
        shift *= D / box[:, None]
    return R, shifts_from_origin(shift).astype(np.float32)


def set_cs_poses(arr: np.ndarray, rotations, shifts=None) -> np.ndarray:
    """A copy with alignments3D/pose (and shift, in px of the blob) replaced; fields are
    added if the file has none."""
    add = [(f, t, s) for f, t, s in [("alignments3D/pose", "<f4", (3,)),
                                     ("alignments3D/shift", "<f4", (2,))]
           if not _has(arr, f)]
    out = np.empty(len(arr), dtype=np.dtype(arr.dtype.descr + add)) if add else arr.copy()
    if add:
        for n in arr.dtype.names:
            out[n] = arr[n]
        for f, _, _ in add:
            out[f] = 0
    out["alignments3D/pose"] = matrix_to_cryosparc_pose(rotations)
    if shifts is not None:
        shift = shifts_to_origin(shifts).astype(np.float64)
        if _has(out, "alignments3D/psize_A", "blob/psize_A"):
            a, b = out["alignments3D/psize_A"].astype(np.float64), out["blob/psize_A"]
            ok = (a > 0) & (b > 0)
            shift[ok] *= (b[ok] / a[ok])[:, None]
        out["alignments3D/shift"] = shift
    return out


def cs_ctf(arr: np.ndarray, D: int | None = None, apix: float | None = None, path="<cs>"
           ) -> np.ndarray:
    """cryoDRGN CTF parameters [N, 9] (defocus angle and phase shift in degrees)."""
    missing = [f for f in CTF_FIELDS if not _has(arr, f)]
    if missing:
        raise InputFileError(path, f"missing CTF field(s) {', '.join(missing)}")
    out = np.zeros((len(arr), 9), dtype=np.float64)
    box = cs_box(arr)
    if box is None and D is None:
        raise InputFileError(path, "box size unknown (no blob/shape): give -D")
    if not _has(arr, "blob/psize_A") and apix is None:
        raise InputFileError(path, "pixel size unknown (no blob/psize_A): give --apix")
    out[:, 0] = box if box is not None else D
    out[:, 1] = arr["blob/psize_A"] if _has(arr, "blob/psize_A") else apix
    for j, f in enumerate(CTF_FIELDS, start=2):
        out[:, j] = arr[f]
    out[:, [4, 8]] = np.degrees(out[:, [4, 8]])
    return out.astype(np.float32)


def cs_image_names(arr: np.ndarray, path="<cs>") -> tuple[list[str], np.ndarray, np.ndarray]:
    """(unique blob paths, path index per particle, 0-based image index per particle)."""
    if not _has(arr, "blob/path", "blob/idx"):
        raise InputFileError(path, "no blob/path and blob/idx fields: the file names no images "
                                   "(is a *_passthrough_particles.cs missing?)")
    paths = arr["blob/path"]
    uniques, codes = np.unique(paths, return_inverse=True)
    names = [p.decode() if isinstance(p, bytes) else str(p) for p in uniques]
    return names, codes.reshape(-1).astype(np.int64), arr["blob/idx"].astype(np.int64)
