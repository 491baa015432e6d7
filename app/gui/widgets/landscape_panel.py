"""The landscape's states beside the Landscape view: how many states, the computation's
progress, and a table of the states (colour as on the points, particles, share); a click on a
state shows its map in the volume view."""
from __future__ import annotations

from cryoscape.app.gui.models.colour import category_colours
from cryoscape.app.gui.widgets.guard import guard
from PyQt6.QtCore import Qt
from PyQt6.QtGui import QColor
from PyQt6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

COLUMNS = ("state", "particles", "%")


class LandscapePanel(QWidget):
    """Draws `explorer.landscape.model`; the spin box asks for another number of states
    (`landscape.compute(states)`), a click on a row `landscape.show_state(s)`."""

    def __init__(self, explorer, parent=None):
        super().__init__(parent)
        self.activity, self.landscape = explorer.activity, explorer.landscape
        self.model = explorer.landscape.model
        self.states_box = QSpinBox()
        self.states_box.setRange(2, 20)
        self.states_box.setValue(self.landscape.states)
        self.states_box.setKeyboardTracking(False)     # one request per value settled on
        self.states_box.setToolTip("States: agglomerative clusters of the decoded maps")
        self.stage = QLabel()
        self.stage.setWordWrap(True)
        self.progress = QProgressBar()
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setToolTip("Click a state to see its map (the mean of its decoded maps)")
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setObjectName("landscapeNote")
        row = QHBoxLayout()
        row.addWidget(QLabel("States"))
        row.addWidget(self.states_box)
        row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.stage)
        layout.addWidget(self.progress)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.note)
        self.setMinimumWidth(170)
        self.setMaximumWidth(210)
        self.model.changed.connect(self._changed)
        self.model.progress_changed.connect(self._progress)
        self.model.selected_changed.connect(self._selected)
        self.states_box.valueChanged.connect(
            lambda m: guard(self.activity, self.landscape.compute, m))
        self.table.cellClicked.connect(
            lambda r, _: guard(self.activity, self.landscape.show_state, r))
        self._changed()

    @property
    def occupancy(self) -> list[int]:
        """The particles column, as listed."""
        return [int(self.table.item(r, 1).text()) for r in range(self.table.rowCount())]

    def _changed(self) -> None:
        ls = self.model.landscape
        self.table.setRowCount(0)
        if ls is None:
            computing = self.model.progress is not None
            self.stage.setText("Computing the landscape…" if computing else "")
            self.progress.setVisible(computing)
            self.note.setText("" if computing else "Choose the Landscape view to decode a "
                                                   "sketch of maps and find their states.")
            return
        self.stage.setText("")
        self.progress.hide()
        occ = ls.occupancy
        colours = category_colours(ls.state)
        self.table.setRowCount(len(occ))
        for s, count in enumerate(occ):
            cells = (f"{s}", f"{int(count)}", f"{100 * count / max(occ.sum(), 1):.1f}")
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                if c == 0 and s in colours:
                    item.setBackground(QColor(*colours[s]))
                    item.setForeground(QColor("#10161d"))
                self.table.setItem(s, c, item)
        info = ls.info
        self.states_box.blockSignals(True)
        self.states_box.setValue(int(info.get("states", len(occ))))
        self.states_box.blockSignals(False)
        evr = ls.explained_variance_ratio
        self.note.setText(f"{info.get('sketch', '?')} maps of {info.get('box', '?')}³; volume "
                          f"PC1 {100 * evr[0]:.0f}%"
                          + (f", PC2 {100 * evr[1]:.0f}%" if len(evr) > 1 else "")
                          + " of their variance")

    def _progress(self, stage: str, done: int, total: int) -> None:
        self.stage.setText(f"{stage[:1].upper()}{stage[1:]}: {done}/{total}")
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self.progress.show()
        self.note.setText("")

    def _selected(self, s) -> None:
        if s is None:
            self.table.clearSelection()
        elif self.table.currentRow() != s:
            self.table.selectRow(s)
