"""The connection guard under :func:`lookalike.net.fetch`: pinned public addresses, a deadline.

Sessions from :func:`lookalike.net.build_session` mount :class:`GuardedAdapter`. While
:func:`guarded` is active in a thread (``fetch`` with ``allow_private_hosts=False``), its
connections resolve the host themselves, refuse the connection if any address is not public
(:func:`is_public_ip`), and connect only to the addresses they checked: the check and the
connection use the same DNS answer, which closes the DNS-rebinding window. Through an HTTP
proxy the proxy resolves names, so only the best-effort pre-check of :func:`check_host`
applies. Every request also gets a hard deadline: a watchdog thread shuts the socket down when
it has passed, so a server that trickles its headers or body byte by byte cannot hold a worker.
"""

from __future__ import annotations

import contextlib
import heapq
import ipaddress
import itertools
import socket
import threading
import time

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import create_connection

#: Cloud metadata endpoints: always refused unless ``allow_private_hosts``.
METADATA_IPS = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)


# -- connection guard: pinned public addresses and a hard per-request deadline ------------


class PrivateAddressError(NewConnectionError):
    """A connection was about to go to a non-public address (raised inside urllib3)."""


class _Guard(threading.local):
    """Per-thread policy that :func:`lookalike.net.fetch` sets around one request."""

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
def guarded(*, check_private: bool, deadline: float):
    """Apply the guard to connections this thread opens or uses inside the block."""
    g = _guard
    g.check_private, g.deadline, g.alarms = check_private, deadline, []
    try:
        yield g
    finally:
        for alarm in g.alarms:
            alarm.cancel()
        g.check_private, g.deadline = False, None


def fired(g: _Guard) -> bool:
    """Whether the deadline cut a connection of this block short."""
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
    """Connection behaviour under :func:`guarded`; plain urllib3 behaviour outside it."""

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
    """An ``HTTPAdapter`` whose connections honour the address check and deadline of a fetch.

    Outside :func:`guarded` (a plain ``session.get``) its connections behave like requests'
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
    not what stops DNS rebinding: inside :func:`lookalike.net.fetch`, sessions from
    :func:`lookalike.net.build_session` check again when they connect and connect only to the
    addresses they checked.
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
