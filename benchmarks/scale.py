"""Scaling out: images/s on 1 and 2 CPU processes (gloo, torchrun), lazy reading with DataLoader
workers against in memory on a stack larger than the memory the process may use, and opening a
1M-particle .star/.cs/.txt over 1000 stacks. Writes section `scale` of BENCHMARKS.md.

1. `torchrun --standalone --nproc-per-node P -m cryoscape.app.cli train` on a simulated
   N1-image D1 stack for one epoch (P = 1 with all cores as threads, P = 2 with one each);
   images/s as metrics.jsonl reports it (steps only).
2. A stack of N2 images of D2 px (a simulated set tiled, written to benchmarks/_work/ and
   deleted afterwards); in a fresh process per mode, under `--limit-gib` of address space
   (RLIMIT_AS, below the stack's size; each worker process has its own), the trainer is built
   and `--batches` batches of the first epoch are trained through `TrainData.stream`; peak
   RSS (VmHWM) and images/s. In memory is also run without the limit on the first
   `--memory-subset` images (its step does not depend on N), for its speed.
3. Sparse stacks (headers and a file length, no image bytes on disk) named by a .star, a .cs
   and a .txt of 1M particles; each opened lazily (`load_particles`) in a fresh process.

    python benchmarks/scale.py [--n1 1024 -D1 64] [--n2 70000 -D2 128 --limit-gib 4]
                               [--batches 12 -b 8 --threads 1] [--particles 1000000]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _report import command, write_section

WORK = Path(__file__).resolve().parent / "_work" / "scale"
ARCH = ["--enc-layers", "3", "--enc-dim", "256", "--dec-layers", "3", "--dec-dim", "256",
        "--zdim", "8"]

CHILD = """
import json, re, resource, sys, time, torch
a = json.loads(sys.argv[1])
if a["limit"]:
    resource.setrlimit(resource.RLIMIT_AS, (a["limit"], a["limit"]))
from cryoscape.core.train import TrainConfig
from cryoscape.core.train.loop import Trainer
from cryoscape.core.train.data import epoch_order
d = a["data"]
B = a["batch"]
cfg = TrainConfig(particles=d + "/particles.mrcs", poses=d + "/poses.pkl", ctf=d + "/ctf.pkl",
                  ind=a["ind"], zdim=8, batch_size=B, lazy=a["lazy"], workers=a["workers"],
                  enc_layers=3, enc_dim=256, dec_layers=3, dec_dim=256, checkpoint_minutes=1e9,
                  threads=a["threads"])
try:
    t = time.perf_counter()
    tr = Trainer(cfg, a["out"], progress=False)
    setup = time.perf_counter() - t
    order = epoch_order(tr.data.N, 0, 0)
    idx = [order[i * B:(i + 1) * B] for i in range(a["batches"] + 1)]
    stream = tr.data.stream(idx, tr.workers)
    tr._step(idx[0], next(stream))                          # warm-up
    t = time.perf_counter()
    for i in idx[1:]:
        tr._step(i, next(stream))
    dt = time.perf_counter() - t
    stream.close()
    out = dict(ok=True, images_per_s=B * a["batches"] / dt, setup_s=setup,
               workers=tr.workers if a["lazy"] else 0)
except (MemoryError, RuntimeError) as e:        # torch: "can't allocate ... N bytes"
    n = re.search(r"allocate (\\d+) bytes", str(e))
    out = dict(ok=False, error=(f"out of memory allocating {int(n[1]) / 2**30:.2f} GiB" if n
                                else f"{type(e).__name__}: {str(e).splitlines()[0][:80]}"))
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
out["peak_rss_gib"] = int(status["VmHWM"].split()[0]) / 2**20
print(json.dumps(out))
"""

OPEN = """
import json, sys, time
from cryoscape.core.io.cs import read_cs
from cryoscape.core.io.particles import load_particles
from cryoscape.core.io.star import read_star
t = time.perf_counter()
p = load_particles(sys.argv[1], lazy=True)
dt = time.perf_counter() - t
read = {"star": read_star, "cs": read_cs}.get(sys.argv[1].rsplit(".", 1)[-1])
t = time.perf_counter()
if read is not None:
    read(sys.argv[1])
table = time.perf_counter() - t
print(json.dumps(dict(seconds=dt, table_s=table, n=len(p), stacks=len(p.images.stacks), D=p.D,
                      poses=p.rotations is not None, ctf=p.ctf is not None)))
"""


def _json(cmd) -> dict:
    r = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"{cmd[:4]}... failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def processes(data: Path, cpus: int, n_epochs: int = 1) -> list[dict]:
    """Images/s of one epoch started by torchrun: 1 process with every core as threads, 1
    process of 1 thread, and 2 gloo processes sharing the cores."""
    rows = []
    for nproc, threads in ((1, cpus), (1, 1), (2, max(1, cpus // 2))):
        out = WORK / f"run_p{nproc}_t{threads}"
        shutil.rmtree(out, ignore_errors=True)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", str(nproc), "-m", "cryoscape.app.cli", "train",
               str(data / "particles.mrcs"), "--poses", str(data / "poses.pkl"), "--ctf",
               str(data / "ctf.pkl"), "-o", str(out), "-n", str(n_epochs), "-b", "32",
               "--threads", str(threads), "--no-progress", *ARCH]
        t = time.perf_counter()
        r = subprocess.run(cmd, check=False, capture_output=True, text=True)
        wall = time.perf_counter() - t
        if r.returncode:
            raise SystemExit(f"torchrun failed:\n{r.stderr[-2000:]}")
        m = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
        rows.append({"nproc": nproc, "threads": threads, "images_per_s": m["images_per_s"],
                     "epoch_s": m["time"], "wall_s": wall})
        shutil.rmtree(out)
        print(rows[-1])
    return rows


def tiled_stack(src: Path, dst: Path, n: int) -> float:
    """A stack of n images: the simulated `src` set repeated (with its poses and CTF)."""
    from cryoscape.core.io.cryodrgn import load_ctf, load_poses, save_ctf, save_poses
    from cryoscape.core.io.mrc import new_mrc_stack, read_mrc
    images, apix = read_mrc(src / "particles.mrcs")
    reps = -(-n // len(images))
    dst.mkdir(parents=True, exist_ok=True)
    with new_mrc_stack(dst / "particles.mrcs", (n, *images.shape[1:]), apix=apix) as data:
        for i in range(0, n, len(images)):
            data[i:i + len(images)] = images[:n - i]
    D = images.shape[-1]
    R, shifts = load_poses(src / "poses.pkl", D=D)
    save_poses(dst / "poses.pkl", np.tile(R, (reps, 1, 1))[:n], np.tile(shifts, (reps, 1))[:n],
               D=D)
    save_ctf(dst / "ctf.pkl", np.tile(load_ctf(src / "ctf.pkl"), (reps, 1))[:n])
    return (dst / "particles.mrcs").stat().st_size / 2**30


def memory_modes(data: Path, a) -> list[dict]:
    """Lazy (workers 0 and default) and in memory under the limit; in memory without it on
    the first `a.memory_subset` images."""
    from cryoscape.core.io.cryodrgn import save_index
    subset = WORK / "subset.pkl"
    save_index(subset, np.arange(a.memory_subset))
    rows = []
    for mode, lazy, workers, limit in (
            ("lazy, read in the training process", True, 0, True),
            ("lazy, DataLoader workers (the default number)", True, None, True),
            ("in memory", False, 0, True),
            (f"in memory, first {a.memory_subset} images", False, 0, False)):
        out = WORK / "run_mem"
        shutil.rmtree(out, ignore_errors=True)
        arg = {"data": str(data), "lazy": lazy, "workers": workers, "batches": a.batches,
               "batch": a.b, "threads": a.threads, "out": str(out),
               "ind": None if limit else str(subset),
               "limit": int(a.limit_gib * 2**30) if limit else 0}
        r = _json([sys.executable, "-c", CHILD, json.dumps(arg)])
        rows.append({"mode": mode, "limit": limit, **r})
        shutil.rmtree(out, ignore_errors=True)
        print(rows[-1])
    return rows


def sparse_metadata(folder: Path, n: int, n_stacks: int, D: int = 16) -> dict:
    """n particles over n_stacks sparse stacks: a RELION 3.1 .star, a cryoSPARC .cs and a .txt
    of the stacks (each file name once per particle in the .star/.cs)."""
    import mrcfile
    from cryoscape.core.io.cs import write_cs
    per = n // n_stacks
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "stacks").mkdir(exist_ok=True)
    head = folder / "head.mrcs"
    with mrcfile.new(head, overwrite=True) as m:
        m.set_data(np.zeros((per, D, D), np.float32))
        m.set_image_stack()
        m.voxel_size = 2.0
    header, size = head.read_bytes()[:1024], head.stat().st_size
    head.unlink()
    names = [f"stacks/s{f:04d}.mrcs" for f in range(n_stacks)]
    for name in names:
        with open(folder / name, "wb") as fh:
            fh.write(header)
            fh.truncate(size)                  # sparse: no image bytes on disk
    (folder / "stacks.txt").write_text("\n".join(names) + "\n")
    rng = np.random.default_rng(0)
    fi, ii = np.repeat(np.arange(n_stacks), per), np.tile(np.arange(per), n_stacks)
    euler, origin = rng.uniform(-180, 180, (n, 3)), rng.normal(0, 2, (n, 2))
    df = rng.uniform(1e4, 3e4, (n, 2))
    cols = ["rlnImageName", "rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst",
            "rlnOriginYAngst", "rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle",
            "rlnOpticsGroup"]
    with open(folder / "particles.star", "w") as fh:
        fh.write("\n# version 30001\n\ndata_optics\n\nloop_\n_rlnOpticsGroup #1\n"
                 "_rlnOpticsGroupName #2\n_rlnAmplitudeContrast #3\n_rlnSphericalAberration #4\n"
                 "_rlnVoltage #5\n_rlnImagePixelSize #6\n_rlnImageSize #7\n"
                 f"_rlnImageDimensionality #8\n1 opticsGroup1 0.1 2.7 300 2.0 {D} 2\n\n\n"
                 "# version 30001\n\ndata_particles\n\nloop_\n")
        fh.write("".join(f"_{c} #{i + 1}\n" for i, c in enumerate(cols)))
        for s in range(0, n, 100000):
            sl = slice(s, min(n, s + 100000))
            fh.write("".join(
                f"{b + 1:06d}@{names[a]} {e[0]:.3f} {e[1]:.3f} {e[2]:.3f} {o[0]:.3f} {o[1]:.3f} "
                f"{d[0]:.1f} {d[1]:.1f} 0.0 1\n"
                for a, b, e, o, d in zip(fi[sl], ii[sl], euler[sl], origin[sl], df[sl])))
    cs = np.zeros(n, dtype=[("uid", "<u8"), ("blob/path", f"S{len(names[0])}"),
                            ("blob/idx", "<u4"), ("blob/shape", "<u4", (2,)),
                            ("blob/psize_A", "<f4"), ("blob/sign", "<f4"),
                            ("alignments3D/pose", "<f4", (3,)),
                            ("alignments3D/shift", "<f4", (2,)),
                            ("alignments3D/psize_A", "<f4"), ("ctf/df1_A", "<f4"),
                            ("ctf/df2_A", "<f4"), ("ctf/df_angle_rad", "<f4"),
                            ("ctf/accel_kv", "<f4"), ("ctf/cs_mm", "<f4"),
                            ("ctf/amp_contrast", "<f4"), ("ctf/phase_shift_rad", "<f4")])
    cs["uid"], cs["blob/idx"], cs["blob/shape"] = np.arange(n), ii, D
    cs["blob/path"] = np.array([s.encode() for s in names])[fi]
    cs["blob/psize_A"], cs["alignments3D/psize_A"], cs["blob/sign"] = 2.0, 2.0, -1.0
    cs["alignments3D/pose"] = rng.normal(0, 1, (n, 3))
    cs["alignments3D/shift"] = origin
    cs["ctf/df1_A"], cs["ctf/df2_A"] = df[:, 0], df[:, 1]
    cs["ctf/accel_kv"], cs["ctf/cs_mm"], cs["ctf/amp_contrast"] = 300, 2.7, 0.1
    write_cs(folder / "particles.cs", cs)
    return {"star": folder / "particles.star", "cs": folder / "particles.cs",
            "txt": folder / "stacks.txt"}


def opening(n: int, n_stacks: int) -> list[dict]:
    files = sparse_metadata(WORK / "open", n, n_stacks)
    rows = []
    for kind, path in files.items():
        r = _json([sys.executable, "-c", OPEN, str(path)])
        rows.append({"kind": kind, "size_mb": path.stat().st_size / 1e6, **r})
        print(rows[-1])
    return rows


def report(a, argv, proc, mem, stack_gib, opened, load) -> str:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    one = proc[0]["images_per_s"]
    lines = ["## Scaling out: processes, lazy reading with workers, opening 1M particles", "",
             (f"`{command(__file__, argv)}`; {cpus} CPUs, load average {load[0]:.1f} at start "
              f"and {os.getloadavg()[0]:.1f} at the end (machine shared with other agents: "
              "rates follow the load of the moment). 3x256 encoder and decoder, zdim 8."), "",
             (f"### Data-parallel processes (gloo, torchrun; {a.n1} images, D={a.D1}, one "
              "epoch, batch 32)"),
             "", ("| processes | threads each | images/s | vs 1 process | epoch steps (s) | "
                  "wall with start-up (s) |"), "|---|---|---|---|---|---|"]
    lines += [f"| {r['nproc']} | {r['threads']} | {r['images_per_s']:.1f} | "
              f"{r['images_per_s'] / one:.2f} | {r['epoch_s']:.1f} | {r['wall_s']:.1f} |"
              for r in proc]
    lines += ["", ("On one machine the processes share its cores: 1 process of all the cores' "
                   "threads, 1 process of 1 thread (what each of the 2 processes has) and 2 "
                   "processes that also all-reduce their gradients every step. The speed-up "
                   "data-parallel training is for comes from more sockets, nodes or GPUs; on "
                   "one socket it shows what splitting the batch over processes costs or "
                   "gains against threads."), "",
              (f"### Lazy reading with workers vs in memory ({a.n2} images, D={a.D2}, "
               f"{stack_gib:.2f} GiB stack; address-space limit {a.limit_gib:g} GiB)"), "",
              ("| mode | address-space limit | result | workers | peak RSS (GiB) | images/s | "
               "set-up (s) |"),
              "|---|---|---|---|---|---|---|"]
    for r in mem:
        limit = f"{a.limit_gib:g} GiB" if r["limit"] else "none"
        if r["ok"]:
            lines.append(f"| {r['mode']} | {limit} | trained | {r['workers']} | "
                         f"{r['peak_rss_gib']:.2f} | {r['images_per_s']:.1f} | "
                         f"{r['setup_s']:.1f} |")
        else:
            lines.append(f"| {r['mode']} | {limit} | failed: {r['error']} | | "
                         f"{r['peak_rss_gib']:.2f} | | |")
    lines += ["", (f"{a.batches} batches of {a.b} after one warm-up batch, through "
                   f"`TrainData.stream` as `cryoscape train` runs them, the step on "
                   f"{a.threads} thread(s) (`--threads`), so that a worker reading ahead has a "
                   "core of its own as `--workers`' default leaves it. Peak RSS is the "
                   "training process's (VmHWM); a worker's own is a few hundred MB. The stack's "
                   "pages stay in the kernel's page cache, counted in none of these."), "",
              f"### Opening {a.particles:,} particles over {a.stacks} stacks (lazy, headers only)",
              "", ("| file | size (MB) | particles | stacks | poses, CTF | seconds | of which "
                   "reading the table |"), "|---|---|---|---|---|---|---|"]
    lines += [f"| .{r['kind']} | {r['size_mb']:.0f} | {r['n']:,} | {r['stacks']} | "
              f"{'yes' if r['poses'] else 'no'}, {'yes' if r['ctf'] else 'no'} | "
              f"{r['seconds']:.1f} | {r['table_s']:.1f} |" for r in opened]
    lines += ["", ("`load_particles(path, lazy=True)` in a fresh process: the table parsed, "
                   "names split, every stack's header read (sizes checked), poses and CTF "
                   "converted; no image is read (the stacks are sparse files). Reading the "
                   "table alone (`read_star`, `read_cs`) timed again after, from the page "
                   "cache."), "",
              "### GPU", "",
              ("No GPU lent to this task: images/s at D=128 and D=256 with AMP on and off and "
               "with compile, the comparison with cryoDRGN 4.3.1 on the same GPU and the "
               "D=128 decode time are not measured. The GPU logic (device selection, the "
               "bf16/fp16 policy, decode chunks from free memory) is covered by CPU tests "
               "(tests/test_device.py).")]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n1", type=int, default=1024)
    p.add_argument("-D1", type=int, default=64)
    p.add_argument("--n2", type=int, default=70000)
    p.add_argument("-D2", type=int, default=128)
    p.add_argument("--limit-gib", type=float, default=4.0)
    p.add_argument("--batches", type=int, default=12)
    p.add_argument("-b", type=int, default=8, help="batch size of the memory comparison")
    p.add_argument("--memory-subset", type=int, default=8000)
    p.add_argument("--threads", type=int, default=1,
                   help="training threads of the memory comparison (the workers take the rest)")
    p.add_argument("--particles", type=int, default=1_000_000)
    p.add_argument("--stacks", type=int, default=1000)
    a = p.parse_args(argv)
    from cryoscape.core.simulate.dataset import simulate
    load = os.getloadavg()
    shutil.rmtree(WORK, ignore_errors=True)
    try:
        small = simulate("linear", a.n1, WORK / "small", D=a.D1, snr=0.1, ctf=True,
                         max_shift=3.0, seed=0).path
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else os.cpu_count()
        proc = processes(small, cpus)
        base = simulate("linear", 1000, WORK / "base", D=a.D2, snr=0.1, ctf=True,
                        max_shift=3.0, seed=1).path
        stack_gib = tiled_stack(base, WORK / "big", a.n2)
        mem = memory_modes(WORK / "big", a)
        opened = opening(a.particles, a.stacks)
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    text = report(a, argv, proc, mem, stack_gib, opened, load)
    print(text)
    write_section("scale", text)


if __name__ == "__main__":
    main()
