"""The landscape's and the per-particle values' models, headless: LandscapeModel's events and
view coordinates, ExplorerState's values (checked, gone with their latents), colouring by them
and the states' legend colours (those of the points)."""
from __future__ import annotations

import numpy as np
import pytest
from cryoscape.app.gui.models.colour import category_colours, colouring, colourise
from cryoscape.app.gui.models.explorer import ExplorerState
from cryoscape.app.gui.models.landscape import LandscapeModel
from cryoscape.core.analysis.landscape import Landscape


class TwoEpochs:
    """The Run API the state needs: latents of two epochs."""
    epochs, zdim, path = [1, 2], 3, "run"

    def latents(self, epoch=None):
        return np.random.default_rng(epoch or 2).normal(size=(50, 3)).astype(np.float32)


def landscape(n=50, k=3, states=(0, 2, 3)) -> Landscape:
    rng = np.random.default_rng(0)
    state = np.asarray(states)[rng.integers(0, len(states), n)]
    M = max(states) + 1
    return Landscape(state=state, volume_pcs=rng.normal(size=(n, k)).astype(np.float32),
                     centre_labels=np.zeros(n, np.int64), centres=np.zeros((1, 3), np.float32),
                     centre_pcs=np.zeros((1, k), np.float32), centre_state=np.zeros(1, np.int64),
                     explained_variance_ratio=np.ones(k, np.float32) / k,
                     state_maps=np.zeros((M, 4, 4, 4), np.float32), pc_maps=np.zeros(0),
                     pc_values=np.zeros(0), mask=np.ones((4, 4, 4), np.float32))


def test_landscape_model_events_and_view():
    m, seen = LandscapeModel(), []
    for name in ("changed", "progress_changed", "selected_changed"):
        getattr(m, name).connect(lambda *a, name=name: seen.append((name, a)))
    z, ls = np.zeros((50, 3), np.float32), landscape()
    m.set_progress("decoding the sketch", 10, 60)
    m.set_landscape(ls, z)
    assert m.is_for(z) and not m.is_for(z.copy()) and m.progress is None
    np.testing.assert_array_equal(m.xy, ls.volume_pcs[:, :2])
    np.testing.assert_array_equal(m.occupancy, np.bincount(ls.state, minlength=4))
    m.select(2)
    m.clear()
    assert m.landscape is None and m.selected is None and not m.is_for(z)
    assert seen == [("progress_changed", ("decoding the sketch", 10, 60)), ("changed", ()),
                    ("selected_changed", (2,)), ("changed", ())]
    one = landscape(k=1)                                  # one volume PC: PC2 is zero
    m.set_landscape(one, z)
    np.testing.assert_array_equal(m.xy, np.c_[one.volume_pcs, np.zeros(50)])


def test_particle_values_colour_and_go_with_their_latents():
    st, events = ExplorerState(), []
    st.values_changed.connect(lambda: events.append(dict(st.particle_values)))
    st.set_run(TwoEpochs())
    err = np.linspace(0, 1, 50)
    st.set_particle_values("fit error", err)
    with pytest.raises(ValueError, match="fit error: 3 values for 50 particles"):
        st.set_particle_values("fit error", err[:3])
    c = colouring("fit error", np.zeros(50, int), None, None, st.particle_values)
    assert c.by == "fit error" and c.values is err
    np.testing.assert_array_equal(c.colours, colourise(err))
    assert colouring("fit error", np.zeros(50, int), None, None).by == "k-means"   # not there
    st.set_epoch(1)                                       # other latents: their values gone
    assert st.particle_values == {} and events[-1] == {}


def test_state_legend_is_the_points_colours():
    state = landscape().state                             # states 0, 2, 3 (1 empty)
    legend = category_colours(state)
    rgba = colourise(state)
    assert sorted(legend) == [0, 2, 3]
    for s, rgb in legend.items():
        assert {tuple(c[:3]) for c in rgba[state == s]} == {rgb}
