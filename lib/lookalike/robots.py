"""robots.txt for both gathering stages (RFC 9309): fetched once per host, ``Crawl-delay`` honoured.

:class:`RobotsCache` asks :func:`lookalike.net.fetch` for ``/robots.txt`` and parses it with
Protego. Up to :data:`ROBOTS_MAX_BYTES` of a file are parsed (a longer one is cut there, at a
line end, as RFC 9309 allows) and a UTF-8 byte-order mark is ignored.
"""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

import requests
from protego import Protego

from .net import HostRateLimiter, HttpOptions, fetch

#: A robots.txt ``Crawl-delay`` is honoured up to this many seconds per request.
MAX_CRAWL_DELAY_S = 30.0
#: RFC 9309 asks crawlers to parse at least 500 KiB; a longer file is cut there.
ROBOTS_MAX_BYTES = 500 * 1024
_DISALLOW_ALL = object()  # robots.txt answered 5xx: the whole host is off limits


class RobotsCache:
    """robots.txt per host (fetched once, thread-safe), with ``Crawl-delay`` fed to a limiter.

    A missing robots.txt (4xx) allows everything; a 5xx answer disallows the host, as
    RFC 9309 asks; a network failure allows (the real request then reports its own error).
    With ``options.respect_robots`` False every URL is allowed and nothing is fetched.

    Parameters
    ----------
    session : requests.Session
        From :func:`lookalike.net.build_session`.
    options : HttpOptions
        The stage's options (user agent, private hosts, ``timeout_s``, ``respect_robots``).
    limiter : HostRateLimiter or None
        Waited on before each robots.txt request; a ``Crawl-delay`` raises its delay for the
        host (up to :data:`MAX_CRAWL_DELAY_S`).
    timeout_s : float or None
        Per robots.txt request; ``None`` uses ``options.timeout_s``.
    """

    def __init__(
        self,
        session: requests.Session,
        options: HttpOptions,
        *,
        limiter: HostRateLimiter | None = None,
        timeout_s: float | None = None,
    ):
        self.session, self.options, self.limiter = session, options, limiter
        self.timeout_s = options.timeout_s if timeout_s is None else timeout_s
        self._rules: dict[str, object] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def _load(self, origin: str):
        r = fetch(
            self.session,
            origin + "/robots.txt",
            accept="text/plain",
            timeout_s=self.timeout_s,
            max_bytes=ROBOTS_MAX_BYTES,
            max_retries=1,
            allow_private_hosts=self.options.allow_private_hosts,
            rate_limiter=self.limiter,
            truncate=True,  # RFC 9309: parse the first 500 KiB of a larger file
        )
        if r.ok:
            text = r.content.removeprefix(b"\xef\xbb\xbf").decode("utf-8", errors="replace")
            if len(r.content) >= ROBOTS_MAX_BYTES:
                text = text.rsplit("\n", 1)[0]  # the cut line is incomplete
            rules = Protego.parse(text)
            delay = rules.crawl_delay(self.options.user_agent)
            if delay and self.limiter is not None:
                self.limiter.set_delay(urlsplit(origin).hostname, min(delay, MAX_CRAWL_DELAY_S))
            return rules
        if r.status_code is not None and r.status_code >= 500:
            return _DISALLOW_ALL
        return None  # 4xx or unreachable: no rules

    def allowed(self, url: str) -> tuple[bool, str]:
        """``(allowed, reason)``; reason ``robots_disallowed``, ``robots_unavailable`` or ``""``."""
        if not self.options.respect_robots:
            return True, ""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        with self._lock:
            lock = self._locks.setdefault(origin, threading.Lock())
        with lock:
            if origin not in self._rules:
                self._rules[origin] = self._load(origin)
        rules = self._rules[origin]
        if rules is None:
            return True, ""
        if rules is _DISALLOW_ALL:
            return False, "robots_unavailable"
        if rules.can_fetch(url, self.options.user_agent):
            return True, ""
        return False, "robots_disallowed"
