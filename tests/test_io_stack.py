"""Image sources (.mrcs, .txt, .star, .cs; lazy and eager) and load_particles."""
from __future__ import annotations

import numpy as np
import pytest
from cryoscape.core.errors import InputFileError
from cryoscape.core.io import cryodrgn
from cryoscape.core.io import cs as C
from cryoscape.core.io import star as S
from cryoscape.core.io.mrc import write_mrc
from cryoscape.core.io.particles import load_particles, read_metadata
from cryoscape.core.io.stack import ImageSource, open_images
from cryoscape.core.rotations import random_rotations


@pytest.fixture
def two_stacks(tmp_path, rng):
    """Two stacks a.mrcs (4 images) and b.mrcs (3) of 8x8 with known content."""
    a = rng.standard_normal((4, 8, 8)).astype(np.float32)
    b = rng.standard_normal((3, 8, 8)).astype(np.float32)
    write_mrc(tmp_path / "stacks" / "a.mrcs", a, apix=1.5)
    write_mrc(tmp_path / "stacks" / "b.mrcs", b, apix=1.5)
    return tmp_path, np.concatenate([a, b])


@pytest.mark.parametrize("lazy", [True, False])
def test_txt_list(two_stacks, lazy):
    root, imgs = two_stacks
    (root / "stacks" / "all.txt").write_text("a.mrcs\n\nb.mrcs\n")
    src = open_images(root / "stacks" / "all.txt", lazy=lazy)
    assert len(src) == 7 and src.D == 8 and src.apix == 1.5
    np.testing.assert_array_equal(src[:], imgs)
    np.testing.assert_array_equal(src[[6, 0, 4]], imgs[[6, 0, 4]])
    np.testing.assert_array_equal(src[-1], imgs[-1:])
    np.testing.assert_array_equal(src.subset([5, 2])[:], imgs[[5, 2]])
    np.testing.assert_array_equal(np.concatenate([c for _, c in src.chunks(3)]), imgs)


def _star(names, apix=1.5, D=8):
    return S.make_star(names, random_rotations(len(names), np.random.default_rng(1)),
                       np.zeros((len(names), 2)), None, apix=apix, D=D)


def test_star_images_datadir_and_relative(two_stacks):
    root, imgs = two_stacks
    names = ["000002@Extract/job1/b.mrcs", "000004@Extract/job1/a.mrcs", "000001@a.mrcs"]
    S.write_star(root / "meta" / "p.star", _star(names))
    with pytest.raises(InputFileError, match=r"p.star: image stack 'Extract/job1/b.mrcs' not "
                                             r"found.*--datadir"):
        open_images(root / "meta" / "p.star")
    src = open_images(root / "meta" / "p.star", datadir=root / "stacks", lazy=True)
    np.testing.assert_array_equal(src[:], imgs[[5, 3, 0]])
    # relative to the star file's own folder
    S.write_star(root / "stacks" / "q.star", _star(["000003@a.mrcs", "000001@b.mrcs"]))
    np.testing.assert_array_equal(open_images(root / "stacks" / "q.star")[:], imgs[[2, 4]])


def test_relion_project_layout(tmp_path, rng):
    """Names relative to the project root resolve from a star file in a job folder."""
    imgs = rng.standard_normal((3, 8, 8)).astype(np.float32)
    write_mrc(tmp_path / "Extract" / "job005" / "mic1.mrcs", imgs)
    job = tmp_path / "Refine3D" / "job010"
    S.write_star(job / "run_data.star", _star(["000003@Extract/job005/mic1.mrcs"]))
    np.testing.assert_array_equal(open_images(job / "run_data.star")[:], imgs[2:])


def test_star_count_and_box_mismatch(two_stacks):
    root, _ = two_stacks
    S.write_star(root / "stacks" / "over.star", _star(["000001@a.mrcs", "000005@a.mrcs"]))
    with pytest.raises(InputFileError, match=r"over.star: particle 1 refers to image 5 of "
                                             r".*a.mrcs, which holds only 4"):
        open_images(root / "stacks" / "over.star")
    S.write_star(root / "stacks" / "box.star", _star(["000001@a.mrcs"], D=16))
    with pytest.raises(InputFileError, match="box.star: box size 16 stated.*8 x 8"):
        open_images(root / "stacks" / "box.star")


@pytest.mark.filterwarnings("ignore:Data array contains NaN")
def test_nan_images(tmp_path, rng):
    imgs = rng.standard_normal((6, 8, 8)).astype(np.float32)
    imgs[3, 2, 5] = np.nan
    write_mrc(tmp_path / "nan.mrcs", imgs)
    src = open_images(tmp_path / "nan.mrcs", lazy=True)
    np.testing.assert_array_equal(src[:3], imgs[:3])  # clean images still read
    with pytest.raises(InputFileError, match=r"nan.mrcs: image 4 \(1-based; particle 3\) "
                                             r"contains NaN"):
        src[2:5]
    with pytest.raises(InputFileError, match="nan.mrcs: image 4"):
        open_images(tmp_path / "nan.mrcs", lazy=False)


def test_relion31_star_images(fixtures_dir):
    src = open_images(fixtures_dir / "relion/relion31.star", lazy=True)
    direct = open_images(fixtures_dir / "relion/relion31.mrcs")
    assert len(src) == 5 and src.D == 256 and src.apix == pytest.approx(2.806)
    np.testing.assert_array_equal(src[:], direct[:])


def test_cs_images_job_prefix(tmp_path, fixtures_dir, rng):
    arr = C.read_cs(fixtures_dir / "cryosparc/cryosparc_P12_J24_001_particles.cs")[:6].copy()
    imgs = rng.standard_normal((3, 8, 8)).astype(np.float32)
    write_mrc(tmp_path / "p1.mrc", imgs, apix=2.95)
    arr["blob/path"] = b"J19/extract/p1.mrc"
    arr["blob/idx"] = [2, 0, 1, 2, 0, 1]
    arr["blob/shape"] = 8
    C.write_cs(tmp_path / "P12_J24_particles.cs", arr)
    src = open_images(tmp_path / "P12_J24_particles.cs", lazy=True)
    np.testing.assert_array_equal(src[:], imgs[[2, 0, 1, 2, 0, 1]])
    p = load_particles(tmp_path / "P12_J24_particles.cs", ind=[1, 3])
    assert p.D == 8 and p.apix == pytest.approx(2.95) and p.ctf.shape == (2, 9)
    np.testing.assert_allclose(p.rotations, C.cs_poses(arr)[0][[1, 3]])
    np.testing.assert_array_equal(p.images[:], imgs[[0, 2]])
    assert p.metadata["blob/idx"].tolist() == [0, 2]
    meta = read_metadata(tmp_path / "P12_J24_particles.cs")   # what the explorer colours by
    assert len(meta) == 6 and meta["blob/idx"].tolist() == [2, 0, 1, 2, 0, 1]
    np.testing.assert_array_equal(meta["alignments3D/pose[1]"], arr["alignments3D/pose"][:, 1])
    assert set(meta["blob/path"]) == {"J19/extract/p1.mrc"}
    assert read_metadata(tmp_path / "p1.mrc") is None


def test_load_particles_star_and_pickles(fixtures_dir, tmp_path):
    p = load_particles(fixtures_dir / "relion/relion31.star")
    R, shifts = S.star_poses(S.read_star(fixtures_dir / "relion/relion31.star"))
    np.testing.assert_allclose(p.rotations, R)
    np.testing.assert_allclose(p.shifts, shifts)
    assert p.ctf.shape == (5, 9) and p.apix == pytest.approx(2.806) and len(p.metadata) == 5
    hand = fixtures_dir / "hand"
    q = load_particles(hand / "hand_shifted.mrcs", poses=hand / "hand_shifted_pose.pkl",
                       ind=[3, 1], lazy=True)
    np.testing.assert_allclose(q.shifts, np.load(hand / "hand_shifted_px.npy")[[3, 1]],
                               atol=1e-5)
    with pytest.raises(InputFileError, match="hand.mrcs: no poses"):
        load_particles(hand / "hand.mrcs", need_poses=True)
    cryodrgn.save_poses(tmp_path / "short.pkl", random_rotations(3, np.random.default_rng(0)))
    with pytest.raises(InputFileError, match="short.pkl: holds poses for 3 particles, but "
                                             "the images number 100"):
        load_particles(hand / "hand.mrcs", poses=tmp_path / "short.pkl")


def test_from_array():
    a = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    src = ImageSource.from_array(a, apix=3.0)
    assert len(src) == 2 and src.D == 4 and src.apix == 3.0
    np.testing.assert_array_equal(src.subset([1])[:], a[1:])


def test_lazy_source_pickles_without_data(two_stacks):
    import pickle
    root, imgs = two_stacks
    (root / "stacks" / "all.txt").write_text("a.mrcs\nb.mrcs\n")
    src = open_images(root / "stacks" / "all.txt", lazy=True)
    src[:]  # maps opened
    blob = pickle.dumps(src)
    assert len(blob) < imgs.nbytes / 2  # no image data travels
    np.testing.assert_array_equal(pickle.loads(blob)[[6, 1]], imgs[[6, 1]])


def test_ctf_pickle_for_downsampled_images(tmp_path, fixtures_dir, rng):
    """A CTF pickle of the original box keeps the physical pixel size for smaller images, and
    says so."""
    from cryoscape.core.errors import CryoscapeWarning

    write_mrc(tmp_path / "small.mrcs", rng.standard_normal((5, 64, 64)))
    with pytest.warns(CryoscapeWarning, match=r"for a 256 px box at 2.806 A/px, the images are "
                                              r"64 px: their pixel size is taken as 11.22 A/px"):
        p = load_particles(tmp_path / "small.mrcs", ctf=fixtures_dir / "relion/relion31.ctf.pkl")
    np.testing.assert_allclose(p.ctf[:, 0], 64)
    np.testing.assert_allclose(p.ctf[:, 1], 2.806 * 4, rtol=1e-6)
    assert p.apix == pytest.approx(2.806 * 4) and p.images.apix == pytest.approx(2.806 * 4)
    with pytest.raises(InputFileError, match=r"small.mrcs: the index selects particle 5, but "
                                             r"there are 5"):
        load_particles(tmp_path / "small.mrcs", ind=[0, 5])


@pytest.fixture
def three_stacks(tmp_path, rng):
    """Stacks s0 (5 images, float32), s1 (7, big-endian int16 with an extended header) and
    s2 (4, float32) of 8x8, listed in all.txt; returns (folder, all images in order)."""
    import mrcfile
    parts = [rng.standard_normal((5, 8, 8)).astype(np.float32),
             rng.integers(-500, 500, (7, 8, 8)).astype(">i2"),
             rng.standard_normal((4, 8, 8)).astype(np.float32)]
    write_mrc(tmp_path / "s0.mrcs", parts[0])
    with mrcfile.new(tmp_path / "s1.mrcs") as m:
        m.set_data(parts[1])
        m.set_extended_header(np.zeros(30, dtype=[("x", "<f4")]))
    write_mrc(tmp_path / "s2.mrcs", parts[2])
    (tmp_path / "all.txt").write_text("s0.mrcs\ns1.mrcs\ns2.mrcs\n")
    return tmp_path, np.concatenate([p.astype(np.float32) for p in parts])


def test_lazy_reads_equal_eager_across_stacks(three_stacks, rng, monkeypatch):
    from cryoscape.core.io import stack
    root, imgs = three_stacks
    n = len(imgs)
    order = rng.permutation(n)  # particles scattered over the stacks, as in a .star
    first = np.array([0, 5, 12])  # each stack's first particle in all.txt
    f = np.searchsorted(first, order, side="right") - 1
    S.write_star(root / "p.star", _star([f"{i - first[s] + 1:06d}@s{s}.mrcs"
                                         for i, s in zip(order, f)]))
    picks = [slice(None), slice(3, 14), slice(11, 4, -1), [15, 0, 7, 7, 3, 12, 5],
             rng.integers(0, n, 40), np.arange(n) % 3 == 1, 9]
    for path, truth in ((root / "all.txt", imgs), (root / "p.star", imgs[order])):
        lazy, eager = open_images(path, lazy=True), open_images(path)
        assert lazy._array is None and eager._array is not None
        for idx in picks:
            np.testing.assert_array_equal(lazy[idx], eager[idx])
            np.testing.assert_array_equal(lazy[idx], truth[idx].reshape(-1, 8, 8))
    monkeypatch.setattr(stack, "MAX_READ", 3 * 8 * 8 * 4)  # runs split into several reads
    np.testing.assert_array_equal(open_images(root / "all.txt")[:], imgs)
    np.testing.assert_array_equal(open_images(root / "all.txt", lazy=True)[2:15], imgs[2:15])


def test_lazy_stack_truncated_after_opening(three_stacks):
    root, imgs = three_stacks
    src = open_images(root / "all.txt", lazy=True)
    size = (root / "s2.mrcs").stat().st_size
    with open(root / "s2.mrcs", "r+b") as f:
        f.truncate(size - 8 * 8 * 4 - 10)
    np.testing.assert_array_equal(src[:13], imgs[:13])
    with pytest.raises(InputFileError, match=r"s2.mrcs: truncated MRC file"):
        src[[0, 15]]
    with pytest.raises(InputFileError, match=r"s2.mrcs: truncated MRC file: header declares"):
        open_images(root / "all.txt", lazy=True)
    (root / "s0.mrcs").unlink()
    with pytest.raises(InputFileError, match=r"s0.mrcs: cannot read the stack"):
        src[[0]]
