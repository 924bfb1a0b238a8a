"""HTTP fetching for the scrape and logo stages: sessions, one careful ``fetch``, politeness.

``fetch`` never raises for a per-item network problem; it returns a :class:`FetchResult`
whose ``error`` is a short reason code:

======================  ===================================================================
reason                  meaning
======================  ===================================================================
``invalid_url``         not an absolute http(s) URL
``dns_error``           the host name does not resolve (and no proxy is in use)
``private_address``     the host resolves to a private/loopback/link-local/reserved/metadata
                        address and ``allow_private_hosts`` is False (checked on every hop)
``timeout``             no connection, or no complete answer, within ``timeout_s``
``connection_refused``  nothing listens on that port
``connection_error``    reset, broken or otherwise failed connection (retried)
``proxy_error``         the proxy refused or failed the request
``ssl_error``           TLS handshake or certificate problem
``too_large``           the body exceeds ``max_bytes`` (by Content-Length or while streaming)
``content_type``        the ``Content-Type`` is one the caller refused (``reject_types``)
``redirect_loop``       a redirect loop or more than ``max_redirects`` hops
``http_<code>``         final HTTP status >= 400 (5xx and 429 after all retries), or a 3xx
                        without a ``Location``
``request_error``       anything else requests raised
======================  ===================================================================

Safety. Sessions from :func:`make_session` use connection classes that, while :func:`fetch`
runs with ``allow_private_hosts=False``, resolve the host themselves, refuse the connection if
any address is not public, and connect only to the addresses they checked. The check and the
connection therefore use the same DNS answer, which closes the DNS-rebinding window. Through
an HTTP proxy the proxy resolves names, so only the best-effort pre-check of :func:`check_host`
applies (use a proxy that enforces its own policy). Every request also gets a hard deadline:
a watchdog thread shuts the socket down when ``timeout_s`` has passed since the request
started, so a server that trickles its headers or body byte by byte cannot hold a worker.
"""

from __future__ import annotations

import contextlib
import email.utils
import heapq
import ipaddress
import itertools
import socket
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    NameResolutionError,
    NewConnectionError,
    ReadTimeoutError,
)
from urllib3.util.connection import create_connection

from . import __version__ as _version

#: Identifies the tool; sites can block or contact on it. Override with ``user_agent=``.
DEFAULT_USER_AGENT = f"lookalike/{_version} (research image clustering; python-requests)"
ACCEPT_HTML = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
ACCEPT_IMAGES = "image/avif,image/webp,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5"
ACCEPT_JSON = "application/json,*/*;q=0.5"

#: Cloud metadata endpoints: always refused unless ``allow_private_hosts``.
METADATA_IPS = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024


@dataclass
class FetchResult:
    """Outcome of :func:`fetch`. ``error`` is None on success (final status < 400)."""

    url: str
    final_url: str
    status_code: int | None = None
    content_type: str | None = None
    content: bytes = b""
    elapsed_s: float = 0.0
    error: str | None = None
    detail: str = ""  # human-readable explanation of ``error``
    attempts: int = 0  # HTTP requests sent, counting retries and redirect hops
    redirects: list[str] = field(default_factory=list)
    #: Headers of the final answer (case-insensitive keys; empty if there was none).
    headers: CaseInsensitiveDict = field(default_factory=CaseInsensitiveDict)

    @property
    def ok(self) -> bool:
        return self.error is None

    def link(self, rel: str = "next") -> str | None:
        """The absolute URL of the ``Link: <...>; rel="next"`` header entry (RFC 8288), if any."""
        value = self.headers.get("Link")
        if not value:
            return None
        for entry in requests.utils.parse_header_links(value):
            if rel in entry.get("rel", "").lower().split() and entry.get("url"):
                return urljoin(self.final_url, entry["url"].strip())
        return None

    @property
    def mime_type(self) -> str:
        """``content_type`` without parameters, lowercase (``""`` if unknown)."""
        return (self.content_type or "").split(";")[0].strip().lower()


class HostRateLimiter:
    """Minimum delay between the starts of two requests to the same host. Thread-safe.

    Parameters
    ----------
    delay_s : float
        Seconds between request starts per host (``0`` disables waiting).

    Notes
    -----
    Callers for one host take turns (a lock per host): each sleeps until ``delay`` after the
    previous caller's actual start, then records its own start, so the measured gap between
    two starts is never below the delay, however late a sleeping thread wakes up. Threads
    for different hosts never wait for each other. ``set_delay`` raises the delay for one
    host (for example from robots.txt ``Crawl-delay``); ``defer`` holds every request to a
    host back for a while (for example after ``429 Too Many Requests`` with ``Retry-After``).
    ``on_start`` (None, or ``callable(host, monotonic_time)``; set it on an instance, or on
    the class as a ``staticmethod``) is told each start while the host's turn is held, for
    example to measure the gaps.
    """

    on_start = None

    def __init__(self, delay_s: float = 0.0):
        if delay_s < 0:
            raise ValueError(f"delay_s must be >= 0, got {delay_s!r}")
        self.delay_s = float(delay_s)
        self._last: dict[str, float] = {}  # monotonic start of the latest request per host
        self._next: dict[str, float] = {}  # no request before this time (from defer)
        self._delays: dict[str, float] = {}
        self._host_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def set_delay(self, host: str, delay_s: float) -> None:
        """Use ``delay_s`` for ``host`` from now on (never lower than the default)."""
        with self._lock:
            self._delays[host.lower()] = max(self.delay_s, float(delay_s))

    def delay_for(self, host: str) -> float:
        with self._lock:
            return self._delays.get(host.lower(), self.delay_s)

    def defer(self, host: str, seconds: float) -> None:
        """Let no request to ``host`` start for ``seconds`` from now (whatever the delay)."""
        host = host.lower()
        with self._lock:
            until = time.monotonic() + max(0.0, float(seconds))
            self._next[host] = max(self._next.get(host, 0.0), until)

    def _earliest(self, host: str) -> tuple[float, float]:
        with self._lock:
            delay = self._delays.get(host, self.delay_s)
            last = self._last.get(host)
            earliest = self._next.get(host, 0.0)
            if delay > 0 and last is not None:
                earliest = max(earliest, last + delay)
            return delay, earliest

    def wait(self, host: str) -> float:
        """Block until a request to ``host`` may start; return the seconds slept."""
        host = host.lower()
        delay, earliest = self._earliest(host)
        if delay <= 0 and earliest <= time.monotonic():
            return 0.0  # nothing to space out: no turn-taking either
        with self._lock:
            turn = self._host_locks.setdefault(host, threading.Lock())
        slept = 0.0
        with turn:
            while True:  # again after each sleep: a defer() may have come in meanwhile
                _, earliest = self._earliest(host)
                now = time.monotonic()
                if now >= earliest:
                    break
                time.sleep(earliest - now)
                slept += time.monotonic() - now
            with self._lock:
                self._last[host] = start = time.monotonic()
            if self.on_start is not None:
                self.on_start(host, start)
        return slept


# -- connection guard: pinned public addresses and a hard per-request deadline ------------


class PrivateAddressError(NewConnectionError):
    """A connection was about to go to a non-public address (raised inside urllib3)."""


class _Guard(threading.local):
    """Per-thread policy that :func:`fetch` sets around one request."""

    def __init__(self):
        self.check_private = False
        self.deadline: float | None = None
        self.alarms: list[_Alarm] = []


_guard = _Guard()


class _Alarm:
    __slots__ = ("sock", "fired", "cancelled")

    def __init__(self, sock: socket.socket):
        self.sock, self.fired, self.cancelled = sock, False, False

    def cancel(self) -> None:
        self.cancelled = True


class _Watchdog:
    """One daemon thread that shuts down the socket of a request whose deadline has passed.

    Shutting the socket down (not closing it) makes a blocked ``recv`` in the worker return at
    once; the worker then sees an error and reports ``timeout``. Socket timeouts alone cannot
    do this: they bound each ``recv``, so a server sending a byte now and then never trips them.
    """

    def __init__(self):
        self._heap: list[tuple[float, int, _Alarm]] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, sock: socket.socket, deadline: float) -> _Alarm:
        alarm = _Alarm(sock)
        with self._cond:
            heapq.heappush(self._heap, (deadline, next(self._seq), alarm))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="lookalike-net-watchdog", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        return alarm

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2].cancelled:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                alarm = heapq.heappop(self._heap)[2]
                alarm.fired = True
                with contextlib.suppress(OSError):  # already closed: nothing to interrupt
                    socket.socket.shutdown(alarm.sock, socket.SHUT_RDWR)


_WATCHDOG = _Watchdog()


@contextlib.contextmanager
def _guarded(*, check_private: bool, deadline: float):
    """Apply the guard to connections this thread opens or uses inside the block."""
    g = _guard
    g.check_private, g.deadline, g.alarms = check_private, deadline, []
    try:
        yield g
    finally:
        for alarm in g.alarms:
            alarm.cancel()
        g.check_private, g.deadline = False, None


def _fired(g: _Guard) -> bool:
    return any(a.fired for a in g.alarms)


def _connect_public(conn: HTTPConnection) -> socket.socket:
    """Resolve ``conn.host`` once, refuse non-public answers, connect to a checked address."""
    try:
        infos = socket.getaddrinfo(conn.host, conn.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise NameResolutionError(conn.host, conn, exc) from exc
    addrs = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    bad = sorted({str(a) for a in addrs if not is_public_ip(a)})
    if bad or not addrs:
        raise PrivateAddressError(
            conn, f"{conn.host!r} resolves to non-public address(es) {bad}; refused"
        )
    err: OSError | None = None
    for info in infos:
        try:
            return create_connection(
                (info[4][0], conn.port),
                conn.timeout,
                source_address=conn.source_address,
                socket_options=conn.socket_options,
            )
        except OSError as exc:  # try the next checked address, as create_connection does
            err = exc
    if isinstance(err, TimeoutError):
        raise ConnectTimeoutError(conn, f"Connection to {conn.host} timed out") from err
    raise NewConnectionError(conn, f"Failed to establish a new connection: {err}") from err


class _GuardMixin:
    """Connection behaviour under :func:`_guarded`; plain urllib3 behaviour outside it."""

    def _new_conn(self):
        # A configured proxy is trusted (often a private address); the target host is then
        # checked by fetch's pre-check, since the proxy does the resolving.
        if _guard.check_private and self.proxy is None:
            return _connect_public(self)
        return super()._new_conn()

    def getresponse(self, *args, **kwargs):
        g = _guard
        if g.deadline is not None and self.sock is not None:
            g.alarms.append(_WATCHDOG.arm(self.sock, g.deadline))
        return super().getresponse(*args, **kwargs)


class _GuardedHTTPConnection(_GuardMixin, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardMixin, HTTPSConnection):
    pass


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


_GUARDED_POOLS = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}


class GuardedAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` whose connections honour :func:`fetch`'s address check and deadline.

    Outside :func:`fetch` (a plain ``session.get``) its connections behave like requests'
    defaults. SOCKS proxies keep urllib3's own connection classes (only the pre-check applies).
    """

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _GUARDED_POOLS

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = _GUARDED_POOLS
        return manager


def make_session(
    *,
    user_agent: str = DEFAULT_USER_AGENT,
    proxy: str | None = None,
    pool_size: int = 16,
) -> requests.Session:
    """A ``requests.Session`` set up for many concurrent fetches.

    Parameters
    ----------
    user_agent : str
        Sent as ``User-Agent`` on every request.
    proxy : str or None
        ``"http://host:port"`` used for both http and https URLs. ``None`` honours the
        standard ``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY`` environment variables.
    pool_size : int, default 16
        Connections kept per host; use at least the number of worker threads.
    """
    session = requests.Session()
    session.headers["User-Agent"] = user_agent
    adapter = GuardedAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    if proxy:
        session.proxies = {"http": proxy, "https": proxy}
    return session


def _proxy_for(session: requests.Session, url: str) -> str | None:
    """The proxy requests would use for ``url`` (session setting, then environment)."""
    try:
        proxies = session.merge_environment_settings(url, {}, None, None, None)["proxies"]
        return requests.utils.select_proxy(url, proxies)
    except Exception:  # a malformed env var must not break fetching
        return None


def is_public_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for globally routable unicast addresses that are not metadata endpoints."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in METADATA_IPS or ip.is_multicast:
        return False
    return ip.is_global and not (
        ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved
    )


# Host checks are cached briefly: a scrape asks about the same CDN host thousands of times.
_RESOLVE_TTL_S = 30.0
_resolve_cache: dict[str, tuple[float, frozenset]] = {}
_resolve_lock = threading.Lock()


def _resolve(host: str, port: int | None) -> frozenset:
    """The addresses of ``host`` (cached for ``_RESOLVE_TTL_S``); raises ``OSError``."""
    now = time.monotonic()
    with _resolve_lock:
        hit = _resolve_cache.get(host)
        if hit is not None and hit[0] > now:
            return hit[1]
    infos = socket.getaddrinfo(host, port or 80, proto=socket.IPPROTO_TCP)
    addrs = frozenset(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos)
    with _resolve_lock:
        if len(_resolve_cache) > 4096:
            _resolve_cache.clear()
        _resolve_cache[host] = (now + _RESOLVE_TTL_S, addrs)
    return addrs


def check_host(host: str, *, port: int | None = None, proxied: bool = False) -> tuple[str, str]:
    """Check that ``host`` resolves only to public addresses.

    Returns
    -------
    (reason, detail)
        ``("", "")`` when the host is acceptable; else ``("private_address", ...)`` or
        ``("dns_error", ...)``. With ``proxied=True`` a host that does not resolve locally is
        accepted (the proxy resolves it), but one that resolves to a private address is not.

    Notes
    -----
    Answers are cached for 30 s, so this is a fast early check with a clear message. It is
    not what stops DNS rebinding: inside :func:`fetch`, sessions from :func:`make_session`
    check again when they connect and connect only to the addresses they checked.
    """
    host = host.strip("[]").lower()
    try:
        addrs = frozenset({ipaddress.ip_address(host)})
    except ValueError:
        try:
            addrs = _resolve(host, port)
        except (OSError, UnicodeError, ValueError) as exc:  # socket.gaierror is an OSError
            if proxied:
                return "", ""
            return "dns_error", f"cannot resolve {host!r}: {exc}"
    bad = sorted(str(a) for a in addrs if not is_public_ip(a))
    if bad:
        return "private_address", (
            f"{host!r} resolves to non-public address(es) {bad}; "
            "pass allow_private_hosts=True only for hosts you trust (e.g. a local test server)"
        )
    return "", ""


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _classify(exc: Exception) -> tuple[str, bool]:
    """Map a requests exception to ``(reason, retryable)``."""
    if isinstance(exc, requests.exceptions.ProxyError):
        return "proxy_error", False
    if isinstance(exc, requests.exceptions.SSLError):
        return "ssl_error", False
    if isinstance(exc, requests.exceptions.Timeout):
        return "timeout", False  # retrying a silent host multiplies the wait; fail fast
    if isinstance(exc, requests.exceptions.ConnectionError):
        cause = exc.args[0] if exc.args else None
        reason = getattr(cause, "reason", cause)  # MaxRetryError wraps the real cause
        if isinstance(reason, PrivateAddressError):
            return "private_address", False
        if isinstance(reason, ReadTimeoutError) or isinstance(cause, ReadTimeoutError):
            return "timeout", False  # a read timeout while streaming the body
        if isinstance(reason, NameResolutionError):
            return "dns_error", False
        if isinstance(reason, NewConnectionError) and (
            isinstance(reason.__cause__ or reason.__context__, ConnectionRefusedError)
            or "refused" in str(reason).lower()
        ):
            return "connection_refused", False
        return "connection_error", True
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "connection_error", True
    if isinstance(exc, requests.exceptions.ContentDecodingError):
        return "corrupt_encoding", False
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema)):
        return "invalid_url", False
    return "request_error", False


def _discard(resp: requests.Response) -> None:
    """Read a small unwanted body (error page, redirect) so the connection can be reused."""
    length = resp.headers.get("Content-Length")
    if length and length.isdigit() and int(length) <= _CHUNK:
        try:
            resp.content  # noqa: B018 (reading it is the point)
        except Exception:  # the connection is simply not reused then
            pass


def _read_capped(resp: requests.Response, max_bytes: int, deadline: float) -> tuple[bytes, str]:
    """Stream the (decompressed) body; stop at ``max_bytes`` or the deadline."""
    length = resp.headers.get("Content-Length")
    if length and length.isdigit() and int(length) > max_bytes:
        return b"", "too_large"
    buf = bytearray()
    for chunk in resp.iter_content(_CHUNK):
        buf += chunk
        if len(buf) > max_bytes:
            return b"", "too_large"
        if time.monotonic() > deadline:
            return b"", "timeout"
    return bytes(buf), ""


def _type_matches(mime: str, patterns: Collection[str]) -> bool:
    """``mime`` equals a pattern, or starts with a pattern that ends in ``/``."""
    return any(mime == p or (p.endswith("/") and mime.startswith(p)) for p in patterns)


@dataclass
class _Answer:
    """One HTTP request's outcome, before :func:`fetch` decides to redirect or retry."""

    status: int | None = None
    headers: CaseInsensitiveDict = field(default_factory=CaseInsensitiveDict)
    body: bytes = b""
    error: str | None = None
    detail: str = ""
    retryable: bool = False


def _request(
    session: requests.Session,
    url: str,
    *,
    accept: str,
    timeout_s: float,
    max_bytes: int,
    check_private: bool,
    reject_types: Collection[str],
) -> _Answer:
    """Send one GET (no redirects) and read its body under a hard deadline of ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    ans = _Answer()
    with _guarded(check_private=check_private, deadline=deadline) as g:
        try:
            resp = session.get(
                url,
                headers={"Accept": accept},
                timeout=(timeout_s, timeout_s),
                allow_redirects=False,
                stream=True,
            )
        except Exception as exc:
            ans.error, ans.retryable = ("timeout", False) if _fired(g) else _classify(exc)
            ans.detail = f"{type(exc).__name__}: {exc}"
            if ans.error == "timeout" and _fired(g):
                ans.detail = f"no complete answer within timeout_s={timeout_s}"
            return ans
        with resp:
            ans.status, ans.headers = resp.status_code, resp.headers
            if resp.status_code >= 300:
                _discard(resp)
                return ans
            mime = (resp.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if reject_types and _type_matches(mime, reject_types):
                ans.error, ans.detail = "content_type", f"refused Content-Type {mime!r}"
                return ans
            try:
                body, reason = _read_capped(resp, max_bytes, deadline)
            except Exception as exc:
                if _fired(g):
                    reason = "timeout"
                else:
                    ans.error, ans.retryable = _classify(exc)
                    ans.detail = f"{type(exc).__name__}: {exc}"
                    return ans
            if reason == "too_large":
                ans.error, ans.detail = reason, f"body larger than max_bytes={max_bytes}"
            elif reason:
                ans.error, ans.detail = reason, f"body not complete within timeout_s={timeout_s}"
            else:
                ans.body = body
    return ans


def fetch(
    session: requests.Session,
    url: str,
    *,
    timeout_s: float = 20.0,
    max_bytes: int = 20_000_000,
    max_retries: int = 3,
    allow_private_hosts: bool = False,
    accept: str = "*/*",
    rate_limiter: HostRateLimiter | None = None,
    max_redirects: int = 10,
    backoff_s: float = 0.5,
    max_wait_s: float = 30.0,
    reject_types: Collection[str] = (),
) -> FetchResult:
    """GET ``url`` with redirects checked hop by hop, retries, a size cap and a time budget.

    Parameters
    ----------
    session : requests.Session
        From :func:`make_session` (user agent, proxy, connection pool, connection guard).
    url : str
        Absolute http(s) URL.
    timeout_s : float, default 20.0
        The most one HTTP request may take, from connecting to the last byte of the body
        (enforced by a watchdog, so a trickling server is cut off on time). Each redirect hop
        and each retry is a new request with its own budget.
    max_bytes : int, default 20_000_000
        Largest body accepted, after content decoding (guards against gzip bombs too).
    max_retries : int, default 3
        Extra attempts after a 429/5xx answer or a dropped connection. Waits grow as
        ``backoff_s * 2**attempt``; a ``Retry-After`` header is honoured instead, and with a
        ``rate_limiter`` it (and any 429) holds back every request to that host, not only
        this one. Every wait is capped at ``max_wait_s`` seconds.
    allow_private_hosts : bool, default False
        When False, each hop's host is resolved and refused if any address is private,
        loopback, link-local, reserved, multicast or a cloud metadata endpoint; the connection
        then goes only to the addresses that were checked (see the module notes).
    accept : str
        The ``Accept`` header (see ``ACCEPT_HTML``, ``ACCEPT_IMAGES``, ``ACCEPT_JSON``).
    rate_limiter : HostRateLimiter or None
        Waited on before every request (retries and redirect hops included).
    max_redirects : int, default 10
        More hops than this is reported as ``redirect_loop``.
    reject_types : collection of str, default ()
        MIME types (``"text/html"``) or prefixes ending in ``/`` (``"text/"``) refused with
        reason ``content_type`` as soon as the headers arrive, without reading the body.

    Returns
    -------
    FetchResult
        Never raises for network or HTTP problems; see the module docstring for reasons.
    """
    t0 = time.monotonic()
    result = FetchResult(url=url, final_url=url)

    def done(error: str | None = None, detail: str = "") -> FetchResult:
        result.error, result.detail = error, detail
        result.elapsed_s = time.monotonic() - t0
        return result

    def pause(host: str, seconds: float, *, whole_host: bool) -> None:
        seconds = min(seconds, max_wait_s)
        if whole_host and rate_limiter is not None:
            rate_limiter.defer(host, seconds)  # the loop's limiter.wait does the sleeping
        else:
            time.sleep(seconds)

    current = url
    seen = {url}
    retries = 0
    while True:
        parts = urlsplit(current)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return done("invalid_url", f"not an absolute http(s) URL: {current!r}")
        host = parts.hostname
        if not allow_private_hosts:
            try:
                port = parts.port
            except ValueError:
                return done("invalid_url", f"bad port in {current!r}")
            proxied = _proxy_for(session, current) is not None
            reason, detail = check_host(host, port=port, proxied=proxied)
            if reason:
                return done(reason, detail)
        if rate_limiter is not None:
            rate_limiter.wait(host)
        result.attempts += 1
        ans = _request(
            session,
            current,
            accept=accept,
            timeout_s=timeout_s,
            max_bytes=max_bytes,
            check_private=not allow_private_hosts,
            reject_types=reject_types,
        )
        if ans.status is None:  # no answer at all
            if ans.retryable and retries < max_retries:
                pause(host, backoff_s * 2**retries, whole_host=False)
                retries += 1
                continue
            if ans.error == "private_address":
                ans.detail += (
                    "; pass allow_private_hosts=True only for hosts you trust "
                    "(e.g. a local test server)"
                )
            return done(ans.error, ans.detail)
        result.final_url = current
        result.status_code = status = ans.status
        result.headers = ans.headers
        result.content_type = ans.headers.get("Content-Type")
        if status in _REDIRECT_STATUSES and ans.headers.get("Location"):
            nxt = urljoin(current, ans.headers["Location"].strip())
            nxt = nxt.split("#", 1)[0]
            if nxt in seen:
                return done("redirect_loop", f"{current} redirects back to {nxt}")
            if len(result.redirects) >= max_redirects:
                return done("redirect_loop", f"more than {max_redirects} redirects")
            seen.add(nxt)
            result.redirects.append(nxt)
            current = nxt
            continue
        if status in RETRY_STATUSES and retries < max_retries:
            wait = parse_retry_after(ans.headers.get("Retry-After"))
            whole_host = status == 429 or wait is not None  # the server asked: slow down
            pause(host, backoff_s * 2**retries if wait is None else wait, whole_host=whole_host)
            retries += 1
            continue
        if status >= 300:  # >= 400, or a redirect without a Location to follow
            return done(f"http_{status}", f"HTTP {status} from {current}")
        if ans.error:
            if ans.retryable and retries < max_retries:
                pause(host, backoff_s * 2**retries, whole_host=False)
                retries += 1
                continue
            return done(ans.error, ans.detail)
        result.content = ans.body
        return done()
