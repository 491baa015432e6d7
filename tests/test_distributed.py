"""Data-parallel training (core/train/distributed) on CPU with gloo, 2 processes, tiny data.

The 2-process trajectories match one process's to 1e-4 (relative), not exactly: DDP averages
the two shares' gradients, a different order of floating-point sums than one batch's mean, and
Adam's normalisation carries those 1e-7 differences on through the steps. Decoder-only runs
(zdim 0) are compared: a VAE's reparameterisation noise is drawn per rank, so its samples
differ from one process's by design.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from cryoscape.core.errors import CryoscapeError

from tests.train_fixtures import tiny_config

pytestmark = pytest.mark.slow   # 2 processes train the tiny data set: 10-25 s a test
JOIN_SECONDS = 300          # a bound on a child's life, so that a hang fails instead of waiting
TOL = 1e-4                  # relative, epoch losses (measured: 1e-9 after 1 epoch, 3e-5 after 2)
WEIGHTS_TOL = 5e-3          # relative norm per tensor after 2 epochs (measured: 1e-3)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank, world, port, cfg, out, overrides, fail_at, stop_at, result):
    """One training process, as torchrun would start it (its environment)."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      LOCAL_WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), CRYOSCAPE_DIST_TIMEOUT="120")
    from cryoscape.core.train import TrainConfig, train

    def callback(event, tr):
        if event != "batch":
            return
        if rank == 1 and (tr.epoch, tr.batch_i) == fail_at:
            raise RuntimeError("rank 1 broke")
        if rank == 0 and (tr.epoch, tr.batch_i) == stop_at:
            signal.raise_signal(signal.SIGTERM)      # as a scheduler stopping the job
    try:
        state = train(TrainConfig.from_dict(cfg) if cfg else None, out, callback=callback,
                      progress=False, resume=cfg is None, overrides=overrides)
        Path(result).write_text(json.dumps({"state": state}))
    except (CryoscapeError, RuntimeError) as e:
        Path(result).write_text(json.dumps({"error": str(e)}))
        sys.exit(1)


def run_ranks(tmp_path, cfg, out, world=2, overrides=None, fail_at=None, stop_at=None):
    """Train in `world` spawned processes; every child is ended before this returns."""
    ctx = multiprocessing.get_context("spawn")
    port = free_port()
    procs = [ctx.Process(target=_rank, args=(r, world, port, cfg, str(out), overrides, fail_at,
                                             stop_at, str(tmp_path / f"rank{r}.json")))
             for r in range(world)]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join(JOIN_SECONDS)
        assert not any(p.is_alive() for p in procs), "a training process hung"
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(world)]


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def decoder(run: Path, name="weights.pkl") -> dict:
    return torch.load(run / name, weights_only=True)["model_state_dict"]


@pytest.fixture(scope="module")
def homogeneous(tiny_data):
    """Decoder-only settings (no sampling noise), 2 epochs, a last batch of 8 (600 = 37x16+8)."""
    return tiny_config(str(tiny_data / "particles.star"), zdim=0, num_epochs=2, amp=False)


def one_process_run(cfg, tmp_path_factory, name: str) -> Path:
    """`cfg` trained in this process: the reference that a 2-process run must follow."""
    from cryoscape.core.train import train
    out = tmp_path_factory.mktemp(name) / "run"
    train(cfg, out, progress=False)
    return out


@pytest.fixture(scope="module")
def one_process(homogeneous, tmp_path_factory):
    return one_process_run(homogeneous, tmp_path_factory, "one")


def weights_off(a: dict, b: dict) -> float:
    """The largest relative difference (Frobenius norm) of two runs' parameter tensors."""
    return max(float((a[k] - b[k]).norm() / b[k].norm().clamp_min(1e-12)) for k in b)


def test_two_processes_follow_one(tmp_path, homogeneous, one_process):
    out = tmp_path / "run"
    ranks = run_ranks(tmp_path, homogeneous.to_dict(), out)
    assert all(r["state"]["state"] == "done" for r in ranks)
    ref, got = metrics(one_process), metrics(out)
    assert [r["epoch"] for r in got] == [1, 2]
    for a, b in zip(got, ref):
        assert a["loss"] == pytest.approx(b["loss"], rel=TOL)
        assert a["mse"] == pytest.approx(b["mse"], rel=TOL)
    assert weights_off(decoder(out), decoder(one_process)) < WEIGHTS_TOL
    assert got[1]["loss"] < 0.9 * got[0]["loss"]       # it trained: not a trivial match


def test_stop_on_two_resume_on_one(tmp_path, homogeneous, one_process):
    """SIGTERM on rank 0 mid-epoch: both stop at the same batch, rank 0 checkpoints; one
    process finishes the run from the 2-process checkpoint on the 1-process trajectory."""
    from cryoscape.core.train import train
    from cryoscape.core.train.checkpoint import load
    out = tmp_path / "run"
    ranks = run_ranks(tmp_path, homogeneous.to_dict(), out, stop_at=(1, 10))
    assert [r["state"] for r in ranks] == [{"state": "stopped", "epoch": 1, "batch": 10}] * 2
    assert load(out / "checkpoint.pt")["batch"] == 10
    assert train(None, out, resume=True, progress=False) == {"state": "done", "epoch": 2,
                                                              "batch": 0}
    ref, got = metrics(one_process), metrics(out)
    assert [r["epoch"] for r in got] == [1, 2]
    for a, b in zip(got, ref):
        assert a["loss"] == pytest.approx(b["loss"], rel=TOL)
    assert weights_off(decoder(out), decoder(one_process)) < WEIGHTS_TOL
    log = (out / "run.log").read_text()
    assert log.count("epoch 1: loss") == 1 and "resumed at epoch 2, batch 10" in log


def test_torchrun_cli_run_directory(tmp_path, tiny_data):
    """`torchrun -m cryoscape.app.cli train`: one run directory, rank 0's files only, latents
    of every image gathered in order; the run then continues in one process."""
    from cryoscape.core.train import train
    from cryoscape.core.train.loop import encode_all, load_data
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "cryoscape.app.cli", "train", str(tiny_data / "particles.star"), "-o", str(out),
           "--zdim", "1", "-n", "1", "-b", "16", "--enc-dim", "64", "--dec-dim", "64",
           "--threads", "1", "--no-amp", "--seed", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "CRYOSCAPE_DIST_TIMEOUT": "120"},
                            start_new_session=True)     # torchrun and its workers: one group
    try:
        stdout, stderr = proc.communicate(timeout=JOIN_SECONDS)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, stderr[-3000:]
    assert stdout.count("cryoscape train: done at epoch 1") == 1
    conf = yaml.safe_load((out / "config.yaml").read_text())
    assert conf["cryoscape"]["world_size"] == 2
    names = sorted(p.name for p in out.iterdir())
    assert not [n for n in names if n.startswith(".")], names       # no partial files
    assert {"weights.1.pkl", "z.1.pkl", "weights.pkl", "z.pkl", "checkpoint.pt"} <= set(names)
    assert [r["epoch"] for r in metrics(out)] == [1]
    with open(out / "z.1.pkl", "rb") as f:
        mu = pickle.load(f)
    assert mu.shape == (600, 1)
    # the gathered latents are those of the epoch's weights, image by image, in order
    from cryoscape.core.models import build_model
    from cryoscape.core.train.checkpoint import load
    data = load_data(tiny_config(str(tiny_data / "particles.star")), "cpu",
                     conf["dataset_args"]["norm"])
    model = build_model(conf["model_args"], data.D + 1, data.lattice.n_enc)
    model.load_state_dict(load(out / "weights.1.pkl")["model_state_dict"])
    mine, _ = encode_all(model, data)
    np.testing.assert_allclose(mu, mine, rtol=1e-4, atol=1e-5)
    assert train(None, out, resume=True, progress=False,
                 overrides={"num_epochs": 2})["epoch"] == 2
    assert [r["epoch"] for r in metrics(out)] == [1, 2]


def test_failing_rank_stops_the_other(tmp_path, homogeneous):
    out = tmp_path / "run"
    ranks = run_ranks(tmp_path, homogeneous.to_dict(), out, fail_at=(0, 3))
    assert ranks[1] == {"error": "rank 1 broke"}
    assert "another training process failed" in ranks[0]["error"]
    assert "--resume" in ranks[0]["error"]


def test_refused_batch(tmp_path, homogeneous, monkeypatch):
    """A global batch that does not divide among the processes is refused before any process
    joins the group (every rank refuses the same way), and RUN is not created."""
    import dataclasses

    from cryoscape.core.train import train
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(CryoscapeError, match="must be a multiple of the 2 processes"):
        train(dataclasses.replace(homogeneous, batch_size=15), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()

def test_shares_weigh_to_the_global_mean():
    """Uneven shares (7 images on 2 ranks, 1 image on 3): DDP's average of the weighted share
    means is the global batch's mean; parts of the encoding pass cover every image once."""
    from cryoscape.core.train.distributed import Group
    loss = torch.arange(8.0) ** 2
    for n, world in ((7, 2), (1, 3), (8, 2)):
        idx = torch.arange(n)
        shares = [Group(r, world).share(idx) for r in range(world)]
        used = [s for s, w, _ in shares if w]
        assert torch.equal(torch.cat(used), idx)
        assert [int(s[0]) for s, w, first in shares if w] == [first for _, w, first in shares if w]
        ddp = sum(w * loss[s].mean() for s, w, _ in shares) / world
        assert float(ddp) == pytest.approx(float(loss[idx].mean()))
    parts = [Group(r, 3).part(7) for r in range(3)]
    assert [i for p in parts for i in p] == list(range(7))
    # the owners of an epoch's images: the rank whose share of its batch holds each
    order = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    owner = Group(0, 2).owners(order, 4)           # batches of 4, 4, 2: shares 2+2, 2+2, 1+1
    assert owner[order].tolist() == [0, 0, 1, 1, 0, 0, 1, 1, 0, 1]


@pytest.fixture(scope="module")
def abinit_settings(tmp_path_factory):
    """Ab initio on 64 noiseless images: one epoch of each phase (pretrain, search, refine)."""
    from cryoscape.core.simulate.dataset import simulate
    from cryoscape.core.train import TrainConfig
    data = tmp_path_factory.mktemp("abinit_data")
    simulate("homogeneous", 64, data, D=32, ctf=True, max_shift=2.0, seed=5)
    return TrainConfig(particles=str(data / "particles.mrcs"), ctf=str(data / "ctf.pkl"), zdim=0,
                       pose_search=True, num_epochs=3, pretrain_epochs=1, search_epochs=1,
                       search_chunk=16, batch_size=4, lr=2e-3, dec_layers=3, dec_dim=64,
                       seed=0, threads=1, checkpoint_minutes=60.0, t_extent=3.0, amp=False)


@pytest.fixture(scope="module")
def abinit_one(abinit_settings, tmp_path_factory):
    return one_process_run(abinit_settings, tmp_path_factory, "abinit_one")


def same_ab_initio(run: Path, ref: Path) -> None:
    from cryoscape.core.io.pickles import load_pickles
    for a, b in zip(metrics(run), metrics(ref), strict=True):
        assert a["poses"] == b["poses"]
        assert a["loss"] == pytest.approx(b["loss"], rel=TOL), a["epoch"]
    for e in (1, 2, 3):
        (r2, t2), (r1, t1) = (load_pickles(r / f"pose.{e}.pkl")[0] for r in (run, ref))
        np.testing.assert_allclose(r2, r1, atol=1e-3)
        np.testing.assert_allclose(t2, t1, atol=1e-4)


def test_ab_initio_on_two_processes(tmp_path, abinit_settings, abinit_one):
    """The poses searched by shares and gathered, the corrections refined by their owners:
    the poses after each phase (pretrain, search, refine) and the losses are one process's."""
    two = tmp_path / "two"
    ranks = run_ranks(tmp_path, abinit_settings.to_dict(), two)
    assert all(r["state"]["state"] == "done" for r in ranks)
    same_ab_initio(two, abinit_one)


def test_ab_initio_stop_in_refinement_resume_on_one(tmp_path, abinit_settings, abinit_one):
    """Stopped mid-refinement on 2 processes, the checkpoint holds every rank's corrections:
    one process finishes on the one-process poses."""
    from cryoscape.core.train import train
    two = tmp_path / "two"
    ranks = run_ranks(tmp_path, abinit_settings.to_dict(), two, stop_at=(2, 5))
    assert ranks[0]["state"] == {"state": "stopped", "epoch": 2, "batch": 5}
    assert train(None, two, resume=True, progress=False)["state"] == "done"
    same_ab_initio(two, abinit_one)


def test_heterogeneous_ab_initio_classes_on_two_processes(tmp_path, abinit_settings):
    """Heterogeneous, while the images are in classes (pretraining and search: no sampling
    noise, the decoder at the class points): the classes each rank found are gathered, and
    the losses, poses and classes are one process's."""
    import dataclasses

    from cryoscape.core.io.pickles import load_pickles
    from cryoscape.core.train import train
    from cryoscape.core.train.checkpoint import load
    cfg = dataclasses.replace(abinit_settings, zdim=2, num_epochs=2, search_classes=2)
    one, two = tmp_path / "one", tmp_path / "two"
    train(cfg, one, progress=False)
    ranks = run_ranks(tmp_path, cfg.to_dict(), two)
    assert all(r["state"]["state"] == "done" for r in ranks)
    for a, b in zip(metrics(two), metrics(one), strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=TOL), a["epoch"]
    classes = [load(r / "checkpoint.pt")["abinit"]["ref"] for r in (one, two)]
    assert torch.equal(*classes) and len(set(classes[0].tolist())) == 2
    (r2, t2), (r1, t1) = (load_pickles(r / "pose.2.pkl")[0] for r in (two, one))
    np.testing.assert_allclose(r2, r1, atol=1e-3)
    np.testing.assert_allclose(t2, t1, atol=1e-4)
