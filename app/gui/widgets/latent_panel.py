"""The latent panel, the explorer's centre: the View (PCA/UMAP/Landscape) and Colour boxes,
the epoch slider, hover previews, the junk selection by per-image fit, and the latent scatter
(or histogram, or a note for a run without latents) with the clicked point, the highlighted
selection and the path drawn on it; beside it in the Landscape view, the states."""
from __future__ import annotations

from cryoscape.app.gui.models.colour import COLOURINGS, FIT_ERROR, LANDSCAPE_STATE
from cryoscape.app.gui.visuals.latent_view import LatentView
from cryoscape.app.gui.widgets.guard import guard
from cryoscape.app.gui.widgets.landscape_panel import LandscapePanel
from cryoscape.core.errors import CryoscapeError
from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

VIEWS = ("PCA", "UMAP", "Landscape")
AXES = {"PCA": ("PC1", "PC2"), "UMAP": ("UMAP1", "UMAP2"),
        "Landscape": ("volume PC1", "volume PC2")}

HOMOGENEOUS_NOTE = ("homogeneous run: no latent space\n\n(zdim 0: the run has one map, "
                    "shown in the volume view)")


class LatentPanel(QWidget):
    """Draws the state's latents, view, colours, current point, selection and path in `view`
    (a LatentView); a click decodes (volumes), hovering previews the nearest cached map, a
    lasso or rectangle adds a selection, Path mode adds waypoints; `states` (a LandscapePanel)
    beside the Landscape view; Select junk selects the images the run fits worst (fit)."""

    def __init__(self, explorer, parent=None):
        super().__init__(parent)
        ex = explorer
        self.state, self.activity = ex.state, ex.activity
        self.runs, self.embedding, self.volumes = ex.runs, ex.embedding, ex.volumes
        self.fit, self.landscape = ex.fit, ex.landscape
        self.view = LatentView()
        self.states = LandscapePanel(ex)
        self.states.hide()
        self.epoch_slider = QSlider(Qt.Orientation.Horizontal)
        self.epoch_slider.setRange(0, 0)
        self.epoch_slider.setToolTip("Look back at earlier epochs")
        self.epoch_label = QLabel("no run")
        self.epoch_label.setMinimumWidth(70)
        self.embedding_box = QComboBox()
        self.embedding_box.addItems(VIEWS)
        self.embedding_box.setToolTip("PCA or UMAP of the latents, or the landscape in volume "
                                      "space: the particles at their volume-PC coordinates")
        self.colour_box = QComboBox()
        self.colour_box.addItems(COLOURINGS)
        # as wide as 12 characters whatever the colourings (metadata columns can be long)
        self.colour_box.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.colour_box.setMinimumContentsLength(12)
        self.colour_note = QLabel()
        self.colour_note.setObjectName("colourNote")
        self.colour_note.setStyleSheet("color: #d9a05b;")
        self.colour_note.setWordWrap(True)
        self.colour_note.hide()
        self.hover_box = QCheckBox("Preview on hover")
        self.hover_box.setChecked(True)
        self.hover_box.setToolTip("Show the nearest cached surface under the cursor")
        self.junk_button = QPushButton("Select junk")
        self.junk_button.setToolTip("Select the images the run explains worst: fit error above "
                                    "the outlier threshold of `cryoscape eval-images` (median + "
                                    "3 x 1.4826 MAD), evaluated first if needed")
        row = QHBoxLayout()                     # the epoch slider gets a row of its own: it
        row.addWidget(self.epoch_label)         # would be squeezed to nothing beside the boxes
        row.addWidget(self.epoch_slider, 1)
        self.view_controls = QWidget()          # hidden for runs without latents
        controls = QHBoxLayout(self.view_controls)
        controls.setContentsMargins(0, 0, 0, 0)
        controls.addWidget(QLabel("View"))
        controls.addWidget(self.embedding_box)
        controls.addWidget(QLabel("Colour"))
        controls.addWidget(self.colour_box)
        controls.addWidget(self.junk_button)
        controls.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.view_controls)
        layout.addLayout(row)
        layout.addWidget(self.colour_note)
        self.view.toolbar.addSeparator()        # hovering is a way of pointing, as the tools
        self.view.toolbar.addWidget(self.hover_box)
        body = QHBoxLayout()
        body.addWidget(self.view, 1)
        body.addWidget(self.states)
        layout.addLayout(body, 1)
        self._connect(ex)

    def _connect(self, ex) -> None:
        st, lv = self.state, self.view
        st.latents_changed.connect(self._latents_changed)
        st.embedding_changed.connect(self._embedding_changed)
        st.colouring_changed.connect(lambda: lv.set_brushes(st.colours))
        st.metadata_changed.connect(self._metadata_changed)
        st.values_changed.connect(self._metadata_changed)
        st.current_changed.connect(self._current_changed)
        st.path_changed.connect(self._path_changed)
        st.selections_changed.connect(self._highlight)
        st.highlight_changed.connect(self._highlight)
        ex.embedding.kind_changed.connect(self._kind_changed)
        ex.training.epoch_ready.connect(lambda *_: self._epochs_changed())
        lv.particle_clicked.connect(lambda i: guard(self.activity, self.volumes.decode_particle, i))
        lv.particle_hovered.connect(self._hovered)
        lv.polygon_selected.connect(self._polygon_selected)
        lv.waypoint_clicked.connect(lambda i: st.set_waypoints(st.waypoints + [i]))
        self.epoch_slider.valueChanged.connect(self._epoch_moved)
        self.embedding_box.currentTextChanged.connect(self.embedding.set_kind)
        self.colour_box.currentTextChanged.connect(self._colour_chosen)
        self.junk_button.clicked.connect(lambda: guard(self.activity, self.fit.select_junk))

    # -- the state, drawn --------------------------------------------------------------------
    def _epochs_changed(self) -> None:
        """The epoch slider over the run's epochs, at the epoch shown."""
        st = self.state
        epochs = list(st.run.epochs) if st.run is not None else []
        self.epoch_slider.blockSignals(True)
        self.epoch_slider.setRange(0, max(len(epochs) - 1, 0))
        if st.epoch in epochs:
            self.epoch_slider.setValue(epochs.index(st.epoch))
        self.epoch_slider.blockSignals(False)
        self.epoch_label.setText(f"epoch {st.epoch}" if st.epoch is not None else "final")

    def _latents_changed(self) -> None:
        st = self.state
        self._epochs_changed()
        items = self.embedding_box.model()
        items.item(VIEWS.index("UMAP")).setEnabled(st.zdim > 1)
        items.item(VIEWS.index("Landscape")).setEnabled(self.landscape.available)
        self.embedding_box.setEnabled(st.zdim > 1 or self.landscape.available)
        self.view_controls.setVisible(not st.homogeneous)
        self.states.setVisible(self.embedding.kind == "Landscape" and not st.homogeneous)
        self._metadata_changed()                    # fit error: computable for this run?
        if st.homogeneous:
            self.view.set_message(HOMOGENEOUS_NOTE)
        elif st.zdim == 1:
            self.view.set_histogram(st.z[:, 0], keep_view=False)
            self._highlight()

    def _kind_changed(self, kind: str) -> None:
        self.embedding_box.blockSignals(True)
        self.embedding_box.setCurrentText(kind)
        self.embedding_box.blockSignals(False)
        self.states.setVisible(kind == "Landscape" and not self.state.homogeneous)
        self._metadata_changed()                    # the colouring asked for with it

    def _embedding_changed(self) -> None:
        st, lv = self.state, self.view
        if st.embedding is None:
            if st.zdim == 1 and not lv.histogram:    # back from the Landscape view
                lv.set_histogram(st.z[:, 0], keep_view=False)
                self._highlight()
            return
        keep = lv.n_points == st.n and not lv.histogram
        lv.set_points(st.embedding, AXES.get(st.embedding_kind, ("PC1", "PC2")), keep_view=keep,
                      colours=st.colours)
        self._highlight()
        self._current_changed()
        self._path_changed()

    def _metadata_changed(self) -> None:
        """The colourings on offer: built in, fit error (where it can be computed), landscape
        state (once computed), the metadata's columns."""
        st = self.state
        computed = tuple(name for name in (FIT_ERROR, LANDSCAPE_STATE)
                         if name in st.particle_values or name == FIT_ERROR and self.fit.available)
        self.junk_button.setEnabled(self.fit.available)
        self.colour_box.blockSignals(True)
        self.colour_box.clear()
        self.colour_box.addItems(COLOURINGS + computed + tuple(st.metadata_columns))
        asked = self.embedding.colour_by                # or, until its values come, what shows
        pending = asked in (FIT_ERROR, LANDSCAPE_STATE) and asked not in st.particle_values
        self.colour_box.setCurrentText(st.colour_by if pending else asked)
        self.colour_box.blockSignals(False)
        self.colour_note.setText(st.metadata_note)
        self.colour_note.setVisible(bool(st.metadata_note))
        self.colour_box.setToolTip(st.metadata_note or "Colour the particles")

    def _current_changed(self) -> None:
        st = self.state
        shown = st.current_z is not None and st.z is not None
        self.view.set_current(st.project(st.current_z)[0] if shown else None)

    def _highlight(self) -> None:
        """Outline the highlighted selection on the points shown."""
        self.view.set_selected(self.state.highlighted_indices)

    def _path_changed(self) -> None:
        st = self.state
        wp = st.project(st.z[st.waypoints]) if st.waypoints and st.z is not None else None
        self.view.set_path(st.path_xy, wp)

    # -- the user's gestures -----------------------------------------------------------------
    def _colour_chosen(self, by: str) -> None:
        if not by:
            return
        if by == FIT_ERROR and by not in self.state.particle_values:
            try:
                self.fit.compute()                  # coloured as soon as it is there
            except CryoscapeError as e:
                self.activity.error.emit("Per-image fit", str(e))
                self._metadata_changed()            # the box back to the colouring shown
                return
        guard(self.activity, self.embedding.set_colouring, by)

    def _hovered(self, i: int) -> None:
        if i >= 0:
            self.activity.status.emit(f"particle {i}", 2000)
        if self.hover_box.isChecked() and self.state.run is not None and self.view.mode == "pick":
            self.volumes.preview_particle(i)

    def _polygon_selected(self, ind) -> None:
        if len(ind):
            name = self.state.add_selection(ind)           # highlighted as the newest
            self.activity.status.emit(f"{name}: {len(ind)} particles", 5000)

    def _epoch_moved(self, k: int) -> None:
        st = self.state
        epochs = list(st.run.epochs) if st.run else []
        if k < len(epochs) and epochs[k] != st.epoch:
            guard(self.activity, self.runs.set_epoch, epochs[k])
