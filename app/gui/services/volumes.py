"""Volumes: the map at a point of latent space, shown at once from the decode cache (small maps
spread over the embedding, filled in the background), then as a reduced-box preview and the
exact map (decode thread), each meshed in the mesh thread; the pinned map; saving a map and
opening it in ChimeraX."""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
from cryoscape.app.gui.models.volumes import MeshResult, VolumeResult, VolumesShown
from cryoscape.app.gui.services.decode_cache import CacheProgress, DecodeCache, cache_anchors
from cryoscape.app.gui.services.jobs import Service
from cryoscape.app.gui.visuals.isosurface import isosurface
from cryoscape.core.device import native_bf16, select_device
from cryoscape.core.errors import CryoscapeError
from PyQt6.QtCore import pyqtSignal

PREVIEW_D = 32


class VolumeService(Service):
    """Decodes and meshes the maps the user points at into `shown` (a VolumesShown model);
    `cache_progress(done, total)` while the cache fills. `cache_D` is the cache's box (smaller
    for a run with a smaller box)."""

    cache_progress = pyqtSignal(int, int)

    def __init__(self, state, activity, parent=None, cache_D: int = 24):
        super().__init__(activity, ("decode", "mesh"), parent)
        self.state = state
        self.shown = VolumesShown()
        self.decode_thread, self.mesh_thread = self.threads
        self.decode_thread.result.connect(self._on_decoded)
        self.mesh_thread.result.connect(self._on_meshed)
        self.cache_D = cache_D
        self.cache = DecodeCache(D=cache_D)
        self.timings: dict[str, float] = {}
        self._request = 0
        self._shown_cache = -1
        self._timed_request = -1
        state.run_changed.connect(self._run_changed)
        state.latents_changed.connect(self._latents_changed)
        state.embedding_changed.connect(self._embedding_changed)
        state.threshold_changed.connect(lambda _: self.remesh())

    # -- the run and its cache ---------------------------------------------------------------
    def _run_changed(self) -> None:
        if self.state.run is not None:           # decoded on the GPU where there is one
            self.state.run.device = select_device()
        self.cache.plan(np.zeros((0, 1), np.float32), [])
        self.decode_thread.clear_background()
        self.shown.clear()

    def _latents_changed(self) -> None:
        st = self.state
        if not st.homogeneous:
            return
        try:                                    # no latents: show the run's one map
            st.run.weights_path(st.epoch)
        except CryoscapeError:                  # a run still in its first epoch: no map yet
            return
        self.decode_z(None)

    def set_cache_grid(self, grid: int) -> None:
        """Cells per side of the grid whose medoids the cache holds (from the next latents)."""
        self.cache.grid = grid

    def _embedding_changed(self) -> None:
        """The cache is planned once per latents (hits go by z, not by the view), from the
        first view with clusters: anchors chosen and maps decoded in the decode thread."""
        st = self.state
        if st.labels is None or self.cache.z_source is st.z:
            return
        z, medoids, grid = st.z, st.centre_index, self.cache.grid
        view = st.embedding if st.embedding is not None else \
            np.stack([z[:, 0], np.zeros(len(z))], 1)
        self.cache.D = min(self.cache_D, st.run.D)
        self.cache.plan(z, [])
        self.decode_thread.clear_background()
        decode, box, cache = self.decode_fn(), st.run.D * st.run.apix, self.cache
        generation = cache.generation

        def mesher(vol):
            sigma = st.threshold
            return sigma, isosurface(vol, sigma, box)

        def plan(emit, is_stale):
            anchors = cache_anchors(view, medoids, grid)     # a third of a second at 1M
            if cache.generation != generation:
                return
            cache.plan(z, anchors)
            for job in cache.jobs(decode, mesher):
                self.decode_thread.submit_background(job)
        self.decode_thread.submit_background(plan)

    def decode_fn(self):
        """`decode(z [M, zdim] or None, D) -> [M, D, D, D]` at the epoch shown: maps at a
        reduced box (the cache's, previews, trajectory frames: low-passed sketches) in bf16
        where the device has it natively (3x faster, within 0.3%), the exact map in float32."""
        run, epoch = self.state.run, self.state.epoch
        bf16 = native_bf16(run.device)
        return lambda z, D: run.decode(None if z is None else np.asarray(z, np.float32), D=D,
                                       epoch=epoch, bf16=bf16 and D < run.D)

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

    def show_map(self, volume: np.ndarray, z, label: str) -> None:
        """A map made elsewhere (a landscape state's mean map) as the current map, the current
        point at `z`: meshed and shown, saved and pinned as a decoded one; `label` names it."""
        self.state.set_current(z, None)
        self._request += 1
        res = VolumeResult(np.asarray(volume, np.float32), np.asarray(z, np.float32).reshape(-1),
                           len(volume), "landscape", self._request, time.perf_counter(),
                           label=label)
        self.shown.set_current(res)
        self._shown_cache = -1
        self._mesh(res)

    def show_frame(self, z, volume: np.ndarray | None) -> None:
        """A frame of a path: its pre-decoded preview `volume`, else the nearest cached map
        (no exact decode)."""
        self.state.set_current(z, None)
        self._request += 1
        if volume is not None:
            self._mesh(VolumeResult(volume, z, len(volume), "preview", self._request,
                                    time.perf_counter()))
        else:
            self._show_cached(z, self._request, time.perf_counter())

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
        shown = self.shown
        if i < 0:
            if self._shown_cache >= 0 and shown.current_mesh is not None:
                self._shown_cache = -1
                shown.show_mesh(MeshResult(shown.current_mesh, shown.current))
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
        self.shown.set_current(res)
        self._shown_cache = -1
        self._mesh(res)

    # -- meshing -----------------------------------------------------------------------------
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
        shown = self.shown
        if shown.current is not None:
            self._mesh(shown.current)
        if shown.pinned is not None:
            pinned, sigma = shown.pinned, self.state.threshold
            box = self.state.run.D * self.state.run.apix
            self.mesh_thread.submit_background(lambda emit, stale: emit(
                MeshResult(isosurface(pinned.volume, sigma, box), pinned, 1)))

    def _on_meshed(self, res: MeshResult) -> None:
        if res.which == 0:
            if res.volume.request != self._request:
                return
            if res.volume.request != self._timed_request:
                self._timed_request = res.volume.request
                self.timings["first_surface"] = time.perf_counter() - res.volume.t0
        self.shown.show_mesh(res)

    def pin_current(self) -> None:
        """Keep the current map as the comparison surface."""
        if self.shown.current is not None:
            self.shown.set_pinned(self.shown.current)
            self.remesh()

    def unpin(self) -> None:
        self.shown.set_pinned(None)

    # -- maps --------------------------------------------------------------------------------
    def current_map(self) -> tuple[np.ndarray, float]:
        """(the full-box current volume, its voxel size); error if only a preview is there."""
        cur = self.shown.current
        if cur is None:
            raise CryoscapeError("no volume yet: click a point in the latent view first")
        return cur.volume, self.state.run.voxel_size(cur.D)

    def save_map(self, path) -> Path:
        from cryoscape.core.io.mrc import write_mrc

        vol, apix = self.current_map()
        write_mrc(path, vol, apix=apix)
        self.activity.status.emit(f"Saved {path} ({vol.shape[0]}³, {apix:.3g} Å/px)")
        return Path(path)

    def open_in_chimerax(self, outdir) -> tuple[Path, bool]:
        """Write the current map and a .cxc; launch ChimeraX if it is on PATH."""
        from cryoscape.core.export import write_cxc

        outdir = Path(outdir)
        cur = self.shown.current
        index = cur.index if cur is not None else None
        name = f"particle_{index}" if index is not None else "map"
        mrc = self.save_map(outdir / f"{name}.mrc")
        vol, _ = self.current_map()
        level = float(vol.mean() + self.state.threshold * vol.std())
        cxc = write_cxc(outdir / f"{name}.cxc", [mrc], level)
        exe = shutil.which("chimerax") or shutil.which("ChimeraX")
        if exe:
            subprocess.Popen([exe, str(cxc)], cwd=outdir, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.activity.status.emit(f"Opened {cxc} in ChimeraX")
        else:
            self.activity.status.emit(f"ChimeraX not found on PATH; wrote {cxc} (open it in "
                                      "ChimeraX)")
        return cxc, bool(exe)
