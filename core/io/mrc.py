"""MRC maps and MRCS image stacks (via `mrcfile`): read (in memory or memory-mapped), write
atomically with the voxel size in the header and origin 0.

Images are `[N, D, D]` and volumes `[D, D, D]` indexed `[z, y, x]`, as the file stores them.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass

import mrcfile
import numpy as np
from cryoscape.core.errors import InputFileError
from cryoscape.core.io.atomic import atomic_path


@dataclass
class MrcHeader:
    """What an MRC header says: `shape` as the data reads ([N, ny, nx] for stacks)."""
    shape: tuple
    apix: float
    dtype: np.dtype
    is_stack: bool
    origin: tuple
    data_offset: int = 1024  # bytes before the data: the header and its extended header


def _apix(mrc) -> float:
    """Voxel size in A (x); 1.0 where the header leaves it unset (0)."""
    v = float(mrc.voxel_size.x)
    return v if v > 0 else 1.0


def _open(path, opener, **kw):
    """Open permissively (old writers omit the 'MAP ' ID and machine stamp); the sizes are
    checked by read_mrc_header instead."""
    if not os.path.isfile(path):
        raise InputFileError(path, "file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return opener(path, mode="r", permissive=True, **kw)
    except (ValueError, OSError, EOFError) as e:
        msg = str(e)
        if "mmap length" in msg or "Expected" in msg or "enough bytes" in msg:
            msg = f"truncated or damaged MRC file ({msg})"
        else:
            msg = f"not a readable MRC file ({msg})"
        raise InputFileError(path, msg) from None


def read_mrc_header(path: str | os.PathLike) -> MrcHeader:
    """Header only; checks that the file is long enough for the data it declares."""
    if os.path.isfile(path) and os.path.getsize(path) < 1024:
        raise InputFileError(path, f"truncated MRC file: {os.path.getsize(path)} bytes, "
                                   "shorter than the 1024-byte header")
    with _open(path, mrcfile.open, header_only=True) as m:
        h = m.header
        try:
            dtype = mrcfile.utils.data_dtype_from_header(h)
            shape = tuple(int(s) for s in mrcfile.utils.data_shape_from_header(h))
        except ValueError as e:
            raise InputFileError(path, f"not a readable MRC file ({e})") from None
        if min(int(h.nx), int(h.ny), int(h.nz)) < 1 or int(h.nsymbt) < 0:
            raise InputFileError(path, "not a readable MRC file (bad dimensions in header)")
        ext = int(h.nsymbt)
        origin = (float(h.origin.x), float(h.origin.y), float(h.origin.z))
        is_stack = (int(h.ispg) == 0 and len(shape) == 3) or len(shape) == 2 \
            or str(path).endswith(".mrcs")
        apix = _apix(m)
    need = 1024 + ext + int(np.prod(shape)) * dtype.itemsize
    if os.path.getsize(path) < need:
        raise InputFileError(path, f"truncated MRC file: header declares {need} bytes, "
                                   f"file has {os.path.getsize(path)}")
    return MrcHeader(shape, apix, dtype, is_stack, origin, 1024 + ext)


def read_mrc(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """(data as float32, apix). Image stacks bigger than memory: `core.io.stack`."""
    read_mrc_header(path)  # a clear error for damaged or truncated files
    with _open(path, mrcfile.open) as m:
        return np.array(m.data, dtype=np.float32), _apix(m)  # writable, native byte order


def _set_header(m, apix: float, is_stack: bool, origin=(0.0, 0.0, 0.0)) -> None:
    if is_stack:
        m.set_image_stack()
    else:
        m.set_volume()
    m.voxel_size = float(apix)
    m.header.origin = tuple(float(o) for o in origin)
    m.update_header_stats()


def write_mrc(path: str | os.PathLike, array, apix: float = 1.0,
              is_stack: bool | None = None, origin=(0.0, 0.0, 0.0)) -> None:
    """Write a float32 volume [D,D,D] or image stack [N,D,D] atomically with its voxel size.

    `is_stack` defaults to True for `.mrcs` paths and 2D arrays; `origin` (x, y, z) in A: 0
    for maps cryoscape makes, an input's own where a map is rewritten.
    """
    a = np.asarray(array, dtype=np.float32)
    if is_stack is None:
        is_stack = str(path).endswith(".mrcs") or a.ndim == 2
    if a.ndim == 2:
        a = a[None]
    with atomic_path(path) as tmp, mrcfile.new(tmp, overwrite=True) as m:
        m.set_data(np.ascontiguousarray(a))
        _set_header(m, apix, is_stack, origin)


@contextlib.contextmanager
def new_mrc_stack(path: str | os.PathLike, shape: tuple, apix: float = 1.0):
    """Yield a writable float32 memory map [N, ny, nx] of a new stack; on success it is
    finalised (header stats, voxel size) and renamed to `path`, otherwise removed.
    For stacks larger than memory."""
    shape = tuple(int(s) for s in shape)
    with (atomic_path(path) as tmp,
          mrcfile.new_mmap(tmp, shape=shape, mrc_mode=2, overwrite=True) as m):
        yield m.data
        m.set_image_stack()
        m.voxel_size = float(apix)
        m.header.origin = (0.0, 0.0, 0.0)
        _chunked_stats(m)


def _chunked_stats(m, chunk: int = 1024) -> None:
    """Header min/max/mean/rms in bounded memory (mrcfile's own makes full-size temporaries)."""
    data = m.data
    n = len(data)
    lo, hi, s1, s2, count = np.inf, -np.inf, 0.0, 0.0, 0
    for i in range(0, n, chunk):
        c = np.asarray(data[i:i + chunk], dtype=np.float64)
        lo, hi = min(lo, c.min()), max(hi, c.max())
        s1, s2, count = s1 + c.sum(), s2 + (c * c).sum(), count + c.size
    if count == 0:
        return
    mean = s1 / count
    m.header.dmin, m.header.dmax, m.header.dmean = lo, hi, mean
    m.header.rms = np.sqrt(max(s2 / count - mean * mean, 0.0))
