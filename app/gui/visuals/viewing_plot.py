"""The viewing-direction plot (pyqtgraph): particles per equal-area bin as an image, azimuth
(degrees) across, elevation up (the bins are uniform in sin(elevation), labelled in degrees), a
colour bar of the counts."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from cryoscape.app.gui.visuals.latent_view import plain_axes
from PyQt6.QtCore import QRectF

ELEVATION_TICKS = (-60, -30, 0, 30, 60)      # +-90 sit on the edges


class ViewingPlot(pg.PlotWidget):
    """`set_histogram(counts, az_edges, s_edges)` draws counts [n_elevation, n_azimuth];
    `clear_histogram()` empties it."""

    def __init__(self, parent=None):
        super().__init__(parent, background="#10161d")
        plain_axes(self)
        self.setLabel("bottom", "azimuth (deg)")
        self.setLabel("left", "elevation (deg)")
        self.getAxis("left").setTicks(
            [[(float(np.sin(np.radians(e))), f"{e}") for e in ELEVATION_TICKS]])
        self.getAxis("bottom").setTicks([[(float(a), f"{a}") for a in range(-180, 181, 90)]])
        self.setMouseEnabled(x=False, y=False)
        self.hideButtons()
        self.setMinimumHeight(140)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.addItem(self.image)
        self.bar = pg.ColorBarItem(colorMap="viridis", interactive=False, width=12,
                                   label="particles per bin")
        self.bar.setImageItem(self.image, insert_in=self.getPlotItem())
        self.setRange(xRange=(-180, 180), yRange=(-1, 1), padding=0)

    def set_histogram(self, counts: np.ndarray, az_edges, s_edges) -> None:
        counts = np.asarray(counts, np.float32)
        self.image.setImage(counts, autoLevels=False)
        self.image.setRect(QRectF(float(az_edges[0]), float(s_edges[0]),
                                  float(az_edges[-1] - az_edges[0]),
                                  float(s_edges[-1] - s_edges[0])))
        self.bar.setLevels((0.0, max(float(counts.max()), 1.0)))
        self.setRange(xRange=(-180, 180), yRange=(-1, 1), padding=0)

    def clear_histogram(self) -> None:
        self.image.clear()
