"""The latent scatter (pyqtgraph): points coloured by cluster, metadata or density; a histogram
for zdim 1; a note instead for runs without latents; hover, click, lasso and rectangle
selection, and the trajectory drawn on top. Axes show values as they are (no SI prefix).

Large embeddings stay interactive by drawing a fixed random subset of at most `max_drawn`
points; hover and clicks pick among the drawn points, selections take every particle.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QPoint, QPointF, Qt, pyqtSignal
from PyQt6.QtGui import QAction, QActionGroup
from PyQt6.QtWidgets import QGraphicsItem, QLabel, QToolBar, QVBoxLayout, QWidget
from scipy.spatial import cKDTree

MODES = ("pick", "lasso", "rect", "path")
PLAIN = "#7cc4f0"                           # points without colouring, the histogram
SELECTED = "#ffd166"                        # the outline of a selection
MODE_TIPS = {"pick": "Click a point to decode its volume; drag to pan (P)",
             "lasso": "Draw a lasso around particles to select them (L)",
             "rect": "Drag a rectangle to select particles (R)",
             "path": "Click particles to add trajectory waypoints (W)"}


class _SelectViewBox(pg.ViewBox):
    """A ViewBox whose left drag draws a lasso or rectangle in the selection modes."""

    def __init__(self, owner):
        super().__init__()
        self.owner = owner
        self.outline = pg.PlotCurveItem(pen=pg.mkPen("#ffd166", width=1.5, style=Qt.PenStyle.DashLine))
        self.outline.setZValue(20)
        self.addItem(self.outline, ignoreBounds=True)
        self._pts: list[QPointF] = []

    def mouseDragEvent(self, ev, axis=None):
        mode = self.owner.mode
        if mode not in ("lasso", "rect") or ev.button() != Qt.MouseButton.LeftButton:
            return super().mouseDragEvent(ev, axis)
        ev.accept()
        p = self.mapSceneToView(ev.scenePos())
        if ev.isStart():
            self._pts = [self.mapSceneToView(ev.buttonDownScenePos()), p]
        elif mode == "lasso":
            self._pts.append(p)
        else:
            self._pts[1] = p
        poly = self._polygon(mode)
        closed = np.vstack([poly, poly[:1]])
        self.outline.setData(closed[:, 0], closed[:, 1])
        if ev.isFinish():
            self.outline.setData([], [])
            self.owner.select_polygon(poly)

    def _polygon(self, mode) -> np.ndarray:
        pts = np.array([[p.x(), p.y()] for p in self._pts])
        if mode == "rect":
            (x0, y0), (x1, y1) = pts[0], pts[-1]
            return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        return pts


class LatentView(QWidget):
    """Scatter of the 2D embedding (or a histogram of z for zdim 1)."""

    particle_clicked = pyqtSignal(int)
    particle_hovered = pyqtSignal(int)       # -1 when the cursor leaves the points
    polygon_selected = pyqtSignal(object)    # particle indices inside the drawn shape
    waypoint_clicked = pyqtSignal(int)

    def __init__(self, parent=None, max_drawn: int = 50_000, hover_px: float = 10.0):
        super().__init__(parent)
        self.max_drawn = max_drawn
        self.hover_px = hover_px
        self.mode = "pick"
        self.xy: np.ndarray | None = None          # [N, 2] positions used for picking
        self.histogram = False
        self._drawn = np.zeros(0, np.int64)
        self._tree = None
        self._order = np.zeros(0, np.int64)
        self._scale = np.ones(2)

        self.viewbox = _SelectViewBox(self)
        self.plot = pg.PlotWidget(viewBox=self.viewbox, background="#10161d")
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        plain_axes(self.plot)
        self.scatter = pg.ScatterPlotItem(size=5, pen=None, pxMode=True, antialias=False)
        # the points are redrawn from a cached pixmap while only overlays (current point,
        # path, hover label) change: moving the marker does not repaint 50,000 points
        self.scatter.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self.selected = pg.ScatterPlotItem(size=8, pen=pg.mkPen(SELECTED, width=1.2),
                                           brush=None, pxMode=True)
        self.hist = pg.PlotCurveItem(pen=pg.mkPen(PLAIN))
        self.hist_selected = pg.PlotCurveItem(pen=pg.mkPen(SELECTED, width=1.2))
        self._edges = np.zeros(0)                # the histogram's bin edges (zdim 1)
        self.path = pg.PlotCurveItem(pen=pg.mkPen("#ff8c42", width=3))
        self.waypoints = pg.ScatterPlotItem(size=12, symbol="d", brush="#ff8c42",
                                            pen=pg.mkPen("w", width=1))
        self.current = pg.ScatterPlotItem(size=16, symbol="star", brush="#ffffff",
                                          pen=pg.mkPen("#10161d", width=1))
        self.marker = pg.InfiniteLine(angle=90, pen=pg.mkPen("#ffffff", width=2))
        self.label = pg.TextItem(color="#dfe6ee", anchor=(0, 1), fill="#10161dcc")
        for z, item in enumerate([self.hist, self.hist_selected, self.scatter, self.selected,
                                  self.path, self.waypoints, self.current, self.marker,
                                  self.label]):
            item.setZValue(z)
            self.plot.addItem(item, ignoreBounds=item in (self.label, self.marker))
        self.marker.hide()
        self.label.hide()
        self.plot.scene().sigMouseMoved.connect(self._mouse_moved)
        self.plot.scene().sigMouseClicked.connect(self._mouse_clicked)

        self.toolbar = QToolBar("Latent tools", self)
        group = QActionGroup(self)
        self.mode_actions: dict[str, QAction] = {}
        for m in MODES:
            a = QAction(m.capitalize() if m != "rect" else "Rectangle", self, checkable=True)
            a.setToolTip(MODE_TIPS[m])
            a.setChecked(m == "pick")
            a.triggered.connect(lambda _=False, m=m: self.set_mode(m))
            group.addAction(a)
            self.toolbar.addAction(a)
            self.mode_actions[m] = a
        self.toolbar.addSeparator()
        self.fit_action = self.toolbar.addAction("Fit", self.fit)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.toolbar)
        self.hint = QLabel()                     # a line of guidance above the points
        self.hint.setObjectName("latentHint")
        self.hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.hint.setStyleSheet("background: #10161d; color: #ffd166; font-size: 15px; "
                                "padding: 4px;")
        self.hint.hide()
        layout.addWidget(self.hint)
        layout.addWidget(self.plot)
        self.note = QLabel()
        self.note.setObjectName("latentNote")
        self.note.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.note.setWordWrap(True)
        self.note.setStyleSheet("background: #10161d; color: #dfe6ee; font-size: 15px;")
        layout.addWidget(self.note, 1)
        self.note.hide()

    # -- data --------------------------------------------------------------------------------
    def set_hint(self, text: str | None) -> None:
        """A line of guidance above the points (None hides it)."""
        self.hint.setText(text or "")
        self.hint.setVisible(bool(text))

    def set_message(self, text: str) -> None:
        """No points to show (e.g. a homogeneous run): a note in place of the plot."""
        self.xy, self.histogram, self._tree = None, False, None
        self._drawn = np.zeros(0, np.int64)
        for item in (self.scatter, self.selected, self.path, self.waypoints, self.current):
            item.setData([], [])
        for item in (self.hist, self.hist_selected):
            item.setData([], [], stepMode=None)       # a histogram's stepMode wants one more x
        self.note.setText(text)
        self.plot.hide()
        self.toolbar.hide()
        self.note.show()

    def _show_plot(self) -> None:
        self.note.hide()
        self.toolbar.show()
        self.plot.show()

    def set_points(self, xy: np.ndarray, axis_names=("PC1", "PC2"), keep_view=False,
                   colours: np.ndarray | None = None) -> None:
        """Show a scatter of `xy` [N, 2], coloured by `colours` (see `set_brushes`)."""
        self._show_plot()
        self.histogram = False
        self.hist.hide()
        self.hist_selected.setData([], [], stepMode=None)
        self.xy = np.asarray(xy, dtype=np.float64)
        n = len(self.xy)
        rng = np.random.default_rng(0)
        self._drawn = np.sort(rng.choice(n, self.max_drawn, replace=False)) \
            if n > self.max_drawn else np.arange(n)
        drawn = self.xy[self._drawn]
        span = np.ptp(drawn, axis=0) if n else np.ones(2)
        self._scale = 1.0 / np.where(span > 0, span, 1.0)
        self._tree = cKDTree(drawn * self._scale) if n else None
        self.scatter.setData(pos=drawn, data=self._drawn, brush=self._brushes(colours))
        self.scatter.show()
        self.plot.setLabel("bottom", axis_names[0])
        self.plot.setLabel("left", axis_names[1])
        if not keep_view:
            self.fit()

    def set_histogram(self, z1: np.ndarray, bins: int = 100, keep_view=False) -> None:
        """zdim 1: a histogram of z; picking uses the z value under the cursor."""
        self._show_plot()
        z1 = np.asarray(z1, dtype=np.float64).ravel()
        counts, self._edges = np.histogram(z1, bins=bins)
        self.histogram = True
        self.xy = np.stack([z1, np.zeros_like(z1)], 1)
        self._drawn = np.zeros(0, np.int64)
        self._tree = None
        self._order = np.argsort(z1, kind="stable")
        self.scatter.setData([], [])
        self.scatter.hide()
        self.hist.setData(self._edges, counts, stepMode="center", fillLevel=0, brush="#3c8dbc88")
        self.hist.show()
        self.plot.setLabel("bottom", "z")
        self.plot.setLabel("left", "particles")
        if not keep_view:
            self.fit()

    @property
    def n_points(self) -> int:
        return 0 if self.xy is None else len(self.xy)

    @property
    def n_drawn(self) -> int:
        return len(self._drawn)

    def set_brushes(self, colours: np.ndarray | None) -> None:
        """Per-particle RGBA colours [N, 4] uint8 (None, or colours of other particles: one
        colour)."""
        if not self.histogram and self.xy is not None:
            self.scatter.setBrush(self._brushes(colours))

    def _brushes(self, colours: np.ndarray | None):
        """A brush per drawn point (one brush per distinct colour), or the plain brush."""
        if colours is None or len(colours) != len(self.xy):
            return pg.mkBrush(PLAIN)
        rgba = np.ascontiguousarray(colours[self._drawn], dtype=np.uint8)
        keys, inv = np.unique(rgba.view(np.uint32).ravel(), return_inverse=True)
        brushes = [pg.mkBrush(*k) for k in keys.view(np.uint8).reshape(-1, 4)]
        return np.array(brushes, dtype=object)[inv]

    def set_selected(self, ind: np.ndarray | None) -> None:
        """Outline particles `ind` (None: none): their points, or for zdim 1 their histogram
        drawn over everyone's."""
        self.selected.setData([], [])
        self.hist_selected.setData([], [], stepMode=None)
        if ind is None or self.xy is None:
            return
        if self.histogram:
            counts = np.histogram(self.xy[ind, 0], bins=self._edges)[0]
            self.hist_selected.setData(self._edges, counts, stepMode="center", fillLevel=0,
                                       brush=SELECTED + "66")
            return
        shown = np.intersect1d(ind, self._drawn) if len(ind) > self.max_drawn else ind
        self.selected.setData(pos=self.xy[shown])

    def set_current(self, xy: np.ndarray | None) -> None:
        if xy is None:
            self.current.setData([], [])
            self.marker.hide()
        elif self.histogram:
            self.marker.setValue(float(xy[0]))
            self.marker.show()
        else:
            self.current.setData(pos=np.atleast_2d(xy))

    def set_path(self, path_xy: np.ndarray | None, waypoint_xy: np.ndarray | None) -> None:
        if path_xy is None or self.histogram:
            self.path.setData([], [])
        else:
            self.path.setData(path_xy[:, 0], path_xy[:, 1])
        if waypoint_xy is None or not len(waypoint_xy):
            self.waypoints.setData([], [])
        else:
            self.waypoints.setData(pos=waypoint_xy)

    def fit(self) -> None:
        """Show every point, and keep following the data (new epochs) until the user pans or
        zooms."""
        self.viewbox.autoRange(padding=0.05)
        self.viewbox.enableAutoRange()

    # -- interaction -------------------------------------------------------------------------
    def set_mode(self, mode: str) -> None:
        self.mode = mode
        self.mode_actions[mode].setChecked(True)
        self.viewbox.setMouseEnabled(x=True, y=True)

    def nearest(self, pos: QPointF, max_px: float | None = None) -> int:
        """Particle nearest a view position, or -1 if none within `max_px` screen pixels."""
        if self.xy is None or not len(self.xy):
            return -1
        p = np.array([pos.x(), pos.y()])
        if self.histogram:                      # the particle whose z is nearest the cursor
            z = self.xy[self._order, 0]
            k = np.clip(np.searchsorted(z, p[0]), 1, len(z) - 1)
            k = k - 1 if p[0] - z[k - 1] <= z[k] - p[0] else k
            return int(self._order[k]) if len(z) > 1 else int(self._order[0])
        i = int(self._drawn[self._tree.query(p * self._scale)[1]])
        px = self.viewbox.viewPixelSize()
        dist = np.hypot((self.xy[i, 0] - p[0]) / px[0], (self.xy[i, 1] - p[1]) / px[1])
        limit = self.hover_px if max_px is None else max_px
        return i if dist <= limit else -1

    def click_at(self, pos: QPointF) -> None:
        i = self.nearest(pos)
        if i < 0:
            return
        if self.mode == "path":
            self.waypoint_clicked.emit(i)
        else:
            self.particle_clicked.emit(i)

    def select_polygon(self, polygon: np.ndarray) -> np.ndarray:
        """Particles inside `polygon` [m, 2] (view coordinates); emits `polygon_selected`."""
        from cryoscape.core.analysis.selection import in_polygon

        if self.xy is None or len(polygon) < 3:
            return np.zeros(0, np.int64)
        if self.histogram:
            lo, hi = np.min(polygon[:, 0]), np.max(polygon[:, 0])
            ind = np.flatnonzero((self.xy[:, 0] >= lo) & (self.xy[:, 0] <= hi))
        else:
            ind = in_polygon(self.xy, polygon)
        self.polygon_selected.emit(ind)
        return ind

    def _mouse_clicked(self, ev) -> None:
        if ev.button() == Qt.MouseButton.LeftButton and \
                self.viewbox.sceneBoundingRect().contains(ev.scenePos()):
            self.click_at(self.viewbox.mapSceneToView(ev.scenePos()))

    def _mouse_moved(self, scene_pos) -> None:
        if self.xy is None or not self.viewbox.sceneBoundingRect().contains(scene_pos):
            self.label.hide()
            return
        pos = self.viewbox.mapSceneToView(scene_pos)
        i = self.nearest(pos)
        if i < 0:
            self.label.hide()
        else:
            self.label.setText(f"particle {i}")
            self.label.setPos(pos)
            self.label.show()
        self.particle_hovered.emit(i)

    def pixel_of(self, i: int) -> QPoint:
        """Widget coordinates (of `self.plot`) of particle i: for tests and scripted clicks."""
        scene = self.viewbox.mapViewToScene(QPointF(*self.xy[i]))
        return self.plot.mapFromScene(scene)


def plain_axes(plot: pg.PlotWidget) -> None:
    """Tick values as they are: no automatic SI prefix ("PC1 (x0.001)")."""
    for side in ("bottom", "left"):
        plot.getAxis(side).enableAutoSIPrefix(False)
