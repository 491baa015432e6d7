"""Viewing directions of posed particles: the direction of a pose and the equal-area plot."""
from __future__ import annotations

import numpy as np
from cryoscape.core.analysis.viewing import (
    direction_histogram,
    plot_viewing_directions,
    viewing_directions,
)
from cryoscape.core.lattice import coords_2d
from cryoscape.core.rotations import relion_euler_to_matrix


def test_viewing_direction_is_normal_to_the_slice():
    R = relion_euler_to_matrix(np.random.default_rng(0).uniform(0, 180, (50, 3)))
    v = viewing_directions(R)
    slice_3d = coords_2d(8).numpy() @ R                       # [50, 64, 3] slice points
    np.testing.assert_allclose(np.einsum("npk,nk->np", slice_3d, v), 0, atol=1e-5)
    # RELION: tilt 0 looks down z, tilt 90 at rot 0 along x
    np.testing.assert_allclose(np.abs(viewing_directions(
        relion_euler_to_matrix([[0, 0, 0], [0, 90, 0]]))), [[0, 0, 1], [1, 0, 0]], atol=1e-6)


def test_uniform_rotations_fill_equal_area_bins_evenly(tmp_path):
    from scipy.spatial.transform import Rotation
    R = Rotation.random(72000, random_state=1).as_matrix()
    counts, _, _ = direction_histogram(R, n_azimuth=12, n_elevation=6)
    expected = len(R) / counts.size
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 2 * counts.size                              # flat: ~ its 71 dof
    top = direction_histogram(np.repeat(np.eye(3)[None], 10, 0), 12, 6)[0]
    assert top[-1].sum() == 10                                  # looking down +z: top row
    png = plot_viewing_directions(tmp_path / "v.png", R[:500])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
