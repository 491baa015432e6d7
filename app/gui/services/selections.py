"""Selections: a named particle subset written for other programs, as `cryoscape select`
writes it (`core.analysis.selection.export_selection`: an index .pkl, a filtered RELION .star,
a cryoSPARC .cs + .csg or the images as .mrcs, in rows of the run's particle file)."""
from __future__ import annotations

from pathlib import Path


class SelectionService:
    """Exports the state's selections (quick: on the GUI thread)."""

    def __init__(self, state, activity):
        self.state, self.activity = state, activity

    def export(self, name: str, out, source=None) -> Path:
        """Write selection `name` as `out` (.pkl, .star, .cs or .mrcs by its extension; a
        .star/.cs/.mrcs subset is cut from `source`, by default the run's particle file)."""
        from cryoscape.core.analysis.selection import export_selection

        return Path(export_selection(self.state.run, self.state.selections[name], out,
                                     particles=source))
