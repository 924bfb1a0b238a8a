"""Shared fixtures: a private embedding cache for every test session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory):
    """Keep the embedding cache of the test run away from the user's ``~/.cache``."""
    mp = pytest.MonkeyPatch()
    mp.setenv("LOOKALIKE_CACHE", str(tmp_path_factory.mktemp("lookalike-cache")))
    mp.setenv("MPLBACKEND", "Agg")
    yield
    mp.undo()
