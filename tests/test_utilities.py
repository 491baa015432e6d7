"""The small file utilities: flip-hand, invert-contrast, set-apix, random-subset, concat, mask."""
from __future__ import annotations

import os

import mrcfile
import numpy as np
import pytest
from cryoscape.core.io.cryodrgn import load_ctf, load_index, save_ctf, save_index, save_poses
from cryoscape.core.io.mrc import read_mrc, read_mrc_header, write_mrc
from cryoscape.core.io.pickles import load_pickle, load_pickles, save_pickle
from cryoscape.core.io.stack import open_images
from cryoscape.core.io.star import make_star, read_star, star_apix, star_ctf, star_poses, write_star
from cryoscape.core.masks import soft_mask
from cryoscape.core.rotations import random_rotations

from tests.conftest import cli


def _map(path, vol, apix=1.7, origin=(3.0, -4.0, 5.5)):
    """A map with a voxel size and a non-zero origin, as other programs write them."""
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(np.asarray(vol))
        m.voxel_size = apix
        m.header.origin = origin
    return path


def _header(path):
    with mrcfile.open(path, header_only=True) as m:
        h = m.header
        return (float(m.voxel_size.x), tuple(float(o) for o in h.origin.item()), int(h.mode),
                int(h.ispg))


def test_flip_hand_mirrors_z_and_twice_is_identity(tmp_path, rng):
    vol = rng.standard_normal((12, 12, 12)).astype(np.float32)
    src = _map(tmp_path / "map.mrc", vol)
    assert cli("flip-hand", src, "-o", tmp_path / "f.mrc") == 0
    flipped = read_mrc(tmp_path / "f.mrc")[0]
    np.testing.assert_array_equal(flipped, vol[::-1])  # z reversed, y and x kept
    assert _header(tmp_path / "f.mrc") == (pytest.approx(1.7), (3.0, -4.0, 5.5), 2, 1)
    assert cli("flip-hand", tmp_path / "f.mrc", "-o", tmp_path / "ff.mrc") == 0
    np.testing.assert_array_equal(read_mrc(tmp_path / "ff.mrc")[0], vol)
    # space group 0 (a stack's) on a cube: a map from an old writer; not on a non-cube
    for shape, ok in (((12, 12, 12), True), ((5, 12, 12), False)):
        with mrcfile.new(tmp_path / "g0.mrc", overwrite=True) as m:
            m.set_data(np.zeros(shape, np.float32))
            m.header.ispg = 0
        assert cli("flip-hand", tmp_path / "g0.mrc", "-o", tmp_path / f"g{ok}.mrc") == int(not ok)
        assert (tmp_path / f"g{ok}.mrc").exists() == ok


def test_invert_contrast_map_and_stack(tmp_path, rng):
    vol = rng.standard_normal((10, 10, 10)).astype(np.float32)
    _map(tmp_path / "map.mrc", vol)
    assert cli("invert-contrast", tmp_path / "map.mrc", "-o", tmp_path / "i.mrc") == 0
    np.testing.assert_array_equal(read_mrc(tmp_path / "i.mrc")[0], -vol)
    assert _header(tmp_path / "i.mrc") == (pytest.approx(1.7), (3.0, -4.0, 5.5), 2, 1)
    assert cli("invert-contrast", tmp_path / "i.mrc", "-o", tmp_path / "ii.mrc") == 0
    np.testing.assert_array_equal(read_mrc(tmp_path / "ii.mrc")[0], vol)

    imgs = rng.integers(-300, 300, (7, 16, 16)).astype(np.int16)  # an int16 stack
    with mrcfile.new(tmp_path / "s.mrcs") as m:
        m.set_data(imgs)
        m.set_image_stack()
        m.voxel_size = 2.5
    assert cli("invert-contrast", tmp_path / "s.mrcs", "-o", tmp_path / "si.mrcs") == 0
    h = read_mrc_header(tmp_path / "si.mrcs")
    assert (h.shape, h.dtype, h.apix, h.is_stack) == ((7, 16, 16), np.float32, 2.5, True)
    np.testing.assert_array_equal(read_mrc(tmp_path / "si.mrcs")[0], -imgs.astype(np.float32))


def test_set_apix_mrc_keeps_data_and_header(tmp_path, rng):
    imgs = rng.integers(-300, 300, (5, 8, 8)).astype(np.int16)
    with mrcfile.new(tmp_path / "s.mrcs") as m:
        m.set_data(imgs)
        m.set_image_stack()
        m.voxel_size = 1.0
        m.header.origin = (1.0, 2.0, 3.0)
    assert cli("set-apix", tmp_path / "s.mrcs", "--apix", "1.34", "-o", tmp_path / "o.mrcs") == 0
    assert _header(tmp_path / "o.mrcs") == (pytest.approx(1.34), (1.0, 2.0, 3.0), 1, 0)
    src, out = (tmp_path / "s.mrcs").read_bytes(), (tmp_path / "o.mrcs").read_bytes()
    assert len(out) == len(src) and out[1024:] == src[1024:]  # the data byte for byte
    assert open_images(tmp_path / "o.mrcs").apix == pytest.approx(1.34)

    _map(tmp_path / "m.mrc", rng.standard_normal((8, 8, 8)).astype(np.float32))
    assert cli("set-apix", tmp_path / "m.mrc", "--apix", "0.85", "-o", tmp_path / "m2.mrc") == 0
    h = read_mrc_header(tmp_path / "m2.mrc")
    assert (h.apix, h.shape, h.origin, h.is_stack) == (pytest.approx(0.85), (8, 8, 8),
                                                       (3.0, -4.0, 5.5), False)


def _particles(tmp_path, rng, n, D=16, apix=1.5, name="p", kv=300.0):
    """A stack `name.mrcs` with a .star naming it (poses, shifts, CTF)."""
    folder = tmp_path / name
    folder.mkdir()
    imgs = rng.standard_normal((n, D, D)).astype(np.float32)
    write_mrc(folder / f"{name}.mrcs", imgs, apix=apix)
    ctf = np.tile(np.array([D, apix, 15000, 14000, 30, kv, 2.7, 0.1, 0], np.float32), (n, 1))
    star = make_star([f"{i + 1:06d}@{name}.mrcs" for i in range(n)], random_rotations(n, rng),
                     rng.uniform(-3, 3, (n, 2)), ctf, apix=apix)
    write_star(folder / f"{name}.star", star)
    return folder / f"{name}.star", imgs


def test_set_apix_star_keeps_pixel_shifts(tmp_path, rng):
    path, imgs = _particles(tmp_path, rng, 6)
    before = read_star(path)
    assert cli("set-apix", path, "--apix", "2.0", "-o", tmp_path / "o.star") == 0
    after = read_star(tmp_path / "o.star")
    np.testing.assert_allclose(star_apix(after), 2.0)
    np.testing.assert_array_equal(open_images(tmp_path / "o.star")[:], imgs)  # found from there
    np.testing.assert_allclose(star_poses(after)[1], star_poses(before)[1], atol=1e-4)
    np.testing.assert_allclose(star_ctf(after)[:, 2:], star_ctf(before)[:, 2:])
    # RELION 3.0: no optics table; the pixel size is rlnDetectorPixelSize at magnification 1e4
    old = before.particles.drop(columns=["rlnOriginXAngst", "rlnOriginYAngst", "rlnOpticsGroup"])
    old["rlnDetectorPixelSize"], old["rlnMagnification"] = 5.0, 50000.0
    from cryoscape.core.io.star import StarFile
    write_star(tmp_path / "v30.star", StarFile(old, None, 30000))
    assert cli("set-apix", tmp_path / "v30.star", "--apix", "1.25", "-o", tmp_path / "o30.star") == 0
    np.testing.assert_allclose(star_apix(read_star(tmp_path / "o30.star")), 1.25)


def test_random_subset(tmp_path, capsys):
    out = tmp_path / "sub.pkl"
    assert cli("random-subset", "30", "--of", "100", "-o", out, "--seed", "3") == 0
    sub, rest = load_index(out), load_index(tmp_path / "sub_complement.pkl")
    assert len(sub) == 30 and len(rest) == 70
    assert np.all(np.diff(sub) > 0) and np.all(np.diff(rest) > 0)
    assert not np.intersect1d(sub, rest).size
    np.testing.assert_array_equal(np.union1d(sub, rest), np.arange(100))
    assert cli("random-subset", "30", "--of", "100", "-o", tmp_path / "again.pkl",
               "--seed", "3") == 0
    np.testing.assert_array_equal(load_index(tmp_path / "again.pkl"), sub)
    assert cli("random-subset", "30", "--of", "100", "-o", tmp_path / "other.pkl",
               "--seed", "4") == 0
    assert not np.array_equal(load_index(tmp_path / "other.pkl"), sub)
    # a fraction, drawn from the particles an index selects
    save_index(tmp_path / "sel.pkl", np.arange(0, 400, 4))
    assert cli("random-subset", "0.25", "--of", tmp_path / "sel.pkl", "-o", tmp_path / "q.pkl",
               "--complement", tmp_path / "qc.pkl") == 0
    q, qc = load_index(tmp_path / "q.pkl"), load_index(tmp_path / "qc.pkl")
    assert len(q) == 25 and len(qc) == 75
    np.testing.assert_array_equal(np.union1d(q, qc), np.arange(0, 400, 4))
    # too many: an error, nothing written
    assert cli("random-subset", "101", "--of", "100", "-o", tmp_path / "x.pkl") == 1
    assert "cannot draw 101 particles out of 100" in capsys.readouterr().err
    assert not (tmp_path / "x.pkl").exists() and not (tmp_path / "x_complement.pkl").exists()


def test_random_subset_of_a_stack(tmp_path, rng):
    write_mrc(tmp_path / "s.mrcs", rng.standard_normal((9, 8, 8)).astype(np.float32))
    assert cli("random-subset", "4", "--of", tmp_path / "s.mrcs", "-o", tmp_path / "r.pkl") == 0
    r = load_index(tmp_path / "r.pkl")
    assert len(r) == 4 and r.max() < 9


def test_concat_stacks(tmp_path, rng, capsys):
    a = rng.standard_normal((5, 16, 16)).astype(np.float32)
    b = rng.standard_normal((3, 16, 16)).astype(np.float32)
    write_mrc(tmp_path / "a.mrcs", a, apix=1.2)
    write_mrc(tmp_path / "b.mrcs", b, apix=1.2)
    assert cli("concat", tmp_path / "a.mrcs", tmp_path / "b.mrcs", "-o", tmp_path / "ab.mrcs") == 0
    out, apix = read_mrc(tmp_path / "ab.mrcs")
    np.testing.assert_array_equal(out, np.concatenate([a, b]))
    assert apix == pytest.approx(1.2) and read_mrc_header(tmp_path / "ab.mrcs").is_stack
    capsys.readouterr()
    # mismatched box, then pixel size: errors naming the odd file, nothing written
    write_mrc(tmp_path / "c.mrcs", a[:, :8, :8], apix=1.2)
    write_mrc(tmp_path / "d.mrcs", a, apix=2.4)
    for odd, what in (("c.mrcs", "box size 8 px differs"), ("d.mrcs", "pixel size 2.4 A")):
        assert cli("concat", tmp_path / "a.mrcs", tmp_path / odd, "-o", tmp_path / "x.mrcs") == 1
        err = capsys.readouterr().err
        assert f"{odd}: {what}" in err and err.count("\n") == 1
    assert not (tmp_path / "x.mrcs").exists()
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".part")]


def test_concat_pickles(tmp_path, rng, capsys):
    R1, R2 = random_rotations(4, rng), random_rotations(3, rng)
    t1, t2 = rng.uniform(-2, 2, (4, 2)), rng.uniform(-2, 2, (3, 2))
    save_poses(tmp_path / "p1.pkl", R1, t1, D=32)
    save_poses(tmp_path / "p2.pkl", R2, t2, D=32)
    assert cli("concat", tmp_path / "p1.pkl", tmp_path / "p2.pkl", "-o", tmp_path / "p.pkl") == 0
    R, t = load_pickle(tmp_path / "p.pkl")
    np.testing.assert_array_equal(R, np.concatenate([load_pickle(tmp_path / "p1.pkl")[0],
                                                     load_pickle(tmp_path / "p2.pkl")[0]]))
    np.testing.assert_allclose(t * 32, -np.concatenate([t1, t2]), atol=1e-5)

    c1 = np.tile(np.array([32, 1.5, 1e4, 9e3, 10, 300, 2.7, 0.1, 0], np.float32), (4, 1))
    c2 = c1[:3] + np.array([0, 0, 500, 500, 0, 0, 0, 0, 0], np.float32)
    save_ctf(tmp_path / "c1.pkl", c1)
    save_ctf(tmp_path / "c2.pkl", c2)
    assert cli("concat", tmp_path / "c1.pkl", tmp_path / "c2.pkl", "-o", tmp_path / "c.pkl") == 0
    np.testing.assert_array_equal(load_ctf(tmp_path / "c.pkl"), np.concatenate([c1, c2]))

    mu1, lv1 = rng.standard_normal((4, 8)), rng.standard_normal((4, 8))
    mu2, lv2 = rng.standard_normal((3, 8)), rng.standard_normal((3, 8))
    save_pickle(tmp_path / "z1.pkl", mu1.astype(np.float32), lv1.astype(np.float32))
    save_pickle(tmp_path / "z2.pkl", mu2.astype(np.float32), lv2.astype(np.float32))
    assert cli("concat", tmp_path / "z1.pkl", tmp_path / "z2.pkl", "-o", tmp_path / "z.pkl") == 0
    mu, lv = load_pickles(tmp_path / "z.pkl")
    np.testing.assert_allclose(mu, np.concatenate([mu1, mu2]), rtol=1e-6)
    np.testing.assert_allclose(lv, np.concatenate([lv1, lv2]), rtol=1e-6)

    save_index(tmp_path / "i1.pkl", [1, 5, 7])
    save_index(tmp_path / "i2.pkl", [0, 5, 9])
    assert cli("concat", tmp_path / "i1.pkl", tmp_path / "i2.pkl", "-o", tmp_path / "i.pkl") == 0
    np.testing.assert_array_equal(load_index(tmp_path / "i.pkl"), [0, 1, 5, 7, 9])

    # kinds, pixel sizes and latent dimensions that do not match: one-line errors
    c3 = c1.copy()
    c3[:, 1] = 2.0
    save_ctf(tmp_path / "c3.pkl", c3)
    save_pickle(tmp_path / "z3.pkl", np.zeros((2, 4), np.float32), np.zeros((2, 4), np.float32))
    for a, b, msg in (("p1.pkl", "c1.pkl", "c1.pkl: holds ctf, "),
                      ("c1.pkl", "c3.pkl", "c3.pkl: pixel size 2 A differs"),
                      ("z1.pkl", "z3.pkl", "z3.pkl: holds latents of shape")):
        assert cli("concat", tmp_path / a, tmp_path / b, "-o", tmp_path / "bad.pkl") == 1
        assert msg in capsys.readouterr().err
    assert not (tmp_path / "bad.pkl").exists()


def test_concat_stars_merges_optics_and_finds_the_stacks(tmp_path, rng):
    s1, imgs1 = _particles(tmp_path, rng, 4, name="one")
    s2, imgs2 = _particles(tmp_path, rng, 3, name="two")
    s3, imgs3 = _particles(tmp_path, rng, 2, name="three", kv=200.0)
    out = tmp_path / "joined" / "all.star"
    assert cli("concat", s1, s2, s3, "-o", out) == 0
    star = read_star(out)
    assert len(star) == 9 and len(star.optics) == 2  # 300 kV groups merged, 200 kV apart
    np.testing.assert_array_equal(star.particles["rlnOpticsGroup"], [1] * 7 + [2] * 2)
    np.testing.assert_allclose(star_ctf(star)[:, 5], [300] * 7 + [200] * 2)
    np.testing.assert_array_equal(open_images(out)[:], np.concatenate([imgs1, imgs2, imgs3]))
    before = np.concatenate([star_poses(read_star(s))[0] for s in (s1, s2, s3)])
    np.testing.assert_allclose(star_poses(star)[0], before, atol=1e-5)


def test_concat_stars_refuses_another_pixel_size(tmp_path, rng, capsys):
    s1, _ = _particles(tmp_path, rng, 4, name="one")
    s2, _ = _particles(tmp_path, rng, 3, name="two", apix=2.0)
    assert cli("concat", s1, s2, "-o", tmp_path / "all.star") == 1
    assert "two.star: pixel size 2 A differs" in capsys.readouterr().err
    assert not (tmp_path / "all.star").exists()


def test_soft_mask_edge_has_the_requested_width():
    D, apix, dilate, edge = 32, 1.5, 3.0, 6.0
    inside = np.zeros((D, D, D), bool)
    inside[16, 16, 16] = True  # one voxel: the distance to it is known exactly
    m = soft_mask(inside, apix, dilate, edge)
    i = np.arange(D) - 16
    r = apix * np.sqrt(i[:, None, None] ** 2 + i[None, :, None] ** 2 + i[None, None, :] ** 2)
    expected = np.where(r <= dilate, 1.0, np.where(
        r >= dilate + edge, 0.0, 0.5 * (1 + np.cos(np.pi * (r - dilate) / edge))))
    np.testing.assert_allclose(m, expected, atol=1e-6)
    soft = (m > 0) & (m < 1)
    assert r[soft].min() > dilate and r[soft].max() < dilate + edge
    assert r[m == 1].max() <= dilate and r[m == 0].min() >= dilate + edge


def test_mask_command(tmp_path, rng, capsys):
    D, apix = 32, 2.0
    i = np.arange(D) - D // 2
    r = np.sqrt(i[:, None, None] ** 2 + i[None, :, None] ** 2 + i[None, None, :] ** 2)
    ball = r <= 6
    vol = (ball * 1.0 + 0.01 * rng.standard_normal((D, D, D))).astype(np.float32)
    _map(tmp_path / "map.mrc", vol, apix=apix)
    assert cli("mask", tmp_path / "map.mrc", "--threshold", "0.5", "--dilate", "4",
               "--soft-edge", "8", "-o", tmp_path / "mask.mrc") == 0
    mask = read_mrc(tmp_path / "mask.mrc")[0]
    assert _header(tmp_path / "mask.mrc") == (pytest.approx(apix), (3.0, -4.0, 5.5), 2, 1)
    assert mask.shape == (D, D, D) and mask.min() >= 0 and mask.max() <= 1
    # the ball's voxels lie within sqrt(3)/2 px of its sphere: margins of 1 px
    assert (mask[ball] == 1).all() and (mask[r <= 6 + 4 / apix - 1] == 1).all()
    assert (mask[r >= 6 + (4 + 8) / apix + 1] == 0).all()  # 0 beyond dilation + edge
    shell = (r > 6 + 4 / apix + 1) & (r < 6 + 12 / apix - 1)
    assert ((mask[shell] > 0) & (mask[shell] < 1)).all()
    # auto threshold: half the 99.99th percentile, so the ball again
    assert cli("mask", tmp_path / "map.mrc", "--dilate", "0", "--soft-edge", "0",
               "-o", tmp_path / "hard.mrc") == 0
    np.testing.assert_array_equal(read_mrc(tmp_path / "hard.mrc")[0], ball)
    assert cli("mask", tmp_path / "map.mrc", "--threshold", "5", "-o", tmp_path / "x.mrc") == 1
    assert "above the map's maximum" in capsys.readouterr().err
    assert not (tmp_path / "x.mrc").exists()


def test_mask_lowpass_ignores_a_hot_voxel(tmp_path):
    D = 32
    i = np.arange(D) - D // 2
    r = np.sqrt(i[:, None, None] ** 2 + i[None, :, None] ** 2 + i[None, None, :] ** 2)
    vol = (r <= 5).astype(np.float32)
    vol[3, 3, 3] = 3.0  # a lone hot voxel far from the molecule
    _map(tmp_path / "map.mrc", vol, apix=2.0)
    common = ("--threshold", "0.5", "--dilate", "0", "--soft-edge", "0")
    assert cli("mask", tmp_path / "map.mrc", *common, "-o", tmp_path / "raw.mrc") == 0
    assert cli("mask", tmp_path / "map.mrc", *common, "--lowpass", "10",
               "-o", tmp_path / "lp.mrc") == 0
    raw, lp = read_mrc(tmp_path / "raw.mrc")[0], read_mrc(tmp_path / "lp.mrc")[0]
    assert raw[3, 3, 3] == 1 and lp[3, 3, 3] == 0
    assert lp[r <= 3].all() and not lp[r >= 8].any()


@pytest.mark.parametrize("argv", [
    ("flip-hand", "{missing}.mrc", "-o", "{out}.mrc"),
    ("invert-contrast", "{missing}.mrcs", "-o", "{out}.mrcs"),
    ("set-apix", "{missing}.mrc", "--apix", "1.1", "-o", "{out}.mrc"),
    ("set-apix", "{missing}.star", "--apix", "1.1", "-o", "{out}.star"),
    ("random-subset", "3", "--of", "{missing}.star", "-o", "{out}.pkl"),
    ("concat", "{missing}.mrcs", "{missing}2.mrcs", "-o", "{out}.mrcs"),
    ("concat", "{missing}.pkl", "{missing}2.pkl", "-o", "{out}.pkl"),
    ("mask", "{missing}.mrc", "-o", "{out}.mrc"),
])
def test_missing_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv):
    args = [a.format(missing=tmp_path / "nope", out=tmp_path / "out") for a in argv]
    assert cli(*args) == 1
    err = capsys.readouterr().err
    assert "nope" in err and ("not found" in err or "No such file" in err)
    assert err.count("\n") == 1
    assert os.listdir(tmp_path) == []


def test_refusals(tmp_path, rng, capsys):
    vol = rng.standard_normal((8, 8, 8)).astype(np.float32)
    _map(tmp_path / "m.mrc", vol)
    write_mrc(tmp_path / "s.mrcs", vol)
    with pytest.raises(SystemExit):  # argparse: must be a positive number
        cli("set-apix", tmp_path / "m.mrc", "--apix", "-1", "-o", tmp_path / "o.mrc")
    assert "must be a positive number" in capsys.readouterr().err
    cases = [(("flip-hand", tmp_path / "s.mrcs", "-o", tmp_path / "o.mrc"),
              "s.mrcs: is an image stack (8 images), not a 3D map"),
             (("flip-hand", tmp_path / "m.mrc", "-o", tmp_path / "m.mrc"),
              "writing it would destroy the input"),
             (("set-apix", tmp_path / "m.mrc", "--apix", "2", "-o", tmp_path / "o.star"),
              "the output must be a MRC file"),
             (("concat", tmp_path / "s.mrcs", tmp_path / "m.pkl", "-o", tmp_path / "o.mrcs"),
              "m.pkl: is a pickle, "),
             (("random-subset", "0", "--of", "10", "-o", tmp_path / "o.pkl"),
              "subset size '0'")]
    for argv, msg in cases:
        assert cli(*argv) == 1
        assert msg in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["m.mrc", "s.mrcs"]
    np.testing.assert_array_equal(read_mrc(tmp_path / "m.mrc")[0], vol)


def test_real_relion31_star(tmp_path, fixtures_dir):
    star = fixtures_dir / "relion" / "relion31.star"
    out = tmp_path / "elsewhere" / "twice.star"
    assert cli("concat", star, star, "-o", out) == 0
    joined, one = read_star(out), read_star(star)
    assert len(joined) == 2 * len(one) and len(joined.optics) == 1
    images = open_images(star)[:]
    np.testing.assert_array_equal(open_images(out)[:], np.concatenate([images, images]))
    assert cli("set-apix", star, "--apix", "2.0", "-o", tmp_path / "a2.star") == 0
    a2 = read_star(tmp_path / "a2.star")
    np.testing.assert_allclose(star_apix(a2), 2.0)
    np.testing.assert_allclose(star_poses(a2)[1], star_poses(one)[1], atol=1e-4)
    np.testing.assert_array_equal(open_images(tmp_path / "a2.star")[:], images)
