"""Latent-space analysis on arrays: PCA parity, k-means, density, paths, selections, UMAP cache."""
from __future__ import annotations

import numpy as np
import pytest
from cryoscape.core.analysis import embed, sampling, selection, trajectory
from cryoscape.core.errors import CryoscapeError, InputFileError
from cryoscape.core.io.pickles import load_pickle


@pytest.fixture(scope="module")
def zvals(fixtures_dir):
    z = np.asarray(load_pickle(fixtures_dir / "latents/zvals_het-8_4k.pkl"))
    assert z.shape == (4549, 8)
    return z


def ring(n=600, radius=1.0, sigma=0.03, seed=0):
    rng = np.random.default_rng(seed)
    theta = rng.uniform(0, 2 * np.pi, n)
    r = radius + sigma * rng.standard_normal(n)
    return np.stack([r * np.cos(theta), r * np.sin(theta)], 1), theta


def test_pca_matches_direct_svd(zvals):
    res = embed.pca(zvals)
    zc = zvals.astype(np.float64) - zvals.mean(0)
    _, s, vt = np.linalg.svd(zc, full_matrices=False)
    var = s**2 / (len(zvals) - 1)
    np.testing.assert_allclose(res.explained_variance, var, rtol=1e-6)
    np.testing.assert_allclose(res.explained_variance_ratio, var / var.sum(), rtol=1e-6)
    # components equal up to sign, and unit length
    dots = np.abs(np.sum(res.components * vt, axis=1))
    np.testing.assert_allclose(dots, 1.0, atol=1e-6)
    np.testing.assert_allclose(res.coords, res.transform(zvals), atol=1e-8)
    np.testing.assert_allclose(res.inverse_transform(res.coords), zvals, atol=1e-5)
    assert res.explained_variance_ratio[0] > res.explained_variance_ratio[-1]


def test_kmeans_medoids_on_data_and_deterministic(zvals):
    a = sampling.kmeans(zvals, k=8, seed=1)
    b = sampling.kmeans(zvals, k=8, seed=1)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.counts.sum() == len(zvals) and (a.counts > 0).all()
    # each medoid is the particle nearest its centre (brute force check)
    d = np.linalg.norm(zvals[None].astype(np.float64) - a.centers[:, None], axis=2)
    np.testing.assert_array_equal(a.medoids, d.argmin(1))
    # centres are the means of their clusters
    for c in range(a.k):
        np.testing.assert_allclose(a.centers[c], zvals[a.labels == c].mean(0), atol=1e-4)


def test_density_integrates_to_one_and_peaks_at_clusters(rng):
    xy = np.concatenate([rng.normal(0, 0.2, (3000, 2)), rng.normal(3, 0.2, (1000, 2))])
    d = sampling.density_2d(xy, gridsize=100)
    cell = (d.x[1] - d.x[0]) * (d.y[1] - d.y[0])
    assert d.density.sum() * cell == pytest.approx(1.0, rel=1e-6)
    at = d.at(np.array([[0, 0], [3, 3], [1.5, 1.5]]))
    assert at[0] > 2 * at[1] > 0 and at[2] < 0.01 * at[1]


def test_graph_path_stays_on_ring_where_line_cuts_through():
    sigma = 0.03
    z, theta = ring(sigma=sigma)
    a = int(np.argmin(np.abs(theta - 0.1)))
    b = int(np.argmin(np.abs(theta - (np.pi + 0.1))))
    ind = trajectory.graph_path(z, [a, b], k=8)
    assert ind[0] == a and ind[-1] == b and len(ind) > 10
    pts = trajectory.path_through(z, [a, b], n=30, graph=True, k=8)
    r = np.linalg.norm(pts, axis=1)
    assert np.all(np.abs(r - 1.0) < 3 * sigma), np.abs(r - 1).max()
    # consecutive steps are short hops, not jumps across the ring
    assert np.linalg.norm(np.diff(z[ind], axis=0), axis=1).max() < 0.2
    line = trajectory.path_through(z, [a, b], n=30)
    r_line = np.linalg.norm(line, axis=1)
    assert r_line.min() < 0.1  # the straight line cuts through the empty centre
    np.testing.assert_allclose(line[0], z[a])
    np.testing.assert_allclose(line[-1], z[b])


def test_graph_path_disconnected_and_bad_index():
    z = np.concatenate([np.zeros((20, 2)) + np.arange(20)[:, None] * 0.01,
                        np.ones((20, 2)) * 50 + np.arange(20)[:, None] * 0.01])
    with pytest.raises(CryoscapeError, match="not connected"):
        trajectory.graph_path(z, [0, 30], k=3)
    with pytest.raises(CryoscapeError, match="out of range"):
        trajectory.graph_path(z, [0, 99])


def test_resample_equal_arc_length():
    poly = np.array([[0.0, 0], [1, 0], [1, 3]])
    pts = trajectory.resample_path(poly, 5)
    np.testing.assert_allclose(pts, [[0, 0], [1, 0], [1, 1], [1, 2], [1, 3]], atol=1e-12)
    np.testing.assert_allclose(trajectory.straight_line([0, 0], [2, 4], 3)[1], [1, 2])


def test_pc_traversal_spans_percentiles(zvals):
    pts, values = trajectory.pc_traversal(zvals, pc=2, n=7)
    res = embed.pca(zvals)
    proj = res.transform(pts)
    np.testing.assert_allclose(proj[:, 1], values, atol=1e-8)
    np.testing.assert_allclose(proj[:, [0, 2, 3]], 0, atol=1e-8)
    lo, hi = np.percentile(res.coords[:, 1], [5, 95])
    assert values[0] == pytest.approx(lo) and values[-1] == pytest.approx(hi)
    with pytest.raises(CryoscapeError, match="PC9"):
        trajectory.pc_traversal(zvals, pc=9)


def test_selections_and_set_algebra(tmp_path):
    z, theta = ring(n=200)
    labels = (theta > np.pi).astype(int)
    upper = selection.by_cluster(labels, [0])
    np.testing.assert_array_equal(upper, np.flatnonzero(theta <= np.pi))
    # polygon: the right half plane, read from a text file and from JSON
    (tmp_path / "poly.txt").write_text("0 -2\n2 -2\n2 2\n0 2\n")
    (tmp_path / "poly.json").write_text('{"vertices": [[0, -2], [2, -2], [2, 2], [0, 2]]}')
    right = selection.in_polygon(z, selection.load_polygon(tmp_path / "poly.txt"))
    np.testing.assert_array_equal(right, np.flatnonzero(z[:, 0] > 0))
    np.testing.assert_array_equal(right, selection.in_polygon(
        z, selection.load_polygon(tmp_path / "poly.json")))
    both = selection.intersection(upper, right)
    np.testing.assert_array_equal(both, np.flatnonzero((theta <= np.pi) & (z[:, 0] > 0)))
    assert len(selection.union(upper, right)) == len(upper) + len(right) - len(both)
    inv = selection.invert(upper, len(z))
    assert len(np.intersect1d(inv, upper)) == 0 and len(inv) + len(upper) == len(z)
    np.testing.assert_array_equal(selection.difference(upper, right),
                                  np.setdiff1d(upper, right))
    (tmp_path / "bad.txt").write_text("1 2\n")
    with pytest.raises(InputFileError, match="polygon"):
        selection.load_polygon(tmp_path / "bad.txt")
    with pytest.raises(CryoscapeError, match="does not exist"):
        selection.by_cluster(labels, [5])


def test_outliers_by_z_norm(rng):
    z = rng.normal(size=(1000, 4))
    z[[3, 77]] *= 20
    out = selection.outliers(z, sigma=4)
    np.testing.assert_array_equal(out, [3, 77])


def test_zdim1_histogram_and_embeddings(rng):
    z = rng.normal(size=(500, 1)).astype(np.float32)
    counts, edges = embed.latent_histogram(z, bins=20)
    assert counts.sum() == 500 and len(edges) == 21
    assert embed.embed(z, "pca").shape == (500, 1)
    np.testing.assert_array_equal(embed.umap_embedding(z, progress=None), z)
    km = sampling.kmeans(z, 3)
    assert np.all(np.diff(km.centers[:, 0]) > 0)  # ordered along the line


def test_umap_cache_keyed_and_reused(tmp_path, fake_umap):
    z, _ = ring(n=300)
    msgs = []
    e1 = embed.umap_embedding(z, n_neighbors=10, cache_dir=tmp_path, epoch=3, progress=msgs.append)
    files = list(tmp_path.glob("umap.e3.nn10.*.npy"))
    assert len(files) == 1 and e1.shape == (300, 2) and "embedding 300 points" in msgs[0]
    e2 = embed.umap_embedding(z, n_neighbors=10, cache_dir=tmp_path, epoch=3, progress=msgs.append)
    np.testing.assert_array_equal(e1, e2)
    assert fake_umap.fits == 1 and "cached" in msgs[-1]
    assert not list(tmp_path.glob(".*part"))  # atomic write left no temporary file
    # another epoch, parameter or latent set is another key, computed afresh
    embed.umap_embedding(z, n_neighbors=10, cache_dir=tmp_path, epoch=4, progress=None)
    embed.umap_embedding(z, n_neighbors=10, cache_dir=tmp_path, epoch=3, seed=1, progress=None)
    embed.umap_embedding(z[:-1], n_neighbors=10, cache_dir=tmp_path, epoch=3, progress=None)
    assert fake_umap.fits == 4 and len(list(tmp_path.glob("umap.*.npy"))) == 4
    # a corrupt cache file is recomputed, not trusted
    files[0].write_bytes(b"junk")
    e3 = embed.umap_embedding(z, n_neighbors=10, cache_dir=tmp_path, epoch=3, progress=None)
    np.testing.assert_array_equal(e1, e3)
    assert fake_umap.fits == 5


def test_umap_subset_fit_places_the_rest(fake_umap, rng):
    z = rng.normal(size=(3000, 3))
    emb = embed.umap_embedding(z, max_fit=500, seed=0, progress=None)
    fit = np.sort(np.random.default_rng(0).choice(3000, 500, replace=False))
    np.testing.assert_allclose(emb[fit], embed.pca(z[fit], 2).coords, atol=1e-5)
    # the fake embedding is linear in z, so placed points land near their exact image
    lin = embed.pca(z[fit], 2)
    exact = lin.transform(z)
    rest = np.setdiff1d(np.arange(3000), fit)
    err = np.linalg.norm(emb[rest] - exact[rest], axis=1)
    assert np.median(err) < 0.15 * exact.std() and emb.dtype == np.float32
    assert embed.umap_cache_key(z, 1, 15, 0.1, 0, 500) != embed.umap_cache_key(z, 1, 15, 0.1, 0)
    # below max_fit the key does not depend on it
    assert embed.umap_cache_key(z, 1, 15, 0.1, 0, 5000) == embed.umap_cache_key(z, 1, 15, 0.1, 0)


@pytest.mark.slow
def test_umap_real_separates_clusters(rng):
    """umap-learn itself (slow: numba compilation): two far clusters stay apart."""
    z = np.concatenate([rng.normal(0, 1, (150, 4)), rng.normal(12, 1, (150, 4))])
    emb = embed.umap_embedding(z, n_neighbors=10, progress=None)
    a, b = emb[:150], emb[150:]
    gap = np.linalg.norm(a.mean(0) - b.mean(0))
    assert emb.shape == (300, 2) and gap > 3 * max(a.std(0).max(), b.std(0).max())


def test_tsne_and_embed_dispatch(rng):
    z = np.concatenate([rng.normal(0, 1, (100, 4)), rng.normal(10, 1, (100, 4))])
    emb = embed.embed(z, "tsne", perplexity=20, max_iter=250)
    a, b = emb[:100], emb[100:]
    assert emb.shape == (200, 2) and emb.dtype == np.float32
    assert np.linalg.norm(a.mean(0) - b.mean(0)) > 2 * max(a.std(0).max(), b.std(0).max())
    np.testing.assert_allclose(np.abs(embed.embed(z, "pca")),
                               np.abs(embed.pca(z, 2).coords), rtol=1e-5)
    with pytest.raises(CryoscapeError, match="unknown embedding"):
        embed.embed(z, "isomap")
