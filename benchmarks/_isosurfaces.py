"""A row of isosurfaces rendered offscreen with cryoscape's own viewer (app/gui: vispy in a Qt
window; needs an X server: run under `xvfb-run` where there is no display)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def isosurface_row(maps, titles, box_A: float, path: Path, title: str, sigma: float = 2.0,
                   size: int = 240) -> Path | None:
    """PNG of the isosurfaces (mean + sigma * std) of `maps` side by side, all seen by one
    camera (the first map's); None where no display is available."""
    if not os.environ.get("DISPLAY"):
        return None
    from cryoscape.app.gui.visuals.isosurface import isosurface
    from cryoscape.app.gui.visuals.volume_view import VolumeView
    from cryoscape.core.analysis.plots import _figure, _save
    from PyQt6.QtWidgets import QApplication
    app = QApplication.instance() or QApplication([])
    meshes = [isosurface(v, sigma, box_A) for v in maps]
    view = VolumeView(size=(size, size))
    view.resize(size, size)
    view.show()
    app.processEvents()
    try:
        camera = view.movie_camera(meshes[0])
        frames = [view.render_mesh(m, camera, tuple(view.canvas.size)) for m in meshes]
    finally:
        view.close_canvas()
        view.close()
        view.deleteLater()
    fig = _figure(1.4 * len(frames) + 0.2, 1.8)
    for i, (frame, t) in enumerate(zip(frames, titles)):
        ax = fig.add_subplot(1, len(frames), i + 1)
        ax.imshow(np.asarray(frame)[..., :3])
        ax.set_axis_off()
        ax.set_title(t, fontsize=7)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)
