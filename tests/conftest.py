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


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
