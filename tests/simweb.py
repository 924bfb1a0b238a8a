"""A simulated web on 127.0.0.1 for the logo tests and benchmark: many hosts behind one proxy.

:class:`SimWeb` is a real threaded HTTP server that clients use as their forward proxy
(``proxies={"http": web.url, "https": web.url}``, or ``HTTP_PROXY``/``HTTPS_PROXY``), so real
URLs such as ``http://acme.test/favicon.ico`` or ``https://icons.duckduckgo.com/ip3/acme.test.ico``
work unchanged:

- plain http: the request line carries the absolute URL; the host is looked up in the table;
- https: the client sends ``CONNECT host:443``; if that host serves TLS the proxy answers 200 and
  terminates TLS itself with a certificate issued on the fly by a throw-away test CA (trustme), so
  clients must trust ``web.ca_bundle`` (``REQUESTS_CA_BUNDLE``, exactly like behind a corporate
  TLS-inspecting proxy). A host without TLS, or an unknown host, gets ``502`` (as a proxy answers
  when the site refuses or does not exist);
- a host that does not serve plain http answers ``502`` to http requests.

Every request is counted in ``hits`` under its full URL (``https://host/path?query``) and every
CONNECT in ``connects`` under its host, so tests can assert that something was NOT fetched.

:func:`generate_web` builds a seeded web of many brand sites, each exposing its logo through one
mechanism (see :data:`MECHANISMS`), plus stand-ins for the favicon and logo services at their real
host names; its ground-truth table says what a perfect fetcher would find.
"""

from __future__ import annotations

import collections
import io
import json
import random
import shutil
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import trustme
from PIL import Image, ImageDraw

Response = tuple[int, dict[str, str], bytes]

NOT_FOUND: Response = (404, {"Content-Type": "text/html"}, b"<html>not found</html>")
BAD_GATEWAY: Response = (502, {"Content-Type": "text/plain"}, b"proxy: cannot reach that host")


@dataclass(frozen=True)
class Request:
    """What a route function sees."""

    scheme: str  # "http" or "https"
    host: str
    path: str
    query: str
    n: int  # 1 on the first request for this exact URL

    @property
    def target(self) -> str:
        return self.path + (f"?{self.query}" if self.query else "")

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}{self.target}"

    @property
    def params(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(self.query).items()}


Route = Response | Callable[[Request], Response]


@dataclass
class Host:
    """One simulated host: routes keyed by path (or ``path?query``), and what it speaks."""

    routes: dict[str, Route] = field(default_factory=dict)
    tls: bool = True  # answers https (CONNECT through the proxy)
    http: bool = True  # answers plain http
    default: Route | None = None  # for paths without a route (None: 404)


# -- responses ----------------------------------------------------------------------------------


def page(head: str = "", body: str = "") -> Response:
    html = f"<!doctype html><html><head>{head}</head><body>{body}</body></html>"
    return 200, {"Content-Type": "text/html; charset=utf-8"}, html.encode()


def file(data: bytes, ctype: str = "image/png") -> Response:
    return 200, {"Content-Type": ctype}, data


def redirect(location: str, status: int = 301) -> Response:
    return status, {"Location": location, "Content-Type": "text/html"}, b"moved"


def to_host(new_host: str, *, scheme: str | None = None) -> Callable[[Request], Response]:
    """A route that redirects every path to the same path on ``new_host`` (and ``scheme``)."""
    return lambda req: redirect(f"{scheme or req.scheme}://{new_host}{req.target}")


def to_https(req: Request) -> Response:
    """Plain http redirects to https, the way most sites answer today."""
    return redirect(f"https://{req.host}{req.target}")


class InFlight:
    """Wrap a route and record the peak number of its requests served at the same time."""

    def __init__(self, route: Route, *, hold_s: float = 0.05):
        self.route, self.hold_s = route, hold_s
        self.now = self.peak = 0
        self._lock = threading.Lock()

    def __call__(self, req: Request) -> Response:
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        try:
            time.sleep(self.hold_s)
            return self.route(req) if callable(self.route) else self.route
        finally:
            with self._lock:
                self.now -= 1


# -- images -------------------------------------------------------------------------------------


def logo_image(size: tuple[int, int], seed: int) -> Image.Image:
    """A distinct RGBA 'logo': three coloured shapes on a transparent background."""
    rng = random.Random(seed)
    w, h = size
    im = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(im)
    for _ in range(3):
        color = tuple(rng.randrange(30, 226) for _ in range(3)) + (255,)
        x0, y0 = rng.uniform(0, 0.5) * w, rng.uniform(0, 0.5) * h
        x1, y1 = x0 + rng.uniform(0.25, 0.5) * w, y0 + rng.uniform(0.25, 0.5) * h
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)), fill=color)
    return im


def encode(im: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    (im.convert("RGB") if fmt == "JPEG" else im).save(buf, fmt, **kwargs)
    return buf.getvalue()


def logo_png(side: int, seed: int, *, height: int | None = None, fmt: str = "PNG") -> bytes:
    return encode(logo_image((side, height or side), seed), fmt)


def logo_ico(sizes: list[int], seed: int) -> bytes:
    big = max(sizes)
    return encode(logo_image((big, big), seed), "ICO", sizes=[(s, s) for s in sizes])


def logo_svg(seed: int, *, extra: str = "") -> bytes:
    rng = random.Random(seed)
    c1, c2 = (f"#{rng.randrange(0x202020, 0xE0E0E0):06x}" for _ in range(2))
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'viewBox="0 0 100 100"><circle cx="40" cy="45" r="30" fill="{c1}"/>'
        f'<rect x="50" y="50" width="40" height="35" fill="{c2}"/>{extra}</svg>'
    ).encode()


def flat_png(side: int, color=(200, 30, 30, 255)) -> bytes:
    return encode(Image.new("RGBA", (side, side), color))


def globe_png() -> bytes:
    """Stand-in for Google's default 16x16 globe (sent with a 404 when it has no icon)."""
    im = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    ImageDraw.Draw(im).ellipse((1, 1, 14, 14), outline=(80, 80, 80, 255), fill=(150, 180, 220, 255))
    return encode(im)


# -- the server ---------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    tls_host: str | None = None

    def log_message(self, *args) -> None:
        pass

    def _respond(self, resp: Response, *, close: bool = False) -> None:
        status, headers, body = resp
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def do_CONNECT(self) -> None:  # noqa: N802 (http.server API)
        web: SimWeb = self.server.web  # type: ignore[attr-defined]
        host = self.path.rsplit(":", 1)[0].strip("[]").lower()
        web.pause()
        with web.lock:
            web.connects[host] += 1
        spec = web.hosts.get(host)
        if self.tls_host or spec is None or not spec.tls:
            self._respond(BAD_GATEWAY, close=True)
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        try:
            conn = web.server_tls.wrap_socket(self.connection, server_side=True)
        except (ssl.SSLError, OSError):
            self.close_connection = True
            return
        self.connection = conn
        self.rfile = conn.makefile("rb")
        self.wfile = conn.makefile("wb")
        self.tls_host = host
        self.close_connection = False

    def do_GET(self) -> None:  # noqa: N802
        web: SimWeb = self.server.web  # type: ignore[attr-defined]
        parts = urlsplit(self.path)
        if self.tls_host:
            scheme, host = "https", self.tls_host
        else:
            scheme = "http"
            host = (parts.hostname or self.headers.get("Host", "").split(":")[0]).lower()
        req = Request(scheme, host, parts.path or "/", parts.query, 0)
        web.pause()
        with web.lock:
            web.hits[req.url] += 1
            req = Request(req.scheme, req.host, req.path, req.query, web.hits[req.url])
        spec = web.hosts.get(host)
        if spec is None or (scheme == "http" and not spec.http):
            resp = BAD_GATEWAY
        else:
            route = spec.routes.get(req.target) or spec.routes.get(req.path) or spec.default
            route = NOT_FOUND if route is None else route
            try:
                resp = route(req) if callable(route) else route
            except Exception as exc:  # a bug in a route must be visible, not a hang
                resp = (500, {"Content-Type": "text/plain"}, repr(exc).encode())
        try:
            self._respond(resp)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True  # the client hung up (size cap, timeout)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            if self.tls_host:
                try:
                    self.connection.close()
                except OSError:
                    pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256  # bursts of concurrent clients must not be dropped

    def handle_error(self, request, client_address) -> None:
        pass  # clients that hang up early (size caps, timeouts) are part of the tests


class SimWeb:
    """Serve ``hosts`` through a forward proxy on an ephemeral 127.0.0.1 port until :meth:`close`.

    Parameters
    ----------
    hosts : dict of str to Host
        Host name (lowercase, no port) to its routes.
    latency_s : float, default 0.0
        Sleep before every response (and every CONNECT answer), to model a real network.
    """

    def __init__(self, hosts: dict[str, Host], *, latency_s: float = 0.0):
        self.hosts = hosts
        self.latency_s = float(latency_s)
        self.hits: collections.Counter = collections.Counter()
        self.connects: collections.Counter = collections.Counter()
        self.lock = threading.Lock()
        self._ca = trustme.CA()
        self._tmp = Path(tempfile.mkdtemp(prefix="simweb-"))
        self.ca_bundle = str(self._tmp / "ca.pem")
        self._ca.cert_pem.write_to_path(self.ca_bundle)
        self._contexts: dict[str, ssl.SSLContext] = {}
        self.server_tls = self._context_for("localhost")
        self.server_tls.sni_callback = self._sni
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.web = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def _context_for(self, host: str) -> ssl.SSLContext:
        with self.lock:
            ctx = self._contexts.get(host)
            if ctx is None:
                ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                self._ca.issue_cert(host).configure_cert(ctx)
                self._contexts[host] = ctx
        return ctx

    def _sni(self, sslobj, server_name, _ctx) -> None:
        if server_name:
            sslobj.context = self._context_for(server_name.lower())

    def pause(self) -> None:
        if self.latency_s > 0:
            time.sleep(self.latency_s)

    @property
    def env(self) -> dict[str, str]:
        """Environment variables that send ``requests`` through this web (and trust its CA)."""
        return {
            "HTTP_PROXY": self.url,
            "HTTPS_PROXY": self.url,
            "REQUESTS_CA_BUNDLE": self.ca_bundle,
            "NO_PROXY": "",
        }

    def hits_for_host(self, host: str) -> int:
        """Requests (and CONNECTs) that reached ``host``, over both schemes."""
        with self.lock:
            n = sum(v for k, v in self.hits.items() if urlsplit(k).hostname == host)
            return n + self.connects[host]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> SimWeb:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- the favicon and logo services, at their real host names ------------------------------------

DUCKDUCKGO_HOST = "icons.duckduckgo.com"
GOOGLE_HOST = "www.google.com"
CLEARBIT_HOST = "logo.clearbit.com"


def service_hosts(
    duckduckgo: dict[str, bytes],
    google: dict[str, bytes],
    clearbit: dict[str, bytes] | None = None,
) -> dict[str, Host]:
    """Stand-ins answering the default provider URL templates.

    ``duckduckgo`` maps a host name (``acme.test`` or ``www.acme.test``) to the ``.ico`` bytes
    served at ``/ip3/<host>.ico``; unknown hosts get a 404 with a placeholder body. ``google``
    maps a domain to the image served at ``/s2/favicons?domain=<domain>&sz=...``; unknown ones
    get a 404 with the 16x16 globe. ``clearbit`` (the seed's provider) maps a domain to
    ``/<domain>``; unknown domains get a 404.
    """
    globe = globe_png()

    def ddg(req: Request) -> Response:
        name = req.path[len("/ip3/") :].removesuffix(".ico")
        if req.path.startswith("/ip3/") and name in duckduckgo:
            return file(duckduckgo[name], "image/x-icon")
        return 404, {"Content-Type": "image/png"}, flat_png(16, (210, 210, 210, 255))

    def google_s2(req: Request) -> Response:
        domain = req.params.get("domain", "")
        if req.path == "/s2/favicons" and domain in google:
            return file(google[domain])
        return 404, {"Content-Type": "image/png"}, globe

    def clearbit_logo(req: Request) -> Response:
        data = (clearbit or {}).get(req.path.strip("/"))
        return file(data) if data else (404, {"Content-Type": "text/plain"}, b"not found")

    hosts = {DUCKDUCKGO_HOST: Host(default=ddg), GOOGLE_HOST: Host(default=google_s2)}
    if clearbit is not None:
        hosts[CLEARBIT_HOST] = Host(default=clearbit_logo)
    return hosts


# -- a generated web ----------------------------------------------------------------------------

#: How a recoverable domain exposes its logo (exactly one per domain).
MECHANISMS = (
    "link-icon",  # <link rel="icon" sizes="NxN" href="/static/...png">
    "shortcut-icon",  # <link rel="shortcut icon" href="...png"> (no sizes)
    "apple-touch-icon",  # <link rel="apple-touch-icon" href=...>
    "apple-touch-icon-precomposed",
    "svg-icon",  # <link rel="icon" type="image/svg+xml" href="...svg">
    "mask-icon",  # <link rel="mask-icon" href="...svg"> (Safari pinned tab)
    "manifest",  # <link rel="manifest"> whose icons list PNGs
    "base-href",  # <base href="https://cdn.../"> + a relative <link rel="icon">
    "og-image",  # <meta property="og:image"> only
    "twitter-image",  # <meta name="twitter:image"> only
    "well-known-apple",  # no markup; /apple-touch-icon.png exists
    "favicon-ico",  # no markup; /favicon.ico with several frames
    "duckduckgo",  # the site is down; only the DuckDuckGo stand-in knows the icon
    "google",  # the site has no icon; only the Google stand-in knows it
)
#: How the homepage is reached (independent of the mechanism).
TRANSPORTS = ("https", "http-only", "http-to-https", "to-www", "www-only")
#: Why an unrecoverable domain has no logo, and the reason the fetcher should report.
UNRECOVERABLE = {
    "down": "proxy_error",  # no host at all (https fails first, through the proxy)
    "html-everywhere": "no_usable_icon",  # every path answers 200 text/html
    "junk-icons": "no_usable_icon",  # 1x1, single colour, 0-byte, corrupt icons
    "robots-disallow": "robots_disallowed",  # robots.txt forbids everything
}


def generate_web(
    n: int = 500,
    *,
    random_state: int = 0,
    unrecoverable_share: float = 0.08,
) -> tuple[dict[str, Host], pd.DataFrame]:
    """A seeded web of ``n`` brand domains plus the service stand-ins.

    Returns
    -------
    hosts : dict of str to Host
        For :class:`SimWeb` (brand sites, ``www.``/CDN hosts, DuckDuckGo, Google, Clearbit).
    truth : DataFrame
        One row per domain: ``domain``, ``recoverable`` (bool), ``mechanism``, ``transport``,
        ``provider`` (the provider that should win), ``path`` (URL path of the largest logo
        candidate, the one a perfect fetcher picks), ``side`` (its shorter decoded side; 256 for
        SVG, as rendered), ``reason`` (expected failure reason when not recoverable),
        ``decoys`` (smaller icons also present).
    """
    rng = random.Random(random_state)
    hosts: dict[str, Host] = {}
    ddg: dict[str, bytes] = {}
    google: dict[str, bytes] = {}
    clearbit: dict[str, bytes] = {}
    rows = []
    n_bad = round(n * unrecoverable_share)
    bad_kinds = list(UNRECOVERABLE)
    for i in range(n):
        domain = f"brand{i:03d}.test"
        seed = random_state * 100_003 + i
        token = f"{seed:x}"
        recoverable = i >= n_bad
        mechanism = rng.choice(MECHANISMS) if recoverable else bad_kinds[i % len(bad_kinds)]
        transport = rng.choice(TRANSPORTS)
        side = rng.choice((64, 96, 128, 152, 180, 192, 256, 384, 512))
        head, routes, decoys = "", {}, []
        row = dict(domain=domain, recoverable=recoverable, mechanism=mechanism)
        row.update(transport=transport, provider="site", reason=None, side=side)
        site_up = True
        if mechanism == "link-icon":
            path = f"/static/{token}/icon-{side}.png"
            head = f'<link rel="icon" type="image/png" sizes="{side}x{side}" href="{path}">'
            routes[path] = file(logo_png(side, seed))
        elif mechanism == "shortcut-icon":
            path = f"/img/{token}.png"
            head = f'<link rel="shortcut icon" href="{path}">'
            routes[path] = file(logo_png(side, seed))
        elif mechanism in ("apple-touch-icon", "apple-touch-icon-precomposed"):
            path = f"/{token}/touch.png"
            head = f'<link rel="{mechanism}" href="{path}">'
            routes[path] = file(logo_png(side, seed))
        elif mechanism in ("svg-icon", "mask-icon"):
            path = f"/{token}/logo.svg"
            rel = (
                'rel="icon" type="image/svg+xml"' if mechanism == "svg-icon" else 'rel="mask-icon"'
            )
            head = f'<link {rel} href="{path}">'
            routes[path] = file(logo_svg(seed), "image/svg+xml")
            row["side"] = 256
        elif mechanism == "manifest":
            path = f"/m/{token}/icon-{side}.png"
            small = side // 2
            head = '<link rel="manifest" href="/m/site.webmanifest">'
            icons = [
                {"src": f"{token}/icon-{small}.png", "sizes": f"{small}x{small}"},
                {"src": f"/m/{token}/icon-{side}.png", "sizes": f"{side}x{side}"},
            ]
            routes["/m/site.webmanifest"] = (
                200,
                {"Content-Type": "application/manifest+json"},
                json.dumps({"name": domain, "icons": icons}).encode(),
            )
            routes[f"/m/{token}/icon-{small}.png"] = file(logo_png(small, seed))
            routes[path] = file(logo_png(side, seed))
        elif mechanism == "base-href":
            cdn = f"cdn.{domain}"
            path = f"/assets/{token}/fav.png"
            head = f'<base href="https://{cdn}/assets/{token}/"><link rel="icon" href="fav.png">'
            hosts[cdn] = Host(routes={path: file(logo_png(side, seed))})
        elif mechanism in ("og-image", "twitter-image"):
            path = f"/social/{token}.jpg"
            meta = (
                f'<meta property="og:image" content="{path}">'
                if mechanism == "og-image"
                else f'<meta name="twitter:image" content="{path}">'
            )
            head = meta
            routes[path] = file(logo_png(600, seed, height=315, fmt="JPEG"), "image/jpeg")
            row["side"] = round(315 * 512 / 600)  # written scaled to fit 512 px
        elif mechanism == "well-known-apple":
            path = "/apple-touch-icon.png"
            routes[path] = file(logo_png(side, seed))
        elif mechanism == "favicon-ico":
            path = "/favicon.ico"
            frame = min(side, 256)
            routes[path] = file(logo_ico([16, 32, frame], seed), "image/x-icon")
            row["side"] = frame
        elif mechanism == "duckduckgo":
            site_up = False
            host = domain if rng.random() < 0.5 else f"www.{domain}"
            path = f"/ip3/{host}.ico"
            frame = min(side, 256)
            ddg[host] = logo_ico([32, frame], seed)
            row.update(provider="duckduckgo", side=frame)
        elif mechanism == "google":
            path = "/s2/favicons"
            google[domain] = logo_png(side, seed)
            row.update(provider="google")
        else:  # unrecoverable
            path, row["provider"], row["side"] = None, None, None
            row["reason"] = UNRECOVERABLE[mechanism]
            if mechanism == "down":
                site_up = False
            elif mechanism == "html-everywhere":
                routes["*"] = page("<title>Welcome</title>")
            elif mechanism == "junk-icons":
                head = (
                    '<link rel="icon" href="/one.png"><link rel="icon" href="/flat.png">'
                    '<link rel="apple-touch-icon" href="/empty.png">'
                    '<link rel="icon" sizes="64x64" href="/corrupt.png">'
                )
                routes["/one.png"] = file(logo_png(1, seed))
                routes["/flat.png"] = file(flat_png(64))
                routes["/empty.png"] = file(b"")
                routes["/corrupt.png"] = file(logo_png(64, seed)[:80])
                routes["/favicon.ico"] = file(b"", "image/x-icon")
            elif mechanism == "robots-disallow":
                head = '<link rel="icon" href="/icon.png">'
                routes["/robots.txt"] = (
                    200,
                    {"Content-Type": "text/plain"},
                    b"User-agent: *\nDisallow: /\n",
                )
                routes["/icon.png"] = file(logo_png(side, seed))
        # smaller decoys beside the logo, where the ranking (not the order) must pick the logo
        if (
            recoverable
            and site_up
            and mechanism
            in (
                "link-icon",
                "shortcut-icon",
                "apple-touch-icon",
                "apple-touch-icon-precomposed",
                "svg-icon",
                "manifest",
                "base-href",
                "well-known-apple",
            )
        ):
            if rng.random() < 0.5:
                routes["/favicon.ico"] = file(logo_ico([16, 32], seed + 1), "image/x-icon")
                decoys.append("favicon.ico")
            if rng.random() < 0.4:
                head = f'<link rel="icon" sizes="16x16" href="/{token}-16.png">' + head
                routes[f"/{token}-16.png"] = file(logo_png(16, seed + 2))
                decoys.append("icon-16")
        row.update(path=path, decoys=",".join(decoys))
        if recoverable:  # the seed's one-URL service knows every logo: its best case
            clearbit[domain] = logo_png(128, seed)
        if site_up:
            home = page(head, f"<h1>{domain}</h1>")
            if "*" in routes:
                default: Route | None = routes.pop("*")
            else:
                default = None
            routes.setdefault("/", home)
            _place_site(hosts, domain, transport, Host(routes=routes, default=default))
        rows.append(row)
    hosts.update(service_hosts(ddg, google, clearbit))
    truth = pd.DataFrame(rows)
    return hosts, truth


def _place_site(hosts: dict[str, Host], domain: str, transport: str, site: Host) -> None:
    """Put ``site`` on the host names ``transport`` describes."""
    www = f"www.{domain}"
    if transport == "https":
        hosts[domain] = site
    elif transport == "http-only":
        site.tls = False
        hosts[domain] = site
    elif transport == "http-to-https":
        hosts[domain] = https_only(site)
    elif transport == "to-www":
        hosts[domain] = Host(default=to_host(www))
        hosts[www] = site
    elif transport == "www-only":
        hosts[www] = site
    else:
        raise ValueError(f"unknown transport {transport!r}")


def https_only(site: Host) -> Host:
    """``site`` over https; every plain-http URL redirects to its https twin."""

    def route(req: Request) -> Response:
        if req.scheme == "http":
            return to_https(req)
        r = site.routes.get(req.target) or site.routes.get(req.path) or site.default
        r = NOT_FOUND if r is None else r
        return r(req) if callable(r) else r

    return Host(default=route)
