"""A small event mechanism for the models: `Signal` calls its connected callbacks in order, on
the emitting thread (the models change on the GUI thread only: workers report through Qt)."""
from __future__ import annotations


class Signal:
    """Callbacks to call with the arguments of each `emit(...)`, in the order connected."""

    def __init__(self) -> None:
        self._callbacks: list = []

    def connect(self, callback):
        self._callbacks.append(callback)
        return callback

    def disconnect(self, callback) -> None:
        self._callbacks.remove(callback)

    def emit(self, *args) -> None:
        for callback in list(self._callbacks):   # a callback may connect or disconnect others
            callback(*args)
