"""Small file utilities of the command line: flip the hand or invert the contrast of an MRC
map or image stack, set the pixel size of an MRC file or a .star, draw random particle subsets.

Maps and stacks are rewritten as float32 with the input's voxel size (and a map's origin);
stacks are streamed in chunks, so they may exceed memory. Every output is written atomically.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from cryoscape.core.errors import CryoscapeError, InputFileError
from cryoscape.core.io.atomic import atomic_path
from cryoscape.core.io.mrc import MrcHeader, read_mrc_header

MRC_SUFFIXES = (".mrc", ".mrcs", ".map", ".st")


def is_stack(path: str | os.PathLike, header: MrcHeader) -> bool:
    """An image stack rather than a 3D map: named .mrcs, 2D, or marked as a stack in the
    header and not a cube (some writers leave a map's space group 0, the stacks' value)."""
    if str(path).lower().endswith(".mrcs") or len(header.shape) == 2:
        return True
    return header.is_stack and len(set(header.shape)) > 1


def read_map_header(path: str | os.PathLike) -> MrcHeader:
    """The header of a 3D map; an image stack is refused."""
    h = read_mrc_header(path)
    if is_stack(path, h):
        n = h.shape[0] if len(h.shape) == 3 else 1
        raise InputFileError(path, f"is an image stack ({n} images), not a 3D map")
    return h


def rewrite_map(src: str | os.PathLike, out: str | os.PathLike, fn) -> MrcHeader:
    """Write fn(map) of the 3D map `src` to `out`, voxel size and origin kept."""
    from cryoscape.core.io.mrc import read_mrc, write_mrc

    h = read_map_header(src)
    vol, _ = read_mrc(src)
    write_mrc(out, fn(vol), apix=h.apix, is_stack=False, origin=h.origin)
    return h


def rewrite_stack(src: str | os.PathLike, out: str | os.PathLike, fn,
                  progress: bool = True) -> MrcHeader:
    """Write fn(images) of the image stack `src`, chunk by chunk, to `out` (pixel size kept)."""
    from cryoscape.core.io.downsample import auto_chunk
    from cryoscape.core.io.mrc import new_mrc_stack
    from cryoscape.core.io.stack import open_images
    from tqdm import tqdm

    h = read_mrc_header(src)
    images = open_images(src, lazy=True)
    with (new_mrc_stack(out, (len(images), images.D, images.D), apix=h.apix) as data,
          tqdm(total=len(images), unit="img", disable=not progress) as bar):
        for i, chunk in images.chunks(auto_chunk(images.D)):
            data[i:i + len(chunk)] = fn(chunk)
            bar.update(len(chunk))
    return h


def invert_contrast_file(src: str | os.PathLike, out: str | os.PathLike,
                         progress: bool = True) -> MrcHeader:
    """Negate a map or an image stack (relion_image_handler --multiply_constant -1)."""
    from cryoscape.core.decode import invert_contrast

    h = read_mrc_header(src)
    if is_stack(src, h):
        return rewrite_stack(src, out, invert_contrast, progress)
    return rewrite_map(src, out, invert_contrast)


def set_mrc_apix(src: str | os.PathLike, out: str | os.PathLike, apix: float) -> MrcHeader:
    """Copy an MRC map or stack with its voxel size set to `apix` A; data, mode, origin and
    the rest of the header as they were. -> the input's header."""
    import shutil

    import mrcfile

    check_apix(apix)
    h = read_mrc_header(src)
    with mrcfile.open(src, header_only=True, permissive=True) as m:
        header = m.header.copy()
    for axis, n in zip("xyz", ("mx", "my", "mz")):
        header.cella[axis] = float(apix) * int(header[n])
    with atomic_path(out) as tmp:
        shutil.copyfile(src, tmp)
        with open(tmp, "r+b") as f:
            f.write(header.tobytes())
    return h


def set_star_apix(star, apix: float):
    """A copy of a StarFile whose pixel size is `apix` A for every particle: rlnImagePixelSize
    (or rlnPixelSize) where the file has it, else rlnDetectorPixelSize with rlnMagnification
    10000 (RELION 3.0); origins in A are rescaled so that the shifts in pixels stay put."""
    from cryoscape.core.io.star import StarFile, star_apix

    check_apix(apix)
    old = star_apix(star)
    parts = star.particles.copy()
    optics = None if star.optics is None else star.optics.copy()
    tables = [t for t in (optics, parts) if t is not None]
    named = [(t, c) for t in tables for c in ("rlnImagePixelSize", "rlnPixelSize")
             if c in t.columns]
    if named:
        for t, c in named:
            t[c] = float(apix)
    elif optics is not None:
        optics["rlnImagePixelSize"] = float(apix)
    else:
        for t in tables:
            t["rlnDetectorPixelSize"], t["rlnMagnification"] = float(apix), 10000.0
    if old is not None:
        for c in ("rlnOriginXAngst", "rlnOriginYAngst"):
            if c in parts.columns:
                parts[c] = parts[c].to_numpy(np.float64) * (float(apix) / old)
    return StarFile(parts, optics, star.version, None, star.particles_block, dict(star.other))


def check_apix(apix: float) -> None:
    if not (np.isfinite(apix) and apix > 0):
        raise CryoscapeError(f"the pixel size must be a positive number of A, got {apix}")


def subset_size(text: str, n: int) -> int:
    """How many of n particles `text` asks for: a whole number, or a fraction in (0, 1] of n
    (rounded to the nearest whole number, at least 1)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if "." not in text and value.is_integer() and value >= 1:
        k = int(value)
    elif 0 < value <= 1:
        k = max(1, round(value * n))
    else:
        raise CryoscapeError(f"subset size {text!r}: give a whole number of particles (>= 1) "
                             "or a fraction between 0 and 1")
    if k > n:
        raise CryoscapeError(f"cannot draw {k} particles out of {n}")
    return k


def random_subset(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(k of 0..n-1 drawn at random without replacement, sorted; the others, sorted)."""
    from cryoscape.core.analysis.selection import invert

    if not 0 <= k <= n:
        raise CryoscapeError(f"cannot draw {k} particles out of {n}")
    subset = np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))
    return subset.astype(np.int64), invert(subset, n)


def count_particles(path: str | os.PathLike) -> tuple[int, np.ndarray | None]:
    """(number of particles, the index itself for an index .pkl, else None) of a particle
    file (.mrcs/.mrc stack, .txt list of stacks, .star, .cs) or a cryoDRGN index pickle."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".pkl":
        from cryoscape.core.io.cryodrgn import load_index
        ind = load_index(path)
        return len(ind), ind
    if suffix == ".star":
        from cryoscape.core.io.star import read_star
        return len(read_star(path)), None
    if suffix == ".cs":
        from cryoscape.core.io.cs import read_cs
        return len(read_cs(path, passthrough=False)), None
    if suffix in (*MRC_SUFFIXES, ".txt"):
        from cryoscape.core.io.stack import open_images
        return len(open_images(path, lazy=True)), None
    raise InputFileError(path, "expected a particle file (.mrcs, .mrc, .txt, .star, .cs) or "
                               "an index .pkl")
