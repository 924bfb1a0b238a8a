"""A tiny real HTTP server for tests: a route table on 127.0.0.1, optionally a proxy.

``routes`` maps a key to ``(status, headers, body)`` or to ``callable(hit_number)`` that
returns one. A key is a path (``"/a"``, or ``"/a?page=2"`` to match the query too) or, when
the server is used as an HTTP proxy, an absolute URL (``"http://acme.test/favicon.ico"``).
In proxy mode a request for a host that no route names gets 502, like an unreachable site.
Every request is counted in ``hits`` under the key it matched. A :class:`Trickle` route
sends its status line at once and then its headers a byte at a time (a server that stalls
inside its headers).
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

Route = tuple[int, dict[str, str | None], bytes]

NOT_FOUND: Route = (404, {"Content-Type": "text/html"}, b"<html>not found</html>")
BAD_GATEWAY: Route = (502, {"Content-Type": "text/plain"}, b"unknown host")


@dataclass
class Trickle:
    """A route whose status line goes out at once, then its headers one byte every ``gap_s``."""

    route: Route
    gap_s: float = 0.05

    def send(self, wfile) -> None:
        status, headers, body = self.route
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items() if v is not None)
        head += f"Content-Length: {len(body)}\r\n\r\n"
        wfile.write(f"HTTP/1.1 {status} OK\r\n".encode())
        wfile.flush()
        try:
            for b in head.encode() + body:
                wfile.write(bytes([b]))
                wfile.flush()
                time.sleep(self.gap_s)
        except OSError:  # the client gave up: that is the point
            pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 (http.server API)
        srv: _Quiet = self.server  # type: ignore[assignment]
        url = self.path
        key = url if url in srv.routes else urlsplit(url).path
        with srv.lock:
            srv.hits[key] += 1
            n = srv.hits[key]
        route = srv.routes.get(key)
        if route is None:
            host = urlsplit(url).hostname
            route = BAD_GATEWAY if host and host not in srv.hosts else NOT_FOUND
        if callable(route):
            route = route(n)
        if isinstance(route, Trickle):
            route.send(self.wfile)
            self.close_connection = True
            return
        status, headers, body = route
        self.send_response(status)
        for k, v in headers.items():
            if v is not None:
                self.send_header(k, v)
        if headers.get("Connection") == "close":
            self.close_connection = True
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _Quiet(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # clients that hang up early (size caps, timeouts) are part of the tests


class RouteServer:
    """Serve ``routes`` on an ephemeral 127.0.0.1 port until :meth:`close`."""

    def __init__(self, routes: dict):
        self.httpd = _Quiet(("127.0.0.1", 0), _Handler)
        self.httpd.routes = routes
        self.httpd.hosts = {urlsplit(k).hostname for k in routes if "://" in k}
        self.httpd.hits = collections.Counter()
        self.httpd.lock = threading.Lock()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def routes(self) -> dict:
        return self.httpd.routes

    @property
    def hits(self) -> collections.Counter:
        return self.httpd.hits

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def ok(body: bytes = b"hello", ctype: str = "text/plain") -> tuple[int, dict, bytes]:
    """A route's answer: 200 with ``body`` as ``ctype``."""
    return (200, {"Content-Type": ctype}, body)
