"""Time cryoDRGN 4.3.1's own pose search per image; run with the cryoDRGN venv's python
(benchmarks/_cryodrgn_venv; imports cryoDRGN only, never cryoscape).

Each search is built by cryoDRGN's own code with its command's defaults:
- `abinit` (CryoDRGN-AI, `cryodrgn abinit`): its ModelTrainer is constructed by
  `commands.abinit.main` itself (its `train` replaced by a no-op that hands the trainer back),
  so the model (3x256 hypervolume), the data loader (batch_size_hps images per batch) and the
  search parameters are exactly the command's; each batch is timed through
  `pose_search_ai.opt_theta_trans(model, y, lattice, ps_params, ctf_i=...)`, with the CTF of
  the batch from `trainer.get_ctfs_at`, as its training step does (l_max = l_end: its "circ"
  output mask).
- `abinit_homo_old`: its argument defaults, its `make_model` (3x256 decoder) and its
  `PoseSearch(model, lattice, l_start, l_end, ...)`, searching batches of its batch size with
  their CTF (computed as its `train` does) through `PoseSearch.opt_theta_trans`; Lmax = l_end,
  the band its searches reach after its ramp (its first search epoch uses L = l_start only).

Untrained weights (the search's cost does not depend on them). The first batch is timed apart
(caches, allocation); the median of the others gives ms per image, wall and CPU (all threads
of the process: on a shared machine the wall time depends on the load). Prints one JSON
object.

    _cryodrgn_venv/bin/python benchmarks/cryodrgn_search_time.py METHOD PARTICLES CTF IND
        --batches 3 --threads 2 --t-extent 5 --workdir DIR
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch


def _timed(fn, batches: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds (this process, all threads) of fn(i) for each batch i."""
    wall, cpu = [], []
    for i in range(batches):
        t, c = time.perf_counter(), time.process_time()
        fn(i)
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return wall, cpu


def abinit(particles, ctf_pkl, ind, threads, t_extent, workdir, batches):
    from cryodrgn import pose_search_ai
    from cryodrgn.commands import abinit as cmd
    parser = argparse.ArgumentParser()
    cmd.add_args(parser)
    args = parser.parse_args([particles, "--ctf", ctf_pkl, "--ind", ind, "--zdim", "0",
                              "--t-extent", str(t_extent), "--max-threads", str(threads),
                              "--seed", "0", "--no-analysis", "-o", str(workdir)])
    held = {}
    cmd.ModelTrainer.train = lambda self: held.setdefault("trainer", self)
    cmd.main(args)
    tr = held["trainer"]
    torch.set_num_threads(threads)
    model = tr.model
    model.hypervolume.eval()
    model.ps_params["l_min"], model.ps_params["l_max"] = tr.configs.l_start, tr.configs.l_end
    it = iter(tr.data_generator_pose_search)
    data = [next(it) for _ in range(batches)]

    def search(i):
        d = data[i]
        with torch.no_grad():
            pose_search_ai.opt_theta_trans(model, d["y"], tr.lattice, model.ps_params,
                                           ctf_i=tr.get_ctfs_at(d["index"]))

    ps = model.ps_params
    settings = {k: ps[k] for k in ("l_min", "l_max", "niter", "nkeptposes", "base_healpy",
                                   "t_extent", "t_n_grid")}
    settings.update(base_directions=len(model.base_rot), base_inplane=len(model.base_inplane),
                    base_shifts=len(model.base_shifts),
                    decoder=f"{tr.configs.hypervolume_layers}x{tr.configs.hypervolume_dim}",
                    batch=len(data[0]["index"]))
    return _timed(search, batches), settings


def abinit_homo_old(particles, ctf_pkl, ind, threads, t_extent, workdir, batches):
    from cryodrgn import ctf, dataset, utils
    from cryodrgn.commands import abinit_homo_old as cmd
    from cryodrgn.lattice import Lattice
    from cryodrgn.pose_search import PoseSearch
    parser = argparse.ArgumentParser()
    cmd.add_args(parser)
    args = parser.parse_args([particles, "--ctf", ctf_pkl, "--ind", ind,
                              "--t-extent", str(t_extent), "--seed", "0", "-o", str(workdir)])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    index = utils.load_pkl(args.ind)
    data = dataset.ImageDataset(mrcfile=args.particles, norm=args.norm,
                                invert_data=args.invert_data, ind=index, window=args.window,
                                window_r=args.window_r)
    D = data.D
    params = torch.tensor(ctf.load_ctf_for_training(D - 1, args.ctf)[index])
    lattice = Lattice(D, extent=0.5)
    model = cmd.make_model(args, D)
    model.eval()
    ps = PoseSearch(model, lattice, args.l_start, args.l_end, None, t_extent=args.t_extent,
                    t_ngrid=args.t_ngrid, niter=args.niter, nkeptposes=args.nkeptposes,
                    base_healpy=args.base_healpy)
    B = args.batch_size

    def search(i):
        sel = np.arange(i * B, (i + 1) * B)
        y = data[sel]["y"]
        c = params[sel]
        freqs = lattice.freqs2d.unsqueeze(0).expand(B, *lattice.freqs2d.shape) / c[:, 0].view(
            B, 1, 1)
        ctf_i = ctf.compute_ctf(freqs, *torch.split(c[:, 1:], 1, 1)).view(B, D, D)
        with torch.no_grad():
            ps.opt_theta_trans(y, ctf_i=ctf_i)

    settings = {"l_min": ps.Lmin, "l_max": ps.Lmax, "niter": ps.niter,
                "nkeptposes": ps.nkeptposes, "base_healpy": ps.base_healpy,
                "t_extent": ps.t_extent, "t_n_grid": ps.t_ngrid,
                "base_directions": ps.nbase, "base_inplane": len(ps.base_inplane),
                "base_shifts": len(ps.base_shifts), "decoder": f"{args.layers}x{args.dim}",
                "batch": B}
    return _timed(search, batches), settings


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("method", choices=("abinit", "abinit_homo_old"))
    p.add_argument("particles")
    p.add_argument("ctf")
    p.add_argument("ind", help="index .pkl of the images to load (enough for the batches)")
    p.add_argument("--batches", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--t-extent", type=float, default=5.0)
    p.add_argument("--workdir", required=True, help="folder for the trainer's config and log")
    a = p.parse_args()
    Path(a.workdir).mkdir(parents=True, exist_ok=True)
    fn = abinit if a.method == "abinit" else abinit_homo_old
    load = os.getloadavg()[0]
    (wall, cpu), settings = fn(a.particles, a.ctf, a.ind, a.threads, a.t_extent, a.workdir,
                               a.batches)
    B = settings["batch"]
    print(json.dumps({"method": a.method, "settings": settings, "threads": a.threads,
                      "batch_wall_s": wall, "batch_cpu_s": cpu,
                      "ms_per_image": 1000 * float(np.median(wall[1:] or wall)) / B,
                      "cpu_ms_per_image": 1000 * float(np.median(cpu[1:] or cpu)) / B,
                      "first_batch_ms_per_image": 1000 * wall[0] / B,
                      "load": [load, os.getloadavg()[0]]}))


if __name__ == "__main__":
    main()
