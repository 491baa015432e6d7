"""A run's dataset files (particles, poses, CTF, index) as recorded in its config.yaml.

Latent row i of a run is particle `ind[i]` of its particle file when training used an index
(`dataset_args.ind`); selections are exported in particle-file indices, so that they apply to
the .star/.cs/.mrcs the user has. Recorded paths are tried as written, then relative to the
run directory; where none exists the user gives the file (e.g. `--particles`).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from cryoscape.core.errors import CryoscapeError


def dataset_path(run, key: str) -> Path | None:
    """The existing file recorded as `dataset_args[key]`, or None (not recorded or missing)."""
    value = ((run.config or {}).get("dataset_args") or {}).get(key)
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        return None
    p = Path(value).expanduser()
    for cand in ([p] if p.is_absolute() else [Path(run.path) / p, p]):
        if cand.exists():
            return cand
    return None


def particle_index(run, override: str | os.PathLike | None = None) -> np.ndarray | None:
    """Particle-file index of each latent row: from `override` (an index pickle), else the
    run's recorded `dataset_args.ind`; None when training used every particle in order."""
    from cryoscape.core.io.cryodrgn import load_index

    if override is not None:
        return load_index(override)
    recorded = ((run.config or {}).get("dataset_args") or {}).get("ind")
    if recorded is None:
        return None
    if isinstance(recorded, int):  # cryoDRGN's "first N particles"
        return np.arange(recorded, dtype=np.int64)
    path = dataset_path(run, "ind")
    if path is None:
        raise CryoscapeError(f"{run.path}: the run was trained on the particle subset "
                             f"{recorded}, which is not found; give it with --ind")
    return load_index(path)


def to_particle_indices(run, sel, ind_override=None) -> np.ndarray:
    """Latent-row selection -> indices into the run's particle file."""
    sel = np.asarray(sel, dtype=np.int64)
    ind = particle_index(run, ind_override)
    if ind is None:
        return sel
    if len(ind) < (sel.max() + 1 if len(sel) else 0):
        raise CryoscapeError(f"the run's particle index has {len(ind)} entries, fewer than its "
                             "latents: wrong --ind?")
    return ind[sel]


def particles_file(run, given: str | os.PathLike | None = None) -> Path:
    """The particle file (.star/.cs/.mrcs/.txt): `given`, else the run's recorded one."""
    if given is not None:
        return Path(given)
    path = getattr(run, "particles_path", None)
    if path is not None and Path(path).exists():
        return Path(path)
    path = dataset_path(run, "particles")
    if path is None:
        rec = ((run.config or {}).get("dataset_args") or {}).get("particles")
        raise CryoscapeError(f"{run.path}: the run's particle file ({rec}) is not found here; "
                             "give it with --particles")
    return path


def load_run_particles(run, particles=None, poses=None, ctf=None, datadir=None):
    """The run's particles (lazy images) with poses and CTF: given files, else recorded ones."""
    from cryoscape.core.io.particles import load_particles

    path = particles_file(run, particles)
    poses = poses if poses is not None else dataset_path(run, "poses")
    ctf = ctf if ctf is not None else dataset_path(run, "ctf")
    datadir = datadir if datadir is not None else dataset_path(run, "datadir")
    return load_particles(path, poses=poses, ctf=ctf, datadir=datadir, lazy=True)
