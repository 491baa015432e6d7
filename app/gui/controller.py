"""The explorer's logic, between the state and the worker threads (no widgets here).

`Explorer` opens runs, computes embeddings and clusters in the analysis thread, decodes volumes
in the decode thread (a reduced-box preview first, then the full box; the nearest cached volume
at once), meshes them in the mesh thread and announces finished meshes; it also exports
selections, maps and trajectories. Widgets connect to its signals; tests drive it directly.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cryoscape.app.gui.decode_cache import CacheProgress, DecodeCache, cache_anchors
from cryoscape.app.gui.isosurface import Mesh, isosurface
from cryoscape.app.gui.models.colour import (
    COLOURINGS,
    Colouring,
    can_colour,
    colour_columns,
    colouring,
)
from cryoscape.app.gui.models.explorer import ExplorerState
from cryoscape.app.gui.workers import JobThread
from cryoscape.core.errors import CryoscapeError
from PyQt6.QtCore import QObject, pyqtSignal

PREVIEW_D = 32


@dataclass
class VolumeResult:
    """A decoded map: `source` is 'cache', 'preview' or 'exact'; `t0` when it was asked for."""
    volume: np.ndarray
    z: np.ndarray
    D: int
    source: str
    request: int
    t0: float
    index: int | None = None


@dataclass
class MeshResult:
    mesh: Mesh
    volume: VolumeResult
    which: int = 0


@dataclass
class _Analysis:
    generation: int
    kind: str
    xy: np.ndarray | None
    pca: tuple | None
    kmeans: object
    tree: object | None               # UMAP: a KD-tree of z, to place points on the view
    colouring: Colouring
    anchors: np.ndarray               # the particles whose maps the cache holds


@dataclass
class _Done:
    """A finished job of the analysis, trajectory, export or colouring thread: `apply()` runs
    on the GUI thread."""
    apply: object


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


class Explorer(QObject):
    """Runs the explorer's work in worker threads: decode (maps, the cache), mesh (surfaces),
    analysis (embedding, clusters, metadata), trajectory (paths and their previews), export
    (map series, movies) and colouring.

    Clusters are `core.analysis.sampling.kmeans` with its defaults (k 20 as `cryoscape
    analyze/select --k`), so the explorer and the CLI show the same clusters.
    """

    mesh_ready = pyqtSignal(object)        # MeshResult
    volume_ready = pyqtSignal(object)      # VolumeResult (every stage)
    status = pyqtSignal(str)
    error = pyqtSignal(str, str)           # title, message
    busy = pyqtSignal(bool, str)           # busy, what (analysis, trajectory, export work)
    cache_progress = pyqtSignal(int, int)
    task_done = pyqtSignal(str, object)    # name, result (exports, paths)

    def __init__(self, state: ExplorerState | None = None, parent=None, cache_D: int = 24,
                 n_clusters: int = 20):
        super().__init__(parent)
        self.state = state or ExplorerState()
        self.cache_D = cache_D                # the cache's box; smaller for smaller runs
        self.cache = DecodeCache(D=cache_D)
        self.n_clusters = n_clusters
        self.decode_thread = JobThread("decode", self)
        self.mesh_thread = JobThread("mesh", self)
        self.analysis_thread = JobThread("analysis", self)
        self.trajectory_thread = JobThread("trajectory", self)
        self.export_thread = JobThread("export", self)
        self.colour_thread = JobThread("colouring", self)
        self.threads = [self.decode_thread, self.mesh_thread, self.analysis_thread,
                        self.trajectory_thread, self.export_thread, self.colour_thread]
        self.decode_thread.result.connect(self._on_decoded)
        self.mesh_thread.result.connect(self._on_meshed)
        self.analysis_thread.result.connect(self._on_analysis)
        for t in (self.trajectory_thread, self.export_thread, self.colour_thread):
            t.result.connect(self._on_analysis)
        for t in (self.analysis_thread, self.trajectory_thread, self.export_thread):
            t.busy.connect(self._on_busy)
        for t in self.threads:      # bound methods: delivered on the GUI thread (queued)
            t.error.connect(self._on_error)
            t.start()
        self.embedding_kind = "PCA"
        self.colour_by = "k-means"            # what the user asked for (the state: what's shown)
        self.current: VolumeResult | None = None
        self.current_mesh: Mesh | None = None
        self.pinned: VolumeResult | None = None
        self.path_volumes: list[np.ndarray] = []
        self._knn = None                      # (latents, their kNN graph) for paths
        self._clusters = None                 # (latents, their k-means): PCA <-> UMAP
        self._request = 0
        self._generation = 0
        self._busy: dict[str, str] = {}        # thread name -> what it is doing
        self._shown_cache = -1
        self._timed_request = -1
        self._closing = False
        self.timings: dict[str, float] = {}
        self.state.latents_changed.connect(self._analyse_latents)
        self.state.threshold_changed.connect(lambda _: self.remesh())

    # -- lifecycle ---------------------------------------------------------------------------
    def _on_busy(self, busy: bool, what: str) -> None:
        self.set_busy(self.sender().objectName(), what if busy else None)

    def set_busy(self, name: str, what: str | None) -> None:
        """Task `name` is doing `what` (None: done); `busy` says whether any task is."""
        if what is None:
            self._busy.pop(name, None)
        else:
            self._busy[name] = what
        self.busy.emit(bool(self._busy), next((w for w in self._busy.values() if w), ""))

    def _on_error(self, message: str) -> None:
        name = self.sender().objectName() if self.sender() is not None else "worker"
        self.error.emit(f"{name.capitalize()} failed", message)

    def shutdown(self) -> None:
        self._closing = True
        for t in self.threads:
            t.stop()

    # -- runs --------------------------------------------------------------------------------
    def open_run(self, path, epoch: int | None = None):
        """Open a run directory (cryoscape or cryoDRGN); errors raise CryoscapeError."""
        from cryoscape.core.run import Run

        run = Run.open(path)
        self.set_run(run, epoch)
        return run

    def set_run(self, run, epoch: int | None = None) -> None:
        self.cache.plan(np.zeros((0, 1), np.float32), [])
        self.decode_thread.clear_background()
        self.current, self.current_mesh, self.pinned, self.path_volumes = None, None, None, []
        if self.colour_by not in COLOURINGS:    # another run's metadata column
            self.colour_by = "k-means"
        self.state.set_run(run, epoch)
        what = "homogeneous (decoder only, one map)" if self.state.homogeneous else \
            f"{self.state.n} particles, zdim {self.state.zdim}"
        self.status.emit(f"Opened {run.path}: {what}, box {run.D}, {run.apix:g} Å/px, "
                         f"epoch {self.state.epoch}")
        if not self.state.homogeneous:
            self._load_metadata()

    def _load_metadata(self) -> None:
        run, n = self.state.run, self.state.n

        def job(emit, is_stale):
            try:
                table, note = load_metadata(run, n)
            except CryoscapeError as e:
                table, note = None, f"metadata colouring off: {e}"
            columns = colour_columns(table)
            emit(_Done(lambda: self.state.set_metadata(table, note, columns)
                       if self.state.run is run else None))
        self.analysis_thread.submit_background(job, "Reading the particles' metadata")

    # -- embedding, clusters, cache ----------------------------------------------------------
    def decode_fn(self):
        run, epoch = self.state.run, self.state.epoch
        return lambda z, D: run.decode(None if z is None else np.asarray(z, np.float32), D=D,
                                       epoch=epoch)

    def _analyse_latents(self) -> None:
        self._generation += 1
        if self.state.homogeneous:              # no latents: show the run's one map
            self.decode_z(None)
            return
        gen, z = self._generation, self.state.z
        kind = self.embedding_kind if z.shape[1] > 1 else "histogram"
        k = min(self.n_clusters, len(z))
        run, epoch = self.state.run, self.state.epoch

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
            emit(self._analysis(gen, "PCA" if xy is not None else "histogram", xy, p, km, z))
            if kind == "UMAP":                   # the PCA view and clusters meanwhile
                xy = self._umap(z, umap_cache_dir(run), epoch, lambda: gen != self._generation)
                if xy is None:
                    return
                from scipy.spatial import cKDTree
                emit(self._analysis(gen, "UMAP", xy, None, km, z, cKDTree(z)))
        self.analysis_thread.submit_background(
            job, "UMAP (computing in the background)" if kind == "UMAP" else
            "Embedding and clustering")

    def _analysis(self, gen, kind, xy, p, km, z, tree=None) -> _Analysis:
        """The view `xy` with its colouring and cache anchors (analysis thread)."""
        try:
            colours = colouring(self.colour_by, km.labels, xy, self.state.metadata)
        except (TypeError, ValueError):          # a column that cannot be coloured
            colours = colouring("k-means", km.labels, xy, None)
        view = xy if xy is not None else np.stack([z[:, 0], np.zeros(len(z))], 1)
        return _Analysis(gen, kind, xy, p, km, tree, colours,
                         cache_anchors(view, km.medoids, self.cache.grid))

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

    def set_embedding_kind(self, kind: str) -> None:
        """'PCA' or 'UMAP' (computed in the analysis thread, cached in RUN/analysis_cache)."""
        self.embedding_kind = kind
        if self.state.z is not None:
            self._analyse_latents()

    def _on_analysis(self, res) -> None:
        if isinstance(res, _Done):
            res.apply()
            return
        if res.generation != self._generation:
            return
        self.state.set_clusters(res.kmeans.labels, res.kmeans.medoids)
        self.state.set_embedding(res.kind, res.xy, res.pca, res.tree, res.colouring)
        if res.colouring.by != self.colour_by and can_colour(self.colour_by, self.state.metadata):
            self.set_colouring(self.colour_by)          # asked for while this was computed
        if self.cache.z_source is not self.state.z:     # once per latents: hits go by z
            self._fill_cache(res.anchors)

    def _fill_cache(self, anchors) -> None:
        self.cache.D = min(self.cache_D, self.state.run.D)
        self.decode_thread.clear_background()
        self.cache.plan(self.state.z, anchors)
        box = self.state.run.D * self.state.run.apix

        def mesher(vol):
            sigma = self.state.threshold
            return sigma, isosurface(vol, sigma, box)
        for job in self.cache.jobs(self.decode_fn(), mesher):
            self.decode_thread.submit_background(job)

    def set_colouring(self, by: str) -> None:
        """Colour by 'k-means', 'density', 'none' or a metadata column: computed in the
        colouring thread for the points shown (`state.colouring_changed`), or with the
        analysis under way (`state.embedding_changed`)."""
        st = self.state
        if not can_colour(by, st.metadata):
            raise CryoscapeError(st.metadata_note or f"no metadata column {by!r}")
        self.colour_by = by
        labels, xy, metadata = st.labels, st.embedding, st.metadata
        if labels is None:
            return

        def apply(c):
            if st.embedding is xy and st.labels is labels:
                st.set_colouring(c)
            elif st.labels is not None and self.colour_by == by:
                self.set_colouring(by)            # other points shown since: colour those

        def job(emit, is_stale):
            c = colouring(by, labels, xy, metadata)
            emit(_Done(lambda: apply(c)))
        self.colour_thread.submit(job)

    # -- decoding ----------------------------------------------------------------------------
    def decode_particle(self, i: int) -> None:
        self.decode_z(self.state.z[i], index=int(i))

    def decode_z(self, z, index: int | None = None) -> int:
        """Show the volume at z: the nearest cached one now, then the preview and full map.
        z None: the map of a homogeneous run."""
        t0 = time.perf_counter()
        homogeneous = z is None
        z = np.asarray([] if homogeneous else z, np.float32).reshape(-1)
        self.state.set_current(z, index)
        self._request += 1
        req = self._request
        if not homogeneous:
            self._show_cached(z, req, t0)
        D = self.state.run.D
        sizes = [PREVIEW_D, D] if D > PREVIEW_D else [D]
        decode = self.decode_fn()

        def job(emit, is_stale):
            for d in sizes:
                if is_stale():
                    return
                vol = decode(None if homogeneous else z[None], d)[0]
                emit(VolumeResult(np.asarray(vol, np.float32), z, d,
                                  "exact" if d == D else "preview", req, t0, index))
        self.decode_thread.submit(job)
        return req

    def _show_cached(self, z, req, t0) -> bool:
        """Show the cached map nearest z: its mesh at once if cached at this threshold."""
        hit = self.cache.nearest(z)
        if hit is None:
            return False
        vol, idx, _, slot = hit
        self._shown_cache = idx
        res = VolumeResult(vol, self.state.z[idx], self.cache.D, "cache", req, t0, idx)
        mesh = self.cache.mesh(slot, self.state.threshold)
        if mesh is not None:
            self._on_meshed(MeshResult(mesh, res))
        else:
            self._mesh(res, cache_slot=(slot, self.cache.generation))
        return True

    def preview_particle(self, i: int) -> None:
        """Hover: the nearest cached surface at once, no exact decode (-1 restores current)."""
        if i < 0:
            if self._shown_cache >= 0 and self.current_mesh is not None:
                self._shown_cache = -1
                self.mesh_ready.emit(MeshResult(self.current_mesh, self.current))
            return
        hit = self.cache.nearest(self.state.z[i])
        if hit is not None and hit[1] != self._shown_cache:
            self._show_cached(self.state.z[i], self._request, time.perf_counter())

    def _on_decoded(self, res) -> None:
        if isinstance(res, CacheProgress):
            if res.generation == self.cache.generation:
                self.cache_progress.emit(res.done, res.total)
            return
        if res.request != self._request:
            return
        self.current = res
        self._shown_cache = -1
        self.volume_ready.emit(res)
        self._mesh(res)

    def _mesh(self, res: VolumeResult, which: int = 0, cache_slot=None) -> None:
        sigma, box = self.state.threshold, self.state.run.D * self.state.run.apix

        def job(emit, is_stale):
            mesh = isosurface(res.volume, sigma, box)
            if cache_slot is not None:
                self.cache.set_mesh(cache_slot[0], sigma, mesh, cache_slot[1])
            emit(MeshResult(mesh, res, which))
        self.mesh_thread.submit(job)

    def remesh(self) -> None:
        """Threshold changed: mesh the current (and pinned) map again, without decoding."""
        if self.current is not None:
            self._mesh(self.current)
        if self.pinned is not None:
            pinned, sigma = self.pinned, self.state.threshold
            box = self.state.run.D * self.state.run.apix
            self.mesh_thread.submit_background(lambda emit, stale: emit(
                MeshResult(isosurface(pinned.volume, sigma, box), pinned, 1)))

    def _on_meshed(self, res: MeshResult) -> None:
        if res.which == 0:
            if res.volume.request != self._request:
                return
            if res.volume.source != "cache":
                self.current_mesh = res.mesh
            if res.volume.request != self._timed_request:
                self._timed_request = res.volume.request
                self.timings["first_surface"] = time.perf_counter() - res.volume.t0
        self.mesh_ready.emit(res)

    def pin_current(self) -> None:
        """Keep the current map as the comparison surface."""
        if self.current is not None:
            self.pinned = self.current
            self.remesh()

    def unpin(self) -> None:
        self.pinned = None
        self.mesh_ready.emit(MeshResult(None, None, 1))

    # -- maps --------------------------------------------------------------------------------
    def current_map(self) -> tuple[np.ndarray, float]:
        """(the full-box current volume, its voxel size); error if only a preview is there."""
        cur = self.current
        if cur is None:
            raise CryoscapeError("no volume yet: click a point in the latent view first")
        return cur.volume, self.state.run.voxel_size(cur.D)

    def save_map(self, path) -> Path:
        from cryoscape.core.io.mrc import write_mrc

        vol, apix = self.current_map()
        write_mrc(path, vol, apix=apix)
        self.status.emit(f"Saved {path} ({vol.shape[0]}³, {apix:.3g} Å/px)")
        return Path(path)

    def open_in_chimerax(self, outdir) -> tuple[Path, bool]:
        """Write the current map and a .cxc; launch ChimeraX if it is on PATH."""
        from cryoscape.core.export import write_cxc

        outdir = Path(outdir)
        index = self.current.index if self.current is not None else None
        name = f"particle_{index}" if index is not None else "map"
        mrc = self.save_map(outdir / f"{name}.mrc")
        vol, _ = self.current_map()
        level = float(vol.mean() + self.state.threshold * vol.std())
        cxc = write_cxc(outdir / f"{name}.cxc", [mrc], level)
        exe = shutil.which("chimerax") or shutil.which("ChimeraX")
        if exe:
            subprocess.Popen([exe, str(cxc)], cwd=outdir, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.status.emit(f"Opened {cxc} in ChimeraX")
        else:
            self.status.emit(f"ChimeraX not found on PATH; wrote {cxc} (open it in ChimeraX)")
        return cxc, bool(exe)

    # -- selections --------------------------------------------------------------------------
    def export_selection(self, name: str, out, source=None) -> Path:
        """Write a selection as an index .pkl, a filtered .star or a .cs (+ .csg)."""
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

    # -- trajectories ------------------------------------------------------------------------
    def _latents(self) -> np.ndarray:
        if self.state.z is None:
            raise CryoscapeError("a homogeneous run (zdim 0) has no latent space: no "
                                 "trajectories" if self.state.homogeneous else "open a run first")
        return self.state.z

    def compute_path(self, n: int = 10, through_data: bool = False) -> None:
        """The path through the waypoints (trajectory thread): straight, or through the data
        on the latents' kNN graph (built once per epoch shown)."""
        from cryoscape.core.analysis.trajectory import knn_graph, path_through

        z, waypoints = self._latents(), list(self.state.waypoints)
        if len(waypoints) < 2:
            raise CryoscapeError("a path needs at least two waypoints: pick particles in Path "
                                 "mode (W) or type their indices")

        def compute():
            if not through_data:
                return path_through(z, waypoints, n=n)
            if self._knn is None or self._knn[0] is not z:
                self._knn = z, knn_graph(z)
            return path_through(z, waypoints, n=n, graph=True, knn=self._knn[1])
        self._path_job(compute, z, "Finding a path through the data" if through_data else
                       "Computing the path")

    def compute_pc_path(self, pc: int = 1, n: int = 10) -> None:
        """A traversal of principal component `pc` (trajectory thread)."""
        from cryoscape.core.analysis.trajectory import pc_traversal

        z = self._latents()
        self._path_job(lambda: pc_traversal(z, pc=pc, n=n)[0], z, f"PC{pc} traversal")

    def _path_job(self, compute, z, what: str) -> None:
        """`compute()` in the trajectory thread; its path is shown if the latents `z` still
        are (a newer path request replaces one not started)."""
        def job(emit, is_stale):
            path = compute()
            emit(_Done(lambda: self._set_path(path) if self.state.z is z else None))
        self.trajectory_thread.submit(job, what)

    def _set_path(self, path) -> None:
        """Show the path and decode its previews for playback (trajectory thread)."""
        self.state.set_path(path)
        self.path_volumes = []
        shown = self.state.path_z
        decode, D = self.decode_fn(), min(PREVIEW_D, self.state.run.D)

        def job(emit, is_stale):
            vols = list(decode(shown, D))
            emit(_Done(lambda: self._set_path_volumes(shown, vols)))
        self.trajectory_thread.submit_background(job, "Decoding the path's previews")

    def _set_path_volumes(self, path_z, vols) -> None:
        if self.state.path_z is path_z:             # still the path shown
            self.path_volumes = vols
            self.task_done.emit("path_volumes", len(vols))

    def show_path_frame(self, k: int) -> None:
        """Trajectory playback: frame k from the pre-decoded path (the exact map on pause)."""
        z = self.state.path_z[k]
        self.state.set_current(z, None)
        self._request += 1
        if k < len(self.path_volumes):
            self._mesh(VolumeResult(self.path_volumes[k], z, min(PREVIEW_D, self.state.run.D),
                                    "preview", self._request, time.perf_counter()))
        else:
            self._show_cached(z, self._request, time.perf_counter())

    def _path(self) -> np.ndarray:
        if self.state.path_z is None:
            raise CryoscapeError("no trajectory: pick waypoints and compute a path first")
        return self.state.path_z.copy()

    def export_path(self, outdir, D: int | None = None) -> None:
        """Decode the path at the full box (export thread) and write MRC files + a .cxc."""
        from cryoscape.core.analysis.maps import write_maps

        path, run, epoch = self._path(), self.state.run, self.state.epoch

        def job(emit, is_stale):
            series = write_maps(run, path, outdir, D=D, epoch=epoch, prefix="traj_",
                                progress=False)
            emit(_Done(lambda: self.task_done.emit("export_path", series)))
        self.export_thread.submit_background(job, f"Writing {len(path)} maps to {outdir}")

    def movie_meshes(self, out, D: int | None = None) -> None:
        """Decode and mesh the path's maps for a movie (export thread); then
        `task_done('movie_meshes', (out, meshes))` asks the window to render them."""
        from cryoscape.app.gui.movie import movie_path, trajectory_meshes

        out, path, run, epoch, sigma = movie_path(out), self._path(), self.state.run, \
            self.state.epoch, self.state.threshold

        def job(emit, is_stale):
            meshes = trajectory_meshes(run, path, sigma, D, epoch, stop=is_stale)
            if meshes is not None:
                emit(_Done(lambda: self.task_done.emit("movie_meshes", (out, meshes))))
        self.export_thread.submit_background(job, f"Decoding {len(path)} movie frames")

    def write_movie(self, frames, out, fps: float = 8.0) -> None:
        """Encode rendered frames as a GIF/MP4 (export thread); `task_done('movie', path)`."""
        from cryoscape.app.gui.movie import write_movie

        def job(emit, is_stale):
            path = write_movie(frames, out, fps=fps)
            emit(_Done(lambda: self.task_done.emit("movie", path)))
        self.export_thread.submit_background(job, f"Writing {out}")


def umap_cache_dir(run) -> Path:
    """The UMAP cache `cryoscape analyze/select` use (RUN/analysis_cache), or a folder in the
    temporary directory when the run directory is not writable."""
    from cryoscape.core.analysis.report import umap_cache_dir as run_cache_dir

    fallback = Path(tempfile.gettempdir()) / "cryoscape_analysis_cache"
    d = run_cache_dir(run, fallback)
    d.mkdir(parents=True, exist_ok=True)
    return d
