"""Pose error: global rotation and hand recovered, 3D offset absorbed, known errors measured,
the conventions it relies on (mirror, offset) checked on projections, the file readers and the
`pose-error` command."""
from __future__ import annotations

import json

import numpy as np
import pytest
from cryoscape.core.errors import CryoscapeError, InputFileError
from cryoscape.core.io.cryodrgn import save_index, save_poses
from cryoscape.core.io.star import make_star, write_star
from cryoscape.core.poseerror import pose_error, read_poses, summary
from cryoscape.core.poses import FLIP
from cryoscape.core.rotations import cryosparc_pose_to_matrix, random_rotations
from cryoscape.core.simulate import make_volume, project

from tests.conftest import cli


def _rotations_by(deg, n, rng):
    """n rotations by exactly `deg` degrees about random axes."""
    axis = rng.normal(size=(n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    return cryosparc_pose_to_matrix(axis * np.radians(deg)).astype(np.float64)


def _frob2(deg):
    return 4 * (1 - np.cos(np.radians(deg)))   # ||R1 - R2||_F^2 for rotations deg apart


def test_truth_against_itself_is_exact(rng):
    R = random_rotations(300, rng)
    t = rng.uniform(-3, 3, (300, 2))
    out = pose_error(R, R, t, t)
    assert out["hand"] == "same"
    assert out["median_angle_deg"] < 1e-3 and out["p90_angle_deg"] < 1e-3
    assert out["median_frob2"] < 1e-10
    assert out["p90_trans_px"] < 1e-6 and np.abs(out["offset_px"]).max() < 1e-6
    np.testing.assert_allclose(out["alignment"], np.eye(3), atol=1e-6)
    assert out["other_hand_median_frob2"] > 0.5


def test_recovers_global_rotation_despite_outliers(rng):
    R = random_rotations(400, rng).astype(np.float64)
    B = random_rotations(1, rng)[0].astype(np.float64)
    out = pose_error(R @ B, R)
    assert out["hand"] == "same" and out["median_angle_deg"] < 1e-3
    np.testing.assert_allclose(out["alignment"], B, atol=1e-6)
    # 40% of the poses plain wrong: the chordal mean of all would be pulled away (by about
    # a degree here), the robust fit is not
    R_found = R @ B
    R_found[:160] = random_rotations(160, rng)
    out = pose_error(R_found, R)
    np.testing.assert_allclose(out["alignment"], B, atol=1e-6)
    assert out["angles_deg"][160:].max() < 1e-3 and out["angles_deg"][:160].min() > 1.0


def test_recovers_mirror_and_reports_the_hand(rng):
    R = random_rotations(300, rng).astype(np.float64)
    B = random_rotations(1, rng)[0].astype(np.float64)
    out = pose_error(FLIP @ R @ FLIP @ B, R)
    assert out["hand"] == "mirrored"
    assert out["median_frob2"] < 1e-10 and out["median_angle_deg"] < 1e-3
    assert out["other_hand_median_frob2"] > 0.5
    np.testing.assert_allclose(out["alignment"], B, atol=1e-6)
    assert pose_error(FLIP @ R @ FLIP @ B, FLIP @ R @ FLIP)["hand"] == "same"


def test_known_rotation_noise_gives_its_median(rng):
    R = random_rotations(1000, rng).astype(np.float64)
    B = random_rotations(1, rng)[0].astype(np.float64)
    deg = rng.uniform(1.0, 5.0, 1000)                    # median 3 degrees
    noise = np.stack([_rotations_by(d, 1, rng)[0] for d in deg])
    R_found = noise @ R @ B
    R_found[:100] = random_rotations(100, rng)           # 10% gross errors
    out = pose_error(FLIP @ R_found @ FLIP, R)
    assert out["hand"] == "mirrored"
    truth = np.concatenate([np.full(100, 180.0), deg[100:]])
    assert out["median_angle_deg"] == pytest.approx(np.median(truth), abs=0.1)
    assert out["p90_angle_deg"] > 5.0                     # the gross errors are the top 10%
    np.testing.assert_allclose(out["angles_deg"][100:], deg[100:], atol=0.15)
    assert out["median_frob2"] == pytest.approx(_frob2(np.median(truth)), rel=0.07)
    np.testing.assert_allclose(out["alignment"], FLIP @ B @ FLIP, atol=0.01)


def test_3d_offset_is_absorbed(rng):
    n = 500
    R = random_rotations(n, rng).astype(np.float64)
    B = random_rotations(1, rng)[0].astype(np.float64)
    R_found = FLIP @ R @ FLIP @ B
    o = np.array([2.0, -1.5, 3.0])
    t_true = rng.uniform(-4, 4, (n, 2))
    t_found = t_true + R_found[:, :2, :] @ o             # the found map sits at o
    out = pose_error(R_found, R, t_found, t_true)
    np.testing.assert_allclose(out["offset_px"], o, atol=1e-6)
    assert out["p90_trans_px"] < 1e-6
    # Gaussian shift errors of 0.3 px per axis (median of the norm 0.3 sqrt(2 ln 2)),
    # 10% far off
    t_noisy = t_found + rng.normal(0, 0.3, (n, 2))
    t_noisy[:50] += 20
    out = pose_error(R_found, R, t_noisy, t_true)
    np.testing.assert_allclose(out["offset_px"], o, atol=0.1)
    err = out["trans_err_px"]
    assert np.median(err[50:]) == pytest.approx(0.3 * np.sqrt(2 * np.log(2)), rel=0.1)
    assert err[:50].min() > 15 and out["mean_trans_px"] > 2


def test_bad_inputs_raise_clear_errors(rng, tmp_path):
    R = random_rotations(10, rng)
    with pytest.raises(CryoscapeError, match="matching"):
        pose_error(R[:3], R)
    with pytest.raises(CryoscapeError, match="not rotations"):
        pose_error(2 * R, R)
    with pytest.raises(CryoscapeError, match="not rotations"):
        pose_error(R, R @ FLIP)                          # reflections
    with pytest.raises(CryoscapeError, match="N x 3 x 3"):
        pose_error(R[:, :2], R)
    with pytest.raises(InputFileError, match="not found"):
        read_poses(tmp_path / "missing.pkl")
    save_poses(tmp_path / "p.pkl", R, np.zeros((10, 2)), 32)
    with pytest.raises(InputFileError, match="box size D"):
        read_poses(tmp_path / "p.pkl")


# --- the conventions the metric relies on, on projections -------------------------------

@pytest.fixture(scope="module")
def volume():
    return make_volume("homogeneous", D=32)


def test_mirrored_map_has_poses_F_R_F(volume):
    """A z-mirrored map (k -> k F) projects at R as the original at F R F."""
    R = random_rotations(6, np.random.default_rng(1))
    mirrored = np.roll(volume[::-1], 1, axis=0)          # exact reflection about voxel D/2
    a = project(mirrored, R)
    b = project(volume, FLIP @ R @ FLIP)
    assert np.abs(a - b).max() < 1e-3 * np.abs(b).max()
    assert np.abs(project(volume, R) - b).max() > 0.1 * np.abs(b).max()


def test_map_offset_moves_images_by_its_projection(volume):
    """A map moved by o (x, y, z px) shows each image's content moved by (R o)[:2]."""
    R = random_rotations(6, np.random.default_rng(2))
    o = np.array([2, -1, 3])
    moved = np.roll(volume, tuple(o[::-1]), axis=(0, 1, 2))   # [z, y, x]
    expected = project(volume, R, shifts=(R @ o)[:, :2])
    got = project(moved, R)
    assert np.abs(got - expected).max() < 0.02 * np.abs(expected).max()
    assert np.abs(project(volume, R, shifts=-(R @ o)[:, :2]) - got).max() > 0.2 * np.abs(
        expected).max()


# --- readers and the command -----------------------------------------------------------

def _cs(path, R, shifts, D):
    from cryoscape.core.io.cs import set_cs_poses, write_cs
    arr = np.zeros(len(R), dtype=[("uid", "<u8"), ("blob/shape", "<u4", (2,)),
                                  ("blob/psize_A", "<f4")])
    arr["uid"], arr["blob/shape"], arr["blob/psize_A"] = np.arange(len(R)), D, 2.0
    write_cs(path, set_cs_poses(arr, R, shifts))


def test_readers_agree_across_formats(rng, tmp_path):
    n, D = 20, 64
    R, t = random_rotations(n, rng), rng.uniform(-3, 3, (n, 2)).astype(np.float32)
    save_poses(tmp_path / "p.pkl", R, t, D)
    write_star(tmp_path / "p.star", make_star([f"{i + 1:06d}@x.mrcs" for i in range(n)], R, t,
                                              apix=2.0, D=D))
    _cs(tmp_path / "p.cs", R, t, D)
    for name, box in (("p.pkl", D), ("p.star", None), ("p.cs", None)):
        R2, t2, D2 = read_poses(tmp_path / name, box)
        assert D2 == D
        np.testing.assert_allclose(R2, R, atol=1e-5)
        np.testing.assert_allclose(t2, t, atol=1e-4)


def test_cli_pose_error(rng, tmp_path, capsys):
    n, D = 200, 64
    R = random_rotations(n, rng).astype(np.float64)
    B = random_rotations(1, rng)[0].astype(np.float64)
    t = rng.uniform(-3, 3, (n, 2))
    R_found = FLIP @ R @ FLIP @ B
    o = np.array([1.0, 0.5, -2.0])
    write_star(tmp_path / "truth.star", make_star([f"{i + 1:06d}@x.mrcs" for i in range(n)], R,
                                                  t, apix=2.0, D=D))
    save_poses(tmp_path / "found.pkl", R_found, t + R_found[:, :2, :] @ o, D)
    out = tmp_path / "report.json"
    assert cli("pose-error", tmp_path / "found.pkl", tmp_path / "truth.star", "-o", out) == 0
    printed = capsys.readouterr().out
    assert "mirrored" in printed and "rotation error, median" in printed
    rep = json.loads(out.read_text())
    assert rep["hand"] == "mirrored" and rep["D"] == D and rep["n"] == n
    assert rep["median_angle_deg"] < 0.01 and rep["p90_trans_px"] < 0.01
    np.testing.assert_allclose(rep["global_rotation"], B, atol=1e-4)
    np.testing.assert_allclose(rep["offset_px"], o, atol=1e-3)
    assert set(summary(pose_error(R, R))) <= set(rep)

    # a run trained on a subset: --ind picks the matching truth
    ind = np.arange(0, n, 3)
    save_poses(tmp_path / "sub.pkl", R_found[ind], (t + R_found[:, :2, :] @ o)[ind], D)
    save_index(tmp_path / "ind.pkl", ind)
    assert cli("pose-error", tmp_path / "sub.pkl", tmp_path / "truth.star", "--ind",
               tmp_path / "ind.pkl", "-o", out) == 0
    assert json.loads(out.read_text())["n"] == len(ind)


def test_cli_pose_error_bad_inputs(rng, tmp_path, capsys):
    R = random_rotations(10, rng)
    save_poses(tmp_path / "a.pkl", R, np.zeros((10, 2)), 32)
    save_poses(tmp_path / "b.pkl", R[:7], np.zeros((7, 2)), 32)
    save_poses(tmp_path / "bad.pkl", 1.5 * R)
    out = tmp_path / "report.json"
    cases = [((tmp_path / "a.pkl", tmp_path / "b.pkl", "-D", 32), "holds 10 poses"),
             ((tmp_path / "a.pkl", tmp_path / "a.pkl"), "box size D"),
             ((tmp_path / "bad.pkl", tmp_path / "a.pkl", "-D", 32), "not a rotation"),
             ((tmp_path / "none.pkl", tmp_path / "a.pkl", "-D", 32), "not found")]
    for argv, message in cases:
        assert cli("pose-error", *argv, "-o", out) == 1
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
