"""Poses: the viewing-direction histogram of the epoch shown, computed off the GUI thread: the
poses an ab initio run found by that epoch (its pose.N.pkl; the newest while it trains, with how
much they moved since the pose file before), or those a known-pose run was given (read once per
run)."""
from __future__ import annotations

from cryoscape.app.gui.models.viewing import ViewingDirections
from cryoscape.app.gui.services.jobs import Service
from cryoscape.core.errors import CryoscapeError


def pose_epoch(files: dict, epoch: int | None) -> int | None:
    """The pose file to show for `epoch`: its own, else the newest up to it (None: the
    final one)."""
    if epoch in files or epoch is None:
        return epoch
    earlier = [k for k in files if k is not None and k <= epoch]
    return max(earlier) if earlier else None


def previous_epoch(files: dict, shown: int | None) -> int | None:
    """The numbered pose file before the one shown (None: there is none)."""
    numbered = sorted(k for k in files if k is not None)
    before = [k for k in numbered if shown is None or k < shown]
    if shown is None and before:
        before = before[:-1]          # the final pose.pkl is a copy of the last numbered one
    return before[-1] if before else None


class PoseService(Service):
    """Keeps `directions` (a ViewingDirections model) at the state's run and epoch."""

    def __init__(self, state, activity, parent=None):
        super().__init__(activity, ("poses",), parent)
        self.state = state
        self.directions = ViewingDirections()
        self.thread = self.threads[0]
        self.thread.result.connect(lambda apply: apply())
        self._given = None                    # (run, histogram) of a known-pose run
        state.latents_changed.connect(self.update)

    def update(self) -> None:
        """Compute the histogram for the state's run and epoch in the worker."""
        from cryoscape.core.analysis.posechanges import pose_changes
        from cryoscape.core.analysis.viewing import direction_histogram

        st, model = self.state, self.directions
        run, epoch = st.run, st.epoch
        if run is None or not hasattr(run, "poses"):
            model.clear("no poses: the run records none")
            return
        given = self._given

        def job(emit, is_stale):
            change = None
            try:
                files = run.pose_files()
                if files:
                    shown = pose_epoch(files, epoch)
                    poses = run.poses(shown)
                    hist = direction_histogram(poses[0])
                    before = previous_epoch(files, shown)
                    if before is not None:
                        change = {"since": before, **pose_changes(*run.poses(before), *poses)}
                elif given is not None and given[0] is run:
                    shown, hist = None, given[1]
                else:
                    shown, hist = None, direction_histogram(run.poses()[0])
            except (CryoscapeError, OSError) as e:
                note = f"no poses: {e}"
                emit(lambda: model.clear(note) if st.run is run else None)
                return

            def apply():
                if st.run is not run or st.epoch != epoch:
                    return                    # superseded: a newer update follows
                if not files:
                    self._given = run, hist
                model.set_histogram(*hist, shown if files else None, bool(files), change)
            emit(apply)
        self.thread.submit(job, "Reading the poses")
