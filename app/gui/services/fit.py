"""The per-image fit of the run shown (`core.analysis.fit`): each image's reconstruction error
under the run, as the colouring 'fit error', and the images above the outlier threshold as a
junk selection (exported like any other).

The fit of the epoch shown is read from `cryoscape eval-images RUN`'s output in the run folder
(RUN/eval_images.EPOCH.npz or .csv; 'final' serves the last epoch) when it is newer than the
weights and holds one row per particle in training order, else from the explorer's cache; else
it is computed on request in a child process (the run's own training images) and cached where
the UMAP is (RUN/analysis_cache, or a temporary folder for a run folder without write bits).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from cryoscape.app.gui.models.colour import FIT_ERROR
from cryoscape.app.gui.services.jobs import Service
from cryoscape.core.analysis.cache import analysis_cache_dir, cached_file
from cryoscape.core.errors import CryoscapeError
from PyQt6.QtCore import pyqtSignal

JUNK = "junk (fit error)"


def fit_sources(run, epoch: int | None) -> list[Path]:
    """eval-images' default outputs that may hold the fit at `epoch`: that epoch's, and the
    final weights' at the last epoch."""
    from cryoscape.core.analysis.fit import default_fit_path

    epochs = [epoch] + ([None] if epoch is None or epoch == max(run.epochs, default=None)
                        else [])
    return [default_fit_path(run, e).with_suffix(s) for e in dict.fromkeys(epochs)
            for s in (".npz", ".csv")]


def cache_name(z, run, epoch: int | None) -> str:
    """The explorer's cached fit: named by the epoch, a digest of the latents and the
    weights' file name."""
    h = hashlib.sha1(np.ascontiguousarray(z, dtype=np.float32).tobytes())
    h.update(run.weights_path(epoch).name.encode())
    return f"eval_images.{'final' if epoch is None else f'e{epoch}'}.{h.hexdigest()[:16]}.npz"


def matches(fit, run, n: int) -> bool:
    """Whether `fit` has one row per latent, in training order (the run's index applied)."""
    from cryoscape.core.analysis.runfiles import particle_index

    if len(fit.mse) != n:
        return False
    ind = particle_index(run)
    return np.array_equal(fit.index, np.arange(n) if ind is None else ind)


def find_fit(run, epoch: int | None, z):
    """The fit of the latents `z` at `epoch` already on disk (eval-images' output, then the
    cache), or None."""
    from cryoscape.core.analysis.fit import load_fit

    weights_time = run.weights_path(epoch).stat().st_mtime
    paths = [p for p in fit_sources(run, epoch)
             if p.is_file() and p.stat().st_mtime >= weights_time]
    paths.append(cached_file(run, cache_name(z, run, epoch)))
    for p in filter(None, paths):
        try:
            fit = load_fit(p)
            if matches(fit, run, len(z)):
                return fit
        except CryoscapeError:
            continue                           # unreadable, or another run's: not this fit
    return None


class FitService(Service):
    """The per-image fit of the latents shown: `fit` (an ImageFit, or None); `fit_ready()`
    when it arrives. Other latents or closing end a computation."""

    fit_ready = pyqtSignal()

    def __init__(self, state, activity, parent=None):
        super().__init__(activity, ("fit",), parent)
        self.state = state
        self.fit = None
        self.thread = self.threads[0]
        self.thread.result.connect(self._on_result)
        self._generation = 0
        self._asked = None                     # the latents being evaluated
        self._junk_asked = False
        self._closing = False
        state.latents_changed.connect(self._latents_changed)

    def shutdown(self) -> None:
        self._closing = True
        super().shutdown()

    @property
    def available(self) -> bool:
        """Whether there is a fit, or the run's particles to compute one from."""
        st = self.state
        if self.fit is not None:
            return True
        path = getattr(st.run, "particles_path", None)
        return st.z is not None and path is not None and Path(path).exists() and \
            hasattr(st.run, "weights_path")

    def _latents_changed(self) -> None:
        self._generation += 1
        self._asked, self._junk_asked = None, False
        self.fit = None
        st = self.state
        if st.z is not None and hasattr(st.run, "weights_path"):
            self.compute(cached_only=True)     # eval-images' output or a cached fit, at once

    def compute(self, cached_only: bool = False) -> None:
        """The fit of the latents shown: from disk, else (unless `cached_only`) evaluated in
        a child process, with its progress in the status bar."""
        st = self.state
        if st.z is None or st.run is None:
            raise CryoscapeError("no particles to evaluate: open a heterogeneous run first")
        if self.fit is not None or (not cached_only and self._asked is st.z):
            return
        if not cached_only and not self.available:
            raise CryoscapeError(f"{st.run.path}: its particle file "
                                 f"{getattr(st.run, 'particles_path', None) or '(none)'} is not "
                                 "found here: evaluate the images with `cryoscape eval-images "
                                 "RUN PARTICLES` and open the run again")
        run, epoch, z = st.run, st.epoch, st.z
        device = str(getattr(run, "device", "cpu"))       # where the explorer decodes
        self._generation += 1
        gen = self._generation
        self._asked = None if cached_only else z
        stop = lambda: self._closing or gen != self._generation

        def job(emit, is_stale):
            from cryoscape.app.gui.services.child import on_run, run_in_child
            from cryoscape.core.analysis.fit import evaluate_images, write_fit

            if stop():
                return
            try:
                fit = find_fit(run, epoch, z)
            except (CryoscapeError, OSError):
                if cached_only:                # a look on opening the run: nothing to say
                    return
                fit = None
            if fit is None and not cached_only:
                try:
                    fit = run_in_child(on_run, (evaluate_images, run.path),
                                       {"epoch": epoch, "device": device},
                                       progress=lambda done, total: emit(("progress", gen,
                                                                          done, total)),
                                       stop=stop, what="per-image fit")
                except CryoscapeError:
                    emit(("failed", gen))          # may be asked for again
                    raise
                if fit is not None:
                    try:
                        write_fit(fit, analysis_cache_dir(run) / cache_name(z, run, epoch))
                    except OSError:
                        pass                   # a cache that cannot be written only costs time
            if fit is not None:
                emit(("fit", gen, z, fit))
        self.thread.submit(job, "" if cached_only else "Evaluating each image's fit "
                                                       "(child process)")

    def _on_result(self, res) -> None:
        """('progress', gen, done, total), ('failed', gen) or ('fit', gen, z, fit)."""
        kind, gen, *rest = res
        if gen != self._generation:
            return
        if kind == "progress":
            self.activity.set_busy("fit", f"Evaluating each image's fit: {rest[0]}/{rest[1]} "
                                          "images")
            return
        self.activity.set_busy("fit", None)
        self._asked = None
        if kind == "failed":
            self._junk_asked = False
            return
        z, fit = rest
        if z is not self.state.z:
            return
        self.fit = fit
        self.state.set_particle_values(FIT_ERROR, fit.mse)
        self.fit_ready.emit()
        if self._junk_asked:
            self._junk_asked = False
            self.select_junk()

    def select_junk(self, name: str = JUNK) -> str | None:
        """Put the images above the fit's outlier threshold (eval-images' rule: median + k x
        1.4826 MAD of the errors) into selection `name`, computing the fit first if needed
        (then the selection follows). Returns the name once selected."""
        if self.fit is None:
            self.compute()
            self._junk_asked = True
            return None
        fit = self.fit
        name = self.state.add_selection(np.flatnonzero(fit.flagged), name)
        self.activity.status.emit(f"{name}: {int(fit.flagged.sum())} of {len(fit.mse)} images "
                                  f"({fit.rule})", 10000)
        return name
