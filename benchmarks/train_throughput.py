"""Training throughput, side by side with cryoDRGN 4.3.1: images/s and FLOP/s vs the matmul peak.

For each box size, simulates one dataset with cryoscape (the "linear" model, SNR 1, CTF,
shifts up to 3 px) and, for each architecture, trains on the same first N particles (--images
at D=64, scaled by (64/D)^2 for other boxes) with `cryoscape train` (its default, bf16 mixed
precision where the CPU has it natively, and --no-amp, float32) and `cryodrgn train_vae`,
each in its own process, with the same poses.pkl, ctf.pkl, zdim 8, encoder/decoder widths and
depths, batch size, seed and thread count (--threads / --max-threads, and OMP/MKL_NUM_THREADS,
which set cryoDRGN's torch threads, set equally; cryoDRGN's final `analyze` is turned off).
Defaults on both sides are cryoDRGN's (gaussian positional encoding, Fourier-domain decoder
evaluated on half of the lattice, residual encoder).

Each run goes `--repeats` times x `--epochs` epochs, the runs interleaved so that load changes
on a shared machine hit all alike. images/s = N / epoch time read from each tool's own log
(optimiser steps only, without start-up or checkpoints: cryoscape's metrics.jsonl `time`,
cryoDRGN's "Epoch: k ... Finished in" line), leaving out epoch 1 (warm-up); the table gives the
best and the median. FLOPs per image are those of one cryoscape training step (forward and
backward matmuls, torch's FlopCounterMode) divided by the batch size; the same architecture
does the same matrix products in cryoDRGN, so "GFLOP/s" is that count times each tool's best
images/s, against the peak of the precision the run computes in: the best of a few 2048^2
matmuls (float32, bfloat16) on the same threads, before and after the runs. The whole-process wall time (start-up, loading, checkpoints) is given too.

cryoDRGN lives in its own virtual environment, benchmarks/_cryodrgn_venv (ignored by git); the
script creates it when missing with
`python3 -m venv benchmarks/_cryodrgn_venv && benchmarks/_cryodrgn_venv/bin/pip install
torch==2.13.0 cryodrgn==4.3.1` (torch pinned so that pip keeps the CPU build).

    python benchmarks/train_throughput.py [--boxes 64 128] [--archs 3x256 3x1024]
        [--images 256 32] [--epochs 3] [--repeats 2] [--batch 8] [--threads T] [--no-cryodrgn]

Writes its table into BENCHMARKS.md (section `train_throughput`).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _report import command, write_section
from _timing import timed

HERE = Path(__file__).resolve().parent
VENV = HERE / "_cryodrgn_venv"
CRYODRGN = VENV / "bin" / "cryodrgn"
ARCHS = {"3x256": (3, 256), "3x1024": (3, 1024)}   # layers, width (3x1024: cryoDRGN's default)
ZDIM = 8


def ensure_cryodrgn() -> str:
    """Create the cryoDRGN venv if missing; return its cryoDRGN version."""
    if not CRYODRGN.exists():
        print(f"creating {VENV} (cryodrgn==4.3.1, torch==2.13.0) ...", flush=True)
        subprocess.run(["python3", "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "torch==2.13.0",
                        "cryodrgn==4.3.1"], check=True)
    out = subprocess.run([str(VENV / "bin" / "python"), "-c",
                          "import cryodrgn, torch; print(cryodrgn.__version__, torch.__version__)"],
                         check=True, capture_output=True, text=True).stdout.split()
    return f"cryoDRGN {out[0]} (torch {out[1]})"


def matmul_peak(n: int = 2048, reps: int = 8, dtype=torch.float32) -> float:
    """Best matmul FLOP/s over a few n x n products."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = 0.0
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t))
    return best


def flops_per_image(data: Path, ind: Path, arch: str, batch: int) -> float:
    """FLOPs of one cryoscape training step (forward and backward matmuls) per image."""
    from cryoscape.core.train import TrainConfig
    from cryoscape.core.train.forward import run_batch
    from cryoscape.core.train.loop import Trainer
    from torch.utils.flop_counter import FlopCounterMode
    layers, width = ARCHS[arch]
    cfg = TrainConfig(particles=str(data / "particles.mrcs"), poses=str(data / "poses.pkl"),
                      ctf=str(data / "ctf.pkl"), ind=str(ind), zdim=ZDIM, batch_size=batch,
                      enc_layers=layers, enc_dim=width, dec_layers=layers, dec_dim=width)
    with tempfile.TemporaryDirectory() as tmp:
        tr = Trainer(cfg, Path(tmp) / "run", progress=False)
        y, rot, ctf = tr.data.batch(torch.arange(batch))
        with FlopCounterMode(display=False) as counter:
            loss = run_batch(tr.model, tr.data.lattice, y, rot, ctf, 1.0, tr.noise)[0]
            loss.backward()
    return float(counter.get_total_flops()) / batch


# name: (tool, extra flags); cryoscape's default is bf16 mixed precision where the CPU has it
RUNS = {"cryoscape": ("cryoscape", ()), "cryoscape_fp32": ("cryoscape", ("--no-amp",)),
        "cryodrgn": ("cryodrgn", ())}


def train_cmd(tool: str, data: Path, ind: Path | None, arch: str, epochs: int, batch: int,
              threads: int, out: Path, zdim: int = ZDIM, extra: tuple = ()) -> list[str]:
    """The same training on both sides: `ind` None trains on every image; `extra` are flags
    both tools share (e.g. --uninvert-data)."""
    layers, width = ARCHS[arch]
    common = [str(data / "particles.mrcs"), "--poses", str(data / "poses.pkl"),
              "--ctf", str(data / "ctf.pkl"), *(["--ind", str(ind)] if ind else []),
              "--zdim", str(zdim), "-n", str(epochs), "-b", str(batch), "--enc-dim", str(width),
              "--enc-layers", str(layers), "--dec-dim", str(width), "--dec-layers", str(layers),
              "--seed", "0", *extra, "-o", str(out)]
    if tool == "cryoscape":
        return [sys.executable, "-m", "cryoscape.app.cli", "train", *common,
                "--threads", str(threads), "--no-progress"]
    return [str(CRYODRGN), "train_vae", *common, "--max-threads", str(threads),
            "--no-analysis"]


def epoch_times(tool: str, out: Path, log: Path) -> list[float]:
    """Seconds of each epoch's optimiser steps (no checkpoint), from the tool's own log."""
    if tool == "cryoscape":
        rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x]
        return [r["time"] for r in rows]
    return [3600 * int(h) + 60 * int(m) + float(sec) for h, m, sec in    # "Finished in H:MM:SS"
            re.findall(r"=====> Epoch: \d+ .*Finished in (\d+):(\d+):([\d.]+)", log.read_text())]


def bench(data: Path, tmp: Path, D: int, arch: str, n: int, batch: int, threads: int,
          names: list[str], epochs: int, repeats: int) -> dict:
    from cryoscape.core.io.cryodrgn import save_index
    ind = tmp / f"ind{n}.pkl"
    save_index(ind, range(n))
    row = {"D": D, "arch": arch, "images": n,
           "flops_per_image": flops_per_image(data, ind, arch, batch)}
    times = {name: [] for name in names}
    walls = {name: [] for name in names}
    for rep in range(repeats):
        for name in names:   # interleaved, so load changes on a shared machine hit all alike
            tool, extra = RUNS[name]
            out = tmp / f"{name}_D{D}_{arch}_r{rep}"
            log = tmp / f"{out.name}.log"
            walls[name].append(timed(train_cmd(tool, data, ind, arch, epochs, batch, threads,
                                               out, extra=extra), threads, log))
            t = epoch_times(tool, out, log)
            if len(t) != epochs:
                sys.exit(f"{name}: found {len(t)} epoch times in {log}, expected {epochs}")
            times[name] += t[1:]    # epoch 1 warms up
            print(f"  {name} D={D} {arch} {n} images x {epochs} epochs: {walls[name][-1]:.1f} s "
                  f"wall, epochs {', '.join(f'{x:.1f}' for x in t)} s", flush=True)
    for name in names:
        row[name] = {"best": n / min(times[name]),
                     "median": n / sorted(times[name])[len(times[name]) // 2],
                     "wall": min(walls[name])}
    return row


def report(rows: list[dict], peaks: dict, bf16: bool, threads: int, batch: int, version: str,
           epochs: int, repeats: int, argv, load: tuple[float, float], minutes: float) -> str:
    names = [n for n in RUNS if n in rows[0]]
    label = {"cryoscape": "cryoscape" + (" (bf16)" if bf16 else ""),
             "cryoscape_fp32": "cryoscape --no-amp", "cryodrgn": "cryoDRGN"}
    dtype = {n: "bfloat16" if n == "cryoscape" and bf16 else "float32" for n in names}
    side = "cryodrgn" in names
    title = f"## Training throughput vs cryoDRGN (CPU, {threads} threads, batch {batch}, zdim {ZDIM})"
    where = (f"`{command(__file__, argv)}` ({minutes:.1f} min); "
             f"{version if side else 'cryoDRGN not run'}; torch {torch.__version__}; "
             f"{os.cpu_count()} CPUs, load average {load[0]:.1f} at the start and {load[1]:.1f} "
             "at the end (machine shared with other processes: numbers are lower than on an idle "
             "machine and noisy).")
    peak_line = (f"Matmul peaks (2048^2, best of before/after): float32 "
                 f"{peaks['float32'] / 1e9:.1f} GFLOP/s, bfloat16 {peaks['bfloat16'] / 1e9:.1f} "
                 "GFLOP/s. cryoscape's default is bf16 mixed precision where the CPU has it "
                 f"natively ({'it does here' if bf16 else 'not here: float32'}); cryoscape "
                 "--no-amp and cryoDRGN (no mixed precision on CPU) compute in float32.")
    method = ("Same simulated particles (linear model, SNR 1, CTF, shifts up to 3 px), poses.pkl, "
              "ctf.pkl, the first N images (--ind), the same architecture with cryoDRGN's "
              f"defaults on both sides. Each run {repeats} times x {epochs} epochs, "
              "interleaved; images/s = N / epoch time read from each tool's own log (optimiser "
              "steps only, no start-up or checkpoint: cryoscape's metrics.jsonl `time`, "
              "cryoDRGN's \"Epoch: k ... Finished in\"), epoch 1 left out as warm-up; best and "
              "median over the rest. GFLOP/s = cryoscape's counted matmul FLOPs per image "
              "(forward + backward, torch FlopCounterMode) x best images/s (the same "
              "architecture does the same matrix products in cryoDRGN), against the peak of the "
              "precision the run computes in. Wall: the fastest whole process (start-up, data "
              "loading, every epoch's checkpoint).")
    lines = [title, "", where, "", peak_line, "", method, ""]
    head = ["D", "architecture", "N"] + [f"{label[n]} images/s best (median)" for n in names]
    if side:
        head += [f"{label[n]} / cryoDRGN best (median)" for n in names if n != "cryodrgn"]
    head += [f"{label[n]} GFLOP/s (% {dtype[n]} peak)" for n in names]
    head += ["process wall, s: " + "; ".join(label[n] for n in names)]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        f = r["flops_per_image"]
        cells = [str(r["D"]), r["arch"], str(r["images"])]
        cells += [f"{r[n]['best']:.1f} ({r[n]['median']:.1f})" for n in names]
        if side:
            d = r["cryodrgn"]
            cells += [f"{r[n]['best'] / d['best']:.2f}x ({r[n]['median'] / d['median']:.2f}x)"
                      for n in names if n != "cryodrgn"]
        cells += [f"{r[n]['best'] * f / 1e9:.1f} ({100 * r[n]['best'] * f / peaks[dtype[n]]:.0f}%)"
                  for n in names]
        cells += ["; ".join(f"{r[n]['wall']:.1f}" for n in names)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", ("Goals (issue 3): cryoscape >= 2x cryoDRGN's images/s, and >= 50% of the "
                   "matmul peak.")]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--boxes", type=int, nargs="+", default=[64, 128],
                   help="box sizes (default: 64 128; about 8 min on 2 CPUs)")
    p.add_argument("--archs", nargs="+", default=list(ARCHS), choices=list(ARCHS))
    p.add_argument("--images", type=int, nargs="+", default=[256, 32],
                   help="images per epoch at D=64, one per architecture, scaled by (64/D)^2 "
                        "for other boxes (default: 256 32)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run, the first a warm-up")
    p.add_argument("--repeats", type=int, default=2, help="runs per setting and architecture")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, help="threads for every run (default: all cores)")
    p.add_argument("--no-cryodrgn", action="store_true", help="time cryoscape alone")
    p.add_argument("--no-write", action="store_true", help="print the table only")
    a = p.parse_args(argv)
    if len(a.images) != len(a.archs):
        p.error("--images needs one count per architecture")
    from cryoscape.core.simulate.dataset import simulate
    from cryoscape.core.train.loop import native_bf16, set_threads
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    names = [n for n in RUNS if not (a.no_cryodrgn and n == "cryodrgn")]
    version = "" if a.no_cryodrgn else ensure_cryodrgn()
    threads = set_threads(a.threads)
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16}
    peaks = {k: matmul_peak(dtype=t) for k, t in dtypes.items()}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for D in a.boxes:
            counts = [max(a.batch, round(n * (64 / D) ** 2 / a.batch) * a.batch)
                      for n in a.images]   # about the same time per box size
            data = simulate("linear", max(counts), tmp / f"data{D}", D=D, snr=1.0, ctf=True,
                            max_shift=3.0, seed=0).path
            for arch, n in zip(a.archs, counts):
                rows.append(bench(data, tmp, D, arch, n, a.batch, threads, names, a.epochs,
                                  a.repeats))
    # measured before and after: a busy machine reads low
    peaks = {k: max(v, matmul_peak(dtype=dtypes[k])) for k, v in peaks.items()}
    text = report(rows, peaks, native_bf16(torch.device("cpu")), threads, a.batch, version,
                  a.epochs, a.repeats, argv, (load0, os.getloadavg()[0]),
                  (time.perf_counter() - t0) / 60)
    print(text)
    if not a.no_write:
        write_section("train_throughput", text)


if __name__ == "__main__":
    main()
