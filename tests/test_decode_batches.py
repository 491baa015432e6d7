"""Run.decode of many latents: bounded batches through the code the map writers use, the same
maps as one at a time."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from cryoscape.core import decode
from cryoscape.core.analysis.maps import write_maps
from cryoscape.core.io.mrc import read_mrc
from cryoscape.core.models import build_model
from cryoscape.core.run import Run

D, ZDIM = 16, 2


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    """A cryoscape run directory holding a small random heterogeneous model."""
    path = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    args = {"zdim": ZDIM, "qlayers": 1, "qdim": 16, "players": 2, "pdim": 32,
            "pe_type": "gaussian", "domain": "fourier", "enc_mask": D // 2}
    torch.save({"epoch": 1, "model_state_dict": build_model(args, D + 1).state_dict()},
               path / "weights.1.pkl")
    cfg = {"dataset_args": {"norm": [0.0, 3.0], "particles": "/gone.mrcs"},
           "lattice_args": {"D": D + 1, "extent": 0.5, "ignore_DC": True}, "model_args": args,
           "cryoscape": {"apix": 2.0, "D": D}}
    (path / "config.yaml").write_text(yaml.safe_dump(cfg))
    return Run.open(path)


def test_planner_bounds_the_voxels_of_a_call():
    for box in (16, 64, 128, 256, 320):
        m = decode.maps_per_call(box)
        assert m >= 1 and (m == 1 or m * box ** 3 <= decode.MAP_BATCH_VOXELS)
        assert (m + 1) * box ** 3 > decode.MAP_BATCH_VOXELS      # and uses the budget
    assert decode.maps_per_call(64) == 32 and decode.maps_per_call(256) == 1


def test_many_maps_decode_in_bounded_batches_equal_to_one_at_a_time(run, monkeypatch,
                                                                     tmp_path):
    z = np.random.default_rng(0).normal(size=(23, ZDIM)).astype(np.float32)
    single = np.concatenate([run.decode(z[i:i + 1]) for i in range(len(z))])
    calls = []
    real = decode.decode_volumes

    def counting(decoder, zz, *args, **kwargs):
        calls.append(len(zz))
        return real(decoder, zz, *args, **kwargs)

    monkeypatch.setattr(decode, "decode_volumes", counting)
    monkeypatch.setattr(decode, "MAP_BATCH_VOXELS", 5 * D ** 3)   # 5 maps of 16^3 per call
    many = run.decode(z)
    assert calls == [5, 5, 5, 5, 3]                  # never more than the planner allows
    assert many.shape == (23, D, D, D) and many.dtype == np.float32
    np.testing.assert_allclose(many, single, rtol=0, atol=1e-5 * np.abs(single).max())
    assert np.abs(single[0] - single[1]).max() > 1e-2 * np.abs(single).max()  # maps differ
    calls.clear()                    # the map writers decode through the same batches
    series = write_maps(run, z[:7], tmp_path / "maps", progress=False)
    assert calls == [5, 2]
    np.testing.assert_allclose(read_mrc(series.paths[6])[0], single[6], atol=1e-5)
    calls.clear()
    previews = run.decode(z, D=8, batch=10)           # an explicit batch wins
    assert calls == [10, 10, 3] and previews.shape == (23, 8, 8, 8)
