"""MRC read/write (voxel size, bad files) and the restricted unpickler."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
from cryoscape.core.errors import InputFileError
from cryoscape.core.io import cryodrgn
from cryoscape.core.io.mrc import new_mrc_stack, read_mrc, read_mrc_header, write_mrc
from cryoscape.core.io.pickles import load_pickle, load_pickles, save_pickle


def test_mrc_roundtrip_voxel_size(tmp_path, rng):
    vol = rng.standard_normal((16, 16, 16)).astype(np.float32)
    write_mrc(tmp_path / "v.mrc", vol, apix=1.37)
    out, apix = read_mrc(tmp_path / "v.mrc")
    assert apix == pytest.approx(1.37, abs=1e-5)
    np.testing.assert_array_equal(out, vol)
    h = read_mrc_header(tmp_path / "v.mrc")
    assert h.shape == (16, 16, 16) and not h.is_stack and h.origin == (0.0, 0.0, 0.0)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".part")]
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(tmp_path / "v.mrc").st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_stack_writers(tmp_path, rng):
    imgs = rng.standard_normal((5, 8, 8)).astype(np.float32)
    write_mrc(tmp_path / "s.mrcs", imgs, apix=2.5)
    assert read_mrc_header(tmp_path / "s.mrcs").is_stack
    with new_mrc_stack(tmp_path / "m.mrcs", (5, 8, 8), apix=2.5) as data:
        data[:] = imgs
    out, apix = read_mrc(tmp_path / "m.mrcs")
    np.testing.assert_array_equal(out, imgs)
    assert apix == 2.5


def test_new_stack_failure_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), new_mrc_stack(tmp_path / "m.mrcs", (3, 4, 4)) as data:
        data[0] = 1
        raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


def test_truncated_mrc(tmp_path, rng):
    write_mrc(tmp_path / "s.mrcs", rng.standard_normal((10, 8, 8)), apix=1.0)
    raw = (tmp_path / "s.mrcs").read_bytes()
    for name, data in [("cut.mrcs", raw[:-100]), ("tiny.mrcs", raw[:500]),
                       ("junk.mrcs", b"hello" * 300)]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputFileError) as e:
            read_mrc(tmp_path / name)
        msg = str(e.value)
        assert name in msg and "\n" not in msg
        assert ("truncated" in msg) if name != "junk.mrcs" else ("not a readable MRC" in msg)


def test_old_mrc_without_map_id(fixtures_dir):
    """relion31.mrcs has no 'MAP ' ID (an old writer): still readable."""
    data, _ = read_mrc(fixtures_dir / "relion/relion31.mrcs")
    assert data.shape == (5, 256, 256) and np.isfinite(data).all()


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_code_executing_pickle_refused(tmp_path):
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(InputFileError, match=r"evil\.pkl: refusing to unpickle.*system"):
        load_pickle(p)
    # hidden inside a tuple after a legitimate array, and as a second pickle
    p.write_bytes(pickle.dumps((np.zeros(3), _Evil())))
    with pytest.raises(InputFileError, match="refusing"):
        load_pickle(p)
    p.write_bytes(pickle.dumps(np.zeros(3)) + pickle.dumps(_Evil()))
    with pytest.raises(InputFileError, match="refusing"):
        load_pickles(p)
    p.write_bytes(pickle.dumps((_Evil(), np.zeros((2, 2)))))
    with pytest.raises(InputFileError, match="refusing"):
        cryodrgn.load_poses(p)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_numpy_containers_load(tmp_path, protocol):
    obj = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": [np.float64(1.5), np.int64(3)],
           "c": (np.array([1, 2], dtype=np.int16), {1, 2}), "d": "text", "e": None,
           "f": np.zeros(2, dtype=[("x", "<f4"), ("y", "<u8")]), "g": np.dtype("f8")}
    p = tmp_path / "ok.pkl"
    p.write_bytes(pickle.dumps(obj, protocol=protocol))
    out = load_pickle(p)
    np.testing.assert_array_equal(out["a"], obj["a"])
    assert out["b"] == [1.5, 3] and isinstance(out["b"][0], np.float64)
    assert out["c"][1] == {1, 2} and out["c"][0].dtype == np.int16
    assert out["f"].dtype == obj["f"].dtype and out["g"] == np.dtype("f8")


def test_fixture_pickles_numpy1_and_numpy2(fixtures_dir):
    # numpy 1 (numpy.core.multiarray) and numpy 2 (numpy._core.multiarray) spellings
    assert load_pickle(fixtures_dir / "relion/ctf1.pkl").shape == (5, 9)
    assert load_pickle(fixtures_dir / "relion/relion31.ctf.pkl").shape == (5, 9)
    mu, logvar = load_pickles(fixtures_dir / "cryodrgn_rundir/run/z.pkl")
    assert mu.shape == logvar.shape == (100, 2)


def test_save_pickles_and_bad_files(tmp_path):
    save_pickle(tmp_path / "z.pkl", np.ones((3, 2), np.float32), np.zeros((3, 2), np.float32))
    mu, lv = load_pickles(tmp_path / "z.pkl")
    assert mu.sum() == 6 and lv.sum() == 0
    (tmp_path / "bad.pkl").write_bytes(b"not a pickle at all")
    with pytest.raises(InputFileError, match="bad.pkl: not a valid pickle"):
        load_pickle(tmp_path / "bad.pkl")
    (tmp_path / "cut.pkl").write_bytes(pickle.dumps(np.zeros(100))[:50])
    with pytest.raises(InputFileError, match="cut.pkl"):
        load_pickle(tmp_path / "cut.pkl")


def test_cryodrgn_pickles_roundtrip(tmp_path, rng):
    from cryoscape.core.rotations import random_rotations
    R = random_rotations(7, rng)
    shifts = rng.uniform(-3, 3, (7, 2)).astype(np.float32)
    cryodrgn.save_poses(tmp_path / "p.pkl", R, shifts, D=64)
    R2, s2 = cryodrgn.load_poses(tmp_path / "p.pkl", D=64)
    np.testing.assert_allclose(R2, R, atol=1e-7)
    np.testing.assert_allclose(s2, shifts, atol=1e-5)
    _, trans = load_pickle(tmp_path / "p.pkl")  # cryoDRGN layout: trans = -shift / D
    np.testing.assert_allclose(trans, -shifts / 64, atol=1e-7)
    with pytest.raises(InputFileError, match="box size D"):
        cryodrgn.load_poses(tmp_path / "p.pkl")
    cryodrgn.save_poses(tmp_path / "r.pkl", R)
    assert cryodrgn.load_poses(tmp_path / "r.pkl")[1] is None
    ctf = rng.uniform(0, 1, (7, 9))
    cryodrgn.save_ctf(tmp_path / "c.pkl", ctf)
    np.testing.assert_allclose(cryodrgn.load_ctf(tmp_path / "c.pkl"), ctf, rtol=1e-6)
    cryodrgn.save_index(tmp_path / "i.pkl", [4, 0, 2])
    assert cryodrgn.load_index(tmp_path / "i.pkl").tolist() == [4, 0, 2]
    with pytest.raises(InputFileError, match="N x 9"):
        cryodrgn.load_ctf(tmp_path / "i.pkl")
    with pytest.raises(InputFileError, match="N x 3 x 3"):
        cryodrgn.load_poses(tmp_path / "c.pkl")


def test_load_checkpoint(tmp_path, fixtures_dir):
    import torch
    from cryoscape.core.io.pickles import load_checkpoint
    ck = load_checkpoint(fixtures_dir / "cryodrgn_run/het_weights.pkl")  # numpy inside
    assert {"model_state_dict", "search_pose"} <= set(ck)
    torch.save({"epoch": 1, "payload": _Evil()}, tmp_path / "evil.pt")
    with pytest.raises(InputFileError,
                       match=r"evil.pt: refused: the checkpoint references .*system"):
        load_checkpoint(tmp_path / "evil.pt")
