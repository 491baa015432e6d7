"""Training data: particles, poses and CTF loaded once; images preprocessed to the stored
lattice points, in memory or per batch (`lazy`); batch order reproducible from seed and epoch.

`TrainData.stream(batches, workers)` yields an epoch's batches in order; with lazy data and
workers > 0, DataLoader worker processes read and preprocess the next batches (prefetched,
pinned when the device is a GPU) while the current one trains, and the rows are those the
main process would compute. `downsample` Fourier-crops the images as they are read
(core/io/downsample): the data then have that box, its pixel size, shifts and CTF.

Tilt pairs (the paper's appendix D.2): a second stack of the same particles imaged with the
stage tilted (`tilt`), indexed by the same `ind`, preprocessed as the particles (their
normalisation), centred by the particles' shifts (as cryoDRGN's tilt training and the
simulator assume), with the CTF its own .star/.cs gives or else the particles'.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from cryoscape.core import preprocess
from cryoscape.core.errors import CryoscapeError, InputFileError
from cryoscape.core.io.downsample import downsample_particles
from cryoscape.core.io.particles import Particles, load_particles
from cryoscape.core.train.forward import SliceLattice, center_hartley

NORM_IMAGES = 1000   # images used to estimate the normalisation, as cryoDRGN
CHUNK = 1024         # images preprocessed at a time when loading into memory
PREFETCH = 2         # batches each DataLoader worker prepares ahead
MAX_WORKERS = 4      # default workers: enough to keep a step fed at D=128-256 (FFT per image)


def default_workers(lazy: bool) -> int:
    """DataLoader workers when not told: none in memory (nothing to read); for lazy data one
    core of this process's share (the cores over torchrun's local processes) is left to the
    training step, up to MAX_WORKERS."""
    if not lazy:
        return 0
    cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
             else os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(0, min(MAX_WORKERS, cores - 1))


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled image order of a (0-based) epoch: a function of seed and epoch only."""
    s = int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0] >> 1)
    return torch.randperm(n, generator=torch.Generator().manual_seed(s))


@dataclass
class Preprocess:
    """Particle images -> training rows on the CPU: windowed, inverted, Hartley-transformed on
    the (D+1)^2 lattice, normalised, centred by their shifts and cut to the kept points. Holds
    none of the data set's prepared tensors, so DataLoader workers get it cheaply."""

    window: torch.Tensor | None
    invert: bool
    norm: tuple[float, float]
    shifts: torch.Tensor | None
    coords: torch.Tensor
    keep: torch.Tensor               # indices of the kept lattice points

    def __call__(self, images, idx: np.ndarray) -> torch.Tensor:
        """Rows of images[idx] in the order of `idx`, read from the stack in file order."""
        order = np.argsort(idx, kind="stable")
        raw = torch.as_tensor(np.asarray(images[idx[order]]), dtype=torch.float32)
        h = preprocess.preprocess_images(raw, window=self.window, invert=self.invert,
                                         norm=self.norm).reshape(len(idx), -1)
        if self.shifts is not None:
            h = center_hartley(h, self.coords, self.shifts[idx[order]])
        out = torch.empty(len(idx), len(self.keep))
        out[torch.from_numpy(order)] = h[:, self.keep]
        return out


class BatchRows(torch.utils.data.Dataset):
    """DataLoader items: the rows of the particles of an index batch (and of their tilted
    images). An input error comes back as a value, raised again in the main process as it is
    (a DataLoader would wrap it in a traceback)."""

    def __init__(self, prep: Preprocess, images, tilt_images=None):
        self.prep, self.images, self.tilt_images = prep, images, tilt_images

    def __getitem__(self, idx: torch.Tensor):
        i = idx.numpy()
        try:
            return self.prep(self.images, i), (None if self.tilt_images is None
                                               else self.prep(self.tilt_images, i))
        except CryoscapeError as e:
            return CryoscapeError(str(e)), None


class BatchStream:
    """The batches (`TrainData.fetch` tuples) of a list of index batches, in order; with lazy
    data and `workers`, read and preprocessed ahead by DataLoader worker processes. `close()`
    ends the workers (dropping the DataLoader's iterator shuts them down)."""

    def __init__(self, data: TrainData, batches: list[torch.Tensor], workers: int):
        self.data, self.batches, self.k, self._it = data, batches, 0, None
        if workers > 0 and data.lazy and batches:
            rows = BatchRows(data.prep, data.images, data.tilt_images)
            self._it = iter(torch.utils.data.DataLoader(
                rows, batch_size=None, sampler=batches, num_workers=workers,
                prefetch_factor=PREFETCH, pin_memory=data.device.type == "cuda"))

    def __iter__(self):
        return self

    def __next__(self):
        if self.k >= len(self.batches):
            raise StopIteration
        idx, self.k = self.batches[self.k], self.k + 1
        if self._it is None:
            return self.data.fetch(idx)
        y, y_tilt = next(self._it)
        if isinstance(y, CryoscapeError):
            raise y
        return self.data.fetch(idx, y, y_tilt)

    def close(self) -> None:
        self._it = None


class TrainData:
    """Images, rotations, shifts and CTF of a training set, batched by index.

    `batch(idx)` returns (y [B, kept lattice points], rot [B, 3, 3], ctf [B, 9] | None) on the
    device: y is windowed, inverted, Hartley-transformed on the (D+1)^2 lattice, normalised
    and centred (translations undone). `downsample`: the images Fourier-cropped to that box.
    """

    def __init__(self, particles: str, *, poses=None, ctf=None, ind=None, datadir=None,
                 lazy=False, invert=None, window=True, window_r=0.85, norm=None,
                 enc_radius=None, need_poses=True, use_poses=True, device="cpu",
                 progress=False, tilt=None, downsample=None):
        # images stay on disk (read per access): in memory only the prepared rows are kept
        p = particles if isinstance(particles, Particles) else load_particles(
            particles, poses=poses, ctf=ctf, ind=ind, datadir=datadir, lazy=True,
            need_poses=need_poses)
        self.downsample = downsample
        if downsample:
            p = downsample_particles(p, downsample)
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
        self.prep = Preprocess(self._window, self.invert, self.norm, self.shifts,
                               self._coords_cpu, self._keep_cpu)
        self.y = None if lazy else self._prepare_all(progress)
        self.y_tilt = (None if lazy or tilt is None
                       else self._prepare_all(progress, self.tilt_images))

    @property
    def has_tilt(self) -> bool:
        return self.tilt_images is not None

    def _load_tilt(self, tilt, ind, datadir) -> None:
        t = tilt if isinstance(tilt, Particles) else load_particles(
            tilt, ind=ind, datadir=datadir, lazy=True)
        if self.downsample:
            t = downsample_particles(t, self.downsample)
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
            y[i:j] = self.prep(self.images if images is None else images,
                               np.arange(i, j)).to(self.device)
        return y

    def _sample(self) -> np.ndarray:
        """As cryoDRGN's normalisation: every (N // n)-th image, n = min(NORM_IMAGES, N)."""
        return np.arange(0, self.N, self.N // min(NORM_IMAGES, self.N))

    def _estimate_norm(self) -> tuple[float, float]:
        return preprocess.estimate_norm(self.images[self._sample()], invert=self.invert)

    def _rows(self, idx: torch.Tensor, y, images) -> torch.Tensor:
        if y is not None:
            return y[idx.to(self.device)]
        return self.prep(images, idx.numpy()).to(self.device)

    def fetch(self, idx: torch.Tensor, y=None, y_tilt=None) -> tuple:
        """(y, rot, ctf, y_tilt, ctf_tilt) of the images `idx` on the device (the tilted
        pair's None without tilt pairs); y, y_tilt: their rows already prepared (CPU)."""
        y, rot, ctf = self.batch(idx, y)
        if not self.has_tilt:
            return y, rot, ctf, None, None
        return (y, rot, ctf, *self.tilt_batch(idx, y_tilt))

    def stream(self, batches: list[torch.Tensor], workers: int = 0) -> BatchStream:
        """The batches of the index batches `batches`, in order (see BatchStream)."""
        return BatchStream(self, batches, workers)

    def batch(self, idx: torch.Tensor, y=None):
        """(y, rot, ctf) of the images `idx` (a 1-D LongTensor), on the device; y: their
        rows already prepared (CPU)."""
        y = (self._rows(idx, self.y, self.images) if y is None
             else y.to(self.device, non_blocking=True))
        rot = self.rot[idx].to(self.device) if self.rot is not None else None
        ctf = self.ctf[idx].to(self.device) if self.ctf is not None else None
        return y, rot, ctf

    def tilt_batch(self, idx: torch.Tensor, y=None):
        """(y_tilt, ctf_tilt) of the tilted images of the particles `idx`, on the device; y:
        their rows already prepared (CPU)."""
        y = (self._rows(idx, self.y_tilt, self.tilt_images) if y is None
             else y.to(self.device, non_blocking=True))
        ctf = self.tilt_ctf[idx].to(self.device) if self.tilt_ctf is not None else None
        return y, ctf
