"""How well a run explains each image (cryoDRGN's eval_images): reconstruction error and KL.

Each image goes through training's own code: `TrainData` preprocesses and centres it as the
run's training images were, `forward.run_batch` encodes it, decodes its slice at the posterior
mean z (no sampling) with its pose and CTF and returns, per image, the mean squared error over
the loss circle and KL(q(z|X) || N(0, I)). Junk (noise, a wrong particle, a bad pose) fits
badly: images whose error lies above a robust threshold, the median plus k scaled median
absolute deviations (1.4826 MAD, a standard deviation for normal errors), are flagged.

    fit = evaluate_images(run, "particles.star")   # poses/CTF from the file or the run
    fit = evaluate_images(run)                      # the run's own training images
    fit.mse, fit.kl, fit.threshold, fit.flagged
    write_fit(fit, "fit.npz")                       # or fit.csv; load_fit reads both
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cryoscape.core.errors import CryoscapeError, InputFileError
from cryoscape.core.io.atomic import atomic_open

MAD_SCALE = 1.4826   # MAD of a normal distribution times this is its standard deviation


def robust_threshold(values, k: float = 3.0) -> float:
    """median + k * 1.4826 * MAD of `values`: k 'standard deviations' above the typical value,
    unmoved by the outliers themselves."""
    v = np.asarray(values, dtype=np.float64)
    med = float(np.median(v))
    return med + k * MAD_SCALE * float(np.median(np.abs(v - med)))


@dataclass
class ImageFit:
    """Per image: `mse` [N] (reconstruction error on the loss circle, at the posterior mean),
    `kl` [N], `index` [N] (row in the particle file); `k`: the outlier rule's multiplier."""

    mse: np.ndarray
    kl: np.ndarray
    index: np.ndarray
    k: float = 3.0

    @property
    def threshold(self) -> float:
        return robust_threshold(self.mse, self.k)

    @property
    def flagged(self) -> np.ndarray:
        """[N] bool: error above the threshold."""
        return self.mse > self.threshold

    @property
    def rule(self) -> str:
        return f"mse > median + {self.k:g} x 1.4826 MAD = {self.threshold:.6g}"


def eval_particles(run, particles, poses=None, ctf=None, ind=None, datadir=None, epoch=None):
    """The images to evaluate with their poses and CTF: from `poses`/`ctf` files, else the
    particle file's own (.star/.cs), else the run's recorded training files (for a known-pose
    run given its .mrcs), else the poses an ab initio run found (its pose.N.pkl at `epoch`).
    Refuses images without poses or without a CTF the run needs."""
    from cryoscape.core.analysis.runfiles import dataset_path
    from cryoscape.core.io.downsample import check_run_box
    from cryoscape.core.io.particles import load_particles
    from cryoscape.core.train.encode import uses_ctf

    p = load_particles(particles, poses=poses, ctf=ctf, ind=ind, datadir=datadir, lazy=True)
    need_ctf = uses_ctf(run.config)
    rec_poses = dataset_path(run, "poses") if p.rotations is None else None
    rec_ctf = dataset_path(run, "ctf") if p.ctf is None and need_ctf else None
    if rec_poses is not None or rec_ctf is not None:
        p = load_particles(particles, poses=poses or rec_poses, ctf=ctf or rec_ctf, ind=ind,
                           datadir=datadir, lazy=True)
    if p.rotations is None and run.pose_files():
        rot, shifts = found_poses(run, particles, ind, len(p), epoch)
        p = dataclasses.replace(p, rotations=rot, shifts=shifts * (p.D / run.D))
    if p.rotations is None:
        raise InputFileError(particles, "no poses: give them with --poses (neither the file, "
                                        "the run's config nor its pose*.pkl have any)")
    check_run_box(p, run.D)
    if need_ctf and p.ctf is None:
        raise InputFileError(particles, "the run was trained with CTF correction: give the "
                                        "images' CTF (--ctf or a .star/.cs with CTF)")
    if not need_ctf and p.ctf is not None:
        p = dataclasses.replace(p, ctf=None)     # as the run trained: without a CTF
    return p


def found_poses(run, particles, ind, n: int, epoch=None) -> tuple[np.ndarray, np.ndarray]:
    """(rotations, shifts px) an ab initio run found (`Run.poses`) for the n images of
    `particles` selected by `ind` (None: all): each image's row among the run's training
    images (the run's own particle index applied), so a subset or reordering works too."""
    from cryoscape.core.analysis.runfiles import particle_index
    from cryoscape.core.io.cryodrgn import as_index

    rot, shifts = run.poses(epoch)
    rows_of = particle_index(run)
    rows_of = np.arange(len(rot)) if rows_of is None else np.asarray(rows_of, np.int64)
    if len(rows_of) != len(rot):
        raise CryoscapeError(f"{run.path}: its found poses are for {len(rot)} images but it "
                             f"trained on {len(rows_of)}")
    want = np.arange(n) if ind is None else as_index(ind)
    row = np.full(max(int(rows_of.max(initial=-1)), int(want.max(initial=-1))) + 1, -1)
    row[rows_of] = np.arange(len(rows_of))
    rows = row[want]
    if (rows < 0).any():
        raise InputFileError(particles, f"particle {int(want[rows < 0][0])} has no pose: the "
                                        f"run found poses for its {len(rot)} training images "
                                        "only (give --poses)")
    return rot[rows], shifts[rows]


def evaluate_images(run, particles=None, *, poses=None, ctf=None, ind=None, datadir=None,
                    epoch: int | None = None, batch_size: int = 256, k: float = 3.0,
                    device=None, progress=False, tilt=None) -> ImageFit:
    """Per-image reconstruction error and KL of `particles` (a path, see `eval_particles`;
    None: the run's training images, its index (unless `ind`) and data folder applied, row
    i then being latent i) under `run` at `epoch` (None: final weights). `progress`: a tqdm
    bar (True) or a callable(done, total) called after each batch. `tilt`: the particles' tilted images (a
    path, the same ind and datadir) for a run trained on tilt pairs, needed where its encoder
    takes them: each particle's error is then the mean over its two images, as in training."""
    import torch
    from cryoscape.core.models.cryodrgn_compat import model_args
    from cryoscape.core.train.data import TrainData
    from cryoscape.core.train.encode import check_encoder, tilt_rotation_of
    from cryoscape.core.train.forward import run_batch

    if batch_size < 1:
        raise CryoscapeError(f"the batch size must be at least 1, got {batch_size}")
    if particles is None:
        particles, run_ind, run_datadir = training_particles(run)
        ind = run_ind if ind is None else ind
        datadir = datadir or run_datadir
        if tilt is None:        # a tilt-pair run's own tilted images, where they are
            from cryoscape.core.analysis.runfiles import dataset_path
            tilt = dataset_path(run, "tilt")
    p = eval_particles(run, particles, poses, ctf, ind, datadir, epoch)
    if device is not None:
        run.device = torch.device(device)
    model = run.model(epoch)
    check_encoder(model, run.config, tilt)
    T = None
    if tilt is not None:
        from cryoscape.core.io.particles import load_particles
        T = torch.as_tensor(tilt_rotation_of(run.config), device=run.device)
        tilt = load_particles(tilt, ind=ind, datadir=datadir, lazy=True)
        if p.ctf is None:
            tilt = dataclasses.replace(tilt, ctf=None)     # as the particles: no CTF
    ds = run.config["dataset_args"]
    data = TrainData(p, invert=ds.get("invert_data", True), window=ds.get("window", True),
                     window_r=ds.get("window_r", 0.85), norm=ds["norm"],
                     enc_radius=model_args(run.config).get("enc_mask"), lazy=True,
                     device=run.device, tilt=tilt, downsample=run.D)
    mse, kl = np.empty(data.N, np.float32), np.empty(data.N, np.float32)
    starts = range(0, data.N, batch_size)
    if progress is True:
        from tqdm import tqdm
        starts = tqdm(starts, desc="evaluating images", unit="batch")
    with torch.no_grad():
        for s in starts:
            idx = torch.arange(s, min(s + batch_size, data.N))
            y, rot, c = data.batch(idx)
            pair = None if T is None else (*data.tilt_batch(idx), T)
            _, m, q = run_batch(model, data.lattice, y, rot, c, 0.0, None, per_image=True,
                                tilt=pair)
            mse[s:s + len(idx)], kl[s:s + len(idx)] = m.cpu().numpy(), q.cpu().numpy()
            if callable(progress):
                progress(s + len(idx), data.N)
    index = _particle_index(ind, data.N)
    return ImageFit(mse=mse, kl=kl, index=index, k=float(k))


def training_particles(run) -> tuple:
    """(particle file, index or None, data folder or None) a run trained on, as recorded."""
    from cryoscape.core.analysis.runfiles import dataset_path, particle_index

    path = run.particles_path
    if path is None or not path.exists():
        raise CryoscapeError(f"{run.path}: its particle file {path or '(none recorded)'} is not "
                             "found here; evaluate the images with `cryoscape eval-images`")
    return path, particle_index(run), dataset_path(run, "datadir")


def default_fit_path(run, epoch: int | None = None) -> Path:
    """Where `cryoscape eval-images` writes by default: RUN/eval_images.EPOCH.npz ('final'
    for the final weights), where the explorer looks for it."""
    return Path(run.path) / f"eval_images.{'final' if epoch is None else int(epoch)}.npz"


def _particle_index(ind, n: int) -> np.ndarray:
    if ind is None:
        return np.arange(n, dtype=np.int64)
    if isinstance(ind, (str, os.PathLike)):
        from cryoscape.core.io.cryodrgn import load_index
        ind = load_index(ind)
    return np.asarray(ind, dtype=np.int64)


CSV_HEADER = "index,mse,kl,flagged"


def write_fit(fit: ImageFit, path: str | os.PathLike) -> Path:
    """fit.npz (arrays index, mse, kl, flagged and the threshold, k) or fit.csv (a header
    line `# threshold ..., k ...`, then index,mse,kl,flagged rows), atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    flagged = fit.flagged
    if suffix == ".npz":
        with atomic_open(path, "wb") as f:
            np.savez(f, index=fit.index, mse=fit.mse, kl=fit.kl, flagged=flagged,
                     threshold=np.float64(fit.threshold), k=np.float64(fit.k))
    elif suffix == ".csv":
        with atomic_open(path, "w") as f:
            f.write(f"# threshold {fit.threshold:.9g}, k {fit.k:g} ({fit.rule})\n"
                    f"{CSV_HEADER}\n")
            for i, m, q, b in zip(fit.index, fit.mse, fit.kl, flagged):
                f.write(f"{i},{m:.9g},{q:.9g},{int(b)}\n")
    else:
        raise InputFileError(path, "the output must be a .npz or a .csv file")
    return path


def load_fit(path: str | os.PathLike) -> ImageFit:
    """An ImageFit written by `write_fit` (.npz or .csv)."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as d:
                return ImageFit(mse=d["mse"], kl=d["kl"], index=d["index"], k=float(d["k"]))
        with open(path) as f:
            first = f.readline()
            k = float(first.split(", k ")[1].split()[0])
            if f.readline().strip() != CSV_HEADER:
                raise ValueError(f"no '{CSV_HEADER}' header")
            rows = np.loadtxt(f, delimiter=",", ndmin=2)
        return ImageFit(mse=rows[:, 1].astype(np.float32), kl=rows[:, 2].astype(np.float32),
                        index=rows[:, 0].astype(np.int64), k=k)
    except (OSError, KeyError, ValueError, IndexError) as e:
        raise InputFileError(path, f"not a per-image fit file ({e})") from None


def plot_fit(fit: ImageFit, path: str | os.PathLike) -> Path:
    """Histogram of the per-image errors with the outlier threshold marked."""
    from cryoscape.core.analysis.plots import plot_histogram

    counts, edges = np.histogram(fit.mse, bins=100)
    return plot_histogram(path, counts, edges, f"per-image error: {int(fit.flagged.sum())} of "
                          f"{len(fit.mse)} above the threshold", "reconstruction error (MSE)",
                          vline=fit.threshold)
