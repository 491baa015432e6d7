"""The explorer's models without Qt: every setter of `ExplorerState` emits its event, the state
a run brings is reset with it, and colours map values as the scatter shows them."""
from __future__ import annotations

import numpy as np
import pytest
from cryoscape.app.gui.models.activity import Activity
from cryoscape.app.gui.models.colour import PALETTE, colour_columns, colouring, colourise
from cryoscape.app.gui.models.events import Signal
from cryoscape.app.gui.models.explorer import EVENTS, ExplorerState
from cryoscape.app.gui.models.volumes import MeshResult, VolumeResult, VolumesShown


class _Run:
    """The Run API the state reads: epochs, zdim, latents."""

    def __init__(self, n=50, zdim=3, epochs=(1, 2)):
        rng = np.random.default_rng(0)
        self.epochs, self.zdim = list(epochs), zdim
        self._z = {e: rng.normal(size=(n, zdim)).astype(np.float32) for e in epochs}

    def latents(self, epoch=None):
        return self._z[self.epochs[-1] if epoch is None else epoch]


@pytest.fixture
def state():
    st = ExplorerState()
    st.heard = []
    for name in EVENTS:
        getattr(st, name).connect(lambda *args, name=name: st.heard.append((name, *args)))
    return st


def test_signal_calls_in_order_and_disconnects():
    s, calls = Signal(), []
    first = s.connect(lambda x: calls.append(("a", x)))
    s.connect(lambda x: calls.append(("b", x)))
    s.emit(1)
    s.disconnect(first)
    s.emit(2)
    assert calls == [("a", 1), ("b", 1), ("b", 2)]


def test_every_setter_emits(state):
    run = _Run()
    state.set_run(run)
    assert [e[0] for e in state.heard] == ["run_changed", "metadata_changed", "latents_changed",
                                           "selections_changed", "path_changed"]
    assert state.epoch == 2 and state.n == 50 and state.zdim == 3
    np.testing.assert_array_equal(state.z, run.latents(2))
    calls = [
        (lambda: state.set_epoch(1), "latents_changed"),
        (lambda: state.set_clusters(np.zeros(50, int), np.array([3])), "clusters_changed"),
        (lambda: state.set_embedding("PCA", np.zeros((50, 2), np.float32)), "embedding_changed"),
        (lambda: state.set_colouring(colouring("none", None, None, None)), "colouring_changed"),
        (lambda: state.set_metadata(None, "no metadata"), "metadata_changed"),
        (lambda: state.set_current(state.z[4], 4), "current_changed"),
        (lambda: state.set_threshold(3.0), "threshold_changed"),
        (lambda: state.add_selection([5, 1, 1]), "selections_changed"),
        (lambda: state.rename_selection("selection 1", "left"), "selections_changed"),
        (lambda: state.set_highlighted("left"), "highlight_changed"),
        (lambda: state.remove_selection("left"), "selections_changed"),
        (lambda: state.set_waypoints([1, 2]), "path_changed"),
        (lambda: state.set_path(state.z[:3]), "path_changed"),
    ]
    for setter, event in calls:
        state.heard.clear()
        setter()
        assert [e[0] for e in state.heard] == [event], event
    assert ("threshold_changed", 3.0) not in state.heard
    state.heard.clear()
    state.set_threshold(3.0)                       # no change: no event
    state.set_highlighted("left")
    assert state.heard == [] and state.highlighted_indices is None     # "left" was removed


def test_a_run_resets_what_the_last_one_had(state):
    state.set_run(_Run())
    state.set_highlighted(state.add_selection([1, 2, 3]))
    state.set_waypoints([0, 1])
    state.set_path(state.z[:2])
    state.set_current(state.z[0], 0)
    state.set_metadata(object(), "", ["rlnDefocusU"])
    state.set_run(_Run(n=20, zdim=2))
    assert state.selections == {} and state.highlighted is None
    assert state.waypoints == [] and state.path_z is None
    assert state.current_index is None and state.metadata is None
    assert state.metadata_columns == [] and state.n == 20


def test_selections_are_unique_sorted_and_named(state):
    state.set_run(_Run())
    assert state.add_selection([7, 2, 7]) == "selection 1"
    state.add_selection([1], name="selection 2")
    assert state.add_selection([0]) == "selection 3"
    np.testing.assert_array_equal(state.selections["selection 1"], [2, 7])
    state.rename_selection("selection 1", "selection 2")     # taken: refused, no event
    assert list(state.selections) == ["selection 1", "selection 2", "selection 3"]


def test_projection_on_the_view(state):
    state.set_run(_Run())
    z = state.z
    mean, comps = z.mean(0), np.linalg.svd(z - z.mean(0))[2][:2]
    state.set_embedding("PCA", (z - mean) @ comps.T, pca=(mean, comps))
    np.testing.assert_allclose(state.project(z[[3, 8]]), ((z - mean) @ comps.T)[[3, 8]],
                               atol=1e-5)
    xy = np.arange(100, dtype=np.float32).reshape(50, 2)     # UMAP: the nearest particle's
    state.set_embedding("UMAP", xy)
    np.testing.assert_array_equal(state.project(z[[9]] + 1e-4), xy[[9]])
    state.set_path(z[[1, 2]])
    np.testing.assert_array_equal(state.path_xy, xy[[1, 2]])


def test_colours():
    labels = np.array([0, 1, 2, 1, 25])
    rgba = colourise(labels)
    assert rgba.shape == (5, 4) and rgba.dtype == np.uint8 and (rgba[:, 3] == 230).all()
    np.testing.assert_array_equal(rgba[:4, :3], PALETTE[[0, 1, 2, 1]])   # categories
    values = np.linspace(0.0, 1.0, 1001)
    rgba = colourise(values)                             # numbers: viridis, 1st..99th pct.
    np.testing.assert_array_equal(rgba[0, :3], [68, 1, 84])
    np.testing.assert_array_equal(rgba[-1, :3], [253, 231, 37])
    assert (rgba[0] == rgba[5]).all()                        # below the 1st percentile
    assert colourise(np.arange(50000.0))[0, 3] == 200       # many points: more transparent


def test_colouring_choices():
    import pandas as pd
    from cryoscape.core.analysis.sampling import density_2d

    rng = np.random.default_rng(1)
    xy, labels = rng.normal(size=(200, 2)), rng.integers(0, 5, 200)
    meta = pd.DataFrame({"rlnDefocusU": rng.uniform(1e4, 3e4, 200), "const": np.ones(200),
                         "group": rng.choice(["a", "b"], 200)})
    assert colour_columns(meta) == ["rlnDefocusU", "group"]
    c = colouring("density", labels, xy, meta)
    np.testing.assert_allclose(c.values, density_2d(xy).at(xy))
    c = colouring("rlnDefocusU", labels, xy, meta)
    np.testing.assert_array_equal(c.values, meta["rlnDefocusU"])
    c = colouring("rlnDefocusU", labels, xy, None)          # another run's column: k-means
    assert c.by == "k-means" and (c.values == labels).all()
    c = colouring("none", labels, xy, meta)
    assert c.values is None and c.colours is None


def test_volumes_shown_events():
    shown, heard = VolumesShown(), []
    shown.current_changed.connect(lambda: heard.append("current"))
    shown.mesh_changed.connect(lambda r: heard.append(("mesh", r.which, r.mesh)))
    shown.path_volumes_changed.connect(lambda: heard.append("path"))
    exact = VolumeResult(np.zeros((4, 4, 4), np.float32), np.zeros(2), 4, "exact", 1, 0.0, 7)
    cached = VolumeResult(exact.volume, exact.z, 4, "cache", 1, 0.0, 3)
    shown.set_current(exact)
    shown.show_mesh(MeshResult("exact mesh", exact))
    shown.show_mesh(MeshResult("cached mesh", cached))          # a hover: not the current one
    assert shown.current is exact and shown.current_mesh == "exact mesh"
    shown.set_pinned(exact)
    shown.set_pinned(None)
    shown.set_path_volumes([exact.volume])
    shown.clear()
    assert heard == ["current", ("mesh", 0, "exact mesh"), ("mesh", 0, "cached mesh"),
                     ("mesh", 1, None), "path", "current"]
    assert shown.current is None and shown.pinned is None and shown.path_volumes == []


def test_activity_tracks_tasks():
    act, heard = Activity(), []
    act.busy_changed.connect(lambda busy, what: heard.append((busy, what)))
    act.set_busy("analysis", "UMAP")
    act.set_busy("export", "Writing maps")
    act.set_busy("analysis", None)
    act.set_busy("export", None)
    assert heard == [(True, "UMAP"), (True, "UMAP"), (True, "Writing maps"), (False, "")]
