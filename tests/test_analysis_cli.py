"""The analysis commands on a real cryoDRGN run (fixtures/cryodrgn_rundir: trained on hand.mrcs,
zdim 2, box 64), decoded at small boxes to stay fast."""
from __future__ import annotations

import shlex
import shutil

import numpy as np
import pytest
from cryoscape.core.analysis import sampling, selection, trajectory

from tests.conftest import cli


@pytest.fixture(scope="module")
def rundir(fixtures_dir, tmp_path_factory):
    """A writable copy of the run, laid out so its relative dataset paths still resolve."""
    base = tmp_path_factory.mktemp("runs")
    shutil.copytree(fixtures_dir / "cryodrgn_rundir/run", base / "cryodrgn_rundir/run")
    (base / "cryodrgn_rundir/run").chmod(0o755)   # the copy keeps shared/'s read-only mode
    (base / "hand").symlink_to(fixtures_dir / "hand")
    return base / "cryodrgn_rundir/run"


@pytest.fixture(scope="module")
def run(rundir):
    from cryoscape.core.run import Run

    return Run.open(rundir)


def opened(cxc):
    return [w for line in cxc.read_text().splitlines() if line.startswith("open ")
            for w in shlex.split(line)[1:] if w.endswith(".mrc")]


def test_kmeans_and_traversal_maps_decode_and_change(run):
    z = np.asarray(run.latents())
    assert z.shape == (100, 2)
    km = sampling.kmeans(z, k=4, seed=0)
    vols = np.asarray(run.decode(z[km.medoids], D=32))
    assert vols.shape == (4, 32, 32, 32) and np.isfinite(vols).all()
    flat = vols.reshape(4, -1)
    corr = np.corrcoef(flat)[np.triu_indices(4, 1)]
    assert corr.max() < 0.99999  # four different maps
    pts, _ = trajectory.pc_traversal(z, pc=1, n=5)
    tv = np.asarray(run.decode(pts, D=32)).reshape(5, -1)
    dist = np.linalg.norm(tv - tv[0], axis=1)
    assert np.all(np.diff(dist) > 0), dist  # moving away from the start along PC1
    graph_pts = trajectory.path_through(z, [0, 99], n=5, graph=True, k=6)
    gv = np.asarray(run.decode(graph_pts, D=32)).reshape(5, -1)
    assert np.all(np.linalg.norm(np.diff(gv, axis=0), axis=1) > 0)


def test_cli_analyze(rundir, tmp_path):
    assert cli("analyze", rundir, "--skip-umap", "-D", 16, "--k", 4, "-n", 4,
               "-o", tmp_path / "rep") == 0
    rep = tmp_path / "rep"
    for f in ("index.html", "pca.png", "pca_hexbin.png", "kmeans/chimerax.cxc",
              "pc1/chimerax.cxc", "pc2/chimerax.cxc"):
        assert (rep / f).is_file(), f
    assert (rep / "loss.png").is_file()  # the losses of cryoDRGN's run.log
    for key, n in (("kmeans", 4), ("pc1", 4), ("pc2", 4)):
        names = opened(rep / key / "chimerax.cxc")
        assert len(names) == n and all((rep / key / m).is_file() for m in names)
    # the maps are the run decoded at the k-means medoids (seed 0) and along PC1
    from cryoscape.core.io.mrc import read_mrc
    from cryoscape.core.run import Run

    run = Run.open(rundir)
    z = np.asarray(run.latents())
    medoids = sampling.kmeans(z, k=4, seed=0).medoids
    np.testing.assert_array_equal(np.loadtxt(rep / "kmeans/medoids.txt", dtype=int)[:, 1],
                                  medoids)
    pc1 = trajectory.pc_traversal(z, pc=1, n=4)[0]
    np.testing.assert_allclose(np.loadtxt(rep / "pc1/z_values.txt"), pc1, rtol=1e-5)
    for key, zs in (("kmeans", z[medoids]), ("pc1", pc1)):
        maps = np.stack([read_mrc(rep / key / f"vol_{i:03d}.mrc")[0] for i in range(4)])
        np.testing.assert_allclose(maps, run.decode(zs, D=16), atol=1e-5)
        assert read_mrc(rep / key / "vol_000.mrc")[1] == pytest.approx(run.apix * 64 / 16)


def test_cli_traverse(rundir, tmp_path):
    assert cli("traverse", rundir, "--path", 0, 50, 99, "--graph", "--neighbors", 6, "-n", 5,
               "-D", 16, "-o", tmp_path / "tr") == 0
    names = opened(tmp_path / "tr/chimerax.cxc")
    assert names == [f"vol_{i:03d}.mrc" for i in range(5)]
    assert cli("traverse", rundir, "--pc", 3, "-o", tmp_path / "bad") == 1  # zdim 2: no PC3


def test_cli_select_exports_and_backprojection(run, rundir, tmp_path, fixtures_dir):
    from cryoscape.core.io.cryodrgn import load_index
    from cryoscape.core.io.mrc import read_mrc

    assert cli("select", rundir, "--cluster", 0, 1, "--k", 4, "-o", tmp_path / "sel.pkl") == 0
    km = sampling.kmeans(np.asarray(run.latents()), k=4, seed=0)
    expect = selection.by_cluster(km.labels, [0, 1])
    np.testing.assert_array_equal(load_index(tmp_path / "sel.pkl"), expect)
    assert cli("select", rundir, "--cluster", 0, 1, "--k", 4, "-o", tmp_path / "sel.mrcs") == 0
    imgs, _ = read_mrc(fixtures_dir / "hand/hand.mrcs")
    np.testing.assert_array_equal(read_mrc(tmp_path / "sel.mrcs")[0], imgs[expect])
    # a star subset needs a star particle file
    assert cli("select", rundir, "--outliers", 1, "-o", tmp_path / "x.star") == 1
    # polygon around everything on PCA, inverted: empty, refused
    (tmp_path / "poly.txt").write_text("-1e3 -1e3\n1e3 -1e3\n1e3 1e3\n-1e3 1e3\n")
    assert cli("select", rundir, "--polygon", tmp_path / "poly.txt", "-o",
               tmp_path / "all.pkl") == 0
    assert len(load_index(tmp_path / "all.pkl")) == 100
    assert cli("select", rundir, "--polygon", tmp_path / "poly.txt", "--invert", "-o",
               tmp_path / "none.pkl") == 1
    # reconstruct the selection classically, with the run's recorded poses
    assert cli("backproject-selection", rundir, tmp_path / "sel.pkl", "-o", tmp_path / "bp") == 0
    fsc = np.loadtxt(tmp_path / "bp/selection_fsc.txt", skiprows=1)
    assert fsc[1:8, 1].min() > 0.5
    assert (tmp_path / "bp/selection_half1.mrc").is_file()


def test_cli_convergence(rundir, tmp_path):
    import json

    from cryoscape.core.run import Run
    from scipy.spatial import procrustes

    assert cli("convergence", rundir, "--k", 3, "-D", 16, "-o", tmp_path / "conv") == 0
    names = sorted(p.name for p in (tmp_path / "conv").iterdir())
    assert names == ["convergence.json", "convergence_clusters.png", "convergence_drift.png",
                     "convergence_maps.png", "loss.png"]           # loss: from run.log
    res = json.loads((tmp_path / "conv/convergence.json").read_text())
    run = Run.open(rundir)
    z = {e: np.asarray(run.latents(e)) for e in (1, 2, 3)}
    assert res["epochs"] == [1, 2, 3] and res["reference_epoch"] == 3 and res["k"] == 3
    np.testing.assert_allclose(res["drift_final"], [procrustes(z[3], z[e])[2] for e in (1, 2, 3)],
                               rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(res["drift_prev"][1:], [procrustes(z[e - 1], z[e])[2]
                                                       for e in (2, 3)], rtol=1e-5)
    assert res["loss"] == pytest.approx([r["loss"] for r in run.metrics()])  # run.log's
    assert all(0 < m <= 1 for m in res["map_fsc_final"][:2])


def test_cli_select_star_cs_with_training_index(run, rundir, tmp_path, fixtures_dir):
    """Latent rows map through the training index onto particle-file rows; star subsets get
    the k-means labels as rlnClassNumber; cs subsets keep the source's fields."""
    import pandas as pd
    from cryoscape.core.io.cryodrgn import save_index
    from cryoscape.core.io.star import read_star, write_star

    star = read_star(fixtures_dir / "relion/relion31.star")
    big = pd.concat([star.particles] * 60, ignore_index=True)  # 300 rows
    big["rlnRandomSubset"] = np.arange(300)  # a column that identifies each row
    star.particles = big
    write_star(tmp_path / "big.star", star)
    ind = np.arange(100) * 3  # the run was "trained" on every third particle
    save_index(tmp_path / "ind.pkl", ind)
    assert cli("select", rundir, "--cluster", 2, "--k", 4, "--labels", "--ind",
               tmp_path / "ind.pkl", "--particles", tmp_path / "big.star",
               "-o", tmp_path / "sub.star") == 0
    km = sampling.kmeans(np.asarray(run.latents()), k=4, seed=0)
    sel = selection.by_cluster(km.labels, [2])
    sub = read_star(tmp_path / "sub.star")
    np.testing.assert_array_equal(sub.particles["rlnRandomSubset"], ind[sel])
    np.testing.assert_array_equal(sub.particles["rlnClassNumber"], 3)
    cs_path = fixtures_dir / "cryosparc/cryosparc_P12_J24_001_particles.cs"
    assert cli("select", rundir, "--outliers", 1.0, "--particles", cs_path,
               "-o", tmp_path / "sub.cs") == 0
    src = np.load(cs_path, allow_pickle=False)
    got = np.load(tmp_path / "sub.cs", allow_pickle=False)
    out_rows = selection.outliers(np.asarray(run.latents()), 1.0)
    assert got.dtype == src.dtype and got.tobytes() == src[out_rows].tobytes()
    assert (tmp_path / "sub.csg").is_file()


@pytest.mark.slow
def test_cli_analyze_with_umap_in_background(rundir, tmp_path):
    """The real UMAP (numba compilation: ~30 s), computed in a child process while the maps
    are decoded, and cached in the run directory."""
    assert cli("analyze", rundir, "-D", 8, "--k", 3, "-n", 2, "-o", tmp_path / "rep") == 0
    assert (tmp_path / "rep/umap_kmeans.png").is_file()
    assert list((rundir / "analysis_cache").glob("umap.e3.*.npy"))
