"""Stage 02: fetch one logo per domain of a list into the run folder.

Outputs (inside ``run_dir``):

- ``logos/<domain>.png`` — the chosen logo as RGBA PNG (alpha kept), longest side at most
  :data:`MAX_LOGO_SIDE`; the file name comes only from the normalized domain.
- ``logos/original/<domain>.<ext>`` — the bytes as downloaded (``svg``, ``ico``, ``png``...).
- ``logos.parquet`` — one row per normalized domain or invalid input (see :data:`LOGO_COLUMNS`).

Providers are tried in order until one yields an acceptable image:

``site``
    The domain's own homepage (``https://`` then ``http://``, then ``www.``): every
    ``<link rel>`` icon (icon, shortcut icon, apple-touch-icon(-precomposed), mask-icon), web
    app manifest icons, then ``/apple-touch-icon.png`` and ``/favicon.ico``. All candidates
    are downloaded and the biggest real decoded image wins (SVG ranks above any raster; a
    monochrome Safari ``mask-icon`` ranks below the rest). ``og:image``/``twitter:image`` are
    used only when no icon works, as they are usually banners rather than logos.
``duckduckgo``, ``google``
    Third-party favicon services, fetched from a URL template.
"""

from __future__ import annotations

import ipaddress
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from urllib.parse import urlsplit

import idna
import pandas as pd
from bs4 import BeautifulSoup
from PIL import Image
from tqdm.auto import tqdm

from . import images, io, net
from .exceptions import ConfigError, ImageError, LogoFetchError
from .net import DEFAULT_USER_AGENT
from .paths import resolve
from .scrape import absolute_url, base_url

LOGOS_NAME = "logos.parquet"
LOGOS_DIR = "logos"
#: Size SVG logos are rendered at (pixels, longest side).
SVG_RENDER_SIZE = 256
#: Logos larger than this (for example og:image banners) are downscaled when written.
MAX_LOGO_SIDE = 512
#: At most this many icon URLs are downloaded per domain and provider.
MAX_CANDIDATES = 10
CHECKPOINT_EVERY = 25
PROVIDERS = ("site", "duckduckgo", "google")

#: Columns of ``RUN/logos.parquet`` (``input_rows`` holds lists of ints).
LOGO_COLUMNS: dict[str, str] = {
    "domain": "string",  # normalized domain (missing for invalid input)
    "input_rows": "object",  # 0-based data-row indices of the input that map to this domain
    "status": "string",  # ok | failed | invalid
    "provider": "string",  # site | duckduckgo | google (the one that produced the logo)
    "url": "string",  # URL of the chosen icon
    "http_status": "Int64",  # HTTP status of the chosen icon (or of the last failure)
    "reason": "string",  # short code when status != ok
    "width": "Int64",  # size of the written PNG
    "height": "Int64",
    "format": "string",  # format of the original bytes: PNG, ICO, SVG, JPEG...
    "sha256": "string",  # sha256 of the written PNG (the image_id)
    "candidates_tried": "Int64",  # icon URLs downloaded for this domain
    "elapsed_ms": "Int64",
    "raw": "string",  # the input spelling (first one seen)
    "detail": "string",  # per-provider explanation of a failure
}

_ICON_RELS = frozenset(
    {"icon", "shortcut", "apple-touch-icon", "apple-touch-icon-precomposed", "mask-icon"}
)
_MONO_KINDS = frozenset({"mask-icon", "manifest-monochrome"})
_SAFE_NAME = re.compile(r"^[a-z0-9._-]+$")


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
    candidate: Candidate
    image: Image.Image  # RGBA
    data: bytes
    fmt: str  # PNG, ICO, SVG...
    http_status: int | None

    def rank(self) -> tuple:
        mono = self.candidate.kind in _MONO_KINDS
        size = float("inf") if self.fmt == "SVG" else min(self.image.size)
        return (self.candidate.tier == 0, not mono, size)


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


# -- providers --------------------------------------------------------------------------------


@dataclass
class _Ctx:
    session: object
    fetch_kwargs: dict
    min_side: int
    max_bytes: int
    site_url_template: str
    templates: dict


@dataclass
class _Outcome:
    best: Decoded | None = None
    tried: int = 0
    reason: str = ""
    http_status: int | None = None
    detail: str = ""


def _homepage_urls(domain: str, template: str) -> list[str]:
    urls = [template.format(domain=domain)]
    try:
        ipaddress.ip_address(domain)
        is_ip = True
    except ValueError:
        is_ip = False
    if not is_ip:
        urls.append(template.format(domain="www." + domain))
    out = []
    for u in urls:
        out.append(u)
        if u.startswith("https://"):
            out.append("http://" + u[len("https://") :])
    # https first for both hosts, then http
    return sorted(out, key=lambda u: (not u.startswith("https://"), out.index(u)))


def _try_candidates(ctx: _Ctx, cands: list[Candidate], out: _Outcome, errors: Counter) -> None:
    """Download candidates (SVG and biggest declared first) and keep the best in ``out``."""
    order = sorted(cands, key=lambda c: (not c.svg, -c.declared))[:MAX_CANDIDATES]
    for cand in order:
        r = net.fetch(
            ctx.session,
            cand.url,
            accept=net.ACCEPT_IMAGES,
            max_bytes=ctx.max_bytes,
            **ctx.fetch_kwargs,
        )
        out.tried += 1
        if not r.ok:
            errors[r.error] += 1
            out.http_status = r.status_code
            continue
        try:
            im, fmt = decode_logo(r.content, min_side=ctx.min_side)
        except ImageError as exc:
            errors[images.error_reason(exc)] += 1
            out.http_status = r.status_code
            continue
        found = Decoded(cand, im, r.content, fmt, r.status_code)
        if out.best is None or found.rank() > out.best.rank():
            out.best = found
        if fmt == "SVG" and cand.kind not in _MONO_KINDS:
            return  # nothing ranks above a full-colour vector icon


def _site_provider(ctx: _Ctx, domain: str) -> _Outcome:
    out = _Outcome()
    page = None
    failures = []
    dead_hosts: set[str] = set()
    for url in _homepage_urls(domain, ctx.site_url_template):
        host = urlsplit(url).hostname
        if host in dead_hosts:
            continue
        r = net.fetch(
            ctx.session, url, accept=net.ACCEPT_HTML, max_bytes=ctx.max_bytes, **ctx.fetch_kwargs
        )
        if r.ok:
            page = r
            break
        failures.append((url, r))
        if r.error in ("dns_error", "timeout", "private_address"):
            dead_hosts.add(host)
    if page is None:
        first = failures[0][1]
        out.reason, out.http_status = first.error, first.status_code
        out.detail = "; ".join(f"{u}: {r.error}" for u, r in failures)
        return out
    cands, manifest_url = parse_icon_links(page.content, page.final_url)
    if manifest_url:
        m = net.fetch(
            ctx.session,
            manifest_url,
            accept=net.ACCEPT_JSON,
            max_bytes=1_000_000,
            **ctx.fetch_kwargs,
        )
        if m.ok:
            cands += parse_manifest_icons(m.content, m.final_url)
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(page.final_url))
    cands += [
        Candidate(origin + "/apple-touch-icon.png", "well-known", 180),
        Candidate(origin + "/favicon.ico", "well-known", 0),
    ]
    cands = _dedupe(cands)
    errors: Counter = Counter()
    for tier in (0, 1):
        _try_candidates(ctx, [c for c in cands if c.tier == tier], out, errors)
        if out.best is not None:
            return out
    out.reason = "no_usable_icon"
    out.detail = f"{out.tried} candidates: " + ", ".join(
        f"{k} x{v}" for k, v in errors.most_common()
    )
    return out


def _template_provider(ctx: _Ctx, domain: str, name: str) -> _Outcome:
    out = _Outcome()
    url = ctx.templates[name].format(domain=domain)
    errors: Counter = Counter()
    _try_candidates(ctx, [Candidate(url, name)], out, errors)
    if out.best is None:
        out.reason = next(iter(errors), "no_usable_icon")
        out.detail = f"{url}: {out.reason}"
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
    io.atomic_write_bytes(run_dir / logo_path(domain), png)
    ext = images.FORMAT_EXTENSIONS.get(best.fmt, "bin")
    if best.fmt == "SVG" and best.data[:2] == b"\x1f\x8b":
        ext = "svgz"
    original = run_dir / LOGOS_DIR / "original"
    for stale in original.glob(f"{name}.*"):  # an earlier run may have kept another format
        if stale.stem == name and stale.suffix != f".{ext}":
            stale.unlink(missing_ok=True)
    io.atomic_write_bytes(original / f"{name}.{ext}", best.data)
    return io.sha256_bytes(png), im.size[0], im.size[1]


def _fetch_one(ctx: _Ctx, run_dir: Path, row: dict, providers: tuple[str, ...], stats) -> dict:
    t0 = time.monotonic()
    domain = row["domain"]
    out_row = {
        "domain": domain,
        "input_rows": row["input_rows"],
        "raw": row["raw"],
        "status": "failed",
        "candidates_tried": 0,
    }
    details, first_reason, last_status = [], None, None
    for name in providers:
        outcome = (
            _site_provider(ctx, domain) if name == "site" else _template_provider(ctx, domain, name)
        )
        out_row["candidates_tried"] += outcome.tried
        stats.add(name, outcome.best is not None)
        if outcome.best is not None:
            best = outcome.best
            sha, w, h = _write_logo(run_dir, domain, best)
            out_row.update(
                status="ok",
                provider=name,
                url=best.candidate.url,
                http_status=best.http_status,
                reason=None,
                width=w,
                height=h,
                format=best.fmt,
                sha256=sha,
                detail="; ".join(details) or None,
            )
            break
        details.append(
            f"{name}: {outcome.reason} ({outcome.detail})"
            if outcome.detail
            else f"{name}: {outcome.reason}"
        )
        first_reason = first_reason or outcome.reason
        last_status = outcome.http_status if outcome.http_status is not None else last_status
    else:
        out_row.update(
            reason=first_reason or "no_provider", http_status=last_status, detail="; ".join(details)
        )
    out_row["elapsed_ms"] = int((time.monotonic() - t0) * 1000)
    return out_row


class _ProviderStats:
    def __init__(self):
        self.tried: Counter = Counter()
        self.ok: Counter = Counter()
        self._lock = threading.Lock()

    def add(self, name: str, ok: bool) -> None:
        with self._lock:
            self.tried[name] += 1
            self.ok[name] += bool(ok)


def _to_table(rows: Iterable[dict]) -> pd.DataFrame:
    df = pd.DataFrame(list(rows))
    for col, dtype in LOGO_COLUMNS.items():
        if col not in df.columns:
            df[col] = pd.NA if dtype != "object" else [[] for _ in range(len(df))]
        if dtype != "object":
            df[col] = df[col].astype(dtype)
    df["input_rows"] = [list(map(int, v)) for v in df["input_rows"]]
    return df[list(LOGO_COLUMNS)]


def _as_domain_rows(domains) -> list[dict]:
    if isinstance(domains, (str, bytes, Path)):
        raise ConfigError(
            "fetch_logos needs domains, not a single string/path; pass read_domains(path) "
            "or a list of domains"
        )
    if isinstance(domains, pd.DataFrame):
        if "domain" not in domains.columns:
            raise ConfigError(
                f"domains DataFrame has no 'domain' column; it has {list(domains.columns)}"
            )
        if not {"status", "input_rows", "raw"} <= set(domains.columns):
            domains = normalize_domains(domains["domain"].tolist(), allow_ip=False)
    else:
        domains = normalize_domains(list(domains), allow_ip=False)
    rows = []
    for rec in domains.to_dict("records"):
        rec = {k: (None if not isinstance(v, list) and pd.isna(v) else v) for k, v in rec.items()}
        rec["input_rows"] = list(rec.get("input_rows") or [])
        rows.append(rec)
    return rows


def fetch_logos(
    domains,
    run_dir,
    *,
    providers: Iterable[str] = PROVIDERS,
    site_url_template: str = "https://{domain}/",
    duckduckgo_url: str = "https://icons.duckduckgo.com/ip3/{domain}.ico",
    google_url: str = "https://www.google.com/s2/favicons?domain={domain}&sz=256",
    max_domains: int | None = None,
    concurrency: int = 8,
    timeout_s: float = 10.0,
    max_retries: int = 2,
    delay_s: float = 0.0,
    min_side: int = 16,
    max_bytes: int = 5_000_000,
    user_agent: str = DEFAULT_USER_AGENT,
    proxy: str | None = None,
    allow_private_hosts: bool = False,
) -> pd.DataFrame:
    """Fetch one logo per domain into ``run_dir/logos/``.

    Parameters
    ----------
    domains : DataFrame or iterable of str
        The output of :func:`read_domains`, or raw domain spellings (normalized and
        deduplicated here).
    run_dir : str or Path
        The run folder (relative paths are from the project root).
    providers : iterable of str, default ("site", "duckduckgo", "google")
        Tried in this order per domain; the first one that yields a usable image wins.
    site_url_template, duckduckgo_url, google_url : str
        URL templates with ``{domain}``. The site provider also tries ``http://`` and the
        ``www.`` host when the first homepage URL fails.
    max_domains : int or None
        Process only the first valid domains (after deduplication).
    concurrency : int, default 8
        Domains processed in parallel (threads).
    timeout_s, max_retries, delay_s, max_bytes, user_agent, proxy, allow_private_hosts
        See :func:`lookalike.net.fetch`; ``delay_s`` is the minimum time between requests to
        one host (the favicon services are hosts too).
    min_side : int, default 16
        Icons with a shorter side are rejected (``too_small``); so are blank images.

    Returns
    -------
    DataFrame
        ``RUN/logos.parquet`` with the columns of :data:`LOGO_COLUMNS`: one row per
        normalized domain (``ok``/``failed``) and per invalid input (``invalid``). Domains that
        are already ``ok`` with their PNG on disk are not fetched again.
    """
    providers = tuple(providers)
    unknown = [p for p in providers if p not in PROVIDERS]
    if unknown or not providers:
        raise ConfigError(f"unknown provider(s) {unknown or providers}; choose from {PROVIDERS}")
    if concurrency < 1:
        raise ConfigError(f"concurrency must be >= 1, got {concurrency!r}")
    if "{domain}" not in site_url_template:
        raise ConfigError(
            f"site_url_template {site_url_template!r} has no '{{domain}}'; use 'https://{{domain}}/'"
        )
    run_dir = resolve(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    rows = _as_domain_rows(domains)
    valid = [r for r in rows if r["status"] == "ok"]
    if max_domains is not None:
        keep = {r["domain"] for r in valid[:max_domains]}
        rows = [r for r in rows if r["status"] != "ok" or r["domain"] in keep]
        valid = [r for r in rows if r["status"] == "ok"]

    out_path = run_dir / LOGOS_NAME
    previous = {}
    if out_path.exists():
        old = io.read_table(out_path, required=["domain", "status"], what="logo table")
        for rec in old.to_dict("records"):
            if rec["status"] == "ok" and isinstance(rec["domain"], str):
                previous[rec["domain"]] = rec
    results: dict[int, dict] = {}
    todo = []
    cached = 0
    for i, row in enumerate(rows):
        if row["status"] != "ok":
            results[i] = {**row, "status": "invalid", "candidates_tried": 0, "elapsed_ms": 0}
            continue
        old = previous.get(row["domain"])
        if old is not None and (run_dir / logo_path(row["domain"])).exists():
            results[i] = {**old, "input_rows": row["input_rows"], "raw": row["raw"]}
            cached += 1
        else:
            todo.append(i)

    session = net.make_session(user_agent=user_agent, proxy=proxy, pool_size=concurrency + 2)
    ctx = _Ctx(
        session=session,
        fetch_kwargs=dict(
            timeout_s=timeout_s,
            max_retries=max_retries,
            allow_private_hosts=allow_private_hosts,
            rate_limiter=net.HostRateLimiter(delay_s),
        ),
        min_side=min_side,
        max_bytes=max_bytes,
        site_url_template=site_url_template,
        templates={"duckduckgo": duckduckgo_url, "google": google_url},
    )
    stats = _ProviderStats()

    def checkpoint() -> pd.DataFrame:
        table = _to_table(results[i] for i in sorted(results))
        io.write_table(table, out_path)
        return table

    t0 = time.monotonic()
    pool = ThreadPoolExecutor(max_workers=concurrency)
    futures = {pool.submit(_fetch_one, ctx, run_dir, rows[i], providers, stats): i for i in todo}
    try:
        bar = tqdm(total=len(todo), desc="logos", unit="domain")
        for n, fut in enumerate(as_completed(futures), 1):
            i = futures[fut]
            try:
                results[i] = fut.result()
            except Exception as exc:  # one domain's bug must not lose the batch
                results[i] = {**rows[i], "status": "failed", "reason": "error", "detail": repr(exc)}
            bar.update(1)
            if n % CHECKPOINT_EVERY == 0:
                checkpoint()
        bar.close()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        session.close()
        table = checkpoint()
    _print_summary(table, stats, cached, len(todo), time.monotonic() - t0)
    return table


def _print_summary(
    table: pd.DataFrame, stats: _ProviderStats, cached: int, fetched: int, seconds: float
) -> None:
    n_invalid = int((table["status"] == "invalid").sum())
    n_valid = len(table) - n_invalid
    n_ok = int((table["status"] == "ok").sum())
    rate = 100.0 * n_ok / n_valid if n_valid else 0.0
    per = ", ".join(
        f"{p} {stats.ok[p]}/{stats.tried[p]} ({100.0 * stats.ok[p] / stats.tried[p]:.0f}%)"
        for p in stats.tried
    )
    fails = Counter(table.loc[table["status"] == "failed", "reason"].fillna("?"))
    fail_txt = ", ".join(f"{k}: {v}" for k, v in fails.most_common()) or "none"
    speed = fetched / seconds if seconds > 0 else 0.0
    print(
        f"logos: {n_valid} domains ({n_invalid} invalid inputs), {n_ok} ok ({rate:.1f}%, "
        f"{cached} already on disk); per provider: {per or 'none tried'}; "
        f"failed by reason: {fail_txt}; {seconds:.1f} s, {speed:.1f} domains/s"
    )


def to_image_manifest(logos_df: pd.DataFrame) -> pd.DataFrame:
    """Rows for :func:`lookalike.io.merge_manifest`: source ``"logos"``, origin = domain.

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
    return out.astype(io.MANIFEST_COLUMNS)
