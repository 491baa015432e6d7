"""A run directory as one object: config, checkpoints, latents, metrics, decoding, encoding.

Reads cryoscape runs and cryoDRGN runs alike (the layout is shared): `config.yaml`,
`weights.N.pkl` and `z.N.pkl` every --checkpoint epochs (1-based in cryoDRGN 4.x, 0-based in
older versions; `epochs` lists the numbers in the file names), the final unnumbered
`weights.pkl` and `z.pkl`, and for cryoscape runs a `cryoscape:` config section and
`metrics.jsonl`. Input paths in the config may not exist where a run is explored; nothing here
needs them, except `apix` which falls back to them and then to 1.0 (`apix_known` tells).

    run = Run.open("RUN")            # a run directory, or a folder with one config + one weights
    run.epochs                       # [1, 2, 3]
    mu = run.latents()               # (N, zdim) posterior means, last epoch by default
    vols = run.decode(mu[:5])        # (5, D, D, D) float32 [z, y, x]
"""
from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from cryoscape.core.errors import CryoscapeError, InputFileError
from cryoscape.core.models.cryodrgn_compat import load_config, load_model
from cryoscape.core.models.cryodrgn_compat import model_args as _model_args
from cryoscape.core.train.rundir import RunDir, numbered_files


class Run:
    """A trained run. Build with `Run.open(path)` or `Run.from_files(config, weights)`."""

    def __init__(self, path: Path, config: dict, weights: dict | None, zfiles: dict | None,
                 config_path: Path):
        """weights/zfiles: {epoch or None (final): path}; None: scan `path` on every use, so a
        run that is still training shows its new epochs."""
        self.path, self.config, self.config_path = path, config, config_path
        self._fixed = None if weights is None else (weights, zfiles or {})
        self._models: dict = {}
        self.device = torch.device("cpu")

    def _files(self) -> tuple[dict, dict]:
        if self._fixed is not None:
            return self._fixed
        rd = RunDir(self.path)
        weights, zfiles = numbered_files(self.path, "weights"), numbered_files(self.path, "z")
        for files, final in ((weights, rd.weights()), (zfiles, rd.z())):
            if final.exists():
                files[None] = final
        return weights, zfiles

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike) -> Run:
        """A cryoscape or cryoDRGN run directory (or a folder holding exactly one *config.yaml
        and one *weights*.pkl, or a weights file with config.yaml beside it).

        A run still in its first epoch opens with no epochs; asking it for weights or latents
        raises CryoscapeError until they are written.
        """
        path = Path(path)
        if path.is_file():
            return cls.from_files(RunDir(path.parent).config, path)
        if not path.is_dir():
            raise InputFileError(path, "no such run directory")
        rd = RunDir(path)
        cfg_path = next((p for p in (rd.config, rd.config_pkl) if p.exists()), None)
        if cfg_path is not None:
            return cls(path, load_config(cfg_path), None, None, cfg_path)
        configs = sorted(path.glob("*config*.yaml")) + sorted(path.glob("*config*.pkl"))
        weights = sorted(path.glob("*weights*.pkl"))
        if len(configs) == 1 and len(weights) == 1:
            return cls.from_files(configs[0], weights[0])
        raise InputFileError(path, "not a run directory: no config.yaml (and not exactly one "
                                   "*config.yaml with one *weights*.pkl)")

    @classmethod
    def from_files(cls, config: str | os.PathLike, weights: str | os.PathLike,
                   z: str | os.PathLike | None = None) -> Run:
        """A bare checkpoint with its config (and optionally a z file)."""
        config, weights = Path(config), Path(weights)
        if not weights.exists():
            raise InputFileError(weights, "file not found")
        zfiles = {None: Path(z)} if z is not None else {}
        return cls(weights.parent, load_config(config), {None: weights}, zfiles, config)

    # ---- description --------------------------------------------------------------------
    @property
    def is_cryoscape(self) -> bool:
        return "cryoscape" in self.config

    @property
    def epochs(self) -> list[int]:
        """Epoch numbers with a saved checkpoint, ascending (as numbered in the file names)."""
        return sorted(k for k in self._files()[0] if k is not None)

    @property
    def lattice_D(self) -> int:
        return int(self.config["lattice_args"]["D"])

    @property
    def D(self) -> int:
        """Training box size in pixels."""
        return self.lattice_D - 1

    @property
    def model_args(self) -> dict:
        return _model_args(self.config)

    @property
    def zdim(self) -> int:
        return int(self.model_args.get("zdim") or 0)

    @property
    def norm(self) -> tuple[float, float]:
        n = self.config["dataset_args"].get("norm") or (0.0, 1.0)
        return float(n[0]), float(n[1])

    def _input_path(self, key: str) -> Path | None:
        p = self.config.get("dataset_args", {}).get(key)
        if not p:
            return None
        p = Path(p)
        return p if p.is_absolute() else (self.config_path.parent / p)

    @property
    def particles_path(self) -> Path | None:
        """The training particles as the config names them (may not exist here)."""
        return self._input_path("particles")

    @cached_property
    def _apix(self) -> tuple[float, bool]:
        for sect in (self.config.get("cryoscape") or {}, self.config.get("dataset_args") or {}):
            if sect.get("apix"):
                return float(sect["apix"]), True
        ctf = self._input_path("ctf")
        if ctf is not None and ctf.exists():
            try:
                from cryoscape.core.io.pickles import load_pickle
                c = np.asarray(load_pickle(ctf))
                return float(c[0, 1] * c[0, 0] / self.D), True
            except (CryoscapeError, IndexError, ValueError):
                pass
        parts = self.particles_path
        if parts is not None and parts.exists():
            try:
                from cryoscape.core.io.stack import open_images
                src = open_images(parts, lazy=True,
                                  datadir=self.config["dataset_args"].get("datadir"))
                if src.apix and src.apix > 0:  # scaled if the run trained on a smaller box
                    return float(src.apix) * src.D / self.D, True
            except (CryoscapeError, OSError, ValueError):
                pass
        return 1.0, False

    @property
    def apix(self) -> float:
        """Pixel size in Å of the training box (1.0 where nothing says; see `apix_known`)."""
        return self._apix[0]

    @property
    def apix_known(self) -> bool:
        return self._apix[1]

    def metrics(self) -> list[dict]:
        """Per-epoch rows (epoch, loss, mse, kl, time...): metrics.jsonl (a cut last line is
        skipped), or for a cryoDRGN run the epoch lines of its run.log."""
        from cryoscape.core.io.cryodrgn import read_training_log

        rd = RunDir(self.path)
        return rd.read_metrics() if self.is_cryoscape else read_training_log(rd.log)

    # ---- files --------------------------------------------------------------------------
    def _pick(self, files: dict, epoch: int | None, what: str) -> Path:
        if epoch is None:
            if None in files:
                return files[None]
            if files:
                return files[max(k for k in files if k is not None)]
            raise CryoscapeError(f"{self.path}: no {what} in this run")
        if epoch not in files:
            raise CryoscapeError(f"{self.path}: no {what} for epoch {epoch} "
                                 f"(saved epochs: {sorted(k for k in files if k is not None)})")
        return files[epoch]

    def weights_path(self, epoch: int | None = None) -> Path:
        """weights.N.pkl, or for None the final weights.pkl (else the last numbered one)."""
        return self._pick(self._files()[0], epoch, "weights")

    def z_path(self, epoch: int | None = None) -> Path:
        return self._pick(self._files()[1], epoch, "latents (z*.pkl)")

    def pose_files(self) -> dict:
        """{epoch or None (final): path} of an ab initio run's pose.N.pkl / pose.pkl."""
        rd = RunDir(self.path)
        files = numbered_files(self.path, "pose")
        if rd.pose().exists():
            files[None] = rd.pose()
        return files

    def poses(self, epoch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(rotations [N, 3, 3], shifts [N, 2] px) of the training images: those an ab initio
        run (cryoscape's or cryoDRGN's) found by `epoch` (None: the last), or the poses a
        known-pose run was given (its pose pickle or particle .star/.cs, its index applied)."""
        files = self.pose_files()
        if files:
            from cryoscape.core.io.pickles import load_pickle
            from cryoscape.core.poses import shifts_from_cryodrgn
            path = self._pick(files, epoch, "poses (pose*.pkl)")
            try:
                rot, trans = load_pickle(path)
                return (np.asarray(rot, np.float32),
                        shifts_from_cryodrgn(np.asarray(trans).reshape(-1, 2), self.D))
            except (TypeError, ValueError):
                raise InputFileError(path, "not a pose pickle (rotations, translations)") \
                    from None
        if self.particles_path is None:
            raise CryoscapeError(f"{self.path}: the run records no particles or poses")
        from cryoscape.core.io.particles import load_particles
        p = load_particles(self.particles_path, poses=self._input_path("poses"),
                           ind=self._input_path("ind"), datadir=self._input_path("datadir"),
                           lazy=True, need_poses=True)
        shifts = np.zeros((len(p.rotations), 2), np.float32) if p.shifts is None else p.shifts
        return np.asarray(p.rotations, np.float32), np.asarray(shifts, np.float32)

    # ---- model, latents -----------------------------------------------------------------
    def model(self, epoch: int | None = None):
        """The VAE (eval mode, on `self.device`) of an epoch (None: the final weights)."""
        key = self.weights_path(epoch)
        if key not in self._models:
            self._models = {key: load_model(self.config, key)[0].to(self.device)}
        return self._models[key]

    def _z_array(self, epoch, i):
        from cryoscape.core.io.pickles import load_pickles
        path = self.z_path(epoch)
        objs = load_pickles(path)
        if len(objs) <= i:
            raise InputFileError(path, "holds no logvar (only one pickle)")
        return np.asarray(objs[i], dtype=np.float32)

    def latents(self, epoch: int | None = None) -> np.ndarray:
        """(N, zdim) float32 posterior means of the training images (None: last epoch)."""
        return self._z_array(epoch, 0)

    def logvar(self, epoch: int | None = None) -> np.ndarray:
        return self._z_array(epoch, 1)

    # ---- decoding, encoding -------------------------------------------------------------
    def decode(self, z=None, D: int | None = None, epoch: int | None = None, *,
               flip: bool = False, invert: bool = False, lowpass: float | None = None,
               batch: int | None = None, bf16: bool = False) -> np.ndarray:
        """Volumes (M, b, b, b) float32 [z, y, x] at latents z (M, zdim) (None for zdim 0).

        D: the box (None: the training box; smaller: a low-passed preview of voxel size
        apix * self.D / D, inside its own Nyquist sphere where the decoder is evaluated on a
        sphere). cryoDRGN runs decode exactly as cryoDRGN's eval_vol (previews as its
        --downsample, scaled to keep the density); cryoscape runs evaluate only the sphere.
        flip/invert/lowpass (Å): map options. Decoded `batch` maps at a time (default:
        `decode.maps_per_call`), so memory beyond the result stays bounded whatever M is.
        bf16: the decoder in bfloat16 autocast (`decode.decode_hartley`).
        """
        from cryoscape.core.decode import apply_map_options, decode_batches
        if self.zdim:
            if z is None:
                raise CryoscapeError("this run is heterogeneous: give latents z to decode")
            z = torch.as_tensor(np.asarray(z, dtype=np.float32)).reshape(-1, self.zdim)
        else:
            z = None
        b = D or self.D
        out = np.empty((1 if z is None else len(z), b, b, b), dtype=np.float32)
        s = 0
        for vols in decode_batches(self.model(epoch).decoder, z, self.D, self.norm, box=D,
                                   sphere=True if self.is_cryoscape else None, batch=batch,
                                   bf16=bf16):
            out[s:s + len(vols)] = apply_map_options(vols.numpy(), self.voxel_size(D), flip,
                                                     invert, lowpass)
            s += len(vols)
        return out

    def voxel_size(self, D: int | None = None) -> float:
        """Voxel size in Å of maps decoded at box D (None: the training box)."""
        return self.apix * self.D / (D or self.D)

    def posterior(self, images, epoch: int | None = None, batch_size: int = 256, *,
                  ctf=None, shifts=None, poses=None, ind=None, datadir=None,
                  device=None, tilt=None) -> tuple[np.ndarray, np.ndarray]:
        """(mu, logvar) [N, zdim] float32 of images under this run's encoder, preprocessed,
        centred and CTF-phase-flipped as its training images were (`core.train.encode`).

        images: a particle file (with poses, ctf, ind, datadir files as for training), a
        `Particles` (its index kept), or raw images [N, D, D] (array or ImageSource) with their
        CTF [N, 9] (needed if the run trained with one) and content shifts [N, 2] px.
        tilt: for a run trained on tilt pairs (needed there), the images' tilted pairs in the
        same forms (a file takes the same ind and datadir; the shifts are the images').
        """
        from cryoscape.core.train.encode import as_particles, posterior
        if not self.zdim:
            raise CryoscapeError(f"{self.path}: a homogeneous run (zdim 0) has no encoder")
        particles = as_particles(images, poses=poses, ctf=ctf, shifts=shifts, ind=ind,
                                 datadir=datadir)
        if tilt is not None:
            tilt = as_particles(tilt, ind=ind, datadir=datadir)
        return posterior(self.model(epoch), self.config, particles, batch_size=batch_size,
                         device=device or self.device, tilt=tilt)

    def encode(self, images, epoch: int | None = None, batch_size: int = 256,
               **kwargs) -> np.ndarray:
        """Posterior means (N, zdim) float32 of images: `posterior(...)[0]`."""
        return self.posterior(images, epoch, batch_size, **kwargs)[0]
