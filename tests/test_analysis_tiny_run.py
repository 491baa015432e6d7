"""End to end on the project's tiny trained run (zdim 1, two discrete states, RELION .star
input, 18 epochs): clusters find the states, their maps are the states' maps, selections go
back to the .star and reconstruct classically, and convergence sees training settle."""
from __future__ import annotations

import numpy as np
import pytest
from cryoscape.core.analysis import convergence, sampling, selection

from tests.conftest import cli

pytestmark = pytest.mark.slow  # trains the shared tiny run when run alone


def corr(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def test_clusters_are_the_states_and_their_maps(tiny_run):
    from cryoscape.core.run import Run
    from sklearn.metrics import adjusted_rand_score

    run = Run.open(tiny_run.run)
    z = run.latents()
    km = sampling.kmeans(z, k=2)
    assert adjusted_rand_score(tiny_run.state, km.labels) > 0.95
    vols = run.decode(z[km.medoids])
    for c in range(2):
        state = np.bincount(tiny_run.state[km.labels == c]).argmax()
        assert corr(vols[c], tiny_run.volumes[state]) > 0.95
        assert corr(vols[c], tiny_run.volumes[state]) > corr(vols[c], tiny_run.volumes[1 - state])


def test_cli_report_select_star_and_backproject(tiny_run, tmp_path):
    from cryoscape.core.io.cryodrgn import load_index
    from cryoscape.core.io.mrc import read_mrc
    from cryoscape.core.io.star import read_star
    from cryoscape.core.run import Run

    assert cli("analyze", tiny_run.run, "--k", 2, "-n", 3, "-o", tmp_path / "rep") == 0
    rep = tmp_path / "rep"
    assert (rep / "z_histogram.png").is_file() and (rep / "loss.png").is_file()
    assert (rep / "pc1/chimerax.cxc").is_file() and not (rep / "pc2").exists()  # zdim 1
    assert read_mrc(rep / "kmeans/vol_000.mrc")[1] == pytest.approx(tiny_run.apix)

    z = Run.open(tiny_run.run).latents()
    km = sampling.kmeans(z, k=2)
    assert cli("select", tiny_run.run, "--cluster", 1, "--k", 2, "--labels",
               "-o", tmp_path / "c1.star") == 0
    src = read_star(tiny_run.data / "particles.star")
    sub = read_star(tmp_path / "c1.star")
    sel = selection.by_cluster(km.labels, [1])
    assert list(sub.particles["rlnImageName"]) == list(src.particles["rlnImageName"].iloc[sel])
    assert (sub.particles["rlnClassNumber"] == 2).all() and sub.optics is not None

    assert cli("select", tiny_run.run, "--cluster", 1, "--k", 2, "-o", tmp_path / "c1.pkl") == 0
    np.testing.assert_array_equal(load_index(tmp_path / "c1.pkl"), sel)
    assert cli("backproject-selection", tiny_run.run, tmp_path / "c1.pkl",
               "-o", tmp_path / "bp") == 0
    state = np.bincount(tiny_run.state[sel]).argmax()
    bp, _ = read_mrc(tmp_path / "bp/selection.mrc")
    assert corr(bp, tiny_run.volumes[state]) > corr(bp, tiny_run.volumes[1 - state])
    fsc = np.loadtxt(tmp_path / "bp/selection_fsc.txt", skiprows=1)
    assert fsc[1:5, 1].min() > 0.5  # half maps agree at low resolution


def test_convergence_sees_training_settle(tiny_run):
    from cryoscape.core.run import Run
    from scipy.spatial import procrustes

    run = Run.open(tiny_run.run)
    res = convergence.convergence(run, k=2, D=16, progress=False)
    assert len(res.epochs) == 18 and res.reference_epoch == 18
    assert res.drift_final[0] > 0.5 and res.drift_final[-2] < 0.05
    assert res.ari_final[0] < 0.5 and res.ari_final[-2] > 0.95
    # the second-to-last epoch's decoder nearly agrees with the last one's; the first does not
    assert res.map_fsc_final[0] < 0.95 and res.map_fsc_final[-2] > 0.99
    ref = run.latents(18)
    for i in (0, 8, 16):  # drift against the last epoch, as scipy measures it
        assert res.drift_final[i] == pytest.approx(procrustes(ref, run.latents(i + 1))[2],
                                                   rel=1e-4)
    assert res.loss[0] > res.loss[-1] and res.loss_epochs == list(range(1, 19))
