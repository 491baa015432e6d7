"""Shared test fixtures: the external files in ../shared/fixtures and small helpers."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytest_plugins = ["tests.train_fixtures"]  # tiny_data, tiny_run: one tiny trained run per session

SHARED_FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """../shared/fixtures; skipped where absent, except under CI=true, where that fails."""
    if not SHARED_FIXTURES.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"external fixtures missing: {SHARED_FIXTURES}")
        pytest.skip(f"external fixtures not found at {SHARED_FIXTURES}")
    return SHARED_FIXTURES


@pytest.fixture(scope="session", autouse=True)
def own_temporary_folder(tmp_path_factory):
    """The session's own temporary folder (tempfile.tempdir): analyses of read-only runs
    (the shared fixtures) are cached there, not in the machine's, where an earlier session's
    cache would serve them."""
    import tempfile
    before = tempfile.tempdir
    tempfile.tempdir = str(tmp_path_factory.mktemp("tmp"))
    yield
    tempfile.tempdir = before


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def cli(*argv) -> int:
    """`cryoscape ARGV...` in this process; its exit status."""
    from cryoscape.app.cli import main

    return main([str(a) for a in argv])


class FakeUMAP:
    """Stands in for umap.UMAP (its numba compilation takes ~30 s): the PCA of z plus the
    seed; counts its fits."""

    fits = 0

    def __init__(self, n_neighbors, min_dist, random_state, n_jobs):
        self.seed = random_state

    def fit_transform(self, z):
        from cryoscape.core.analysis.embed import pca

        FakeUMAP.fits += 1
        return pca(z, 2).coords + self.seed


@pytest.fixture
def fake_umap(monkeypatch) -> type[FakeUMAP]:
    """`import umap` gives FakeUMAP during the test (its fit count starts at 0)."""
    import sys
    import types

    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=FakeUMAP))
    monkeypatch.setattr(FakeUMAP, "fits", 0)
    return FakeUMAP
