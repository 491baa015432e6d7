"""Tilt pairs: the tilted pose convention (one place, core.poses), the simulator's tilted stack
and its ground truth, the files' round trip and the CLI."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from cryoscape.core.errors import CryoscapeError
from cryoscape.core.io.cryodrgn import load_poses
from cryoscape.core.io.mrc import read_mrc
from cryoscape.core.io.particles import load_particles
from cryoscape.core.poses import tilt_rotation, tilted_poses
from cryoscape.core.rotations import random_rotations
from cryoscape.core.simulate import blob_slices, form_images, make_volume, model_blobs, project
from cryoscape.core.simulate import simulate as simulate_dataset

from tests.conftest import cli

D = 32


def _rel(a, b) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


def _rotate_real(vol, M):
    """The map [z, y, x] turned by M (column vectors, x y z about voxel D//2): point p -> M p."""
    from scipy.ndimage import affine_transform
    P = np.eye(3)[::-1]                                  # xyz <-> zyx
    A = P @ np.asarray(M, np.float64).T @ P
    c = np.full(3, vol.shape[0] // 2)
    return affine_transform(vol, A, offset=c - A @ c, order=3)


def test_tilt_rotation_is_cryodrgns_xrot():
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    np.testing.assert_allclose(tilt_rotation(30), [[1, 0, 0], [0, c, -s], [0, s, c]], atol=1e-7)
    np.testing.assert_allclose(tilt_rotation(20) @ tilt_rotation(25), tilt_rotation(45),
                               atol=1e-6)
    R = random_rotations(5, np.random.default_rng(0))
    np.testing.assert_allclose(tilted_poses(R, 45), tilt_rotation(45) @ R, atol=1e-7)
    t = tilted_poses(torch.from_numpy(R).double(), 45)
    assert t.dtype == torch.float64
    np.testing.assert_allclose(t.numpy(), tilted_poses(R, 45), atol=1e-6)


def test_tilted_projection_is_the_specimen_turned_about_x():
    """The image at tilted_poses(R, deg) is the projection along z of the map as posed by R
    and then turned by +deg about the microscope's x axis (y towards z)."""
    vol = make_volume("homogeneous", D=D)
    R = random_rotations(3, np.random.default_rng(1))
    got = project(vol, tilted_poses(R, 45))
    for i in range(3):
        turned = _rotate_real(vol, tilt_rotation(45) @ R[i]).sum(0)    # projection along z
        assert _rel(got[i], turned) < 0.02
        other = _rotate_real(vol, tilt_rotation(-45) @ R[i]).sum(0)
        assert _rel(got[i], other) > 0.2


@pytest.fixture(scope="module")
def tilt_data(tmp_path_factory):
    """A noise-free linear dataset with CTF and shifts, tilt pairs at 45 degrees, and the
    same without tilt."""
    base = tmp_path_factory.mktemp("tilt")
    kw = {"D": D, "ctf": True, "max_shift": 3.0, "seed": 4}
    tilted = simulate_dataset("linear", 60, base / "tilted", tilt_deg=45, **kw)
    plain = simulate_dataset("linear", 60, base / "plain", **kw)
    return tilted, plain


def test_tilted_stack_shows_the_same_particles_at_the_tilted_poses(tilt_data):
    ds, _ = tilt_data
    t = np.load(ds.path / "truth.npz")
    assert float(t["tilt_deg"]) == 45 and ds.tilt_deg == 45
    R_tilt = tilted_poses(t["rotations"], 45)
    np.testing.assert_allclose(t["rotations_tilt"], R_tilt, atol=1e-6)
    x, _ = read_mrc(ds.path / "particles_tilt.mrcs")
    untilted, _ = read_mrc(ds.path / "particles.mrcs")
    blobs = model_blobs("linear", t["coords"], D)
    sl = blob_slices(blobs, torch.from_numpy(R_tilt), D)
    ref = form_images(sl, torch.from_numpy(t["shifts"]), torch.from_numpy(t["ctf"])).numpy()
    assert _rel(x, ref) < 1e-4
    # the maps themselves, projected by the Fourier slice theorem, agree as well
    for i in range(0, 60, 20):
        vol = make_volume("linear", float(t["coords"][i, 0]), D)
        img = project(vol, R_tilt[i:i + 1], t["shifts"][i:i + 1], t["ctf"][i:i + 1])
        assert _rel(img, x[i:i + 1]) < 0.02
        assert _rel(untilted[i:i + 1], x[i:i + 1]) > 0.2


def test_tilt_files_round_trip(tilt_data):
    ds, plain = tilt_data
    t = np.load(ds.path / "truth.npz")
    R_tilt = t["rotations_tilt"]
    R, shifts = load_poses(ds.path / "poses_tilt.pkl", D=D)
    np.testing.assert_allclose(R, R_tilt, atol=1e-6)
    np.testing.assert_allclose(shifts, t["shifts"], atol=1e-5)
    parts = load_particles(ds.path / "particles_tilt.star")
    assert len(parts) == 60 and parts.D == D
    assert np.abs(parts.rotations - R_tilt).max() < 1e-4
    assert np.abs(parts.shifts - t["shifts"]).max() < 1e-4
    np.testing.assert_allclose(parts.ctf, t["ctf"], atol=1e-2)
    x, _ = read_mrc(ds.path / "particles_tilt.mrcs")
    np.testing.assert_array_equal(parts.images[:], x)
    # asking for a tilt changes nothing in the untilted files
    for name in ("poses.pkl", "particles.star"):
        assert (ds.path / name).read_bytes() == (plain.path / name).read_bytes()
    assert (read_mrc(ds.path / "particles.mrcs")[0] == read_mrc(plain.path / "particles.mrcs")[0]
            ).all()
    assert "tilt_deg" not in np.load(plain.path / "truth.npz").files
    assert not (plain.path / "particles_tilt.mrcs").exists()


def test_tilted_noise_is_independent(tmp_path):
    clean = simulate_dataset("homogeneous", 200, tmp_path / "c", D=D, tilt_deg=-30, seed=5)
    noisy = simulate_dataset("homogeneous", 200, tmp_path / "n", D=D, tilt_deg=-30, seed=5,
                             snr=0.5)
    t = np.load(noisy.path / "truth.npz")
    noise = {}
    for name in ("particles", "particles_tilt"):
        x, _ = read_mrc(clean.path / f"{name}.mrcs")
        y, _ = read_mrc(noisy.path / f"{name}.mrcs")
        noise[name] = (y - x).ravel()
        assert x.var(axis=(1, 2)).mean() / noise[name].var() == pytest.approx(0.5, rel=0.05)
    assert abs(np.corrcoef(noise["particles"], noise["particles_tilt"])[0, 1]) < 0.01
    assert float(t["noise_std_tilt"]) == pytest.approx(np.std(noise["particles_tilt"]), rel=0.01)
    assert clean.tilt_deg == -30 and float(t["tilt_deg"]) == -30


def test_bad_tilt_is_refused(tmp_path):
    for bad in (120, float("nan")):
        with pytest.raises(CryoscapeError, match="tilt"):
            simulate_dataset("homogeneous", 4, tmp_path, D=16, tilt_deg=bad)
    assert not (tmp_path / "particles.mrcs").exists()


def test_cli_simulate_tilt_and_info(tmp_path, capsys):
    out = tmp_path / "s"
    assert cli("simulate", "--model", "linear", "-n", "12", "-D", "16", "--ctf", "--snr", "1",
               "--tilt-deg", "45", "-o", out) == 0
    assert "tilted by 45 deg" in capsys.readouterr().out
    for name in ("particles_tilt.mrcs", "particles_tilt.star", "poses_tilt.pkl"):
        assert (out / name).exists()
        assert cli("info", out / name) == 0
    printed = capsys.readouterr().out
    assert "12 particles" in printed and "12 images of 16 x 16 px" in printed
    assert "cryoDRGN poses" in printed
    assert cli("simulate", "--model", "linear", "-n", "12", "-D", "16", "-o", out) == 0
    assert not (out / "particles_tilt.mrcs").exists()    # no stale tilt from the run before
    capsys.readouterr()
    assert cli("simulate", "--model", "linear", "-n", "4", "-D", "16", "--tilt-deg", "100",
               "-o", tmp_path / "bad") == 1
    err = capsys.readouterr().err
    assert "tilt" in err and len(err.strip().splitlines()) == 1
