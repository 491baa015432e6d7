"""A particle dataset in one object: images plus poses, CTF and the original metadata.

`load_particles` reads .mrcs/.mrc/.txt (images only), .star or .cs (images, poses and CTF
where the file has them); cryoDRGN pose/CTF pickles given explicitly take precedence.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from cryoscape.core.errors import InputFileError, warn
from cryoscape.core.io import cryodrgn
from cryoscape.core.io.stack import ImageSource, cs_images, open_images, star_images


@dataclass
class Particles:
    """Images [N, D, D] (lazy or in memory) with rotations [N,3,3], shifts [N,2] (px),
    CTF [N,9] (cryoDRGN columns) where known; `metadata` is the star table or cs fields."""
    images: ImageSource
    rotations: np.ndarray | None
    shifts: np.ndarray | None
    ctf: np.ndarray | None
    apix: float
    D: int
    metadata: pd.DataFrame | None
    path: str

    def __len__(self) -> int:
        return len(self.images)


def _cs_frame(arr: np.ndarray) -> pd.DataFrame:
    cols = {}
    for name in arr.dtype.names:
        v = arr[name]
        if v.ndim == 1:
            cols[name] = v.astype(str) if v.dtype.kind == "S" else v
        else:
            for j in range(v.shape[1]):
                cols[f"{name}[{j}]"] = v[:, j]
    return pd.DataFrame(cols)


def read_metadata(path: str | os.PathLike) -> pd.DataFrame | None:
    """The per-particle table of a .star (its particle block) or .cs file (vector fields split
    into `name[j]` columns); None for image stacks (.mrcs/.txt), which have none."""
    suffix = Path(path).suffix.lower()
    if suffix == ".star":
        from cryoscape.core.io.star import read_star
        return read_star(path).particles
    if suffix == ".cs":
        from cryoscape.core.io.cs import read_cs
        return _cs_frame(read_cs(path))
    return None


def _check_len(what: str, path, n_arr: int, n: int) -> None:
    if n_arr != n:
        raise InputFileError(path, f"holds {what} for {n_arr} particles, but the images "
                                   f"number {n}")


def _ctf_for_box(params: np.ndarray, D: int, path) -> np.ndarray:
    """CTF parameters for images of box D: a pickle made for the original box (column 0)
    keeps its physical pixel size scaled to the new box, as cryoDRGN does (with a warning
    naming both: a CTF file of another dataset would pass this way too)."""
    if len(params) and params[0, 0] != D:
        warn(f"{path}: the CTF parameters are for a {params[0, 0]:g} px box at "
             f"{params[0, 1]:.4g} A/px, the images are {D} px: their pixel size is taken as "
             f"{params[0, 0] * params[0, 1] / D:.4g} A/px (the same field of view)")
    params = params.copy()
    params[:, 1] = params[:, 0] * params[:, 1] / D
    params[:, 0] = D
    return params


def load_particles(path: str | os.PathLike, poses: str | os.PathLike | None = None,
                   ctf: str | os.PathLike | None = None, ind=None,
                   datadir: str | os.PathLike | None = None, lazy: bool = False,
                   need_poses: bool = False, need_ctf: bool = False) -> Particles:
    """Load images and whatever poses/CTF there are. `ind`: an index array or a pickle of
    one (applied to everything). `need_poses`/`need_ctf`: fail clearly if they are missing."""
    path = Path(path)
    suffix = path.suffix.lower()
    R = shifts = params = meta = None
    if suffix == ".star":
        from cryoscape.core.io.star import read_star, star_ctf, star_poses
        star = read_star(path)
        images = star_images(star, lazy=True, datadir=datadir)
        meta = star.particles
        if poses is None and "rlnAngleRot" in meta.columns:
            R, shifts = star_poses(star, D=images.D)
        if ctf is None and "rlnDefocusU" in meta.columns:
            params = star_ctf(star, D=images.D, apix=images.apix)
    elif suffix == ".cs":
        from cryoscape.core.io.cs import ALIGN_PREFIXES, cs_ctf, cs_poses, read_cs
        arr = read_cs(path)
        images = cs_images(arr, path, lazy=True, datadir=datadir)
        meta = _cs_frame(arr)
        if poses is None and any(f"{a}/pose" in arr.dtype.names for a in ALIGN_PREFIXES):
            R, shifts = cs_poses(arr, D=images.D, path=path)
        if ctf is None and "ctf/df1_A" in arr.dtype.names:
            params = cs_ctf(arr, D=images.D, apix=images.apix, path=path)
    else:
        images = open_images(path, lazy=True, datadir=datadir)
    n = len(images)
    if poses is not None:
        R, shifts = cryodrgn.load_poses(poses, D=images.D)
        _check_len("poses", poses, len(R), n)
    if ctf is not None:
        params = _ctf_for_box(cryodrgn.load_ctf(ctf), images.D, ctf)
        _check_len("CTF parameters", ctf, len(params), n)
        if suffix not in (".star", ".cs"):  # the header's pixel size is often unset
            images.apix = float(params[0, 1])
    apix = images.apix
    if need_poses and R is None:
        raise InputFileError(poses or path, "no poses: give a pose file (--poses) or a "
                                            ".star/.cs file with alignments")
    if need_ctf and params is None:
        raise InputFileError(ctf or path, "no CTF parameters: give --ctf or a .star/.cs "
                                          "file with CTF columns")
    if ind is not None:
        ind = cryodrgn.as_index(ind)
        if ind.size and (ind.max() >= n or ind.min() < 0):
            bad = ind.max() if ind.max() >= n else ind.min()
            raise InputFileError(path, f"the index selects particle {bad}, but there are {n} "
                                       f"(0 .. {n - 1})")
        images = images.subset(ind)
        R = None if R is None else R[ind]
        shifts = None if shifts is None else shifts[ind]
        params = None if params is None else params[ind]
        meta = None if meta is None else meta.iloc[ind].reset_index(drop=True)
    if not lazy:
        images = ImageSource.from_array(images[:], apix=images.apix) if len(images) else images
    return Particles(images, R, shifts, params, apix, images.D, meta, str(path))
