"""A small offline web for the demo: a shop catalog and one website per brand, on 127.0.0.1.

:func:`serve` starts a real threaded HTTP server that is also a plain-HTTP forward proxy, so
clients request real-looking URLs through ordinary proxy settings::

    from lookalike import demo
    with demo.serve() as server:
        requests.get("http://shop.test/shoes/", proxies={"http": server.url})

Notebooks 01 and 02 use :func:`serving`, which can also be switched off and hands back the
client settings (``proxy``, ``allow_private_hosts``) the stages need to reach the demo.

Hosts it answers (the requested host comes from the absolute URI in the request line, as a
proxy sees it, else from the ``Host`` header; direct requests to ``server.url`` get the shop):

- ``shop.test`` -- ``/robots.txt``, the paginated listing ``/shoes/`` and ``/shoes/?page=N``,
  ``/shoes.json?page=N``, product pages ``/product/<slug>``, images ``/img/<file>`` and
  thumbnails ``/thumb/<width>/<file>``; data from ``data/demo/shop/catalog.csv``.
- ``<brand>.test`` and ``www.<brand>.test`` for each row of ``data/demo/domains.csv`` that has
  a logo in ``data/demo/logos/``: a homepage whose icon markup varies per brand (see
  :data:`ICON_MECHANISMS`) and the icon files, rendered from the committed PNG on request.
- any other host: ``502 Bad Gateway``; ``CONNECT`` (https through the proxy): ``405`` at once.

Nothing here is special-cased by the scraping or logo code: it is ordinary HTTP. The data and
the pages come from :mod:`lookalike.demo_site`; this module serves them.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import html
import json
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from .demo_site import (
    CONTENT_TYPES,
    ICON_MECHANISMS,
    PAGE_SIZE,
    SHOP_HOST,
    THUMB_WIDTHS,
    DemoData,
    Site,
    html_page,
    listing,
    listing_json,
    product_page,
    site_home,
    web_manifest,
)
from .exceptions import ConfigError
from .paths import DEMO_DIR

__all__ = [
    "DemoServer",
    "ICON_MECHANISMS",
    "PAGE_SIZE",
    "QUERIES_DIR",
    "SHOP_HOST",
    "demo_queries",
    "main",
    "serve",
    "serving",
]

#: The demo's query images for ``lookalike find`` (notebook 05), one folder per demo:
#: ``logos/`` and ``catalog/`` (made by ``scripts/build_demo_queries.py``).
QUERIES_DIR = DEMO_DIR / "queries"


# --------------------------------------------------------------------------------------------
# HTTP


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "lookalike-demo/1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # quiet; see DemoServer.request_log

    # -- plumbing ---------------------------------------------------------------------------

    def _target(self) -> tuple[str, str, str]:
        """Return (host, path, query) from an absolute-URI request line or the Host header."""
        if "://" in self.path.split("?", 1)[0]:
            parts = urlsplit(self.path)
            host = parts.hostname or ""
            return host.rstrip("."), parts.path or "/", parts.query
        host = (self.headers.get("Host") or "").lower()
        host = re.sub(r":\d+$", "", host).strip("[]").rstrip(".")
        parts = urlsplit(self.path)
        if host in ("", "127.0.0.1", "localhost", "::1", self.server.server_address[0]):
            host = SHOP_HOST
        return host, parts.path or "/", parts.query

    def _send(
        self,
        status: int,
        body: bytes | str = b"",
        ctype: str = "text/html; charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        if isinstance(body, str):
            body = body.encode()
        if self.server.latency_s:
            time.sleep(self.server.latency_s)
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.server.log_request_info(self.command, self._host, self._path, status)

    def _error(self, status: int, text: str) -> None:
        self._send(
            status, html_page(f"{status}", "", f"<h1>{status}</h1>\n<p>{html.escape(text)}</p>\n")
        )

    def _file(self, body: bytes, name: str) -> None:
        ctype = CONTENT_TYPES.get(Path(name).suffix.lower(), "application/octet-stream")
        self._send(200, body, ctype, {"Cache-Control": "public, max-age=86400"})

    # -- methods ----------------------------------------------------------------------------

    def do_CONNECT(self) -> None:  # noqa: N802
        # No TLS tunnelling: answer at once so clients fall back to plain http.
        self._host, self._path = self.path, ""
        self.close_connection = True
        body = b"CONNECT is not supported by the lookalike demo proxy; use http:// URLs\n"
        self.send_response(405)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.server.log_request_info("CONNECT", self.path, "", 405)

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        host, path, query = self._target()
        self._host, self._path = host, path + (f"?{query}" if query else "")
        data = self.server.data
        try:
            if host == SHOP_HOST:
                return self._shop(data, path, query)
            if host in data.sites:
                return self._site(data.sites[host], path)
            if host.startswith("www.") and host[4:] in data.sites:
                site = data.sites[host[4:]]
                if site.www_redirects:
                    loc = f"http://{site.domain}{self._path}"
                    return self._send(301, f'<a href="{loc}">moved</a>', headers={"Location": loc})
                return self._site(site, path)
            return self._error(502, f"Bad gateway: cannot reach host {host!r}")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # a bug here must not look like a network failure
            self._error(500, f"demo server error: {type(e).__name__}: {e}")

    def do_POST(self) -> None:  # noqa: N802
        self._host, self._path = self._target()[:2]
        self._error(405, "Only GET and HEAD are supported")

    # -- shop.test --------------------------------------------------------------------------

    def _page_param(self, query: str) -> int | None:
        raw = parse_qs(query).get("page", ["1"])[-1]
        return int(raw) if raw.isdigit() else None

    def _shop(self, data: DemoData, path: str, query: str) -> None:
        if path == "/robots.txt":
            return self._send(
                200,
                "User-agent: *\nDisallow: /private/\nAllow: /\n",
                "text/plain; charset=utf-8",
            )
        if path == "/":
            body = '<h1>Demo Shop</h1>\n<p><a href="/shoes/">All products</a></p>\n'
            return self._send(200, html_page("Demo Shop", "", body))
        if path in ("/shoes", "/shoes/", "/shoes.json"):
            if path == "/shoes":
                return self._send(301, "", headers={"Location": "/shoes/"})
            page = self._page_param(query)
            if page is None:
                return self._error(400, f"page must be a positive integer, got {query!r}")
            if not 1 <= page <= data.n_pages:
                return self._error(404, f"no page {page}; pages are 1..{data.n_pages}")
            if path == "/shoes.json":
                body = json.dumps(listing_json(data, page), indent=1)
                return self._send(200, body, "application/json")
            return self._send(200, listing(data, page))
        if path.startswith("/product/"):
            p = data.by_slug.get(path[len("/product/") :].rstrip("/"))
            if p is None:
                return self._error(404, f"no product at {path}")
            return self._send(200, product_page(p))
        if path.startswith("/img/"):
            name = path[len("/img/") :]
            if name not in data.shop_files:
                return self._error(404, f"no image {name!r}")
            return self._file(data.file_bytes(data.shop_dir / name), name)
        m = re.fullmatch(r"/thumb/(\d+)/([^/]+)", path)
        if m and int(m[1]) in THUMB_WIDTHS and m[2] in data.shop_files:
            return self._file(data.thumbnail(m[2], int(m[1])), m[2])
        if path.startswith("/private/"):
            body = "<h1>Staff only</h1>\n<p>Robots are asked not to come here.</p>\n"
            return self._send(200, html_page("Private", "", body))
        return self._error(404, f"nothing at {path}")

    # -- <brand>.test -----------------------------------------------------------------------

    def _site(self, site: Site, path: str) -> None:
        data, m, slug = self.server.data, site.mechanism, site.slug
        if path in ("/", "/index.html"):
            return self._send(200, site_home(site))
        if path in ("/about", "/contact"):
            body = f"<h1>{html.escape(site.company)}</h1>\n<p>{path[1:].title()}</p>\n"
            return self._send(200, html_page(site.company, "", body))
        if path == "/favicon.ico":
            return self._file(data.favicon(slug, big=m == "favicon-only"), path)
        if m == "svg-link" and path == "/logo.svg":
            return self._file(data.file_bytes(data.logo_dir / f"{slug}.svg"), path)
        if m == "apple-touch-icon" and path == "/apple-touch-icon.png":
            return self._file(data.logo_png(slug, 180, opaque=True), path)
        if m == "png-link" and path == "/static/icon-192.png":
            return self._file(data.logo_png(slug, 192), path)
        if m == "manifest":
            if path == "/site.webmanifest":
                body = json.dumps(web_manifest(site), indent=1)
                return self._send(200, body, "application/manifest+json")
            if path in ("/android-chrome-96x96.png", "/android-chrome-192x192.png"):
                side = 96 if "96x96" in path else 192
                return self._file(data.logo_png(slug, side), path)
        return self._error(404, f"nothing at {path}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], data: DemoData, latency_s: float):
        super().__init__(address, _Handler)
        self.data = data
        self.latency_s = float(latency_s)
        self.request_log: collections.deque[tuple[str, str, str, int]] = collections.deque(
            maxlen=100_000
        )
        self._log_lock = threading.Lock()

        self._open: set[socket.socket] = set()

    def log_request_info(self, method: str, host: str, path: str, status: int) -> None:
        with self._log_lock:
            self.request_log.append((method, host, path, status))

    # Track client sockets so stop() can also end idle keep-alive connections.
    def get_request(self) -> tuple[socket.socket, tuple]:
        sock, addr = super().get_request()
        with self._log_lock:
            self._open.add(sock)
        return sock, addr

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        with self._log_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_clients(self) -> None:
        with self._log_lock:
            open_socks, self._open = list(self._open), set()
        for sock in open_socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


# --------------------------------------------------------------------------------------------
# public API


class DemoServer:
    """A running demo web server (see :func:`serve`).

    Attributes
    ----------
    url : str
        Base URL of the server, e.g. ``"http://127.0.0.1:40123"``; use it as the HTTP proxy.
    catalog_url : str
        ``"http://shop.test/shoes/"``, the first listing page (through the proxy).
    domains : list of str
        Bare site hosts served, e.g. ``["github.test", ...]`` (sorted).
    hosts : dict of str to str
        Every host answered -> what it serves: ``"shop"`` or the icon mechanism of the site.
    n_products, n_pages : int
        Catalog size and number of listing pages.
    request_log : deque of (method, host, path, status)
        Requests answered so far (most recent last; useful in tests and benchmarks).
    """

    def __init__(self, server: _Server, thread: threading.Thread):
        self._server = server
        self._thread = thread
        host, port = server.server_address[:2]
        self.host, self.port = str(host), int(port)
        self.url = f"http://{self.host}:{self.port}"
        self.data_dir = server.data.data_dir
        self.catalog_url = f"http://{SHOP_HOST}/shoes/"
        self.domains = sorted(server.data.sites)
        self.hosts = {SHOP_HOST: "shop"} | {d: s.mechanism for d, s in server.data.sites.items()}
        self.n_products = len(server.data.products)
        self.n_pages = server.data.n_pages
        self.request_log = server.request_log

    @property
    def client_options(self) -> dict:
        """What a stage needs to reach the demo: ``{"proxy": url, "allow_private_hosts": True}``.

        The demo listens on 127.0.0.1, a loopback address the stages refuse by default.
        """
        return {"proxy": self.url, "allow_private_hosts": True}

    def site_info(self, domain: str) -> dict:
        """Icon details of one site: ``{"mechanism", "base_href", "www_redirects", "slug"}``."""
        s = self._server.data.sites[domain]
        return {
            "mechanism": s.mechanism,
            "base_href": s.base_href,
            "www_redirects": s.www_redirects,
            "slug": s.slug,
        }

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()
        self._server.close_clients()

    def __enter__(self) -> DemoServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (
            f"DemoServer(url={self.url!r}, products={self.n_products}, sites={len(self.domains)})"
        )


def serve(
    *,
    data_dir: str | Path = DEMO_DIR,
    latency_s: float = 0.0,
    host: str = "127.0.0.1",
    port: int = 0,
) -> DemoServer:
    """Start the demo web server in a background thread and return at once.

    Parameters
    ----------
    data_dir : path, default ``data/demo``
        Folder with ``shop/catalog.csv`` + images, ``logos/<slug>.png|.svg`` and
        ``domains.csv``.
    latency_s : float, default 0.0
        Seconds to sleep before each response (simulates a slow network in benchmarks).
    host : str, default "127.0.0.1"
        Interface to bind.
    port : int, default 0
        TCP port; 0 picks a free one.

    Returns
    -------
    DemoServer
        Use ``server.url`` as the HTTP proxy; call ``server.stop()`` or use ``with``.
    """
    if latency_s < 0:
        raise ConfigError(f"latency_s must be >= 0 seconds, got {latency_s!r}")
    data = DemoData(Path(data_dir))
    server = _Server((host, int(port)), data, latency_s)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True,
        name="lookalike-demo",
    )  # fmt: skip
    thread.start()
    return DemoServer(server, thread)


@contextlib.contextmanager
def serving(enabled: bool = True, **kwargs) -> Iterator[DemoServer | None]:
    """Serve the demo web for the duration of a ``with`` block (notebooks 01 and 02).

    Parameters
    ----------
    enabled : bool, default True
        False starts nothing and yields None, so a notebook's ``demo`` parameter can be
        passed straight in.
    **kwargs
        Passed to :func:`serve` (``data_dir``, ``latency_s``, ``host``, ``port``).

    Yields
    ------
    DemoServer or None
        The running server; its :attr:`DemoServer.client_options` are the proxy and
        private-host settings for :func:`lookalike.scrape.scrape_catalog` and
        :func:`lookalike.logos.fetch_logos`. It is stopped when the block ends, however it
        ends.

    Examples
    --------
    >>> with serving() as web:  # doctest: +SKIP
    ...     df = fetch_logos(["github.test"], "runs/x", **web.client_options)
    """
    if not enabled:
        yield None
        return
    server = serve(**kwargs)
    print(f"demo web serving on {server.url} (used as HTTP proxy)")
    try:
        yield server
    finally:
        server.stop()


def demo_queries(run_dir) -> Path | None:
    """The demo's own query folder when ``run_dir`` is a run of the demo, else None.

    A run is the logo demo's when every image came from notebook 02 and every domain is one
    of ``data/demo/domains.csv`` (``QUERIES_DIR / "logos"``), the catalog demo's when every
    image came from notebook 01 on the demo shop ``http://shop.test/``
    (``QUERIES_DIR / "catalog"``). Notebook 05's ``find_queries: auto`` uses it.
    """
    from . import storage
    from .domains import read_domains
    from .params import DEMO_DOMAINS

    manifest = storage.read_manifest(run_dir, ok_only=True)
    if not len(manifest):
        return None
    sources = set(manifest["source"].astype(str))
    origins = manifest["origin"].astype(str)
    if sources == {"logos"}:
        demo_domains = set(read_domains(DEMO_DOMAINS)["domain"].dropna().astype(str))
        is_demo = set(origins) <= demo_domains
    elif sources == {"catalog"}:
        is_demo = all(urlsplit(o).hostname == SHOP_HOST for o in origins)
    else:
        return None
    kind = "logos" if sources == {"logos"} else "catalog"
    return QUERIES_DIR / kind if is_demo and (QUERIES_DIR / kind).is_dir() else None


def main(argv: list[str] | None = None) -> int:
    """``python -m lookalike.demo``: serve the demo web until Ctrl-C."""
    ap = argparse.ArgumentParser(
        prog="python -m lookalike.demo",
        description="Serve the offline demo web (shop.test and <brand>.test) as an HTTP proxy.",
    )
    ap.add_argument("--data-dir", default=str(DEMO_DIR), help="demo data folder")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    ap.add_argument("--latency", type=float, default=0.0, help="seconds added per response")
    args = ap.parse_args(argv)
    try:
        server = serve(
            data_dir=args.data_dir, latency_s=args.latency, host=args.host, port=args.port
        )
    except OSError as e:
        print(f"cannot listen on {args.host}:{args.port}: {e}; try --port 0", file=sys.stderr)
        return 1
    u = server.url
    print(
        f"lookalike demo web on {u}  ({server.n_products} products on {server.n_pages} pages, "
        f"{len(server.domains)} sites)\n"
        f"Use it as an HTTP proxy and request the demo hosts by name:\n"
        f"  curl -x {u} {server.catalog_url}\n"
        f"  curl -x {u} http://{server.domains[0]}/\n"
        f"  python: requests.get(url, proxies={{'http': '{u}', 'https': '{u}'}})\n"
        f"  lookalike: proxy='{u}', allow_private_hosts=True,\n"
        f"             catalog_url='{server.catalog_url}', "
        f"site_url_template='http://{{domain}}/' (domains: data/demo/domains.csv)\n"
        "Press Ctrl-C to stop.",
        flush=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
