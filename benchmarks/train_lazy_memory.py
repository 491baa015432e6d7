"""Lazy training memory: peak resident memory and images/s of --lazy vs in-memory training.

Simulates an N-image D x D stack (cryoscape's simulator, CTF, SNR 0.1), then in a fresh
process for each mode builds the trainer and runs a fixed number of batches, reporting
images/s, the time of loading a batch alone, the peak resident set size (VmHWM: ru_maxrss would also count the parent's peak,
which Linux carries over into a child at exec) and the resident memory at the end, anonymous
and file-backed. Lazy sources read images with positioned reads, so the stack's pages stay in
the kernel's page cache and count in none of these. The issue's target: N=20000,
D=128, lazy under 1.5 GiB with images/s within 20% of in-memory. Writes its table into
BENCHMARKS.md (section `train_lazy_memory`).

    python benchmarks/train_lazy_memory.py [--n 20000] [-D 128] [--batches 50]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _report import command, write_section

CHILD = """
import json, sys, time, torch
from cryoscape.core.train import TrainConfig
from cryoscape.core.train.loop import Trainer
a = json.loads(sys.argv[1])
cfg = TrainConfig(particles=a["data"] + "/particles.mrcs", poses=a["data"] + "/poses.pkl",
                  ctf=a["data"] + "/ctf.pkl", zdim=8, batch_size=8, lazy=a["lazy"],
                  enc_layers=3, enc_dim=256, dec_layers=3, dec_dim=256, threads=a["threads"])
tr = Trainer(cfg, a["out"], progress=False)
order = torch.randperm(tr.data.N, generator=torch.Generator().manual_seed(0))
tr._step(order[:8])
t = time.perf_counter()
for i in range(1, a["batches"] + 1):
    tr._step(order[i * 8:(i + 1) * 8])
dt = time.perf_counter() - t
t = time.perf_counter()
for i in range(1, a["batches"] + 1):
    tr.data.batch(order[i * 8:(i + 1) * 8])
load = (time.perf_counter() - t) / a["batches"]
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
gib = {k: int(status[k].split()[0]) / 2**20 for k in ("VmHWM", "RssAnon", "RssFile")}
print(json.dumps(dict(images_per_s=a["batches"] * 8 / dt, load_ms=1000 * load,
                      step_ms=1000 * dt / a["batches"], peak_rss_gib=gib["VmHWM"],
                      rss_anon_gib=gib["RssAnon"], rss_file_gib=gib["RssFile"])))
"""


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("-D", type=int, default=128)
    p.add_argument("--batches", type=int, default=50)
    p.add_argument("--threads", type=int)
    a = p.parse_args(argv)
    from cryoscape.core.simulate.dataset import simulate
    load0 = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = simulate("linear", a.n, Path(tmp) / "data", D=a.D, snr=0.1, ctf=True,
                        max_shift=3.0, seed=0, progress=True).path
        for lazy in (True, False):
            arg = {"data": str(data), "lazy": lazy, "batches": a.batches,
                   "threads": a.threads, "out": str(Path(tmp) / f"run_{lazy}")}
            r = subprocess.run([sys.executable, "-c", CHILD, json.dumps(arg)], check=True,
                               capture_output=True, text=True)
            rows.append(dict(mode="lazy" if lazy else "in memory",
                             **json.loads(r.stdout.strip().splitlines()[-1])))
            print(rows[-1])
    base = rows[1]["images_per_s"]
    lines = [f"## Lazy training memory ({a.n} images, D={a.D}, {a.batches} batches of 8)", "",
             (f"`{command(__file__, argv)}`; 3x256 architecture, zdim 8; {os.cpu_count()} "
              f"CPUs, load average {load0:.1f} at start and {os.getloadavg()[0]:.1f} at the "
              "end (machine shared). Target: lazy peak RSS < 1.5 GiB, images/s within 20% of "
              "in memory."), "",
             ("| mode | peak RSS (GiB) | RSS at the end: anonymous + file-backed (GiB) | "
              "images/s | images/s vs in memory | batch loading (ms) | whole step (ms) |"),
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['mode']} | {r['peak_rss_gib']:.2f} | {r['rss_anon_gib']:.2f} + "
              f"{r['rss_file_gib']:.2f} | {r['images_per_s']:.1f} | "
              f"{r['images_per_s'] / base:.2f} | {r['load_ms']:.1f} | {r['step_ms']:.0f} |"
              for r in rows]
    lines += ["", ("Batch loading: `data.batch` alone (read and preprocess 8 images; for in "
                   "memory, an index into the prepared array), timed again after the steps over "
                   "the same batches. On a shared machine images/s follows the load of the "
                   "moment; batch loading is the part lazy reading adds.")]
    extra = rows[0]["load_ms"] - rows[1]["load_ms"]
    lines += ["", (f"Lazy reading adds {extra:.1f} ms per batch of 8, "
                   f"{100 * extra / rows[1]['step_ms']:.1f}% of the in-memory step "
                   f"({rows[1]['step_ms']:.0f} ms), i.e. images/s "
                   f"{rows[1]['step_ms'] / (rows[1]['step_ms'] + extra):.2f} x in memory at "
                   "equal load.")]
    text = "\n".join(lines)
    print(text)
    write_section("train_lazy_memory", text)


if __name__ == "__main__":
    main()
