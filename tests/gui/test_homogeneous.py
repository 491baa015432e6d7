"""A homogeneous run (zdim 0: a decoder only) opens: its one map in the volume view, a note in
place of the scatter, latent tools off; the epoch slider shows each epoch's map."""
from __future__ import annotations

import numpy as np
import pytest

from tests.gui.conftest import WAIT_MS, SyntheticRun, wait_surface, window_surface_fraction


@pytest.fixture(scope="module")
def homogeneous_run(tmp_path_factory):
    """A tiny decoder-only run: 200 images (D 32), 2 epochs, a 2 x 32 MLP, one thread (~4 s)."""
    from cryoscape.core.simulate.dataset import simulate
    from cryoscape.core.train import train

    from tests.train_fixtures import tiny_config
    root = tmp_path_factory.mktemp("homogeneous")
    sim = simulate("discrete", 200, root / "data", D=32, states=2, max_shift=0.0, ctf=False,
                   seed=0)
    cfg = tiny_config(str(sim.path / "particles.star"), zdim=0, num_epochs=2, dec_layers=2,
                      dec_dim=32)
    train(cfg, root / "run", progress=False)
    return root / "run"


def test_homogeneous_run_shows_its_map(qtbot, window, homogeneous_run):
    from cryoscape.core.errors import CryoscapeError
    from cryoscape.core.run import Run

    run = Run.open(homogeneous_run)
    assert run.zdim == 0 and run.epochs == [1, 2]
    window.open_run(homogeneous_run)
    assert not window.errors, window.errors
    st, lv, ex = window.state, window.latent, window.explorer
    assert st.homogeneous and st.z is None and st.epoch == 2
    assert lv.note.isVisible() and not lv.plot.isVisible()
    assert "homogeneous run: no latent space" in lv.note.text()
    assert not window.latent_panel.view_controls.isVisible()             # no View / Colour boxes
    assert not window.trajectory.isEnabled() and not window.selections.isEnabled()
    assert "homogeneous" in window.statusBar().currentMessage()
    wait_surface(qtbot, window, "exact", timeout=WAIT_MS)
    vol, apix = ex.volumes.current_map()
    ref = run.decode(None)                                   # z=None: the run's one map
    assert vol.shape == (32, 32, 32) and np.allclose(vol, ref[0], atol=1e-5)
    assert apix == pytest.approx(run.apix)
    assert window.volume.view.n_vertices > 100
    assert window.volume.info.text().startswith("homogeneous map")
    # the epoch slider: epoch 1's map
    shown = ex.volumes.shown
    before = shown.current
    window.latent_panel.epoch_slider.setValue(0)
    qtbot.waitUntil(lambda: shown.current is not None and shown.current is not before,
                    timeout=WAIT_MS)
    assert st.epoch == 1 and window.latent_panel.epoch_label.text() == "epoch 1"
    ref1 = run.decode(None, epoch=1)[0]
    assert np.allclose(shown.current.volume, ref1, atol=1e-5)
    assert not np.allclose(ref1, ref[0], atol=1e-3)           # a different map indeed
    with pytest.raises(CryoscapeError, match="homogeneous"):
        ex.trajectories.compute_path()
    # a heterogeneous run afterwards: the scatter and the tools are back
    ex.runs.set_run(SyntheticRun(homogeneous_run.parent / "synthetic"))
    qtbot.waitUntil(lambda: st.labels is not None, timeout=WAIT_MS)
    assert lv.plot.isVisible() and not lv.note.isVisible() and lv.n_points == 300
    assert window.trajectory.isEnabled() and window.latent_panel.view_controls.isVisible()


def test_homogeneous_screenshot_command(homogeneous_run, tmp_path):
    from tests.gui.test_cli import _cryoscape

    out = tmp_path / "homogeneous.png"
    r = _cryoscape("gui", homogeneous_run, "--screenshot", out, "--threshold", 1)
    assert r.returncode == 0, r.stderr
    import imageio.v3 as iio
    img = iio.imread(out)
    # a blank view: ~0.001; the 2-epoch map at 1 sigma: ~0.025 (at 2 sigma, scattered bits)
    assert img.shape[0] > 500 and window_surface_fraction(img) > 0.01
    r = _cryoscape("gui", homogeneous_run, "--screenshot", out, "--particle", 3)
    assert r.returncode == 1 and "homogeneous" in r.stderr and "Traceback" not in r.stderr
    r = _cryoscape("movie", homogeneous_run, "--pc", 1, "-o", tmp_path / "m.gif")
    assert r.returncode == 1 and "homogeneous" in r.stderr and "Traceback" not in r.stderr


def test_training_panel_offers_zdim_0(qtbot, window):
    tp = window.training
    tp.configure("p.mrcs", "RUN", zdim=0)
    args = tp.train_args()
    assert args[args.index("--zdim") + 1] == "0"
    assert tp.zdim.text() == "0 (homogeneous)"
