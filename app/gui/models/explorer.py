"""The explorer's state: a plain object with events, separate from the widgets that draw it.

Widgets read from `ExplorerState` and services call its setters; every setter announces its
change by an event (`models.events.Signal`), so several views stay in step without knowing each
other (napari's model/view split). No Qt here: the model is tested headless.
"""
from __future__ import annotations

import numpy as np
from cryoscape.app.gui.models.events import Signal
from scipy.spatial import cKDTree

EVENTS = ("run_changed", "latents_changed", "embedding_changed", "clusters_changed",
          "colouring_changed", "selections_changed", "highlight_changed", "current_changed",
          "threshold_changed", "path_changed", "metadata_changed", "values_changed")


class ExplorerState:
    """What the user is looking at: a run, an epoch's latents, their 2D view and clusters,
    colouring and metadata, selections, the current point, the isosurface level and a path.
    Events (`Signal`s): one per entry of `EVENTS`; `threshold_changed` passes the level."""

    def __init__(self):
        for name in EVENTS:
            setattr(self, name, Signal())
        self.run = None
        self.epoch: int | None = None
        self.z: np.ndarray | None = None            # (N, zdim) posterior means; None: zdim 0
        self.embedding: np.ndarray | None = None    # (N, 2), or None for zdim 1 (histogram)
        self.embedding_kind = "PCA"
        self.pca: tuple[np.ndarray, np.ndarray] | None = None   # (mean, components [2, zdim])
        self.labels: np.ndarray | None = None       # k-means cluster of each particle
        self.centre_index: np.ndarray | None = None  # on-data particle nearest each centre
        self.colour_by = "k-means"                  # what the points are coloured by
        self.colour_values: np.ndarray | None = None
        self.colours: np.ndarray | None = None      # their RGBA [N, 4] uint8
        self.metadata = None                        # pandas.DataFrame | None
        self.metadata_note = ""                     # why metadata colouring is off
        self.metadata_columns: list[str] = []       # the columns worth colouring by
        self.particle_values: dict[str, np.ndarray] = {}   # [N] each, for the latents shown
        self.selections: dict[str, np.ndarray] = {}
        self.highlighted: str | None = None         # the selection outlined on the points
        self.current_z: np.ndarray | None = None
        self.current_index: int | None = None
        self.threshold = 2.0                        # isosurface level, standard deviations
        self.waypoints: list[int] = []
        self.path_z: np.ndarray | None = None
        self.path_xy: np.ndarray | None = None
        self._tree = None

    # -- run and latents ---------------------------------------------------------------------
    @property
    def zdim(self) -> int:
        return 0 if self.z is None else self.z.shape[1]

    @property
    def homogeneous(self) -> bool:
        """A run without latent space (zdim 0: a decoder only, one map)."""
        return self.run is not None and getattr(self.run, "zdim", None) == 0

    @property
    def n(self) -> int:
        return 0 if self.z is None else len(self.z)

    def set_run(self, run, epoch: int | None = None) -> None:
        """Show `run` (any object with the Run API) at `epoch` (last by default)."""
        self.run = run
        self.selections, self.highlighted = {}, None
        self.waypoints, self.path_z, self.path_xy = [], None, None
        self.current_z, self.current_index = None, None
        self.metadata, self.metadata_note, self.metadata_columns = None, "", []
        self.colour_values, self.colours = None, None
        self.epoch = None
        self.run_changed.emit()
        self.metadata_changed.emit()                # the last run's columns are gone
        self.set_epoch(epoch if epoch is not None else (run.epochs[-1] if run.epochs else None))
        self.selections_changed.emit()
        self.path_changed.emit()

    def set_epoch(self, epoch: int | None) -> None:
        """Load that epoch's latents (the run's final latents when `epoch` is None); a
        homogeneous run has none (`z` None) and shows that epoch's map."""
        self.epoch = epoch
        if self.homogeneous:
            self.z = None
        else:
            z = np.asarray(self.run.latents(epoch), dtype=np.float32)
            self.z = z.reshape(len(z), -1)
        self._tree = None
        self.labels, self.centre_index = None, None
        self.embedding, self.pca, self.embedding_kind = None, None, "PCA"
        if self.particle_values:                    # they belonged to the other latents
            self.particle_values = {}
            self.values_changed.emit()
        self.latents_changed.emit()

    def set_embedding(self, kind: str, xy: np.ndarray | None, pca=None, tree=None,
                      colouring=None) -> None:
        """The 2D view: PCA (`pca` = (mean, components)), UMAP (`tree`: a cKDTree of z built
        off the GUI thread, or built here on first use) or None for a histogram (zdim 1);
        `colouring` (a models.colour.Colouring) comes with it, drawn with the points."""
        self.embedding_kind, self.embedding, self.pca = kind, xy, pca
        if tree is not None:
            self._tree = tree
        if colouring is not None:
            self._take_colouring(colouring)
        if self.path_z is not None:
            self.path_xy = self.project(self.path_z)
        self.embedding_changed.emit()

    def project(self, z: np.ndarray) -> np.ndarray:
        """2D coordinates of latent points on the current view (exact for PCA, else nearest)."""
        z = np.atleast_2d(z)
        if self.embedding is None:
            return np.stack([z[:, 0], np.zeros(len(z))], 1)
        if self.pca is not None:
            mean, comps = self.pca
            return (z - mean) @ comps.T
        return self.embedding[self.nearest_particles(z)]

    def nearest_particles(self, z: np.ndarray) -> np.ndarray:
        """Index of the particle nearest in z to each row of `z`."""
        if self._tree is None:
            self._tree = cKDTree(self.z)
        return self._tree.query(np.atleast_2d(z))[1]

    def set_clusters(self, labels: np.ndarray, centre_index: np.ndarray) -> None:
        """k-means `labels` [N] and the on-data particle nearest each centre."""
        self.labels, self.centre_index = labels, centre_index
        self.clusters_changed.emit()

    def set_colouring(self, colouring) -> None:
        """A models.colour.Colouring for the points shown."""
        self._take_colouring(colouring)
        self.colouring_changed.emit()

    def _take_colouring(self, colouring) -> None:
        self.colour_by, self.colour_values, self.colours = \
            colouring.by, colouring.values, colouring.colours

    def set_particle_values(self, name: str, values: np.ndarray | None) -> None:
        """Values per particle of the latents shown (e.g. 'fit error'), to colour by (None:
        gone)."""
        if values is None:
            self.particle_values.pop(name, None)
        else:
            values = np.asarray(values)
            if len(values) != self.n:
                raise ValueError(f"{name}: {len(values)} values for {self.n} particles")
            self.particle_values[name] = values
        self.values_changed.emit()

    def set_metadata(self, table, note: str = "", columns: list[str] | None = None) -> None:
        self.metadata, self.metadata_note, self.metadata_columns = table, note, columns or []
        self.metadata_changed.emit()

    # -- current volume ----------------------------------------------------------------------
    def set_current(self, z: np.ndarray, index: int | None = None) -> None:
        self.current_z = np.asarray(z, dtype=np.float32).reshape(-1)
        self.current_index = index
        self.current_changed.emit()

    def set_threshold(self, sigma: float) -> None:
        if sigma != self.threshold:
            self.threshold = float(sigma)
            self.threshold_changed.emit(self.threshold)

    # -- selections --------------------------------------------------------------------------
    def add_selection(self, ind: np.ndarray, name: str | None = None) -> str:
        """Store a particle subset under `name` (a fresh 'selection N' by default)."""
        if name is None:
            k = len(self.selections) + 1
            while f"selection {k}" in self.selections:
                k += 1
            name = f"selection {k}"
        self.selections[name] = np.unique(np.asarray(ind, dtype=np.int64))
        self.selections_changed.emit()
        return name

    def set_highlighted(self, name: str | None) -> None:
        """Outline selection `name` on the points (None: none)."""
        if name != self.highlighted:
            self.highlighted = name
            self.highlight_changed.emit()

    @property
    def highlighted_indices(self) -> np.ndarray | None:
        """The particles of the highlighted selection, or None."""
        return self.selections.get(self.highlighted) if self.highlighted else None

    def remove_selection(self, name: str) -> None:
        self.selections.pop(name, None)
        self.selections_changed.emit()

    def rename_selection(self, old: str, new: str) -> None:
        if new and new != old and old in self.selections and new not in self.selections:
            self.selections = {(new if k == old else k): v for k, v in self.selections.items()}
            self.selections_changed.emit()

    # -- trajectories ------------------------------------------------------------------------
    def set_waypoints(self, indices: list[int]) -> None:
        self.waypoints = [int(i) for i in indices]
        self.path_changed.emit()

    def set_path(self, path_z: np.ndarray | None) -> None:
        self.path_z = None if path_z is None else np.asarray(path_z, dtype=np.float32)
        self.path_xy = None if path_z is None else self.project(self.path_z)
        self.path_changed.emit()
