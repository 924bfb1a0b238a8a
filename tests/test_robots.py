"""lookalike.robots: robots.txt per host against real HTTP servers on 127.0.0.1 (no mocks)."""

from __future__ import annotations

import pytest
from webserver import ok

from lookalike import net
from lookalike.robots import ROBOTS_MAX_BYTES, RobotsCache


def test_robots_cache_rules_crawl_delay_and_switch(serve, session):
    srv = serve(
        {
            "/robots.txt": ok(b"User-agent: *\nDisallow: /private/\nCrawl-delay: 2\n"),
            "/a": ok(),
        }
    )
    limiter = net.HostRateLimiter(0.0)
    opts = net.HttpOptions(allow_private_hosts=True, timeout_s=5.0)
    robots = RobotsCache(session, opts, limiter=limiter)
    assert robots.allowed(srv.url + "/a") == (True, "")
    assert robots.allowed(srv.url + "/private/x") == (False, "robots_disallowed")
    assert srv.hits["/robots.txt"] == 1  # fetched once per host
    assert limiter.delay_for("127.0.0.1") == 2.0
    off = RobotsCache(session, net.HttpOptions(respect_robots=False))
    assert off.allowed(srv.url + "/private/x") == (True, "")
    assert srv.hits["/robots.txt"] == 1  # switched off: nothing fetched


def test_robots_5xx_disallows_the_host(serve, session):
    srv = serve({"/robots.txt": (503, {}, b"down")})
    opts = net.HttpOptions(allow_private_hosts=True, timeout_s=5.0)
    robots = RobotsCache(session, opts)
    assert robots.allowed(srv.url + "/a") == (False, "robots_unavailable")


def _large_robots(extra: bytes = b"") -> bytes:
    """A robots.txt over the cap: its Disallow in the first lines, then comments past 500 KiB."""
    head = b"User-agent: *\nDisallow: /private/\n" + extra
    pad = b"# " + b"x" * 78 + b"\n"
    return head + pad * (ROBOTS_MAX_BYTES // len(pad) + 200)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(_large_robots(), id="over-the-cap"),
        pytest.param(b"\xef\xbb\xbfUser-agent: *\nDisallow: /private/\n", id="utf8-bom"),
    ],
)
def test_large_or_bom_robots_txt_keeps_its_rules(serve, session, body):
    # Before: a file over 512 kB failed as too_large ("no rules"), and with a BOM the first
    # line was "\ufeffUser-agent" so no group matched: /private/ was allowed in both cases.
    assert len(body) > ROBOTS_MAX_BYTES or body.startswith(b"\xef\xbb\xbf")
    srv = serve({"/robots.txt": ok(body), "/private/x": ok()})
    robots = RobotsCache(session, net.HttpOptions(allow_private_hosts=True, timeout_s=5.0))
    assert robots.allowed(srv.url + "/private/x") == (False, "robots_disallowed")
    assert robots.allowed(srv.url + "/public") == (True, "")
    assert srv.hits["/private/x"] == 0


def test_rules_past_the_cap_are_not_read_and_the_cut_line_is_dropped(serve, session):
    # The file is cut at 500 KiB; a rule whose line straddles the cut is not half-applied.
    body = _large_robots()
    cut = body[:ROBOTS_MAX_BYTES].rsplit(b"\n", 1)[0] + b"\n"
    body = cut + b"Disallow: /" + b"a" * 200 + b"\nDisallow: /late/\n"
    srv = serve({"/robots.txt": ok(body)})
    robots = RobotsCache(session, net.HttpOptions(allow_private_hosts=True, timeout_s=5.0))
    assert robots.allowed(srv.url + "/private/x") == (False, "robots_disallowed")
    assert robots.allowed(srv.url + "/late/x") == (True, "")
    assert robots.allowed(srv.url + "/a") == (True, "")  # not "Disallow: /a..." cut short
