"""Round trips and parity for the numeric conventions (fourier, lattice, ctf, rotations)."""
import pickle

import numpy as np
import torch
from cryoscape.core import fourier, lattice, rotations
from cryoscape.core.ctf import ctf_images


def test_hartley_round_trip_2d_3d(rng):
    x = rng.standard_normal((3, 16, 16)).astype(np.float32)
    assert np.allclose(fourier.iht2_center(fourier.ht2_center(x)), x, atol=1e-5)
    v = rng.standard_normal((8, 8, 8)).astype(np.float32)
    assert np.allclose(fourier.iht3_center(fourier.ht3_center(v)), v, atol=1e-5)
    f = fourier.fft2_center(x)
    assert np.allclose(fourier.ifft2_center(f).real, x, atol=1e-5)
    assert np.allclose(f[:, 8, 8], x.sum((1, 2)), atol=1e-3)  # DC at D//2


def test_hartley_to_fourier(rng):
    x = torch.from_numpy(rng.standard_normal((16, 16)).astype(np.float32))
    h = fourier.ht2_center(x)
    # H(-k) on the centered even grid: flip, then roll by one to put -k at index D - k
    h_neg = torch.roll(torch.flip(h, (0, 1)), (1, 1), (0, 1))
    assert torch.allclose(fourier.hartley_to_fourier(h, h_neg), fourier.fft2_center(x), atol=1e-4)


def test_phase_shift_moves_content_by_whole_pixels(rng):
    x = torch.from_numpy(rng.standard_normal((1, 16, 16)).astype(np.float32))
    moved = fourier.ifft2_center(lattice.phase_shift_2d(fourier.fft2_center(x),
                                                        torch.tensor([[3.0, -2.0]]))).real
    assert torch.allclose(moved, torch.roll(x, (-2, 3), (1, 2)), atol=1e-4)


def test_lattice_symmetric_matches_native():
    native, sym = lattice.coords_2d(8), lattice.coords_2d(8, symmetric=True)
    assert native.shape == (64, 3) and sym.shape == (81, 3)
    assert torch.allclose(sym.reshape(9, 9, 3)[:8, :8].reshape(-1, 3), native)
    assert native[4 * 8 + 4].abs().sum() == 0  # DC at (D//2, D//2)


def test_relion_euler_parity_and_round_trip(fixtures_dir):
    import starfile
    star = starfile.read(fixtures_dir / "relion/relion31.star")["particles"]
    with open(fixtures_dir / "relion/relion31.pose.pkl", "rb") as f:
        rot, _ = pickle.load(f)  # trusted fixture; the project reads these with its safe loader
    e = star[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy()
    R = rotations.relion_euler_to_matrix(e)
    assert np.abs(R - rot).max() < 1e-5
    assert np.abs(rotations.relion_euler_to_matrix(rotations.matrix_to_relion_euler(R)) - R).max() < 1e-5


def test_rotation_round_trips(rng):
    R = rotations.random_rotations(50, rng)
    assert np.allclose(R @ R.transpose(0, 2, 1), np.eye(3), atol=1e-5)
    assert np.allclose(np.linalg.det(R), 1, atol=1e-5)
    assert np.abs(rotations.cryosparc_pose_to_matrix(rotations.matrix_to_cryosparc_pose(R)) - R).max() < 1e-5
    assert np.abs(rotations.quaternion_to_matrix(rotations.matrix_to_quaternion(R)) - R).max() < 1e-5


def test_ctf_zero_defocus_is_minus_amplitude_contrast_at_dc():
    p = np.array([[64, 1.5, 10000, 12000, 30, 300, 2.7, 0.1, 0]], np.float32)
    c = ctf_images(p)
    assert c.shape == (1, 64, 64)
    assert abs(float(c[0, 32, 32]) + 0.1) < 1e-6  # gamma = 0 at DC: -w
    # a box half the size shows the same CTF at the same physical frequencies
    assert torch.allclose(ctf_images(p, D=32)[0], c[0, 16:48, 16:48], atol=1e-5)
