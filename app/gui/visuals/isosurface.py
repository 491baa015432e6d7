"""Isosurfaces for the 3D view, made in worker threads without holding up the GUI thread.

skimage's marching cubes holds the GIL for its whole run (25 ms for a 64³ map, 240 ms for
128³), and so would vispy's per-vertex normals (`np.add.at`): a worker doing either stalls the
event loop as long. So the map is meshed in slabs of a few planes (a call meshes SLAB_VOXELS
voxels, ~5 ms, or one plane pair where a plane is bigger: ~20 ms at 256³; the GIL is free in
between), the slabs' shared vertices are merged, and the smooth-shading normals are summed
with `np.bincount`. Coordinates are in Å, centred on the box, so a reduced-box preview
and the full map overlap.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from vispy.geometry import MeshData

SLAB_VOXELS = 2**15            # voxels per marching-cubes call: ~5 ms on one core


class ShadedMeshData(MeshData):
    """vispy's MeshData with its vertex normals given (computed in the worker), so that the
    view's first draw does no per-vertex work on the GUI thread."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray):
        super().__init__(vertices=vertices, faces=faces)
        self.get_vertices(indexed="faces")              # cached by MeshData
        self._normals, self._normals_by_face = normals, normals[faces]

    def get_vertex_normals(self, indexed=None):
        return self._normals_by_face if indexed == "faces" else self._normals


@dataclass
class Mesh:
    """A triangle mesh in Å: `vertices` [V, 3] (x, y, z), `faces` [F, 3], at `level`;
    `meshdata` (None when empty) is what the view draws."""
    vertices: np.ndarray
    faces: np.ndarray
    level: float
    box_A: float
    meshdata: ShadedMeshData | None = None


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit normals [V, 3]: the area-weighted sum of the faces' normals at each vertex (as
    vispy computes them, which is where the faces' winding points the light)."""
    v = vertices[faces]
    face_n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    idx = faces.ravel()
    n = np.stack([np.bincount(idx, np.repeat(face_n[:, j], 3), len(vertices))
                  for j in range(3)], 1)
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    return (n / np.where(norm > 0, norm, 1.0)).astype(np.float32)


def _marching_cubes_in_slabs(vol: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """skimage's marching cubes over slabs along axis 0 (each sharing its last plane with the
    next), their vertices on the shared planes merged. Vertices [V, 3] in voxels (z, y, x)."""
    from skimage.measure import marching_cubes

    d = vol.shape[0]
    step = max(1, SLAB_VOXELS // (vol.shape[1] * vol.shape[2]))
    verts, faces, n = [], [], 0
    for z0 in range(0, d - 1, step):
        slab = vol[z0:min(z0 + step, d - 1) + 1]
        if not slab.min() < level < slab.max():
            continue
        v, f, _, _ = marching_cubes(slab, level, allow_degenerate=False)
        v[:, 0] += z0
        verts.append(v)
        faces.append(f + n)
        n += len(v)
    if not verts:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64)
    verts, faces = np.concatenate(verts), np.concatenate(faces)
    faces = _merge_shared(verts, step)[faces]
    used = np.zeros(len(verts), bool)
    used[faces] = True
    new_index = np.cumsum(used) - 1
    return verts[used], new_index[faces]


def _merge_shared(verts: np.ndarray, step: int) -> np.ndarray:
    """Index of the vertex to use for each vertex: one of the two copies that neighbouring
    slabs made of a vertex on their shared plane (z a multiple of `step`, the same (y, x) bit
    for bit). Plane by plane, on 64-bit keys: sorting those releases the GIL, unlike
    `np.unique(axis=0)`."""
    keep = np.arange(len(verts))
    z = verts[:, 0]
    shared = np.flatnonzero((z % step == 0) & (z > 0))
    shared = shared[np.argsort(z[shared], kind="stable")]
    bits = np.ascontiguousarray(verts[shared, 1:], dtype=np.float32).view(np.uint32)
    keys = (bits[:, 0].astype(np.uint64) << np.uint64(32)) | bits[:, 1]
    starts = np.flatnonzero(np.diff(z[shared], prepend=-1.0)) if len(shared) else []
    for a, b in zip(starts, [*starts[1:], len(shared)]):
        idx = shared[a:b]
        _, first, inverse = np.unique(keys[a:b], return_index=True, return_inverse=True)
        keep[idx] = idx[first][inverse]
    return keep


def isosurface(volume: np.ndarray, sigma: float, box_A: float) -> Mesh:
    """The surface at mean + sigma * std of `volume` [z, y, x], scaled to a box of `box_A` Å,
    with its vertex normals. A level outside the map's range gives an empty mesh."""
    vol = np.asarray(volume, dtype=np.float32)
    level = float(vol.mean() + sigma * vol.std())
    d = vol.shape[0]
    verts, faces = (_marching_cubes_in_slabs(vol, level) if vol.min() < level < vol.max()
                    else (np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64)))
    verts = ((verts[:, ::-1] - d / 2) * (box_A / d)).astype(np.float32)   # (x, y, z) in Å
    faces = faces.astype(np.uint32)
    meshdata = ShadedMeshData(verts, faces, vertex_normals(verts, faces)) if len(faces) else None
    return Mesh(verts, faces, level, box_A, meshdata)
