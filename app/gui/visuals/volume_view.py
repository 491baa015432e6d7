"""The 3D view: isosurface meshes in a vispy SceneCanvas.

The meshes are made in worker threads (`isosurface`; never vispy's `Isosurface` visual, which
meshes on the GUI thread), their normals included: the view only uploads and draws them.
"""
from __future__ import annotations

import numpy as np
import vispy

vispy.use("pyqt6")
from cryoscape.app.gui.visuals.isosurface import Mesh
from PyQt6.QtWidgets import QVBoxLayout, QWidget
from vispy import scene
from vispy.visuals.transforms import STTransform

SURFACE = (0.55, 0.75, 0.95, 1.0)
PINNED = (0.98, 0.70, 0.30, 0.45)


class VolumeView(QWidget):
    """A vispy canvas with the current surface and an optional pinned one (to compare)."""

    def __init__(self, parent=None, size=(480, 480)):
        super().__init__(parent)
        self.canvas = scene.SceneCanvas(keys=None, bgcolor="#10161d", size=size, show=False)
        self.view = self.canvas.central_widget.add_view()
        self.view.camera = scene.TurntableCamera(fov=30, elevation=20, azimuth=30)
        self.meshes = [scene.visuals.Mesh(shading="smooth", color=SURFACE, parent=self.view.scene),
                       scene.visuals.Mesh(shading="smooth", color=PINNED, parent=self.view.scene)]
        self.meshes[1].set_gl_state("translucent", depth_test=True, cull_face=False)
        self.frame_mesh = scene.visuals.Mesh(shading="smooth", color=SURFACE,
                                             parent=self.view.scene)     # movie frames
        for m in (*self.meshes, self.frame_mesh):
            self._blank(m)
        self.data: list[Mesh | None] = [None, None]
        self.side_by_side = False
        self._box = 64.0
        self._headlight()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas.native)

    def _headlight(self) -> None:
        """Light from the camera, whichever way the user turns the object."""
        light, visuals = (0, 1, 0, 0), (*self.meshes, self.frame_mesh)
        for m in visuals:
            m.shading_filter.light_dir = light[:3]
        initial = self.view.camera.transform.imap(light)

        def follow(event=None):
            d = self.view.camera.transform.map(initial)[:3]
            for m in visuals:
                m.shading_filter.light_dir = d
        self.view.scene.transform.changed.connect(follow)

    @property
    def n_vertices(self) -> int:
        return 0 if self.data[0] is None else len(self.data[0].vertices)

    def set_mesh(self, mesh: Mesh | None, which: int = 0) -> None:
        """Show `mesh` as the current (0) or pinned (1) surface; None hides it."""
        first = all(m is None for m in self.data)
        self.data[which] = mesh
        self._put(self.meshes[which], mesh)
        if mesh is not None and len(mesh.faces) and (first or abs(mesh.box_A - self._box) > 1e-3):
            self._box = mesh.box_A
            self._place_pinned()
            self.reset_camera()
        self.canvas.update()

    def _put(self, visual, mesh: Mesh | None) -> None:
        """Upload `mesh` into `visual`, or hide the visual (no mesh, an empty surface)."""
        if mesh is None or len(mesh.faces) == 0:
            self._blank(visual)
            return
        visual.set_data(meshdata=mesh.meshdata)
        visual.visible = True

    @staticmethod
    def _blank(visual) -> None:
        visual.set_data(vertices=np.eye(3, dtype=np.float32), faces=np.array([[0, 1, 2]], np.uint32))
        visual.visible = False

    def render_mesh(self, mesh: Mesh, camera: dict, size: tuple[int, int]) -> np.ndarray:
        """An image [h, w, 3] of `mesh` alone at `size`, seen with `camera` (a state of this
        view's camera); the view's own surfaces and camera are left as they are."""
        cam, visuals = self.view.camera, self.meshes
        saved, visible = cam.get_state(), [v.visible for v in visuals]
        self._put(self.frame_mesh, mesh)
        for v in visuals:
            v.visible = False
        cam.set_state(camera)
        try:
            return self.canvas.render(size=size, alpha=False)
        finally:
            cam.set_state(saved)
            for v, on in zip(visuals, visible):
                v.visible = on
            self._blank(self.frame_mesh)
            self.canvas.update()

    def movie_camera(self, mesh: Mesh) -> dict:
        """The camera state for a movie of `mesh`: the view's, or one framing `mesh` when the
        view has shown nothing yet."""
        if all(m is None for m in self.data) and len(mesh.faces):
            self._box = mesh.box_A
            self.reset_camera()
        return self.view.camera.get_state()

    def set_side_by_side(self, on: bool) -> None:
        """The pinned surface beside the current one (a box to the right), or overlaid."""
        self.side_by_side = on
        self._place_pinned()
        self.reset_camera()

    def _place_pinned(self) -> None:
        self.meshes[1].transform = STTransform(
            translate=(self._box if self.side_by_side else 0.0, 0, 0))

    def reset_camera(self) -> None:
        h = self._box / 2
        xr = (-h, 3 * h) if self.side_by_side and self.data[1] is not None else (-h, h)
        cam = self.view.camera
        cam.center = ((xr[0] + xr[1]) / 2, 0, 0)
        cam.elevation, cam.azimuth = 20, 30
        cam.scale_factor = (xr[1] - xr[0]) * 1.1
        self.canvas.update()

    def zoom(self, factor: float) -> None:
        self.view.camera.scale_factor *= factor
        self.canvas.update()

    def render(self) -> np.ndarray:
        """The canvas as an RGB image [h, w, 3] (offscreen-capable)."""
        return self.canvas.render(alpha=False)

    def close_canvas(self) -> None:
        self.canvas.close()
