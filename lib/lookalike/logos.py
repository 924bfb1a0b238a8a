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
    The original notebook's ``https://logo.clearbit.com/{domain}``. The free Clearbit Logo
    API shut down on 1 December 2025; it stays available (off by default) to reproduce
    historical runs.

Every candidate goes through :func:`lookalike.icons.decode_logo`, which rejects blank and
single-colour images, images smaller than ``min_side`` (1x1 pixels), HTML served as an image,
corrupt data and decompression bombs.

Where things live: the domain list is read by :mod:`lookalike.domains`, icon markup is parsed
and images judged by :mod:`lookalike.icons`, the providers ask one domain each
(:mod:`lookalike.providers`), and the HTTP set-up is :mod:`lookalike.net`'s. Each finished
domain is appended at once to the journal beside ``logos.parquet``
(:class:`lookalike.storage.Journal`), so a killed run loses nothing it had fetched.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from io import BytesIO
from pathlib import Path

import pandas as pd
from PIL import Image

from . import images, net, storage
from .domains import domain_rows
from .exceptions import ConfigError
from .icons import Decoded
from .net import DEFAULT_USER_AGENT
from .paths import PROJECT_ROOT, RunLayout
from .progress import bar as progress_bar
from .progress import summary as print_summary
from .providers import (
    BRANDFETCH_URL,
    CLEARBIT_URL,
    DEFAULT_PROVIDERS,
    DEFAULT_TEMPLATES,
    DUCKDUCKGO_URL,
    GOOGLE_URL,
    LOGODEV_URL,
    SITE_URL,
    Attempt,
    Settings,
    open_settings,
    plan_providers,
    service_provider,
    site_provider,
)

#: Logos larger than this (for example og:image banners) are downscaled when written.
MAX_LOGO_SIDE = 512
#: Fold the journal into ``logos.parquet`` after this many domains (and at the end).
CHECKPOINT_EVERY = 25

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

_SAFE_NAME = re.compile(r"^[a-z0-9._-]+$")


def _safe_name(domain: str) -> str:
    name = domain.replace(":", "_")  # IPv6 (allow_ip) has colons
    if not _SAFE_NAME.match(name) or name.startswith("."):
        raise ValueError(f"unsafe file name from domain {domain!r}")
    return name


def logo_file(run: RunLayout, domain: str) -> Path:
    """Where :func:`fetch_logos` writes the logo of ``domain``: ``RUN/logos/<domain>.png``."""
    return run.logos_dir / f"{_safe_name(domain)}.png"


def logo_path(domain: str) -> str:
    """``logos/<domain>.png``: :func:`logo_file` relative to the run folder (as in manifests)."""
    run = RunLayout(PROJECT_ROOT)  # any root: only the part inside the run is kept
    return run.relative(logo_file(run, domain))


def _write_logo(run: RunLayout, domain: str, best: Decoded) -> tuple[str, int, int]:
    im = best.image
    if max(im.size) > MAX_LOGO_SIDE:
        im = im.copy()
        im.thumbnail((MAX_LOGO_SIDE, MAX_LOGO_SIDE), Image.Resampling.LANCZOS)
    buf = BytesIO()
    im.save(buf, "PNG")
    png = buf.getvalue()
    name = _safe_name(domain)
    storage.atomic_write_bytes(logo_file(run, domain), png)
    ext = images.FORMAT_EXTENSIONS.get(best.fmt, "bin")
    if best.fmt == "SVG" and best.data[:2] == b"\x1f\x8b":
        ext = "svgz"
    original = run.logo_originals
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


def _fetch_one(st: Settings, run: RunLayout, row: dict, providers: tuple[str, ...]) -> dict:
    t0 = time.monotonic()
    domain = row["domain"]
    att = Attempt(st)
    out_row = {"domain": domain, "input_rows": row["input_rows"], "raw": row["raw"]}
    details, reasons, tried = [], [], []
    best, best_provider, out_of_time = None, None, False
    for name in providers:
        if att.left() <= 0:
            out_of_time = True
            break
        if name == "site":
            outcome = site_provider(att, domain)
        else:
            outcome = service_provider(att, domain, name)
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
        sha, w, h = _write_logo(run, domain, best)
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
        A CSV/parquet file (read with :func:`lookalike.domains.read_domains`), its output, a
        DataFrame with a ``domain_column``, or raw spellings. Everything is normalized and
        deduplicated.
    run_dir : str or Path
        The run folder (relative paths are from the project root).
    providers : iterable of str, default ("site", "logodev", "brandfetch", "duckduckgo", "google")
        Tried in this order per domain (see the module docstring and
        :data:`lookalike.providers.PROVIDERS`).
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
        See :class:`lookalike.net.HttpOptions` and :func:`lookalike.net.fetch`. ``proxy=None``
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
    net.require_int("max_domains", max_domains, allow_none=True)
    net.require_int("concurrency", concurrency)
    net.require_int("per_host_concurrency", per_host_concurrency)
    net.require_int("min_side", min_side, low=0)
    net.require_int("prefer_side", prefer_side, low=0)
    for name, value, ok in (
        ("domain_budget_s", domain_budget_s, lambda v: v > 0),
        ("service_delay_s", service_delay_s, lambda v: v >= 0),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
            sign = ">" if name == "domain_budget_s" else ">="
            raise ConfigError(f"{name} must be {sign} 0 seconds, got {value!r}")
    values = (site_url_template, duckduckgo_url, google_url, logodev_url, brandfetch_url)
    plan = plan_providers(
        providers,
        dict(zip(DEFAULT_TEMPLATES, (*values, clearbit_url), strict=True)),
        {"logodev": logodev_token, "brandfetch": brandfetch_client_id},
    )
    http = net.HttpOptions(
        user_agent=user_agent,
        proxy=proxy,
        timeout_s=timeout_s,
        max_retries=max_retries,
        max_bytes=max_bytes,
        delay_s=delay_s,
        respect_robots=respect_robots,
        allow_private_hosts=allow_private_hosts,
    )
    run = RunLayout(run_dir)
    run.root.mkdir(parents=True, exist_ok=True)
    rows = domain_rows(domains, domain_column=domain_column, allow_ip=allow_ip)
    if max_domains is not None:
        keep = {r["domain"] for r in [r for r in rows if r["status"] == "ok"][:max_domains]}
        rows = [r for r in rows if r["status"] != "ok" or r["domain"] in keep]
    journal = storage.Journal(
        run.logos, LOGO_COLUMNS, key=_row_key, what="logo table", every=CHECKPOINT_EVERY
    )
    results, todo = _reuse(rows, journal, run)
    cached = len(rows) - len(todo) - sum(r["status"] != "ok" for r in rows)
    st = open_settings(
        http,
        plan,
        concurrency=concurrency,
        per_host_concurrency=per_host_concurrency,
        service_delay_s=service_delay_s,
        min_side=min_side,
        prefer_side=prefer_side,
        budget_s=domain_budget_s,
        site_url_template=site_url_template,
    )
    t0 = time.monotonic()
    try:
        _fetch_all(st, run, rows, todo, plan.active, journal, results, concurrency, progress)
    finally:
        st.session.close()
        table = journal.write(results[i] for i in sorted(results))
    seconds = time.monotonic() - t0
    summary = summarize(table)
    storage.write_table(summary, run.logos_summary)
    print(summary.to_string(index=False))
    _print_summary_line(table, cached, len(todo), seconds, plan.skipped)
    return table


def _row_key(row) -> object:
    """A row's key in ``logos.parquet``: its domain, or its spelling for an invalid input."""
    return row.get("domain") or ("invalid", row.get("raw"))


def _reuse(rows: list[dict], journal: storage.Journal, run: RunLayout) -> tuple[dict, list]:
    """``(results, todo)``: rows known without fetching (by input position), and the rest.

    Invalid inputs are known at once; a domain already ``ok`` with its PNG on disk (from an
    earlier or interrupted run) is reused.
    """
    results: dict[int, dict] = {}
    todo = []
    for i, row in enumerate(rows):
        if row["status"] != "ok":
            results[i] = {**row, "status": "invalid", "candidates_tried": 0, "elapsed_ms": 0}
            continue
        old = journal.get(row["domain"])
        if old is not None and old.get("status") == "ok" and logo_file(run, row["domain"]).exists():
            results[i] = {**old, "input_rows": row["input_rows"], "raw": row["raw"]}
        else:
            todo.append(i)
    return results, todo


def _fetch_all(
    st: Settings,
    run: RunLayout,
    rows: list[dict],
    todo: list[int],
    providers: tuple[str, ...],
    journal: storage.Journal,
    results: dict[int, dict],
    concurrency: int,
    progress: bool,
) -> None:
    """Fetch the domains ``rows[i]`` for ``i`` in ``todo`` into ``results`` and the journal."""
    pool = ThreadPoolExecutor(max_workers=concurrency)
    futures = {pool.submit(_fetch_one, st, run, rows[i], providers): i for i in todo}
    try:
        bar = progress_bar(total=len(todo), desc="logos", unit="domain", disable=not progress)
        for fut in as_completed(futures):
            i = futures[fut]
            try:
                results[i] = fut.result()
            except Exception as exc:  # one domain's bug must not lose the batch
                results[i] = {
                    **rows[i],
                    "status": "failed",
                    "reason": "error",
                    "detail": _redact(repr(exc), st.secrets),
                }
            journal.put(results[i])  # on disk at once: a killed run loses nothing
            bar.update(1)
        bar.close()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


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
    print_summary(
        f"logos: {n_valid} domains ({n_invalid} invalid inputs), {n_ok} ok ({rate:.1f}%, "
        f"{cached} already on disk); logos by provider: {win_txt}; failed by reason: "
        f"{fail_txt}{skip_txt}; {fetched} fetched in {seconds:.1f} s, {speed:.1f} domains/s"
    )


def to_image_manifest(
    logos_df: pd.DataFrame, labels: Mapping[str, str] | pd.Series | None = None
) -> pd.DataFrame:
    """Rows for :func:`lookalike.storage.merge_manifest`: source ``"logos"``, origin = domain.

    Invalid inputs become ``skipped`` rows whose origin is the raw spelling. ``label`` is
    the domain, or its entry in ``labels`` (domain -> name, e.g. a company name:
    :func:`lookalike.domains.domain_labels`) when it has one.
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
            "label": origin.map(dict(labels)) if labels is not None else pd.NA,
        }
    )
    return storage.coerce_manifest(out)
