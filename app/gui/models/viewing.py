"""The viewing directions shown: an equal-area histogram of the particles' viewing directions
(core.analysis.viewing.direction_histogram) at the epoch shown, for a run with poses (found by
an ab initio run at that epoch, or given to a known-pose run)."""
from __future__ import annotations

import numpy as np
from cryoscape.app.gui.models.events import Signal


class ViewingDirections:
    """`counts` [n_elevation, n_azimuth] over `az_edges` (degrees) x `s_edges` (sin of the
    elevation), of `n` particles at `epoch`; `found`: poses searched (ab initio) rather than
    given; `change`: how much they moved since the pose file before (core.analysis.posechanges:
    {"since", "pose_change_deg", "shift_change_px"}, or None); `note` says why there is nothing
    to show. Event: `changed()`."""

    def __init__(self):
        self.changed = Signal()
        self.counts: np.ndarray | None = None
        self.az_edges: np.ndarray | None = None
        self.s_edges: np.ndarray | None = None
        self.epoch: int | None = None
        self.found = False
        self.change: dict | None = None
        self.note = "no run"

    @property
    def n(self) -> int:
        return 0 if self.counts is None else int(self.counts.sum())

    def set_histogram(self, counts, az_edges, s_edges, epoch: int | None, found: bool,
                      change: dict | None = None) -> None:
        self.counts, self.az_edges, self.s_edges = counts, az_edges, s_edges
        self.epoch, self.found, self.change, self.note = epoch, found, change, ""
        self.changed.emit()

    def clear(self, note: str) -> None:
        self.counts = self.az_edges = self.s_edges = None
        self.epoch, self.found, self.change, self.note = None, False, None, note
        self.changed.emit()
