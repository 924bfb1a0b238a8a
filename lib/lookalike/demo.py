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

Nothing here is special-cased by the scraping or logo code: it is ordinary HTTP.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import csv
import functools
import hashlib
import html
import io
import json
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from PIL import Image

from .exceptions import ConfigError
from .paths import DEMO_DIR

__all__ = ["DemoServer", "ICON_MECHANISMS", "SHOP_HOST", "main", "serve", "serving"]

SHOP_HOST = "shop.test"
#: Products per listing page.
PAGE_SIZE = 24
#: Thumbnail widths served under ``/thumb/<width>/<file>``.
THUMB_WIDTHS = (128, 192)
#: How a brand homepage points at its icon; chosen per brand from a hash of its name.
ICON_MECHANISMS = (
    "svg-link",  # <link rel="icon" type="image/svg+xml" href="/logo.svg">
    "apple-touch-icon",  # <link rel="apple-touch-icon" sizes="180x180" href=...png>
    "png-link",  # <link rel="icon" sizes="192x192" href="/static/icon-192.png">, maybe <base>
    "manifest",  # <link rel="manifest" href="/site.webmanifest"> listing PNG icons
    "favicon-only",  # no markup at all; /favicon.ico holds 16..128 px frames
)
_GIF_1x1 = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"
_CONTENT_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
}
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def _hash(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)


# --------------------------------------------------------------------------------------------
# data


@dataclass(frozen=True)
class _Product:
    slug: str
    title: str
    category: str
    price: str
    files: tuple[str, ...]


@dataclass(frozen=True)
class _Site:
    domain: str  # bare host, e.g. "github.test"
    slug: str  # logo file stem
    company: str
    mechanism: str
    base_href: bool  # png-link pages use <base href="/static/"> and a relative href
    www_redirects: bool  # www.<domain> answers 301 to the bare domain


def _site_domain(raw: str) -> str | None:
    """Loosely normalise a domains.csv entry to a bare ``x.test`` host (demo data only)."""
    text = raw.strip().lower()
    if not text or " " in text:
        return None
    if "//" not in text:
        text = "//" + text
    host = (urlsplit(text).hostname or "").rstrip(".")
    host = host.removeprefix("www.")
    labels = host.split(".")
    if len(labels) < 2 or not all(_LABEL.match(lb) for lb in labels):
        return None
    return host


class _DemoData:
    """Everything the handler serves, loaded once; renders are cached in memory."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.shop_dir = data_dir / "shop"
        self.logo_dir = data_dir / "logos"
        catalog = self.shop_dir / "catalog.csv"
        domains = data_dir / "domains.csv"
        for p in (catalog, domains, self.logo_dir):
            if not p.exists():
                raise ConfigError(
                    f"demo data_dir={str(data_dir)!r} has no {p.name!r}; pass the folder "
                    "holding shop/, logos/ and domains.csv (default: data/demo), or rebuild it "
                    "with scripts/build_demo_data.py"
                )
        with catalog.open(newline="") as f:
            self.products = [
                _Product(
                    slug=r["slug"],
                    title=r["title"],
                    category=r["category"],
                    price=r["price"],
                    files=tuple(x for x in r["files"].split(";") if x),
                )
                for r in csv.DictReader(f)
            ]
        self.by_slug = {p.slug: p for p in self.products}
        self.shop_files = {f for p in self.products for f in p.files}
        self.n_pages = max(1, -(-len(self.products) // PAGE_SIZE))

        self.sites: dict[str, _Site] = {}
        with domains.open(newline="") as f:
            for row in csv.DictReader(f):
                domain = _site_domain(row.get("domain") or "")
                if domain is None or domain in self.sites or domain == SHOP_HOST:
                    continue
                slug = domain.rsplit(".", 1)[0]
                if not (self.logo_dir / f"{slug}.png").exists():
                    continue  # listed but not served: behaves like an unreachable site
                h = _hash(slug)
                self.sites[domain] = _Site(
                    domain=domain,
                    slug=slug,
                    company=(row.get("company") or "").strip() or slug.capitalize(),
                    mechanism=ICON_MECHANISMS[h % len(ICON_MECHANISMS)],
                    base_href=bool((h >> 8) & 1),
                    www_redirects=bool((h >> 9) & 1),
                )

    # -- cached renders (the same image is asked for by many threads; compute it once) --------

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - one instance per server, lives with it
    def logo_png(self, slug: str, side: int, *, opaque: bool = False) -> bytes:
        img = Image.open(self.logo_dir / f"{slug}.png").convert("RGBA")
        if opaque:  # apple-touch-icons are opaque squares with some padding
            canvas = Image.new("RGBA", (side, side), (255, 255, 255, 255))
            inner = round(side * 0.8)
            small = img.resize((inner, inner), Image.LANCZOS)
            canvas.alpha_composite(small, ((side - inner) // 2, (side - inner) // 2))
            img = canvas.convert("RGB")
        elif img.size != (side, side):
            img = img.resize((side, side), Image.LANCZOS)
        buf = io.BytesIO()
        img.save(buf, "PNG", optimize=True)
        return buf.getvalue()

    @functools.lru_cache(maxsize=4096)  # noqa: B019
    def favicon(self, slug: str, *, big: bool) -> bytes:
        img = Image.open(self.logo_dir / f"{slug}.png").convert("RGBA")
        sizes = (
            [(16, 16), (32, 32), (48, 48), (64, 64), (128, 128)] if big else [(16, 16), (32, 32)]
        )
        buf = io.BytesIO()
        img.save(buf, "ICO", sizes=sizes)
        return buf.getvalue()

    @functools.lru_cache(maxsize=2048)  # noqa: B019
    def thumbnail(self, file: str, width: int) -> bytes:
        img = Image.open(self.shop_dir / file).convert("RGB")
        img = img.resize((width, round(img.height * width / img.width)), Image.LANCZOS)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=80)
        return buf.getvalue()

    @functools.lru_cache(maxsize=8192)  # noqa: B019
    def file_bytes(self, path: Path) -> bytes:
        return path.read_bytes()


# --------------------------------------------------------------------------------------------
# pages


def _page(title: str, head: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"{head}</head>\n<body>\n{body}</body>\n</html>\n"
    )


def _card_img(p: _Product) -> str:
    """Listing thumbnail markup; the style varies per product like on real shops."""
    f = p.files[0]
    alt = html.escape(p.title)
    style = _hash("img:" + p.slug) % 5
    if style == 0:
        return f'<img src="/img/{f}" alt="{alt}" width="256" height="256">'
    if style == 1:  # relative to /shoes/
        return f'<img src="../img/{f}" alt="{alt}">'
    if style == 2:  # lazy loading: the real URL is in data-src, protocol-relative
        return (
            f'<img class="lazy" src="{_GIF_1x1}" data-src="//{SHOP_HOST}/img/{f}" '
            f'alt="{alt}" loading="lazy">'
        )
    if style == 3:  # density descriptors; 2x is the full image
        return f'<img src="/thumb/128/{f}" srcset="/thumb/128/{f} 1x, /img/{f} 2x" alt="{alt}">'
    return (  # width descriptors; the widest candidate is the full image
        f'<img src="/thumb/128/{f}" srcset="/thumb/128/{f} 128w, /thumb/192/{f} 192w, '
        f'http://{SHOP_HOST}/img/{f} 256w" sizes="(max-width: 600px) 50vw, 200px" alt="{alt}">'
    )


def _listing(data: _DemoData, page: int) -> str:
    items = data.products[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    head = f'<link rel="canonical" href="http://{SHOP_HOST}/shoes/?page={page}">\n'
    if page > 1:
        head += f'<link rel="prev" href="/shoes/?page={page - 1}">\n'
    if page < data.n_pages:
        head += f'<link rel="next" href="/shoes/?page={page + 1}">\n'
    cards = []
    for p in items:
        href = f"/product/{p.slug}" if _hash("a:" + p.slug) % 3 else f"../product/{p.slug}"
        cards.append(
            f'<div class="product" data-sku="{p.slug}">\n'
            f'  <a href="{href}">{_card_img(p)}</a>\n'
            f'  <h2 class="title"><a href="{href}">{html.escape(p.title)}</a></h2>\n'
            f'  <span class="category">{html.escape(p.category)}</span>\n'
            f'  <span class="price">${p.price}</span>\n</div>\n'
        )
    nav = ['<nav class="pagination">']
    if page > 1:
        nav.append(f'<a rel="prev" class="prev" href="?page={page - 1}">Previous</a>')
    nav += [
        f'<a href="/shoes/?page={n}"{" aria-current=page" if n == page else ""}>{n}</a>'
        for n in range(1, data.n_pages + 1)
    ]
    if page < data.n_pages:
        nav.append(f'<a rel="next" class="next" href="?page={page + 1}">Next</a>')
    nav.append("</nav>\n")
    body = (
        '<header><a href="/">Demo Shop</a> &rsaquo; All products</header>\n'
        f"<h1>All products (page {page} of {data.n_pages})</h1>\n"
        f'<main class="products">\n{"".join(cards)}</main>\n' + "\n".join(nav)
    )
    return _page(f"All products - page {page} - Demo Shop", head, body)


def _product_page(p: _Product) -> str:
    imgs = []
    for i, f in enumerate(p.files, 1):
        src = f"/img/{f}" if i % 2 else f"http://{SHOP_HOST}/img/{f}"
        imgs.append(f'  <img src="{src}" alt="{html.escape(p.title)}, image {i}">')
    body = (
        f'<header><a href="/">Demo Shop</a> &rsaquo; <a href="/shoes/">All products</a></header>\n'
        f'<div class="product-detail" data-sku="{p.slug}">\n'
        f"<h1>{html.escape(p.title)}</h1>\n"
        f'<p class="price">${p.price}</p>\n'
        f'<p class="category">{html.escape(p.category)}</p>\n'
        f'<div class="gallery">\n' + "\n".join(imgs) + "\n</div>\n</div>\n"
    )
    return _page(f"{p.title} - Demo Shop", "", body)


def _listing_json(data: _DemoData, page: int) -> dict:
    items = data.products[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    base = f"http://{SHOP_HOST}"
    products = [
        {
            "slug": p.slug,
            "title": p.title,
            "category": p.category,
            "price": float(p.price),
            "url": f"{base}/product/{p.slug}",
            "images": {
                "main": {"url": f"{base}/img/{p.files[0]}"},
                "gallery": [{"url": f"{base}/img/{f}"} for f in p.files],
            },
        }
        for p in items
    ]
    nxt = f"{base}/shoes.json?page={page + 1}" if page < data.n_pages else None
    return {
        "data": {
            "products": products,
            "pagination": {"page": page, "pages": data.n_pages, "next": nxt},
        }
    }


def _site_home(site: _Site) -> str:
    name = html.escape(site.company)
    head, m = "", site.mechanism
    if m == "svg-link":
        head = '<link rel="icon" type="image/svg+xml" href="/logo.svg">\n'
    elif m == "apple-touch-icon":
        head = '<link rel="apple-touch-icon" sizes="180x180" href="/apple-touch-icon.png">\n'
    elif m == "png-link":
        if site.base_href:
            head = (
                '<base href="/static/">\n'
                '<link rel="icon" type="image/png" sizes="192x192" href="icon-192.png">\n'
            )
        else:
            head = (
                '<link rel="icon" type="image/png" sizes="192x192" href="/static/icon-192.png">\n'
            )
    elif m == "manifest":
        head = '<link rel="manifest" href="/site.webmanifest">\n'
    head += '<meta name="theme-color" content="#ffffff">\n'
    body = (
        f'<header><span class="brand">{name}</span>\n'
        '<nav><a href="/about">About</a> <a href="/contact">Contact</a></nav></header>\n'
        f"<main><h1>Welcome to {name}</h1>\n<p>This is the demo homepage of {name}.</p></main>\n"
    )
    return _page(name, head, body)


def _manifest(site: _Site) -> dict:
    return {
        "name": site.company,
        "short_name": site.company[:12],
        "start_url": "/",
        "display": "standalone",
        "icons": [  # src is relative to the manifest URL
            {"src": "android-chrome-96x96.png", "sizes": "96x96", "type": "image/png"},
            {"src": "/android-chrome-192x192.png", "sizes": "192x192", "type": "image/png"},
        ],
    }


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
            status, _page(f"{status}", "", f"<h1>{status}</h1>\n<p>{html.escape(text)}</p>\n")
        )

    def _file(self, body: bytes, name: str) -> None:
        ctype = _CONTENT_TYPES.get(Path(name).suffix.lower(), "application/octet-stream")
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

    def _shop(self, data: _DemoData, path: str, query: str) -> None:
        if path == "/robots.txt":
            return self._send(
                200,
                "User-agent: *\nDisallow: /private/\nAllow: /\n",
                "text/plain; charset=utf-8",
            )
        if path == "/":
            body = '<h1>Demo Shop</h1>\n<p><a href="/shoes/">All products</a></p>\n'
            return self._send(200, _page("Demo Shop", "", body))
        if path in ("/shoes", "/shoes/", "/shoes.json"):
            if path == "/shoes":
                return self._send(301, "", headers={"Location": "/shoes/"})
            page = self._page_param(query)
            if page is None:
                return self._error(400, f"page must be a positive integer, got {query!r}")
            if not 1 <= page <= data.n_pages:
                return self._error(404, f"no page {page}; pages are 1..{data.n_pages}")
            if path == "/shoes.json":
                body = json.dumps(_listing_json(data, page), indent=1)
                return self._send(200, body, "application/json")
            return self._send(200, _listing(data, page))
        if path.startswith("/product/"):
            p = data.by_slug.get(path[len("/product/") :].rstrip("/"))
            if p is None:
                return self._error(404, f"no product at {path}")
            return self._send(200, _product_page(p))
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
            return self._send(200, _page("Private", "", body))
        return self._error(404, f"nothing at {path}")

    # -- <brand>.test -----------------------------------------------------------------------

    def _site(self, site: _Site, path: str) -> None:
        data, m, slug = self.server.data, site.mechanism, site.slug
        if path in ("/", "/index.html"):
            return self._send(200, _site_home(site))
        if path in ("/about", "/contact"):
            body = f"<h1>{html.escape(site.company)}</h1>\n<p>{path[1:].title()}</p>\n"
            return self._send(200, _page(site.company, "", body))
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
                body = json.dumps(_manifest(site), indent=1)
                return self._send(200, body, "application/manifest+json")
            if path in ("/android-chrome-96x96.png", "/android-chrome-192x192.png"):
                side = 96 if "96x96" in path else 192
                return self._file(data.logo_png(slug, side), path)
        return self._error(404, f"nothing at {path}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], data: _DemoData, latency_s: float):
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
    data = _DemoData(Path(data_dir))
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
