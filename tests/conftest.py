"""Shared fixtures: a private embedding cache, local web servers, an HTTP session."""

from __future__ import annotations

import pytest
from webserver import RouteServer

from lookalike import net


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


@pytest.fixture
def session():
    """A lookalike HTTP session for tests on 127.0.0.1 (proxy variables ignored)."""
    s = net.build_session(net.HttpOptions(user_agent="lookalike-tests"))
    s.trust_env = False  # a developer's HTTP_PROXY must not reroute 127.0.0.1 tests
    yield s
    s.close()
