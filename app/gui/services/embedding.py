"""The embedding: the latents' 2D view (PCA, UMAP in a child process, cached where the CLI
caches it, or the landscape in volume space: the particles at their volume-PC coordinates,
from the landscape service), their k-means clusters and the colouring of the points, computed
off the GUI thread for the latents shown.

Clusters are `core.analysis.sampling.kmeans` with its defaults (k 20 as `cryoscape
analyze/select --k`), so the explorer and the CLI show the same clusters.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from cryoscape.app.gui.models.colour import (
    COLOURINGS,
    COMPUTED,
    LANDSCAPE_STATE,
    Colouring,
    can_colour,
    colouring,
)
from cryoscape.app.gui.services.jobs import Service
from cryoscape.core.analysis.cache import analysis_cache_dir
from cryoscape.core.errors import CryoscapeError
from PyQt6.QtCore import pyqtSignal


@dataclass
class _Analysis:
    generation: int
    kind: str
    xy: np.ndarray | None
    pca: tuple | None
    kmeans: object
    tree: object | None               # UMAP: a KD-tree of z, to place points on the view
    colouring: Colouring


class EmbeddingService(Service):
    """Analyses each epoch's latents (analysis thread: clusters and PCA first, then UMAP or
    the landscape if asked for) and colours the points (colouring thread). `kind` and
    `colour_by` are what the user asked for (the state holds what is shown); `kind_changed(kind)`
    when `kind` changes. `landscape`: the LandscapeService whose landscape the 'Landscape' view
    shows."""

    kind_changed = pyqtSignal(str)

    def __init__(self, state, activity, parent=None, n_clusters: int = 20, landscape=None):
        super().__init__(activity, ("analysis", "colouring"), parent)
        self.state = state
        self.landscape = landscape
        self.n_clusters = n_clusters
        self.analysis_thread, self.colour_thread = self.threads
        for t in self.threads:
            t.result.connect(self._on_result)
        self.kind = "PCA"
        self.colour_by = "k-means"
        self._clusters = None                 # (latents, their k-means): PCA <-> UMAP
        self._generation = 0
        self._closing = False
        state.run_changed.connect(self._run_changed)
        state.latents_changed.connect(self.analyse)
        state.values_changed.connect(self._values_changed)
        if landscape is not None:
            landscape.model.changed.connect(self._landscape_changed)

    def shutdown(self) -> None:
        self._closing = True                  # a UMAP child still computing is ended
        super().shutdown()

    def _run_changed(self) -> None:
        if self.colour_by not in COLOURINGS:    # another run's metadata column
            self.colour_by = "k-means"

    def set_kind(self, kind: str, analyse: bool = True) -> None:
        """'PCA', 'UMAP' (computed in the analysis thread, cached in RUN/analysis_cache) or
        'Landscape' (volume PC1 x PC2, coloured by state); `analyse` False: for the next
        latents only."""
        if kind != self.kind:
            self.kind = kind
            if kind == "Landscape":
                self.colour_by = LANDSCAPE_STATE
            self.kind_changed.emit(kind)
        if analyse and self.state.z is not None:
            self.analyse()

    def analyse(self) -> None:
        """Clusters and views of the latents shown (none for a homogeneous run)."""
        self._generation += 1
        if self.state.homogeneous:
            return
        gen, z = self._generation, self.state.z
        kind = self.kind if z.shape[1] > 1 or self.kind == "Landscape" else "histogram"
        k = min(self.n_clusters, len(z))
        run, epoch = self.state.run, self.state.epoch
        values = dict(self.state.particle_values)

        def job(emit, is_stale):
            from cryoscape.core.analysis.embed import pca
            from cryoscape.core.analysis.sampling import kmeans
            if gen != self._generation:          # other latents or view asked for since
                return
            if self._clusters is None or self._clusters[0] is not z:
                from threadpoolctl import threadpool_limits
                with threadpool_limits(1):       # leave the other cores to the GUI
                    self._clusters = z, kmeans(z, k=k)
            km = self._clusters[1]
            xy, p = None, None
            if z.shape[1] > 1:
                res = pca(z, 2)
                xy, p = res.coords.astype(np.float32), (res.mean, res.components)
            if gen != self._generation:
                return
            emit(self._analysis(gen, "PCA" if xy is not None else "histogram", xy, p, km,
                                values=values))
            if kind == "UMAP":                   # the PCA view and clusters meanwhile
                xy = self._umap(z, analysis_cache_dir(run), epoch, lambda: gen != self._generation)
                if xy is None:
                    return
                from scipy.spatial import cKDTree
                emit(self._analysis(gen, "UMAP", xy, None, km, cKDTree(z), values))
        self.analysis_thread.submit_background(
            job, "UMAP (computing in the background)" if kind == "UMAP" else
            "Embedding and clustering")
        if kind == "Landscape":                  # the PCA view meanwhile, if computed
            self._show_landscape()

    def _show_landscape(self) -> None:
        """The Landscape view of the latents shown: placed in the analysis thread (after their
        clusters) if the landscape is there, else asked of the landscape service."""
        st, model = self.state, self.landscape.model
        if not model.is_for(st.z):
            try:
                self.landscape.compute()
            except CryoscapeError as e:
                self.activity.error.emit("Landscape", str(e))
            return
        gen, z, xy, values = self._generation, st.z, model.xy, dict(st.particle_values)

        def job(emit, is_stale):
            from scipy.spatial import cKDTree
            if gen != self._generation or self._clusters is None or self._clusters[0] is not z:
                return
            emit(self._analysis(gen, "Landscape", xy, None, self._clusters[1], cKDTree(z),
                                values))
        self.analysis_thread.submit_background(job, "Placing the particles on the landscape")

    def _landscape_changed(self) -> None:
        if self.kind == "Landscape" and self.landscape.model.is_for(self.state.z):
            self._show_landscape()

    def _values_changed(self) -> None:
        """Values to colour by arrived (fit error, landscape state): colour by them if asked."""
        st = self.state
        if self.colour_by in st.particle_values and st.labels is not None:
            self.set_colouring(self.colour_by)

    def _analysis(self, gen, kind, xy, p, km, tree=None, values=None) -> _Analysis:
        """The view `xy` with its colouring (analysis thread)."""
        try:
            colours = colouring(self.colour_by, km.labels, xy, self.state.metadata, values)
        except (TypeError, ValueError):          # a column that cannot be coloured
            colours = colouring("k-means", km.labels, xy, None)
        return _Analysis(gen, kind, xy, p, km, tree, colours)

    def _umap(self, z, cache_dir, epoch, superseded):
        """UMAP in a child process, cached where `cryoscape analyze/select` cache it. None if
        `superseded()` (other latents are shown now) or the explorer shuts down: the child is
        terminated."""
        from cryoscape.core.analysis.embed import UmapJob

        job = UmapJob(z, cache_dir, epoch)
        try:
            while not job.ready(0.1):
                if self._closing or superseded():
                    return None
            return job.result()
        finally:
            job.close()

    def _on_result(self, res) -> None:
        if callable(res):                        # a colouring computed for the points shown
            res()
            return
        if res.generation != self._generation:
            return
        st = self.state
        st.set_clusters(res.kmeans.labels, res.kmeans.medoids)
        st.set_embedding(res.kind, res.xy, res.pca, res.tree, res.colouring)
        if res.colouring.by != self.colour_by and can_colour(self.colour_by, st.metadata,
                                                             st.particle_values):
            self.set_colouring(self.colour_by)          # asked for while this was computed

    def set_colouring(self, by: str) -> None:
        """Colour by 'k-means', 'density', 'none', a value computed per particle ('fit
        error', 'landscape state': as soon as it is there) or a metadata column: computed in
        the colouring thread for the points shown (`state.colouring_changed`), or with the
        analysis under way (`state.embedding_changed`)."""
        st = self.state
        if by not in COMPUTED and not can_colour(by, st.metadata):
            raise CryoscapeError(st.metadata_note or f"no metadata column {by!r}")
        self.colour_by = by
        labels, xy, metadata = st.labels, st.embedding, st.metadata
        values = dict(st.particle_values)
        if labels is None or (by in COMPUTED and by not in values):
            return

        def apply(c):
            if st.embedding is xy and st.labels is labels:
                st.set_colouring(c)
            elif st.labels is not None and self.colour_by == by:
                self.set_colouring(by)            # other points shown since: colour those

        def job(emit, is_stale):
            c = colouring(by, labels, xy, metadata, values)
            emit(lambda: apply(c))
        self.colour_thread.submit(job)
