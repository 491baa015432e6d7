"""A user action's problems as an error dialog (through the Activity model), not a traceback."""
from __future__ import annotations

from cryoscape.core.errors import CryoscapeError


def guard(activity, fn, *args):
    """`fn(*args)`; a CryoscapeError or OSError becomes `activity.error` (returns None)."""
    try:
        return fn(*args)
    except CryoscapeError as e:
        activity.error.emit("cryoscape", str(e))
    except OSError as e:
        activity.error.emit("File problem", f"{e.filename or ''}: {e.strerror or e}")
