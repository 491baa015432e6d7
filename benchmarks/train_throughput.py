"""Training throughput: images/s and achieved FLOP/s against this machine's matmul peak.

For each box size and architecture, simulates a small dataset (cryoscape's simulator: the
"linear" model, SNR 0.1, CTF, shifts up to 3 px), builds the trainer (zdim 8, batch 8) and
times a fixed number of optimiser steps after two warm-up steps. FLOPs are the matrix products
of one step, forward and backward, as torch's FlopCounterMode counts them. The peak is the
best of a few float32 2048^2 matmuls on the same threads, before and after the runs (on a
shared machine, other processes lower both numbers; compare runs made at quiet times).
The cryoDRGN 4.3.1 side-by-side (its own venv under benchmarks/) is not part of this script.

    python benchmarks/train_throughput.py [--boxes 64 128] [--steps 20] [--batch 8]
        [--threads T] [--out benchmarks/results/train_throughput.md]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ARCHS = {"3x256": dict(enc_layers=3, enc_dim=256, dec_layers=3, dec_dim=256),
         "cryodrgn 3x1024": dict(enc_layers=3, enc_dim=1024, dec_layers=3, dec_dim=1024)}


def matmul_peak(n: int = 2048, reps: int = 8) -> float:
    """Best float32 matmul FLOP/s over a few n x n products."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = 0.0
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t))
    return best


def count_flops(trainer, idx) -> float:
    """FLOPs of one training step (forward and backward matmuls, torch's FlopCounterMode)."""
    from cryoscape.core.train.forward import run_batch
    from torch.utils.flop_counter import FlopCounterMode
    y, rot, ctf = trainer.data.batch(idx)
    with FlopCounterMode(display=False) as counter:
        loss = run_batch(trainer.model, trainer.data.lattice, y, rot, ctf, 1.0, trainer.noise)[0]
        loss.backward()
    trainer.optim.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def bench(data: Path, D: int, arch: str, steps: int, batch: int, threads: int | None) -> dict:
    from cryoscape.core.train import TrainConfig
    from cryoscape.core.train.loop import Trainer
    cfg = TrainConfig(particles=str(data / "particles.mrcs"), poses=str(data / "poses.pkl"),
                      ctf=str(data / "ctf.pkl"), zdim=8, batch_size=batch, threads=threads,
                      **ARCHS[arch])
    with tempfile.TemporaryDirectory() as tmp:
        tr = Trainer(cfg, Path(tmp) / "run", progress=False)
        order = torch.randperm(tr.data.N, generator=torch.Generator().manual_seed(0))
        batches = [order[i * batch:(i + 1) * batch] for i in range(steps + 2)]
        for idx in batches[:2]:
            tr._step(idx)
        t = time.perf_counter()
        for idx in batches[2:]:
            tr._step(idx)
        dt = time.perf_counter() - t
        flops = count_flops(tr, batches[0])
    return dict(D=D, arch=arch, images_per_s=steps * batch / dt, flops=flops * steps / dt)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--boxes", type=int, nargs="+", default=[64, 128])
    p.add_argument("--archs", nargs="+", default=list(ARCHS), choices=list(ARCHS))
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int)
    p.add_argument("--out", default="benchmarks/results/train_throughput.md")
    a = p.parse_args(argv)
    from cryoscape.core.simulate.dataset import simulate
    from cryoscape.core.train.loop import set_threads
    threads = set_threads(a.threads)
    peak = matmul_peak()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for D in a.boxes:
            data = simulate("linear", max(64, (a.steps + 2) * a.batch), Path(tmp) / f"d{D}", D=D,
                            snr=0.1, ctf=True, max_shift=3.0, seed=0).path
            for arch in a.archs:
                r = bench(data, D, arch, a.steps, a.batch, a.threads)
                rows.append(r)
                print(f"D={D} {arch}: {r['images_per_s']:.1f} images/s, "
                      f"{r['flops'] / 1e9:.1f} GFLOP/s")
    peak = max(peak, matmul_peak())   # measured before and after: a busy machine reads low
    cmd = "python benchmarks/train_throughput.py " + " ".join(argv or sys.argv[1:])
    lines = [f"# Training throughput (CPU, {threads} threads, batch {a.batch}, {a.steps} steps)",
             "", f"`{cmd.strip()}`; zdim 8, simulated D x D images with CTF and shifts.", "",
             f"Matmul peak: {peak / 1e9:.1f} GFLOP/s (float32, 2048^2).", "",
             "| D | architecture | images/s | GFLOP/s | % of peak |", "|---|---|---|---|---|"]
    lines += [f"| {r['D']} | {r['arch']} | {r['images_per_s']:.1f} | {r['flops'] / 1e9:.1f} | "
              f"{100 * r['flops'] / peak:.0f} |" for r in rows]
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
