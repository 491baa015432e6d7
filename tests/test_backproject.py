"""Voxel backprojection: the hand (rotation and translation conventions against cryoDRGN),
the CTF sign end to end, half-maps, Wiener regularisation, the Particles wrapper and CLIs."""
from __future__ import annotations

import numpy as np
import pytest
from cryoscape.app.cli import main as cli
from cryoscape.core.backproject import backproject, backproject_arrays
from cryoscape.core.errors import CryoscapeError
from cryoscape.core.io.cryodrgn import load_poses
from cryoscape.core.io.mrc import read_mrc, write_mrc
from cryoscape.core.metrics import fsc, pose_error, resolution
from cryoscape.core.poses import mirrored_poses
from cryoscape.core.rotations import random_rotations
from cryoscape.core.simulate.projection import project
from cryoscape.core.simulate.volumes import make_volume


@pytest.fixture(scope="module")
def hand(fixtures_dir):
    d = fixtures_dir / "hand"
    images, _ = read_mrc(d / "hand.mrcs")
    R, _ = load_poses(d / "hand_rot.pkl")
    ref, _ = read_mrc(d / "hand-bp.mrc")
    # cryoDRGN's backproject_voxel inverts the data by default: its map is -density
    return {"dir": d, "images": images, "R": R, "ref": -ref}


def _mirror(volume):
    """z -> -z about the centre voxel D//2 (cryoDRGN's flip_hand up to that 1-voxel roll)."""
    return np.roll(volume[::-1], 1, axis=0)


def _check_hand(volume, ref):
    f, c = fsc(volume, ref)
    assert c[f <= 0.8 * 0.5].min() >= 0.95
    f, m = fsc(_mirror(volume), ref)  # the mirrored map is the wrong hand
    assert m[f == 0.25][0] < 0.5
    return c


def test_hand_matches_cryodrgn(hand):
    rec = backproject_arrays(hand["images"], hand["R"])
    c = _check_hand(rec.volume, hand["ref"])
    assert c[1:].min() > 0.93  # to Nyquist, in fact
    f, half = rec.fsc
    assert half[f <= 0.4].min() > 0.8  # 50 noiseless images per half
    # with invert (cryoDRGN's default) the map has cryoDRGN's sign
    inv = backproject_arrays(hand["images"], hand["R"], invert=True, half_maps=False)
    np.testing.assert_allclose(inv.volume, -rec.volume, atol=1e-5)
    assert fsc(inv.volume, -hand["ref"])[1][1:].min() > 0.93
    assert inv.half1 is None and inv.fsc is None


def _corr(a, b):
    a = a - a.mean((1, 2), keepdims=True)
    b = b - b.mean((1, 2), keepdims=True)
    return (a * b).sum((1, 2)) / np.sqrt((a * a).sum((1, 2)) * (b * b).sum((1, 2)))


def test_hand_reprojection(hand):
    """The map's projections (the simulator's projector) reproduce the images; the
    mirrored map's do not: the hand, checked without cryoDRGN's map."""
    vol = backproject_arrays(hand["images"], hand["R"], half_maps=False).volume
    assert _corr(project(vol, hand["R"]), hand["images"]).min() > 0.99
    assert np.median(_corr(project(_mirror(vol), hand["R"]), hand["images"])) < 0.7


def test_hand_shifted_translation_sign(hand):
    d = hand["dir"]
    images, _ = read_mrc(d / "hand_shifted.mrcs")
    R, shifts = load_poses(d / "hand_shifted_pose.pkl", D=64)
    np.testing.assert_allclose(shifts, np.load(d / "hand_shifted_px.npy"), atol=1e-5)
    _check_hand(backproject_arrays(images, R, shifts).volume, hand["ref"])
    wrong = backproject_arrays(images, R, -shifts, half_maps=False).volume
    assert fsc(wrong, hand["ref"])[1][8] < 0.5


def test_mirrored_poses_give_the_mirrored_map(hand):
    """Poses F R F (core/poses, as metrics.pose_error models the other hand) reconstruct the
    z-mirror."""
    R = hand["R"]
    a = backproject_arrays(hand["images"], R, half_maps=False).volume
    b = backproject_arrays(hand["images"], mirrored_poses(R), half_maps=False).volume
    assert fsc(b, _mirror(a))[1][1:].min() > 0.999
    assert pose_error(mirrored_poses(R), R)["hand"] == "mirrored"


def _ctf_params(n, D, apix, rng):
    df = rng.uniform(10000, 25000, n)
    return np.stack([np.full(n, D), np.full(n, apix), df, df - 300, rng.uniform(0, 180, n),
                     np.full(n, 300.0), np.full(n, 2.7), np.full(n, 0.1), np.zeros(n)],
                    1).astype(np.float32)


@pytest.fixture(scope="module")
def simulated():
    """Noiseless images of a blob volume (the simulator's projector), CTF and shifts."""
    rng = np.random.default_rng(1)
    D, n, apix = 32, 400, 3.0
    vol = make_volume("linear", 0.5, D=D).astype(np.float32)
    R = random_rotations(n, rng).astype(np.float32)
    shifts = rng.uniform(-3, 3, (n, 2)).astype(np.float32)
    ctf = _ctf_params(n, D, apix, rng)
    images = project(vol, R, shifts, ctf)
    return {"vol": vol, "R": R, "shifts": shifts, "ctf": ctf, "images": images, "apix": apix}


def test_ctf_and_shifts_end_to_end(simulated):
    s = simulated
    rec = backproject_arrays(s["images"], s["R"], s["shifts"], s["ctf"], apix=s["apix"])
    f, c = fsc(rec.volume, s["vol"])
    assert c[f <= 0.4].min() >= 0.9
    assert rec.apix == 3.0 and rec.n_images == 400 and rec.volume.dtype == np.float32
    assert rec.resolution(0.5)["highest_A"] == pytest.approx(3.0 / (15 / 32))
    # RELION's contrast: the opposite sign would give the negative map
    neg = backproject_arrays(-s["images"], s["R"], s["shifts"], s["ctf"], half_maps=False)
    assert fsc(neg.volume, s["vol"])[1][1:].max() < -0.9
    # ignoring the CTF loses the map beyond the first zeros
    flat = backproject_arrays(s["images"], s["R"], s["shifts"], half_maps=False).volume
    assert fsc(flat, s["vol"])[1][f <= 0.4].min() < 0.5


def test_wiener_auto_regularisation_with_noise(simulated):
    s = simulated
    rng = np.random.default_rng(2)
    noisy = s["images"] + rng.normal(0, np.sqrt(s["images"].var() / 0.1),
                                     s["images"].shape).astype(np.float32)
    auto = backproject_arrays(noisy, s["R"], s["shifts"], s["ctf"])
    plain = backproject_arrays(noisy, s["R"], s["shifts"], s["ctf"], reg=0.0)
    err = [((v.volume - s["vol"]) ** 2).mean() / s["vol"].var() for v in (auto, plain)]
    assert err[0] < 0.5 and err[0] < 0.1 * err[1]
    # half-map and truth FSC agree: FSC_truth ~ sqrt(2 FSC_half / (1 + FSC_half))
    half = auto.fsc[1]
    truth = fsc(auto.volume, s["vol"])[1]
    mid = (half > 0.2) & (half < 0.9)
    assert mid.sum() >= 2
    np.testing.assert_allclose(truth[mid], np.sqrt(2 * half[mid] / (1 + half[mid])), atol=0.1)


def test_half_maps_split_and_subset(simulated):
    s = simulated
    a = backproject_arrays(s["images"], s["R"], s["shifts"], s["ctf"], reg=0.0)
    # the even/odd halves are the maps of the even and odd images
    even = backproject_arrays(s["images"][::2], s["R"][::2], s["shifts"][::2], s["ctf"][::2],
                              reg=0.0, half_maps=False)
    assert fsc(a.half1, even.volume)[1][1:].min() > 0.999
    r1 = backproject_arrays(s["images"], s["R"], s["shifts"], s["ctf"], split="random", seed=3)
    r2 = backproject_arrays(s["images"], s["R"], s["shifts"], s["ctf"], split="random", seed=3)
    np.testing.assert_array_equal(r1.half1, r2.half1)
    assert not np.allclose(r1.half1, a.half1)
    ind = np.arange(0, 400, 2)
    sub = backproject_arrays(s["images"], s["R"], s["shifts"], s["ctf"], ind=ind, reg=0.0,
                             half_maps=False, chunk=37)
    np.testing.assert_allclose(sub.volume, even.volume, atol=1e-5)
    one = backproject_arrays(s["images"][:1], s["R"][:1])
    assert one.fsc is None and one.half1 is None  # a single image: no second half


def test_bad_input(simulated):
    s = simulated
    with pytest.raises(CryoscapeError, match="rotations"):
        backproject_arrays(s["images"], s["R"][:10])
    bad = s["images"][:4].copy()
    bad[2, 5, 5] = np.nan
    with pytest.raises(CryoscapeError, match="NaN"):
        backproject_arrays(bad, s["R"][:4])
    with pytest.raises(CryoscapeError, match="out of range"):
        backproject_arrays(s["images"], s["R"], ind=[0, 400])
    with pytest.raises(CryoscapeError, match="split"):
        backproject_arrays(s["images"], s["R"], split="thirds")


def test_backproject_particles_and_cli(hand, tmp_path, capsys):
    from cryoscape.core.io.particles import load_particles
    d = hand["dir"]
    p = load_particles(d / "hand_shifted.mrcs", poses=d / "hand_shifted_pose.pkl")
    rec = backproject(p, progress=False)
    _check_hand(rec.volume, hand["ref"])
    out = tmp_path / "bp" / "vol.mrc"
    assert cli(["backproject", str(d / "hand_shifted.mrcs"), "--poses",
                str(d / "hand_shifted_pose.pkl"), "-o", str(out)]) == 0
    vol, apix = read_mrc(out)
    assert apix == 1.0
    np.testing.assert_allclose(vol, rec.volume, atol=1e-5)
    for name in ("vol_half1.mrc", "vol_half2.mrc", "vol_fsc.txt", "vol_fsc.png"):
        assert (out.parent / name).stat().st_size > 0
    curve = np.loadtxt(out.parent / "vol_fsc.txt", skiprows=1)
    np.testing.assert_allclose(curve[:, 1], rec.fsc[1], atol=1e-6)
    text = capsys.readouterr().out
    assert "half-map FSC=0.5:" in text
    # without poses: one clear error, no output
    assert cli(["backproject", str(d / "hand.mrcs"), "-o", str(tmp_path / "x.mrc")]) == 1
    assert "poses" in capsys.readouterr().err and not (tmp_path / "x.mrc").exists()


def test_fsc_cli(fixtures_dir, tmp_path, capsys):
    a = fixtures_dir / "hand" / "hand-bp.mrc"
    b = fixtures_dir / "cryodrgn_rundir" / "expected" / "vol_001.mrc"
    txt, png = tmp_path / "curve.txt", tmp_path / "fsc.png"
    assert cli(["fsc", str(a), str(b), "-o", str(txt), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "FSC=0.5: 12.8 A (0.07812 1/px)" in out and "FSC=0.143: 6.4 A" in out
    ref = np.loadtxt(fixtures_dir / "cryodrgn_rundir/expected/fsc_bp_vs_vol001.txt", skiprows=1)
    np.testing.assert_allclose(np.loadtxt(txt, skiprows=1), ref, atol=1e-4)
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert cli(["fsc", str(a), str(b), "--apix", "2"]) == 0
    assert "FSC=0.5: 25.6 A" in capsys.readouterr().out
    mask = np.zeros((64, 64, 64), np.float32)
    mask[16:48, 16:48, 16:48] = 1
    write_mrc(tmp_path / "mask.mrc", mask)
    assert cli(["fsc", str(a), str(b), "--mask", str(tmp_path / "mask.mrc"), "-o", str(txt)]) == 0
    want = fsc(read_mrc(a)[0], read_mrc(b)[0], mask)[1]
    np.testing.assert_allclose(np.loadtxt(txt, skiprows=1)[:, 1], want, atol=1e-6)
    write_mrc(tmp_path / "small.mrc", mask[:32, :32, :32])
    assert cli(["fsc", str(a), str(b), "--mask", str(tmp_path / "small.mrc")]) == 1
    assert "small.mrc" in capsys.readouterr().err
    assert cli(["fsc", str(a), str(tmp_path / "missing.mrc")]) == 1
    assert "missing.mrc" in capsys.readouterr().err


def test_resolution_of_reconstruction_matches_metrics(simulated):
    s = simulated
    rec = backproject_arrays(s["images"][:100], s["R"][:100])
    assert rec.resolution(0.143) == resolution(*rec.fsc, threshold=0.143, apix=1.0)


def test_simulated_star_cli_end_to_end(tmp_path, capsys):
    """simulate -> RELION .star -> `cryoscape backproject` (CTF, shifts, --ind)."""
    from cryoscape.core.io.cryodrgn import save_index
    from cryoscape.core.simulate.dataset import simulate
    D = 32
    ds = simulate("homogeneous", 300, tmp_path / "sim", D=D, apix=3.0, ctf=True, max_shift=3.0,
                  seed=4)
    truth = make_volume("homogeneous", D=D)
    star = str(ds.path / "particles.star")
    out = tmp_path / "vol.mrc"
    assert cli(["backproject", star, "-o", str(out), "--split", "random"]) == 0
    vol, apix = read_mrc(out)
    assert apix == pytest.approx(ds.apix)
    f, c = fsc(vol, truth)
    assert c[f <= 0.4].min() >= 0.9
    assert "with CTF, with shifts" in capsys.readouterr().out
    save_index(tmp_path / "ind.pkl", np.arange(0, 300, 3))
    assert cli(["backproject", star, "-o", str(out), "--ind", str(tmp_path / "ind.pkl"),
                "--no-half-maps", "--lazy", "--batch-size", "7"]) == 0
    assert "backprojecting 100 images" in capsys.readouterr().out
    assert fsc(read_mrc(out)[0], truth)[1][f <= 0.25].min() >= 0.9
    assert cli(["backproject", star, "-o", str(out), "--no-ctf"]) == 0
    assert fsc(read_mrc(out)[0], truth)[1][f <= 0.4].min() < 0.5


def test_slice_values_match_core_conventions(rng):
    """The gathered half-plane FFT, shift and CTF values equal core.fourier/lattice/ctf's."""
    import torch
    from cryoscape.core.backproject import _SliceData
    from cryoscape.core.ctf import ctf_images
    from cryoscape.core.fourier import fft2_center
    from cryoscape.core.lattice import phase_shift_2d
    D = 16
    sd = _SliceData(D, "cpu")
    pix = sd.points[:, :2].round().long() + D // 2
    flat = pix[:, 1] * D + pix[:, 0]
    x = torch.as_tensor(rng.normal(size=(3, D, D)), dtype=torch.float32)
    s = torch.as_tensor(rng.normal(size=(3, 2)), dtype=torch.float32)
    re, im = sd.fourier(x, s)
    want = phase_shift_2d(fft2_center(x), -s).reshape(3, -1)[:, flat]
    np.testing.assert_allclose(re, want.real, atol=1e-4)
    np.testing.assert_allclose(im, want.imag, atol=1e-4)
    params = torch.as_tensor(_ctf_params(3, 64, 1.5, rng))  # box 64 data downsampled to 16
    np.testing.assert_allclose(sd.ctf(params), ctf_images(params, D).reshape(3, -1)[:, flat],
                               atol=1e-5)
