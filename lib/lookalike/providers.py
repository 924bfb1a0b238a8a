"""The providers of stage 02 and how one domain is asked: its own site, then logo services.

``site`` reads the homepage's icon markup and manifest (:mod:`lookalike.icons`) and downloads
the candidates; the services (``logodev``, ``brandfetch``, ``duckduckgo``, ``google``,
``clearbit``) are URL templates. :func:`plan_providers` checks the chain and fills in the
credentials; :func:`site_provider` and :func:`service_provider` return one provider's
:class:`Outcome` for one domain, within the domain's time budget (:class:`Attempt`).
"""

from __future__ import annotations

import ipaddress
import os
import string
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

import requests

from . import images, net
from .exceptions import ConfigError, ImageError
from .icons import (
    MONO_KINDS,
    Candidate,
    Decoded,
    decode_logo,
    dedupe,
    parse_icon_links,
    parse_manifest_icons,
)
from .robots import RobotsCache

#: At most this many icon URLs are downloaded per domain from the site.
MAX_CANDIDATES = 10
#: A site icon at least this big (shorter side, pixels) ends the search on that site early.
GOOD_ENOUGH_SIDE = 256
#: What Google's favicon service sends when it has no icon (with a 404): a 16x16 globe.
GOOGLE_PLACEHOLDER_SIZE = (16, 16)


SITE_URL = "https://{domain}/"
DUCKDUCKGO_URL = "https://icons.duckduckgo.com/ip3/{domain}.ico"
GOOGLE_URL = "https://www.google.com/s2/favicons?domain={domain}&sz=256"
#: logo.dev image CDN: a publishable key (``pk_...``) as ``token``; ``fallback=404`` turns
#: its generated monogram for unknown domains into a 404.
LOGODEV_URL = "https://img.logo.dev/{domain}?token={token}&size=256&format=png&fallback=404"
#: Brandfetch Logo API: the client id as ``c``; ``fallback/404`` instead of a placeholder.
BRANDFETCH_URL = (
    "https://cdn.brandfetch.io/domain/{domain}/w/256/h/256/fallback/404/type/icon?c={client_id}"
)
#: The original notebook's provider. Shut down on 1 December 2025; kept for historical runs.
CLEARBIT_URL = "https://logo.clearbit.com/{domain}"

#: Every provider, and the default chain (``clearbit`` is off: the service is gone).
PROVIDERS = ("site", "logodev", "brandfetch", "duckduckgo", "google", "clearbit")
DEFAULT_PROVIDERS = ("site", "logodev", "brandfetch", "duckduckgo", "google")
#: Credential each provider needs (parameter name, environment variable, template field).
CREDENTIALS = {
    "logodev": ("logodev_token", "LOGODEV_TOKEN", "token"),
    "brandfetch": ("brandfetch_client_id", "BRANDFETCH_CLIENT_ID", "client_id"),
}

#: Failures after which a host is not tried again for the same domain.
_DEAD_HOST_ERRORS = frozenset({"dns_error", "timeout", "private_address"})


def _check_template(name: str, template: str, needs: set[str]) -> None:
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise ConfigError(f"{name} {template!r} is not a valid template: {exc}") from None
    allowed = needs | {"domain"}
    if "domain" not in fields or not needs <= fields or not fields <= allowed:
        want = ", ".join("{" + f + "}" for f in sorted(allowed))
        raise ConfigError(
            f"{name} {template!r} must contain {want} and nothing else in braces, "
            f"e.g. {name}={DEFAULT_TEMPLATES[name]!r}"
        )
    if urlsplit(template.format(**{f: "x" for f in fields})).scheme not in ("http", "https"):
        raise ConfigError(f"{name} {template!r} must start with https:// or http://")


#: The URL template parameters of :func:`fetch_logos` and their defaults.
DEFAULT_TEMPLATES = {
    "site_url_template": SITE_URL,
    "duckduckgo_url": DUCKDUCKGO_URL,
    "google_url": GOOGLE_URL,
    "logodev_url": LOGODEV_URL,
    "brandfetch_url": BRANDFETCH_URL,
    "clearbit_url": CLEARBIT_URL,
}


class HostSlots:
    """At most ``per_host`` requests in flight to one host (favicon services are one host)."""

    def __init__(self, per_host: int):
        self.per_host = per_host
        self._sems: dict[str, threading.BoundedSemaphore] = {}
        self._lock = threading.Lock()

    @contextmanager
    def __call__(self, host: str) -> Iterator[None]:
        with self._lock:
            sem = self._sems.setdefault(host, threading.BoundedSemaphore(self.per_host))
        with sem:
            yield


@dataclass
class Settings:
    """Everything a worker needs, shared by all domains of one run."""

    http: net.HttpOptions
    session: requests.Session
    limiter: net.HostRateLimiter
    slots: HostSlots
    robots: RobotsCache
    min_side: int
    prefer_side: int
    budget_s: float
    site_url_template: str
    templates: dict[str, str]  # provider -> URL template, credentials filled in
    secrets: tuple[str, ...]  # credential strings to redact from recorded URLs


@dataclass
class Plan:
    """The provider chain of one run, from :func:`plan_providers`."""

    active: tuple[str, ...]  # providers that run, in order
    templates: dict[str, str]  # provider -> URL template, credentials filled in
    skipped: list[str]  # "name (no credential)" for providers without a credential
    secrets: tuple[str, ...]  # credential strings to redact from recorded URLs


def plan_providers(
    providers: Iterable[str], templates: dict[str, str], credentials: dict[str, str | None]
) -> Plan:
    """Check the chain and its templates, and fill in the credentials.

    Parameters
    ----------
    providers : iterable of str
        Names from :data:`PROVIDERS`, in the order they are tried (repeats are dropped).
    templates : dict
        The URL template parameters (keys of :data:`DEFAULT_TEMPLATES`) and their values.
    credentials : dict
        ``{"logodev": token, "brandfetch": client_id}``; ``None`` reads the environment
        variable of :data:`CREDENTIALS`. A provider without one is skipped.

    Raises
    ------
    ConfigError
        An unknown provider, a malformed template, or no provider left to run.
    """
    providers = tuple(dict.fromkeys(providers))  # each provider once, in the given order
    unknown = [p for p in providers if p not in PROVIDERS]
    if unknown or not providers:
        raise ConfigError(
            f"unknown provider(s) {unknown or list(providers)}; choose from {list(PROVIDERS)}"
        )
    for key, template in templates.items():
        provider = key.split("_")[0]
        needs = {CREDENTIALS[provider][2]} if provider in CREDENTIALS else set()
        _check_template(key, template, needs)
    creds = dict(credentials)
    filled: dict[str, str] = {}
    skipped = []
    for name in providers:
        if name == "site":
            continue
        template = templates[f"{name}_url"]
        if name in CREDENTIALS:
            param, env, field_name = CREDENTIALS[name]
            value = creds[name] or os.environ.get(env) or ""
            if not value.strip():
                skipped.append(f"{name} (no {param})")
                continue
            creds[name] = value.strip()
            template = template.replace("{" + field_name + "}", quote(creds[name], safe=""))
        filled[name] = template
    if "clearbit" in providers:
        warnings.warn(
            "provider 'clearbit': the free Clearbit Logo API shut down on 1 December 2025; "
            "expect every request to fail. Keep it only to reproduce historical runs.",
            UserWarning,
            stacklevel=3,
        )
    active = tuple(p for p in providers if p == "site" or p in filled)
    if not active:
        raise ConfigError(
            f"no provider can run: skipped {', '.join(skipped)}. Set the credential "
            "(parameter or environment variable) or add 'site', 'duckduckgo' or 'google'."
        )
    secrets = tuple(s for v in creds.values() if v for s in {v, quote(v, safe="")} if len(s) >= 4)
    return Plan(active, filled, skipped, secrets)


def open_settings(
    http: net.HttpOptions,
    plan: Plan,
    *,
    concurrency: int,
    per_host_concurrency: int,
    service_delay_s: float,
    min_side: int,
    prefer_side: int,
    budget_s: float,
    site_url_template: str,
) -> Settings:
    """The session, limits and robots.txt cache of one run (close ``session`` when done).

    Each service host gets ``service_delay_s`` between requests; sites get ``http.delay_s``.
    """
    session = net.build_session(http, pool_size=concurrency + 4)
    limiter = net.HostRateLimiter(http.delay_s)
    for template in plan.templates.values():
        host = urlsplit(template.format(domain="example.com")).hostname
        if host:
            limiter.set_delay(host, service_delay_s)
    # robots.txt is a tiny text file: a dead host shows up fast
    robots = RobotsCache(session, http, limiter=limiter, timeout_s=min(http.timeout_s, 5.0))
    return Settings(
        http=http,
        session=session,
        limiter=limiter,
        slots=HostSlots(per_host_concurrency),
        robots=robots,
        min_side=min_side,
        prefer_side=prefer_side,
        budget_s=budget_s,
        site_url_template=site_url_template,
        templates=plan.templates,
        secrets=plan.secrets,
    )


class Attempt:
    """One domain's fetches: the per-domain deadline, robots.txt and per-host limits."""

    def __init__(self, st: Settings):
        self.st = st
        self.deadline = time.monotonic() + st.budget_s
        self.tried = 0

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def get(self, url: str, *, accept: str, site: bool, max_bytes: int | None = None):
        st = self.st
        if self.left() <= 0:
            return net.FetchResult(url, url, error="budget_exceeded", detail="no time left")
        if site:
            allowed, why = st.robots.allowed(url)
            if not allowed:
                return net.FetchResult(url, url, error=why, detail="robots.txt")
        with st.slots((urlsplit(url).hostname or "").lower()):
            left = self.left()
            if left <= 0:
                return net.FetchResult(url, url, error="budget_exceeded", detail="no time left")
            return net.fetch(
                st.session,
                url,
                accept=accept,
                max_bytes=max_bytes or st.http.max_bytes,
                timeout_s=max(0.1, min(st.http.timeout_s, left)),
                max_retries=st.http.max_retries,
                allow_private_hosts=st.http.allow_private_hosts,
                rate_limiter=st.limiter,
                max_wait_s=max(0.0, min(30.0, left)),
            )


@dataclass
class Outcome:
    """What one provider found for one domain."""

    best: Decoded | None = None
    tried: int = 0
    reason: str = ""
    http_status: int | None = None
    detail: str = ""
    errors: Counter = field(default_factory=Counter)

    def fail(self, reason: str, http_status: int | None, detail: str = "") -> None:
        if not self.reason:
            self.reason, self.http_status = reason, http_status
        self.errors[reason] += 1
        if detail:
            self.detail = f"{self.detail}; {detail}" if self.detail else detail


def _homepage_urls(domain: str, template: str) -> list[str]:
    """``template`` for the bare host and then ``www.``; each https URL followed by http."""
    try:
        ipaddress.ip_address(domain)
        hosts = [domain]
    except ValueError:
        hosts = [domain, "www." + domain]
    out = []
    for host in hosts:
        url = template.format(domain=host)
        out.append(url)
        if url.startswith("https://"):
            out.append("http://" + url[len("https://") :])
    return out


def _download(att: Attempt, cand: Candidate, out: Outcome, *, site: bool) -> Decoded | None:
    """Fetch and judge one candidate; failures are counted in ``out``."""
    r = att.get(cand.url, accept=net.ACCEPT_IMAGES, site=site)
    if r.error in ("budget_exceeded", "robots_disallowed", "robots_unavailable"):
        out.fail(r.error, r.status_code)  # not a download
        return None
    out.tried += 1
    att.tried += 1
    google = cand.kind == "google"
    if google and r.status_code == 404:
        out.fail("placeholder", 404, "404: Google's globe")
        return None
    if not r.ok:
        out.fail(r.error, r.status_code)
        return None
    try:
        im, fmt = decode_logo(r.content, min_side=att.st.min_side)
    except ImageError as exc:
        out.fail(images.error_reason(exc), r.status_code)
        return None
    if google and im.size == GOOGLE_PLACEHOLDER_SIZE:
        out.fail("placeholder", r.status_code, "16x16: the size of Google's globe")
        return None
    return Decoded(cand, im, r.content, fmt, r.status_code, final_url=r.final_url)


def _keep(out: Outcome, found: Decoded | None) -> None:
    if found is not None and (out.best is None or found.rank() > out.best.rank()):
        out.best = found


def _read_homepage(att: Attempt, domain: str) -> tuple[net.FetchResult | None, list]:
    """The homepage's answer (None if every URL failed) and ``(url, result)`` per failure."""
    failures: list[tuple[str, net.FetchResult]] = []
    dead_hosts: set[str] = set()
    for url in _homepage_urls(domain, att.st.site_url_template):
        host = urlsplit(url).hostname
        if host in dead_hosts:
            continue
        r = att.get(url, accept=net.ACCEPT_HTML, site=True)
        if r.ok:
            return r, failures
        failures.append((url, r))
        if r.error in ("robots_disallowed", "budget_exceeded"):
            break
        if r.error in _DEAD_HOST_ERRORS:
            dead_hosts.add(host)
    return None, failures


def _homepage_failed(out: Outcome, failures: list[tuple[str, net.FetchResult]]) -> None:
    """Record why no homepage could be read (the most informative of its failures)."""
    errors = [r.error for _, r in failures]
    # robots.txt on a host that answers 5xx says little; the page's own error says more
    informative = [e for e in errors if e != "robots_unavailable"] or errors
    first = next(
        (r for _, r in failures if r.error in ("robots_disallowed", "budget_exceeded")),
        next(r for _, r in failures if r.error == informative[0]),
    )
    out.fail(first.error, first.status_code, "; ".join(f"{u} {r.error}" for u, r in failures))


def _well_known(origin: str) -> list[Candidate]:
    return [
        Candidate(origin + "/apple-touch-icon.png", "apple-touch-icon.png", 180),
        Candidate(origin + "/favicon.ico", "favicon.ico", 0),
    ]


def _origin(url: str) -> str:
    return "{0.scheme}://{0.netloc}".format(urlsplit(url))


def _site_answered(r: net.FetchResult) -> bool:
    """The homepage failed with the site's own HTTP status: not 429 (it asked us to slow
    down) and not 502/503/504 (a gateway or proxy could not reach it, or it is down)."""
    code = r.status_code
    return bool(r.error and r.error.startswith("http_")) and code not in (429, 502, 503, 504)


def _without_homepage(att: Attempt, out: Outcome, failures: list) -> Outcome:
    """No homepage: if the site answered with an HTTP status (bot protection often answers
    403 or 400 on ``/``), its well-known icon files may still be there; an unreachable host
    is not asked again."""
    _homepage_failed(out, failures)
    answered = next((r for _, r in failures if _site_answered(r)), None)
    if answered is not None:
        for cand in _well_known(_origin(answered.final_url)):
            _keep(out, _download(att, cand, out, site=True))
    return out


def site_provider(att: Attempt, domain: str) -> Outcome:
    out = Outcome()
    page, failures = _read_homepage(att, domain)
    if page is None:
        return _without_homepage(att, out, failures)
    cands, manifest_url = parse_icon_links(page.content, page.final_url)
    if manifest_url:
        m = att.get(manifest_url, accept=net.ACCEPT_JSON, site=True, max_bytes=1_000_000)
        if m.ok:
            cands += parse_manifest_icons(m.content, m.final_url)
    icons = sorted(
        (c for c in dedupe(cands) if c.tier == 0),
        key=lambda c: (c.kind in MONO_KINDS, not c.svg, -c.declared),
    )
    seen = {c.url for c in icons}
    well_known = [c for c in _well_known(_origin(page.final_url)) if c.url not in seen]
    social = [c for c in dedupe(cands) if c.tier == 1]
    for cand in icons[:MAX_CANDIDATES]:
        _keep(out, _download(att, cand, out, site=True))
        if out.best is not None and out.best.side >= GOOD_ENOUGH_SIDE:
            break  # an SVG or a big raster; nothing listed after it can rank higher in practice
    # last resorts: the well-known files when the markup gave nothing (or only a tiny icon),
    # then social images, which are usually banners rather than logos
    if out.best is None or out.best.side < att.st.prefer_side:
        for cand in well_known:
            _keep(out, _download(att, cand, out, site=True))
    if out.best is None:
        for cand in social[:2]:
            _keep(out, _download(att, cand, out, site=True))
    if out.best is None:
        if "budget_exceeded" in out.errors:
            out.reason = "budget_exceeded"
        elif out.tried or not out.reason:
            out.reason = "no_usable_icon"  # each candidate's own reason is in the detail
        out.detail = f"{out.tried} candidates: " + ", ".join(
            f"{k} x{v}" for k, v in out.errors.most_common()
        )
    return out


def service_provider(att: Attempt, domain: str, name: str) -> Outcome:
    out = Outcome()
    template = att.st.templates[name]
    hosts = [domain, "www." + domain] if name == "duckduckgo" else [domain]
    for host in hosts:
        found = _download(att, Candidate(template.format(domain=host), name), out, site=False)
        if found is not None:
            out.best = found
            return out
        if out.reason == "budget_exceeded":
            break
    counts = ", ".join(f"{k} x{v}" for k, v in out.errors.items())
    out.detail = f"{counts}: {out.detail}" if out.detail else counts
    return out
