"""Selections: a named particle subset written for other programs (an index .pkl, a filtered
RELION .star or a cryoSPARC .cs + .csg), as rows of the particle file the run was trained on."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from cryoscape.core.errors import CryoscapeError


class SelectionService:
    """Exports the state's selections (quick: on the GUI thread)."""

    def __init__(self, state, activity):
        self.state, self.activity = state, activity

    def export(self, name: str, out, source=None) -> Path:
        """Write selection `name` as `out` (.pkl, .star or .cs; a .star/.cs subset is cut from
        `source`, by default the run's particle file)."""
        from cryoscape.core import export

        ind = self.state.selections[name]
        out = Path(out)
        suffix = out.suffix.lower()
        if suffix == ".pkl":
            return export.export_index(out, self._source_rows(ind))
        src = Path(source or self.state.run.particles_path or "")
        if suffix not in (".star", ".cs"):
            raise CryoscapeError(f"{out.name}: export as .pkl, .star or .cs")
        if src.suffix.lower() != suffix or not src.exists():
            raise CryoscapeError(f"to write a {suffix} subset, choose the {suffix} file the run "
                                 f"was trained on (the run's particles: {src})")
        if suffix == ".star":
            return export.export_star(src, self._source_rows(ind), out)
        return export.export_cs(src, self._source_rows(ind), out)[0]

    def _source_rows(self, ind) -> np.ndarray:
        """Selection indices (training order) as rows of the run's particle file."""
        from cryoscape.core.analysis.runfiles import to_particle_indices

        return to_particle_indices(self.state.run, ind)
