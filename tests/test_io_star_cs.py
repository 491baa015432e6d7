"""RELION .star and cryoSPARC .cs: parity with cryoDRGN's parsers, optics groups, round trips,
passthrough joins and clear errors."""
from __future__ import annotations

import numpy as np
import pytest
from cryoscape.core.errors import InputFileError
from cryoscape.core.io import cs as C
from cryoscape.core.io import star as S
from cryoscape.core.io.pickles import load_pickle
from cryoscape.core.poses import shifts_to_cryodrgn
from cryoscape.core.rotations import random_rotations

PFCRT = "relion/FinalRefinement-OriginalParticles-PfCRT.star"
CSFILE = "cryosparc/cryosparc_P12_J24_001_particles.cs"


def _assert_poses(R, shifts, pkl, D):
    rot, trans = load_pickle(pkl)
    np.testing.assert_allclose(R, rot, atol=1e-5)
    np.testing.assert_allclose(shifts_to_cryodrgn(shifts, D), trans, atol=1e-5)


def test_parity_relion30(fixtures_dir):
    star = S.read_star(fixtures_dir / PFCRT)
    assert star.version == 30000 and star.optics is None and len(star) == 5
    _assert_poses(*S.star_poses(star, D=300), fixtures_dir / "relion/pose.star.pkl", 300)
    expected = load_pickle(fixtures_dir / "relion/ctf1.pkl")
    np.testing.assert_allclose(S.star_ctf(star, D=300, apix=1.035, w=0.1), expected, atol=1e-5)
    # the pixel size also follows from rlnDetectorPixelSize * 1e4 / rlnMagnification
    np.testing.assert_allclose(S.star_ctf(star, D=300, w=0.1), expected, atol=1e-5)


def test_parity_relion31(fixtures_dir):
    star = S.read_star(fixtures_dir / "relion/relion31.star")
    assert star.version == 30001 and len(star.optics) == 1
    _assert_poses(*S.star_poses(star), fixtures_dir / "relion/relion31.pose.pkl", 256)
    np.testing.assert_allclose(S.star_ctf(star),
                               load_pickle(fixtures_dir / "relion/relion31.ctf.pkl"), atol=1e-5)


def test_parity_cryosparc(fixtures_dir):
    arr = C.read_cs(fixtures_dir / CSFILE)
    assert len(arr) == 2019
    _assert_poses(*C.cs_poses(arr, D=180), fixtures_dir / "cryosparc/pose.cs.pkl", 180)
    np.testing.assert_allclose(C.cs_ctf(arr), load_pickle(fixtures_dir / "cryosparc/ctf2.pkl"),
                               atol=1e-5)


TWO_GROUPS = """
# version 50001

data_particles

loop_
_rlnImageName #1
_rlnAngleRot #2
_rlnAngleTilt #3
_rlnAnglePsi #4
_rlnOriginXAngst #5
_rlnOriginYAngst #6
_rlnDefocusU #7
_rlnDefocusV #8
_rlnDefocusAngle #9
_rlnOpticsGroup #10
000001@a.mrcs 10.0 20.0 30.0 2.0 -4.0 10000.0 9000.0 45.0 2
000002@a.mrcs 11.0 21.0 31.0 1.0 1.0 12000.0 11000.0 40.0 1
000003@a.mrcs 12.0 22.0 32.0 -1.0 3.0 14000.0 13000.0 35.0 2

data_optics

loop_
_rlnOpticsGroup #1
_rlnOpticsGroupName #2
_rlnAmplitudeContrast #3
_rlnSphericalAberration #4
_rlnVoltage #5
_rlnImagePixelSize #6
_rlnImageSize #7
_rlnImageDimensionality #8
1 og1 0.07 2.7 300.0 1.0 64 2
2 og2 0.10 0.01 200.0 2.0 64 2
"""


def test_optics_after_particles_several_groups(tmp_path):
    (tmp_path / "g.star").write_text(TWO_GROUPS)
    star = S.read_star(tmp_path / "g.star")
    assert star.version == 50001 and len(star) == 3 and len(star.optics) == 2
    np.testing.assert_allclose(S.star_apix(star), [2.0, 1.0, 2.0])
    ctf = S.star_ctf(star)
    np.testing.assert_allclose(ctf[:, 5], [200, 300, 200])
    np.testing.assert_allclose(ctf[:, 6], [0.01, 2.7, 0.01])
    np.testing.assert_allclose(ctf[:, 7], [0.10, 0.07, 0.10])
    _, shifts = S.star_poses(star)
    np.testing.assert_allclose(shifts, [[-1.0, 2.0], [-1.0, -1.0], [0.5, -1.5]], atol=1e-6)
    # overrides win over the file (as cryoDRGN's --kv/--cs/-w)
    np.testing.assert_allclose(S.star_ctf(star, kv=120, w=0.2)[:, [5, 7]], [[120, 0.2]] * 3)


def test_missing_ctf_columns(tmp_path, fixtures_dir):
    star = S.read_star(fixtures_dir / "relion/relion31.star")
    star.particles = star.particles.drop(columns=["rlnDefocusV"])
    with pytest.raises(InputFileError, match="relion31.star: missing CTF column.*rlnDefocusV"):
        S.star_ctf(star)
    star30 = S.read_star(fixtures_dir / PFCRT)
    with pytest.raises(InputFileError, match="PfCRT.star: missing CTF column rlnAmplitude.*-w"):
        S.star_ctf(star30, D=300)
    with pytest.raises(InputFileError, match="box size unknown.*-D"):
        S.star_ctf(star30, w=0.1)
    arr = C.read_cs(fixtures_dir / CSFILE)
    no_ctf = arr[[n for n in arr.dtype.names if not n.startswith("ctf/")]]
    with pytest.raises(InputFileError, match="x.cs: missing CTF field"):
        C.cs_ctf(no_ctf, path="x.cs")


def test_star_roundtrip_arrays(tmp_path, fixtures_dir):
    star = S.read_star(fixtures_dir / "relion/relion31.star")
    R, shifts = S.star_poses(star)
    ctf = S.star_ctf(star)
    # arrays -> a new star -> arrays
    new = S.make_star(star.particles["rlnImageName"], R, shifts, ctf)
    S.write_star(tmp_path / "new.star", new)
    back = S.read_star(tmp_path / "new.star")
    R2, s2 = S.star_poses(back)
    np.testing.assert_allclose(R2, R, atol=1e-5)
    np.testing.assert_allclose(s2, shifts, atol=1e-5)
    np.testing.assert_allclose(S.star_ctf(back), ctf, rtol=1e-6, atol=1e-5)
    # poses written back into the original keep every other column
    upd = S.set_star_poses(star, R, shifts)
    S.write_star(tmp_path / "upd.star", upd)
    back = S.read_star(tmp_path / "upd.star")
    assert list(back.particles.columns) == list(star.particles.columns)
    np.testing.assert_allclose(S.star_poses(back)[0], R, atol=1e-5)
    np.testing.assert_allclose(S.star_poses(back)[1], shifts, atol=1e-5)


def test_subset_star_keeps_columns_and_optics(tmp_path):
    (tmp_path / "g.star").write_text(TWO_GROUPS)
    star = S.read_star(tmp_path / "g.star")
    S.write_star(tmp_path / "sub.star", S.subset_star(star, [2, 0]))
    sub = S.read_star(tmp_path / "sub.star")
    assert list(sub.particles.columns) == list(star.particles.columns)
    assert sub.particles["rlnImageName"].tolist() == ["000003@a.mrcs", "000001@a.mrcs"]
    assert sub.optics.equals(star.optics)
    np.testing.assert_allclose(S.star_ctf(sub), S.star_ctf(star)[[2, 0]], atol=1e-6)


def test_relion30_roundtrip_keeps_pixel_origins(tmp_path, fixtures_dir, rng):
    star = S.read_star(fixtures_dir / PFCRT)
    R = random_rotations(5, rng)
    shifts = rng.uniform(-5, 5, (5, 2)).astype(np.float32)
    S.write_star(tmp_path / "o.star", S.set_star_poses(star, R, shifts))
    back = S.read_star(tmp_path / "o.star")
    assert back.optics is None and "rlnOriginXAngst" not in back.particles.columns
    R2, s2 = S.star_poses(back)
    np.testing.assert_allclose(R2, R, atol=1e-5)
    np.testing.assert_allclose(s2, shifts, atol=1e-5)


def test_cs_roundtrip(tmp_path, fixtures_dir, rng):
    arr = C.read_cs(fixtures_dir / CSFILE)
    R, shifts = C.cs_poses(arr)
    ctf = C.cs_ctf(arr)
    sub = C.subset_cs(arr, [5, 1, 7])
    C.write_cs(tmp_path / "sub.cs", sub)
    back = C.read_cs(tmp_path / "sub.cs")
    assert back.dtype == arr.dtype and np.array_equal(back, arr[[5, 1, 7]])
    np.testing.assert_allclose(C.cs_ctf(back), ctf[[5, 1, 7]])
    R_new = random_rotations(len(arr), rng)
    s_new = rng.uniform(-4, 4, (len(arr), 2)).astype(np.float32)
    C.write_cs(tmp_path / "new.cs", C.set_cs_poses(arr, R_new, s_new))
    R2, s2 = C.cs_poses(C.read_cs(tmp_path / "new.cs"))
    np.testing.assert_allclose(R2, R_new, atol=1e-5)
    np.testing.assert_allclose(s2, s_new, atol=1e-5)
    np.testing.assert_allclose(C.cs_poses(arr)[0], R)
    assert shifts.shape == (len(arr), 2)


def test_cs_passthrough_join(tmp_path, fixtures_dir):
    arr = C.read_cs(fixtures_dir / CSFILE)
    main = arr[["uid"] + [n for n in arr.dtype.names if n.startswith("alignments3D/")]]
    passthrough = arr[["uid"] + [n for n in arr.dtype.names
                                 if n.startswith(("blob/", "ctf/"))]][::-1]
    C.write_cs(tmp_path / "J24_particles.cs", np.ascontiguousarray(main))
    C.write_cs(tmp_path / "J24_passthrough_particles.cs", np.ascontiguousarray(passthrough))
    joined = C.read_cs(tmp_path / "J24_particles.cs")  # found beside it
    for n in arr.dtype.names:
        assert np.array_equal(joined[n], arr[n]), n
    np.testing.assert_allclose(C.cs_ctf(joined), C.cs_ctf(arr))
    alone = C.read_cs(tmp_path / "J24_particles.cs", passthrough=False)
    with pytest.raises(InputFileError, match="missing CTF"):
        C.cs_ctf(alone, path="J24_particles.cs")
    C.write_cs(tmp_path / "short.cs", np.ascontiguousarray(passthrough[:10]))
    with pytest.raises(InputFileError, match="short.cs: the passthrough file lacks"):
        C.read_cs(tmp_path / "J24_particles.cs", passthrough=tmp_path / "short.cs")


def test_cs_without_alignments(tmp_path, fixtures_dir):
    arr = C.read_cs(fixtures_dir / CSFILE)
    C.write_cs(tmp_path / "noalign.cs",
               np.ascontiguousarray(arr[[n for n in arr.dtype.names
                                         if not n.startswith("alignments")]]))
    with pytest.raises(InputFileError, match="noalign.cs: no poses.*alignments3D/pose"):
        C.cs_poses(C.read_cs(tmp_path / "noalign.cs"), path=tmp_path / "noalign.cs")


def test_bad_star_and_cs_files(tmp_path):
    (tmp_path / "x.star").write_text("data_\nloop_\n_rlnFoo #1\n_rlnBar #2\n1 2 3\nnonsense\n")
    (tmp_path / "x.cs").write_bytes(b"garbage" * 50)
    with pytest.raises(InputFileError, match="x.cs: not a readable cryoSPARC"):
        C.read_cs(tmp_path / "x.cs")
    with pytest.raises(InputFileError, match="x.star: not a readable STAR file"):
        S.read_star(tmp_path / "x.star")
    (tmp_path / "y.star").write_text("hello\n")
    with pytest.raises(InputFileError, match="y.star: no particle table"):
        S.read_star(tmp_path / "y.star")
    with pytest.raises(InputFileError, match="missing.star: file not found"):
        S.read_star(tmp_path / "missing.star")


STAR_TEXTS = {
    "relion30": "\ndata_\n\nloop_\n_rlnImageName #1\n_rlnAngleRot #2\n_rlnDefocusU #3\n"
                "000001@a.mrcs 10.5 12000\n000002@a.mrcs -3 13000\n",
    "blocks": "# version 30001\n\ndata_general\n\n_rlnFinalResolution   3.2\n_rlnName 'a b'\n"
              "\n# version 30001\n\ndata_optics\n\nloop_\n_rlnOpticsGroup #1\n"
              "_rlnOpticsGroupName #2\n1 opticsGroup1\n2 opticsGroup2\n\n\n# version 30001\n\n"
              "data_particles\n\nloop_ \n_rlnImageName #1\n_rlnOpticsGroup #2\n_rlnClassName #3\n"
              "1@x.mrcs 1 'class one'\n# a comment\n2@x.mrcs 2 'class two'\n\n",
    "crlf": "data_particles\r\n\r\nloop_\r\n_rlnImageName #1\r\n_rlnAngleTilt #2\r\n"
            "1@x.mrcs 5.0\r\n2@x.mrcs nan\r\n",
}


@pytest.mark.parametrize("name", sorted(STAR_TEXTS))
def test_star_blocks_read_as_starfile_reads_them(name, tmp_path):
    """The reader behind read_star (pandas reads a loop's rows at once) gives starfile.read's
    blocks: names, pairs, columns, values and their types."""
    import pandas as pd
    import starfile
    path = tmp_path / f"{name}.star"
    path.write_bytes(STAR_TEXTS[name].encode())
    want, got = starfile.read(path, always_dict=True), S._read_blocks(str(path))
    assert list(got) == list(want)
    for k, v in want.items():
        if isinstance(v, pd.DataFrame):
            pd.testing.assert_frame_equal(got[k], v)
        else:
            assert got[k] == v
