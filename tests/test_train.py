"""Training engine: forward model, accuracy (hand, two states), exact resume, stops."""
from __future__ import annotations

import functools
import json
import math
import os
import signal
import sys

import numpy as np
import pytest
import torch
import yaml
from cryoscape.core.ctf import ctf_from_params
from cryoscape.core.errors import CryoscapeError
from cryoscape.core.fourier import ht2_center
from cryoscape.core.io.cryodrgn import save_index
from cryoscape.core.io.mrc import read_mrc
from cryoscape.core.io.pickles import load_pickles
from cryoscape.core.lattice import circular_mask
from cryoscape.core.metrics import fsc
from cryoscape.core.train import TrainConfig, TrainingDiverged, train
from cryoscape.core.train.checkpoint import load as load_ckpt
from cryoscape.core.train.data import epoch_order
from cryoscape.core.train.forward import SliceLattice, center_hartley


def _sym(h: torch.Tensor) -> torch.Tensor:
    """Hartley images [B, D, D] on the (D+1)^2 lattice (last row/column wrap around)."""
    h = torch.cat([h, h[:, :1]], 1)
    return torch.cat([h, h[:, :, :1]], 2)


# --- forward model ---------------------------------------------------------------------------

def test_center_hartley_undoes_shifts(fixtures_dir):
    hand = fixtures_dir / "hand"
    imgs, _ = read_mrc(hand / "hand.mrcs")
    moved, _ = read_mrc(hand / "hand_shifted.mrcs")
    shifts = torch.from_numpy(np.load(hand / "hand_shifted_px.npy")).float()
    D = imgs.shape[-1]
    lat = SliceLattice(D)
    ref = _sym(ht2_center(torch.from_numpy(imgs))).reshape(len(imgs), -1)
    got = center_hartley(_sym(ht2_center(torch.from_numpy(moved))).reshape(len(imgs), -1),
                         lat.full_coords, shifts)
    inner = lat.full_coords[:, :2].norm(dim=1) < 0.45
    err = (got - ref)[:, inner].norm() / ref[:, inner].norm()
    wrong = center_hartley(_sym(ht2_center(torch.from_numpy(moved))).reshape(len(imgs), -1),
                           lat.full_coords, -shifts)
    assert err < 1e-4
    assert (wrong - ref)[:, inner].norm() / ref[:, inner].norm() > 0.5


def test_lattice_masks_match_cryodrgn():
    lat = SliceLattice(64)
    assert lat.n_loss == lat.n_enc == 3208          # cryoDRGN's encoder input at D=64
    assert SliceLattice(64, enc_radius=-1).n_enc == 65 * 65
    from cryoscape.core.models import build_model
    for r in (5, 20, 31):            # the encoder's input size is the circle's
        small = {"zdim": 1, "enc_mask": r, "qlayers": 0, "qdim": 8, "players": 0, "pdim": 8}
        n_in = build_model(small, 65).encoder.main[0].in_features
        assert SliceLattice(64, enc_radius=r).n_enc == n_in == int(circular_mask(64, r).sum())
    assert not (lat.coords == 0).all(1).any()       # DC left out
    assert lat.coords[:, :2].norm(dim=1).max() <= 0.5 + 1e-6


def test_norm_matches_cryodrgn_config(fixtures_dir):
    from cryoscape.core.train.data import TrainData
    hand = fixtures_dir / "hand"
    data = TrainData(str(hand / "hand.mrcs"), poses=str(hand / "hand_rot.pkl"))
    conf = yaml.safe_load((fixtures_dir / "cryodrgn_rundir" / "run" / "config.yaml").read_text())
    assert data.norm[0] == 0.0
    assert data.norm[1] == pytest.approx(conf["dataset_args"]["norm"][1], rel=1e-5)
    assert data.y.shape == (100, 3208) and data.shifts is None and data.ctf is None


def test_ctf_on_lattice_matches_ctf_images():
    from cryoscape.core.ctf import ctf_images
    p = torch.tensor([[64, 2.0, 15000, 14000, 30, 300, 2.7, 0.1, 0],
                      [128, 1.0, 25000, 25500, 100, 200, 2.0, 0.07, 10]], dtype=torch.float32)
    lat = SliceLattice(64, enc_radius=-1)
    got = ctf_from_params(p, lat.full_coords[:, :2], 64).reshape(2, 65, 65)[:, :64, :64]
    assert torch.allclose(got, ctf_images(p, D=64), atol=1e-5)


def test_epoch_order_depends_on_seed_and_epoch_only():
    a = epoch_order(100, 3, 5)
    assert torch.equal(a, epoch_order(100, 3, 5))
    assert torch.equal(a.sort().values, torch.arange(100))
    assert not torch.equal(a, epoch_order(100, 3, 6)) and not torch.equal(a, epoch_order(100, 4, 5))


# --- accuracy --------------------------------------------------------------------------------

def _decode(run, z=None):
    from cryoscape.core.run import Run
    r = Run.open(run)
    return r.decode(None if z is None else np.asarray(z, np.float32))


@pytest.mark.slow
def test_homogeneous_hand_reaches_fsc(fixtures_dir, tmp_path):
    hand = fixtures_dir / "hand"
    cfg = TrainConfig(particles=str(hand / "hand.mrcs"), poses=str(hand / "hand_rot.pkl"),
                      zdim=0, num_epochs=25, batch_size=4, lr=3e-3, dec_layers=3, dec_dim=64,
                      pe_type="gaussian", domain="fourier", seed=0, threads=1)
    train(cfg, tmp_path / "run", progress=False)
    vol = _decode(tmp_path / "run")[0]
    bp, _ = read_mrc(hand / "hand-bp.mrc")
    bp = -bp   # cryoDRGN inverted the (white-protein) images; cryoscape sees it needs not
    D = bp.shape[-1]
    good = fsc(vol, bp)[1][D // 4]
    mirrored = fsc(np.ascontiguousarray(vol[::-1]), bp)[1][D // 4]
    assert good >= 0.8, good
    assert mirrored < 0.5, mirrored


@pytest.mark.slow
def test_heterogeneous_run_separates_two_states(tiny_run):
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score
    mu = load_pickles(tiny_run.run / "z.pkl")[0]
    assert mu.shape == (len(tiny_run.state), 1) and mu.dtype == np.float32
    labels = KMeans(2, n_init=5, random_state=0).fit_predict(mu)
    ari = adjusted_rand_score(tiny_run.state, labels)
    assert ari >= 0.9, ari
    D = tiny_run.D
    for k in (0, 1):
        z = np.median(mu[tiny_run.state == k], axis=0, keepdims=True)
        vol = _decode(tiny_run.run, z)[0]
        curve = fsc(vol, tiny_run.volumes[k])[1]
        other = fsc(vol, tiny_run.volumes[1 - k])[1]
        assert curve[D // 4] >= 0.5, (k, curve)
        assert curve[D // 4] > other[D // 4]


def test_tiny_run_directory(tiny_run):
    rd = tiny_run.run
    conf = yaml.safe_load((rd / "config.yaml").read_text())
    assert conf["lattice_args"] == {"D": tiny_run.D + 1, "extent": 0.5, "ignore_DC": True}
    assert conf["model_args"]["zdim"] == 1 and conf["model_args"]["enc_mask"] == tiny_run.D // 2
    assert conf["dataset_args"]["norm"][0] == 0.0 and conf["dataset_args"]["norm"][1] > 0
    prov = conf["cryoscape"]
    assert prov["seed"] == 1 and prov["train_args"]["zdim"] == 1
    (star,) = [i for i in prov["inputs"] if i["role"] == "particles"]
    import hashlib
    data = (tiny_run.data / "particles.star").read_bytes()
    assert star["sha256"] == hashlib.sha256(data).hexdigest() and star["size"] == len(data)
    rows = [json.loads(line) for line in (rd / "metrics.jsonl").read_text().splitlines()]
    steps = -(-600 // 16)                                  # batches per epoch (batch size 16)
    assert [r["epoch"] for r in rows] == list(range(1, tiny_run.epochs + 1))
    assert [r["step"] for r in rows] == [steps * e for e in range(1, tiny_run.epochs + 1)]
    assert rows[-1]["mse"] < 0.5 * rows[0]["mse"]
    assert rows[-1]["elapsed"] == pytest.approx(sum(r["time"] for r in rows), rel=1e-6)
    for r in rows:
        assert r["images_per_s"] == pytest.approx(600 / r["time"], rel=1e-6)
    final = load_ckpt(rd / "weights.pkl")
    for e in (1, tiny_run.epochs):
        w = load_ckpt(rd / f"weights.{e}.pkl")
        adam = w["optimizer_state_dict"]["state"]
        assert w["epoch"] == e and {int(v["step"]) for v in adam.values()} == {steps * e}
        mu, logvar = load_pickles(rd / f"z.{e}.pkl")
        assert mu.shape == logvar.shape == (600, 1) and np.isfinite(mu).all()
    for name, t in w["model_state_dict"].items():  # the final weights are the last epoch's
        assert torch.equal(t, final["model_state_dict"][name]), name
    np.testing.assert_array_equal(load_pickles(rd / "z.pkl")[0], mu)
    status = json.loads((rd / "status.json").read_text())
    assert status["state"] == "done" and status["epoch"] == status["num_epochs"] == tiny_run.epochs
    assert not list(rd.glob("*.part"))


def test_encode_reproduces_training_latents(tiny_run, tmp_path):
    from cryoscape.app.cli import main
    out = tmp_path / "z.npy"
    assert main(["encode", str(tiny_run.run), str(tiny_run.data / "particles.star"),
                 "-o", str(out)]) == 0
    z = np.load(out)
    mu = load_pickles(tiny_run.run / "z.pkl")[0]
    np.testing.assert_allclose(z, mu, atol=1e-4)


def test_encode_matches_cryodrgn_eval_z(fixtures_dir):
    """Preprocessing and encoder input as cryoDRGN: its own run's latents, reproduced."""
    from cryoscape.core.run import Run
    run = fixtures_dir / "cryodrgn_rundir" / "run"
    mu, logvar = Run.open(run).posterior(fixtures_dir / "hand" / "hand.mrcs", epoch=3)
    np.testing.assert_allclose(mu, np.load(fixtures_dir / "cryodrgn_rundir" / "expected" /
                                           "z_mu.npy"), atol=1e-5)
    np.testing.assert_allclose(logvar, load_pickles(run / "z.3.pkl")[1], atol=1e-5)


def test_cli_trains_from_star_with_preset(tiny_data, tmp_path):
    from cryoscape.app.cli import main
    from cryoscape.core.run import Run
    rd = tmp_path / "run"
    assert main(["train", str(tiny_data / "particles.star"), "--zdim", "2", "-n", "1",
                 "--preset", "paper", "--enc-layers", "1", "--dec-layers", "1", "--enc-dim",
                 "16", "--dec-dim", "16", "-b", "32", "--threads", "1", "--no-progress",
                 "-o", str(rd)]) == 0
    conf = yaml.safe_load((rd / "config.yaml").read_text())
    ma = conf["model_args"]
    assert (ma["qlayers"], ma["qdim"], ma["players"], ma["pdim"], ma["zdim"]) == (1, 16, 1, 16, 2)
    assert (ma["pe_type"], ma["domain"]) == ("geom_lowf", "hartley")      # the paper preset
    assert conf["cryoscape"]["command_line"][:2] == ["cryoscape", "train"]
    assert conf["cryoscape"]["apix"] == pytest.approx(8.0)
    run = Run.open(rd)
    assert run.epochs == [1] and run.zdim == 2 and run.apix == pytest.approx(8.0)
    assert run.latents().shape == (600, 2) and run.metrics()[0]["epoch"] == 1


# --- resume, stops ---------------------------------------------------------------------------

@pytest.fixture
def small(tiny_data, tiny_settings, tmp_path):
    """Settings for quick runs: 96 images of the tiny data (with CTF), 3 epochs of 6 batches."""
    ind = tmp_path / "ind.pkl"
    save_index(ind, np.arange(96))

    def make(**kw):
        values = {"ind": str(ind), "num_epochs": 3, "enc_dim": 16, "dec_dim": 16,
                  "enc_layers": 1, "dec_layers": 1, "threads": 1}
        values.update(kw)
        return tiny_settings(str(tiny_data / "particles.mrcs"),
                             poses=str(tiny_data / "poses.pkl"), ctf=str(tiny_data / "ctf.pkl"),
                             **values)
    return make


class Killed(Exception):
    pass


def _kill_mid_epoch_2(event, trainer):
    if event == "batch" and trainer.epoch == 1 and trainer.batch_i == 4:
        raise Killed


def _same_weights(a, b):
    wa, wb = load_ckpt(a)["model_state_dict"], load_ckpt(b)["model_state_dict"]
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_learning_rate_and_kl_schedules():
    """Warm-up rises linearly from 0; cosine halves the rate half way through the decay and
    ends at 0; constant stays; the KL weight's warm-up rises to 1/zdim."""
    cfg = TrainConfig(particles="p.mrcs", lr=1e-3, num_epochs=11, lr_warmup=1.0,
                      lr_schedule="cosine")
    assert [cfg.lr_at(e) for e in (0.0, 0.25, 1.0, 6.0, 11.0)] == \
        pytest.approx([0.0, 2.5e-4, 1e-3, 5e-4, 0.0], abs=1e-12)
    const = TrainConfig(particles="p.mrcs", lr=1e-3, num_epochs=11)
    assert {const.lr_at(e) for e in (0.0, 5.5, 11.0)} == {1e-3}
    with pytest.raises(CryoscapeError, match="--lr-schedule"):
        TrainConfig(particles="p.mrcs", lr_schedule="step")
    kl = TrainConfig(particles="p.mrcs", zdim=4, beta_warmup=2.0)      # KL weight 1/4
    assert [kl.kl_weight_at(e) for e in (0.0, 1.0, 2.0, 7.0)] == [0.0, 0.125, 0.25, 0.25]


def test_weight_average_follows_the_first_steps_closely():
    """After its first copy, the nth update keeps min(1 - 1/steps, (1 + n) / (10 + n)) of the
    average."""
    from cryoscape.core.train.loop import weight_average
    lin = torch.nn.Linear(1, 1, bias=False)
    avg = weight_average(lin, steps=4)
    want = None
    for k, value in enumerate([3.0, 1.0, 0.0, 2.0, 5.0]):
        lin.weight.data.fill_(value)
        avg.update_parameters(lin)
        keep = min(0.75, (1 + k) / (10 + k))
        want = value if want is None else keep * want + (1 - keep) * value
        assert avg.module.weight.item() == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("schedule", [{}, {"lr_schedule": "cosine", "lr_warmup": 1.0,
                                           "weight_average": 0.0},
                                      {"weight_average": 1.0, "beta_warmup": 2.0}],
                         ids=["defaults", "cosine-no-average", "average-kl-warmup"])
def test_resume_after_kill_mid_epoch_is_exact(small, tmp_path, schedule):
    small = functools.partial(small, **schedule)
    train(small(), tmp_path / "ref", progress=False)

    with pytest.raises(Killed):
        train(small(checkpoint_minutes=0), tmp_path / "run", callback=_kill_mid_epoch_2,
              progress=False)
    state = load_ckpt(tmp_path / "run" / "checkpoint.pt")
    assert (state["epoch"], state["batch"]) == (1, 3)          # mid-epoch 2
    assert not (tmp_path / "run" / "weights.2.pkl").exists()
    assert train(None, tmp_path / "run", resume=True, progress=False)["state"] == "done"
    assert _same_weights(tmp_path / "ref" / "weights.pkl", tmp_path / "run" / "weights.pkl")
    for e in (2, 3):
        assert _same_weights(tmp_path / "ref" / f"weights.{e}.pkl",
                             tmp_path / "run" / f"weights.{e}.pkl")
    np.testing.assert_array_equal(load_pickles(tmp_path / "ref" / "z.pkl")[0],
                                  load_pickles(tmp_path / "run" / "z.pkl")[0])
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    ref = [json.loads(x) for x in (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["loss"], r["lr"]) for r in rows] == \
        [(r["epoch"], r["loss"], r["lr"]) for r in ref]
    lr = small().lr      # each epoch's last step: warm-up ends with the first, cosine with 0
    want = [lr, lr / 2, 0.0] if schedule.get("lr_schedule") else [lr, lr, lr]
    assert [r["lr"] for r in rows] == pytest.approx(want, abs=1e-12)
    kl = small().kl_weight
    assert [r["beta"] for r in rows] == ([kl / 2, kl, kl] if "beta_warmup" in schedule
                                         else [kl] * 3)
    live = load_ckpt(tmp_path / "run" / "checkpoint.pt")["model_state_dict"]
    saved = load_ckpt(tmp_path / "run" / "weights.pkl")["model_state_dict"]
    last = [torch.equal(a, b) for a, b in zip(live.values(), saved.values())]
    assert all(last) == (small(**schedule).weight_average == 0)    # saved: the average


def test_resume_of_a_run_from_before_weight_averaging_starts_the_average(small, tmp_path):
    """A checkpoint without a weight average (config.yaml without the setting: a run from
    before it existed) resumes with the default average, started from the restored weights."""
    with pytest.raises(Killed):
        train(small(weight_average=0.0, checkpoint_minutes=0), tmp_path,
              callback=_kill_mid_epoch_2, progress=False)
    conf = yaml.safe_load((tmp_path / "config.yaml").read_text())
    del conf["cryoscape"]["train_args"]["weight_average"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(conf))
    assert "average" not in load_ckpt(tmp_path / "checkpoint.pt")
    assert train(None, tmp_path, resume=True, progress=False)["state"] == "done"
    state = load_ckpt(tmp_path / "checkpoint.pt")
    assert "average" in state
    saved = load_ckpt(tmp_path / "weights.pkl")["model_state_dict"]
    assert not all(torch.equal(state["model_state_dict"][k], saved[k]) for k in saved)


@pytest.mark.slow
def test_sigkill_of_a_training_process_then_resume_is_exact(small, tmp_path):
    import subprocess
    import sys
    import time
    cfg = small(num_epochs=8, checkpoint_minutes=0)     # a checkpoint after every batch
    train(cfg, tmp_path / "ref", progress=False)
    rd = tmp_path / "run"
    code = ("import json, sys; from cryoscape.core.train import TrainConfig, train; "
            "train(TrainConfig.from_dict(json.loads(sys.argv[1])), sys.argv[2], progress=False)")
    child = subprocess.Popen([sys.executable, "-c", code, json.dumps(cfg.to_dict()), str(rd)])
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and child.poll() is None:
            if (rd / "checkpoint.pt").exists():
                s = load_ckpt(rd / "checkpoint.pt")
                if s["epoch"] >= 1 and s["batch"] > 0:
                    break
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    state = load_ckpt(rd / "checkpoint.pt")
    assert child.returncode == -signal.SIGKILL and state["epoch"] < 8
    assert train(None, rd, resume=True, progress=False)["state"] == "done"
    assert _same_weights(tmp_path / "ref" / "weights.pkl", rd / "weights.pkl")
    assert not list(rd.glob(".*.part"))


def test_sigterm_stops_after_batch_and_resumes_exactly(small, tmp_path):
    train(small(num_epochs=2), tmp_path / "ref", progress=False)

    def term(event, trainer):
        if event == "batch" and trainer.epoch == 0 and trainer.batch_i == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    res = train(small(num_epochs=2), tmp_path / "run", callback=term, progress=False)
    assert res == {"state": "stopped", "epoch": 0, "batch": 2}
    assert json.loads((tmp_path / "run" / "status.json").read_text())["state"] == "stopped"
    assert train(None, tmp_path / "run", resume=True, progress=False)["state"] == "done"
    assert _same_weights(tmp_path / "ref" / "weights.pkl", tmp_path / "run" / "weights.pkl")


@pytest.mark.parametrize("poison", ["nan", "explode"])
def test_nan_or_diverging_loss_stops_and_keeps_last_good_checkpoint(small, tmp_path, poison):
    def hit(event, trainer):
        if event == "batch" and trainer.epoch == 1 and trainer.batch_i == 2:
            with torch.no_grad():
                for p in trainer.model.parameters():
                    if poison == "nan":
                        p.fill_(math.nan)
                    else:
                        p.mul_(10.0)

    with pytest.raises(TrainingDiverged, match=f"{'nan' if poison == 'nan' else 'jumped'}"
                                               ".*epoch 2, batch 3.*checkpoint"):
        # a homogeneous model for the jump: scaled encoder weights would overflow exp(logvar)
        train(small(zdim=1 if poison == "nan" else 0), tmp_path / "run", callback=hit,
              progress=False)
    rd = tmp_path / "run"
    state = load_ckpt(rd / "checkpoint.pt")
    assert (state["epoch"], state["batch"]) == (1, 0)
    assert all(torch.isfinite(v).all() for v in state["model_state_dict"].values())
    assert (rd / "weights.1.pkl").exists() and not (rd / "weights.2.pkl").exists()
    assert json.loads((rd / "status.json").read_text())["state"] == "failed"


def test_pause_file_stops_after_epoch_and_cli_resumes(small, tmp_path):
    from cryoscape.app.cli import main

    def pause(event, trainer):
        if event == "batch" and trainer.epoch == 0 and trainer.batch_i == 1:
            (trainer.rd.path / "PAUSE").touch()

    rd = tmp_path / "run"
    assert train(small(), rd, callback=pause, progress=False) == {"state": "paused",
                                                                  "epoch": 1, "batch": 0}
    assert (rd / "weights.1.pkl").exists() and not (rd / "weights.2.pkl").exists()
    assert not (rd / "PAUSE").exists()
    assert main(["train", "-o", str(rd), "--resume", "-n", "4", "--no-progress"]) == 0
    assert load_ckpt(rd / "weights.pkl")["epoch"] == 4
    assert [json.loads(x)["epoch"] for x in (rd / "metrics.jsonl").read_text().splitlines()] \
        == [1, 2, 3, 4]


def test_lazy_loading_trains_identically(small, tmp_path):
    train(small(num_epochs=1), tmp_path / "mem", progress=False)
    train(small(num_epochs=1, lazy=True), tmp_path / "lazy", progress=False)
    assert _same_weights(tmp_path / "mem" / "weights.pkl", tmp_path / "lazy" / "weights.pkl")


def test_refuses_to_overwrite_a_run_and_resume_needs_one(small, tmp_path):
    train(small(num_epochs=1), tmp_path / "run", progress=False)
    with pytest.raises(CryoscapeError, match="already holds a run"):
        train(small(num_epochs=1), tmp_path / "run", progress=False)
    with pytest.raises(CryoscapeError, match="nothing to resume"):
        train(None, tmp_path / "empty", resume=True, progress=False)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_training_steps_reuse_freed_memory():
    """The activations freed by one step are reused by the next, not faulted in again page by
    page (65,000 page faults per step of this MLP when glibc gives them back). In a fresh
    process: the count depends on the heap that earlier tests left, and mallopt's setting
    would outlive this test."""
    import subprocess
    code = """
import resource, torch
from cryoscape.core.train.loop import keep_freed_memory
torch.set_num_threads(1)
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 2))
x = torch.randn(32768, 64)
def faults_of_a_step():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    net(x).square().sum().backward()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
assert keep_freed_memory()
for _ in range(3):
    faults_of_a_step()
print(min(faults_of_a_step() for _ in range(3)))   # steady state: without reuse, every step
"""                                                   # faults its ~65,000 pages again
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert int(out.split()[-1]) < 1000
