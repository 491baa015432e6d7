"""The conformational landscape of the latents shown, as a plain model: the landscape
(`core.analysis.landscape.Landscape`: each particle's state and volume-PC coordinates, the
states' maps), the progress of its computation, and the state the user picked."""
from __future__ import annotations

import numpy as np
from cryoscape.app.gui.models.events import Signal


class LandscapeModel:
    """`landscape` (a Landscape, or None) for the latents `z` (the array object it was computed
    for: compare with `ExplorerState.z` by identity); `progress` (stage, done, total) while it
    is computed; `selected` state (None: none). Events: `changed()`, `progress_changed(stage,
    done, total)`, `selected_changed(state or None)`."""

    def __init__(self):
        self.changed = Signal()
        self.progress_changed = Signal()
        self.selected_changed = Signal()
        self.landscape = None
        self.z: np.ndarray | None = None
        self.progress: tuple[str, int, int] | None = None
        self.selected: int | None = None

    @property
    def occupancy(self) -> np.ndarray | None:
        """Particles per state [M] (None without a landscape)."""
        return None if self.landscape is None else self.landscape.occupancy

    @property
    def xy(self) -> np.ndarray | None:
        """The particles on volume PC1 x PC2 [N, 2] (PC2 zero where there is one PC)."""
        if self.landscape is None:
            return None
        pcs = self.landscape.volume_pcs
        if pcs.shape[1] >= 2:
            return np.ascontiguousarray(pcs[:, :2], dtype=np.float32)
        return np.stack([pcs[:, 0], np.zeros(len(pcs), np.float32)], 1).astype(np.float32)

    def is_for(self, z) -> bool:
        """Whether the landscape shown belongs to the latents `z`."""
        return self.landscape is not None and self.z is z

    def set_landscape(self, landscape, z) -> None:
        self.landscape, self.z, self.progress, self.selected = landscape, z, None, None
        self.changed.emit()

    def clear(self) -> None:
        """Other latents: no landscape (computing stops)."""
        if self.landscape is not None or self.progress is not None:
            self.landscape, self.z, self.progress, self.selected = None, None, None, None
            self.changed.emit()

    def set_progress(self, stage: str, done: int, total: int) -> None:
        self.progress = (stage, int(done), int(total))
        self.progress_changed.emit(stage, int(done), int(total))

    def select(self, state: int | None) -> None:
        self.selected = None if state is None else int(state)
        self.selected_changed.emit(self.selected)
