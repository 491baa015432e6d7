"""The training loss curve (pyqtgraph): one point per epoch, coloured by the epoch's pose phase
where the run searched its poses (pretrain / search / refine, with a legend), the reconstruction
error alone beside it (dashed: the loss also holds the KL term, or while ab initio sorts its
classes the pull towards them, so it steps where the phase changes; the data term does not),
whole-number epoch ticks, values without SI prefixes, and a note where a run has no loss
record."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from cryoscape.app.gui.visuals.latent_view import plain_axes

LOSS_COLOUR = "#7cc4f0"
MSE_COLOUR = "#9aa7b4"
PHASE_COLOURS = {"pretrain": "#d9a05b", "search": "#e0607e", "refine": "#8fd694"}


class EpochAxis(pg.AxisItem):
    """Epochs are whole numbers: ticks at integers only, however few epochs are shown."""

    def tickSpacing(self, minVal, maxVal, size):
        levels = super().tickSpacing(minVal, maxVal, size)
        return [(s, o) for s, o in levels if s >= 1 and float(s).is_integer()] or [(1.0, 0.0)]


class LossPlot(pg.PlotWidget):
    """`set_metrics(rows)` draws metrics.jsonl's rows (epoch, loss; `poses`: the phase of an
    ab initio epoch, one scatter per phase in `phase_points`)."""

    def __init__(self, parent=None):
        super().__init__(parent, background="#10161d", axisItems={"bottom": EpochAxis("bottom")})
        plain_axes(self)
        self.setLabel("bottom", "epoch")
        self.setLabel("left", "loss")
        self.setMinimumHeight(120)
        self.curve = self.plot(pen=pg.mkPen(LOSS_COLOUR, width=2), symbol="o", symbolSize=5,
                               symbolBrush=LOSS_COLOUR)
        self.mse_curve = self.plot(pen=pg.mkPen(MSE_COLOUR, width=1.5,
                                                style=pg.QtCore.Qt.PenStyle.DashLine))
        self.legend = self.addLegend(offset=(-8, 4), labelTextColor="#c8d2dc",
                                     colCount=4)      # one row: clear of a falling curve
        self.phase_points = {}
        for phase, colour in PHASE_COLOURS.items():
            self.phase_points[phase] = pts = pg.PlotDataItem(
                [], [], pen=None, symbol="o", symbolSize=8, symbolBrush=colour,
                symbolPen=pg.mkPen(colour))
            self.addItem(pts)
        self.note = pg.TextItem("no loss record", color="#8a97a6", anchor=(0.5, 0.5))
        self.note.setPos(0.5, 0.5)
        self.addItem(self.note, ignoreBounds=True)

    def set_metrics(self, rows: list) -> None:
        """The loss of each row and its reconstruction error `mse` where recorded (none: the
        note says so, not the last run's curve)."""
        mse = [(r.get("epoch", i + 1), r["mse"]) for i, r in enumerate(rows)
               if isinstance(r.get("mse"), (int, float))]
        rows = [(r.get("epoch", i + 1), r["loss"], r.get("poses")) for i, r in enumerate(rows)
                if isinstance(r.get("loss"), (int, float))]
        self.note.setVisible(not rows)          # e.g. a cryoDRGN run: no metrics.jsonl
        self.legend.clear()
        self.mse_curve.setData(*(np.array(mse, dtype=float).T if mse else ([], [])))
        if mse:
            self.legend.addItem(self.mse_curve, "mse")
        for phase, item in self.phase_points.items():
            xy = [(e, loss) for e, loss, p in rows if p == phase]
            item.setData(*(np.array(xy, dtype=float).T if xy else ([], [])))
            if xy:
                self.legend.addItem(item, phase)
        if rows:
            x, y = np.array([r[:2] for r in rows], dtype=float).T
            self.curve.setData(x, y)
            self.enableAutoRange()              # setRange below turned it off
        else:
            self.curve.setData([], [])
            self.setRange(xRange=(0, 1), yRange=(0, 1), padding=0)
