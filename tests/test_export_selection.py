"""A run's selection exported by one function (the select command's and the explorer's): latent
rows mapped through the training index to particle-file rows, the format by the extension."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from cryoscape.core.analysis.selection import export_selection
from cryoscape.core.errors import CryoscapeError
from cryoscape.core.io.cryodrgn import load_index, save_index
from cryoscape.core.io.mrc import read_mrc
from cryoscape.core.io.star import read_star
from cryoscape.core.simulate import simulate


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run (duck-typed) trained on particles 5, 2, 9, 11, 0, 7 of a 14-particle .star."""
    root = tmp_path_factory.mktemp("sel")
    data = simulate("linear", 14, root / "data", D=16, seed=3).path
    save_index(root / "train_ind.pkl", np.array([5, 2, 9, 11, 0, 7]))
    return SimpleNamespace(path=root, particles_path=data / "particles.star",
                           config={"dataset_args": {"ind": str(root / "train_ind.pkl")}})


def test_each_format_holds_the_selected_particles(run, tmp_path):
    sel, rows = [1, 3, 4], [2, 11, 0]          # latent rows -> particle-file rows
    assert list(load_index(export_selection(run, sel, tmp_path / "s.pkl"))) == rows
    full = read_star(run.particles_path).particles
    star = read_star(export_selection(run, sel, tmp_path / "s.star", labels=[4, 0, 2]))
    assert list(star.particles["rlnImageName"]) == list(full["rlnImageName"].iloc[rows])
    assert list(star.particles["rlnClassNumber"]) == [5, 1, 3]
    stack = read_mrc(export_selection(run, sel, tmp_path / "s.mrcs"))[0]
    images = read_mrc(run.particles_path.parent / "particles.mrcs")[0]
    np.testing.assert_array_equal(stack, images[rows])


def test_format_and_source_are_checked(run, tmp_path):
    mrcs = run.particles_path.parent / "particles.mrcs"
    with pytest.raises(CryoscapeError, match="not one"):
        export_selection(run, [0], tmp_path / "s.star", particles=mrcs)
    with pytest.raises(CryoscapeError, match=r"\.pkl, \.star, \.cs, \.mrcs"):
        export_selection(run, [0], tmp_path / "s.txt")
    assert not list(tmp_path.iterdir())                       # nothing half-written
