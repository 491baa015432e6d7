"""Movies of trajectories: decode each frame, mesh it, render it offscreen (vispy) and write a
GIF or MP4 with imageio. Used by the GUI, `cryoscape gui --movie` and `cryoscape movie`."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from cryoscape.core.errors import CryoscapeError
from cryoscape.core.io.atomic import atomic_path


def write_movie(frames: list[np.ndarray], path: str | os.PathLike, fps: float = 8.0) -> Path:
    """Frames [h, w, 3|4] uint8 as an animated GIF (looping) or an H.264 MP4, atomically."""
    import imageio.v2 as imageio

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise CryoscapeError(f"{path}: a movie is written as .gif or .mp4")
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


def render_meshes(meshes, view=None, size=(480, 480), turn_deg: float = 0.0,
                  process_events=None) -> list[np.ndarray]:
    """Render each mesh with one camera, turning `turn_deg` per frame. With `view` (the
    window's VolumeView) its current surface is restored afterwards; without, a small window of
    `size` is shown for the OpenGL context and closed again."""
    from cryoscape.app.gui.volume_view import VolumeView

    own = view is None
    if own:
        view = VolumeView(size=size)
        view.resize(*size)
        view.show()
        if process_events:
            process_events()
    saved, azimuth = view.data[0], view.view.camera.azimuth
    frames = []
    try:
        for k, mesh in enumerate(meshes):
            view.set_mesh(mesh)
            view.view.camera.azimuth = azimuth + turn_deg * k
            frames.append(view.render())
            if process_events:
                process_events()
    finally:
        if own:
            view.close_canvas()
            view.close()
            view.deleteLater()
        else:
            view.view.camera.azimuth = azimuth
            view.set_mesh(saved)
    return frames


def render_trajectory(run, path_z, out, sigma: float = 2.0, D: int | None = None,
                      epoch: int | None = None, fps: float = 8.0, size=(480, 480),
                      turn_deg: float = 2.0, view=None, process_events=None) -> Path:
    """Decode the maps along `path_z` [M, zdim], render their isosurfaces, write `out`."""
    from cryoscape.app.gui.volume_view import isosurface

    D = D or run.D
    vols = run.decode(np.asarray(path_z, np.float32), D=D, epoch=epoch)
    box = run.D * run.apix
    meshes = [isosurface(v, sigma, box) for v in vols]
    frames = render_meshes(meshes, view=view, size=size, turn_deg=turn_deg,
                           process_events=process_events)
    return write_movie(frames, out, fps=fps)
