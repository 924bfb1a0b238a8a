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

Safety. Sessions from :func:`build_session` carry the connection guard of
:mod:`lookalike.netguard`: while :func:`fetch` runs with ``allow_private_hosts=False`` a
connection goes only to public addresses it checked itself (no DNS-rebinding window), and
every request has a hard deadline of ``timeout_s``.

Both gathering stages (01 :mod:`lookalike.scrape`, 02 :mod:`lookalike.logos`) describe their
HTTP set-up with one :class:`HttpOptions`, build their session with :func:`build_session`,
space their requests with a :class:`HostRateLimiter` and ask a
:class:`lookalike.robots.RobotsCache` first.
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from urllib.parse import urldefrag, urljoin, urlsplit, urlunsplit

import requests
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import NameResolutionError, NewConnectionError, ReadTimeoutError

from . import __version__ as _version
from .exceptions import ConfigError
from .netguard import GuardedAdapter, PrivateAddressError, check_host, fired, guarded

#: Identifies the tool; sites can block or contact on it. Override with ``user_agent=``.
DEFAULT_USER_AGENT = f"lookalike/{_version} (research image clustering; python-requests)"
ACCEPT_HTML = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
ACCEPT_IMAGES = "image/avif,image/webp,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5"
ACCEPT_JSON = "application/json,*/*;q=0.5"

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_PRIVATE_HINT = "pass allow_private_hosts=True only for hosts you trust (e.g. a local test server)"
_SKIP_SCHEMES = ("data:", "javascript:", "about:", "blob:", "mailto:", "#")
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
_SNIFF_BYTES = 64  # enough for every image signature sniff functions look at


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


@dataclass(frozen=True)
class HttpOptions:
    """How a stage talks HTTP; one object serves both 01 (scrape) and 02 (logos).

    Attributes
    ----------
    user_agent : str, default :data:`DEFAULT_USER_AGENT`
        Sent as ``User-Agent`` with every request and matched against robots.txt.
    proxy : str or None
        ``"http://host:port"`` for both http and https URLs; ``None`` honours the standard
        ``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY`` variables (``REQUESTS_CA_BUNDLE`` names
        the CA of a TLS-inspecting proxy).
    timeout_s : float, default 20.0
        The most one request may take, connection to last byte, in seconds.
    max_retries : int, default 3
        Retries after 5xx/429 answers and dropped connections (see :func:`fetch`).
    max_bytes : int, default 20_000_000
        Largest body accepted, in bytes (``too_large``).
    delay_s : float, default 0.0
        Minimum seconds between the starts of two requests to one host
        (:class:`HostRateLimiter`; robots.txt ``Crawl-delay`` raises it).
    respect_robots : bool, default True
        Ask robots.txt before each request a stage makes to a site
        (:class:`lookalike.robots.RobotsCache`).
    allow_private_hosts : bool, default False
        Allow private, loopback and link-local addresses (only for trusted local servers).

    Raises
    ------
    ConfigError
        A negative delay or retry count, or a time or size that is not positive.
    """

    user_agent: str = DEFAULT_USER_AGENT
    proxy: str | None = None
    timeout_s: float = 20.0
    max_retries: int = 3
    max_bytes: int = 20_000_000
    delay_s: float = 0.0
    respect_robots: bool = True
    allow_private_hosts: bool = False

    def __post_init__(self) -> None:
        def number(v) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v

        for ok, msg in (
            (
                number(self.delay_s) and self.delay_s >= 0,
                f"delay_s must be >= 0 seconds, got {self.delay_s!r}",
            ),
            (
                number(self.timeout_s) and self.timeout_s > 0,
                f"timeout_s must be > 0 seconds, got {self.timeout_s!r}",
            ),
        ):
            if not ok:
                raise ConfigError(msg)
        require_int("max_retries", self.max_retries, low=0)
        require_int("max_bytes", self.max_bytes)

    def fetch_args(self) -> dict:
        """The keyword arguments of :func:`fetch` these options set."""
        keys = ("timeout_s", "max_retries", "max_bytes", "allow_private_hosts")
        return {k: v for k, v in asdict(self).items() if k in keys}


def require_int(name: str, value, *, low: int = 1, allow_none: bool = False) -> None:
    """Raise :class:`ConfigError` naming ``name`` unless ``value`` is an int ``>= low``.

    Shared by the gathering stages, so a negative, zero, fractional or non-numeric count
    (``max_domains=-3``, ``max_pages="abc"``) is refused up front instead of misbehaving.
    ``allow_none`` accepts ``None`` ("no limit").
    """
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        also = " or None" if allow_none else ""
        raise ConfigError(f"{name} must be an integer >= {low}{also}, got {value!r}")


def build_session(options: HttpOptions | None = None, *, pool_size: int = 16) -> requests.Session:
    """A ``requests.Session`` for many concurrent :func:`fetch` calls.

    Parameters
    ----------
    options : HttpOptions or None
        Its ``user_agent`` is sent with every request and its ``proxy`` (if any) is used for
        both http and https URLs; ``None`` uses the defaults.
    pool_size : int, default 16
        Connections kept per host; use at least the number of worker threads.
    """
    options = options or HttpOptions()
    session = requests.Session()
    session.headers["User-Agent"] = options.user_agent
    adapter = GuardedAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    if options.proxy:
        session.proxies = {"http": options.proxy, "https": options.proxy}
    return session


def _proxy_for(session: requests.Session, url: str) -> str | None:
    """The proxy requests would use for ``url`` (session setting, then environment)."""
    try:
        proxies = session.merge_environment_settings(url, {}, None, None, None)["proxies"]
        return requests.utils.select_proxy(url, proxies)
    except Exception:  # a malformed env var must not break fetching
        return None


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


@dataclass(frozen=True)
class _BodyRules:
    """What :func:`fetch` accepts as a body (its parameters of the same names)."""

    max_bytes: int
    reject_types: Collection[str] = ()
    truncate: bool = False
    sniff: Callable[[bytes], bool] | None = None


def _read_capped(
    resp: requests.Response, rules: _BodyRules, deadline: float, refused: bool
) -> tuple[bytes, str]:
    """Stream the (decompressed) body; stop at ``max_bytes`` (or keep its start) or the deadline.

    ``refused``: the Content-Type was refused; the body is kept only if its first chunk
    passes ``rules.sniff``.
    """
    max_bytes, truncate = rules.max_bytes, rules.truncate
    length = resp.headers.get("Content-Length")
    if not truncate and length and length.isdigit() and int(length) > max_bytes:
        return b"", "too_large"
    buf = bytearray()
    checked = not refused
    for chunk in resp.iter_content(_CHUNK):
        buf += chunk
        if not checked and len(buf) >= _SNIFF_BYTES:
            if not rules.sniff(bytes(buf)):
                return b"", "content_type"
            checked = True
        if len(buf) > max_bytes:
            return (bytes(buf[:max_bytes]), "") if truncate else (b"", "too_large")
        if time.monotonic() > deadline:
            return b"", "timeout"
    if not checked and not rules.sniff(bytes(buf)):
        return b"", "content_type"
    identity = resp.headers.get("Content-Encoding", "identity").strip().lower() == "identity"
    if identity and length and length.isdigit() and len(buf) < int(length):
        return b"", "short_body"  # the connection ended early: a cut-off body is no body
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
    check_private: bool,
    rules: _BodyRules,
) -> _Answer:
    """Send one GET (no redirects) and read its body under a hard deadline of ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    ans = _Answer()
    with guarded(check_private=check_private, deadline=deadline) as g:
        try:
            resp = session.get(
                url,
                headers={"Accept": accept},
                timeout=(timeout_s, timeout_s),
                allow_redirects=False,
                stream=True,
            )
        except Exception as exc:
            ans.error, ans.retryable = ("timeout", False) if fired(g) else _classify(exc)
            ans.detail = f"{type(exc).__name__}: {exc}"
            if ans.error == "timeout" and fired(g):
                ans.detail = f"no complete answer within timeout_s={timeout_s}"
            elif ans.error == "private_address":
                ans.detail += f"; {_PRIVATE_HINT}"
            return ans
        with resp:
            _read_answer(resp, ans, rules, deadline)
        if fired(g) or time.monotonic() > deadline:
            # Cut off by the watchdog: whatever arrived (even a status line and "end of file"
            # inside the headers) is not an answer, never a success.
            return _Answer(
                error="timeout", detail=f"no complete answer within timeout_s={timeout_s}"
            )
    return ans


def _read_answer(
    resp: requests.Response,
    ans: _Answer,
    rules: _BodyRules,
    deadline: float,
) -> None:
    """Fill ``ans`` from one response: status, headers and (for a 2xx) the capped body."""
    ans.status, ans.headers = resp.status_code, resp.headers
    if resp.status_code >= 300:
        _discard(resp)
        return
    mime = (resp.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    refused = bool(rules.reject_types) and _type_matches(mime, rules.reject_types)
    if refused and rules.sniff is None:
        ans.error, ans.detail = "content_type", f"refused Content-Type {mime!r}"
        return
    try:
        body, reason = _read_capped(resp, rules, deadline, refused)
    except Exception as exc:  # a cut by the watchdog is reported as timeout by the caller
        ans.error, ans.retryable = _classify(exc)
        ans.detail = f"{type(exc).__name__}: {exc}"
        return
    if reason == "too_large":
        ans.error, ans.detail = reason, f"body larger than max_bytes={rules.max_bytes}"
    elif reason == "short_body":
        ans.error, ans.retryable = "connection_error", True
        ans.detail = f"body shorter than its Content-Length {resp.headers['Content-Length']}"
    elif reason == "content_type":
        ans.error, ans.detail = reason, f"refused Content-Type {mime!r} (the bytes agree)"
    elif reason:
        ans.error, ans.detail = reason, "body not complete within timeout_s"
    else:
        ans.body = body


def _check_url(
    session: requests.Session, url: str, allow_private_hosts: bool
) -> tuple[str, str, str]:
    """``(host, reason, detail)`` for one hop; ``reason`` is ``""`` when it may be requested."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "", "invalid_url", f"not an absolute http(s) URL: {url!r}"
    if allow_private_hosts:
        return parts.hostname, "", ""
    try:
        port = parts.port
    except ValueError:
        return "", "invalid_url", f"bad port in {url!r}"
    proxied = _proxy_for(session, url) is not None
    return parts.hostname, *check_host(parts.hostname, port=port, proxied=proxied)


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
    truncate: bool = False,
    sniff: Callable[[bytes], bool] | None = None,
) -> FetchResult:
    """GET ``url`` with redirects checked hop by hop, retries, a size cap and a time budget.

    Parameters
    ----------
    session : requests.Session
        From :func:`build_session` (user agent, proxy, connection pool, connection guard).
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
    sniff : callable or None
        With ``reject_types``: a body of a refused type is still taken when
        ``sniff(first_bytes)`` is true (the bytes are trusted over the header, e.g. an image
        served as ``text/html``); only its first chunk (64 KiB) is read otherwise.
    truncate : bool, default False
        Keep the first ``max_bytes`` of a longer body instead of failing with ``too_large``.

    Returns
    -------
    FetchResult
        Never raises for network or HTTP problems; see the module docstring for reasons.
    """
    t0 = time.monotonic()
    result = FetchResult(url=url, final_url=url)
    rules = _BodyRules(max_bytes, tuple(reject_types), truncate, sniff)

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
        host, reason, detail = _check_url(session, current, allow_private_hosts)
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
            check_private=not allow_private_hosts,
            rules=rules,
        )
        if ans.status is None:  # no answer at all
            if ans.retryable and retries < max_retries:
                pause(host, backoff_s * 2**retries, whole_host=False)
                retries += 1
                continue
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


# -- URLs -------------------------------------------------------------------------------------


def base_url(soup, page_url: str) -> str:
    """The URL relative links of a parsed page resolve against.

    Parameters
    ----------
    soup : bs4.BeautifulSoup
        The parsed page.
    page_url : str
        Its URL (after redirects).

    Returns
    -------
    str
        ``<base href>`` resolved against ``page_url`` if the page has one, else ``page_url``.
    """
    base = soup.find("base", href=True)
    if base is not None and base["href"].strip():
        return urljoin(page_url, base["href"].strip())
    return page_url


def absolute_url(value: str | None, base: str) -> str | None:
    """Resolve ``value`` against ``base``; ``None`` for data:/javascript:/non-http URLs."""
    if not value:
        return None
    value = value.strip()
    if not value or value.lower().startswith(_SKIP_SCHEMES):
        return None
    url = urldefrag(urljoin(base, value))[0]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return url


def normalize_url(url: str) -> str | None:
    """One spelling per URL: lowercase scheme and host, no default port, no fragment.

    Returns None for a URL whose port is not a number.
    """
    parts = urlsplit(urldefrag(url)[0])
    try:
        port = parts.port
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != {"http": 80, "https": 443}.get(parts.scheme.lower()):
        host += f":{port}"
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{host}" if userinfo else host
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", parts.query, ""))
