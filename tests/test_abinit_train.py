"""Ab initio training: poses found from scratch, pose files, the schedule, exact resume."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from cryoscape.core.analysis.posechanges import UNSETTLED_DEG, run_pose_changes
from cryoscape.core.io.pickles import load_pickles
from cryoscape.core.poseerror import pose_error
from cryoscape.core.poses import shifts_from_cryodrgn
from cryoscape.core.run import Run
from cryoscape.core.train import TrainConfig, train
from cryoscape.core.train.abinit import random_rotations, skew_exp
from cryoscape.core.train.checkpoint import load as load_ckpt
from cryoscape.core.train.rundir import RunDir
from cryoscape.core.volalign import rotation_angle

N, D = 384, 32


@pytest.fixture(scope="module")
def homo_data(tmp_path_factory):
    """Noiseless homogeneous images (D=32, CTF, shifts up to 2 px) with their true poses."""
    from cryoscape.core.simulate.dataset import simulate
    out = tmp_path_factory.mktemp("abinit_data")
    simulate("homogeneous", N, out, D=D, ctf=True, max_shift=2.0, seed=5)
    return out


def abinit_config(data, **kw) -> TrainConfig:
    """Small data, many steps per epoch (batch 4): the search has a decoder worth searching."""
    values = {"num_epochs": 7, "pretrain_epochs": 1, "search_epochs": 5, "search_chunk": 32,
              "batch_size": 4, "lr": 2e-3, "dec_layers": 3, "dec_dim": 128, "seed": 0,
              "threads": 1, "checkpoint_minutes": 60.0, "t_extent": 3.0, "zdim": 0, **kw}
    return TrainConfig(particles=str(data / "particles.mrcs"), ctf=str(data / "ctf.pkl"),
                       pose_search=True, **values)


@pytest.fixture(scope="module")
def homo_run(homo_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("abinit_run") / "run"
    train(abinit_config(homo_data), out, progress=False)
    return out


def _found(run, epoch=None):
    rot, trans = load_pickles(run / ("pose.pkl" if epoch is None else f"pose.{epoch}.pkl"))[0]
    return np.asarray(rot), shifts_from_cryodrgn(trans, D)


def test_skew_exp_and_random_rotations_are_rotations():
    w = torch.tensor([[0.0, 0.0, 0.0], [0.3, -0.2, 0.5]])
    R = skew_exp(w)
    torch.testing.assert_close(R[0], torch.eye(3))
    axis = w[1] / w[1].norm()
    torch.testing.assert_close(R[1] @ axis, axis)                    # the axis stays put
    assert abs(float(torch.arccos((R[1].trace() - 1) / 2)) - float(w[1].norm())) < 1e-5
    Q = random_rotations(2000, torch.Generator().manual_seed(0))
    torch.testing.assert_close(Q @ Q.transpose(1, 2), torch.eye(3).expand(2000, 3, 3),
                               atol=1e-5, rtol=0)
    assert abs(float(Q[:, 2, 2].mean())) < 0.05                      # uniform: E[R33] = 0


def test_homogeneous_ab_initio_finds_the_poses(homo_run, homo_data):
    truth = np.load(homo_data / "truth.npz")
    rot, shifts = _found(homo_run)
    err = pose_error(rot, truth["rotations"], shifts, truth["shifts"])
    assert err["median_angle_deg"] < 5.0, err["median_angle_deg"]
    assert err["median_trans_px"] < 0.5, err["median_trans_px"]
    # the pretraining's random poses are far from the truth; the search brings them close
    first = pose_error(*_found(homo_run, 1)[:1], truth["rotations"])
    assert first["median_angle_deg"] > 30


def test_ab_initio_run_files_and_schedule(homo_run):
    rows = [json.loads(x) for x in (homo_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["poses"] for r in rows] == ["pretrain"] + ["search"] * 5 + ["refine"]
    assert all(r["search_ms_per_image"] > 0 for r in rows if r["poses"] == "search")
    assert not any("search_ms_per_image" in r for r in rows if r["poses"] != "search")
    for e in range(1, 8):
        rot, _ = _found(homo_run, e)
        assert rot.shape == (N, 3, 3)
        np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-4)
    final = load_pickles(homo_run / "pose.pkl")[0]
    np.testing.assert_array_equal(final[0], load_pickles(homo_run / "pose.7.pkl")[0][0])
    # the refinement moves the poses it was given, a little
    moved = pose_error(_found(homo_run, 7)[0], _found(homo_run, 6)[0])["median_angle_deg"]
    assert 0 < moved < 2
    # how much the poses changed, from the second search epoch on (RELION's "changes in
    # optimal orientations"): as the pose files say, large while the search finds the poses,
    # then settled; the last search epoch's change raised no warning
    changes = [r.get("pose_change_deg") for r in rows]
    assert changes[:2] == [None, None] and None not in changes[2:]
    for r, c in zip(rows[2:], run_pose_changes(Run.open(homo_run))[1:]):
        assert r["pose_change_deg"] == pytest.approx(c["pose_change_deg"], abs=1e-3)
        assert r["shift_change_px"] == pytest.approx(c["shift_change_px"], abs=1e-3)
    assert changes[2] > 10 * changes[5] and changes[5] < UNSETTLED_DEG
    assert "has not settled" not in (homo_run / "run.log").read_text()


def test_schedule_chosen_from_the_number_of_images():
    """Epochs left to the data: the paper's 1 + 4 (8 with classes) of 20 from 3000 images on;
    with fewer, enough for ~3000 images of pretraining and ~12000 before the refinement, per
    class with classes (the ab initio benchmark's 300 images at SNR 0.1 aligned with 10 + 40 of
    60: 3.6 deg, with 1 + 4 117 deg off), 10 refinement epochs after them; epochs given are
    kept."""
    from cryoscape.core.train.abinit import auto_schedule

    def epochs(n, zdim=0, **kw):
        c = auto_schedule(TrainConfig(particles="p.mrcs", pose_search=True, zdim=zdim, **kw), n)
        return c.pretrain_epochs, c.search_epochs, c.num_epochs

    assert epochs(3000) == epochs(10**6) == (1, 4, 20)
    assert epochs(3000, zdim=8) == (1, 8, 20)
    assert epochs(300) == (10, 40, 60)
    assert epochs(1500, zdim=8) == (2, 16, 28)                       # 2 classes
    assert epochs(1500, zdim=8, search_classes=3) == (2, 24, 36)
    assert epochs(6000, zdim=8) == (1, 8, 20)
    assert epochs(300, search_epochs=5, num_epochs=12) == (10, 5, 12)
    assert TrainConfig(particles="p.mrcs").num_epochs == 20       # known poses


def test_schedule_advice_where_epochs_given_are_few(homo_run):
    """Epochs given below what the images need, or a run that ends inside the search: a
    warning naming the defaults, in run.log too; none for the defaults."""
    from cryoscape.core.train.abinit import auto_schedule, schedule_advice
    homo = TrainConfig(particles="p.mrcs", pose_search=True, zdim=0)
    assert schedule_advice(auto_schedule(homo, 300), 300) is None
    few = TrainConfig(particles="p.mrcs", pose_search=True, zdim=0, pretrain_epochs=1,
                      search_epochs=4)
    assert schedule_advice(auto_schedule(few, 3000), 3000) is None
    assert schedule_advice(auto_schedule(few, 300), 300).endswith(
        "(--pretrain-epochs 10 --search-epochs 40 -n 60)")
    short = TrainConfig(particles="p.mrcs", pose_search=True, zdim=0, num_epochs=3)
    assert "ends before the pose search" in schedule_advice(auto_schedule(short, 3000), 3000)
    log = (homo_run / "run.log").read_text()    # N images, 1 + 5 epochs
    assert f"warning: only {N} images" in log and "--search-epochs" in log


def test_auto_schedule_is_recorded_and_resumed(homo_data, tmp_path):
    """The epochs chosen for the run's images go to config.yaml, and a resume keeps them."""
    class Killed(Exception):
        pass

    seen = []

    def kill(event, trainer):
        if event == "batch" and trainer.batch_i == 2:
            seen.append(trainer.cfg)
            raise Killed

    cfg = abinit_config(homo_data, num_epochs=None, pretrain_epochs=None, search_epochs=None,
                        dec_dim=16, dec_layers=1, checkpoint_minutes=0)
    with pytest.raises(Killed):
        train(cfg, tmp_path / "run", callback=kill, progress=False)
    saved = RunDir(tmp_path / "run").read_config()["cryoscape"]["train_args"]
    pre, search = -(-3000 // N), -(-12000 // N)
    assert (saved["pretrain_epochs"], saved["search_epochs"], saved["num_epochs"]) == \
        (pre, search, pre + search + 10)
    with pytest.raises(Killed):
        train(None, tmp_path / "run", resume=True, callback=kill, progress=False)
    assert all((c.pretrain_epochs, c.search_epochs, c.num_epochs) == (pre, search,
                                                                     pre + search + 10)
               for c in seen) and len(seen) == 2


def test_resume_mid_search_reproduces_the_run(homo_data, tmp_path):
    cfg = {"num_epochs": 4, "search_epochs": 2, "search_chunk": 64, "batch_size": 16,
           "dec_dim": 32, "dec_layers": 2}
    train(abinit_config(homo_data, **cfg), tmp_path / "ref", progress=False)

    class Killed(Exception):
        pass

    def kill(event, trainer):     # epoch 3 is the second search epoch: 24 batches, chunks of 4
        if event == "batch" and trainer.epoch == 2 and trainer.batch_i == 7:
            raise Killed

    with pytest.raises(Killed):
        train(abinit_config(homo_data, checkpoint_minutes=0, **cfg), tmp_path / "run",
              callback=kill, progress=False)
    assert (load_ckpt(tmp_path / "run" / "checkpoint.pt")["batch"]) == 6
    assert train(None, tmp_path / "run", resume=True, progress=False)["state"] == "done"
    metrics = [RunDir(tmp_path / r).read_metrics() for r in ("ref", "run")]
    assert [m.get("pose_change_deg") for m in metrics[0]] == \
        [m.get("pose_change_deg") for m in metrics[1]]
    for e in (3, 4):
        a, b = (load_pickles(tmp_path / r / f"pose.{e}.pkl")[0] for r in ("ref", "run"))
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    wa = load_ckpt(tmp_path / "ref" / "weights.pkl")["model_state_dict"]
    wb = load_ckpt(tmp_path / "run" / "weights.pkl")["model_state_dict"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_ab_initio_weight_average_begins_after_the_search(homo_data, tmp_path):
    """With --weight-average and pose search, the average covers the epochs after the search
    only (its steps counted in the checkpoint), and the final weights are that average."""
    cfg = abinit_config(homo_data, num_epochs=3, search_epochs=1, search_chunk=64,
                        batch_size=16, dec_dim=32, dec_layers=2, weight_average=1.0)
    train(cfg, tmp_path / "run", progress=False)
    average = load_ckpt(tmp_path / "run" / "checkpoint.pt")["average"]
    assert int(average["n_averaged"]) == N // 16          # the third epoch's steps
    final = load_ckpt(tmp_path / "run" / "weights.pkl")["model_state_dict"]
    for k, w in final.items():             # cryoDRGN's names: the decoder's, shortened
        twin, = (a for a in average if a.endswith(f".{k}"))
        assert torch.equal(w, average[twin]), k
    searched = load_ckpt(tmp_path / "run" / "weights.2.pkl")["model_state_dict"]
    assert not all(torch.equal(final[k], searched[k]) for k in final)


def test_run_reads_found_and_given_poses(homo_run, tiny_run):
    run = Run.open(homo_run)
    assert sorted(e for e in run.pose_files() if e is not None) == list(range(1, 8))
    rot, shifts = run.poses(3)
    ref_rot, ref_shifts = _found(homo_run, 3)
    np.testing.assert_array_equal(rot, ref_rot)
    np.testing.assert_allclose(shifts, ref_shifts, atol=1e-5)
    # a known-pose run: the poses it was trained with (the .star's), in px
    truth = np.load(tiny_run.data / "truth.npz")
    rot, shifts = Run.open(tiny_run.run).poses()
    np.testing.assert_allclose(rot, truth["rotations"], atol=1e-5)
    np.testing.assert_allclose(shifts, truth["shifts"], atol=1e-4)




def test_heterogeneous_ab_initio_separates_two_conformations(tmp_path):
    """Two conformations unlike each other (the discrete model's arm at 0 and 180 degrees;
    against each other's map, images find no poses): while the poses are searched the images,
    in random classes at first, join the class whose volume they fit (every image in one,
    class sizes in metrics.jsonl), the decoder trained at the class points and the encoder
    drawn to them (loss: mse + the pull); both states' poses are found, each in its class's
    frame; the first refinement epoch superposes the smaller class onto the larger
    (recorded), in one hand, and the VAE takes over (loss: mse + the KL term)."""
    from cryoscape.core.simulate.dataset import simulate
    from sklearn.metrics import adjusted_rand_score
    data, n = tmp_path / "data", 512
    simulate("discrete", n, data, D=D, ctf=True, max_shift=2.0, states=2, seed=6)
    truth = np.load(data / "truth.npz")
    cfg = abinit_config(data, zdim=2, search_classes=2, search_epochs=8, num_epochs=10)
    train(cfg, tmp_path / "run", progress=False)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["poses"] for r in rows] == ["pretrain"] + ["search"] * 8 + ["refine"]
    assert all(len(r["classes"]) == 2 and sum(r["classes"]) == n for r in rows[1:9])
    classes = load_ckpt(tmp_path / "run" / "checkpoint.pt")["abinit"]["ref"].numpy()
    assert adjusted_rand_score(truth["state"], classes) >= 0.9
    # classes change while they form, then hardly; the superposition moved the poses' last
    # state too, so the first refinement epoch's change is the refinement's alone
    assert all(0 <= r["class_change"] <= 1 for r in rows[2:9]) and rows[8]["class_change"] < 0.05
    assert "class_change" not in rows[9] and rows[9]["pose_change_deg"] < 2.0
    sizes = rows[8]["classes"]
    assert [(f["class"], f["onto"]) for f in rows[9]["class_frames"]] == \
        [(int(np.argmin(sizes)), int(np.argmax(sizes)))]
    rot, shifts = _found(tmp_path / "run")
    errs = []
    for s in (0, 1):
        m = truth["state"] == s
        errs.append(pose_error(rot[m], truth["rotations"][m], shifts[m], truth["shifts"][m]))
        assert errs[-1]["median_angle_deg"] < 3.0 and errs[-1]["median_trans_px"] < 0.5, s
    # superposed: one hand, one frame and one position for both states
    assert errs[0]["hand"] == errs[1]["hand"]
    B0, B1 = (torch.as_tensor(e["alignment"]) for e in errs)
    assert rotation_angle(B0.T @ B1) < 5.0                        # measured 3.1
    assert np.abs(errs[0]["offset_px"] - errs[1]["offset_px"]).max() < 0.5    # 0.15
    pull = [r["loss"] - r["mse"] for r in rows]
    kl_term = rows[9]["beta"] * rows[9]["kl"] / (np.pi * (D // 2) ** 2)
    assert min(pull[:9]) > 0.05 and pull[9] == pytest.approx(kl_term, rel=0.2)
