"""Benchmark `cryoscape analyze` on a large run: 100k particles, zdim 8, box 64, a 3x256
decoder, k = 20, with UMAP (target: under 3 minutes).

The run is synthetic but complete (config.yaml, weights.pkl, z.pkl in the run layout): an untrained decoder decodes exactly as fast as a trained one, and the latents are a
20-cluster mixture with a continuous component. The timed command runs in a fresh process, so
imports and UMAP's numba compilation are included.

    python benchmarks/analyze_speed.py [--n 100000] [--write]

--write puts the table into BENCHMARKS.md (section `analyze`).
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _report import command, write_section


def make_run(path: Path, n: int, zdim: int = 8, D: int = 64, seed: int = 0,
             width: int = 256) -> None:
    """A cryoscape run directory with a random 3 x `width` decoder and mixture latents."""
    import torch
    import yaml
    from cryoscape.core.models import build_model, resolve_model_args

    path.mkdir(parents=True, exist_ok=True)
    model_args = resolve_model_args({"qlayers": 3, "qdim": 256, "players": 3, "pdim": width,
                                     "zdim": zdim}, D + 1)
    torch.manual_seed(seed)
    model = build_model(model_args, D + 1)
    rng = np.random.default_rng(seed)
    centres = 2.0 * rng.normal(size=(20, zdim))
    z = centres[rng.integers(0, 20, n)] + 0.5 * rng.normal(size=(n, zdim))
    z[:, 0] += np.linspace(-3, 3, n)[rng.permutation(n)]  # a continuous motion
    z = z.astype(np.float32)
    logvar = np.full_like(z, -4.0)
    config = {
        "dataset_args": {"particles": "synthetic.mrcs", "norm": [0.0, 1.0], "invert_data": True,
                         "window": True, "window_r": 0.85, "ind": None, "ctf": None,
                         "poses": "synthetic_poses.pkl", "datadir": None, "keepreal": False},
        "lattice_args": {"D": D + 1, "extent": 0.5, "ignore_DC": True},
        "model_args": model_args, "seed": seed, "version": "benchmark",
        "cryoscape": {"version": "benchmark", "D": D, "note": "synthetic benchmark run"},
    }
    with open(path / "config.yaml", "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    state = {"epoch": 0, "model_state_dict": model.state_dict()}
    for name in ("weights.1.pkl", "weights.pkl"):
        torch.save(state, path / name)
    for name in ("z.1.pkl", "z.pkl"):
        with open(path / name, "wb") as f:  # our own arrays: mu then logvar, as cryoDRGN
            pickle.dump(z, f)
            pickle.dump(logvar, f)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000, help="particles (default 100000)")
    p.add_argument("--k", type=int, default=20)
    p.add_argument("-D", type=int, default=64, help="box (default 64)")
    p.add_argument("--workdir", help="where to build the run (default: a temporary folder)")
    p.add_argument("--write", action="store_true", help="write the table into BENCHMARKS.md")
    args = p.parse_args()
    tmp = tempfile.TemporaryDirectory() if args.workdir is None else None
    work = Path(args.workdir or tmp.name)
    run = work / "run"
    t0 = time.perf_counter()
    make_run(run, args.n, D=args.D)
    print(f"synthetic run: {time.perf_counter() - t0:.1f} s")
    where = machine()
    rows, notes = [], []
    for label in ("computed", "cached"):  # the second run finds the first one's UMAP
        out = work / f"report_{label}"
        cmd = [sys.executable, "-m", "cryoscape.app.cli", "analyze", str(run), "--k",
               str(args.k), "-o", str(out)]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        total = time.perf_counter() - t0
        maps = len(list(out.rglob("vol_*.mrc")))
        stages = json.loads((out / "summary.json").read_text())["seconds"]
        met = "(met)" if total < 180 else "(missed)"
        rows.append(f"| {args.n} | 8 | {args.D} | 3x256 | {args.k} | {label} | {maps} | "
                    f"{total:.0f} s | < 180 s {met} |")
        notes.append(f"UMAP {label}: " + ", ".join(f"{k} {v:.0f} s" for k, v in stages.items()))
    shown = f"cryoscape analyze RUN --k {args.k} -o REPORT"
    table = "\n".join([
        "## `cryoscape analyze` speed",
        "",
        (f"Command: `{command(__file__)}` (times `{shown}` in a fresh process, "
         "twice: UMAP computed, then read from the run's cache)."),
        "",
        "| particles | zdim | box | decoder | k | UMAP | maps written | wall time | target |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Stages (the reports' summary.json; UMAP runs in a child process while the maps are "
        "decoded, umap_wait is what is left of it after them; the rest is start-up): "
        + "; ".join(notes) + ".",
        "",
        (f"Machine: {where}. UMAP is fitted on 25 000 particles and the others placed by "
         "their nearest fitted neighbours in z; cached in RUN/analysis_cache."),
    ])
    print(table)
    if args.write:
        write_section("analyze", table)
    print("command:", " ".join(shlex.quote(c) for c in cmd))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
