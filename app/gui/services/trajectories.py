"""Trajectories: paths through latent space (straight or through the data on a kNN graph, built
once per epoch), principal-component traversals and their previews (trajectory thread); maps
and movie frames along a path, and movie encoding (export thread)."""
from __future__ import annotations

from cryoscape.app.gui.services.jobs import Service
from cryoscape.app.gui.services.volumes import PREVIEW_D
from cryoscape.core.errors import CryoscapeError
from PyQt6.QtCore import pyqtSignal


class TrajectoryService(Service):
    """Computes the path shown (`state.set_path`) and its previews (`volumes.shown`);
    `task_done(name, result)` when an export ends: 'export_path' (the map series),
    'movie_meshes' ((out, meshes): to render), 'movie' (the file)."""

    task_done = pyqtSignal(str, object)

    def __init__(self, state, activity, volumes, parent=None):
        super().__init__(activity, ("trajectory", "export"), parent)
        self.state, self.volumes = state, volumes
        self.trajectory_thread, self.export_thread = self.threads
        for t in self.threads:
            t.result.connect(lambda apply: apply())
        self._knn = None                      # (latents, their kNN graph) for paths

    def _latents(self):
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
            emit(lambda: self._set_path(path) if self.state.z is z else None)
        self.trajectory_thread.submit(job, what)

    def _set_path(self, path) -> None:
        """Show the path and decode its previews for playback (trajectory thread)."""
        self.state.set_path(path)
        shown = self.volumes.shown
        shown.set_path_volumes([])
        path_z = self.state.path_z
        decode, D = self.volumes.decode_fn(), min(PREVIEW_D, self.state.run.D)

        def job(emit, is_stale):
            vols = list(decode(path_z, D))
            emit(lambda: shown.set_path_volumes(vols) if self.state.path_z is path_z else None)
        self.trajectory_thread.submit_background(job, "Decoding the path's previews")

    def show_frame(self, k: int) -> None:
        """Trajectory playback: frame k from the pre-decoded path (else the nearest cached)."""
        path_z, vols = self.state.path_z, self.volumes.shown.path_volumes
        if path_z is not None and k < len(path_z):
            self.volumes.show_frame(path_z[k], vols[k] if k < len(vols) else None)

    def _path(self):
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
            emit(lambda: self.task_done.emit("export_path", series))
        self.export_thread.submit_background(job, f"Writing {len(path)} maps to {outdir}")

    def movie_meshes(self, out, D: int | None = None) -> None:
        """Decode and mesh the path's maps for a movie (export thread); then
        `task_done('movie_meshes', (out, meshes))` asks the window to render them."""
        from cryoscape.app.gui.visuals.movie import movie_path, trajectory_meshes

        out, path, run, epoch, sigma = movie_path(out), self._path(), self.state.run, \
            self.state.epoch, self.state.threshold

        def job(emit, is_stale):
            meshes = trajectory_meshes(run, path, sigma, D, epoch, stop=is_stale)
            if meshes is not None:
                emit(lambda: self.task_done.emit("movie_meshes", (out, meshes)))
        self.export_thread.submit_background(job, f"Decoding {len(path)} movie frames")

    def write_movie(self, frames, out, fps: float = 8.0) -> None:
        """Encode rendered frames as a GIF/MP4 (export thread); `task_done('movie', path)`."""
        from cryoscape.app.gui.visuals.movie import write_movie

        def job(emit, is_stale):
            path = write_movie(frames, out, fps=fps)
            emit(lambda: self.task_done.emit("movie", path))
        self.export_thread.submit_background(job, f"Writing {out}")
