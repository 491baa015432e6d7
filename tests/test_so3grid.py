"""The multi-resolution SO(3) and shift grids: uniformity, parent/child, neighbours."""

import numpy as np
import pytest
import torch
from cryoscape.core import so3grid as g
from scipy.spatial.transform import Rotation


def _angles(q1, q2):
    return torch.rad2deg(g.rotation_distance(q1, q2))


def test_sizes_and_spacing():
    assert [g.grid_size(lv) for lv in range(3)] == [576, 4608, 36864]
    assert g.so3_grid(0).shape == (576, 3, 3)
    assert g.grid_spacing_deg(0) == pytest.approx(29.54, abs=0.01)
    assert g.grid_spacing_deg(5) == pytest.approx(0.92, abs=0.005)   # the paper's final grid


def test_healpix_directions_equal_area():
    """Nested pix2ang: the viewing axes of the 48 nside-2 pixels are distinct, spread evenly
    (equal-area rings: mean z 0, 4 pixels in each polar ring) and 4 nested sub-pixels of a
    pixel surround it."""
    theta, phi = g.healpix_pix2ang(2, torch.arange(48))
    v = torch.stack([theta.sin() * phi.cos(), theta.sin() * phi.sin(), theta.cos()], 1)
    assert abs(float(v[:, 2].mean())) < 1e-12 and float(v.mean(0).norm()) < 1e-12
    assert torch.unique(v.round(decimals=6), dim=0).shape[0] == 48
    assert int((theta.cos() > 0.9).sum()) == 4
    t4, p4 = g.healpix_pix2ang(4, torch.arange(192))
    v4 = torch.stack([t4.sin() * p4.cos(), t4.sin() * p4.sin(), t4.cos()], 1).reshape(48, 4, 3)
    near = (v4 @ v[:, :, None]).squeeze(-1).clamp(max=1).arccos().rad2deg()
    assert float(near.max()) < 16                          # pixel spacing at nside 2: 29 deg


def test_rotations_orthonormal_and_axis_is_direction():
    R = g.so3_grid(1).double()
    eye = torch.eye(3, dtype=torch.float64)
    assert torch.allclose(R @ R.transpose(1, 2), eye.expand_as(R), atol=1e-6)
    assert torch.allclose(torch.linalg.det(R), torch.ones(len(R), dtype=torch.float64), atol=1e-6)
    # the slice normal e_z @ R is the HEALPix direction of the point
    theta, phi = g.healpix_pix2ang(4, torch.arange(4608) // 24)
    v = torch.stack([theta.sin() * phi.cos(), theta.sin() * phi.sin(), theta.cos()], 1)
    assert torch.allclose(R[:, 2], v, atol=1e-6)
    # the quaternions describe the same rotations (R is the transpose of the column form)
    q = g.so3_quaternions(1, torch.arange(4608)).numpy()
    m = Rotation.from_quat(q[:, [1, 2, 3, 0]]).as_matrix()
    assert np.abs(m.transpose(0, 2, 1) - R.numpy()).max() < 1e-6


@pytest.mark.parametrize("level", [0, 1])
def test_grid_uniform(level):
    """Nearest-neighbour angles tight around the spacing; every rotation (random, uniform)
    lies within the covering radius, below the spacing."""
    s = g.grid_spacing_deg(level)
    q = g.so3_quaternions(level, torch.arange(g.grid_size(level)))
    dot = (q @ q.T).abs()                      # the angle is 2 acos |q1 . q2|: max dot = nearest
    dot.fill_diagonal_(0)
    nn = torch.rad2deg(2 * dot.max(1).values.clamp(max=1).arccos())
    assert 0.85 * s < float(nn.min()) and float(nn.max()) < 1.05 * s
    rq = torch.randn(20000, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    rq = rq / rq.norm(dim=1, keepdim=True)
    cover = torch.rad2deg(2 * (rq @ q.T).abs().max(1).values.clamp(max=1).arccos())
    assert float(cover.max()) < 0.9 * s


@pytest.mark.parametrize("level", [0, 1, 2])
def test_children_partition_next_level_and_stay_close(level):
    n = g.grid_size(level)
    idx = torch.arange(n)
    ch = g.so3_children(level, idx)
    assert ch.shape == (n, 8)
    assert torch.equal(ch.reshape(-1).sort().values, torch.arange(g.grid_size(level + 1)))
    assert torch.equal(g.so3_parent(level + 1, ch), idx[:, None].expand(-1, 8))
    d = _angles(g.so3_quaternions(level, idx)[:, None],
                g.so3_quaternions(level + 1, ch.reshape(-1)).reshape(n, 8, 4))
    assert float(d.max()) < 0.75 * g.grid_spacing_deg(level)
    assert float(d.max()) < g.CHILD_DEG / 2 ** level        # the neighbour search's margin


@pytest.mark.parametrize("level", [0, 1, 2])
def test_neighbours_match_brute_force(level):
    n = g.grid_size(level)
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(level))[:200]
    nb = g.so3_neighbours(level, idx)
    q = g.so3_quaternions(level, torch.arange(n))
    d = _angles(q[idx][:, None], q[None])
    r = 1.5 * g.grid_spacing_deg(level)
    for i in range(len(idx)):
        got = nb[i][nb[i] >= 0]
        want = set((d[i] <= r).nonzero().squeeze(1).tolist()) - {int(idx[i])}
        assert set(got.tolist()) == want and len(got) == len(want)
        assert bool((d[i, got].diff() >= 0).all())         # nearest first
    assert 12 <= int((nb >= 0).sum(1).min())


def test_shift_grid_and_children():
    t = g.shift_grid(3.0, 6)
    assert t.shape == (36, 2)
    h = g.shift_spacing(3.0, 6)
    assert h == pytest.approx(1.0)
    assert torch.allclose(t[:6, 0], torch.arange(6) - 2.5) and bool((t[:6, 1] == -2.5).all())
    ch = g.shift_children(t, h)                                          # [36, 4, 2]
    assert torch.allclose(ch.reshape(-1, 2).sort(0).values, g.shift_grid(3.0, 12).sort(0).values)
    assert torch.allclose((ch - t[:, None]).abs(), torch.full_like(ch, h / 4))


def test_shift_refinements_span_the_cell_and_beyond():
    t = torch.tensor([[0.5, -1.0]])
    r = g.shift_refinements(t, 1.0)                                        # [1, 9, 2]
    assert r.shape == (1, 9, 2)
    assert torch.allclose(r[0, 4], t[0])                                   # the point itself
    assert torch.allclose(r[0].amin(0), t[0] - 0.5) and torch.allclose(r[0].amax(0), t[0] + 0.5)
    assert torch.allclose(r[0, 1] - r[0, 0], torch.tensor([0.5, 0.0]))    # x fastest
