"""Accuracy after the same budget, side by side with cryoDRGN 4.3.1: per-image FSC on 1D motion.

Simulates the built-in "linear" model (one coordinate of continuous motion per image; CTF,
shifts up to 3 px, SNR --snr), then trains `cryoscape train` (its default: bf16 mixed
precision where the CPU has it natively; and again with --no-amp, float32) and `cryodrgn
train_vae` on every image with the same poses.pkl, ctf.pkl, architecture (3x256 encoder and
decoder), zdim 1, batch size, epochs and seed, cryoDRGN's defaults otherwise (contrast
inverted: with the CTF, the simulated images are protein-dark as real data are). The three
trainings run at the same time, on --threads threads each (cryoDRGN's set by --max-threads
and OMP/MKL_NUM_THREADS).

Then, for --eval images spread evenly over the stack, each tool's last-epoch map at the
image's posterior mean z (cryoDRGN's run decoded the way its eval_vol does, through
`Run.open`, checked against cryoDRGN's own output in the tests) is compared with the true map
at the image's true coordinate: the paper's Table 2 metric (FSC = 0.5 resolution in px, mean
and standard deviation; 2 px is the best possible) and CryoBench's area under the FSC curve.
The |Pearson r| between z and the true coordinate over all images says whether the latent
space found the motion at all.

cryoDRGN runs from benchmarks/_cryodrgn_venv (see train_throughput.py, which creates it).

    python benchmarks/train_accuracy.py [--n 10000] [-D 64] [--epochs 8] [--snr 0.1]
        [--eval 100] [--batch 8]         (about 70 min on 2 CPUs)

Writes its table into BENCHMARKS.md (section `train_accuracy`).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from _report import command, write_section
from _timing import timed
from train_throughput import ensure_cryodrgn, epoch_times, train_cmd

# name: (tool, extra flags, label); cryoscape's default is bf16 mixed precision where native
RUNS = {"cryoscape": ("cryoscape", (), "cryoscape (default{})"),
        "cryoscape_fp32": ("cryoscape", ("--no-amp",), "cryoscape --no-amp (float32)"),
        "cryodrgn": ("cryodrgn", (), "cryoDRGN 4.3.1")}


def evaluate(rundir: Path, truth: dict, idx: np.ndarray, D: int) -> dict:
    """Per-image FSC of the run's last epoch at `idx`, and |r| of z vs the true coordinate."""
    from cryoscape.core.metrics import per_image_fsc
    from cryoscape.core.run import Run
    from cryoscape.core.simulate.volumes import make_volume
    run = Run.open(rundir)
    z = run.latents()
    coords = truth["coords"].reshape(len(z), -1)
    r = abs(np.corrcoef(z[:, 0], coords[:, 0])[0, 1])
    predicted = (run.decode(z[i:i + 1])[0] for i in idx)
    true_maps = (make_volume("linear", coords[i], D) for i in idx)
    out = per_image_fsc(predicted, true_maps, apix=float(truth["apix"]))
    out["r"] = float(r)
    return out


def report(rows: dict, a, version: str, bf16: bool, minutes: float, load: tuple,
           argv) -> str:
    where = (f"`{command(__file__, argv)}` ({minutes:.0f} min); {version}; {os.cpu_count()} "
             f"CPUs, the {len(rows)} trainings at once on {a.threads} thread(s) each; load "
             f"average {load[0]:.1f} at the start, {load[1]:.1f} at the end.")
    method = (f"Simulated \"linear\" model (one coordinate of continuous motion), CTF, shifts "
              f"up to 3 px, SNR {a.snr}; 3x256 encoder and decoder, zdim 1, batch {a.batch}, "
              f"{a.epochs} epochs, seed 0, cryoDRGN's defaults otherwise on both sides. "
              f"Per-image FSC: the last epoch's map at each of {a.eval} evenly spaced images' z "
              "against the true map at its true coordinate (unmasked): FSC = 0.5 resolution in "
              "px (the paper's Table 2; 2 px is Nyquist, lower is better) and area under the "
              "FSC curve (CryoBench; 0.5 is perfect, higher is better). |r|: correlation of z "
              "with the true coordinate over all images.")
    head = ("| run | FSC=0.5 resolution, px: mean ± sd (median) | FSC AUC: mean (median) | "
            "\\|r\\| z vs truth | training images/s (epochs 2+) | process wall, min |")
    lines = [f"## Accuracy after the same budget vs cryoDRGN (D={a.D}, {a.n} images, 1D motion)",
             "", where, "", method, "", head, "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        label = RUNS[name][2].format(": bf16 mixed precision" if bf16 else ": float32, no "
                                     "native bf16 on this CPU")
        lines.append(f"| {label} | {r['mean_res_px']:.2f} ± {r['std_res_px']:.2f} "
                     f"({np.median(r['res_px']):.2f}) | {r['mean_auc']:.4f} "
                     f"({r['median_auc']:.4f}) | {r['r']:.3f} | {r['images_s']:.1f} | "
                     f"{r['wall'] / 60:.1f} |")
    d = rows["cryodrgn"]
    for name in ("cryoscape", "cryoscape_fp32"):
        c = rows[name]
        lines += ["", (f"{RUNS[name][2].format('')}: AUC at least cryoDRGN's for "
                  f"{100 * np.mean(c['auc'] >= d['auc']):.0f}% of the {a.eval} images; mean "
                  f"resolution {c['mean_res_px']:.2f} vs {d['mean_res_px']:.2f} px.")]
    lines += ["", "Goal (issue 3): at least as good as cryoDRGN's."]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10000, help="images (default 10000)")
    p.add_argument("-D", type=int, default=64, help="box size (default 64)")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--snr", type=float, default=0.1)
    p.add_argument("--eval", type=int, default=100, help="images for per-image FSC")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 3) // 3),
                   help="threads per run (default: a third of the cores)")
    p.add_argument("--no-write", action="store_true", help="print the table only")
    a = p.parse_args(argv)
    import torch
    from cryoscape.core.simulate.dataset import simulate
    from cryoscape.core.train.loop import native_bf16
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    version = ensure_cryodrgn()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = simulate("linear", a.n, tmp / "data", D=a.D, snr=a.snr, ctf=True, max_shift=3.0,
                        seed=0, progress=True).path
        truth = dict(np.load(data / "truth.npz"))
        jobs = {name: (train_cmd(tool, data, None, "3x256", a.epochs, a.batch, a.threads,
                                 tmp / name, zdim=1, extra=extra), tmp / f"{name}.log")
                for name, (tool, extra, _) in RUNS.items()}
        print(f"training {len(jobs)} runs at once ({a.n} images x {a.epochs} epochs) ...",
              flush=True)
        with ThreadPoolExecutor(len(jobs)) as pool:
            walls = dict(zip(jobs, pool.map(lambda j: timed(j[0], a.threads, j[1]),
                                            jobs.values())))
        idx = np.linspace(0, a.n - 1, a.eval).round().astype(int)
        rows = {}
        for name, (tool, _, _) in RUNS.items():
            r = rows[name] = evaluate(tmp / name, truth, idx, a.D)
            times = epoch_times(tool, tmp / name, jobs[name][1])
            r["images_s"] = a.n / float(np.median(times[1:] or times))
            r["wall"] = walls[name]
            print(f"  {name}: mean res {r['mean_res_px']:.2f} px, AUC {r['mean_auc']:.4f}, "
                  f"|r| {r['r']:.3f}", flush=True)
    text = report(rows, a, version, native_bf16(torch.device("cpu")),
                  (time.perf_counter() - t0) / 60, (load0, os.getloadavg()[0]), argv)
    print(text)
    if not a.no_write:
        write_section("train_accuracy", text)


if __name__ == "__main__":
    main()
