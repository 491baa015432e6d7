"""Runs: open a run directory (cryoscape or cryoDRGN), step through its epochs, and read the
particles' metadata (to colour by) off the GUI thread."""
from __future__ import annotations

from pathlib import Path

from cryoscape.app.gui.models.colour import colour_columns
from cryoscape.app.gui.services.jobs import Service
from cryoscape.core.errors import CryoscapeError
from PyQt6.QtCore import pyqtSignal


def load_metadata(run, n: int):
    """(table, note): the particles' star/cs metadata in training order, or None and why not."""
    from cryoscape.core.analysis.runfiles import particle_index
    from cryoscape.core.io.particles import read_metadata

    path = getattr(run, "particles_path", None)
    if not path:
        return None, "metadata colouring off: the run does not record its particle file"
    path = Path(path)
    if not path.exists():
        return None, f"metadata colouring off: particle file {path} not found"
    table = read_metadata(path)
    if table is None:
        return None, f"metadata colouring off: {path.name} is an image stack without metadata"
    ind = particle_index(run)
    if ind is not None:
        table = table.iloc[ind].reset_index(drop=True)
    if len(table) != n:
        return None, f"metadata colouring off: {path.name} has {len(table)} rows for {n} particles"
    return table, ""


class RunService(Service):
    """Shows a run in the state; `opened(run)` when one was opened from its folder."""

    opened = pyqtSignal(object)

    def __init__(self, state, activity, parent=None):
        super().__init__(activity, ("metadata",), parent)
        self.state = state
        self.thread = self.threads[0]
        self.thread.result.connect(lambda apply: apply())

    def open_run(self, path, epoch: int | None = None):
        """Open a run directory (cryoscape or cryoDRGN); errors raise CryoscapeError."""
        from cryoscape.core.run import Run

        run = Run.open(path)
        self.set_run(run, epoch)
        self.opened.emit(run)
        return run

    def set_run(self, run, epoch: int | None = None) -> None:
        """Show `run` (any object with the Run API) at `epoch` (the last by default)."""
        st = self.state
        st.set_run(run, epoch)
        what = "homogeneous (decoder only, one map)" if st.homogeneous else \
            f"{st.n} particles, zdim {st.zdim}"
        when = "no epoch saved yet" if st.epoch is None and not run.epochs else \
            f"epoch {st.epoch}"
        self.activity.status.emit(f"Opened {run.path}: {what}, box {run.D}, {run.apix:g} Å/px, "
                                  f"{when}")
        if not st.homogeneous:
            self._load_metadata()

    def set_epoch(self, epoch: int) -> None:
        self.state.set_epoch(epoch)

    def _load_metadata(self) -> None:
        st = self.state
        run, n = st.run, st.n

        def job(emit, is_stale):
            try:
                table, note = load_metadata(run, n)
            except CryoscapeError as e:
                table, note = None, f"metadata colouring off: {e}"
            columns = colour_columns(table)
            emit(lambda: st.set_metadata(table, note, columns) if st.run is run else None)
        self.thread.submit_background(job, "Reading the particles' metadata")
