"""The viewing-direction panel: where the particles were viewed from at the epoch shown (the
poses an ab initio run found by then, or a known-pose run's), drawn from the PoseService's
model, with a line that says what is shown."""
from __future__ import annotations

from cryoscape.app.gui.visuals.viewing_plot import ViewingPlot
from PyQt6.QtWidgets import QLabel, QVBoxLayout, QWidget


class ViewingPanel(QWidget):
    """Draws `explorer.poses.directions` in `plot` and describes it in `info`."""

    def __init__(self, explorer, parent=None):
        super().__init__(parent)
        self.directions = explorer.poses.directions
        self.info = QLabel()
        self.info.setWordWrap(True)
        self.plot = ViewingPlot()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.info)
        layout.addWidget(self.plot, 1)
        self.directions.changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        d = self.directions
        if d.counts is None:
            self.plot.clear_histogram()
            self.info.setText(d.note)
            return
        self.plot.set_histogram(d.counts, d.az_edges, d.s_edges)
        if d.found:
            when = "final" if d.epoch is None else f"epoch {d.epoch}"
            moved = "" if d.change is None else (
                f"; since epoch {d.change['since']} moved a median "
                f"{d.change['pose_change_deg']:.2g}° and {d.change['shift_change_px']:.2g} px")
            self.info.setText(f"poses found (ab initio), {when}: {d.n} particles{moved}")
        else:
            self.info.setText(f"poses given to the run: {d.n} particles")
