"""Training data: particles, poses and CTF loaded once; images preprocessed to the stored
lattice points, in memory or per batch (`lazy`); batch order reproducible from seed and epoch.

Tilt pairs (the paper's appendix D.2): a second stack of the same particles imaged with the
stage tilted (`tilt`), indexed by the same `ind`, preprocessed as the particles (their
normalisation), centred by the particles' shifts (as cryoDRGN's tilt training and the
simulator assume), with the CTF its own .star/.cs gives or else the particles'.
"""
from __future__ import annotations

import numpy as np
import torch
from cryoscape.core import preprocess
from cryoscape.core.errors import InputFileError
from cryoscape.core.io.particles import Particles, load_particles
from cryoscape.core.train.forward import SliceLattice, center_hartley

NORM_IMAGES = 1000   # images used to estimate the normalisation, as cryoDRGN
CHUNK = 1024         # images preprocessed at a time when loading into memory


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled image order of a (0-based) epoch: a function of seed and epoch only."""
    s = int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0] >> 1)
    return torch.randperm(n, generator=torch.Generator().manual_seed(s))


class TrainData:
    """Images, rotations, shifts and CTF of a training set, batched by index.

    `batch(idx)` returns (y [B, kept lattice points], rot [B, 3, 3], ctf [B, 9] | None) on the
    device: y is windowed, inverted, Hartley-transformed on the (D+1)^2 lattice, normalised
    and centred (translations undone).
    """

    def __init__(self, particles: str, *, poses=None, ctf=None, ind=None, datadir=None,
                 lazy=False, invert=None, window=True, window_r=0.85, norm=None,
                 enc_radius=None, need_poses=True, use_poses=True, device="cpu",
                 progress=False, tilt=None):
        # images stay memory-mapped: in memory only the preprocessed lattice points are kept
        p = particles if isinstance(particles, Particles) else load_particles(
            particles, poses=poses, ctf=ctf, ind=ind, datadir=datadir, lazy=True,
            need_poses=need_poses)
        if p.D % 2:
            raise InputFileError(p.path, f"image box must be even, got {p.D} (downsample "
                                         "to an even box first)")
        self.particles, self.images = p, p.images
        self.N, self.D, self.apix, self.lazy = len(p.images), p.D, p.apix, lazy
        self.device = torch.device(device)
        self.lattice = SliceLattice(self.D, enc_radius, self.device)
        # images are preprocessed on the CPU: the lattice's coordinates and mask there, once
        self._coords_cpu, self._keep_cpu = self.lattice.full_coords.cpu(), self.lattice.keep.cpu()
        self._window = (preprocess.window_mask(self.D, window_r) if window else None)
        # use_poses=False (ab initio): poses a .star/.cs holds are ignored, images not centred
        self.rot = (torch.as_tensor(np.asarray(p.rotations), dtype=torch.float32)
                    if use_poses and p.rotations is not None else None)
        self.shifts = (torch.as_tensor(np.asarray(p.shifts), dtype=torch.float32)
                       if use_poses and p.shifts is not None else None)
        self.ctf = torch.as_tensor(np.asarray(p.ctf), dtype=torch.float32) if p.ctf is not None \
            else None
        if invert is None:     # nobody said: decided from the images and their CTF
            invert = preprocess.infer_invert(self.images[self._sample()], self.ctf is not None)
        self.invert = invert
        self.norm = tuple(norm) if norm is not None else self._estimate_norm()
        self.tilt_images = self.tilt_ctf = None
        if tilt is not None:
            self._load_tilt(tilt, ind, datadir)
        self.y = None if lazy else self._prepare_all(progress)
        self.y_tilt = (None if lazy or tilt is None
                       else self._prepare_all(progress, self.tilt_images))

    @property
    def has_tilt(self) -> bool:
        return self.tilt_images is not None

    def _load_tilt(self, tilt, ind, datadir) -> None:
        t = tilt if isinstance(tilt, Particles) else load_particles(
            tilt, ind=ind, datadir=datadir, lazy=True)
        if len(t.images) != self.N or t.D != self.D:
            raise InputFileError(t.path, f"tilt stack of {len(t.images)} images of {t.D} px; "
                                         f"the particles are {self.N} of {self.D} px (a tilt "
                                         "stack holds one image per particle, in its order)")
        ctf = self.ctf if t.ctf is None else torch.as_tensor(np.asarray(t.ctf),
                                                             dtype=torch.float32)
        if (ctf is None) != (self.ctf is None):
            raise InputFileError(t.path, "the tilt stack has a CTF but the particles have "
                                         "none: give both or neither")
        self.tilt_images, self.tilt_ctf = t.images, ctf

    def _prepare_all(self, progress: bool, images=None) -> torch.Tensor:
        y = torch.empty(self.N, len(self.lattice.keep), device=self.device)
        starts = range(0, self.N, CHUNK)
        if progress:
            from tqdm import tqdm
            starts = tqdm(starts, desc="preprocessing", unit="chunk", leave=False)
        for i in starts:
            j = min(i + CHUNK, self.N)
            y[i:j] = self._prepare(np.arange(i, j), images).to(self.device)
        return y

    def _sample(self) -> np.ndarray:
        """As cryoDRGN's normalisation: every (N // n)-th image, n = min(NORM_IMAGES, N)."""
        return np.arange(0, self.N, self.N // min(NORM_IMAGES, self.N))

    def _estimate_norm(self) -> tuple[float, float]:
        return preprocess.estimate_norm(self.images[self._sample()], invert=self.invert)

    def _prepare(self, idx: np.ndarray, images=None) -> torch.Tensor:
        images = self.images if images is None else images
        raw = torch.as_tensor(np.asarray(images[idx]), dtype=torch.float32)
        h = preprocess.preprocess_images(raw, window=self._window, invert=self.invert,
                                         norm=self.norm).reshape(len(idx), -1)
        if self.shifts is not None:
            h = center_hartley(h, self._coords_cpu, self.shifts[idx])
        return h[:, self._keep_cpu]

    def _rows(self, idx: torch.Tensor, y, images) -> torch.Tensor:
        if y is not None:
            return y[idx.to(self.device)]
        order = torch.argsort(idx)   # read the stack in file order, then restore the order
        out = torch.empty(len(idx), len(self.lattice.keep))
        out[order] = self._prepare(idx[order].numpy(), images)
        return out.to(self.device)

    def batch(self, idx: torch.Tensor):
        """(y, rot, ctf) of the images `idx` (a 1-D LongTensor), on the device."""
        y = self._rows(idx, self.y, self.images)
        rot = self.rot[idx].to(self.device) if self.rot is not None else None
        ctf = self.ctf[idx].to(self.device) if self.ctf is not None else None
        return y, rot, ctf

    def tilt_batch(self, idx: torch.Tensor):
        """(y_tilt, ctf_tilt) of the tilted images of the particles `idx`, on the device."""
        y = self._rows(idx, self.y_tilt, self.tilt_images)
        ctf = self.tilt_ctf[idx].to(self.device) if self.tilt_ctf is not None else None
        return y, ctf
