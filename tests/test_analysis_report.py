"""analyze/convergence workflows on a synthetic run (analytic decoder: a blob whose position
follows z), so that the maps' change along a path is known exactly."""
from __future__ import annotations

import json
import shlex

import numpy as np
import pytest
from cryoscape.core.analysis import convergence, report, trajectory
from cryoscape.core.analysis.maps import write_maps
from cryoscape.core.analysis.posechanges import run_pose_changes
from cryoscape.core.io.mrc import read_mrc


class FakeRun:
    """Duck-typed Run: 3 epochs of 2D latents that settle towards the last one."""

    def __init__(self, path, n=600, zdim=2, seed=0):
        rng = np.random.default_rng(seed)
        self.path, self.D, self.apix, self.zdim = path, 32, 2.0, zdim
        self.epochs = [1, 2, 3]
        base = np.concatenate([rng.normal(-1.5, 0.3, (n // 2, zdim)),
                               rng.normal(1.5, 0.3, (n - n // 2, zdim))]).astype(np.float32)
        rot = lambda a: np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        turned = base @ rot(0.7).T if zdim == 2 else -base
        self._z = {3: base, 2: turned + 0.05 * rng.normal(size=base.shape),
                   1: rng.normal(size=base.shape)}
        self._z = {e: v.astype(np.float32) for e, v in self._z.items()}
        self.config = {"dataset_args": {}}
        self.particles_path = None

    def latents(self, epoch=None):
        return self._z[epoch or 3]

    def voxel_size(self, D=None):
        return self.apix * self.D / (D or self.D)

    def decode(self, z, D=None, epoch=None):
        D = D or self.D
        x = np.linspace(-1, 1, D, dtype=np.float32)
        zz, yy, xx = np.meshgrid(x, x, x, indexing="ij")
        out = []
        for v in np.atleast_2d(z):
            c = 0.25 * np.tanh(v[:2] if len(v) > 1 else [v[0], 0])
            out.append(np.exp(-((xx - c[0]) ** 2 + (yy - c[1]) ** 2 + zz**2) / 0.05))
        return np.stack(out).astype(np.float32)

    def metrics(self):
        return [{"epoch": e, "step": s, "loss": 1.0 / (e + s), "mse": 0.5 / e, "kl": 0.1}
                for e in self.epochs for s in (0, 1)]

    def pose_files(self):
        return {}


class FakeAbInitioRun(FakeRun):
    """With poses found in epochs 1-3: random, then all viewed along +z."""

    def pose_files(self):
        return {e: None for e in self.epochs}

    def poses(self, epoch=None):
        from scipy.spatial.transform import Rotation
        n = len(self._z[3])
        rot = (Rotation.random(n, random_state=epoch).as_matrix() if epoch == 1
               else np.repeat(np.eye(3)[None], n, 0))
        return rot.astype(np.float32), np.zeros((n, 2), np.float32)


def test_analyze_report_folder(tmp_path):
    run = FakeRun(tmp_path / "run")
    (tmp_path / "run").mkdir()
    s = report.analyze(run, tmp_path / "rep", k=4, skip_umap=True, D=16, n_traverse=5,
                       progress=False)
    rep = tmp_path / "rep"
    for f in ("pca.png", "pca_hexbin.png", "pca_kmeans.png", "loss.png", "index.html",
              "summary.json", "kmeans_labels.txt", "kmeans/medoids.txt", "pc1/z_values.txt"):
        assert (rep / f).is_file(), f
    assert not (rep / "umap.png").exists()
    page = (rep / "index.html").read_text()
    for f in ("pca.png", "loss.png", "kmeans/chimerax.cxc", "pc2/chimerax.cxc",
              "kmeans_maps.png", "pc1_maps.png", "pc2_maps.png"):
        assert f"'{f}'" in page, f
    assert json.loads((rep / "summary.json").read_text())["maps"]["pc1"]["files"][0] == \
        "pc1/vol_000.mrc"
    for key, n_maps in (("kmeans", 4), ("pc1", 5), ("pc2", 5)):
        cxc = rep / key / "chimerax.cxc"
        opened = [w for line in cxc.read_text().splitlines() if line.startswith("open ")
                  for w in shlex.split(line)[1:] if w.endswith(".mrc")]
        assert len(opened) == n_maps and all((cxc.parent / w).is_file() for w in opened)
        vol, apix = read_mrc(cxc.parent / opened[0])
        assert vol.shape == (16, 16, 16) and apix == pytest.approx(4.0)  # 2 A * 32/16
    # k-means maps are the decoded medoid particles
    z = run.latents()
    labels = np.loadtxt(rep / "kmeans_labels.txt", dtype=int)
    med = np.loadtxt(rep / "kmeans/medoids.txt", dtype=int)
    assert np.array_equal(np.bincount(labels), med[:, 2])
    vol0, _ = read_mrc(rep / "kmeans/vol_000.mrc")
    np.testing.assert_allclose(vol0, run.decode(z[med[0, 1]], D=16)[0], atol=1e-6)
    assert s["zdim"] == 2 and len(s["pca_explained_variance_ratio"]) == 2


def test_traversal_maps_change_along_path(tmp_path):
    run = FakeRun(tmp_path)
    zs, _ = trajectory.pc_traversal(run.latents(), pc=1, n=6)
    series = write_maps(run, zs, tmp_path / "pc1", D=16, progress=False)
    vols = np.stack([read_mrc(p)[0] for p in series.paths])
    # the blob's centre of mass moves monotonically along the traversal
    x = np.linspace(-1, 1, 16)
    com = np.array([[(v.sum((0, 1)) * x).sum(), (v.sum((0, 2)) * x).sum()] / v.sum()
                    for v in vols])
    steps = np.linalg.norm(np.diff(com, axis=0), axis=1)
    assert np.all(steps > 1e-3)
    direction = com[-1] - com[0]
    assert np.all(np.diff(com @ direction) > 0)
    np.testing.assert_allclose(np.loadtxt(tmp_path / "pc1/z_values.txt"), zs, rtol=1e-5)


def test_zdim1_report(tmp_path):
    run = FakeRun(tmp_path, zdim=1)
    s = report.analyze(run, tmp_path / "rep", k=3, D=8, n_traverse=3, progress=False)
    assert s["figures"]["latent"] == ["z_histogram.png"] and "pca" not in s["figures"]
    assert set(s["maps"]) == {"kmeans", "pc1"}  # zdim 1 has no PC2


def test_convergence_measures_and_plots(tmp_path):
    run = FakeRun(tmp_path)
    from scipy.spatial import procrustes
    from sklearn.linear_model import LinearRegression

    res = convergence.convergence(run, k=2, D=12, progress=False)
    assert res.epochs == [1, 2, 3] and res.reference_epoch == 3
    # drift and R^2 against the last epoch as scipy and scikit-learn compute them
    z = {e: run.latents(e) for e in run.epochs}
    np.testing.assert_allclose(res.drift_final[:2], [procrustes(z[3], z[e])[2] for e in (1, 2)],
                               rtol=1e-6)
    np.testing.assert_allclose(res.r2_final[:2], [LinearRegression().fit(z[e], z[3]).score(
        z[e], z[3]) for e in (1, 2)], atol=1e-4)
    # epoch 2 is a rotated, slightly noisy copy of epoch 3: small drift, the same two clusters
    assert res.drift_final[1] < 0.01 and res.drift_final[0] > 0.5
    assert res.r2_final[1] > 0.99 and res.r2_final[0] < 0.1
    assert res.ari_final[1] == 1.0 and res.ari_final[0] < 0.2
    assert np.isnan(res.ari_prev[0]) and res.ari_prev[2] == 1.0 and res.ari_prev[1] < 0.2
    # the blob follows z, so the rotated latents of epoch 2 move it: maps agree less than fully
    assert res.map_fsc_final[0] < res.map_fsc_final[1] < 0.99
    assert res.loss_epochs == [1, 2, 3] and res.loss == pytest.approx([1 / 2, 1 / 3, 1 / 4])
    files = convergence.plot_convergence(res, tmp_path / "conv")
    assert [f.name for f in files] == ["convergence_drift.png", "convergence_clusters.png",
                                       "convergence_maps.png", "loss.png"]
    saved = json.loads(res.to_json(tmp_path / "conv/c.json").read_text())
    assert saved["k"] == 2 and saved["n_particles"] == 600
    for key in ("drift_final", "r2_final", "ari_final", "map_fsc_final", "loss"):
        np.testing.assert_allclose(saved[key], getattr(res, key), rtol=1e-12)


def test_procrustes_and_linear_alignment(rng):
    a = rng.normal(size=(200, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    b = 3 * a @ q + 5
    assert convergence.procrustes_disparity(a, b) == pytest.approx(0, abs=1e-12)
    assert convergence.linear_r2(b, a) == pytest.approx(1.0)
    assert convergence.procrustes_disparity(a, rng.normal(size=(200, 3))) > 0.8


def test_analyze_with_umap_in_place_and_from_cache(tmp_path, monkeypatch, fake_umap):
    """UMAP figures come from umap_embedding (a stand-in here: the real one takes ~30 s to
    compile); a cached embedding is used in place, without starting a child process."""
    run = FakeRun(tmp_path / "run")
    (tmp_path / "run").mkdir()
    s = report.analyze(run, tmp_path / "a", k=3, D=8, n_traverse=2, progress=False,
                       umap_background=False)
    assert s["figures"]["umap"] == ["umap.png", "umap_hexbin.png", "umap_kmeans.png"]
    cached = list((tmp_path / "run/analysis_cache").glob("umap.e3.*.npy"))
    assert len(cached) == 1  # cached in the run directory
    import multiprocessing

    monkeypatch.setattr(multiprocessing, "get_context", None)  # no child may be started
    s2 = report.analyze(run, tmp_path / "b", k=3, D=8, n_traverse=2, progress=False)
    assert "umap" in s2["figures"] and (tmp_path / "b/umap.png").is_file()
    page = (tmp_path / "b/index.html").read_text()
    assert page.index("pca.png") < page.index("umap.png") < page.index("loss.png") < \
        page.index("kmeans_maps.png")


def test_analyze_plots_viewing_directions_of_an_ab_initio_run(tmp_path):
    (tmp_path / "run").mkdir()
    s = report.analyze(FakeAbInitioRun(tmp_path / "run"), tmp_path / "rep", k=2,
                       skip_umap=True, D=8, n_traverse=2, progress=False)
    names = [f"viewing_directions.{e}.png" for e in (1, 2, 3)]
    assert s["figures"]["viewing directions"] == names
    from matplotlib.image import imread
    spread, top = (imread(tmp_path / "rep" / n)[..., :3] for n in names[:2])
    assert spread.shape == top.shape and np.abs(spread - top).max() > 0.1   # plots differ
    assert names[0] in (tmp_path / "rep" / "index.html").read_text()
    # how much the poses changed: from random to one view, then not at all
    assert s["figures"]["pose changes"] == ["pose_changes.png"]
    changes = run_pose_changes(FakeAbInitioRun(tmp_path / "run"))
    assert [c["epoch"] for c in changes] == [2, 3]
    assert changes[0]["pose_change_deg"] > 90 and changes[1]["pose_change_deg"] == 0


def test_analysis_cache_leaves_a_read_only_run_alone(tmp_path, monkeypatch):
    """A writable run caches in its own folder; a read-only one in the shared folder in the
    temporary directory, where the explorer looks too."""
    import tempfile

    from cryoscape.core.analysis.cache import analysis_cache_dir, cache_dirs, cached_file
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    run = FakeRun(tmp_path / "run")
    (tmp_path / "run").mkdir()
    assert analysis_cache_dir(run) == tmp_path / "run" / "analysis_cache"
    ro = FakeRun(tmp_path / "ro")
    (tmp_path / "ro").mkdir(mode=0o555)          # shared read-only: even root must not write
    shared = tmp_path / "tmp" / "cryoscape_analysis_cache"
    assert analysis_cache_dir(ro) == shared and shared.is_dir()
    assert not (tmp_path / "ro" / "analysis_cache").exists()
    assert cache_dirs(ro)[1] == shared and cached_file(ro, "x.npz") is None
    (shared / "x.npz").write_bytes(b"")
    assert cached_file(ro, "x.npz") == shared / "x.npz"
