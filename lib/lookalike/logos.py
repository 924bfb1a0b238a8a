"""Stage 02: find the best logo for every domain of a list, with a chain of providers.

Outputs (inside ``run_dir``):

- ``logos/<domain>.png`` -- the chosen logo as RGBA PNG (alpha kept), longest side at most
  :data:`MAX_LOGO_SIDE`; the file name comes only from the normalized domain.
- ``logos/original/<domain>.<ext>`` -- the chosen bytes as downloaded (``svg``, ``ico``...).
- ``logos.parquet`` -- one row per normalized domain or invalid input (see :data:`LOGO_COLUMNS`).
- ``logos_summary.csv`` -- the table :func:`summarize` returns.

Providers are tried in the order of ``providers`` until one yields a logo whose shorter side is
at least ``prefer_side`` pixels (a smaller one is kept, and the largest found wins):

``site``
    The domain's own homepage (``https://{domain}/``, then ``http://``, then the ``www.`` host;
    redirects followed, robots.txt honoured): every ``<link rel>`` icon (icon, shortcut icon,
    apple-touch-icon(-precomposed), mask-icon) with its ``sizes``, the web app manifest's icons,
    ``<base href>``; then ``/apple-touch-icon.png`` and ``/favicon.ico``; ``og:image`` and
    ``twitter:image`` only when no icon works (they are usually banners). Candidates are
    downloaded and ranked by their real decoded size: an SVG (rendered without network or file
    access) ranks above any raster, a large PNG above small ICO frames (an ICO counts as its
    largest frame), and a monochrome Safari ``mask-icon`` below every colour icon.
``logodev``, ``brandfetch``
    Logo APIs; used only when ``logodev_token`` / ``brandfetch_client_id`` is set.
``duckduckgo``
    ``/ip3/{host}.ico`` for the bare host, then the ``www.`` host.
``google``
    ``/s2/favicons?domain=...&sz=256``. Google answers a domain it has no icon for with a 404
    and its default 16x16 globe; both the 404 and a 16x16 answer count as a miss
    (``placeholder``).
``clearbit``
    The seed's ``https://logo.clearbit.com/{domain}``. The free Clearbit Logo API shut down on
    1 December 2025; it stays available (off by default) to reproduce historical runs.

Every candidate goes through :func:`decode_logo`, which rejects blank and single-colour images,
images smaller than ``min_side`` (1x1 pixels), HTML served as an image, corrupt data and
decompression bombs.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import re
import string
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from urllib.parse import quote, urlsplit

import idna
import pandas as pd
from bs4 import BeautifulSoup
from PIL import Image
from tqdm.auto import tqdm

from . import images, net, storage
from .exceptions import ConfigError, ImageError, LogoFetchError
from .net import DEFAULT_USER_AGENT
from .paths import resolve
from .scrape import RobotsCache, absolute_url, base_url

LOGOS_NAME = "logos.parquet"
SUMMARY_NAME = "logos_summary.csv"
LOGOS_DIR = "logos"
#: Size SVG logos are rendered at (pixels, longest side).
SVG_RENDER_SIZE = 256
#: Logos larger than this (for example og:image banners) are downscaled when written.
MAX_LOGO_SIDE = 512
#: At most this many icon URLs are downloaded per domain from the site.
MAX_CANDIDATES = 10
#: A site icon at least this big (shorter side, pixels) ends the search on that site early.
GOOD_ENOUGH_SIDE = 256
#: What Google's favicon service sends when it has no icon (with a 404): a 16x16 globe.
GOOGLE_PLACEHOLDER_SIZE = (16, 16)
CHECKPOINT_EVERY = 25

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
#: The seed's provider. Shut down on 1 December 2025; kept for historical runs.
CLEARBIT_URL = "https://logo.clearbit.com/{domain}"

#: Every provider, and the default chain (``clearbit`` is off: the service is gone).
PROVIDERS = ("site", "logodev", "brandfetch", "duckduckgo", "google", "clearbit")
DEFAULT_PROVIDERS = ("site", "logodev", "brandfetch", "duckduckgo", "google")
#: Credential each provider needs (parameter name, environment variable, template field).
CREDENTIALS = {
    "logodev": ("logodev_token", "LOGODEV_TOKEN", "token"),
    "brandfetch": ("brandfetch_client_id", "BRANDFETCH_CLIENT_ID", "client_id"),
}

#: Columns of ``RUN/logos.parquet`` (``input_rows`` holds lists of ints).
LOGO_COLUMNS: dict[str, str] = {
    "domain": "string",  # normalized domain (missing for invalid input)
    "input_rows": "object",  # 0-based data-row indices of the input that map to this domain
    "status": "string",  # ok | failed | invalid
    "provider": "string",  # the provider that produced the logo (see PROVIDERS)
    "url": "string",  # URL of the chosen image (credentials redacted)
    "http_status": "Int64",  # HTTP status of the chosen image, or of the failure in ``reason``
    "reason": "string",  # short code when status != ok (see the README)
    "width": "Int64",  # size of the written PNG, pixels
    "height": "Int64",
    "format": "string",  # format of the original bytes: PNG, ICO, SVG, JPEG...
    "sha256": "string",  # sha256 of the written PNG (the image_id)
    "candidates_tried": "Int64",  # image URLs downloaded for this domain, all providers
    "elapsed_ms": "Int64",  # wall time spent on this domain
    # extra columns
    "raw": "string",  # the input spelling (first one seen)
    "kind": "string",  # how the logo was found: icon, apple-touch-icon, manifest, favicon.ico...
    "providers_tried": "string",  # comma-separated, in order
    "detail": "string",  # what went wrong with each provider (credentials redacted)
}

_ICON_RELS = frozenset(
    {"icon", "shortcut", "apple-touch-icon", "apple-touch-icon-precomposed", "mask-icon"}
)
_MONO_KINDS = frozenset({"mask-icon", "manifest-monochrome"})
_SAFE_NAME = re.compile(r"^[a-z0-9._-]+$")
#: Failures after which a host is not tried again for the same domain.
_DEAD_HOST_ERRORS = frozenset({"dns_error", "timeout", "private_address"})
#: Image formats by preference when two candidates have the same size.
_FORMAT_PREFERENCE = {"SVG": 3, "PNG": 2, "WEBP": 2, "ICO": 0}


# -- domains ----------------------------------------------------------------------------------


def _invalid(reason: str, raw, detail: str) -> ValueError:
    err = ValueError(f"{reason}: {raw!r} {detail}")
    err.reason = reason  # type: ignore[attr-defined]
    return err


def normalize_domain(raw, *, allow_ip: bool = False) -> str:
    """Reduce a user's spelling of a site to its bare ASCII domain.

    ``" https://www.Bücher.DE:443/shop?x=1 "`` -> ``"xn--bcher-kva.de"``: scheme, user info,
    port, path, query, a leading ``www.`` and a trailing dot are dropped, the result is
    lowercased and IDNA-encoded.

    Raises
    ------
    ValueError
        With ``.reason`` one of ``empty``, ``has_space``, ``no_dot``, ``ip_not_allowed``,
        ``invalid_idna`` (also the start of the message).
    """
    if raw is None or (isinstance(raw, float) and raw != raw):
        raise _invalid("empty", raw, "(no value)")
    text = str(raw).strip()
    if not text:
        raise _invalid("empty", raw, "(blank)")
    if any(c.isspace() for c in text):
        raise _invalid("has_space", raw, "(a domain has no spaces)")
    if "://" not in text:
        text = "//" + text.lstrip("/")
    try:
        parts = urlsplit(text)
        host = parts.hostname or ""
    except ValueError as exc:
        raise _invalid("invalid_idna", raw, f"({exc})") from None
    host = host.rstrip(".")
    if not host:
        raise _invalid("empty", raw, "(no host name)")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        if not allow_ip:
            raise _invalid("ip_not_allowed", raw, "(an IP address; pass allow_ip=True)")
        return str(ip)
    if "." not in host:
        raise _invalid("no_dot", raw, "(expected a domain like example.com)")
    try:
        ascii_host = idna.encode(host, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError) as exc:
        raise _invalid("invalid_idna", raw, f"({exc})") from None
    if ascii_host.startswith("www.") and "." in ascii_host[4:]:
        ascii_host = ascii_host[4:]
    return ascii_host


def normalize_domains(values: Iterable, *, allow_ip: bool = False) -> pd.DataFrame:
    """Normalize and deduplicate raw domain spellings; the table :func:`read_domains` returns.

    ``input_rows`` are positions in ``values``; invalid values get one row per distinct
    spelling with ``status == "invalid"`` and the reason from :func:`normalize_domain`.
    """
    groups: dict[tuple[str, str], dict] = {}
    for i, raw in enumerate(values):
        try:
            key, row = ("ok", normalize_domain(raw, allow_ip=allow_ip)), None
            row = {"domain": key[1], "raw": str(raw).strip(), "status": "ok", "reason": None}
        except ValueError as exc:
            text = "" if raw is None or (isinstance(raw, float) and raw != raw) else str(raw)
            key = ("invalid", text.strip())
            row = {"domain": None, "raw": text.strip(), "status": "invalid"}
            row["reason"] = getattr(exc, "reason", "invalid")
        group = groups.setdefault(key, dict(row, input_rows=[]))
        group["input_rows"].append(i)
    df = pd.DataFrame(
        list(groups.values()), columns=["domain", "input_rows", "raw", "status", "reason"]
    )
    for col in ("domain", "raw", "status", "reason"):
        df[col] = df[col].astype("string")
    return df


def read_domains(path, *, domain_column: str = "domain", allow_ip: bool = False) -> pd.DataFrame:
    """Read a CSV or parquet list of domains, normalize and deduplicate them.

    Parameters
    ----------
    path : str or Path
        ``.csv`` (or ``.tsv``/``.txt`` with a header) or ``.parquet``; relative paths are
        from the project root.
    domain_column : str, default "domain"
        Column holding the domains (any spelling: URLs, ``www.``, upper case...).
    allow_ip : bool, default False
        Accept bare IP addresses.

    Returns
    -------
    DataFrame
        One row per distinct normalized domain and per distinct invalid value, in order of
        first appearance: ``domain`` (string, missing when invalid), ``input_rows`` (list of
        0-based data-row indices), ``raw`` (first spelling seen), ``status`` ("ok" or
        "invalid") and ``reason`` (see :func:`normalize_domain`).

    Raises
    ------
    ConfigError
        The file does not exist or lacks ``domain_column`` (the columns it has are listed).
    LogoFetchError
        The file cannot be parsed.
    """
    path = resolve(path)
    if not path.exists():
        raise ConfigError(f"domain list not found: {path}; pass the path of a CSV or parquet")
    try:
        if path.suffix == ".parquet":
            df = pd.read_parquet(path)
        else:
            sep = "\t" if path.suffix == ".tsv" else ","
            df = pd.read_csv(path, dtype=str, keep_default_na=False, sep=sep)
    except Exception as exc:
        raise LogoFetchError(f"cannot read domain list {path}: {exc}") from exc
    if domain_column not in df.columns:
        raise ConfigError(
            f"{path} has no column {domain_column!r}; its columns are {list(df.columns)}. "
            "Pass domain_column= with the right name."
        )
    return normalize_domains(df[domain_column].tolist(), allow_ip=allow_ip)


# -- candidates -------------------------------------------------------------------------------


@dataclass
class Candidate:
    """An icon URL found for a domain."""

    url: str
    kind: str  # link rel, "manifest", "well-known", "og:image", "twitter:image", or a provider
    declared: int = 0  # largest size from sizes= (0 unknown; 10_000 for "any")
    svg: bool = False
    tier: int = 0  # 0 icons, 1 social images (only if no icon works)


def _declared_size(sizes: str | None) -> int:
    best = 0
    for token in (sizes or "").lower().split():
        if token == "any":
            return 10_000
        m = re.fullmatch(r"(\d+)x(\d+)", token)
        if m:
            best = max(best, min(int(m.group(1)), int(m.group(2))))
    return best


def _is_svg(url: str, mime: str | None) -> bool:
    return "svg" in (mime or "").lower() or urlsplit(url).path.lower().endswith((".svg", ".svgz"))


def parse_icon_links(html: bytes | str, page_url: str) -> tuple[list[Candidate], str | None]:
    """Icon candidates declared by a homepage, and its web app manifest URL if any.

    Returns
    -------
    candidates : list of Candidate
        ``<link rel>`` icons (tier 0) and ``og:image``/``twitter:image`` (tier 1), with
        absolute URLs (``<base href>`` honoured), without duplicates.
    manifest_url : str or None
    """
    soup = BeautifulSoup(html, "lxml")
    base = base_url(soup, page_url)
    out: list[Candidate] = []
    manifest = None
    for link in soup.find_all("link", href=True):
        rels = link.get("rel") or []
        rels = {r.lower() for r in (rels.split() if isinstance(rels, str) else rels)}
        url = absolute_url(link["href"], base)
        if not url:
            continue
        if "manifest" in rels and manifest is None:
            manifest = url
        icon_rels = rels & _ICON_RELS
        if not icon_rels or (icon_rels == {"shortcut"} and "icon" not in rels):
            continue
        kind = "mask-icon" if "mask-icon" in rels else sorted(icon_rels - {"shortcut"})[0]
        declared = _declared_size(link.get("sizes"))
        if not declared and kind.startswith("apple-touch-icon"):
            declared = 180  # Apple's documented default
        out.append(Candidate(url, kind, declared, _is_svg(url, link.get("type"))))
    for attr, name in (
        ("property", "og:image"),
        ("name", "twitter:image"),
        ("property", "twitter:image"),
    ):
        for meta in soup.find_all("meta", attrs={attr: name}):
            url = absolute_url(meta.get("content"), base)
            if url:
                out.append(Candidate(url, name, 0, _is_svg(url, None), tier=1))
    return _dedupe(out), manifest


def parse_manifest_icons(data: bytes, manifest_url: str) -> list[Candidate]:
    """Icons of a web app manifest (JSON), URLs resolved against the manifest's URL."""
    try:
        doc = json.loads(data)
    except ValueError:
        return []
    icons = doc.get("icons") if isinstance(doc, dict) else None
    out = []
    for icon in icons if isinstance(icons, list) else []:
        if not isinstance(icon, dict) or not isinstance(icon.get("src"), str):
            continue
        url = absolute_url(icon["src"], manifest_url)
        if not url:
            continue
        purpose = str(icon.get("purpose") or "any")
        kind = "manifest-monochrome" if purpose.strip() == "monochrome" else "manifest"
        out.append(
            Candidate(url, kind, _declared_size(icon.get("sizes")), _is_svg(url, icon.get("type")))
        )
    return out


def _dedupe(cands: list[Candidate]) -> list[Candidate]:
    seen, out = set(), []
    for c in cands:
        if c.url not in seen:
            seen.add(c.url)
            out.append(c)
    return out


# -- decoding and judging -----------------------------------------------------------------------


@dataclass
class Decoded:
    """A candidate that downloaded and decoded to an acceptable image."""

    candidate: Candidate
    image: Image.Image  # RGBA
    data: bytes
    fmt: str  # PNG, ICO, SVG...
    http_status: int | None
    final_url: str = ""  # after redirects

    @property
    def side(self) -> float:
        """Shorter side in pixels; ``inf`` for SVG, which renders at any size."""
        return math.inf if self.fmt == "SVG" else min(self.image.size)

    def rank(self) -> tuple:
        """Sort key, larger is better: icons before social images, colour before
        monochrome, then the real size, then the format (SVG, PNG, ..., ICO) on ties."""
        mono = self.candidate.kind in _MONO_KINDS
        pref = _FORMAT_PREFERENCE.get(self.fmt, 1)
        return (self.candidate.tier == 0, not mono, self.side, pref)


def decode_logo(data: bytes, *, min_side: int = 16) -> tuple[Image.Image, str]:
    """Decode icon bytes to RGBA and reject junk.

    Returns
    -------
    (image, format)
        RGBA image (SVG rendered at :data:`SVG_RENDER_SIZE`; ICO's largest frame) and the
        original format name.

    Raises
    ------
    ImageError
        Decoding failed (see :mod:`lookalike.images`), or ``too_small`` (shorter side below
        ``min_side``) or ``blank`` (fully transparent or a single colour).
    """
    kind = images.sniff_format(data)
    if kind in ("svg", "svgz"):
        im, fmt = images.render_svg(data, size=SVG_RENDER_SIZE), "SVG"
    else:
        im = images.decode_image(data)
        fmt = im.format or "?"
        if min(im.size) < min_side:
            raise _image_error("too_small", f"{im.size[0]}x{im.size[1]} < min_side={min_side}")
        im = im.convert("RGBA")
    if is_blank(im):
        raise _image_error("blank", "fully transparent or a single colour")
    return im, fmt


def _image_error(reason: str, detail: str) -> ImageError:
    err = ImageError(f"{reason}: {detail}")
    err.reason = reason  # type: ignore[attr-defined]
    return err


def is_blank(im: Image.Image, *, tolerance: int = 6) -> bool:
    """True if an RGBA image shows nothing: fully transparent, or one flat colour.

    The image is composited over white and over black; it is blank when both results are
    flat (each channel varies by at most ``tolerance``), so a white logo on a transparent
    background is kept.
    """
    small = im.convert("RGBA")
    small.thumbnail((64, 64), Image.Resampling.BOX)
    if small.getchannel("A").getextrema()[1] == 0:
        return True
    for bg in ((255, 255, 255, 255), (0, 0, 0, 255)):
        flat = Image.alpha_composite(Image.new("RGBA", small.size, bg), small).convert("RGB")
        if any(hi - lo > tolerance for lo, hi in flat.getextrema()):
            return False
    return True


# -- fetching ---------------------------------------------------------------------------------


class _HostSlots:
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
class _Settings:
    """Everything a worker needs, shared by all domains of one run."""

    session: object
    limiter: net.HostRateLimiter
    slots: _HostSlots
    robots: RobotsCache | None
    timeout_s: float
    max_retries: int
    allow_private_hosts: bool
    max_bytes: int
    min_side: int
    prefer_side: int
    budget_s: float
    site_url_template: str
    templates: dict[str, str]  # provider -> URL template, credentials filled in
    secrets: tuple[str, ...]  # credential strings to redact from recorded URLs


class _Attempt:
    """One domain's fetches: the per-domain deadline, robots.txt and per-host limits."""

    def __init__(self, st: _Settings):
        self.st = st
        self.deadline = time.monotonic() + st.budget_s
        self.tried = 0

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def get(self, url: str, *, accept: str, site: bool, max_bytes: int | None = None):
        st = self.st
        if self.left() <= 0:
            return net.FetchResult(url, url, error="budget_exceeded", detail="no time left")
        if site and st.robots is not None:
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
                max_bytes=max_bytes or st.max_bytes,
                timeout_s=max(0.1, min(st.timeout_s, left)),
                max_retries=st.max_retries,
                allow_private_hosts=st.allow_private_hosts,
                rate_limiter=st.limiter,
                max_wait_s=max(0.0, min(30.0, left)),
            )


@dataclass
class _Outcome:
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


def _download(att: _Attempt, cand: Candidate, out: _Outcome, *, site: bool) -> Decoded | None:
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


def _keep(out: _Outcome, found: Decoded | None) -> None:
    if found is not None and (out.best is None or found.rank() > out.best.rank()):
        out.best = found


def _site_provider(att: _Attempt, domain: str) -> _Outcome:
    out = _Outcome()
    page = None
    failures: list[tuple[str, net.FetchResult]] = []
    dead_hosts: set[str] = set()
    for url in _homepage_urls(domain, att.st.site_url_template):
        host = urlsplit(url).hostname
        if host in dead_hosts:
            continue
        r = att.get(url, accept=net.ACCEPT_HTML, site=True)
        if r.ok:
            page = r
            break
        failures.append((url, r))
        if r.error in ("robots_disallowed", "budget_exceeded"):
            break
        if r.error in _DEAD_HOST_ERRORS:
            dead_hosts.add(host)
    if page is None:
        errors = [r.error for _, r in failures]
        # robots.txt on a host that answers 5xx says little; the page's own error says more
        informative = [e for e in errors if e != "robots_unavailable"] or errors
        first = next(
            (r for _, r in failures if r.error in ("robots_disallowed", "budget_exceeded")),
            next(r for _, r in failures if r.error == informative[0]),
        )
        out.fail(first.error, first.status_code, "; ".join(f"{u} {r.error}" for u, r in failures))
        return out
    cands, manifest_url = parse_icon_links(page.content, page.final_url)
    if manifest_url:
        m = att.get(manifest_url, accept=net.ACCEPT_JSON, site=True, max_bytes=1_000_000)
        if m.ok:
            cands += parse_manifest_icons(m.content, m.final_url)
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(page.final_url))
    icons = sorted(
        (c for c in _dedupe(cands) if c.tier == 0),
        key=lambda c: (c.kind in _MONO_KINDS, not c.svg, -c.declared),
    )
    well_known = [
        Candidate(origin + "/apple-touch-icon.png", "apple-touch-icon.png", 180),
        Candidate(origin + "/favicon.ico", "favicon.ico", 0),
    ]
    seen = {c.url for c in icons}
    well_known = [c for c in well_known if c.url not in seen]
    social = [c for c in _dedupe(cands) if c.tier == 1]
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


def _service_provider(att: _Attempt, domain: str, name: str) -> _Outcome:
    out = _Outcome()
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


def _safe_name(domain: str) -> str:
    name = domain.replace(":", "_")  # IPv6 (allow_ip) has colons
    if not _SAFE_NAME.match(name) or name.startswith("."):
        raise ValueError(f"unsafe file name from domain {domain!r}")
    return name


def logo_path(domain: str) -> str:
    """``logos/<domain>.png``, relative to the run folder."""
    return f"{LOGOS_DIR}/{_safe_name(domain)}.png"


def _write_logo(run_dir: Path, domain: str, best: Decoded) -> tuple[str, int, int]:
    im = best.image
    if max(im.size) > MAX_LOGO_SIDE:
        im = im.copy()
        im.thumbnail((MAX_LOGO_SIDE, MAX_LOGO_SIDE), Image.Resampling.LANCZOS)
    buf = BytesIO()
    im.save(buf, "PNG")
    png = buf.getvalue()
    name = _safe_name(domain)
    storage.atomic_write_bytes(run_dir / logo_path(domain), png)
    ext = images.FORMAT_EXTENSIONS.get(best.fmt, "bin")
    if best.fmt == "SVG" and best.data[:2] == b"\x1f\x8b":
        ext = "svgz"
    original = run_dir / LOGOS_DIR / "original"
    for stale in original.glob(f"{name}.*"):  # an earlier run may have kept another format
        if stale.stem == name and stale.suffix != f".{ext}":
            stale.unlink(missing_ok=True)
    storage.atomic_write_bytes(original / f"{name}.{ext}", best.data)
    return storage.sha256_bytes(png), im.size[0], im.size[1]


def _redact(text, secrets: tuple[str, ...]):
    if not isinstance(text, str):
        return text
    for secret in secrets:
        text = text.replace(secret, "REDACTED")
    return text


def _fetch_one(st: _Settings, run_dir: Path, row: dict, providers: tuple[str, ...]) -> dict:
    t0 = time.monotonic()
    domain = row["domain"]
    att = _Attempt(st)
    out_row = {"domain": domain, "input_rows": row["input_rows"], "raw": row["raw"]}
    details, reasons, tried = [], [], []
    best, best_provider, out_of_time = None, None, False
    for name in providers:
        if att.left() <= 0:
            out_of_time = True
            break
        if name == "site":
            outcome = _site_provider(att, domain)
        else:
            outcome = _service_provider(att, domain, name)
        tried.append(name)
        if outcome.best is not None:
            found = outcome.best
            rejected = ", ".join(f"{k} x{v}" for k, v in outcome.errors.most_common())
            details.append(
                f"{name}: {found.candidate.kind} {found.image.size[0]}x{found.image.size[1]}"
                + (f", rejected {rejected}" if rejected else "")
            )
            if best is None or found.rank() > best.rank():
                best, best_provider = found, name
            if best.side >= st.prefer_side:
                break
            continue  # a tiny icon: keep it, and ask the next provider for a bigger one
        out_of_time = out_of_time or outcome.reason == "budget_exceeded"
        reasons.append((outcome.reason or "no_usable_icon", outcome.http_status))
        details.append(
            f"{name}: {outcome.reason} ({outcome.detail})"
            if outcome.detail
            else f"{name}: {outcome.reason}"
        )
    if best is not None:
        sha, w, h = _write_logo(run_dir, domain, best)
        out_row.update(
            status="ok",
            provider=best_provider,
            url=best.final_url,
            http_status=best.http_status,
            reason=None,
            width=w,
            height=h,
            format=best.fmt,
            sha256=sha,
            kind=best.candidate.kind,
        )
    else:
        reason, status = reasons[0] if reasons else ("no_provider", None)
        if out_of_time:
            reason = "budget_exceeded"
        out_row.update(status="failed", reason=reason, http_status=status)
    out_row.update(
        candidates_tried=att.tried,
        providers_tried=",".join(tried),
        detail="; ".join(details) or None,
        elapsed_ms=int((time.monotonic() - t0) * 1000),
    )
    for key in ("url", "detail"):
        out_row[key] = _redact(out_row.get(key), st.secrets)
    return out_row


def _to_table(rows: Iterable[dict]) -> pd.DataFrame:
    df = pd.DataFrame(list(rows))
    for col, dtype in LOGO_COLUMNS.items():
        if col not in df.columns:
            df[col] = pd.NA if dtype != "object" else [[] for _ in range(len(df))]
        if dtype != "object":
            df[col] = df[col].astype(dtype)
    df["input_rows"] = [list(map(int, v)) for v in df["input_rows"]]
    return df[list(LOGO_COLUMNS)]


def _as_domain_rows(domains, *, domain_column: str, allow_ip: bool) -> list[dict]:
    if isinstance(domains, (str, Path)):
        domains = read_domains(domains, domain_column=domain_column, allow_ip=allow_ip)
    elif isinstance(domains, bytes):
        raise ConfigError("fetch_logos needs a path or a list of domains, not bytes")
    if isinstance(domains, pd.DataFrame):
        if not {"domain", "status", "input_rows", "raw"} <= set(domains.columns):
            column = domain_column if domain_column in domains.columns else "domain"
            if column not in domains.columns:
                raise ConfigError(
                    f"domains DataFrame has no {domain_column!r} column; it has "
                    f"{list(domains.columns)}. Pass domain_column= or read_domains(path)."
                )
            domains = normalize_domains(domains[column].tolist(), allow_ip=allow_ip)
    else:
        domains = normalize_domains(list(domains), allow_ip=allow_ip)
    rows = []
    for rec in domains.to_dict("records"):
        rec = {k: (None if not isinstance(v, list) and pd.isna(v) else v) for k, v in rec.items()}
        rec["input_rows"] = list(rec.get("input_rows") or [])
        rows.append(rec)
    return rows


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


def fetch_logos(
    domains,
    run_dir,
    *,
    providers: Iterable[str] = DEFAULT_PROVIDERS,
    site_url_template: str = SITE_URL,
    duckduckgo_url: str = DUCKDUCKGO_URL,
    google_url: str = GOOGLE_URL,
    logodev_url: str = LOGODEV_URL,
    brandfetch_url: str = BRANDFETCH_URL,
    clearbit_url: str = CLEARBIT_URL,
    logodev_token: str | None = None,
    brandfetch_client_id: str | None = None,
    domain_column: str = "domain",
    allow_ip: bool = False,
    max_domains: int | None = None,
    concurrency: int = 8,
    per_host_concurrency: int = 4,
    delay_s: float = 0.0,
    service_delay_s: float = 0.05,
    timeout_s: float = 10.0,
    max_retries: int = 2,
    domain_budget_s: float = 60.0,
    respect_robots: bool = True,
    min_side: int = 16,
    prefer_side: int = 48,
    max_bytes: int = 5_000_000,
    user_agent: str = DEFAULT_USER_AGENT,
    proxy: str | None = None,
    allow_private_hosts: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """Find the best logo for each domain and write it to ``run_dir/logos/``.

    Parameters
    ----------
    domains : str, Path, DataFrame or iterable of str
        A CSV/parquet file (read with :func:`read_domains`), its output, a DataFrame with a
        ``domain_column``, or raw spellings. Everything is normalized and deduplicated.
    run_dir : str or Path
        The run folder (relative paths are from the project root).
    providers : iterable of str, default ("site", "logodev", "brandfetch", "duckduckgo", "google")
        Tried in this order per domain (see the module docstring and :data:`PROVIDERS`).
        ``logodev`` and ``brandfetch`` are skipped when their credential is not set.
    site_url_template : str, default "https://{domain}/"
        The homepage; the ``http://`` twin and the ``www.`` host are tried when it fails.
    duckduckgo_url, google_url, logodev_url, brandfetch_url, clearbit_url : str
        URL templates with ``{domain}`` (and ``{token}`` / ``{client_id}`` for the APIs).
    logodev_token, brandfetch_client_id : str or None
        Credentials; ``None`` reads ``LOGODEV_TOKEN`` / ``BRANDFETCH_CLIENT_ID`` from the
        environment (so they stay out of parameter files). They are redacted from the table.
    domain_column : str, default "domain"
        The column holding the domains when ``domains`` is a file or a plain DataFrame.
    allow_ip : bool, default False
        Accept bare IP addresses as domains (otherwise they are ``invalid``).
    max_domains : int or None
        Process only the first valid domains (after deduplication).
    concurrency : int, default 8
        Domains processed in parallel (threads).
    per_host_concurrency : int, default 4
        Requests in flight to one host at a time; this is what protects the favicon services,
        which every domain asks.
    delay_s, service_delay_s : float, default 0.0, 0.05
        Minimum seconds between two requests to one site / to one service host
        (robots.txt ``Crawl-delay`` raises a site's delay).
    timeout_s, max_retries : float, int, default 10.0, 2
        Per request; see :func:`lookalike.net.fetch`.
    domain_budget_s : float, default 60.0
        Wall-time budget per domain, all providers together; each request's timeout is cut to
        what is left. A domain that runs out gets ``budget_exceeded`` unless it already has a
        logo.
    respect_robots : bool, default True
        Check the site's robots.txt before fetching its homepage, manifest or icons. The
        services are APIs called once per domain, not crawled, so robots.txt does not apply.
    min_side : int, default 16
        Images with a shorter side are rejected (``too_small``; 1x1 pixels).
    prefer_side : int, default 48
        A logo smaller than this is kept, but the next providers are still asked for a
        bigger one; the largest wins.
    max_bytes : int, default 5_000_000
        Largest download accepted (``too_large``).
    user_agent, proxy, allow_private_hosts
        See :func:`lookalike.net.make_session` and :func:`lookalike.net.fetch`. ``proxy=None``
        honours ``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY``; ``REQUESTS_CA_BUNDLE`` names the
        CA of a TLS-inspecting proxy. Private and loopback addresses are refused unless
        ``allow_private_hosts`` (checked after DNS and on every redirect).
    progress : bool, default True
        Show a tqdm progress bar.

    Returns
    -------
    DataFrame
        ``RUN/logos.parquet`` with the columns of :data:`LOGO_COLUMNS`: one row per normalized
        domain (``ok``/``failed``) and per invalid input (``invalid``). Domains that are
        already ``ok`` with their PNG on disk are not fetched again. :func:`summarize` turns
        it into the summary table (also written to ``RUN/logos_summary.csv`` and printed).

    Raises
    ------
    ConfigError
        An unknown provider, a malformed template or option, a missing domain file or column.
    """
    providers = tuple(dict.fromkeys(providers))  # each provider once, in the given order
    unknown = [p for p in providers if p not in PROVIDERS]
    if unknown or not providers:
        raise ConfigError(
            f"unknown provider(s) {unknown or list(providers)}; choose from {list(PROVIDERS)}"
        )
    for name, value in (
        ("concurrency", concurrency),
        ("per_host_concurrency", per_host_concurrency),
    ):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    if not domain_budget_s > 0:
        raise ConfigError(f"domain_budget_s must be > 0 seconds, got {domain_budget_s!r}")
    values = (site_url_template, duckduckgo_url, google_url, logodev_url, brandfetch_url)
    templates = dict(zip(DEFAULT_TEMPLATES, (*values, clearbit_url), strict=True))
    for key, template in templates.items():
        provider = key.split("_")[0]
        needs = {CREDENTIALS[provider][2]} if provider in CREDENTIALS else set()
        _check_template(key, template, needs)
    creds = {"logodev": logodev_token, "brandfetch": brandfetch_client_id}
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
            stacklevel=2,
        )
    active = tuple(p for p in providers if p == "site" or p in filled)
    if not active:
        raise ConfigError(
            f"no provider can run: skipped {', '.join(skipped)}. Set the credential "
            "(parameter or environment variable) or add 'site', 'duckduckgo' or 'google'."
        )
    secrets = tuple(s for v in creds.values() if v for s in {v, quote(v, safe="")} if len(s) >= 4)

    run_dir = resolve(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    rows = _as_domain_rows(domains, domain_column=domain_column, allow_ip=allow_ip)
    valid = [r for r in rows if r["status"] == "ok"]
    if max_domains is not None:
        keep = {r["domain"] for r in valid[:max_domains]}
        rows = [r for r in rows if r["status"] != "ok" or r["domain"] in keep]

    out_path = run_dir / LOGOS_NAME
    previous = {}
    if out_path.exists():
        old = storage.read_table(out_path, required=["domain", "status"], what="logo table")
        for rec in old.to_dict("records"):
            if rec["status"] == "ok" and isinstance(rec["domain"], str):
                previous[rec["domain"]] = rec
    results: dict[int, dict] = {}
    todo = []
    for i, row in enumerate(rows):
        if row["status"] != "ok":
            results[i] = {**row, "status": "invalid", "candidates_tried": 0, "elapsed_ms": 0}
            continue
        old = previous.get(row["domain"])
        if old is not None and (run_dir / logo_path(row["domain"])).exists():
            results[i] = {**old, "input_rows": row["input_rows"], "raw": row["raw"]}
        else:
            todo.append(i)
    cached = len(rows) - len(todo) - sum(r["status"] != "ok" for r in rows)

    session = net.make_session(user_agent=user_agent, proxy=proxy, pool_size=concurrency + 4)
    limiter = net.HostRateLimiter(delay_s)
    for template in filled.values():
        host = urlsplit(template.format(domain="example.com")).hostname
        if host:
            limiter.set_delay(host, service_delay_s)
    robots = None
    if respect_robots:
        robots = RobotsCache(
            session,
            user_agent=user_agent,
            fetch_kwargs=dict(
                timeout_s=min(timeout_s, 5.0),  # a tiny text file; a dead host shows up fast
                allow_private_hosts=allow_private_hosts,
                rate_limiter=limiter,
            ),
            limiter=limiter,
        )
    st = _Settings(
        session=session,
        limiter=limiter,
        slots=_HostSlots(per_host_concurrency),
        robots=robots,
        timeout_s=timeout_s,
        max_retries=max_retries,
        allow_private_hosts=allow_private_hosts,
        max_bytes=max_bytes,
        min_side=min_side,
        prefer_side=prefer_side,
        budget_s=domain_budget_s,
        site_url_template=site_url_template,
        templates=filled,
        secrets=secrets,
    )

    def checkpoint() -> pd.DataFrame:
        table = _to_table(results[i] for i in sorted(results))
        storage.write_table(table, out_path)
        return table

    t0 = time.monotonic()
    pool = ThreadPoolExecutor(max_workers=concurrency)
    futures = {pool.submit(_fetch_one, st, run_dir, rows[i], active): i for i in todo}
    try:
        bar = tqdm(total=len(todo), desc="logos", unit="domain", disable=not progress)
        for n, fut in enumerate(as_completed(futures), 1):
            i = futures[fut]
            try:
                results[i] = fut.result()
            except Exception as exc:  # one domain's bug must not lose the batch
                results[i] = {
                    **rows[i],
                    "status": "failed",
                    "reason": "error",
                    "detail": _redact(repr(exc), secrets),
                }
            bar.update(1)
            if n % CHECKPOINT_EVERY == 0:
                checkpoint()
        bar.close()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        session.close()
        table = checkpoint()
    seconds = time.monotonic() - t0
    summary = summarize(table)
    storage.write_table(summary, run_dir / SUMMARY_NAME)
    print(summary.to_string(index=False))
    _print_summary_line(table, cached, len(todo), seconds, skipped)
    return table


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Success rate overall and per provider, and failures by reason, from a logo table.

    Parameters
    ----------
    table : DataFrame
        The output of :func:`fetch_logos` (or ``RUN/logos.parquet``).

    Returns
    -------
    DataFrame
        Columns ``section`` (``overall``, ``provider``, ``failed``, ``invalid``), ``name``,
        ``domains``, ``ok``, ``percent``. ``overall``: all valid domains, how many have a logo.
        ``provider``: domains that reached this provider and how many it gave the logo to
        (``percent`` is its hit rate). ``failed``/``invalid``: domains (invalid: input rows)
        per reason, ``percent`` of all valid domains (invalid: of all input rows).
    """
    valid = table[table["status"] != "invalid"]
    n_valid = len(valid)
    n_ok = int((valid["status"] == "ok").sum())
    rows = [("overall", "all domains", n_valid, n_ok)]
    order: list[str] = []
    reached: Counter = Counter()
    for value in valid["providers_tried"].dropna():
        for name in str(value).split(","):
            if name:
                reached[name] += 1
                if name not in order:
                    order.append(name)
    wins = Counter(valid.loc[valid["status"] == "ok", "provider"].dropna())
    rows += [("provider", p, reached[p], wins[p]) for p in order]
    failed = valid.loc[valid["status"] == "failed", "reason"].fillna("?")
    rows += [("failed", reason, n, 0) for reason, n in Counter(failed).most_common()]
    invalid = table[table["status"] == "invalid"]
    n_rows = sum(len(r) for r in table["input_rows"])
    by_reason: Counter = Counter()
    for reason, input_rows in zip(
        invalid["reason"].fillna("?"), invalid["input_rows"], strict=True
    ):
        by_reason[reason] += len(input_rows)
    rows += [("invalid", reason, n, 0) for reason, n in by_reason.most_common()]
    df = pd.DataFrame(rows, columns=["section", "name", "domains", "ok"])
    df["percent"] = [
        _percent(ok, n)
        if sec in ("overall", "provider")
        else _percent(n, n_rows if sec == "invalid" else n_valid)
        for sec, n, ok in zip(df["section"], df["domains"], df["ok"], strict=True)
    ]
    return df


def _percent(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 1) if whole else math.nan


def _print_summary_line(
    table: pd.DataFrame, cached: int, fetched: int, seconds: float, skipped: list[str]
) -> None:
    n_invalid = int((table["status"] == "invalid").sum())
    n_valid = len(table) - n_invalid
    n_ok = int((table["status"] == "ok").sum())
    rate = 100.0 * n_ok / n_valid if n_valid else 0.0
    fails = Counter(table.loc[table["status"] == "failed", "reason"].fillna("?"))
    fail_txt = ", ".join(f"{k}: {v}" for k, v in fails.most_common()) or "none"
    wins = Counter(table.loc[table["status"] == "ok", "provider"].dropna())
    win_txt = ", ".join(f"{k} {v}" for k, v in wins.most_common()) or "none"
    speed = fetched / seconds if seconds > 0 else 0.0
    skip_txt = f"; skipped {', '.join(skipped)}" if skipped else ""
    print(
        f"logos: {n_valid} domains ({n_invalid} invalid inputs), {n_ok} ok ({rate:.1f}%, "
        f"{cached} already on disk); logos by provider: {win_txt}; failed by reason: "
        f"{fail_txt}{skip_txt}; {fetched} fetched in {seconds:.1f} s, {speed:.1f} domains/s"
    )


def to_image_manifest(logos_df: pd.DataFrame) -> pd.DataFrame:
    """Rows for :func:`lookalike.storage.merge_manifest`: source ``"logos"``, origin = domain.

    Invalid inputs become ``skipped`` rows whose origin is the raw spelling.
    """
    ok = logos_df["status"] == "ok"
    origin = logos_df["domain"].astype("string").fillna(logos_df["raw"].astype("string"))
    path = pd.Series(
        [logo_path(d) if is_ok else pd.NA for d, is_ok in zip(logos_df["domain"], ok, strict=True)],
        index=logos_df.index,
        dtype="string",
    )
    status = logos_df["status"].replace({"invalid": "skipped"})
    out = pd.DataFrame(
        {
            "image_id": logos_df["sha256"].where(ok, pd.NA),
            "path": path,
            "source": "logos",
            "origin": origin,
            "width": logos_df["width"],
            "height": logos_df["height"],
            "status": status,
            "error": logos_df["reason"],
        }
    )
    return out.astype(storage.MANIFEST_COLUMNS)
