"""The simulator: projection convention (hand fixture), SNR, shifts, CTF sign, ground truth,
the files it writes (star, pickles, stack), atomic models and the CLI."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from cryoscape.core.errors import CryoscapeError, InputFileError
from cryoscape.core.fourier import fourier_resample, ht3_center
from cryoscape.core.simulate import (
    KINDS,
    atoms_to_volume,
    blob_slices,
    form_images,
    make_volume,
    make_volumes,
    model_blobs,
    project,
    simulate,
    volume_from_atomic_model,
)


def _corr(a, b) -> np.ndarray:
    """Pearson correlation of each image pair [N, D, D]."""
    a = a - a.mean((1, 2), keepdims=True)
    b = b - b.mean((1, 2), keepdims=True)
    return (a * b).sum((1, 2)) / np.sqrt((a * a).sum((1, 2)) * (b * b).sum((1, 2)))


def _rel(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


@pytest.fixture(scope="module")
def hand(fixtures_dir):
    from cryoscape.core.io.mrc import read_mrc
    from cryoscape.core.io.pickles import load_pickle
    images, _ = read_mrc(fixtures_dir / "hand/hand.mrcs")
    vol, _ = read_mrc(fixtures_dir / "hand/hand-bp.mrc")
    return images, vol, np.asarray(load_pickle(fixtures_dir / "hand/hand_rot.pkl"), np.float32)


def test_projection_convention_matches_hand_fixture(hand):
    images, vol, R = hand
    # cryoDRGN's backproject_voxel inverts the data sign by default: hand-bp.mrc is the
    # negative of the object whose projections hand.mrcs holds.
    c = _corr(project(-vol, R), images)
    assert c.min() > 0.97 and c.mean() > 0.99
    mirrored = _corr(project(-vol[::-1].copy(), R), images)   # z flipped: the other hand
    assert mirrored.mean() < 0.7
    transposed = _corr(project(-vol, R.transpose(0, 2, 1)), images)  # the inverse rotations
    assert transposed.mean() < 0.7


def test_shift_sign_matches_hand_shifted_fixture(hand, fixtures_dir):
    from cryoscape.core.io.mrc import read_mrc
    _, vol, R = hand
    shifted, _ = read_mrc(fixtures_dir / "hand/hand_shifted.mrcs")
    s = np.load(fixtures_dir / "hand/hand_shifted_px.npy").astype(np.float32)
    assert _corr(project(-vol, R, shifts=s), shifted).min() > 0.97
    assert _corr(project(-vol, R, shifts=-s), shifted).mean() < 0.7


@pytest.mark.parametrize("kind,coord", [("linear", 0.3), ("2d", (0.2, 0.9)),
                                        ("circular", 0.7), ("discrete", 3)])
def test_blob_slices_are_projections_of_the_volumes(kind, coord, rng):
    """The analytic slices of the blob models equal projections of make_volume's maps."""
    from cryoscape.core.rotations import random_rotations
    D = 32
    R = random_rotations(16, rng)
    exact = form_images(blob_slices(model_blobs(kind, [coord], D), torch.from_numpy(R), D))
    assert _rel(project(make_volume(kind, coord, D), R), exact.numpy()) < 0.01


def test_models_are_chiral_and_move():
    D = 32
    v = make_volume("homogeneous", None, D)
    for axis in range(3):  # no mirror image of the model is a rotation-free copy of it
        assert _rel(np.flip(v, axis), v) > 0.3
    lin = make_volumes("linear", D, np.array([[0.0], [0.5], [1.0]]))
    assert _rel(lin[0], lin[2]) > 0.2 and _rel(lin[0], lin[1]) > 0.1
    circ = make_volumes("circular", D, np.array([[0.0], [0.999999], [0.5]]))
    assert _rel(circ[0], circ[1]) < 1e-4 and _rel(circ[0], circ[2]) > 0.2   # periodic
    two = make_volumes("2d", D, np.array([[0.5, 0.0], [0.5, 1.0], [0.0, 0.5]]))
    assert _rel(two[0], two[1]) > 0.1 and _rel(two[0], two[2]) > 0.1
    states = make_volumes("discrete", D, np.arange(5), states=5)
    d = [_rel(states[i], states[j]) for i in range(5) for j in range(i + 1, 5)]
    assert min(d) > 0.1
    # band-limited by design: Fourier-cropped to D, a map has the D-box model's coefficients
    # (the Nyquist planes aside, which a crop leaves unpaired); padded and cropped back, itself
    small, ref = fourier_resample(make_volume("linear", 0.4, 64), D), make_volume("linear", 0.4, D)
    inner = (slice(1, None),) * 3
    assert _rel(ht3_center(small)[inner], ht3_center(ref)[inner]) < 1e-5
    assert np.allclose(fourier_resample(fourier_resample(ref, 2 * D), D), ref, atol=1e-5)


def test_integer_shift_rolls_content(rng):
    from cryoscape.core.rotations import random_rotations
    vol = make_volume("linear", 0.5, 32)
    R = random_rotations(4, rng)
    s = np.tile(np.array([[3.0, -2.0]], np.float32), (4, 1))     # +3 px in x, -2 px in y
    moved, still = project(vol, R, shifts=s), project(vol, R)
    assert np.allclose(moved, np.roll(still, (-2, 3), axis=(1, 2)), atol=1e-4)


def _hand_ctf(D, apix, dfu, dfv, dfang, kv, cs, w, phase):
    """cryoDRGN's CTF formula written out in numpy ([D, D], centered; x along columns)."""
    k = (np.arange(D) - D // 2) / (D * apix)                       # 1/A
    ky, kx = np.meshgrid(k, k, indexing="ij")
    s2, ang = kx**2 + ky**2, np.arctan2(ky, kx)
    volt = kv * 1e3
    lam = 12.2639 / np.sqrt(volt + 0.97845e-6 * volt**2)               # A
    df = 0.5 * (dfu + dfv + (dfu - dfv) * np.cos(2 * (ang - np.radians(dfang))))
    gamma = 2 * np.pi * (-0.5 * df * lam * s2 + 0.25 * cs * 1e7 * lam**3 * s2**2) \
        - np.radians(phase)
    return np.sqrt(1 - w**2) * np.sin(gamma) - w * np.cos(gamma)


def test_ctf_has_relion_sign(rng):
    """Particles = F^-1(-CTF F(projection)), the CTF written out by hand: every Fourier
    coefficient of an image is the clean projection's times -CTF; at low frequency -CTF ~ +w,
    so protein stays white."""
    from cryoscape.core.rotations import random_rotations
    vol = make_volume("homogeneous", None, 32)
    R = random_rotations(3, rng)
    p = [32, 8.0, 15000, 14000, 30, 300, 2.7, 0.1, 0]
    img = project(vol, R, ctf=np.tile(np.array([p], np.float32), (3, 1)))
    clean = project(vol, R)
    ft = lambda x: np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=(1, 2))), axes=(1, 2))
    expect = -_hand_ctf(*p) * ft(clean)
    assert np.abs(ft(img) - expect).max() < 1e-3 * np.abs(expect).max()
    assert -_hand_ctf(*p)[16, 16] == pytest.approx(0.1)           # DC: +w
    assert (_corr(img, clean) > 0.2).all()


@pytest.fixture(scope="module")
def linear_pair(tmp_path_factory):
    """The same linear dataset (CTF, shifts) noise-free and at SNR 0.5."""
    base = tmp_path_factory.mktemp("sim")
    kw = {"D": 32, "ctf": True, "max_shift": 4.0, "seed": 3, "save_volumes": True}
    clean = simulate("linear", 300, base / "clean", **kw)
    noisy = simulate("linear", 300, base / "noisy", snr=0.5, **kw)
    return clean, noisy


def test_snr_definition(linear_pair):
    from cryoscape.core.io.mrc import read_mrc
    clean, noisy = linear_pair
    x, apix = read_mrc(clean.path / "particles.mrcs")
    y, _ = read_mrc(noisy.path / "particles.mrcs")
    assert apix == pytest.approx(256 / 32)
    signal = x.var(axis=(1, 2)).mean()
    measured = signal / (y - x).var()
    assert measured == pytest.approx(0.5, rel=0.05)
    assert noisy.signal_var == pytest.approx(signal, rel=1e-4)
    assert abs((y - x).mean()) < 0.02 * (y - x).std()


def test_truth_records_what_each_image_shows(linear_pair):
    """Image i is the projection of make_volume(kind, coords[i]) with its pose, shift and CTF."""
    from cryoscape.core.io.mrc import read_mrc
    clean, _ = linear_pair
    t = np.load(clean.path / "truth.npz")
    assert str(t["kind"]) == "linear" and t["coords"].shape == (300, 1)
    assert 0 <= t["coords"].min() and t["coords"].max() <= 1
    x, _ = read_mrc(clean.path / "particles.mrcs")
    for i in range(0, 300, 60):
        vol = make_volume("linear", float(t["coords"][i, 0]), 32)
        ref = project(vol, t["rotations"][i:i + 1], t["shifts"][i:i + 1], t["ctf"][i:i + 1])
        other = make_volume("linear", float(1 - t["coords"][i, 0]), 32)
        wrong = project(other, t["rotations"][i:i + 1], t["shifts"][i:i + 1], t["ctf"][i:i + 1])
        assert _rel(ref, x[i:i + 1]) < 0.02
        if abs(t["coords"][i, 0] - 0.5) > 0.2:
            assert _rel(wrong, x[i:i + 1]) > 0.05
    vols = sorted((clean.path / "volumes").glob("vol_*.mrc"))
    coords = np.loadtxt(clean.path / "volumes" / "coords.txt")
    assert len(vols) == len(coords) == 10
    v3, _ = read_mrc(vols[3])
    assert np.allclose(v3, make_volume("linear", coords[3], 32), atol=1e-5)


def test_discrete_states_recorded(tmp_path):
    from cryoscape.core.io.mrc import read_mrc
    ds = simulate("discrete", 60, tmp_path, D=32, states=3, seed=1)
    t = np.load(tmp_path / "truth.npz")
    assert set(np.unique(t["state"])) == {0, 1, 2} and "coords" not in t.files
    x, _ = read_mrc(tmp_path / "particles.mrcs")
    vols = make_volumes("discrete", 32, np.arange(3), states=3)
    proj = np.stack([project(v, t["rotations"][:12]) for v in vols], 1)   # [12, 3, D, D]
    err = np.linalg.norm(proj - x[:12, None], axis=(2, 3))
    assert (err.argmin(1) == t["state"][:12]).all()
    assert ds.kind == "discrete" and ds.noise_std == 0


def test_star_and_pickles_reread_to_the_same_poses(linear_pair):
    import starfile
    from cryoscape.core.io.cryodrgn import load_ctf, load_poses
    from cryoscape.core.io.particles import load_particles
    from cryoscape.core.rotations import relion_euler_to_matrix
    clean, _ = linear_pair
    t = np.load(clean.path / "truth.npz")
    star = starfile.read(clean.path / "particles.star")
    p, optics = star["particles"], star["optics"]
    R = relion_euler_to_matrix(p[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy())
    assert np.abs(R - t["rotations"]).max() < 1e-4
    apix = float(optics["rlnImagePixelSize"][0])
    assert apix == pytest.approx(8.0) and int(optics["rlnImageSize"][0]) == 32
    shifts = -p[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy() / apix
    assert np.abs(shifts - t["shifts"]).max() < 1e-4 and np.abs(t["shifts"]).max() <= 4
    assert p["rlnImageName"][0] == "000001@particles.mrcs"
    assert p["rlnImageName"].iloc[-1] == "000300@particles.mrcs"
    ctf = t["ctf"]
    assert np.allclose(p[["rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle"]].to_numpy(),
                       ctf[:, 2:5], atol=1e-2)
    assert float(optics["rlnVoltage"][0]) == 300
    assert float(optics["rlnSphericalAberration"][0]) == 2.7
    mean_df, astig = ctf[:, 2:4].mean(1), ctf[:, 2] - ctf[:, 3]
    assert 1e4 <= mean_df.min() and mean_df.max() <= 3e4 and 0 <= astig.min() and astig.max() <= 500
    parts = load_particles(clean.path / "particles.star")       # the project's own reader
    assert parts.D == 32 and parts.apix == pytest.approx(8.0) and len(parts.images) == 300
    assert np.abs(parts.rotations - t["rotations"]).max() < 1e-4
    assert np.abs(parts.shifts - t["shifts"]).max() < 1e-4
    assert np.allclose(parts.ctf, ctf, atol=1e-2)
    Rp, sp = load_poses(clean.path / "poses.pkl", D=32)
    assert np.abs(Rp - t["rotations"]).max() < 1e-6 and np.abs(sp - t["shifts"]).max() < 1e-5
    assert np.allclose(load_ctf(clean.path / "ctf.pkl"), ctf)


def test_deterministic_from_seed(tmp_path):
    a = simulate("circular", 40, tmp_path / "a", D=16, snr=1.0, ctf=True, max_shift=2, seed=7)
    b = simulate("circular", 40, tmp_path / "b", D=16, snr=1.0, ctf=True, max_shift=2, seed=7,
                 batch_size=7)
    c = simulate("circular", 40, tmp_path / "c", D=16, snr=1.0, ctf=True, max_shift=2, seed=8)
    from cryoscape.core.io.mrc import read_mrc
    x, y, z = (read_mrc(d.path / "particles.mrcs")[0] for d in (a, b, c))
    assert np.abs(x - y).max() < 1e-6 and np.abs(x - z).max() > 0.1   # chunking changes nothing


def test_simulate_from_volumes(tmp_path):
    vols = make_volumes("discrete", 16, np.arange(2), states=2)
    ds = simulate(vols, 30, tmp_path, apix=5.0, save_volumes=True)
    t = np.load(tmp_path / "truth.npz")
    assert ds.kind == "volumes" and t["state"].max() <= 1 and ds.apix == 5.0
    assert len(list((tmp_path / "volumes").glob("*.mrc"))) == 2


def test_bad_requests_raise_clear_errors(tmp_path):
    with pytest.raises(CryoscapeError, match="unknown model"):
        simulate("spiral", 10, tmp_path, D=16)
    with pytest.raises(CryoscapeError, match="SNR"):
        simulate("linear", 10, tmp_path, D=16, snr=0)
    with pytest.raises(CryoscapeError, match="even"):
        simulate("linear", 10, tmp_path, D=15)
    with pytest.raises(CryoscapeError, match="2 states"):
        simulate("discrete", 10, tmp_path, D=16, states=1)
    with pytest.raises(CryoscapeError, match="shift"):
        simulate("linear", 10, tmp_path, D=16, max_shift=-1)
    with pytest.raises(CryoscapeError, match="cubic"):
        simulate(np.zeros((8, 8, 6)), 10, tmp_path)
    assert not (tmp_path / "particles.mrcs").exists()


PDB_ATOMS = [("C", 0.0, 0.0, 0.0), ("O", 6.0, 0.0, 0.0), ("N", 0.0, -4.5, 3.0)]


def _write_pdb(path, atoms):
    lines = [f"ATOM  {i + 1:5d} {el:<4s} ALA A{1:4d}    {x:8.3f}{y:8.3f}{z:8.3f}"
             f"{1.0:6.2f}{20.0:6.2f}          {el:>2s}" for i, (el, x, y, z) in enumerate(atoms)]
    path.write_text("\n".join(lines + ["END"]) + "\n")


def test_atomic_model_gaussians_at_the_right_voxels(tmp_path):
    from scipy.ndimage import maximum_filter
    pdb = tmp_path / "tiny.pdb"
    _write_pdb(pdb, PDB_ATOMS)
    D, apix = 32, 1.5
    vol = volume_from_atomic_model(pdb, D, apix, center=False)
    peaks = np.argwhere((vol == maximum_filter(vol, size=3)) & (vol > 0.1 * vol.max()))
    expect = {(16 + round(z / apix), 16 + round(y / apix), 16 + round(x / apix))
              for _, x, y, z in PDB_ATOMS}                        # [z, y, x] voxels
    assert {tuple(p) for p in peaks} == expect == {(16, 16, 16), (16, 16, 20), (18, 13, 16)}
    assert vol.sum() == pytest.approx(6 + 8 + 7, rel=1e-3)   # mass = atomic numbers
    import gemmi
    cif = tmp_path / "tiny.cif"
    gemmi.read_structure(str(pdb)).make_mmcif_document().write_file(str(cif))
    assert np.allclose(volume_from_atomic_model(cif, D, apix, center=False), vol)
    centered = volume_from_atomic_model(pdb, D, apix)
    zz, yy, xx = np.indices(vol.shape)
    com = [(g * centered).sum() / centered.sum() for g in (xx, yy, zz)]
    assert np.allclose(com, 16, atol=0.02)


def test_atomic_model_errors(tmp_path):
    pdb = tmp_path / "far.pdb"
    _write_pdb(pdb, [("C", 0.0, 0.0, 0.0), ("C", 80.0, 0.0, 0.0)])
    with pytest.raises(InputFileError, match="outside the 16 px box"):
        volume_from_atomic_model(pdb, 16, 1.0)
    bad = tmp_path / "empty.pdb"
    bad.write_text("END\n")
    with pytest.raises(InputFileError, match="no atoms"):
        volume_from_atomic_model(bad, 16, 1.0)
    one = atoms_to_volume(np.zeros((1, 3)), [6.0], [0.0], 8, 1.0)
    assert one.sum() == pytest.approx(6, rel=1e-3) and one.argmax() == (4 * 8 + 4) * 8 + 4


def test_cli_simulate(tmp_path):
    from cryoscape.app.cli import main
    from cryoscape.app.commands import simulate as cmd
    assert tuple(cmd.KINDS) == tuple(KINDS)
    pdb = tmp_path / "tiny.pdb"
    _write_pdb(pdb, PDB_ATOMS)
    assert main(["simulate", "--pdb", str(pdb), "-n", "8", "-D", "16", "--apix", "2",
                 "--ctf", "--snr", "1", "-o", str(tmp_path / "p")]) == 0
    for f in ("particles.mrcs", "particles.star", "poses.pkl", "ctf.pkl", "truth.npz"):
        assert (tmp_path / "p" / f).exists()
    assert main(["simulate", "--model", "2d", "-n", "6", "-D", "16", "--save-volumes",
                 "-o", str(tmp_path / "m")]) == 0
    assert main(["simulate", "--model", "2d", "-n", "6", "-D", "16", "--ctf",
                 "-o", str(tmp_path / "m")]) == 0
    assert (tmp_path / "m" / "ctf.pkl").exists() and not list((tmp_path / "m").glob("volumes/*"))
    assert main(["simulate", "--model", "2d", "-n", "6", "-D", "16", "--save-volumes",
                 "-o", str(tmp_path / "m")]) == 0
    assert not (tmp_path / "m" / "ctf.pkl").exists()   # no stale CTF from the run before
    assert len(list((tmp_path / "m" / "volumes").glob("*.mrc"))) == 25
    v = str(tmp_path / "m" / "volumes" / "vol_000.mrc")
    assert main(["simulate", "--volume", v, "-n", "4", "-D", "12", "-o", str(tmp_path / "v")]) == 0
    t = np.load(tmp_path / "v" / "truth.npz")
    assert float(t["apix"]) == pytest.approx(256 / 12) and int(t["D"]) == 12
    assert main(["simulate", "--model", "linear", "-n", "4", "-o", str(tmp_path / "x")]) == 1


def test_simulate_then_backproject_recovers_truth(tmp_path):
    """Noise-free with CTF and shifts: the backprojection matches the truth to 0.8 Nyquist."""
    from cryoscape.core.backproject import backproject
    from cryoscape.core.io.particles import load_particles
    from cryoscape.core.metrics import fsc
    D = 32
    simulate("homogeneous", 600, tmp_path, D=D, ctf=True, max_shift=3.0, seed=2)
    rec = backproject(load_particles(tmp_path / "particles.star"), half_maps=False,
                      progress=False)
    truth = make_volume("homogeneous", None, D)
    freq, curve = fsc(rec.volume, truth)
    band = freq <= 0.8 * 0.5
    assert curve[band].min() >= 0.95                  # measured 0.993
    _, mirrored = fsc(rec.volume, truth[::-1].copy())
    assert mirrored[D // 8:D // 4].min() < 0.5        # the hand is right
