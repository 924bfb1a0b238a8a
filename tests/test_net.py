"""lookalike.net against real HTTP servers on 127.0.0.1 (no mocks of requests)."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from webserver import ok

from lookalike import net


def redirect(location, status=302):
    return (status, {"Location": location}, b"")


FAST = dict(allow_private_hosts=True, timeout_s=5.0, backoff_s=0.01, max_wait_s=0.2)


# -- tests ----------------------------------------------------------------------------------


def test_fetch_ok_records_body_type_and_status(serve, session):
    srv = serve({"/a": ok(b"abc", "image/png")})
    r = net.fetch(session, srv.url + "/a", **FAST)
    assert r.ok and r.error is None
    assert (r.content, r.status_code, r.mime_type) == (b"abc", 200, "image/png")
    assert r.final_url == srv.url + "/a" and r.attempts == 1


def test_loopback_refused_without_contacting_server(serve, session):
    srv = serve({"/a": ok()})
    for url in (srv.url + "/a", srv.url.replace("127.0.0.1", "localhost") + "/a"):
        r = net.fetch(session, url, timeout_s=2.0)
        assert r.error == "private_address", url
        assert "allow_private_hosts" in r.detail
    assert srv.hits["/a"] == 0


def test_every_redirect_hop_is_checked(serve, session, monkeypatch):
    # The local server acts as an HTTP proxy for a "public" host that redirects to loopback.
    srv = serve({"/start": redirect("http://127.0.0.1:9/secret"), "/secret": ok(b"secret")})
    real = socket.getaddrinfo

    def fake_getaddrinfo(host, *args, **kwargs):
        if host == "public.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 80))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    session.proxies = {"http": srv.url, "https": srv.url}
    r = net.fetch(session, "http://public.test/start", timeout_s=2.0)
    assert srv.hits["/start"] == 1  # the first hop passed the check and went through the proxy
    assert r.error == "private_address"
    assert r.redirects == ["http://127.0.0.1:9/secret"]


def test_unresolvable_host_is_dns_error_but_allowed_through_proxy(serve, session, monkeypatch):
    srv = serve({"/x": ok(b"via proxy")})
    real = socket.getaddrinfo

    def fake_getaddrinfo(host, *args, **kwargs):
        if host.endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    r = net.fetch(session, "http://shop.invalid/x", timeout_s=2.0)
    assert r.error == "dns_error" and srv.hits["/x"] == 0
    session.proxies = {"http": srv.url}
    r = net.fetch(session, "http://shop.invalid/x", timeout_s=2.0)
    assert r.ok and r.content == b"via proxy"


def test_build_session_proxy_sets_both_schemes_and_env_is_honoured(serve, monkeypatch):
    s = net.build_session(net.HttpOptions(proxy="http://127.0.0.1:3128"))
    assert s.proxies == {"http": "http://127.0.0.1:3128", "https": "http://127.0.0.1:3128"}
    assert s.headers["User-Agent"] == net.DEFAULT_USER_AGENT
    srv = serve({"/env": ok(b"env proxy")})
    monkeypatch.setenv("HTTP_PROXY", srv.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with net.build_session() as env_session:
        r = net.fetch(env_session, "http://catalog.invalid/env", **FAST)
    assert r.ok and r.content == b"env proxy"
    assert srv.hits["/env"] == 1


def test_redirects_followed_manually(serve, session):
    srv = serve({"/a": redirect("/b", 301), "/b": redirect("c"), "/c": ok(b"end")})
    r = net.fetch(session, srv.url + "/a", **FAST)
    assert r.ok and r.content == b"end"
    assert r.final_url == srv.url + "/c"
    assert r.redirects == [srv.url + "/b", srv.url + "/c"]


def test_redirect_loop_and_too_many_redirects(serve, session):
    srv = serve(
        {
            "/l1": redirect("/l2"),
            "/l2": redirect("/l1"),
            **{f"/r{i}": redirect(f"/r{i + 1}") for i in range(20)},
        }
    )
    assert net.fetch(session, srv.url + "/l1", **FAST).error == "redirect_loop"
    r = net.fetch(session, srv.url + "/r0", max_redirects=5, **FAST)
    assert r.error == "redirect_loop" and len(r.redirects) == 5


def test_500_then_success_is_retried(serve, session):
    srv = serve({"/flaky": lambda n: (500, {}, b"oops") if n == 1 else ok(b"fine")})
    r = net.fetch(session, srv.url + "/flaky", max_retries=2, **FAST)
    assert r.ok and r.content == b"fine"
    assert srv.hits["/flaky"] == 2 and r.attempts == 2


@pytest.mark.timeout(20)
def test_429_retry_after_is_honoured_over_backoff(serve, session):
    # backoff would sleep 60 s; Retry-After: 0 must win (the timeout marker fails otherwise).
    srv = serve({"/busy": lambda n: (429, {"Retry-After": "0"}, b"") if n == 1 else ok(b"ok")})
    r = net.fetch(
        session,
        srv.url + "/busy",
        allow_private_hosts=True,
        max_retries=1,
        backoff_s=60.0,
        max_wait_s=60.0,
    )
    assert r.ok and srv.hits["/busy"] == 2


@pytest.mark.timeout(20)
def test_retry_after_wait_is_capped_and_final_status_reported(serve, session):
    srv = serve({"/busy": (429, {"Retry-After": "3600"}, b"slow down")})
    r = net.fetch(session, srv.url + "/busy", max_retries=2, **FAST)
    assert r.error == "http_429" and r.status_code == 429
    assert srv.hits["/busy"] == 3


def test_parse_retry_after():
    assert net.parse_retry_after("2") == 2.0
    assert net.parse_retry_after(None) is None
    assert net.parse_retry_after("soon") is None
    assert net.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past


def test_404_is_not_retried(serve, session):
    srv = serve({"/moved": (302, {}, b"no Location header")})
    r = net.fetch(session, srv.url + "/missing", max_retries=3, **FAST)
    assert r.error == "http_404" and r.status_code == 404 and srv.hits["/missing"] == 1
    r = net.fetch(session, srv.url + "/moved", max_retries=3, **FAST)
    assert r.error == "http_302" and r.content == b"" and srv.hits["/moved"] == 1


def test_timeout(serve, session):
    def slow(n):
        time.sleep(2.0)
        return ok(b"late")

    srv = serve({"/slow": slow})
    r = net.fetch(session, srv.url + "/slow", allow_private_hosts=True, timeout_s=0.5)
    assert r.error == "timeout"
    assert srv.hits["/slow"] == 1  # timeouts are not retried


def test_too_large_by_content_length_and_by_streaming(serve, session):
    srv = serve(
        {
            "/big": ok(b"x" * 5000),
            # A close-delimited body has no Content-Length: the cap must hold while streaming.
            "/stream": (200, {"Connection": "close", "Content-Length": None}, b"y" * 300_000),
        }
    )
    assert net.fetch(session, srv.url + "/big", max_bytes=1000, **FAST).error == "too_large"
    r = net.fetch(session, srv.url + "/stream", max_bytes=100_000, **FAST)
    assert r.error == "too_large" and r.content == b""
    r = net.fetch(session, srv.url + "/big", max_bytes=5000, **FAST)
    assert r.ok and len(r.content) == 5000


def test_connection_refused_and_invalid_url(session):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    r = net.fetch(session, f"http://127.0.0.1:{port}/", max_retries=3, **FAST)
    assert r.error == "connection_refused" and r.attempts == 1
    for bad in ("ftp://example.test/x", "not a url", "file:///etc/passwd"):
        assert net.fetch(session, bad, **FAST).error == "invalid_url"


def test_rate_limiter_spaces_request_starts_per_host():
    limiter = net.HostRateLimiter(0.2)
    starts = {"a": [], "b": []}
    limiter.on_start = lambda host, t: starts[host].append(t)  # told under the host's turn

    slept = {}

    def go(i, host):
        slept[i] = limiter.wait(host)

    hosts = ("a", "a", "a", "b")
    threads = [threading.Thread(target=go, args=(i, h)) for i, h in enumerate(hosts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    a = sorted(starts["a"])
    # each start is taken after the previous one's start + delay: an exact bound, no jitter
    assert len(a) == 3 and all(y - x >= 0.2 for x, y in zip(a, a[1:], strict=False))
    assert len(starts["b"]) == 1 and slept[3] == 0.0  # other hosts do not wait
    assert sorted(slept[i] > 0 for i in range(3)) == [False, True, True]
    limiter.set_delay("A", 5.0)
    assert limiter.delay_for("a") == 5.0 and limiter.delay_for("b") == 0.2
    with pytest.raises(ValueError, match="delay_s"):
        net.HostRateLimiter(-1)


def test_fetch_uses_rate_limiter_for_every_request(serve, session):
    srv = serve({"/flaky": lambda n: (503, {}, b"") if n < 3 else ok()})

    class Counting(net.HostRateLimiter):
        calls = 0

        def wait(self, host):
            Counting.calls += 1
            return super().wait(host)

    r = net.fetch(session, srv.url + "/flaky", rate_limiter=Counting(0.0), max_retries=3, **FAST)
    assert r.ok and Counting.calls == 3


# -- hard deadline, pinned addresses, content types, politeness -------------------------------


def test_reject_types_refuses_before_reading_the_body(serve, session):
    srv = serve(
        {
            "/page": ok(b"<html>" + b"x" * 500_000, "text/html; charset=utf-8"),
            "/img": ok(b"\x89PNG...", "image/png"),
        }
    )
    r = net.fetch(session, srv.url + "/page", reject_types=("text/", "application/json"), **FAST)
    assert r.error == "content_type" and r.mime_type == "text/html" and r.content == b""
    r = net.fetch(session, srv.url + "/img", reject_types=("text/",), **FAST)
    assert r.ok and r.content == b"\x89PNG..."


def test_link_header_next():
    r = net.FetchResult(url="http://s.test/api?p=1", final_url="http://s.test/api?p=1")
    assert r.link("next") is None
    r.headers["link"] = '</api?p=2>; rel="next", <http://s.test/api?p=9>; rel="last"'
    assert r.link("next") == "http://s.test/api?p=2"
    assert r.link("last") == "http://s.test/api?p=9"


def test_limiter_defer_holds_the_host_even_without_a_delay():
    limiter = net.HostRateLimiter(0.0)
    assert limiter.wait("a") == 0.0
    limiter.defer("A", 0.3)
    t0 = time.monotonic()
    limiter.wait("b")  # other hosts are not held back
    assert time.monotonic() - t0 < 0.3
    limiter.wait("a")
    assert time.monotonic() - t0 >= 0.3  # time.sleep never returns early: a lower bound


@pytest.mark.timeout(20)
def test_429_retry_after_pauses_every_request_to_the_host(serve, session):
    # While one request waits out a 429's Retry-After, another request to the same host must
    # not start either. Causal lower bound: the second request reaches the server no earlier
    # than Retry-After seconds after the 429 left it.
    served = {}
    first_429 = threading.Event()

    def busy(n):
        if n == 1:
            served["429"] = time.monotonic()
            first_429.set()
            return (429, {"Retry-After": "0.5"}, b"")
        return ok(b"done")

    def other(n):
        served["other"] = time.monotonic()
        return ok(b"other")

    srv = serve({"/busy": busy, "/other": other})
    limiter = net.HostRateLimiter(0.0)
    kw = dict(allow_private_hosts=True, timeout_s=5.0, rate_limiter=limiter, max_retries=2)
    t = threading.Thread(target=net.fetch, args=(session, srv.url + "/busy"), kwargs=kw)
    t.start()
    assert first_429.wait(5)
    deadline = time.monotonic() + 5
    while "127.0.0.1" not in limiter._next and time.monotonic() < deadline:
        time.sleep(0.005)  # until the client has read the 429 and deferred the host
    r = net.fetch(session, srv.url + "/other", **kw)
    t.join(10)
    assert r.ok and srv.hits["/busy"] == 2
    assert served["other"] - served["429"] >= 0.5


def test_normalize_url():
    n = net.normalize_url
    assert n("HTTP://Shop.Test:80/A/b.JPG?x=1#top") == "http://shop.test/A/b.JPG?x=1"
    assert n("https://shop.test:443") == "https://shop.test/"
    assert n("http://127.0.0.1:8080/x") == "http://127.0.0.1:8080/x"
    assert n("http://[::1]:81/x") == "http://[::1]:81/x"
    assert n("http://shop.test:99999999/x") is None


def test_http_options_check_their_values_and_feed_fetch():
    from lookalike.exceptions import ConfigError

    opts = net.HttpOptions(timeout_s=3.0, max_bytes=10, allow_private_hosts=True)
    assert opts.fetch_args() == {
        "timeout_s": 3.0,
        "max_retries": 3,
        "max_bytes": 10,
        "allow_private_hosts": True,
    }
    assert net.HttpOptions().user_agent == net.DEFAULT_USER_AGENT
    for bad, match in (
        ({"delay_s": -1}, "delay_s"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_bytes": 0}, "max_bytes"),
    ):
        with pytest.raises(ConfigError, match=match):
            net.HttpOptions(**bad)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("status", [200, 302, 404])
def test_an_answer_cut_inside_its_headers_is_a_timeout(serve, session, status):
    # The status line arrives, then the headers trickle past timeout_s: when the watchdog cuts
    # the socket, http.client sees end-of-file and used to hand back a complete-looking answer
    # (a 200 with an empty body, or a redirect without its Location).
    from webserver import Trickle

    head = {"Content-Type": "image/png", "Location": "/elsewhere", "X-Pad": "a" * 60}
    srv = serve({"/x": Trickle((status, head, b"body")), "/elsewhere": ok()})
    t0 = time.monotonic()
    r = net.fetch(session, srv.url + "/x", **dict(FAST, timeout_s=0.5))
    assert (r.ok, r.error, r.content, r.status_code) == (False, "timeout", b"", None)
    assert srv.hits["/elsewhere"] == 0 and time.monotonic() - t0 < 3.0


def test_a_body_shorter_than_its_content_length_is_an_error(session):
    # A server that closes early must not be mistaken for a short image.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)

    def serve_short():
        for _ in range(2):  # the first attempt and one retry
            conn, _ = sock.accept()
            conn.recv(65536)
            head = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 100\r\n\r\n"
            conn.sendall(head + b"x" * 40)
            conn.close()

    threading.Thread(target=serve_short, daemon=True).start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/x"
    r = net.fetch(session, url, **dict(FAST, max_retries=1))
    sock.close()
    assert not r.ok and r.error == "connection_error" and r.content == b"" and r.attempts == 2
