"""One encode pipeline: arrays, particle files and Particles give a CTF-trained run's own
training latents (z.N.pkl), centred and CTF-phase-flipped as in training."""
from __future__ import annotations

import numpy as np
import pytest
from cryoscape.core.errors import CryoscapeError
from cryoscape.core.io.particles import load_particles
from cryoscape.core.io.pickles import load_pickles
from cryoscape.core.run import Run


@pytest.fixture(scope="module")
def trained(tiny_run):
    """(run, training latents of its last epoch, its particles with poses and CTF)."""
    run = Run.open(tiny_run.run)
    z = load_pickles(tiny_run.run / f"z.{tiny_run.epochs}.pkl")[0]
    p = load_particles(tiny_run.data / "particles.star", lazy=True)
    assert p.ctf is not None and np.abs(p.shifts).max() > 1.0   # CTF-trained, off-centre
    return run, z, p


def test_array_with_its_ctf_gives_the_training_latents(trained):
    run, z, p = trained
    images = p.images[:]
    mu = run.encode(images, ctf=p.ctf, shifts=p.shifts, batch_size=100)
    np.testing.assert_allclose(mu, z, atol=1e-5)
    # the CTF matters: another image's CTF moves the latents well away from training's
    wrong = run.encode(images, ctf=p.ctf[::-1].copy(), shifts=p.shifts)
    assert np.abs(wrong - z).max() > 100 * np.abs(mu - z).max() + 0.1
    with pytest.raises(CryoscapeError, match="CTF"):
        run.encode(images)                    # a CTF-trained run refuses images without one


def test_particle_files_give_the_training_latents(trained, tiny_run):
    run, z, _ = trained
    np.testing.assert_allclose(run.encode(tiny_run.data / "particles.star"), z, atol=1e-5)
    mu, logvar = run.posterior(tiny_run.data / "particles.mrcs",
                               poses=tiny_run.data / "poses.pkl", ctf=tiny_run.data / "ctf.pkl")
    np.testing.assert_allclose(mu, z, atol=1e-5)
    np.testing.assert_allclose(logvar, load_pickles(tiny_run.run / "z.pkl")[1], atol=1e-5)


def test_particles_keep_their_index(trained, tiny_run):
    run, z, _ = trained
    ind = np.array([599, 3, 250, 17, 42, 400])
    sub = load_particles(tiny_run.data / "particles.star", ind=ind, lazy=True)
    np.testing.assert_allclose(run.encode(sub), z[ind], atol=1e-5)
