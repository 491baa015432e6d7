"""The explorer's isosurfaces: meshed in slabs (short GIL holds) yet the same surface as one
marching-cubes call over the whole map, with vispy's smooth-shading normals."""
from __future__ import annotations

import numpy as np
import pytest
import skimage.measure
from cryoscape.app.gui.visuals import isosurface as iso
from scipy.spatial import cKDTree
from vispy.geometry import MeshData


def blobs(D: int) -> np.ndarray:
    x = (np.arange(D) - D / 2) / D
    Z, Y, X = np.meshgrid(x, x, x, indexing="ij")
    vol = np.exp(-((X - 0.12) ** 2 + Y ** 2 + Z ** 2) / 0.15 ** 2) + \
        np.exp(-((X + 0.15) ** 2 + (Y - 0.1) ** 2 + Z ** 2) / 0.1 ** 2)
    noise = np.random.default_rng(0).normal(0, 0.05, vol.shape)   # a rough, many-faced surface
    return (vol + noise).astype(np.float32)


@pytest.mark.parametrize("D", [32, 64])
def test_slabs_make_the_whole_maps_surface(D, monkeypatch):
    vol = blobs(D)
    level = float(vol.mean() + vol.std())
    v0, f0, _, _ = skimage.measure.marching_cubes(vol, level, allow_degenerate=False)
    calls = []
    real = skimage.measure.marching_cubes

    def counting(slab, *args, **kw):
        calls.append(slab.size)
        return real(slab, *args, **kw)
    monkeypatch.setattr(skimage.measure, "marching_cubes", counting)
    mesh = iso.isosurface(vol, 1.0, box_A=2.0 * D)
    assert max(calls) <= iso.SLAB_VOXELS + D * D and (D == 32 or len(calls) > 4)
    # the same vertices (shared planes merged: none twice, none unused) and triangles
    v1 = mesh.vertices[:, ::-1] / 2.0 + D / 2                     # back to voxels (z, y, x)
    assert len(v1) == len(v0) and len(mesh.faces) == len(f0)
    dist, match = cKDTree(v0).query(v1)
    assert dist.max() < 1e-4 and len(np.unique(match)) == len(v0)
    tri0 = {tuple(sorted(t)) for t in f0.tolist()}
    tri1 = {tuple(sorted(t)) for t in match[mesh.faces].tolist()}
    assert tri1 == tri0
    # normals as vispy computes them (it would on the GUI thread), faces indexed for drawing
    ref = MeshData(vertices=mesh.vertices, faces=mesh.faces).get_vertex_normals()
    md = mesh.meshdata
    np.testing.assert_allclose(md.get_vertex_normals(), ref, atol=1e-5)
    np.testing.assert_allclose(md.get_vertex_normals(indexed="faces"), ref[mesh.faces], atol=1e-5)
    assert md.get_vertices(indexed="faces").shape == (len(f0), 3, 3)
    assert mesh.level == pytest.approx(level)


def test_level_outside_the_map_gives_an_empty_mesh():
    mesh = iso.isosurface(blobs(16), 50.0, box_A=32.0)
    assert mesh.vertices.shape == (0, 3) and mesh.faces.shape == (0, 3) and mesh.meshdata is None
