"""The paper's Tables 1 and 2 (Zhong et al., ICLR 2020), side by side with cryoDRGN 4.3.1.

Datasets (appendix D.1, from core/simulate; CTF, shifts uniform in +-5 px as D.1, SNR 0.1):
linear 1D motion, linear 2D motion, circular 1D motion and 10 discrete states, each simulated
with its tilt pairs (D.2: the stage tilted 45 degrees about x; particles_tilt.mrcs), and the
homogeneous set of Table 1. Runs on each (3x256 encoder and decoder on both sides, seed 0;
`cryoscape train` in its own process, one run at a time on --threads threads):
- cryoscape with the known poses, zdim as the paper (1 for linear 1D, 10 for the others) and
  zdim 8 (--full); cryoDRGN 4.3.1 `train_vae` on the same files, architecture, epochs, batch
  and learning rate (the scale's);
- cryoscape ab initio (`--pose-search`: 1 epoch with random poses, search epochs, then pose
  refinement), zdim as the paper and 8 (zdim 0 on the homogeneous set: Table 1);
  cryoDRGN's ab initio (`abinit_het` / `abinit_homo`) only in --full: measured at ~50 s per
  image on this machine (benchmarks/ab_initio.py), it does not fit any CPU budget;
- tilt pairs (`--tilt particles_tilt.mrcs --tilt-deg 45`) where `cryoscape train --help` lists
  --tilt (rows say 'not available' otherwise); cryoDRGN 4.3.1's train_vae has no tilt-pair
  mode (only cryoDRGN-ET tilt series), its abinit_het_old does (--full only).

Metrics per run (core/analysis/benchmark_metrics): the map decoded at each of 100 evenly spaced
images' z against that image's true map: FSC = 0.5 resolution in px (Table 2; 2 px is Nyquist)
and CryoBench's area under the FSC curve; how z recovers the truth (|Spearman| of PC1 for
linear 1D, linear-fit R^2 for 2D, (cos, sin)-fit R^2 for circular, ARI of k-means for
discrete); for pose-search runs the pose error (core/poseerror: median ||R - R_true B||_F^2
as Table 1, rotation in degrees, translation in px) and maps compared in the truth frame
(global rotation, hand and offset of the pose fit; ab_initio.decode_in_frame). The paper's
numbers stand beside them, labelled as the paper's (D=64 for Table 2 and D=128 for Table 1, 50k
images, no CTF, its own BNB pose search).

Scales (SCALES): `--toy` for the test (D=16, 40 images, 1-2 epochs, 1x16 networks);
`--quick` for this 2-core machine: D=64, 1500 images per set, 30 epochs with known poses (15
with tilt pairs) at batch 32 and learning rate 4e-4 for both tools, ab initio on the 1500
images at cryoscape's defaults (batch 8; the 2 random-pose + 8 searched epochs `train`
chooses for 1500 images, then 2 refined rather than 10, for time; with tilt pairs only in
--full), zdim as the paper only (zdim 8 in --full), 100 images evaluated: 21 rows (17 runs:
cryoDRGN has no tilt pairs), estimated 2.9 h on a quiet machine (RATES), 0.80 expected of
the linear set's |Spearman| (below).
Sized by measurement (linear set, cryoscape, zdim 1, |Spearman| of z with the coordinate):
heterogeneity needs passes: at batch 8 and lr 1e-4 (both tools' defaults) 10 epochs give
0.09, 30 give 0.61, 45 0.88, 60 0.93 (10.4 min; cryoDRGN, at 43 img/s, ~35 min a run: eight
such rows of cryoDRGN alone pass 3 h); lr 5e-4 / 1e-3 at batch 8: 0.32 / 0.52 after 20
epochs; the encoder's input cut to 12 px: 0.02; batch 32 with lr 4e-4: 0.80 after 30 epochs,
0.90 after 40 (196 img/s; cryoDRGN at batch 32: 39 img/s); D=32 (8 A/px) 60 epochs: 0.25. The
suite stays under 3 h only below the passes that reach 0.95 on this machine. `--full`: the
paper's 50k images, 40 epochs (20 with tilt pairs), batch 8, for a GPU. `--plan` prints a
scale's runs and estimates; `--n` and `--epochs` shrink or grow a scale (its work folder is
named after them).

Every step is cached under --work (by default a folder named after the scale and a digest of
its sizes, so a re-sized scale starts afresh): a dataset is simulated once, a run
that finished is not redone (an interrupted one resumes: cryoscape --resume, cryoDRGN
--load latest), its metrics are kept in results/<dataset>/<run>.json; `--tables-only` redraws
the tables and figures from the cached results.

    xvfb-run -a python benchmarks/paper.py --quick [--plan] [--tables-only] [--no-cryodrgn]
        [--isosurfaces] [--datasets linear 2d ...] [--n N] [--epochs E] [--threads 2]
        [--no-write] [--variants CHANGE ...]

Writes tables and pictures into benchmarks/paper/<scale>/ and section `paper_<scale>` of
BENCHMARKS.md. `--variants` (issue 11's "then beat it") instead runs cryoscape's known-pose
runs again with each change of VARIANTS (learning-rate schedules, a KL warm-up, no weight
averaging or a longer one, the paper's positional encoding and Hartley domain, more epochs, a
larger batch, the encoder's input radius; seed1 changes only the seed, the noise floor) beside
the defaults' and cryoDRGN's runs (cached with the suite's), and the search-* changes
cryoscape's ab initio runs on every dataset (weight averaging; search-seed1 the noise floor),
and writes section `paper_<scale>_tried`: every change measured so far, whether it wins on all
datasets (beyond what another seed moves), losers included.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from _report import BENCHMARKS, command, write_section
from _timing import timed

HERE = Path(__file__).resolve().parent
CRYODRGN = HERE / "_cryodrgn_venv" / "bin" / "cryodrgn"
TILT_DEG = 45.0
SNR = 0.1
MAX_SHIFT = 5.0

# kind: (title, zdim as the paper)
KINDS = {"linear": ("linear 1D motion", 1), "2d": ("linear 2D motion", 10),
         "circular": ("circular 1D motion", 10), "discrete": ("10 discrete states", 10),
         "homogeneous": ("homogeneous (Table 1)", 0)}
# The paper's Table 2 / S4 (cryoDRGN, BNB pose search, D=64, 50k images, no CTF): FSC=0.5
# resolution in px, mean (sd) over 100 images, at the paper's zdim; with tilt pairs
PAPER_T2 = {"linear": ((2.50, 0.62), (2.35, 0.36)), "2d": ((4.44, 2.50), (2.93, 1.02)),
            "circular": ((4.05, 2.40), (2.63, 0.74)), "discrete": ((4.95, 3.16), (2.58, 1.00))}
# The paper's Table 1 (D=128, 50k images, no CTF, shifts +-10 px): median rotation error
# ||R - R_true||_F^2 / median translation error (px), noiseless and SNR 0.1
PAPER_T1 = {"cryoSPARC": ((0.0009, 0.47), (0.002, 0.64)),
            "cryoDRGN": ((0.0004, 0.27), (0.003, 0.38))}


@dataclass(frozen=True)
class Scale:
    """Sizes of one scale: images per dataset `n` (pose-search runs on the first `n_search`),
    box D, epochs with known poses (`tilt_epochs` with tilt pairs) at `batch` and learning rate
    `lr` (None: the tools' default) for both tools, ab initio epochs (`pretrain` random-pose
    epochs + `search` searched + the rest refined, `search_total` in all; batch 8, cryoscape's
    defaults otherwise), encoder/decoder layers x width, images evaluated, whether zdim 8 runs
    beside the paper's (with known poses; `search_zdim8`: ab initio too), whether ab initio
    runs with tilt pairs too, and whether cryoDRGN's ab initio runs."""
    n: int
    n_search: int
    D: int
    epochs: int
    tilt_epochs: int
    batch: int
    lr: float | None
    pretrain: int
    search: int
    search_total: int
    layers: int
    width: int
    eval: int
    zdim8: bool
    search_zdim8: bool
    search_tilt: bool
    cryodrgn_abinit: bool


SCALES = {
    # the test: seconds
    "toy": Scale(n=40, n_search=40, D=16, epochs=1, tilt_epochs=1, batch=8, lr=None,
                 pretrain=1, search=1, search_total=2, layers=1, width=16, eval=6,
                 zdim8=False, search_zdim8=False, search_tilt=False, cryodrgn_abinit=False),
    # this 2-core machine in < 3 hours (see the module, RATES and --plan)
    # (ab initio: the pretraining and search epochs `train` chooses for 1500 images,
    # core/train/abinit.auto_schedule, with 2 refinement epochs rather than 10 for time; 500
    # images with 1 + 2 epochs gave the search no decoder to align against)
    "quick": Scale(n=1500, n_search=1500, D=64, epochs=30, tilt_epochs=15, batch=32, lr=4e-4,
                   pretrain=2, search=8, search_total=12, layers=3, width=256, eval=100,
                   zdim8=False, search_zdim8=False, search_tilt=False, cryodrgn_abinit=False),
    # the paper's sizes (D.3: 40 epochs, 20 with tilt pairs), for a GPU
    "full": Scale(n=50000, n_search=50000, D=64, epochs=40, tilt_epochs=20, batch=8, lr=None,
                  pretrain=1, search=4, search_total=40, layers=3, width=256, eval=100,
                  zdim8=True, search_zdim8=True, search_tilt=True, cryodrgn_abinit=True),
}

# Throughput in images (tilt pairs: particles) per second and evaluation cost on this machine
# (2 CPUs, D=64, 3x256, --threads 2): with known poses at the quick scale's batch 32 and lr
# 4e-4, cryoscape 196 img/s and cryoDRGN train_vae 39 (1500 images, load ~2, 2026-12-07; at
# batch 8: 144 and 43); cryoscape ab initio (batch 8) at load ~1: pretraining ~100, search
# epochs 43 and refinement 21 img/s (with tilt pairs about half, in particles); per-image
# evaluation ~1 s (decoding a 3x256 map on the 64^3 sphere is ~70 GFLOP). Shared with other
# work the machine ran 5-8x slower (load ~4-8: benchmarks/_work/paper_timing). Tilt pairs are
# counted as two images per particle.
RATES = {"load ~1": {"cryoscape_known": 196.0, "cryodrgn_known": 39.0,
                     "cryoscape_search": 43.0, "cryoscape_refine": 21.0, "start_s": 8.0,
                     "eval_s": 1.0},
         "load ~4": {"cryoscape_known": 35.0, "cryodrgn_known": 7.0, "cryoscape_search": 7.8,
                     "cryoscape_refine": 3.9, "start_s": 20.0, "eval_s": 5.0}}


@dataclass(frozen=True)
class Variant:
    """A change to cryoscape's method tried against its defaults (issue 11: "then beat it"):
    `args` added to its `cryoscape train` with known poses (`search`: to its ab initio runs,
    on every dataset; `heterogeneous`: on those with classes), its epochs times `epochs` (ab
    initio: `search_epochs` searched, the refinement's unchanged), measured against the runs of
    the variant `against` (default: of the defaults)."""
    what: str
    args: tuple[str, ...] = ()
    epochs: float = 1.0
    search: bool = False
    search_epochs: int | None = None
    heterogeneous: bool = False
    against: str = ""

    def runs_on(self, kind: str) -> bool:
        """Whether the change applies to dataset `kind` (a change to the classes: not to
        homogeneous data)."""
        return not (self.heterogeneous and kind == "homogeneous")


VARIANTS = {
    "seed1": Variant("nothing changed but the seed: how far a change must move to count",
                     ("--seed", "1")),
    "cosine": Variant("learning rate decayed along a half cosine to 0 by the last epoch",
                      ("--lr-schedule", "cosine")),
    "warmup-cosine": Variant("1 epoch of linear warm-up, then the cosine decay",
                             ("--lr-schedule", "cosine", "--lr-warmup", "1")),
    "kl-warmup": Variant("the KL weight rising linearly from 0 over the first 5 epochs",
                         ("--beta-warmup", "5")),
    "no-average": Variant("weights (and z) saved as the last step's, not as their moving "
                          "average over ~2 epochs (the default since it won here)",
                          ("--weight-average", "0")),
    "average5": Variant("the moving average of the weights over ~5 epochs, not ~2",
                        ("--weight-average", "5")),
    "pe-geom-lowf": Variant("the paper's positional encoding (geom_lowf) for the Gaussian "
                            "features", ("--pe-type", "geom_lowf")),
    "hartley": Variant("the decoder in the Hartley domain, as the paper", ("--domain",
                                                                            "hartley")),
    "epochs2x": Variant("twice the epochs (more epochs in cryoDRGN's wall time)", epochs=2.0),
    "batch64": Variant("batch 64 at twice the learning rate (8e-4): half the steps",
                       ("-b", "64", "--lr", "8e-4")),
    "enc-mask24": Variant("the encoder sees the image within 24 px of the centre, not 32",
                          ("--enc-mask", "24")),
    "search-seed1": Variant("ab initio, nothing changed but the seed", ("--seed", "1"),
                            search=True),
    "search-average": Variant("ab initio with the weights saved as their moving average over "
                              "~2 epochs after the search (the default with known poses)",
                              ("--weight-average", "2"), search=True),
    "search-16": Variant("ab initio with 16 search epochs, not 8: each of the 2 classes' maps "
                         "trained on ~12000 images before the refinement, as one map needed",
                         search=True, heterogeneous=True, search_epochs=16),
    "search-16-seed1": Variant("search-16 at seed 1, against search-seed1", ("--seed", "1"),
                               search=True, heterogeneous=True, search_epochs=16,
                               against="search-seed1"),
}
# per kind of run (pose search or not): the variant that changes only the seed
SEED_VARIANT = {False: "seed1", True: "search-seed1"}


@dataclass(frozen=True)
class Spec:
    """One training: tool, poses searched or given, zdim, tilt pairs, a `VARIANTS` name."""
    tool: str
    search: bool
    zdim: int
    tilt: bool = False
    variant: str = ""

    @property
    def name(self) -> str:
        return (f"{self.tool}_{'search' if self.search else 'known'}_z{self.zdim}"
                f"{'_tilt' if self.tilt else ''}{'+' + self.variant if self.variant else ''}")

    @property
    def label(self) -> str:
        tool = "cryoscape" if self.tool == "cryoscape" else "cryoDRGN 4.3.1"
        how = ("ab initio" if self.search else "known poses") + (" + tilt" if self.tilt else "")
        return f"{tool}, {how}, zdim {self.zdim}" + (f", {self.variant}" if self.variant else "")


def plan(scale: Scale, kinds, variants=()) -> list[tuple[str, Spec]]:
    """(dataset, run) pairs of a scale, in the order they run; with `variants` (VARIANTS
    names) instead: on every heterogeneous dataset, the known-pose runs of both tools (zdim as
    the paper) and cryoscape's again with each change; for changes to ab initio, on every
    dataset, cryoscape's ab initio run and again with each change."""
    out = []
    for kind in kinds:
        zp = KINDS[kind][1]
        if variants:
            known = [v for v in variants if not VARIANTS[v].search]
            search = [v for v in variants if VARIANTS[v].search and VARIANTS[v].runs_on(kind)]
            if known and kind != "homogeneous":
                out += [(kind, Spec(tool, False, zp)) for tool in ("cryoscape", "cryodrgn")]
                out += [(kind, Spec("cryoscape", False, zp, variant=v)) for v in known]
            if search:
                rows = dict.fromkeys(["", *(VARIANTS[v].against for v in search), *search])
                out += [(kind, Spec("cryoscape", True, zp, variant=v)) for v in rows]
            continue
        if kind == "homogeneous":
            out.append((kind, Spec("cryoscape", True, 0)))
            if scale.cryodrgn_abinit:
                out.append((kind, Spec("cryodrgn", True, 0)))
            continue
        zs = [zp] + ([8] if scale.zdim8 and zp != 8 else [])
        for z in zs:
            for tilt in (False, True):
                for tool in ("cryoscape", "cryodrgn"):
                    out.append((kind, Spec(tool, False, z, tilt)))
        for z in zs if scale.search_zdim8 else [zp]:
            for tilt in (False, True) if scale.search_tilt else (False,):
                out.append((kind, Spec("cryoscape", True, z, tilt)))
                if scale.cryodrgn_abinit:
                    out.append((kind, Spec("cryodrgn", True, z, tilt)))
    return out


def estimate_s(scale: Scale, runs, rates: dict) -> float:
    """Seconds a plan takes at `rates` (a RATES entry); runs not made here (cryoDRGN's ab
    initio and tilt pairs) left out."""
    t = 0.0
    for kind, s in runs:
        if s.tool == "cryodrgn" and (s.search or s.tilt):
            continue
        pairs = 2 if s.tilt else 1
        t += rates["start_s"] + scale.eval * rates["eval_s"]
        if s.search:
            searched, epochs = search_epochs(s, scale)
            refine = epochs - scale.pretrain - searched
            t += scale.n_search * pairs * (scale.pretrain / rates["cryoscape_known"]
                                           + searched / rates["cryoscape_search"]
                                           + refine / rates["cryoscape_refine"])
        else:
            t += scale.n * known_epochs(s, scale) * pairs / rates[f"{s.tool}_known"]
    return t


# ---- data and runs --------------------------------------------------------------------------
def dataset(work: Path, kind: str, scale: Scale) -> Path:
    """The simulated dataset of `kind` (simulated once; poses.pkl is written last)."""
    from cryoscape.core.simulate.dataset import simulate
    path = work / "data" / kind
    if not (path / "poses.pkl").exists():
        print(f"simulating {kind} ({scale.n} images, D={scale.D}) ...", flush=True)
        simulate(kind, scale.n, path, D=scale.D, snr=SNR, ctf=True, max_shift=MAX_SHIFT,
                 states=10, seed=list(KINDS).index(kind),
                 tilt_deg=None if kind == "homogeneous" else TILT_DEG, progress=True)
    return path


def cryoscape_has_tilt() -> bool:
    """Whether `cryoscape train --help` lists --tilt (tilt pairs)."""
    out = subprocess.run([sys.executable, "-m", "cryoscape.app.cli", "train", "--help"],
                         capture_output=True, text=True, check=False).stdout
    return re.search(r"--tilt\s+\w", out) is not None


def unavailable(spec: Spec, has_tilt: bool, has_cryodrgn: bool) -> str | None:
    """Why a run cannot be made here (None: it can)."""
    if spec.tool == "cryodrgn" and spec.tilt and not spec.search:
        return ("not available: cryoDRGN 4.3.1's train_vae has no tilt pairs (only "
                "cryoDRGN-ET tilt series; abinit_het_old has them)")
    if spec.tool == "cryodrgn" and not has_cryodrgn:
        return "cryoDRGN not run (no benchmarks/_cryodrgn_venv, or --no-cryodrgn)"
    if spec.tool == "cryoscape" and spec.tilt and not has_tilt:
        return "not available: `cryoscape train` has no --tilt yet"
    return None


def known_epochs(spec: Spec, scale: Scale) -> int:
    """Epochs of a known-pose run."""
    epochs = scale.tilt_epochs if spec.tilt else scale.epochs
    return round(epochs * VARIANTS[spec.variant].epochs) if spec.variant else epochs


def search_epochs(spec: Spec, scale: Scale) -> tuple[int, int]:
    """(searched, in all) epochs of an ab initio run."""
    searched = (spec.variant and VARIANTS[spec.variant].search_epochs) or scale.search
    return searched, scale.search_total + searched - scale.search


def train_command(spec: Spec, data: Path, out: Path, scale: Scale, threads: int,
                  resume: bool) -> list[str]:
    """The training command of `spec` on `data` (resuming an interrupted run)."""
    arch = ["--enc-dim", str(scale.width), "--enc-layers", str(scale.layers),
            "--dec-dim", str(scale.width), "--dec-layers", str(scale.layers)]
    epochs = search_epochs(spec, scale)[1] if spec.search else known_epochs(spec, scale)
    files = [str(data / "particles.mrcs"), "--ctf", str(data / "ctf.pkl")]
    if spec.search and scale.n_search < scale.n:
        files += ["--ind", str(data / f"ind{scale.n_search}.pkl")]
    if not spec.search:
        files += ["--poses", str(data / "poses.pkl")]
    tilt = (["--tilt", str(data / "particles_tilt.mrcs"), "--tilt-deg", f"{TILT_DEG:g}"]
            if spec.tilt else [])
    rate = ["-b", "8"] if spec.search else ["-b", str(scale.batch)] + (
        ["--lr", f"{scale.lr:g}"] if scale.lr else [])
    common = [*files, "--zdim", str(spec.zdim), "-n", str(epochs), *rate, *arch,
              "--seed", "0", *tilt, "-o", str(out)]
    if spec.tool == "cryoscape":
        if resume:
            return [sys.executable, "-m", "cryoscape.app.cli", "train", "--resume", "-o",
                    str(out), "-n", str(epochs), "--threads", str(threads), "--no-progress"]
        search = (["--pose-search", "--pretrain-epochs", str(scale.pretrain),
                   "--search-epochs", str(search_epochs(spec, scale)[0])] if spec.search
                  else [])
        change = VARIANTS[spec.variant].args if spec.variant else ()
        return [sys.executable, "-m", "cryoscape.app.cli", "train", *common, *search, *change,
                "--threads", str(threads), "--no-progress"]
    load = ["--load", "latest"] if resume else []
    if spec.search and spec.tilt:     # tilt pairs: only cryoDRGN's old ab initio has them
        return [str(CRYODRGN), "abinit_het_old", *common, *load]
    return [str(CRYODRGN), "abinit" if spec.search else "train_vae", *common, *load,
            "--max-threads", str(threads), "--no-analysis"]


def train(spec: Spec, data: Path, out: Path, scale: Scale, threads: int) -> dict:
    """Run `spec` unless it finished before (out/bench.json); resume an interrupted one."""
    record = out / "bench.json"
    if record.exists():
        return json.loads(record.read_text())
    resume = (out / "checkpoint.pt").exists() if spec.tool == "cryoscape" else \
        any(out.glob("weights.*.pkl"))
    if out.exists() and not resume:
        shutil.rmtree(out)
    if spec.search and scale.n_search < scale.n:
        from cryoscape.core.io.cryodrgn import save_index
        save_index(data / f"ind{scale.n_search}.pkl", range(scale.n_search))
    cmd = train_command(spec, data, out, scale, threads, resume)
    print(("resuming: " if resume else "running: ") + " ".join(cmd), flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    log = out.parent / f"{out.name}.log"
    wall = timed(cmd, threads, log, name=spec.name, append=True)
    rec = {"wall_s": wall, "resumed": resume, "command": " ".join(cmd[1:] if spec.tool ==
                                                                   "cryoscape" else cmd)}
    from cryoscape.core.io.atomic import atomic_open
    with atomic_open(record, "w") as f:
        json.dump(rec, f)
    return rec


def epoch_seconds(spec: Spec, out: Path) -> list[float]:
    """Seconds of each epoch (each tool's own log)."""
    from train_throughput import epoch_times
    return epoch_times(spec.tool, out, out.parent / f"{out.name}.log")


# ---- metrics --------------------------------------------------------------------------------
def evaluate(kind: str, spec: Spec, data: Path, out: Path, scale: Scale, figs: Path,
             iso: bool = False) -> dict:
    """Metrics of a finished run (and its pictures): see the module docstring."""
    from cryoscape.core.analysis import benchmark_metrics as bm
    from cryoscape.core.run import Run
    truth = dict(np.load(data / "truth.npz"))
    n = scale.n_search if spec.search else scale.n
    truth = {k: (v[:n] if k in ("coords", "state", "rotations", "shifts") else v)
             for k, v in truth.items()}
    D, apix = int(truth["D"]), float(truth["apix"])
    run = Run.open(out)
    z = run.latents() if spec.zdim else np.zeros((n, 0), np.float32)
    res = {"n": n, "recovery": bm.latent_recovery(kind, z, truth) if spec.zdim else None}
    if spec.search:
        from cryoscape.core.poseerror import pose_error
        R, t = run.poses()
        pe = pose_error(R, truth["rotations"], t, truth["shifts"])
        res["pose"] = {k: pe[k] for k in ("hand", "median_frob2", "median_angle_deg",
                                          "median_trans_px")}
    decode = decoder_in_truth_frame(run, pe if spec.search else None)
    idx = bm.eval_indices(n, scale.eval)
    acc = bm.per_image_accuracy(decode, kind, truth, z, idx, D, apix)
    res.update(mean_res_px=acc["mean_res_px"], std_res_px=acc["std_res_px"],
               median_res_px=float(np.median(acc["res_px"])), mean_auc=acc["mean_auc"],
               sd_auc=float(acc["auc"].std()))
    from cryoscape.core.io.atomic import atomic_open
    with atomic_open(figs.parent / "curves" / f"{kind}_{spec.name}.npz", "wb") as f:
        np.savez(f, freq=acc["freq"], curves=acc["curves"], res_px=acc["res_px"],
                 auc=acc["auc"])
    res["figures"] = [] if spec.variant else pictures(kind, spec, z, truth, decode, D * apix,
                                                      figs, iso)
    return res


def decoder_in_truth_frame(run, pose_fit: dict | None):
    """z (or an empty row) -> the run's map; with an ab initio run's pose fit, the map brought
    into the truth frame (global rotation, hand and offset of the fit)."""
    zdim = run.zdim
    if pose_fit is None:
        return lambda zi: run.decode(zi[None] if zdim else None)[0]
    from ab_initio import Frame, decode_in_frame
    frame, decoder = Frame.of(pose_fit), run.model().decoder.float()
    return lambda zi: decode_in_frame(decoder, zi if zdim else None, run.D, run.norm, frame.M,
                                      frame.p)


def pictures(kind: str, spec: Spec, z, truth: dict, decode, box_A: float, figs: Path,
             iso: bool = False) -> list[str]:
    """The latent scatter coloured by the truth and a row of maps along the latent space
    (projections; with `iso`, isosurfaces rendered offscreen too)."""
    from cryoscape.core.analysis.plots import plot_map_montage, plot_scatter
    from cryoscape.core.analysis.trajectory import pc_traversal
    names = []
    if not spec.zdim:
        return names
    colours = ({"state": truth["state"]} if kind == "discrete" else
               {f"t{j + 1}": np.asarray(truth["coords"]).reshape(len(z), -1)[:, j]
                for j in range(np.asarray(truth["coords"]).reshape(len(z), -1).shape[1])})
    for key, c in colours.items():
        if spec.zdim == 1:
            xy, axes = np.stack([np.asarray(c, float), z[:, 0]], 1), (f"true {key}", "z")
        else:
            from cryoscape.core.analysis.embed import pca
            xy, axes = pca(z).coords[:, :2], ("PC1", "PC2")
        cmap = {"state": "tab10"}.get(key, "twilight" if kind == "circular" else "viridis")
        name = f"{kind}_{spec.name}_latent_{key}.png"
        plot_scatter(figs / name, xy, title=f"{KINDS[kind][0]}: {spec.label}\ncoloured by the "
                     f"true {key}", labels=axes, color=c, cmap=cmap)
        names.append(name)
    points, values = pc_traversal(z, 1, n=8)
    name = f"{kind}_{spec.name}_maps.png"
    maps, titles = [decode(p) for p in points], [f"PC1 {v:.2g}" for v in values]
    plot_map_montage(figs / name, maps, titles=titles,
                     title=f"{KINDS[kind][0]}: {spec.label}, maps along PC1 (projections)")
    names.append(name)
    if iso:
        from _isosurfaces import isosurface_row
        name = f"{kind}_{spec.name}_iso.png"
        if isosurface_row(maps, titles, box_A, figs / name,
                          f"{KINDS[kind][0]}: {spec.label}, maps along PC1"):
            names.append(name)
    return names


def truth_pictures(kind: str, D: int, figs: Path, iso: bool = False) -> None:
    """A row of the true maps along the coordinate (or the states): projections and, with
    `iso`, isosurfaces."""
    from cryoscape.core.analysis.plots import plot_map_montage
    from cryoscape.core.simulate.volumes import make_volume
    if kind == "homogeneous" or ((figs / f"{kind}_truth_maps.png").exists()
                                 and (not iso or (figs / f"{kind}_truth_iso.png").exists())):
        return
    pts = (list(range(10)) if kind == "discrete" else
           [np.array([t, 0.5]) for t in np.linspace(0, 1, 8)] if kind == "2d" else
           list(np.linspace(0, 1, 8, endpoint=kind != "circular")))
    maps = [make_volume(kind, p, D) for p in pts]
    titles = [str(p if kind == "discrete" else np.round(np.ravel(p)[0], 2)) for p in pts]
    plot_map_montage(figs / f"{kind}_truth_maps.png", maps, titles=titles,
                     title=f"{KINDS[kind][0]}: true maps (projections)")
    if iso:
        from _isosurfaces import isosurface_row
        from cryoscape.core.simulate.volumes import MODEL_BOX_A
        isosurface_row(maps, titles, MODEL_BOX_A, figs / f"{kind}_truth_iso.png",
                       f"{KINDS[kind][0]}: true maps")


def fsc_picture(kind: str, specs: list[Spec], curves: Path, figs: Path) -> str | None:
    """Mean per-image FSC curve of every run on a dataset."""
    from cryoscape.core.metrics import plot_fsc
    ys = {}
    for s in specs:
        p = curves / f"{kind}_{s.name}.npz"
        if p.exists():
            c = np.load(p)
            freq, ys[s.label] = c["freq"], np.nanmean(c["curves"], 0)
    if not ys:
        return None
    name = f"{kind}_fsc.png"
    plot_fsc(figs / name, freq, ys, title=f"{KINDS[kind][0]}: mean per-image FSC vs the truth")
    return name


# ---- report ---------------------------------------------------------------------------------
def _f(x, fmt="{:.2f}") -> str:
    return "-" if x is None else fmt.format(x)


def tables(results: dict, runs, scale_name: str, scale: Scale, notes: dict, figs: Path,
           figs_rel: str, header: str) -> str:
    """BENCHMARKS.md section: Table 2 per dataset, Table 1, the goals, the pictures."""
    from cryoscape.core.analysis.benchmark_metrics import RECOVERY_METRIC
    lines = [f"## The paper's tables, side by side with cryoDRGN ({scale_name})", "", header, ""]
    lines += [("Per-image accuracy over "
               f"{scale.eval} images: FSC = 0.5 resolution in px, mean (sd) (lower is better; 2 "
               f"is Nyquist, {scale.D / (scale.D // 2 - 1):.2f} the best possible here: "
               "cryoDRGN's FSC shells stop at D/2 - 1) and FSC area (CryoBench; cycles/px, at most ~0.5). Recovery: "
               + "; ".join(f"{k} {v}" for k, v in RECOVERY_METRIC.items()) + ". Pose error "
               "of ab initio runs: median ||R - R_true B||_F^2 / median shift error (px). "
               "Rows marked *paper* are the paper's numbers (D=64, 50k images, no CTF, BNB "
               "pose search), not runs made here."), ""]
    head = ("| run | images | epochs | FSC=0.5 res, px | FSC area | recovery | pose error | "
            "s/epoch | wall, min |")
    for kind in KINDS:
        rows = [(s, results.get((kind, s.name))) for k, s in runs if k == kind]
        if not rows:
            continue
        lines += [f"### {KINDS[kind][0]}", "", head, "|---|---|---|---|---|---|---|---|---|"]
        if kind in PAPER_T2:
            for (m, sd), how in zip(PAPER_T2[kind], ("ab initio", "ab initio + tilt")):
                lines.append(f"| *paper: cryoDRGN, {how}, zdim {KINDS[kind][1]}* | 50000 | "
                             f"{40 if how == 'ab initio' else 20} | *{m:.2f} ({sd:.2f})* | - | "
                             "- | - | - | - |")
        for s, r in rows:
            if r is None:
                lines.append(f"| {s.label} | {notes.get((kind, s.name), 'not run yet')} "
                             "| | | | | | | |")
                continue
            pose = (f"{r['pose']['median_frob2']:.4f} / {r['pose']['median_trans_px']:.2f}"
                    if r.get("pose") else "-")
            ep = r["epoch_s"]
            lines.append(f"| {s.label} | {r['n']} | {len(ep)} | {r['mean_res_px']:.2f} "
                         f"({r['std_res_px']:.2f}) | {r['mean_auc']:.4f} | "
                         f"{_f(r['recovery'], '{:.3f}')} | {pose} | "
                         f"{_f(float(np.median(ep)) if ep else None, '{:.0f}')} | "
                         f"{r['wall_s'] / 60:.1f} |")
        pics = [p for s, r in rows if r for p in r.get("figures", [])]
        pics = [p for p in [f"{kind}_truth_maps.png", f"{kind}_truth_iso.png",
                            f"{kind}_fsc.png", *pics]
                if (figs / p).exists()]
        lines += ["", " ".join(f"[{p}]({figs_rel}/{p})" for p in pics), ""]
    if any(k == "homogeneous" for k, _ in runs):
        lines += ["### Table 1: pose error (homogeneous)", "",
                  "| method | median ||ΔR||_F^2 | median shift error (px) |", "|---|---|---|"]
        for m, vals in PAPER_T1.items():
            for (fro, tr), noise in zip(vals, ("no noise", "SNR 0.1")):
                lines.append(f"| *paper: {m}, {noise} (D=128)* | *{fro}* | *{tr}* |")
        for k, s in runs:
            r = results.get((k, s.name))
            if k == "homogeneous" and r and r.get("pose"):
                lines.append(f"| {s.label}, SNR 0.1 (D={scale.D}, CTF) | "
                             f"{r['pose']['median_frob2']:.4f} | "
                             f"{r['pose']['median_trans_px']:.2f} |")
        lines.append("")
    lines += ["### Goals (issue 11)", "", "| goal | result | met |", "|---|---|---|"]
    lines += [f"| {g} | {v} | {ok} |" for g, v, ok in goals(results, runs)]
    return "\n".join(lines)


def tried(results: dict, header: str) -> str:
    """BENCHMARKS.md section: every change of VARIANTS measured so far against cryoscape's
    defaults, known-pose changes on every heterogeneous dataset, then ab initio changes on
    every dataset."""
    lines = ["## What was tried to beat cryoDRGN (issue 11)", "", header, "",
             ("Each change is cryoscape's known-pose run (zdim as the paper) made again with one "
              "setting changed. A cell gives the change of the mean per-image FSC area from the "
              "defaults' run (the same images), then the recovery of the truth and the wall "
              "time. A change wins on a dataset where its area is higher by more than another "
              "seed moves it (seed1) and its recovery lower by at most 0.05 or what another "
              "seed moves it, the larger; only a change that wins on all of them becomes a "
              "default."), "", *_tried_table(results, search=False)]
    search = _tried_table(results, search=True)
    if len(search) > 3:                           # an ab initio change was measured
        lines += ["", "### Changes to ab initio", "",
                  ("The same for cryoscape's ab initio runs (pose search, zdim as the paper; "
                   "homogeneous: zdim 0), each cell also giving the median rotation error; a "
                   "change wins on a dataset where, besides, that error is higher by at most "
                   "0.1 degrees or what another seed (search-seed1) moves it, the larger."),
                  "", *search]
    return "\n".join(lines)


# what a tried table compares, per run's results
MEASURES = {"area": lambda r: r["mean_auc"], "recovery": lambda r: r["recovery"],
            "angle": lambda r: (r.get("pose") or {}).get("median_angle_deg")}


def _tried_table(results: dict, search: bool) -> list[str]:
    """The rows of the tried table of known-pose (or ab initio) changes: the defaults', then
    every change measured."""
    kinds = [k for k in KINDS if search or k != "homogeneous"]
    lines = ["| change | " + " | ".join(KINDS[k][0] for k in kinds) + " | wins on all |",
             "|---|" + "---|" * (len(kinds) + 1)]

    def measured(r, value):
        angle = MEASURES["angle"](r)
        return (f"{value}" + ("" if r["recovery"] is None else
                              f", recovery {r['recovery']:.3f}")
                + ("" if angle is None else f", {angle:.2f} deg")
                + f", {r['wall_s'] / 60:.1f} min")

    bases = ([("cryoscape", "cryoscape's ab initio defaults")] if search else
             [("cryoscape", "cryoscape's defaults"),
              ("cryodrgn", "cryoDRGN 4.3.1, the same settings")])
    for tool, label in bases:
        cells = [results.get((k, Spec(tool, search, KINDS[k][1]).name)) for k in kinds]
        lines.append(f"| {label} | " + " | ".join(
            measured(r, f"area {r['mean_auc']:.4f}") if r else "not run yet" for r in cells)
            + " | |")

    def row(k, v=""):
        return results.get((k, Spec("cryoscape", search, KINDS[k][1], variant=v).name))

    def change(k, v, key):
        """Variant v's change of `key` (MEASURES) on dataset k from the defaults' (or its
        `against` variant's) run (None: not measured)."""
        base, r = row(k, VARIANTS[v].against), row(k, v)
        if None in (base, r) or None in (MEASURES[key](base), MEASURES[key](r)):
            return None
        return MEASURES[key](r) - MEASURES[key](base)

    seed = SEED_VARIANT[search]
    for v, var in VARIANTS.items():
        if var.search != search:
            continue
        cells, wins = [], []
        for k in kinds:
            if not var.runs_on(k):
                cells.append("no classes")
                continue
            g = change(k, v, "area")
            if g is None:
                cells.append("not run yet")
                wins.append(None)
                continue
            rec, angle = change(k, v, "recovery"), change(k, v, "angle")
            kept = rec is None or rec >= -max(0.05, abs(change(k, seed, "recovery") or 0))
            aligned = angle is None or angle <= max(0.1, abs(change(k, seed, "angle") or 0))
            wins.append(g > abs(change(k, seed, "area") or 0.0) and kept and aligned)
            cells.append(measured(row(k, v), f"{g:+.4f}"))
        if all(w is None for w in wins):       # not tried yet
            continue
        verdict = ("no" if False in wins else "yes" if all(wins) else "not all measured")
        lines.append(f"| {v}: {var.what} | " + " | ".join(cells) + f" | {verdict} |")
    return lines


def goals(results: dict, runs) -> list[tuple[str, str, str]]:
    out = []
    for kind, (title, zp) in KINDS.items():
        for z in (zp, 8):
            c = results.get((kind, Spec("cryoscape", False, z).name))
            d = results.get((kind, Spec("cryodrgn", False, z).name))
            if c and d:
                dm = c["mean_auc"] - d["mean_auc"]
                faster = c["wall_s"] < d["wall_s"]
                goal = f"{title}, zdim {z}: FSC area >= cryoDRGN's + 0.02, in less wall time"
                value = (f"{dm:+.4f}, wall {c['wall_s'] / 60:.1f} vs {d['wall_s'] / 60:.1f} "
                         "min")
                out.append((goal, value, "met" if dm >= 0.02 and faster else "not met"))
        r = results.get((kind, Spec("cryoscape", False, zp).name))
        if r and r["recovery"] is not None:
            want = 0.9 if kind == "discrete" else 0.95
            out.append((f"{title}: recovery >= {want} (known poses, zdim {zp})",
                        f"{r['recovery']:.3f}", "met" if r["recovery"] >= want else "not met"))
    h = results.get(("homogeneous", Spec("cryoscape", True, 0).name))
    if h and h.get("pose"):
        fro, tr = h["pose"]["median_frob2"], h["pose"]["median_trans_px"]
        ok = fro <= PAPER_T1["cryoDRGN"][1][0] and tr <= PAPER_T1["cryoDRGN"][1][1]
        out.append(("ab initio pose error within the paper's Table 1 (SNR 0.1: 0.003 / 0.38 px)",
                    f"{fro:.4f} / {tr:.2f} px", "met" if ok else "not met"))
    return out


def machine() -> str:
    import platform
    try:
        cpu = re.findall(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())[0]
    except (OSError, IndexError):
        cpu = platform.machine()
    return f"{cpu.strip()}, {os.cpu_count()} CPUs"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = p.add_mutually_exclusive_group(required=True)
    for s in SCALES:
        g.add_argument(f"--{s}", dest="scale", action="store_const", const=s)
    p.add_argument("--datasets", nargs="*", choices=list(KINDS), default=list(KINDS))
    p.add_argument("--plan", action="store_true", help="print the runs and estimated time")
    p.add_argument("--n", type=int, help="images per set (default: the scale's)")
    p.add_argument("--epochs", type=int, help="epochs with known poses (default: the scale's; "
                   "tilt pairs get half)")
    p.add_argument("--tables-only", action="store_true",
                   help="redraw tables and figures from the cached results")
    p.add_argument("--no-cryodrgn", action="store_true")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), metavar="CHANGE",
                   help="instead of the tables: cryoscape's known-pose (search-*: ab "
                        "initio) runs again with each change (" + ", ".join(VARIANTS) + "), "
                        "against its defaults and cryoDRGN, in a table of everything tried "
                        "so far")
    p.add_argument("--isosurfaces", action="store_true",
                   help="also render rows of isosurfaces offscreen (cryoscape's viewer; needs "
                   "a display: run under xvfb-run where there is none)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--work", type=Path, help="datasets and runs (default benchmarks/_work/paper"
                   "/SCALE_DIGEST, DIGEST naming the scale's sizes)")
    p.add_argument("--out", type=Path, help="tables and figures (default benchmarks/paper/SCALE)")
    p.add_argument("--benchmarks", type=Path, default=BENCHMARKS, help="the BENCHMARKS.md")
    p.add_argument("--no-write", action="store_true", help="do not write BENCHMARKS.md")
    a = p.parse_args(argv)
    scale = SCALES[a.scale]
    if a.n or a.epochs:
        from dataclasses import replace
        n, epochs = a.n or scale.n, a.epochs or scale.epochs
        scale = replace(scale, n=n, n_search=min(scale.n_search, n), epochs=epochs,
                        tilt_epochs=max(1, epochs // 2))
    name = a.scale if scale == SCALES[a.scale] else f"{a.scale}_n{scale.n}_e{scale.epochs}"
    # runs are cached by name: the folder changes with every size of the scale, so that a
    # re-sized scale never reuses runs of the old sizes
    digest = hashlib.sha1(repr(scale).encode()).hexdigest()[:8]
    work = a.work or HERE / "_work" / "paper" / f"{name}_{digest}"
    out = a.out or HERE / "paper" / name
    runs = plan(scale, a.datasets, a.variants or ())
    if a.plan:
        for k, s in runs:
            print(f"{k:12s} {s.label}")
        for load, rates in RATES.items():
            print(f"{len(runs)} runs; estimated {estimate_s(scale, runs, rates) / 3600:.1f} h "
                  f"at {load}")
        return
    t0 = time.perf_counter()
    has_drgn = CRYODRGN.exists() and not a.no_cryodrgn
    has_tilt = cryoscape_has_tilt()
    figs, curves = out / "figures", out / "curves"
    results, notes = {}, {}
    shown = plan(scale, list(KINDS), list(VARIANTS)) if a.variants else runs
    for kind, spec in shown:     # with --variants every change tried so far, those asked run
        cache = work / "results" / kind / f"{spec.name}.json"
        if cache.exists():
            results[(kind, spec.name)] = json.loads(cache.read_text())
            continue
        why = unavailable(spec, has_tilt, has_drgn)
        if why or a.tables_only or (kind, spec) not in runs:
            notes[(kind, spec.name)] = why or "not run yet"
            continue
        data = dataset(work, kind, scale)
        rundir = work / "runs" / kind / spec.name
        rec = train(spec, data, rundir, scale, a.threads)
        res = evaluate(kind, spec, data, rundir, scale, figs, a.isosurfaces)
        res.update(wall_s=rec["wall_s"], command=rec["command"],
                   epoch_s=epoch_seconds(spec, rundir))
        from cryoscape.core.io.atomic import atomic_open
        with atomic_open(cache, "w") as f:
            json.dump(res, f, default=float)
        results[(kind, spec.name)] = res
        print(f"  {kind} {spec.name}: res {res['mean_res_px']:.2f} px, area "
              f"{res['mean_auc']:.4f}, recovery {_f(res['recovery'], '{:.3f}')}", flush=True)
    for kind in [] if a.variants else a.datasets:
        truth_pictures(kind, scale.D, figs, a.isosurfaces)
        fsc_picture(kind, [s for k, s in runs if k == kind], curves, figs)
    rel = os.path.relpath(figs, a.benchmarks.resolve().parent)
    header = (f"`{command(__file__, argv) if argv is not None else command(__file__)}`; "
              f"{machine()}; {time.strftime('%Y-%m-%d', time.gmtime())}; "
              f"this invocation {(time.perf_counter() - t0) / 60:.1f} min (runs' own wall "
              f"times in the tables). Data: D={scale.D}, {scale.n} images per set "
              f"(ab initio on the first {scale.n_search}), CTF, shifts +-{MAX_SHIFT:g} px, SNR "
              f"{SNR:g}, tilt pairs at {TILT_DEG:g} degrees; {scale.layers}x{scale.width} "
              f"encoder and decoder; known poses: {scale.epochs} epochs ({scale.tilt_epochs}"
              f" with tilt pairs) at batch {scale.batch}, learning rate "
              f"{f'{scale.lr:g}' if scale.lr else 'the tools defaults'}; ab initio (batch 8) "
              f"{scale.pretrain} + "
              f"{scale.search} searched + {scale.search_total - scale.pretrain - scale.search}"
              f" refined epochs; otherwise each tool's defaults (cryoscape's known-pose "
              f"weights saved as their average over ~2 epochs, cryoDRGN's as the last step's); "
              f"{a.threads} threads per run, one run at a time.")
    section = f"paper_{name}" + ("_tried" if a.variants else "")
    text = (tried(results, header) if a.variants else
            tables(results, runs, name, scale, notes, figs, rel, header))
    from cryoscape.core.io.atomic import atomic_open
    with atomic_open(out / ("tried.md" if a.variants else "tables.md"), "w") as f:
        f.write(text + "\n")
    print(text)
    if not a.no_write:
        write_section(section, text, a.benchmarks)


if __name__ == "__main__":
    main()
