"""The maps on screen, as plain objects: decoded volumes, their meshes, and what is shown (the
current map, the pinned one, the path's previews)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from cryoscape.app.gui.models.events import Signal


@dataclass
class VolumeResult:
    """A decoded map: `source` is 'cache', 'preview', 'exact', or 'landscape' (a map made
    elsewhere, e.g. a landscape state's mean map, that `label` names); `t0` when it was asked
    for."""
    volume: np.ndarray
    z: np.ndarray
    D: int
    source: str
    request: int
    t0: float
    index: int | None = None
    label: str | None = None


@dataclass
class MeshResult:
    """A surface to draw: `which` 0 is the current map's, 1 the pinned one's (`mesh` None:
    none)."""
    mesh: object
    volume: VolumeResult | None
    which: int = 0


class VolumesShown:
    """The current map (the latest exact or preview decode) and its mesh, the pinned map, and
    the path's pre-decoded previews. Events: `current_changed()` (a new current map, or none),
    `mesh_changed(MeshResult)` for every surface to draw (a cache hit, a preview, the exact
    map, the pinned map; the pinned one's mesh None when unpinned), `path_volumes_changed()`."""

    def __init__(self):
        self.current_changed = Signal()
        self.mesh_changed = Signal()
        self.path_volumes_changed = Signal()
        self.current: VolumeResult | None = None
        self.current_mesh = None
        self.pinned: VolumeResult | None = None
        self.path_volumes: list[np.ndarray] = []

    def clear(self) -> None:
        """Another run: nothing shown."""
        self.current, self.current_mesh, self.pinned, self.path_volumes = None, None, None, []
        self.current_changed.emit()

    def set_current(self, res: VolumeResult) -> None:
        self.current = res
        self.current_changed.emit()

    def show_mesh(self, res: MeshResult) -> None:
        """A surface to draw (the current map's exact or preview mesh is kept as current)."""
        if res.which == 0 and res.volume is not None and res.volume.source != "cache":
            self.current_mesh = res.mesh
        self.mesh_changed.emit(res)

    def set_pinned(self, res: VolumeResult | None) -> None:
        """Pin `res` (its mesh follows from the volume service); None unpins: no surface."""
        self.pinned = res
        if res is None:
            self.mesh_changed.emit(MeshResult(None, None, 1))

    def set_path_volumes(self, volumes: list[np.ndarray]) -> None:
        self.path_volumes = volumes
        self.path_volumes_changed.emit()
