"""The landscape in volume space: on the tiny two-state run the states found from the maps are
the true states and their maps the true maps, the regressor from z reproduces the sketch's
volume-PC coordinates, outputs round-trip and are cached; a cryoDRGN run works the same way."""
from __future__ import annotations

import numpy as np
import pytest
from cryoscape.core.analysis import landscape as L
from cryoscape.core.errors import CryoscapeError, InputFileError

from tests.conftest import cli

pytestmark = pytest.mark.slow  # trains the shared tiny run when run alone


def corr(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def r2(pred, true):
    return 1 - float(((pred - true) ** 2).sum() / ((true - true.mean(0)) ** 2).sum())


@pytest.fixture(scope="module")
def tiny(tiny_run, tmp_path_factory):
    from cryoscape.core.run import Run

    run = Run.open(tiny_run.run)
    cache = tmp_path_factory.mktemp("landscape_cache")
    return run, L.compute_landscape(run, states=2, seed=0, cache_dir=cache, progress=False)


def test_states_are_the_true_states_and_their_maps(tiny, tiny_run):
    from sklearn.metrics import adjusted_rand_score

    res = tiny[1]
    n = len(tiny_run.state)
    assert res.state.shape == (n,) and res.volume_pcs.shape == (n, 10)
    assert len(res.centres) == L.sketch_size(n) == 60
    assert adjusted_rand_score(tiny_run.state, res.state) >= 0.9
    assert res.occupancy.sum() == n
    for s in range(2):   # each state's mean map is its true map, not the other one
        truth = np.bincount(tiny_run.state[res.state == s]).argmax()
        c = corr(res.state_maps[s], tiny_run.volumes[truth])
        assert c > 0.9 and c > corr(res.state_maps[s], tiny_run.volumes[1 - truth]) + 0.05
    assert res.explained_variance_ratio[0] > 0.5   # the two states dominate the maps' variance


def test_bf16_sketch_gives_the_float32_landscape(tiny, tmp_path):
    """The sketch decoded in bf16 where the CPU has it (the default) and in float32 (amp
    off): the same states, the same volume PCs (up to sign), cached apart."""
    import torch
    from cryoscape.core.device import native_bf16

    run, res = tiny
    assert res.info["precision"] == ("bfloat16" if native_bf16(torch.device("cpu"))
                                     else "float32")
    f32 = L.compute_landscape(run, states=2, seed=0, amp=False, cache_dir=tmp_path,
                              progress=False)
    assert f32.info["precision"] == "float32"
    assert np.array_equal(f32.centre_labels, res.centre_labels)
    assert np.array_equal(f32.centre_state == f32.centre_state[0],
                          res.centre_state == res.centre_state[0])
    for j in range(2):
        assert abs(corr(f32.centre_pcs[:, j], res.centre_pcs[:, j])) > 0.999


def test_another_number_of_states_reuses_the_decoded_sketch(tiny, tmp_path, monkeypatch):
    """The sketch's maps are cached beside the landscape: 3 states (or another linkage) after
    2 decode nothing, and read the same maps (the same volume PCs)."""
    run, res = tiny
    two = L.compute_landscape(run, states=2, seed=0, cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.glob("sketch.*.npz"))) == 1 and not two.info["sketch_cached"]

    def no_decoding(*a, **k):
        raise AssertionError("the sketch was decoded again")
    monkeypatch.setattr(L, "decode_sketch", no_decoding)
    three = L.compute_landscape(run, states=3, linkage="average", seed=0, cache_dir=tmp_path,
                                progress=False)
    assert three.info["sketch_cached"] and len(three.state_maps) == 3
    assert np.array_equal(three.centre_pcs, two.centre_pcs)
    assert np.array_equal(two.centre_pcs, res.centre_pcs)     # as the fixture's, uncached
    assert three.info["seconds"]["decode"] == two.info["seconds"]["decode"]
    with pytest.raises(AssertionError, match="decoded again"):   # other maps: decoded
        L.compute_landscape(run, states=2, box=16, cache_dir=tmp_path, progress=False)


def test_regressor_reproduces_the_volume_pcs(tiny):
    res = tiny[1]
    assert res.info["regressor_r2_heldout"] >= 0.9
    # the particles' coordinates follow their own centre's
    assert r2(res.volume_pcs, res.centre_pcs[res.centre_labels]) >= 0.9
    # a function it must learn, held out: a smooth map from 8-d z, R^2 on unseen points
    rng = np.random.default_rng(0)
    z = rng.normal(size=(600, 8)).astype(np.float32)
    y = np.stack([np.sin(z[:, 0]) + 0.5 * z[:, 1] ** 2, np.tanh(z[:, 2] * z[:, 3])], 1)
    predict, held = L.fit_regressor(z[:500], y[:500], seed=0)
    assert held >= 0.9 and r2(predict(z[500:]), y[500:]) >= 0.9


def test_masked_pca_matches_numpy_svd(rng):
    X = rng.normal(size=(30, 500)).astype(np.float32) * np.linspace(3, 0.1, 500)
    ref = X - X.mean(0)
    _, s, vt = np.linalg.svd(ref, full_matrices=False)
    res = L.masked_pca(X.copy(), 5)
    for j in range(5):
        assert abs(float(res.components[j] @ vt[j])) == pytest.approx(1, abs=1e-4)
    assert np.allclose(np.abs(res.coords), np.abs(ref @ vt[:5].T), rtol=1e-3, atol=1e-3)
    assert res.explained_variance_ratio == pytest.approx(s[:5] ** 2 / (s ** 2).sum(), rel=1e-4)


def test_cli_writes_and_round_trips_and_reuses_the_cache(tiny, tiny_run, tmp_path):
    from cryoscape.core.io.mrc import read_mrc

    res = tiny[1]
    out = tmp_path / "land"
    assert cli("landscape", tiny_run.run, "--states", 2, "-o", out) == 0
    d = np.load(out / "landscape.npz")
    assert np.array_equal(d["state"], res.state)
    assert np.allclose(d["volume_pcs"], res.volume_pcs, atol=1e-5)
    for name in ("centres", "centre_labels", "centre_state", "centre_pcs"):
        assert np.allclose(d[name], getattr(res, name), atol=1e-5)
    vol, apix = read_mrc(out / "states" / "state_001.mrc")
    assert np.allclose(vol, res.state_maps[1]) and apix == pytest.approx(8.0)
    assert len(list((out / "pc1").glob("vol_*.mrc"))) == L.PC_STEPS
    for f in ("states/chimerax.cxc", "pc2/chimerax.cxc", "mask.mrc", "volume_pcs.png",
              "occupancy.png", "latent_states.png", "summary.json"):
        assert (out / f).stat().st_size > 0
    cached = list((tiny_run.run / "analysis_cache").glob("landscape.*.npz"))
    assert len(cached) == 1
    again = L.Landscape.load(cached[0])
    assert np.array_equal(again.state, res.state) and again.info["states"] == 2
    # a second command reads the cache: same file, nothing decoded again
    stamp = cached[0].stat().st_mtime_ns
    assert cli("landscape", tiny_run.run, "--states", 2, "-o", tmp_path / "again") == 0
    assert cached[0].stat().st_mtime_ns == stamp
    assert np.array_equal(np.load(tmp_path / "again" / "landscape.npz")["state"], res.state)


def test_user_mask_and_bad_settings(tiny, tmp_path):
    from cryoscape.core.io.mrc import write_mrc

    run = tiny[0]
    mask = np.zeros((32,) * 3, np.float32)
    mask[8:24, 8:24, 8:24] = 1
    write_mrc(tmp_path / "mask.mrc", mask)
    got = L.compute_landscape(run, sketch=20, states=2, mask=tmp_path / "mask.mrc",
                              progress=False)
    assert np.array_equal(got.mask, mask) and got.info["mask_voxels"] == 16 ** 3
    write_mrc(tmp_path / "small.mrc", mask[:16, :16, :16])
    with pytest.raises(InputFileError, match="small.mrc.*16x16x16 but the maps are 32"):
        L.compute_landscape(run, sketch=20, states=2, mask=tmp_path / "small.mrc",
                            progress=False)
    with pytest.raises(CryoscapeError, match="linkage"):
        L.compute_landscape(run, states=2, linkage="median", progress=False)
    with pytest.raises(CryoscapeError, match="states must be between 2 and"):
        L.compute_landscape(run, sketch=5, states=8, progress=False)
    assert cli("landscape", run.path, "-D", 33, "-o", tmp_path / "x") == 1


def test_cryodrgn_run(fixtures_dir, tmp_path):
    from cryoscape.core.run import Run

    run = Run.open(fixtures_dir / "cryodrgn_rundir" / "run")
    res = L.compute_landscape(run, states=2, box=16, pcs=3, cache_dir=tmp_path, progress=False)
    assert len(res.centres) == 10 and res.volume_pcs.shape == (100, 3)
    assert set(np.unique(res.centre_state)) == {0, 1}
    maps = run.decode(res.centres, D=16, epoch=None,   # the sketch, decoded again
                      bf16=res.info["precision"] == "bfloat16")
    for s in range(2):
        mean = maps[res.centre_state == s].mean(0)      # maps kept in float16
        assert np.abs(res.state_maps[s] - mean).max() < 2e-3 * np.abs(mean).max()
    assert np.array_equal(res.state, res.centre_state[res.centre_labels])
