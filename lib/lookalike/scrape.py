"""Stage 01: walk a paginated web catalog and download its images into the run folder.

Outputs (inside ``run_dir``):

- ``images/<sha256>.<ext>`` — each distinct image once; ``ext`` comes from the decoded format.
- ``scrape.parquet`` — one row per image URL (see :data:`SCRAPE_COLUMNS`).
- ``scrape_pages.parquet`` — one row per listing or product page read (see
  :data:`PAGE_COLUMNS`), with what was found on it, so a re-run does not fetch it again.

Both tables grow as the run goes: every finished row is appended at once to a small journal
(``.scrape.parquet.journal``, JSON lines; see :class:`lookalike.storage.Journal`) that is
folded into the parquet file every :data:`CHECKPOINT_EVERY` rows and at the end. Kill the
run at any point and run it again: it finishes with no duplicate rows, no lost images, and no
request for what it already has.

The pages are parsed by :mod:`lookalike.catalog`; the HTTP set-up (options, session,
robots.txt, per-host delay) is :mod:`lookalike.net`'s.

Typical use::

    df = scrape_catalog("https://shop.example/shoes/", "runs/shoes", max_pages=5)
    display(df.attrs["summary"])
    storage.merge_manifest("runs/shoes", to_image_manifest(df))
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import pandas as pd
from tqdm.auto import tqdm

from . import images, net, progress, storage
from .catalog import find_json_next, parse_json_listing, parse_listing, parse_product
from .exceptions import ConfigError, ImageError, ScrapeError
from .net import DEFAULT_USER_AGENT, normalize_url
from .paths import RunLayout
from .robots import RobotsCache

#: Fold the journals into the parquet files after this many rows (and at the end).
CHECKPOINT_EVERY = 25
#: ... or when this many seconds have passed since the last fold.
CHECKPOINT_S = 10.0
#: Bump when what the parsers extract changes: cached pages are then read again.
PARSER_VERSION = 3  # 3: placeholders get a row; colour words are no placeholders

#: Columns of ``RUN/scrape.parquet`` and their pandas dtypes.
SCRAPE_COLUMNS: dict[str, str] = {
    "url": "string",  # absolute image URL (fragment removed); one row per URL
    "page_url": "string",  # listing or product page where the URL was found
    "page": "Int64",  # listing page number, from 1
    "alt": "string",  # the <img alt> text ("" if none)
    "status": "string",  # ok | skipped | failed
    "reason": "string",  # short code when status != ok, e.g. too_small, placeholder, timeout
    "http_status": "Int64",  # final HTTP status (missing if no answer)
    "sha256": "string",  # hex sha256 of the stored bytes (the image_id)
    "path": "string",  # images/<sha256>.<ext>, relative to the run dir
    "width": "Int64",  # decoded size in pixels
    "height": "Int64",
    "bytes": "Int64",  # size of the downloaded body
    "fetched_at": "datetime64[ns, UTC]",
}

#: Columns of ``RUN/scrape_pages.parquet`` ("object" columns hold lists of strings).
PAGE_COLUMNS: dict[str, str] = {
    "url": "string",  # the page URL as requested; one row per URL
    "final_url": "string",  # after redirects (relative links resolve against it)
    "kind": "string",  # listing | product
    "page": "Int64",  # listing page number (for a product page: its listing page)
    "status": "string",  # ok | skipped | failed
    "reason": "string",  # short code when status != ok
    "http_status": "Int64",
    "n_images": "Int64",  # image URLs found on the page, placeholders not counted
    "next_url": "string",  # the next listing page it points to (rel=next, JSON, Link header)
    "image_urls": "object",  # the image URLs found, in page order
    "image_alts": "object",  # their alt texts
    "placeholder_urls": "object",  # those that only show a placeholder (never fetched)
    "item_links": "object",  # product page links of the catalog items (listing pages)
    "parse_key": "string",  # hash of the parsing options; another key reads the page again
    "fetched_at": "datetime64[ns, UTC]",
}

# Content types that are surely not an image: refused before the body is downloaded.
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_NOT_IMAGE_TYPES = _HTML_TYPES + (
    "text/plain",
    "text/css",
    "text/javascript",
    "application/javascript",
    "application/json",
    "application/problem+json",
)

_RASTER_KINDS = frozenset(f.lower() for f in images.DECODE_FORMATS)


def _looks_like_image(head: bytes) -> bool:
    """Whether the first bytes are a raster image (:func:`lookalike.images.sniff_format`)."""
    return images.sniff_format(head) in _RASTER_KINDS


# -- the summary ----------------------------------------------------------------------------


def summarize(
    scrape_df: pd.DataFrame,
    seconds: float | None = None,
    *,
    pages_visited: int | None = None,
    pages_cached: int | None = None,
    fetched: int | None = None,
    cached: int | None = None,
) -> pd.DataFrame:
    """The end-of-stage summary table of a scrape.

    Parameters
    ----------
    scrape_df : DataFrame
        Rows of ``scrape.parquet`` (the images found by the run).
    seconds : float or None
        Wall time of the run; needed for ``images/s``.
    pages_visited : int or None
        Listing and product pages read (default: distinct ``page_url`` values).
    pages_cached : int or None
        How many of them came from an earlier run's ``scrape_pages.parquet``.
    fetched : int or None
        Image URLs requested over the network this run (default: every row); the
        ``images/s`` rate counts these.
    cached : int or None
        Rows kept from an earlier run into the same folder without a request (stored images
        and deliberate skips).

    Returns
    -------
    DataFrame
        Index ``metric``, one column ``value``: pages visited (and how many came from an
        earlier run), images found, downloaded (``ok``), kept from an earlier run (not
        requested again), skipped and failed (total, then one row per reason, most frequent
        first), success rate in percent (``ok`` / found), seconds, images/s (requested this
        run / seconds).
    """
    t = scrape_df
    n = len(t)
    n_ok = int((t["status"] == "ok").sum())
    rows: list[tuple[str, float | int]] = [
        ("pages visited", pages_visited if pages_visited is not None else t["page_url"].nunique()),
    ]
    if pages_cached is not None:
        rows.append(("  pages read from an earlier run", pages_cached))
    rows += [
        ("images found", n),
        ("downloaded", n_ok),
    ]
    if cached is not None:
        rows.append(("  kept from an earlier run", cached))
    for status in ("skipped", "failed"):
        reasons = Counter(t.loc[t["status"] == status, "reason"].fillna("?"))
        rows.append((status, sum(reasons.values())))
        rows += [(f"  {status}: {reason}", k) for reason, k in reasons.most_common()]
    rows.append(("success rate %", round(100.0 * n_ok / n, 1) if n else 0.0))
    fetched = n if fetched is None else fetched
    if seconds is not None:
        rows.append(("seconds", round(seconds, 2)))
        rows.append(("images/s", round(fetched / seconds, 2) if seconds > 0 else 0.0))
    values = pd.Series([v for _, v in rows], dtype=object)  # counts stay ints
    return pd.DataFrame({"metric": [m for m, _ in rows], "value": values}).set_index("metric")


def _summary_line(summary: pd.DataFrame) -> str:
    v = summary["value"]

    def by_reason(status: str) -> str:
        parts = [f"{m.split(': ', 1)[1]}: {v[m]}" for m in v.index if m.startswith(f"  {status}: ")]
        return f"{v[status]}" + (f" ({', '.join(parts)})" if parts else "")

    kept = "  kept from an earlier run"
    cached = f" ({v[kept]} kept from an earlier run)" if kept in v else ""
    return (
        f"scrape: {v['pages visited']} pages, {v['images found']} images found, "
        f"{v['downloaded']} downloaded{cached}, skipped {by_reason('skipped')}, "
        f"failed {by_reason('failed')}, success {v['success rate %']:.1f}%, "
        f"{v.get('seconds', 0.0):.1f} s, {v.get('images/s', 0.0):.1f} images/s"
    )


# -- the stage ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScrapeOptions:
    """What one scrape crawls and keeps; ``http`` is how it talks HTTP.

    The attributes are the parameters of :func:`scrape_catalog` of the same names.

    Raises
    ------
    ConfigError
        Inconsistent options (the message names the fix).
    """

    http: net.HttpOptions = field(default_factory=net.HttpOptions)
    page_url_template: str | None = None
    max_pages: int = 20
    item_selector: str | None = None
    image_selector: str | None = None
    next_selector: str | None = None
    follow_product_pages: bool = False
    max_images: int | None = None
    concurrency: int = 4
    min_side: int = 32
    json_mode: bool = False
    image_json_path: str | None = None
    next_json_path: str | None = None

    def __post_init__(self) -> None:
        template = self.page_url_template
        net.require_int("max_pages", self.max_pages)
        net.require_int("concurrency", self.concurrency)
        net.require_int("min_side", self.min_side, low=0)
        net.require_int("max_images", self.max_images, allow_none=True)
        for ok, msg in (
            (
                template is None or "{page}" in template,
                f"page_url_template {template!r} has no '{{page}}' placeholder; "
                "use e.g. 'https://shop.example/shoes/?page={page}'",
            ),
            (
                not self.json_mode or bool(self.image_json_path),
                "json_mode=True needs image_json_path, e.g. 'data.products[*].images.main.url'",
            ),
            (
                not (self.json_mode and self.follow_product_pages),
                "follow_product_pages works on HTML listings; with json_mode=True point "
                "image_json_path at the gallery images instead, e.g. "
                "'data.products[*].images.gallery'",
            ),
        ):
            if not ok:
                raise ConfigError(msg)

    def parse_key(self) -> str:
        """16 hex digits naming the parsing options; a page read with another key is read again."""
        key = {k: getattr(self, k) for k in _PARSE_OPTIONS}
        key["version"] = PARSER_VERSION
        return storage.sha256_bytes(json.dumps(key, sort_keys=True).encode())[:16]


def _row_done(row: dict | None, run: RunLayout, min_side: int) -> bool:
    """Whether an earlier row is final: an ``ok`` image still on disk, or a deliberate skip."""
    if not row:
        return False
    if row.get("status") == "ok":
        return bool(row.get("path")) and run.image_path(row["path"]).exists()
    if row.get("status") == "skipped":
        if row.get("reason") == "unsupported_format":
            return True
        if row.get("reason") == "too_small":
            w, h = row.get("width"), row.get("height")
            return w is not None and h is not None and min(w, h) < min_side
    return False  # failed rows (maybe transient) and robots skips are tried again


def _journal(path, columns: dict[str, str], *, what: str) -> storage.Journal:
    return storage.Journal(
        path, columns, key="url", what=what, every=CHECKPOINT_EVERY, seconds=CHECKPOINT_S
    )


class _Scrape:
    """The state of one scrape: tables, worker pool, politeness, progress."""

    def __init__(self, run: RunLayout, opts: ScrapeOptions):
        self.run, self.o = run, opts
        self.images = _journal(run.scrape, SCRAPE_COLUMNS, what="scrape manifest")
        self.pages = _journal(run.scrape_pages, PAGE_COLUMNS, what="scrape page table")
        self.parse_key = opts.parse_key()
        self.session = net.build_session(opts.http, pool_size=opts.concurrency + 2)
        self.limiter = net.HostRateLimiter(opts.http.delay_s)
        self.fetch_kwargs = dict(opts.http.fetch_args(), rate_limiter=self.limiter)
        self.robots = RobotsCache(self.session, opts.http, limiter=self.limiter)
        for tmp in run.images_dir.glob(".*.tmp"):  # left by a killed atomic write
            tmp.unlink(missing_ok=True)
        self.pool = ThreadPoolExecutor(opts.concurrency, thread_name_prefix="scrape")
        self.found: dict[str, dict] = {}  # image URL -> where it was found, discovery order
        self.futures: list[Future] = []
        self.stats: Counter = Counter()
        self._stats_lock = threading.Lock()
        self.bar = progress.bar(total=0, desc="images", unit="img")

    def count(self, key: str, n: int = 1) -> None:
        with self._stats_lock:
            self.stats[key] += n

    # -- pages --------------------------------------------------------------------------

    def get_page(self, url: str, kind: str, page: int) -> dict:
        """The page's row in ``scrape_pages.parquet``: from an earlier run, or fetched now."""
        old = self.pages.get(url)
        if old and old.get("status") == "ok" and old.get("parse_key") == self.parse_key:
            self.count("pages_cached")
            return old
        self.count("pages_fetched")
        row = {
            "url": url,
            "final_url": url,
            "kind": kind,
            "page": page,
            "parse_key": self.parse_key,
            "fetched_at": pd.Timestamp.now(tz="UTC"),
        }
        try:
            row.update(self._read_page(url, kind))
        except Exception as exc:  # a bug on one page must not end the run
            row.update(status="failed", reason="error")
            tqdm.write(f"scrape: {url}: unexpected {type(exc).__name__}: {exc}")
        row["n_images"] = len(row.get("image_urls") or []) - len(row.get("placeholder_urls") or [])
        self.pages.put(row)
        return row

    def _read_page(self, url: str, kind: str) -> dict:
        o = self.o
        allowed, reason = self.robots.allowed(url)
        if not allowed:
            return {"status": "skipped", "reason": reason}
        accept = net.ACCEPT_JSON if o.json_mode else net.ACCEPT_HTML
        r = net.fetch(self.session, url, accept=accept, **self.fetch_kwargs)
        out = {"final_url": r.final_url, "http_status": r.status_code}
        if not r.ok:
            return dict(out, status="failed", reason=r.error, detail=r.detail)
        next_url = None
        if o.json_mode:
            try:
                data = json.loads(r.content)
            except ValueError:
                return dict(out, status="failed", reason="bad_json")
            refs = parse_json_listing(data, r.final_url, image_json_path=o.image_json_path)
            next_url = find_json_next(data, r.final_url, next_json_path=o.next_json_path)
            links: list[str] = []
        elif kind == "product":
            refs = parse_product(r.content, r.final_url, image_selector=o.image_selector)
            links = []
        else:
            listing = parse_listing(
                r.content,
                r.final_url,
                item_selector=o.item_selector,
                image_selector=None if o.follow_product_pages else o.image_selector,
                next_selector=o.next_selector,
            )
            refs, links, next_url = listing.images, listing.item_links, listing.next_url
            if not o.item_selector and self.stats["pages_fetched"] == 1:
                found = listing.item_selector or "none: images outside header/nav/footer"
                tqdm.write(f"scrape: product cards found with {found!r} (item_selector=None)")
        return dict(
            out,
            status="ok",
            reason=None,
            next_url=next_url or r.link("next"),
            image_urls=[normalize_url(x.url) or x.url for x in refs],
            image_alts=[x.alt for x in refs],
            placeholder_urls=[normalize_url(x.url) or x.url for x in refs if x.placeholder],
            item_links=[normalize_url(x) or x for x in links],
        )

    # -- images -------------------------------------------------------------------------

    def full(self) -> bool:
        n = len(self.found) - self.stats["placeholders"]  # placeholders are not images
        return self.o.max_images is not None and n >= self.o.max_images

    def add(self, row: dict, page: int) -> int:
        """Queue the images of a page row that are new; return how many were new."""
        new = 0
        placeholders = set(row.get("placeholder_urls") or ())
        for url, alt in zip(row["image_urls"], row["image_alts"], strict=False):
            if self.full():
                break
            if url in self.found:
                continue
            new += 1
            meta = {"page_url": row["final_url"], "page": page, "alt": alt}
            self.found[url] = meta
            if url in placeholders:  # recorded, never fetched
                self._placeholder(url, meta)
                continue
            if _row_done(self.images.get(url), self.run, self.o.min_side):
                self.count("cached")
                continue
            self.count("fetched")
            self.bar.total += 1  # shown at the next update
            self.futures.append(self.pool.submit(self._download, url, meta))
        return new

    def _placeholder(self, url: str, meta: dict) -> None:
        self.count("placeholders")
        old = self.images.get(url)
        if old and old.get("reason") == "placeholder":
            self.count("cached")
            return
        row = {"url": url, **meta, "status": "skipped", "reason": "placeholder"}
        self.images.put(dict(row, fetched_at=pd.Timestamp.now(tz="UTC")))

    def _download(self, url: str, meta: dict) -> None:
        try:
            row = self._download_one(url, meta)
        except Exception as exc:  # a bug for one item must not lose the whole run
            row = {"url": url, **meta, "status": "failed", "reason": "error"}
            tqdm.write(f"scrape: {url}: unexpected {type(exc).__name__}: {exc}")
        row.setdefault("fetched_at", pd.Timestamp.now(tz="UTC"))
        self.images.put(row)
        self.bar.update(1)

    def _download_one(self, url: str, meta: dict) -> dict:
        o = self.o
        row = {"url": url, **meta, "fetched_at": pd.Timestamp.now(tz="UTC")}
        allowed, reason = self.robots.allowed(url)
        if not allowed:
            return dict(row, status="skipped", reason=reason)
        r = net.fetch(
            self.session,
            url,
            accept=net.ACCEPT_IMAGES,
            reject_types=_NOT_IMAGE_TYPES,
            sniff=_looks_like_image,  # the bytes win over a wrong Content-Type
            **self.fetch_kwargs,
        )
        row.update(http_status=r.status_code, bytes=len(r.content) if r.ok else None)
        if not r.ok:
            reason = r.error
            if reason == "content_type" and r.mime_type in _HTML_TYPES:
                reason = "html"  # an error or login page where the image should be
            return dict(row, status="failed", reason=reason)
        try:
            im = images.decode_image(r.content)
        except ImageError as exc:
            reason = images.error_reason(exc)
            status = "skipped" if reason == "unsupported_format" else "failed"
            return dict(row, status=status, reason=reason)
        width, height = im.size
        row.update(width=width, height=height)
        if min(width, height) < o.min_side:
            return dict(row, status="skipped", reason="too_small")
        sha = storage.sha256_bytes(r.content)
        path = self.run.images_dir / f"{sha}.{images.FORMAT_EXTENSIONS[im.format]}"
        if not path.exists():  # same bytes under another URL: stored once
            storage.atomic_write_bytes(path, r.content)
        return dict(row, status="ok", reason=None, sha256=sha, path=self.run.relative(path))

    # -- the crawl ----------------------------------------------------------------------

    def crawl(self, catalog_url: str) -> None:
        """Read listing pages in order (this thread); images download in the pool meanwhile."""
        o = self.o
        url: str | None = normalize_url(catalog_url) or catalog_url
        seen_pages: set[str] = set()
        seen_items: set[str] = set()
        page = 0
        bar = progress.bar(total=o.max_pages, desc="pages", unit="page", leave=False)
        try:
            while url and page < o.max_pages and not self.full():
                page += 1
                seen_pages.add(url)
                row = self.get_page(url, "listing", page)
                bar.update(1)
                if row["status"] != "ok":
                    if page == 1:
                        raise ScrapeError(_first_page_message(url, row))
                    tqdm.write(f"scrape: stopping at page {page} ({url}): {row['reason']}")
                    break
                if o.follow_product_pages:
                    if page == 1 and not row["item_links"]:
                        raise ScrapeError(
                            f"no product items with links found on {url}; set item_selector "
                            "to the CSS selector of one product card, e.g. 'div.product'"
                        )
                    links = [x for x in row["item_links"] if x not in seen_items]
                    seen_items.update(links)
                    new = len(links) + self._products(links, page)
                else:
                    new = self.add(row, page)
                if o.page_url_template is not None:
                    if new == 0 and page > 1:
                        break  # past the last page: the site repeats or returns an empty page
                    url = o.page_url_template.format(page=page + 1)
                else:
                    url = row["next_url"]
                url = url and (normalize_url(url) or url)
                if url in seen_pages:
                    break
        finally:
            bar.close()

    def _products(self, links: list[str], page: int) -> int:
        """Read product pages in the pool; queue their images in listing order."""
        futures = [self.pool.submit(self.get_page, link, "product", page) for link in links]
        new = 0
        for link, fut in zip(links, futures, strict=True):
            row = fut.result()
            if row["status"] == "ok":
                new += self.add(row, page)
            else:
                tqdm.write(f"scrape: product page {link}: {row['reason']}")
        return new

    def wait(self) -> None:
        for fut in self.futures:
            fut.result()

    def close(self) -> pd.DataFrame:
        """Stop the workers (queued downloads are dropped), write both tables, free the pool."""
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.bar.close()
        self.session.close()
        self.pages.flush()
        return self.images.flush(order=self.found)


_PARSE_OPTIONS = (
    "item_selector",
    "image_selector",
    "next_selector",
    "follow_product_pages",
    "json_mode",
    "image_json_path",
    "next_json_path",
)


def _first_page_message(url: str, row: dict) -> str:
    hint = {
        "private_address": " (a local or test server needs allow_private_hosts=True)",
        "robots_disallowed": " (robots.txt forbids it; scrape only with the site's consent, "
        "then respect_robots=False)",
        "bad_json": " (json_mode=True expects the listing URL to return JSON)",
    }.get(row["reason"], "")
    detail = f" {row['detail']}" if row.get("detail") else ""
    return f"cannot read the first catalog page {url}: {row['reason']}{detail}{hint}"


def scrape_catalog(
    catalog_url: str,
    run_dir,
    *,
    page_url_template: str | None = None,
    max_pages: int = 20,
    item_selector: str | None = None,
    image_selector: str | None = None,
    next_selector: str | None = None,
    follow_product_pages: bool = False,
    max_images: int | None = None,
    concurrency: int = 4,
    delay_s: float = 0.0,
    timeout_s: float = 20.0,
    max_retries: int = 3,
    respect_robots: bool = True,
    user_agent: str = DEFAULT_USER_AGENT,
    min_side: int = 32,
    max_bytes: int = 20_000_000,
    json_mode: bool = False,
    image_json_path: str | None = None,
    next_json_path: str | None = None,
    proxy: str | None = None,
    allow_private_hosts: bool = False,
) -> pd.DataFrame:
    """Scrape the images of a paginated catalog into ``run_dir``.

    Parameters
    ----------
    catalog_url : str
        The first listing page (page 1).
    run_dir : str or Path
        The run folder (relative paths are from the project root).
    page_url_template : str or None
        URL of listing page ``n >= 2`` as ``template.format(page=n)``. Pagination stops at
        the first such page that fails or adds nothing new (no new image, no new item).
        ``None`` follows ``next_selector``, else ``rel=next`` and common pager links (see
        :data:`lookalike.catalog.DEFAULT_NEXT_SELECTORS`), else an HTTP ``Link: rel=next``
        header.
    max_pages : int, default 20
        Listing pages visited at most.
    item_selector : str or None
        CSS selector of one catalog item (product card). Only images inside items are taken
        (page chrome such as logos and banners is ignored). ``None`` finds the cards with
        :func:`lookalike.catalog.detect_items` (:data:`lookalike.catalog.DEFAULT_ITEM_SELECTORS`,
        then repeated siblings).
    image_selector : str or None
        CSS selector of the wanted images (or of elements containing them) inside each item,
        or on product pages when ``follow_product_pages``. ``None``: every image of an item;
        on product pages the gallery (:data:`lookalike.catalog.DEFAULT_GALLERY_SELECTORS`).
    next_selector : str or None
        CSS selector of the "next page" link.
    follow_product_pages : bool, default False
        Open each item's link (its first ``a[href]``) and take the product page's images
        instead of the listing thumbnails.
    max_images : int or None
        Stop collecting after this many distinct image URLs.
    concurrency : int, default 4
        Worker threads for image downloads and product pages; the listing pages are read
        one at a time alongside them.
    delay_s : float, default 0.0
        Minimum seconds between the starts of two requests to the same host, over all
        workers (robots.txt ``Crawl-delay`` raises it, up to
        :data:`lookalike.robots.MAX_CRAWL_DELAY_S`; a ``429`` or ``Retry-After`` pauses the host).
    timeout_s : float, default 20.0
        The most one HTTP request may take, connection to last byte.
    max_retries : int, default 3
        Retries after 5xx/429 answers and dropped connections, with exponential back-off
        (0.5 s, 1 s, 2 s...) or the server's ``Retry-After``.
    respect_robots : bool, default True
        Check robots.txt for every page and image URL. Turn off only with the site's consent.
    user_agent : str
        Sent with every request and matched against robots.txt.
    min_side : int, default 32
        Images whose shorter side is smaller are ``skipped`` with reason ``too_small``
        (icons, spacers, tracking pixels).
    max_bytes : int, default 20_000_000
        Larger images fail with reason ``too_large`` (the download stops at the cap).
    json_mode : bool, default False
        The listing URLs return JSON; ``image_json_path`` (e.g.
        ``"data.products[*].images.main.url"``) selects the image URLs (strings, or objects
        with a ``url``/``src``).
    next_json_path : str or None
        With ``json_mode`` and no ``page_url_template``: where the next page's URL is (e.g.
        ``"data.pagination.next"``). ``None`` looks for a ``next``-like key, then a ``Link``
        header (see :func:`lookalike.catalog.find_json_next`).
    proxy : str or None
        HTTP proxy for every request; ``None`` honours ``HTTP_PROXY``/``HTTPS_PROXY``.
    allow_private_hosts : bool, default False
        Allow private, loopback and link-local addresses (only for trusted local servers).

    Returns
    -------
    DataFrame
        ``RUN/scrape.parquet``: one row per image URL with the columns of
        :data:`SCRAPE_COLUMNS`, in discovery order. Rows of earlier runs into the same folder
        that were not found again are kept. ``df.attrs["summary"]`` holds the run's
        :func:`summarize` table (also printed, with a one-line summary).

    Raises
    ------
    ConfigError
        Inconsistent options (the message names the fix).
    ScrapeError
        The first listing page cannot be fetched or parsed, robots.txt forbids it, or
        ``follow_product_pages`` finds no product link on it.

    Notes
    -----
    Re-running into the same folder resumes: pages already read (same parsing options) come
    from ``scrape_pages.parquet``, images already stored and deliberate skips are not
    requested again; failed rows are retried. Use a new ``run_dir`` for a fresh crawl.
    """
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
    opts = ScrapeOptions(
        http=http,
        page_url_template=page_url_template,
        max_pages=max_pages,
        item_selector=item_selector,
        image_selector=image_selector,
        next_selector=next_selector,
        follow_product_pages=follow_product_pages,
        max_images=max_images,
        concurrency=concurrency,
        min_side=min_side,
        json_mode=json_mode,
        image_json_path=image_json_path,
        next_json_path=next_json_path,
    )
    run = RunLayout(run_dir)
    run.root.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    state = _Scrape(run, opts)
    try:
        state.crawl(catalog_url)
        state.wait()
    finally:
        df = state.close()
    seconds = time.monotonic() - t_start
    this_run = df[df["url"].isin(list(state.found))]
    summary = summarize(
        this_run,
        seconds,
        pages_visited=state.stats["pages_fetched"] + state.stats["pages_cached"],
        pages_cached=state.stats["pages_cached"],
        fetched=state.stats["fetched"],
        cached=state.stats["cached"],
    )
    df.attrs["summary"] = summary
    print(summary.to_string())
    progress.summary(_summary_line(summary))
    return df


def to_image_manifest(scrape_df: pd.DataFrame) -> pd.DataFrame:
    """Rows for :func:`lookalike.storage.merge_manifest`: source ``"catalog"``, origin = URL.

    ``label`` is the image's alt text (the product title on most shops), else the file name
    of the URL.
    """
    out = pd.DataFrame(
        {
            "image_id": scrape_df["sha256"],
            "path": scrape_df["path"],
            "source": "catalog",
            "origin": scrape_df["url"],
            "width": scrape_df["width"],
            "height": scrape_df["height"],
            "status": scrape_df["status"],
            "error": scrape_df["reason"],
            "label": scrape_df["alt"],
        }
    )
    return storage.coerce_manifest(out)
