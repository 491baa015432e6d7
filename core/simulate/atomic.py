"""Volumes from atomic models (PDB or mmCIF, read with gemmi): each atom a 3D Gaussian.

An atom of atomic number Z, occupancy q and B-factor B is a Gaussian of total mass q*Z with
variance B/(8 pi^2) + blur^2 (A^2); blur defaults to one pixel so the map is sampled finely
enough. Atoms are centered on their Z-weighted center of mass (or kept in place), the map is
[D, D, D] indexed [z, y, x] with the origin of the coordinates at voxel D//2.
"""
from __future__ import annotations

import os

import numpy as np
import torch
from cryoscape.core.errors import InputFileError


def read_atoms(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(xyz [n, 3] A, mass = occupancy * Z [n], B-factors [n]) of the first model, no waters."""
    import gemmi
    if not os.path.exists(path):
        raise InputFileError(path, "file not found")
    try:
        st = gemmi.read_structure(os.fspath(path))
    except (RuntimeError, ValueError) as e:
        raise InputFileError(path, f"not a readable PDB/mmCIF file ({e})") from None
    if len(st) == 0:
        raise InputFileError(path, "no models in the atomic model")
    st.remove_waters()
    xyz, mass, bfac = [], [], []
    for chain in st[0]:
        for res in chain:
            for atom in res:
                xyz.append(atom.pos.tolist())
                mass.append(atom.occ * max(atom.element.atomic_number, 1))
                bfac.append(atom.b_iso)
    if not xyz:
        raise InputFileError(path, "no atoms in the atomic model")
    return np.array(xyz), np.array(mass), np.array(bfac)


def atoms_to_volume(xyz, mass, bfactor, D: int, apix: float, blur: float | None = None,
                    center: bool = True) -> np.ndarray:
    """Splat atoms (A) as Gaussians into a [D, D, D] map with `apix` A/px (see module doc).

    Raises ValueError when atoms fall outside the box.
    """
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    mass = np.asarray(mass, dtype=np.float64).reshape(-1)
    if center:
        xyz = xyz - (xyz * mass[:, None]).sum(0) / mass.sum()
    blur = apix if blur is None else blur
    sig = np.sqrt(np.maximum(np.asarray(bfactor, dtype=np.float64), 0) / (8 * np.pi**2)
                  + blur**2) / apix                                   # px
    pos = xyz / apix + D // 2                                         # voxel (x, y, z)
    outside = ((pos < 0) | (pos > D - 1)).any(1).sum()
    if outside:
        raise ValueError(f"{outside} of {len(pos)} atoms lie outside the {D} px box at "
                         f"{apix:g} A/px; use a larger box or pixel size")
    r = int(np.ceil(3 * sig.max()))
    off = torch.arange(-r, r + 1)
    off = torch.stack(torch.meshgrid(off, off, off, indexing="ij"), -1).reshape(-1, 3)  # (x,y,z)
    vol = torch.zeros(D**3, dtype=torch.float64)
    pos_t, sig_t = torch.from_numpy(pos), torch.from_numpy(sig)
    norm = torch.from_numpy(mass) / ((2 * np.pi) ** 1.5 * sig_t**3)
    chunk = max(1, 2_000_000 // len(off))                              # bounded memory
    for i in range(0, len(pos), chunk):
        p, s, w = pos_t[i:i + chunk], sig_t[i:i + chunk], norm[i:i + chunk]
        vox = torch.round(p)[:, None, :].long() + off[None]           # [a, m, 3]
        d2 = ((vox - p[:, None, :]) ** 2).sum(-1)
        val = w[:, None] * torch.exp(-d2 / (2 * s[:, None] ** 2))
        ok = ((vox >= 0) & (vox < D)).all(-1)
        flat = (vox[..., 2] * D + vox[..., 1]) * D + vox[..., 0]
        vol.index_add_(0, flat[ok], val[ok])
    return vol.reshape(D, D, D).numpy().astype(np.float32)


def volume_from_atomic_model(path: str | os.PathLike, D: int, apix: float,
                             blur: float | None = None, center: bool = True) -> np.ndarray:
    """Read a PDB/mmCIF file and return its Gaussian map [D, D, D] (see atoms_to_volume)."""
    xyz, mass, bfac = read_atoms(path)
    try:
        return atoms_to_volume(xyz, mass, bfac, D, apix, blur, center)
    except ValueError as e:
        raise InputFileError(path, str(e)) from None
