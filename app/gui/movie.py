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
                      epoch: int | None = None) -> list:
    """The isosurface of each map along `path_z` [M, zdim] (decoded at box `D`): slow work that
    the GUI runs in a worker thread."""
    from cryoscape.app.gui.isosurface import isosurface

    vols = run.decode(np.asarray(path_z, np.float32), D=D or run.D, epoch=epoch)
    box = run.D * run.apix
    return [isosurface(v, sigma, box) for v in vols]


class MovieRenderer(QObject):
    """Renders meshes into frames with a view's camera, one frame per turn of the event loop
    (the GUI stays responsive), turning `turn_deg` per frame; `done(frames)` at the end."""

    done = pyqtSignal(list)

    def __init__(self, view, meshes, turn_deg: float = TURN_DEG, parent=None):
        super().__init__(parent)
        self.view, self.meshes, self.turn_deg = view, meshes, turn_deg
        self.frames: list[np.ndarray] = []
        self.timer = QTimer(self)
        self.timer.timeout.connect(self._next)
        self.timer.start(0)

    def _next(self) -> None:
        k = len(self.frames)
        self.frames.append(self.view.render_mesh(self.meshes[k], self.turn_deg * k))
        if len(self.frames) == len(self.meshes):
            self.timer.stop()
            self.done.emit(self.frames)

    def cancel(self) -> None:
        self.timer.stop()


def render_trajectory(run, path_z, out, sigma: float = 2.0, D: int | None = None,
                      epoch: int | None = None, fps: float = 8.0, size=(480, 480)) -> Path:
    """`cryoscape movie`: decode and mesh the maps along `path_z`, render them in a window of
    `size` of its own (OpenGL needs one), write `out`."""
    from cryoscape.app.gui.volume_view import VolumeView
    from PyQt6.QtWidgets import QApplication

    meshes = trajectory_meshes(run, path_z, sigma, D, epoch)
    view = VolumeView(size=size)
    view.resize(*size)
    view.show()
    QApplication.processEvents()
    try:
        frames = [view.render_mesh(m, TURN_DEG * k) for k, m in enumerate(meshes)]
    finally:
        view.close_canvas()
        view.close()
        view.deleteLater()
    return write_movie(frames, out, fps=fps)
