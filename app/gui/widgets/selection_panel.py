"""Named particle selections: list, rename, combine and export (index .pkl, .star, .cs)."""
from __future__ import annotations

from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtWidgets import (
    QHBoxLayout,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)


class SelectionPanel(QWidget):
    """Shows `state.selections`; the current item is the highlighted selection; emits
    `export_requested(name)` (the window asks where to)."""

    export_requested = pyqtSignal(str)

    def __init__(self, state, parent=None):
        super().__init__(parent)
        self.state = state
        self.list = QListWidget()
        self.list.setSelectionMode(QListWidget.SelectionMode.ExtendedSelection)
        self.list.itemChanged.connect(self._renamed)
        self.list.currentItemChanged.connect(lambda item, _: state.set_highlighted(
            item.data(Qt.ItemDataRole.UserRole) if item else None))
        buttons = QHBoxLayout()
        for text, slot in (("Export…", self._export), ("Union", lambda: self._combine("union")),
                           ("Intersect", lambda: self._combine("intersection")),
                           ("Invert", self._invert), ("Delete", self._delete)):
            b = QPushButton(text)
            b.clicked.connect(slot)
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)
        state.selections_changed.connect(self.refresh)
        state.latents_changed.connect(lambda: self.setEnabled(not state.homogeneous))

    def refresh(self) -> None:
        self.list.blockSignals(True)
        self.list.clear()
        for name, ind in self.state.selections.items():
            item = QListWidgetItem(name)
            item.setData(Qt.ItemDataRole.UserRole, name)
            item.setToolTip(f"{len(ind)} particles (double-click to rename)")
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)
            self.list.addItem(item)
        self.list.blockSignals(False)
        if self.list.count():
            self.list.setCurrentRow(self.list.count() - 1)

    def current_name(self) -> str | None:
        """The selection highlighted in the list (None if there is none)."""
        item = self.list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def selected_names(self) -> list[str]:
        return [i.data(Qt.ItemDataRole.UserRole) for i in self.list.selectedItems()]

    def _renamed(self, item: QListWidgetItem) -> None:
        self.state.rename_selection(item.data(Qt.ItemDataRole.UserRole), item.text().strip())

    def _export(self) -> None:
        name = self.current_name()
        if name is not None:
            self.export_requested.emit(name)

    def _combine(self, how: str) -> None:
        from cryoscape.core.analysis import selection

        names = self.selected_names()
        if len(names) >= 2:
            ind = getattr(selection, how)(*(self.state.selections[n] for n in names))
            self.state.add_selection(ind, f"{how} of " + ", ".join(names))

    def _invert(self) -> None:
        from cryoscape.core.analysis.selection import invert

        for n in self.selected_names():
            self.state.add_selection(invert(self.state.selections[n], self.state.n), f"not {n}")

    def _delete(self) -> None:
        for n in self.selected_names():
            self.state.remove_selection(n)
