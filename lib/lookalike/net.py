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
``timeout``             no connection or no complete answer within ``timeout_s``
``connection_refused``  nothing listens on that port
``connection_error``    reset, broken or otherwise failed connection (retried)
``proxy_error``         the proxy refused or failed the request
``ssl_error``           TLS handshake or certificate problem
``too_large``           the body exceeds ``max_bytes`` (by Content-Length or while streaming)
``redirect_loop``       a redirect loop or more than ``max_redirects`` hops
``http_<code>``         final HTTP status >= 400 (5xx and 429 after all retries)
``request_error``       anything else requests raised
======================  ===================================================================
"""

from __future__ import annotations

import email.utils
import ipaddress
import socket
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NameResolutionError, NewConnectionError, ReadTimeoutError

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

    @property
    def ok(self) -> bool:
        return self.error is None

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
    Each caller reserves the next free slot under a lock and sleeps outside it, so threads
    hitting different hosts never wait for each other. ``set_delay`` raises the delay for one
    host (for example from robots.txt ``Crawl-delay``).
    """

    def __init__(self, delay_s: float = 0.0):
        if delay_s < 0:
            raise ValueError(f"delay_s must be >= 0, got {delay_s!r}")
        self.delay_s = float(delay_s)
        self._next: dict[str, float] = {}
        self._delays: dict[str, float] = {}
        self._lock = threading.Lock()

    def set_delay(self, host: str, delay_s: float) -> None:
        """Use ``delay_s`` for ``host`` from now on (never lower than the default)."""
        with self._lock:
            self._delays[host.lower()] = max(self.delay_s, float(delay_s))

    def delay_for(self, host: str) -> float:
        with self._lock:
            return self._delays.get(host.lower(), self.delay_s)

    def wait(self, host: str) -> float:
        """Block until a request to ``host`` may start; return the seconds slept."""
        host = host.lower()
        with self._lock:
            delay = self._delays.get(host, self.delay_s)
            if delay <= 0:
                return 0.0
            now = time.monotonic()
            start = max(now, self._next.get(host, now))
            self._next[host] = start + delay
        wait = start - now
        if wait > 0:
            time.sleep(wait)
        return wait


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
    adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
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
    The check and the connection resolve separately, so a host whose DNS answer changes in
    between (DNS rebinding) is not caught; pinning the checked address is future work.
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
) -> FetchResult:
    """GET ``url`` with redirects checked hop by hop, retries, a size cap and a time budget.

    Parameters
    ----------
    session : requests.Session
        From :func:`make_session` (user agent, proxy, connection pool).
    url : str
        Absolute http(s) URL.
    timeout_s : float, default 20.0
        Connect timeout and read timeout per request, and the budget for streaming one body
        (so a trickling server is cut off after about ``2 * timeout_s``).
    max_bytes : int, default 20_000_000
        Largest body accepted, after content decoding (guards against gzip bombs too).
    max_retries : int, default 3
        Extra attempts after a 429/5xx answer or a dropped connection. Waits grow as
        ``backoff_s * 2**attempt``; a ``Retry-After`` header is honoured. Every wait is capped
        at ``max_wait_s`` seconds.
    allow_private_hosts : bool, default False
        When False, each hop's host is resolved and refused if any address is private,
        loopback, link-local, reserved, multicast or a cloud metadata endpoint.
    accept : str
        The ``Accept`` header (see ``ACCEPT_HTML``, ``ACCEPT_IMAGES``, ``ACCEPT_JSON``).
    rate_limiter : HostRateLimiter or None
        Waited on before every request (retries and redirect hops included).
    max_redirects : int, default 10
        More hops than this is reported as ``redirect_loop``.

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
        try:
            resp = session.get(
                current,
                headers={"Accept": accept},
                timeout=(timeout_s, timeout_s),
                allow_redirects=False,
                stream=True,
            )
        except Exception as exc:
            reason, retryable = _classify(exc)
            if retryable and retries < max_retries:
                time.sleep(min(backoff_s * 2**retries, max_wait_s))
                retries += 1
                continue
            return done(reason, f"{type(exc).__name__}: {exc}")

        with resp:
            result.final_url = current
            result.status_code = resp.status_code
            result.content_type = resp.headers.get("Content-Type")
            status = resp.status_code
            if status >= 300:
                _discard(resp)
            if status in _REDIRECT_STATUSES and resp.headers.get("Location"):
                nxt = urljoin(current, resp.headers["Location"].strip())
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
                wait = parse_retry_after(resp.headers.get("Retry-After"))
                if wait is None:
                    wait = backoff_s * 2**retries
                time.sleep(min(wait, max_wait_s))
                retries += 1
                continue
            if status >= 400:
                return done(f"http_{status}", f"HTTP {status} from {current}")
            try:
                body, reason = _read_capped(resp, max_bytes, time.monotonic() + timeout_s)
            except Exception as exc:
                reason, retryable = _classify(exc)
                if retryable and retries < max_retries:
                    time.sleep(min(backoff_s * 2**retries, max_wait_s))
                    retries += 1
                    continue
                return done(reason, f"{type(exc).__name__}: {exc}")
            if reason == "too_large":
                return done("too_large", f"body larger than max_bytes={max_bytes}")
            if reason:
                return done(reason, f"body not complete within {timeout_s}s")
            result.content = body
            return done()
