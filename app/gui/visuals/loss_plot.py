"""The training loss curve (pyqtgraph): one point per epoch, whole-number epoch ticks, values
without SI prefixes, and a note where a run has no loss record."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from cryoscape.app.gui.visuals.latent_view import plain_axes


class EpochAxis(pg.AxisItem):
    """Epochs are whole numbers: ticks at integers only, however few epochs are shown."""

    def tickSpacing(self, minVal, maxVal, size):
        levels = super().tickSpacing(minVal, maxVal, size)
        return [(s, o) for s, o in levels if s >= 1 and float(s).is_integer()] or [(1.0, 0.0)]


class LossPlot(pg.PlotWidget):
    """`set_metrics(rows)` draws metrics.jsonl's rows (epoch, loss)."""

    def __init__(self, parent=None):
        super().__init__(parent, background="#10161d", axisItems={"bottom": EpochAxis("bottom")})
        plain_axes(self)
        self.setLabel("bottom", "epoch")
        self.setLabel("left", "loss")
        self.setMinimumHeight(120)
        self.curve = self.plot(pen=pg.mkPen("#7cc4f0", width=2), symbol="o", symbolSize=5,
                               symbolBrush="#7cc4f0")
        self.note = pg.TextItem("no loss record", color="#8a97a6", anchor=(0.5, 0.5))
        self.note.setPos(0.5, 0.5)
        self.addItem(self.note, ignoreBounds=True)

    def set_metrics(self, rows: list) -> None:
        """The loss of each row (none: the note says so, not the last run's curve)."""
        pts = [(r.get("epoch", i + 1), r["loss"]) for i, r in enumerate(rows)
               if isinstance(r.get("loss"), (int, float))]
        self.note.setVisible(not pts)           # e.g. a cryoDRGN run: no metrics.jsonl
        if pts:
            x, y = np.array(pts, dtype=float).T
            self.curve.setData(x, y)
            self.enableAutoRange()              # setRange below turned it off
        else:
            self.curve.setData([], [])
            self.setRange(xRange=(0, 1), yRange=(0, 1), padding=0)
