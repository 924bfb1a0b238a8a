"""Shared fixtures: a private embedding cache for every test session."""

from __future__ import annotations

import pytest
from webserver import RouteServer


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory):
    """Keep the embedding cache of the test run away from the user's ``~/.cache``."""
    mp = pytest.MonkeyPatch()
    mp.setenv("LOOKALIKE_CACHE", str(tmp_path_factory.mktemp("lookalike-cache")))
    mp.setenv("MPLBACKEND", "Agg")
    yield
    mp.undo()


@pytest.fixture
def serve():
    """Start :class:`webserver.RouteServer` instances; all are closed after the test."""
    servers: list[RouteServer] = []

    def start(routes: dict) -> RouteServer:
        servers.append(RouteServer(routes))
        return servers[-1]

    yield start
    for s in servers:
        s.close()
