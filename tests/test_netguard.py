"""lookalike.netguard: public addresses only, pinned at connect time, and a hard deadline.

Through :func:`lookalike.net.fetch` against real servers on 127.0.0.1 (no mocks of requests).
"""

from __future__ import annotations

import collections
import socket
import threading
import time

import pytest
from webserver import ok

from lookalike import net, netguard


@pytest.mark.parametrize(
    "ip, public",
    [
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("192.168.0.10", False),
        ("172.16.5.4", False),
        ("169.254.169.254", False),
        ("fd00:ec2::254", False),
        ("::1", False),
        ("::ffff:127.0.0.1", False),
        ("224.0.0.1", False),
        ("0.0.0.0", False),
        ("100.64.0.1", False),
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
    ],
)
def test_is_public_ip(ip, public):
    import ipaddress

    assert netguard.is_public_ip(ipaddress.ip_address(ip)) is public
    assert (netguard.check_host(ip)[0] == "") is public


class Trickle:
    """A raw TCP server that answers one request a byte at a time (every ``gap_s`` seconds)."""

    def __init__(self, payload: bytes, *, gap_s: float = 0.05, head: bytes = b""):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/x"
        self.payload, self.head, self.gap_s = payload, head, gap_s
        self.sent = 0
        self.cut_off = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        conn, _ = self.sock.accept()
        conn.recv(65536)
        try:
            conn.sendall(self.head)
            for i in range(len(self.payload)):
                conn.sendall(self.payload[i : i + 1])
                self.sent += 1
                time.sleep(self.gap_s)
        except OSError:  # the client hung up
            self.cut_off = True
        finally:
            conn.close()
            self.sock.close()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("phase", ["headers", "body"])
def test_trickling_server_is_cut_off_at_the_deadline(session, phase):
    # 100 bytes at 50 ms each take 5 s; every single recv is far below the 0.5 s read timeout,
    # so only a whole-request deadline stops it. Before the watchdog the client read all.
    if phase == "headers":
        t = Trickle(b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 80 + b"\r\n\r\n")
    else:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 100\r\n\r\n"
        t = Trickle(b"x" * 100, head=head)
    r = net.fetch(session, t.url, allow_private_hosts=True, timeout_s=0.5, max_retries=2)
    t.thread.join(10)
    assert r.error == "timeout" and r.attempts == 1
    assert t.cut_off and t.sent < len(t.payload)


def _fake_dns(monkeypatch, answers: dict[str, list[str]]):
    """Resolve the names in ``answers`` to the next address of their list (last one repeats)."""
    real = socket.getaddrinfo
    calls = collections.Counter()

    def getaddrinfo(host, port, *args, **kwargs):
        if host in answers:
            seq = answers[host]
            ip = seq[min(calls[host], len(seq) - 1)]
            calls[host] += 1
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port or 80))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(netguard, "_resolve_cache", {})
    return calls


def test_dns_rebinding_between_check_and_connect_is_refused(serve, session, monkeypatch):
    # Treat 127.0.0.1 as "public" so the test stays on loopback: the pre-check sees it, then
    # the name rebinds to 127.0.0.2 (not public here). The connection must use the checked
    # answer or check again, never connect to the new address.
    srv = serve({"/x": ok(b"secret")})
    port = srv.url.rsplit(":", 1)[1]
    monkeypatch.setattr(netguard, "is_public_ip", lambda ip: str(ip) == "127.0.0.1")
    calls = _fake_dns(monkeypatch, {"rebind.test": ["127.0.0.1", "127.0.0.2"]})
    r = net.fetch(session, f"http://rebind.test:{port}/x", timeout_s=2.0, max_retries=2)
    assert r.error == "private_address" and "127.0.0.2" in r.detail
    assert srv.hits["/x"] == 0 and calls["rebind.test"] == 2
    # A stable answer connects, to the checked address, without a third lookup by urllib3.
    calls = _fake_dns(monkeypatch, {"stable.test": ["127.0.0.1"]})
    r = net.fetch(session, f"http://stable.test:{port}/x", timeout_s=2.0)
    assert r.ok and r.content == b"secret" and calls["stable.test"] == 2


def test_guard_applies_only_inside_fetch(serve, session):
    # Other code may use the session directly (e.g. against a local server): plain requests.
    srv = serve({"/x": ok(b"plain")})
    assert session.get(srv.url + "/x", timeout=5).content == b"plain"
    assert net.fetch(session, srv.url + "/x", timeout_s=2.0).error == "private_address"
    assert srv.hits["/x"] == 1
