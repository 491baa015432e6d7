"""Movies of trajectories: decode and mesh each frame (a worker thread in the GUI), render it
offscreen with vispy (the GUI thread, a frame per event-loop turn) and write a GIF or MP4 with
imageio. Used by the GUI, `cryoscape gui --movie` and `cryoscape movie`."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from cryoscape.core.errors import CryoscapeError
from cryoscape.core.io.atomic import atomic_path
from PyQt6.QtCore import QObject, QTimer, pyqtSignal

TURN_DEG = 2.0          # the camera turns this much per frame


def movie_path(path: str | os.PathLike) -> Path:
    """`path` if it names a .gif or .mp4 file; else a clear error (before any work is done)."""
    path = Path(path)
    if path.suffix.lower() not in (".gif", ".mp4"):
        raise CryoscapeError(f"{path}: a movie is written as .gif or .mp4")
    return path


def write_movie(frames: list[np.ndarray], path: str | os.PathLike, fps: float = 8.0) -> Path:
    """Frames [h, w, 3|4] uint8 as an animated GIF (looping) or an H.264 MP4, atomically."""
    import imageio.v2 as imageio

    path = movie_path(path)
    suffix = path.suffix.lower()
    h, w = frames[0].shape[:2]
    if suffix == ".mp4":                       # H.264 wants sizes in multiples of 16
        h, w = h - h % 16, w - w % 16
    rgb = [np.ascontiguousarray(f[:h, :w, :3]) for f in frames]
    with atomic_path(path) as tmp:
        if suffix == ".gif":
            imageio.mimsave(tmp, rgb, format="GIF", duration=1000.0 / fps, loop=0)
        else:
            import imageio_ffmpeg

            writer = imageio_ffmpeg.write_frames(
                str(tmp), (w, h), fps=fps, codec="libx264", pix_fmt_out="yuv420p",
                macro_block_size=16, output_params=["-f", "mp4"], ffmpeg_log_level="error")
            writer.send(None)
            for f in rgb:
                writer.send(f)
            writer.close()
    return path


def trajectory_meshes(run, path_z, sigma: float = 2.0, D: int | None = None,
                      epoch: int | None = None, stop=lambda: False, chunk: int = 4):
    """The isosurface of each map along `path_z` [M, zdim] (decoded at box `D`, `chunk` maps
    at a time): slow work that the GUI runs in a worker thread. None if `stop()` turns true."""
    from cryoscape.app.gui.visuals.isosurface import isosurface

    path_z, box, meshes = np.asarray(path_z, np.float32), run.D * run.apix, []
    for i in range(0, len(path_z), chunk):
        if stop():
            return None
        vols = run.decode(path_z[i:i + chunk], D=D or run.D, epoch=epoch)
        meshes += [isosurface(v, sigma, box) for v in vols]
    return meshes


def camera_path(view, meshes, turn_deg: float = TURN_DEG) -> list[dict]:
    """The camera of each frame: the view's (as the user left it), turning `turn_deg` a frame."""
    start = view.movie_camera(meshes[0])
    return [dict(start, azimuth=start["azimuth"] + turn_deg * k) for k in range(len(meshes))]


class MovieRenderer(QObject):
    """Renders meshes into frames of the view's current size and camera (turning a little each
    frame), one frame per turn of the event loop, so the GUI stays responsive meanwhile;
    `done(frames)` at the end, or `failed(message)`."""

    done = pyqtSignal(list)
    failed = pyqtSignal(str)

    def __init__(self, view, meshes, parent=None):
        super().__init__(parent)
        if not meshes:
            raise CryoscapeError("no frames to render: the path is empty")
        self.view, self.meshes = view, meshes
        self.cameras, self.size = camera_path(view, meshes), tuple(view.canvas.size)
        self.frames: list[np.ndarray] = []
        self.timer = QTimer(self)
        self.timer.timeout.connect(self._next)
        self.timer.start(0)

    def _next(self) -> None:
        k = len(self.frames)
        try:
            self.frames.append(self.view.render_mesh(self.meshes[k], self.cameras[k], self.size))
        except Exception as e:  # noqa: BLE001 (an OpenGL failure: said, not raised in a slot)
            self.timer.stop()
            self.failed.emit(f"rendering frame {k + 1}: {e}")
            return
        if len(self.frames) == len(self.meshes):
            self.timer.stop()
            self.done.emit(self.frames)

    def cancel(self) -> None:
        self.timer.stop()


def render_trajectory(run, path_z, out, sigma: float = 2.0, D: int | None = None,
                      epoch: int | None = None, fps: float = 8.0, size=(480, 480)) -> Path:
    """`cryoscape movie`: decode and mesh the maps along `path_z`, render them in a window of
    `size` of its own (OpenGL needs one), write `out`."""
    from cryoscape.app.gui.visuals.volume_view import VolumeView
    from PyQt6.QtWidgets import QApplication

    meshes = trajectory_meshes(run, path_z, sigma, D, epoch)
    view = VolumeView(size=size)
    view.resize(*size)
    view.show()
    QApplication.processEvents()
    try:
        size = tuple(view.canvas.size)
        frames = [view.render_mesh(m, cam, size)
                  for m, cam in zip(meshes, camera_path(view, meshes))]
    finally:
        view.close_canvas()
        view.close()
        view.deleteLater()
    return write_movie(frames, out, fps=fps)
