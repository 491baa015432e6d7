"""Pose search: noiseless images of an asymmetric map are found on the grid, the bound keeps
the optimum, interpolated slices match direct decoding, heterogeneous search by z clusters."""
import math

import numpy as np
import pytest
import torch
from cryoscape.core import so3grid
from cryoscape.core.models import build_model
from cryoscape.core.posesearch import (
    DecoderSlicer,
    PoseSearch,
    SearchConfig,
    SearchResult,
    VolumeSlicer,
)
from cryoscape.core.preprocess import preprocess_images
from cryoscape.core.rotations import random_rotations
from cryoscape.core.simulate import make_volume, project
from cryoscape.core.simulate.dataset import _random_ctf
from cryoscape.core.train.forward import SliceLattice, center_hartley
from scipy.spatial.transform import Rotation


def angle_deg(Ra, Rb) -> torch.Tensor:
    rel = torch.as_tensor(Ra).double().transpose(1, 2) @ torch.as_tensor(Rb).double()
    cos = (rel.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2
    return torch.rad2deg(torch.arccos(cos.clamp(-1, 1)))


def map_images(D, n, extent, ctf, seed=0):
    """Noiseless images of the built-in asymmetric map, as the search receives them:
    (map, lattice, y, rotations, shifts, ctf params | None)."""
    vol = make_volume("homogeneous", None, D)
    rng = np.random.default_rng(seed)
    R = random_rotations(n, rng)
    shifts = rng.uniform(-extent, extent, (n, 2)).astype(np.float32)
    params = _random_ctf(n, D, 256 / D, rng, (10000, 30000), 500, 300, 2.7, 0.1) if ctf else None
    lat = SliceLattice(D)
    # RELION contrast with a CTF (inverted as training does), the projection itself without
    y = preprocess_images(torch.from_numpy(project(vol, R, shifts, params)), invert=ctf)
    params = None if params is None else torch.from_numpy(params)
    return vol, lat, y.reshape(n, -1)[:, lat.keep], torch.from_numpy(R), shifts, params


@pytest.mark.parametrize("ctf", [False, True])
def test_search_finds_noiseless_poses(ctf):
    D, n = 32, 32
    ps = PoseSearch(SliceLattice(D), SearchConfig())
    vol, _, y, R, shifts, params = map_images(D, n, ps.cfg.t_extent, ctf)
    res = ps.search(y, params, VolumeSlicer.from_map(vol))
    err = angle_deg(res.rot, R)
    assert float((err < so3grid.grid_spacing_deg(ps.final_level)).float().mean()) >= 0.95
    final_shift_spacing = ps.h0 / 2 ** ps.cfg.levels
    terr = (res.shift - torch.from_numpy(shifts)).abs().amax(1)
    assert float((terr <= final_shift_spacing).float().mean()) >= 0.95
    assert res.rot.shape == (n, 3, 3) and res.loss.shape == (n,)
    # the loss is run_batch's per-image mse of the found pose: small against the image power
    assert float(res.loss.median()) < 0.01 * float(y.pow(2).mean())


def exhaustive(ps, y, C, slicer, level, shifts):
    """Best (rotation index, shift) of every image over all rotations of a grid level and
    the given shifts, by the loss on the whole loss circle (written out directly)."""
    rots = so3grid.so3_grid(level)
    S = slicer(ps.lat.coords @ rots)                                          # [R, P]
    out = []
    for b in range(len(y)):
        yb = y[b:b + 1, ps.lat.loss_sel].expand(len(shifts), -1)
        centred = center_hartley(yb, ps.lat.coords, shifts)                  # [T, P]
        pred = S if C is None else S * C[b]
        E = (centred.pow(2).sum(1)[:, None] - 2 * centred @ pred.T
             + pred.pow(2).sum(1)[None])                                       # [T, R]
        t, r = divmod(int(E.argmin()), E.shape[1])
        out.append((r, shifts[t], float(E.min())))
    return out


def test_bnb_equals_exhaustive_search():
    """The bound (every candidate whose band-limited loss does not exceed the best one's
    full loss) keeps the optimum: the result equals the exhaustive search at the final
    resolution (grid level 2, 36864 rotations x the final shift lattice)."""
    D = 16
    cfg = SearchConfig(method="bnb", base_level=1, levels=1, kmin=4, t_extent=1.5,
                       t_ngrid=3, max_keep=4608, polish=False)
    ps = PoseSearch(SliceLattice(D), cfg)
    vol, _, y, _, _, _ = map_images(D, 4, 1.5, False, seed=1)
    slicer = VolumeSlicer.from_map(vol)
    res = ps.search(y, None, slicer)
    f = torch.arange(-1.5, 1.51, 0.5)
    gy, gx = torch.meshgrid(f, f, indexing="ij")
    lattice = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
    best = exhaustive(ps, y, None, slicer, 2, lattice)
    rots = so3grid.so3_grid(2)
    for b, (r, t, e) in enumerate(best):
        assert torch.allclose(res.rot[b], rots[r], atol=1e-5)
        assert torch.allclose(res.shift[b], t, atol=1e-5)
        assert float(res.loss[b]) * ps.lat.n_loss == pytest.approx(e, rel=1e-3)


@pytest.mark.parametrize("domain, tol", [("fourier", 0.015), ("hartley", 0.03)])
def test_interpolated_slices_match_decoder(domain, tol):
    """VolumeSlicer.from_model against the MLP at every point (DecoderSlicer), on rotated
    slices within |k| <= 8 px at D=32: relative error below `tol` at oversample 2 (measured
    on the whole loss circle: 0.7% and 1.2%), about 3x the error at oversample 1."""
    D, k = 32, 8
    torch.manual_seed(0)
    model = build_model({"zdim": 0, "players": 3, "pdim": 64, "domain": domain}, D + 1).eval()
    lat = SliceLattice(D)
    R = torch.from_numpy(random_rotations(8, np.random.default_rng(1)))
    pts = lat.coords[lat.coords[:, :2].norm(dim=1) * D <= k]
    coords = pts @ R
    exact = DecoderSlicer(model)(coords)

    def rel(n):
        v = VolumeSlicer.from_model(model, D, oversample=n, kmax=k)(coords)
        return float((v - exact).norm() / exact.norm())

    e2 = rel(2)
    assert e2 < tol
    assert rel(1) > 2 * e2


def decoder_images(model, lat, R, shifts, z=None):
    """Images y [B, kept points] made by the decoder itself at poses R, shifts (and z)."""
    with torch.no_grad():
        clean = DecoderSlicer(model, z)(lat.coords @ R)
    y = torch.zeros(len(R), len(lat.keep))
    y[:, lat.loss_sel] = center_hartley(clean, lat.coords, -shifts)    # content moved by shifts
    return y


def test_search_model_homogeneous_and_heterogeneous():
    """search_model recovers the poses of images made by a decoder: homogeneous (one
    decoded volume), and heterogeneous with two conformations searched against two reference
    points of z (each image against both volumes: its poses and its own conformation)."""
    D, n = 32, 16
    torch.manual_seed(0)
    lat = SliceLattice(D)
    rng = np.random.default_rng(2)
    R = torch.from_numpy(random_rotations(n, rng))
    shifts = torch.from_numpy(rng.uniform(-2, 2, (n, 2)).astype(np.float32))
    ps = PoseSearch(lat, SearchConfig(kmin=8, kmax=12))
    spacing = so3grid.grid_spacing_deg(ps.final_level)
    homo = build_model({"zdim": 0, "players": 2, "pdim": 64}, D + 1).eval()
    res = ps.search_model(homo, decoder_images(homo, lat, R, shifts), None)
    err = angle_deg(res.rot, R)           # a random decoder: a less distinct map than a particle
    assert float((err < spacing).float().mean()) >= 0.9 and float(err.max()) < 2 * spacing
    het = build_model({"zdim": 2, "players": 2, "pdim": 64}, D + 1).eval()
    refs = torch.tensor([[1.5, -1.0], [-1.5, 1.0]])
    state = torch.arange(n) % 2
    z = refs[state] + 0.01 * torch.randn(n, 2)
    res = ps.search_model(het, decoder_images(het, lat, R, shifts, z), None, refs)
    assert torch.equal(res.ref, state)
    err = angle_deg(res.rot, R)
    assert float((err < spacing).float().mean()) >= 0.9 and float(err.max()) < 2 * spacing
    assert float((res.shift - shifts).abs().amax(1).median()) <= ps.h0 / 2 ** ps.cfg.levels


def test_chunks_give_the_same_result():
    D = 16
    vol, lat, y, _, _, params = map_images(D, 10, 2.0, True, seed=3)
    slicer = VolumeSlicer.from_map(vol)
    a = PoseSearch(lat, SearchConfig(chunk=3)).search(y, params, slicer)
    b = PoseSearch(lat, SearchConfig()).search(y, params, slicer)
    assert torch.equal(a.rot, b.rot) and torch.equal(a.shift, b.shift)
    assert torch.allclose(a.loss, b.loss, rtol=1e-5)


def test_config_defaults_and_errors():
    c = SearchConfig().resolved(64)
    assert (c.kmax, c.t_extent, c.t_ngrid, c.base_level + c.levels) == (32, 5.0, 10, 4)
    assert SearchConfig().resolved(128).t_extent == 10.0
    assert so3grid.grid_spacing_deg(SearchConfig().resolved(128).levels + 1) == \
        pytest.approx(0.92, abs=0.01)
    with pytest.raises(Exception, match="method"):
        SearchConfig(method="nope").resolved(64)
    assert math.isfinite(SearchConfig().resolved(32).t_extent)


def test_local_search_from_a_prior():
    """With a prior (poses off by ~3 degrees and 0.4 px), the local search returns to the
    true poses as closely as the global search."""
    D, n = 32, 16
    ps = PoseSearch(SliceLattice(D), SearchConfig())
    vol, _, y, R, shifts, params = map_images(D, n, 2.0, True, seed=4)
    rng = np.random.default_rng(5)
    axis = rng.standard_normal((n, 3))
    rv = 3.0 * math.pi / 180 * axis / np.linalg.norm(axis, axis=1, keepdims=True)
    kick = torch.from_numpy(Rotation.from_rotvec(rv).as_matrix()).float()
    prior_rot = kick @ R
    prior = SearchResult(prior_rot, torch.from_numpy(shifts) + 0.4, torch.zeros(n))
    assert float(angle_deg(prior_rot, R).min()) > 2.9
    res = ps.search(y, params, VolumeSlicer.from_map(vol), prior=prior)
    assert float(angle_deg(res.rot, R).max()) < so3grid.grid_spacing_deg(ps.final_level) / 2
    assert float((res.shift - torch.from_numpy(shifts)).abs().max()) < 0.1
