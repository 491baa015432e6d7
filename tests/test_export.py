"""Exports: volume series + ChimeraX script, particle subsets (pkl, star, cs+csg, mrcs) and the
backprojection of a selection into half maps."""
from __future__ import annotations

import re
import shlex

import numpy as np
import pytest
import yaml
from cryoscape.core import export
from cryoscape.core.errors import CryoscapeError, InputFileError


def cxc_files(cxc_path):
    """File names a .cxc script opens (every 'open' line, options after the names dropped)."""
    names = []
    for line in cxc_path.read_text().splitlines():
        if line.startswith("open "):
            words = shlex.split(line)[1:]
            names += [w for w in words if w.endswith(".mrc")]
    return names


def test_volume_series_and_cxc(tmp_path, rng):
    from cryoscape.core.io.mrc import read_mrc

    D = 16
    x = np.linspace(-1, 1, D)
    zz, yy, xx = np.meshgrid(x, x, x, indexing="ij")
    vols = np.stack([np.exp(-((xx - c) ** 2 + yy**2 + zz**2) / 0.1) for c in (-0.3, 0, 0.3)])
    series = export.write_volume_series(vols.astype(np.float32), tmp_path / "maps", apix=2.5)
    assert [p.name for p in series.paths] == ["vol_000.mrc", "vol_001.mrc", "vol_002.mrc"]
    names = cxc_files(series.cxc)
    assert names == ["vol_000.mrc", "vol_001.mrc", "vol_002.mrc"]
    assert all((series.cxc.parent / n).is_file() for n in names)
    text = series.cxc.read_text()
    assert re.search(r"^open .* vseries true$", text, re.MULTILINE)
    assert re.search(r"^vseries play #1 loop true direction oscillate maxFrameRate \d", text, re.MULTILINE)
    level = float(re.search(r"^volume #1 style surface level (\S+) color \S+$", text,
                            re.MULTILINE).group(1))
    assert 0 < level < vols.max()  # a level that cuts through the blob
    assert level == pytest.approx(series.level, rel=1e-5)
    vol, apix = read_mrc(series.paths[1])
    np.testing.assert_allclose(vol, vols[1], rtol=1e-6)
    assert apix == pytest.approx(2.5)
    # a single map opens plainly, without vseries or play
    one = export.write_volume_series(vols[:1], tmp_path / "one", apix=1.0, prefix="map_")
    assert "vseries" not in one.cxc.read_text() and cxc_files(one.cxc) == ["map_000.mrc"]
    with pytest.raises(CryoscapeError, match="not 3D"):
        export.write_volume_series(np.zeros((2, 4, 4)), tmp_path / "bad", apix=1.0)


def test_index_pickle(tmp_path):
    from cryoscape.core.io.cryodrgn import load_index

    export.export_index(tmp_path / "sel.pkl", np.array([5, 1, 3]))
    np.testing.assert_array_equal(load_index(tmp_path / "sel.pkl"), [5, 1, 3])


def test_filtered_star_keeps_rows_columns_optics(fixtures_dir, tmp_path):
    from cryoscape.core.io.star import read_star

    src = fixtures_dir / "relion/relion31.star"
    full = read_star(src)
    ind = np.array([4, 0, 2])
    out = export.export_star(src, ind, tmp_path / "sub.star")
    sub = read_star(out)
    assert list(sub.particles.columns) == list(full.particles.columns)
    assert len(sub.particles) == 3
    for col in full.particles.columns:
        a, b = sub.particles[col].to_numpy(), full.particles[col].to_numpy()[ind]
        if a.dtype.kind == "f":
            np.testing.assert_allclose(a, b, rtol=1e-6, err_msg=col)
        else:
            np.testing.assert_array_equal(a, b, err_msg=col)
    assert sub.optics.equals(full.optics) or np.all(
        sub.optics.astype(str).to_numpy() == full.optics.astype(str).to_numpy())
    assert sub.version == full.version
    # with cluster labels as rlnClassNumber (1-based) and images re-pointed at a new stack
    labels = np.array([0, 1, 2, 1, 0])
    stack = export.export_mrcs(src, ind, tmp_path / "stacks/sub.mrcs")
    out2 = export.export_star(src, ind, tmp_path / "sub2.star", labels=labels[ind],
                              image_stack=stack)
    sub2 = read_star(out2)
    np.testing.assert_array_equal(sub2.particles["rlnClassNumber"], [1, 1, 3])
    assert list(sub2.particles["rlnImageName"]) == [f"{i:06d}@stacks/sub.mrcs" for i in (1, 2, 3)]
    from cryoscape.core.io.particles import load_particles

    a = load_particles(out2).images[:]
    b = load_particles(src).images[ind]
    np.testing.assert_array_equal(a, b)
    with pytest.raises(InputFileError, match="beyond its 5 rows"):
        export.export_star(src, [7], tmp_path / "x.star")


def test_cs_subset_keeps_dtype_and_csg(fixtures_dir, tmp_path):
    src = fixtures_dir / "cryosparc/cryosparc_P12_J24_001_particles.cs"
    arr = np.load(src, allow_pickle=False)
    ind = np.arange(0, len(arr), 7)
    out, csg = export.export_cs(src, ind, tmp_path / "subset.cs")
    sub = np.load(out, allow_pickle=False)
    assert sub.dtype == arr.dtype and sub.dtype.names == arr.dtype.names
    assert sub.tobytes() == arr[ind].tobytes()
    doc = yaml.safe_load(csg.read_text())
    assert doc["group"]["type"] == "particle"
    prefixes = {n.split("/")[0] for n in arr.dtype.names if "/" in n}
    assert set(doc["results"]) == prefixes
    for name, res in doc["results"].items():
        assert res == {"metafile": ">subset.cs", "num_items": len(ind), "type": f"particle.{name}"}


def test_mrcs_subset(fixtures_dir, tmp_path):
    from cryoscape.core.io.mrc import read_mrc

    src = fixtures_dir / "hand/hand.mrcs"
    full, apix = read_mrc(src)
    ind = np.array([10, 3, 99])
    out = export.export_mrcs(src, ind, tmp_path / "s.mrcs", chunk=2)
    got, apix2 = read_mrc(out)
    np.testing.assert_array_equal(got, full[ind])
    assert apix2 == pytest.approx(apix)


def test_reconstruct_selection_half_map_fsc(fixtures_dir, tmp_path):
    from cryoscape.core.io.mrc import read_mrc
    from cryoscape.core.io.particles import load_particles
    from cryoscape.core.metrics import fsc

    parts = load_particles(fixtures_dir / "hand/hand.mrcs", poses=fixtures_dir / "hand/hand_rot.pkl")
    ind = np.arange(0, 100, 2)  # 50 of the 100 views
    rec = export.reconstruct_selection(parts, ind, tmp_path / "bp")
    for name in ("selection.mrc", "selection_half1.mrc", "selection_half2.mrc",
                 "selection_fsc.txt", "selection_fsc.png"):
        assert (tmp_path / "bp" / name).is_file(), name
    _freq, curve = rec.fsc
    assert rec.n_images == 50
    assert curve[1:len(curve) // 2].min() > 0.8  # noiseless views: halves agree well
    table = np.loadtxt(tmp_path / "bp/selection_fsc.txt", skiprows=1)   # cryoDRGN's layout
    np.testing.assert_allclose(table, np.stack([_freq, curve], 1), atol=1e-6)
    # the selection's map is the hand: it agrees with cryoDRGN's backprojection of all views
    # (whose contrast is inverted: cryoDRGN's backproject_voxel inverts the data by default)
    ref, _ = read_mrc(fixtures_dir / "hand/hand-bp.mrc")
    vol, _ = read_mrc(tmp_path / "bp/selection.mrc")
    _, f = fsc(vol, ref)
    assert np.abs(f[1:len(f) // 2]).min() > 0.8
    with pytest.raises(CryoscapeError, match="at least 2"):
        export.reconstruct_selection(parts, [3], tmp_path / "bp1")


def test_filtered_star_relion30_single_table(fixtures_dir, tmp_path):
    from cryoscape.core.io.star import read_star

    src = fixtures_dir / "relion/FinalRefinement-OriginalParticles-PfCRT.star"
    full = read_star(src)
    ind = np.arange(len(full.particles))[::-3]
    sub = read_star(export.export_star(src, ind, tmp_path / "sub.star",
                                       labels=ind % 3))
    assert sub.optics is None and full.optics is None
    assert list(sub.particles.columns) == list(full.particles.columns) + (
        [] if "rlnClassNumber" in full.particles.columns else ["rlnClassNumber"])
    np.testing.assert_array_equal(sub.particles["rlnImageName"],
                                  full.particles["rlnImageName"].to_numpy()[ind])
    np.testing.assert_array_equal(sub.particles["rlnClassNumber"], ind % 3 + 1)
    np.testing.assert_allclose(sub.particles["rlnAngleRot"],
                               full.particles["rlnAngleRot"].to_numpy()[ind], rtol=1e-6)


def test_cs_subset_with_passthrough(fixtures_dir, tmp_path):
    """cryoSPARC splits fields across particles.cs and passthrough_particles.cs (joined by uid):
    both are filtered to the same particles and the .csg points at each for its fields."""
    src = np.load(fixtures_dir / "cryosparc/cryosparc_P12_J24_001_particles.cs",
                  allow_pickle=False)
    main_fields = ["uid"] + [n for n in src.dtype.names if n.startswith("alignments3D/")]
    pass_fields = ["uid"] + [n for n in src.dtype.names if n.startswith(("blob/", "ctf/"))]
    job = tmp_path / "J24"
    job.mkdir()
    main = np.ascontiguousarray(src[main_fields])
    shuffled = np.random.default_rng(0).permutation(len(src))
    with open(job / "J24_particles.cs", "wb") as f:
        np.save(f, np.array(main.tolist(), dtype=np.dtype(
            [(n, src.dtype[n]) for n in main_fields])))
    with open(job / "J24_passthrough_particles.cs", "wb") as f:
        np.save(f, np.array(src[pass_fields][shuffled].tolist(), dtype=np.dtype(
            [(n, src.dtype[n]) for n in pass_fields])))
    ind = np.array([5, 2, 1000])
    out, csg = export.export_cs(job / "J24_particles.cs", ind, tmp_path / "out/sel.cs")
    sub = np.load(out, allow_pickle=False)
    pt = np.load(tmp_path / "out/sel_passthrough.cs", allow_pickle=False)
    np.testing.assert_array_equal(sub["uid"], src["uid"][ind])
    np.testing.assert_array_equal(pt["uid"], src["uid"][ind])
    np.testing.assert_array_equal(pt["ctf/df1_A"], src["ctf/df1_A"][ind])
    res = yaml.safe_load(csg.read_text())["results"]
    assert res["alignments3D"]["metafile"] == ">sel.cs"
    assert res["blob"]["metafile"] == res["ctf"]["metafile"] == ">sel_passthrough.cs"
    assert all(r["num_items"] == 3 for r in res.values())
    # a passthrough that lacks a selected particle is refused
    with open(job / "J24_passthrough_particles.cs", "wb") as f:
        np.save(f, np.array(src[pass_fields][1:].tolist(), dtype=np.dtype(
            [(n, src.dtype[n]) for n in pass_fields])))
    with pytest.raises(InputFileError, match="lacks some selected"):
        export.export_cs(job / "J24_particles.cs", [0], tmp_path / "out/sel0.cs")
