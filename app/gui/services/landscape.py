"""The conformational landscape of the latents shown (`core.analysis.landscape`): each
particle's state and volume-PC coordinates and the states' maps, computed on request in a child
process with its progress, cached where the UMAP is (RUN/analysis_cache, shared with
`cryoscape landscape`; a temporary folder for a run folder without write bits). A cached one
is read as soon as its latents are shown. A picked state's map goes to the volume view."""
from __future__ import annotations

import numpy as np
from cryoscape.app.gui.models.colour import LANDSCAPE_STATE
from cryoscape.app.gui.models.landscape import LandscapeModel
from cryoscape.app.gui.services.jobs import Service
from cryoscape.core.analysis.cache import analysis_cache_dir, cache_dirs, cached_file
from cryoscape.core.errors import CryoscapeError, InputFileError

DEFAULT_STATES = 5      # as `cryoscape landscape`: its cache serves the explorer


class LandscapeService(Service):
    """Computes the landscape of the latents shown into `model` (a LandscapeModel) with
    `compute_landscape`'s defaults and `states` states; its states become the colouring
    'landscape state'. Other latents (a new epoch or run) or closing end a computation."""

    def __init__(self, state, activity, volumes, parent=None):
        super().__init__(activity, ("landscape",), parent)
        self.state, self.volumes = state, volumes
        self.model = LandscapeModel()
        self.states = DEFAULT_STATES
        self.thread = self.threads[0]
        self.thread.result.connect(self._on_result)
        self._generation = 0
        self._asked: tuple | None = None       # (latents, states) being computed
        self._closing = False
        state.latents_changed.connect(self._latents_changed)

    def shutdown(self) -> None:
        self._closing = True                   # a child still computing is ended
        super().shutdown()

    @property
    def available(self) -> bool:
        """Whether the latents shown can be placed on a landscape: a run with latents and
        weights on disk to decode."""
        return self.state.z is not None and hasattr(self.state.run, "weights_path")

    def _latents_changed(self) -> None:
        self._generation += 1                  # a computation under way is ended
        self._asked = None
        self.model.clear()
        if self.available:
            try:
                self.compute(cached_only=True)     # at once if cached
            except CryoscapeError:                 # e.g. too few particles for the states
                pass

    def compute(self, states: int | None = None, cached_only: bool = False) -> None:
        """The landscape of the latents shown with `states` states: read from the cache, else
        (unless `cached_only`) computed in a child process, its progress in
        `model.progress_changed`. `states` None: any cached landscape of these latents (as
        `cryoscape landscape --states M` left it; the last number asked for preferred), else
        computed with that number. Settings are checked here (CryoscapeError)."""
        from cryoscape.core.analysis.landscape import landscape_settings

        st = self.state
        if not self.available:
            raise CryoscapeError("no latent space of a trained run to place on a landscape: "
                                 "open a heterogeneous run first")
        explicit = states is not None
        states = int(states or self.states)
        current = self.model.landscape
        if self.model.is_for(st.z) and (not explicit or current.info.get("states") == states):
            return
        if not cached_only and self._asked is not None and self._asked[0] is st.z \
                and self._asked[1] == states:
            return                             # under way
        run, epoch, z = st.run, st.epoch, st.z
        device = str(getattr(run, "device", "cpu"))       # where the explorer decodes
        settings = landscape_settings(run, len(z), epoch, states=states)
        self.states = states
        self._generation += 1
        gen = self._generation
        self._asked = None if cached_only else (z, states)
        stop = lambda: self._closing or gen != self._generation

        def job(emit, is_stale):
            from cryoscape.app.gui.services.child import on_run, run_in_child
            from cryoscape.core.analysis.landscape import (
                Landscape,
                cache_key,
                compute_landscape,
                find_cached,
            )

            if stop():
                return
            path = cached_file(run, cache_key(z, epoch, **settings))
            if path is None and not explicit:      # another number of states serves too
                path = next(filter(None, (find_cached(d, z, epoch, settings["weights"], states)
                                          for d in cache_dirs(run))), None)
            if path is not None:
                try:
                    emit(("landscape", gen, z, Landscape.load(path)))
                    return
                except InputFileError:
                    pass                       # cut short: computed again
            if cached_only:
                return
            cache_dir = analysis_cache_dir(run)
            try:
                res = run_in_child(on_run, (compute_landscape, run.path, epoch),
                                   {"states": states, "cache_dir": cache_dir, "device": device},
                                   progress=lambda *p: emit(("progress", gen, *p)), stop=stop,
                                   what="landscape")
            except CryoscapeError:
                emit(("failed", gen))              # may be asked for again
                raise
            if res is not None:
                emit(("landscape", gen, z, res))
        self.thread.submit(job, "" if cached_only else
                           "Landscape: decoding the sketch of maps (child process)")

    def _on_result(self, res) -> None:
        """('progress', gen, stage, done, total), ('failed', gen) or ('landscape', gen, z,
        landscape)."""
        kind, gen, *rest = res
        if gen != self._generation:
            return
        if kind == "progress":
            self.model.set_progress(*rest)
            return
        self._asked = None
        if kind == "failed":
            self.model.clear()
            return
        z, landscape = rest
        st = self.state
        if z is not st.z:
            return
        self.states = int(landscape.info.get("states", self.states))
        st.set_particle_values(LANDSCAPE_STATE, landscape.state)
        self.model.set_landscape(landscape, z)
        occ = landscape.occupancy
        evr = landscape.explained_variance_ratio
        self.activity.status.emit(f"Landscape: {len(occ)} states of {', '.join(map(str, occ))} "
                                  f"particles; volume PC1 holds {100 * evr[0]:.0f}% of the "
                                  "maps' variance", 10000)

    def representative(self, s: int) -> int:
        """The sketch centre standing for state `s`: its centre with the most particles."""
        ls = self.model.landscape
        members = np.flatnonzero(ls.centre_state == s)
        counts = np.bincount(ls.centre_labels, minlength=len(ls.centres))[members]
        return int(members[np.argmax(counts)])

    def show_state(self, s: int) -> None:
        """Show state `s`'s map (the mean of its sketch maps) in the volume view, the current
        point at its representative centre."""
        ls = self.model.landscape
        if ls is None or not self.model.is_for(self.state.z):
            raise CryoscapeError("no landscape yet: choose the Landscape view first")
        if not 0 <= s < len(ls.state_maps):
            raise CryoscapeError(f"no state {s}: the landscape has {len(ls.state_maps)}")
        self.model.select(s)
        self.volumes.show_map(ls.state_maps[s], ls.centres[self.representative(s)],
                              f"state {s} ({int(ls.occupancy[s])} particles)")
