"""What the explorer is busy with, and what it has to say: a plain model the status bar and the
error dialog draw. Services report here from the GUI thread."""
from __future__ import annotations

from cryoscape.app.gui.models.events import Signal


class Activity:
    """Tasks under way (name -> what, in words) and messages. Events: `busy_changed(busy,
    what)`, `status(message)` or `status(message, milliseconds shown)`, `error(title,
    message)`."""

    def __init__(self):
        self.busy_changed = Signal()
        self.status = Signal()
        self.error = Signal()
        self.tasks: dict[str, str] = {}

    def set_busy(self, name: str, what: str | None) -> None:
        """Task `name` is doing `what` (None: done)."""
        if what is None:
            self.tasks.pop(name, None)
        else:
            self.tasks[name] = what
        self.busy_changed.emit(bool(self.tasks), next((w for w in self.tasks.values() if w), ""))
