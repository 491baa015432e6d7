"""Benchmark `cryoscape landscape` on a large run: 100k particles, zdim 8, box 64 decoded at 64,
1000 sketch maps, 3x256 and 3x1024 decoders (target: under 3 minutes for 3x256).

The runs are synthetic but complete (`analyze_speed.make_run`: random decoder weights decode
exactly as fast as trained ones; mixture latents). Each command runs in a fresh process (imports
included), once with the default precision (bfloat16 where the device has it natively) and
once with --no-amp (float32), the baseline; decoder FLOP/s are the matrix products the
decoder's Linear layers did (counted by `landscape.decode_sketch`) over the decoding time,
against the peak of one large matrix product in the same precision measured on the same device
just before.

    nice -n 5 python benchmarks/landscape.py [--n 100000] [--sketch 1000 16]
        [--widths 256 1024] [--device cpu] [--write]

--write puts the table into BENCHMARKS.md (section `landscape`).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import command, write_section
from analyze_speed import machine, make_run

FULL_SKETCH = 1000   # the default sketch: wall time estimated there when fewer maps are timed


def matmul_peak(device: str = "cpu", precision: str = "float32", n: int = 2048,
                reps: int = 5) -> float:
    """FLOP/s of the best of `reps` n x n matrix products in `precision` on `device`."""
    import torch

    a = torch.randn(n, n, device=device, dtype=getattr(torch, precision))
    b = torch.randn(n, n, device=device, dtype=a.dtype)
    best = float("inf")
    for _ in range(reps + 1):   # the first warms up
        if device != "cpu":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        a @ b
        if device != "cpu":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def time_kmeans(run: Path, k: int) -> float:
    """Seconds of the landscape's k-means (one initialisation) of a run's latents into k."""
    from cryoscape.core.analysis.sampling import kmeans
    from cryoscape.core.run import Run

    z = Run.open(run).latents()
    t0 = time.perf_counter()
    kmeans(z, k, n_init=1)
    return time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000, help="particles (default 100000)")
    p.add_argument("--sketch", type=int, nargs="+", default=[1000],
                   help="maps decoded, one number per width or one for all (default 1000)")
    p.add_argument("--states", type=int, default=5)
    p.add_argument("-D", type=int, default=64, help="box, decoded at the same (default 64)")
    p.add_argument("--widths", type=int, nargs="+", default=[256, 1024],
                   help="decoder widths, 3 layers each (default 256 1024)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--workdir", help="where to build the runs (default: a temporary folder)")
    p.add_argument("--write", action="store_true", help="write the table into BENCHMARKS.md")
    args = p.parse_args()
    tmp = tempfile.TemporaryDirectory() if args.workdir is None else None
    work = Path(args.workdir or tmp.name)
    where = machine()
    rows, kmeans_full = [], None
    sketches = args.sketch * len(args.widths) if len(args.sketch) == 1 else args.sketch
    if len(sketches) != len(args.widths):
        p.error("--sketch takes one number, or one per width")
    for width, sketch in zip(args.widths, sketches):
        run = work / f"run_{width}"
        make_run(run, args.n, D=args.D, width=width)
        base = None
        for amp in (False, True):
            out = work / f"landscape_{width}_{'amp' if amp else 'fp32'}"
            cmd = [sys.executable, "-m", "cryoscape.app.cli", "landscape", str(run), "-o",
                   str(out), "--sketch", str(sketch), "--states", str(args.states),
                   "-D", str(args.D), "--device", args.device] + ([] if amp else ["--no-amp"])
            shutil.rmtree(run / "analysis_cache", ignore_errors=True)   # nothing cached
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True)
            total = time.perf_counter() - t0
            s = json.loads((out / "summary.json").read_text())
            peak = matmul_peak(args.device, s["precision"])
            sec = s["seconds"]
            per_map = sec["decode"] / s["sketch"]
            base = base or per_map
            estimate = total
            if s["sketch"] < FULL_SKETCH:   # at 1000 maps: decoding and k-means scaled
                if kmeans_full is None:
                    kmeans_full = time_kmeans(run, FULL_SKETCH)
                estimate += per_map * (FULL_SKETCH - s["sketch"]) + kmeans_full - sec["kmeans"]
            goal = "" if width != 256 else (" (met)" if estimate < 180 else " (missed)")
            rows.append(
                f"| 3x{width} | {s['precision']} | {args.n} | {s['sketch']} | {args.D} | "
                f"{total:.0f} s | {sec['kmeans']:.0f} s | {sec['decode']:.0f} s "
                f"({per_map:.2f} s/map, {base / per_map:.2f}x) | "
                f"{s['decoder_flop_per_s'] / 1e9:.1f} | {peak / 1e9:.0f} | "
                f"{100 * s['decoder_flop_per_s'] / peak:.0f}% | "
                f"{sec['pca_states_regressor']:.0f} s | {estimate:.0f} s{goal} |")
            print(rows[-1], flush=True)
    table = "\n".join([
        "## `cryoscape landscape` speed",
        "",
        (f"Command: `{command(__file__)}` (times `cryoscape landscape RUN --sketch K -D "
         f"{args.D} [--no-amp]` in a fresh process on synthetic runs: zdim 8, box {args.D}, "
         "random decoder weights)."),
        "",
        ("| decoder | precision | particles | maps | box | wall time | k-means | decoding "
         "(vs float32) | decoder GFLOP/s | matmul peak GFLOP/s | of peak | PCA, states, "
         "regressor | at 1000 maps (goal 3x256 < 180 s) |"),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        (f"Machine: {where}; device {args.device}. Decoder FLOP/s: the Linear layers' "
         "multiply-adds (2 in x out per row) over the decoding time (a Fourier-domain decoder "
         "evaluates half of each map's Nyquist sphere); peak: the best 2048^3 matrix "
         "product in the same precision just after. bfloat16: the default where the device "
         "has it natively (the decoder's products in bf16 autocast, the positional encoding "
         "in float32; maps within 0.3% of float32's, correlation 0.99999 on a trained run); "
         "float32: --no-amp. The rest of the wall time is start-up, writing the maps "
         "(states, 2 x 10 along volume PCs) and the plots. At 1000 maps: measured when "
         "1000 were decoded; else the wall time with the decoding scaled to 1000 maps and "
         "the k-means into 1000 timed on its own."),
    ])
    print(table)
    if args.write:
        write_section("landscape", table)
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
