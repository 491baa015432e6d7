"""FSC parity with cryoDRGN, resolution thresholds and per-image FSC (pose error: test_poseerror)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from cryoscape.core.errors import CryoscapeError
from cryoscape.core.io.mrc import read_mrc
from cryoscape.core.metrics import fsc, fsc_auc, per_image_fsc, resolution


def _cryodrgn_curve(path):
    ref = np.loadtxt(path, skiprows=1)
    with open(path) as f:
        assert f.readline().split() == ["pixres", "fsc"]
    return ref[:, 0], ref[:, 1]


@pytest.mark.parametrize("a, b, curve", [
    ("hand/hand-bp.mrc", "cryodrgn_rundir/expected/vol_001.mrc",
     "cryodrgn_rundir/expected/fsc_bp_vs_vol001.txt"),
    ("cryodrgn_run/expected/vol_001.mrc", "cryodrgn_run/expected/vol_002.mrc",
     "cryodrgn_run/expected/fsc_vol001_vs_vol002.txt"),
])
def test_fsc_matches_cryodrgn(fixtures_dir, a, b, curve):
    v1, _ = read_mrc(fixtures_dir / a)
    v2, _ = read_mrc(fixtures_dir / b)
    ref_f, ref_c = _cryodrgn_curve(fixtures_dir / curve)
    f, c = fsc(v1, v2)
    assert f.shape == ref_f.shape == (32,)
    np.testing.assert_allclose(f, ref_f, atol=1e-12)
    np.testing.assert_allclose(c, ref_c, atol=1e-4)
    # cryoDRGN's reported resolution: the highest frequency (> 0) with FSC >= threshold
    for t in (0.5, 0.143):
        want = ref_f[(ref_f > 0) & (ref_c >= t)].max()
        assert resolution(f, c, t)["highest"] == want
    if "bp_vs" in curve:
        r = resolution(f, c, 0.5, apix=1.0)
        assert r["highest"] == 0.078125 and r["highest_A"] == pytest.approx(12.8)


def test_fsc_basic_properties(rng):
    v = rng.normal(size=(32, 32, 32))
    f, c = fsc(v, 3 * v)
    assert f[1] == 1 / 32 and len(c) == 16
    np.testing.assert_allclose(c, 1, atol=1e-12)
    np.testing.assert_allclose(fsc(v, -v)[1][1:], -1, atol=1e-12)
    w = v + rng.normal(size=v.shape)
    mask = np.zeros_like(v)
    mask[8:24, 8:24, 8:24] = 1
    np.testing.assert_allclose(fsc(v, w, mask)[1], fsc(v * mask, w * mask)[1])
    assert not np.allclose(fsc(v, w, mask)[1], fsc(v, w)[1])
    with pytest.raises(CryoscapeError):
        fsc(v, v[:16])


def test_resolution_highest_and_first_crossing():
    freq = np.arange(8) / 16
    curve = np.array([1, 0.9, 0.7, 0.4, 0.6, 0.3, 0.1, 0.0])
    r = resolution(freq, curve, 0.5, apix=2.0)
    assert r["highest"] == 4 / 16 and r["highest_A"] == pytest.approx(8.0)  # cryoDRGN's
    assert r["first_crossing"] == 2 / 16 and r["first_crossing_A"] == pytest.approx(16.0)
    # linear interpolation between 0.7 at 2/16 and 0.4 at 3/16
    assert r["first_crossing_interp"] == pytest.approx((2 + 2 / 3) / 16)
    r = resolution(freq, curve, 0.143)
    assert r["highest"] == r["first_crossing"] == 5 / 16
    r = resolution(freq, np.array([1, 0.3, 0.9, 0, 0, 0, 0, 0]), 0.5)
    assert r["first_crossing"] is None and r["highest"] == 2 / 16
    r = resolution(freq, np.array([1, 0.2, 0.1, 0, 0, 0, 0, 0]), 0.5)
    assert r["highest"] is None and r["highest_A"] is None
    r = resolution(freq, np.ones(8), 0.5)
    assert r["highest"] == r["first_crossing"] == 7 / 16


def test_per_image_fsc(rng):
    truth = [rng.normal(size=(16, 16, 16)) for _ in range(3)]
    noise = [0.0, 0.5, 3.0]
    pred = (t + s * rng.normal(size=t.shape) for t, s in zip(truth, noise))
    out = per_image_fsc(pred, iter(truth), apix=2.0)
    assert out["curves"].shape == (3, 8) and out["freq"][-1] == 7 / 16
    assert out["auc"][0] == pytest.approx(fsc_auc(out["freq"], np.ones(8)))
    assert out["auc"][0] == pytest.approx(7 / 16)
    assert out["auc"][0] > out["auc"][1] > out["auc"][2]
    assert out["res_px"][0] == pytest.approx(16 / 7)  # best possible: ~2 px (the paper's)
    assert out["res_A"][0] == pytest.approx(2.0 * 16 / 7)
    assert out["res_px"][2] > out["res_px"][1] >= out["res_px"][0]
    assert out["mean_res_px"] == pytest.approx(out["res_px"].mean())
    assert out["mean_auc"] == pytest.approx(out["auc"].mean())
    far = per_image_fsc([truth[0]], [rng.normal(size=(16, 16, 16))])
    assert far["res_px"][0] == 16.0  # no shell reaches 0.5: the coarsest, D px
    with pytest.raises(ValueError):
        per_image_fsc(truth[:2], truth)


def test_fourier_numpy_path_matches_torch(rng):
    """core.fourier takes numpy arrays through numpy.fft (used by FSC and backprojection):
    same centered convention and precision as the torch path."""
    from cryoscape.core import fourier
    v = rng.normal(size=(2, 8, 8, 8))
    for fn in (fourier.fft3_center, fourier.ifft3_center, fourier.ht3_center,
               fourier.iht3_center, fourier.fft2_center, fourier.ht2_center):
        np.testing.assert_allclose(fn(v), fn(torch.from_numpy(v)).numpy(), atol=1e-9)
    assert fourier.fft3_center(v.astype(np.float32)).dtype == np.complex64
    assert fourier.iht3_center(v.astype(np.float32)).dtype == np.float32
