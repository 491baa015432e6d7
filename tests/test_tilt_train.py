"""Tilt pairs in training (the paper's appendix D.2): the pair loss, the two-image encoder, the
tilt-pair pose search score (which fixes the hand), known-pose and ab initio runs, resume."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch
import yaml
from cryoscape.core import so3grid
from cryoscape.core.errors import CryoscapeError
from cryoscape.core.io.pickles import load_pickles
from cryoscape.core.models import TiltEncoder, build_model
from cryoscape.core.poses import tilt_rotation, tilted_poses
from cryoscape.core.posesearch import PoseSearch, SearchConfig, TiltPairs, VolumeSlicer
from cryoscape.core.preprocess import preprocess_images
from cryoscape.core.rotations import random_rotations
from cryoscape.core.run import Run
from cryoscape.core.simulate import make_volume, project
from cryoscape.core.simulate.dataset import _random_ctf
from cryoscape.core.simulate.dataset import simulate as simulate_dataset
from cryoscape.core.train import TrainConfig, train
from cryoscape.core.train.checkpoint import load as load_ckpt
from cryoscape.core.train.data import TrainData
from cryoscape.core.train.forward import SliceLattice, run_batch

from tests.conftest import cli

D, TILT = 32, 45.0


class MapModel(torch.nn.Module):
    """A homogeneous "model" whose decoder is a map itself (noiseless truth)."""
    zdim = 0
    tilt = False

    def __init__(self, vol):
        super().__init__()
        self.slicer = VolumeSlicer.from_map(vol, oversample=2)

    def decode(self, coords, z=None, symmetric=False):
        return self.slicer(coords)


def angle_deg(Ra, Rb) -> torch.Tensor:
    rel = torch.as_tensor(Ra).double().transpose(1, 2) @ torch.as_tensor(Rb).double()
    return torch.rad2deg(torch.arccos(((rel.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2)
                                      .clamp(-1, 1)))


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """Noiseless homogeneous tilt pairs (D=32, CTF, shifts up to 2 px), the map kept."""
    out = tmp_path_factory.mktemp("tilt_pairs")
    simulate_dataset("homogeneous", 48, out, D=D, ctf=True, max_shift=2.0, seed=3,
                     tilt_deg=TILT, save_volumes=True)
    return out


def test_tilt_pair_loss_is_zero_for_the_truth_and_the_mean_of_both_images(pairs):
    from cryoscape.core.io.mrc import read_mrc
    data = TrainData(str(pairs / "particles.mrcs"), poses=str(pairs / "poses.pkl"),
                     ctf=str(pairs / "ctf.pkl"), tilt=str(pairs / "particles_tilt.star"),
                     window=False, norm=(0.0, 1.0), invert=True)
    assert data.has_tilt and data.y_tilt.shape == data.y.shape
    idx = torch.arange(16)
    y, rot, ctf = data.batch(idx)
    y_t, ctf_t = data.tilt_batch(idx)
    truth = MapModel(read_mrc(pairs / "volumes" / "vol_000.mrc")[0])
    T = torch.as_tensor(tilt_rotation(TILT))
    lat = data.lattice
    power = float(y[:, lat.loss_sel].pow(2).mean())
    _, mse, _ = run_batch(truth, lat, y, rot, ctf, 0.0, None, tilt=(y_t, ctf_t, T))
    assert float(mse) < 2e-3 * power
    # the tilted image's term is run_batch's loss at the tilted pose; the pair's is the mean
    _, m0, _ = run_batch(truth, lat, y, rot, ctf, 0.0, None, per_image=True)
    _, m1, _ = run_batch(truth, lat, y_t, tilted_poses(rot, TILT), ctf_t, 0.0, None,
                         per_image=True)
    _, m, _ = run_batch(truth, lat, y, rot, ctf, 0.0, None, per_image=True, tilt=(y_t, ctf_t, T))
    torch.testing.assert_close(m, 0.5 * (m0 + m1))
    assert float(m1.max()) < 4e-3 * power
    # the opposite tilt, or the untilted image in the tilted one's place, does not fit
    _, wrong, _ = run_batch(truth, lat, y_t, tilted_poses(rot, -TILT), ctf_t, 0.0, None)
    assert float(wrong) > 0.1 * power
    # the tilt stack's own CTF (.star) is read; the .mrcs falls back to the particles'
    np.testing.assert_allclose(data.tilt_ctf.numpy(), data.ctf.numpy(), atol=1e-2)
    bare = TrainData(str(pairs / "particles.mrcs"), poses=str(pairs / "poses.pkl"),
                     ctf=str(pairs / "ctf.pkl"), tilt=str(pairs / "particles_tilt.mrcs"),
                     window=False, norm=(0.0, 1.0), invert=True, lazy=True)
    assert bare.tilt_ctf is bare.ctf
    torch.testing.assert_close(bare.tilt_batch(idx)[0], y_t, atol=1e-4, rtol=1e-4)
    # --ind picks the same particles from both stacks
    sub = TrainData(str(pairs / "particles.mrcs"), poses=str(pairs / "poses.pkl"),
                    ctf=str(pairs / "ctf.pkl"), tilt=str(pairs / "particles_tilt.star"),
                    window=False, norm=(0.0, 1.0), invert=True, ind=np.array([7, 2, 11]))
    torch.testing.assert_close(sub.tilt_batch(torch.arange(3))[0],
                               data.tilt_batch(torch.tensor([7, 2, 11]))[0])
    torch.testing.assert_close(sub.batch(torch.arange(3))[0],
                               data.batch(torch.tensor([7, 2, 11]))[0])


def test_tilt_stack_must_match_the_particles(pairs, tmp_path):
    simulate_dataset("homogeneous", 5, tmp_path, D=D, tilt_deg=TILT)
    with pytest.raises(CryoscapeError, match="tilt stack of 5 images"):
        TrainData(str(pairs / "particles.mrcs"), poses=str(pairs / "poses.pkl"),
                  tilt=str(tmp_path / "particles_tilt.mrcs"))


def test_two_image_encoder_shapes_and_pairs():
    torch.manual_seed(0)
    args = {"zdim": 3, "qlayers": 2, "qdim": 32, "players": 1, "pdim": 16, "tilt_emb_dim": 12,
            "tilt_layers": 2}
    model = build_model(args, 17)
    enc = model.encoder
    assert model.tilt and isinstance(enc, TiltEncoder)
    n = enc.encoder1.in_dim
    assert (enc.encoder1.out_dim, enc.encoder2.in_dim, enc.encoder2.out_dim) == (12, 24, 6)
    assert any(k.startswith("encoder.encoder1.") for k in model.state_dict())
    x, xt = torch.randn(5, n), torch.randn(5, n)
    mu, logvar = model.encode(x, xt)
    assert mu.shape == logvar.shape == (5, 3)
    # the shared MLP encodes each image, the second MLP reads them concatenated (in order)
    direct = enc.encoder2(torch.cat([enc.encoder1(x), enc.encoder1(xt)], -1))
    torch.testing.assert_close(torch.cat([mu, logvar], 1), direct)
    assert not torch.allclose(model.encode(xt, x)[0], mu)
    with pytest.raises(ValueError, match="tilted pair"):
        model.encode(x)
    with pytest.raises(ValueError, match="single images"):
        build_model({**args, "tilt_emb_dim": 0}, 17).encode(x, xt)
    # through run_batch: the loss, kl per image
    lat = SliceLattice(16)
    y, yt = torch.randn(5, len(lat.keep)), torch.randn(5, len(lat.keep))
    R = torch.from_numpy(random_rotations(5, np.random.default_rng(0)))
    loss, mse, kl = run_batch(model, lat, y, R, None, 0.1, None, per_image=True,
                              tilt=(yt, None, torch.as_tensor(tilt_rotation(TILT))))
    assert loss.shape == mse.shape == kl.shape == (5,)


def tilt_images(vol, n, extent, seed):
    """Noiseless tilt pairs of a map as the search receives them (with CTF)."""
    rng = np.random.default_rng(seed)
    R = random_rotations(n, rng)
    shifts = rng.uniform(-extent, extent, (n, 2)).astype(np.float32)
    params = _random_ctf(n, D, 256 / D, rng, (10000, 30000), 500, 300, 2.7, 0.1)
    lat = SliceLattice(D)

    def prep(poses):
        y = preprocess_images(torch.from_numpy(project(vol, poses, shifts, params)), invert=True)
        return y.reshape(n, -1)[:, lat.keep]
    return prep(R), prep(tilted_poses(R, TILT)), torch.from_numpy(R), shifts, \
        torch.from_numpy(params)


def test_tilt_pair_search_finds_the_poses_and_the_hand():
    """With the true map the tilt-pair score finds the poses. A single image cannot tell the
    map from its mirror (the mirror at F R F, F = diag(1, 1, -1), projects to the same image);
    the tilted image can: the mirror's tilted view is the map's view at the opposite tilt."""
    vol = make_volume("homogeneous", None, D)
    mirror = np.roll(vol[::-1], 1, axis=0)                # z -> -z about the centre voxel
    ps = PoseSearch(SliceLattice(D), SearchConfig())
    n = 24
    y, y_t, R, shifts, ctf = tilt_images(vol, n, ps.cfg.t_extent, seed=2)
    T = torch.as_tensor(tilt_rotation(TILT))
    res = ps.search(y, ctf, VolumeSlicer.from_map(vol), tilt=TiltPairs(y_t, ctf, T))
    assert float((angle_deg(res.rot, R) < so3grid.grid_spacing_deg(ps.final_level))
                 .float().mean()) >= 0.95
    terr = (res.shift - torch.from_numpy(shifts)).abs().amax(1)
    assert float((terr <= ps.h0 / 2 ** ps.cfg.levels).float().mean()) >= 0.95
    power = float(y[:, ps.lat.loss_sel].pow(2).mean())
    assert float(res.loss.median()) < 0.01 * power
    # the mirror: as good as the map for the untilted images alone, far worse for the pairs
    mslicer = VolumeSlicer.from_map(mirror)
    single = ps.search(y, ctf, mslicer)
    assert float(single.loss.median()) < 0.01 * power
    F = torch.diag(torch.tensor([1.0, 1.0, -1.0]))
    assert float((angle_deg(single.rot, F @ R @ F) < 5).float().mean()) >= 0.9
    pair = ps.search(y, ctf, mslicer, tilt=TiltPairs(y_t, ctf, T))
    assert float(pair.loss.median()) > 10 * float(res.loss.median())
    assert float(pair.loss.median()) > 0.05 * power
    # the result's loss is the mean over both images, as run_batch's
    again = ps.search(y, ctf, VolumeSlicer.from_map(vol), prior=res, tilt=TiltPairs(y_t, ctf, T))
    torch.testing.assert_close(again.loss, res.loss, rtol=0.05, atol=1e-3 * power)


@pytest.fixture(scope="module")
def het_pairs(tmp_path_factory):
    out = tmp_path_factory.mktemp("het_pairs")
    simulate_dataset("linear", 64, out, D=16, ctf=True, max_shift=1.0, seed=6, snr=1.0,
                     tilt_deg=TILT)
    return out


def small_tilt(data, **kw) -> TrainConfig:
    values = {"zdim": 2, "num_epochs": 2, "batch_size": 8, "lr": 1e-3, "enc_layers": 1,
              "enc_dim": 32, "dec_layers": 1, "dec_dim": 32, "seed": 0, "threads": 1,
              "checkpoint_minutes": 60.0, "tilt": str(data / "particles_tilt.star"),
              "tilt_deg": TILT, "tilt_emb_dim": 16, "poses": str(data / "poses.pkl"), **kw}
    return TrainConfig(particles=str(data / "particles.mrcs"), ctf=str(data / "ctf.pkl"),
                       **values)


def test_known_pose_tilt_training_and_its_run(het_pairs, tmp_path):
    out = tmp_path / "run"
    assert cli("train", het_pairs / "particles.mrcs", "--poses", het_pairs / "poses.pkl",
               "--ctf", het_pairs / "ctf.pkl", "--tilt", het_pairs / "particles_tilt.star",
               "--tilt-deg", TILT, "--zdim", 2, "-n", 2, "--enc-dim", 32, "--enc-layers", 1,
               "--dec-dim", 32, "--dec-layers", 1, "--threads", 1, "--no-progress",
               "-o", out) == 0
    conf = yaml.safe_load((out / "config.yaml").read_text())
    ma, ds = conf["model_args"], conf["dataset_args"]
    assert (ma["tilt_emb_dim"], ma["tilt_layers"]) == (128, 2)
    assert ds["tilt"] == os.path.abspath(het_pairs / "particles_tilt.star")
    assert ds["tilt_deg"] == TILT
    targs = conf["cryoscape"]["train_args"]
    assert targs["tilt"] == ds["tilt"] and "--tilt-deg" in conf["cryoscape"]["command_line"]
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(np.isfinite(r["loss"]) for r in rows)
    run = Run.open(out)
    assert run.model().tilt
    vols = run.decode(run.latents()[:2])
    assert vols.shape == (2, 16, 16, 16) and np.isfinite(vols).all()
    kw = {"poses": het_pairs / "poses.pkl", "ctf": het_pairs / "ctf.pkl"}
    with pytest.raises(CryoscapeError, match="tilted pairs"):
        run.encode(het_pairs / "particles.mrcs", **kw)
    mu = run.encode(het_pairs / "particles.mrcs", tilt=het_pairs / "particles_tilt.star", **kw)
    np.testing.assert_allclose(mu, run.latents(), atol=1e-4)


def _same_weights(a, b) -> bool:
    wa, wb = load_ckpt(a)["model_state_dict"], load_ckpt(b)["model_state_dict"]
    return all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_with_tilt_inputs_moved(het_pairs, tmp_path):
    train(small_tilt(het_pairs, lazy=True), tmp_path / "ref", progress=False)
    train(small_tilt(het_pairs, lazy=True, num_epochs=1), tmp_path / "run", progress=False)
    moved = tmp_path / "moved"
    shutil.copytree(het_pairs, moved)
    with pytest.raises(CryoscapeError, match="cannot change tilt_deg"):
        train(None, tmp_path / "run", resume=True, progress=False,
              overrides={"num_epochs": 2, "tilt_deg": 30.0})
    res = train(None, tmp_path / "run", resume=True, progress=False,
                overrides={"num_epochs": 2, "tilt": str(moved / "particles_tilt.star")})
    assert res["state"] == "done"
    assert _same_weights(tmp_path / "ref" / "weights.pkl", tmp_path / "run" / "weights.pkl")
    np.testing.assert_array_equal(load_pickles(tmp_path / "ref" / "z.pkl")[0],
                                  load_pickles(tmp_path / "run" / "z.pkl")[0])
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["cryoscape"]["train_args"]["tilt_deg"] == TILT


def test_ab_initio_with_tilt_pairs_runs(het_pairs, tmp_path):
    cfg = small_tilt(het_pairs, poses=None, pose_search=True, num_epochs=3, pretrain_epochs=1,
                     search_epochs=1, search_chunk=32, t_extent=1.0)
    assert train(cfg, tmp_path / "run", progress=False)["state"] == "done"
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["poses"] for r in rows] == ["pretrain", "search", "refine"]
    rot, trans = load_pickles(tmp_path / "run" / "pose.pkl")[0]
    assert np.asarray(rot).shape == (64, 3, 3) and np.isfinite(trans).all()
    assert Run.open(tmp_path / "run").model().tilt
