"""Stage 01: walk a paginated web catalog and download its images into the run folder.

Outputs (inside ``run_dir``):

- ``images/<sha256>.<ext>`` — each distinct image once; ``ext`` comes from the decoded format.
- ``scrape.parquet`` — one row per image URL (see :data:`SCRAPE_COLUMNS`), written every
  :data:`CHECKPOINT_EVERY` images and at the end, so an interrupted run loses little and a
  re-run skips every URL already stored.

Typical use::

    df = scrape_catalog("https://shop.example/shoes/", "runs/shoes", max_pages=5)
    io.merge_manifest("runs/shoes", to_image_manifest(df))
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlsplit

import pandas as pd
from bs4 import BeautifulSoup
from protego import Protego
from tqdm.auto import tqdm

from . import images, io, net
from .exceptions import ConfigError, ImageError, ScrapeError
from .net import DEFAULT_USER_AGENT
from .paths import resolve

SCRAPE_NAME = "scrape.parquet"
IMAGES_DIR = "images"
#: Write ``scrape.parquet`` after this many finished downloads (and at the end).
CHECKPOINT_EVERY = 25
#: A robots.txt ``Crawl-delay`` is honoured up to this many seconds per request.
MAX_CRAWL_DELAY_S = 30.0
_ROBOTS_MAX_BYTES = 512_000  # RFC 9309 asks crawlers to parse at least 500 KiB
_DISALLOW_ALL = object()  # robots.txt answered 5xx: the whole host is off limits

#: Columns of ``RUN/scrape.parquet`` and their pandas dtypes.
SCRAPE_COLUMNS: dict[str, str] = {
    "url": "string",  # absolute image URL (fragment removed); one row per URL
    "page_url": "string",  # listing or product page where the URL was found
    "page": "Int64",  # listing page number, from 1
    "alt": "string",  # the <img alt> text ("" if none)
    "status": "string",  # ok | skipped | failed
    "reason": "string",  # short code when status != ok, e.g. too_small, http_404, timeout
    "http_status": "Int64",  # final HTTP status (missing if no answer)
    "sha256": "string",  # hex sha256 of the stored bytes (the image_id)
    "path": "string",  # images/<sha256>.<ext>, relative to the run dir
    "width": "Int64",  # decoded size in pixels
    "height": "Int64",
    "bytes": "Int64",  # size of the downloaded body
    "fetched_at": "datetime64[ns, UTC]",
}

# Lazy-loading attributes, in order of preference, after the srcset-style ones.
_SRCSET_ATTRS = ("data-srcset", "data-lazy-srcset", "srcset")
_SRC_ATTRS = ("data-lazy-src", "data-src", "data-original", "data-lazy", "src")
_PLACEHOLDER_RE = re.compile(
    r"(^|[/_.-])(blank|spacer|placeholder|transparent|pixel|lazy|loading|1x1)[_.-][^/]*$",
    re.IGNORECASE,
)
_SKIP_SCHEMES = ("data:", "javascript:", "about:", "blob:", "mailto:", "#")


# -- parsing --------------------------------------------------------------------------------


@dataclass
class ImageRef:
    """An image URL found on a page, with its alt text."""

    url: str
    alt: str = ""


@dataclass
class ListingPage:
    """What :func:`parse_listing` found on one listing page."""

    images: list[ImageRef] = field(default_factory=list)
    item_links: list[str] = field(default_factory=list)
    next_url: str | None = None


def _soup(html: bytes | str | BeautifulSoup) -> BeautifulSoup:
    if isinstance(html, BeautifulSoup):
        return html
    return BeautifulSoup(html, "lxml")


def base_url(soup: BeautifulSoup, page_url: str) -> str:
    """The URL relative links resolve against: ``<base href>`` if present, else the page."""
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


def parse_srcset(value: str) -> list[tuple[str, float, str]]:
    """Parse a ``srcset`` into ``(url, number, unit)`` with unit ``"w"`` or ``"x"``.

    A candidate without a descriptor counts as ``1x``. URLs may contain commas; candidates
    are separated by a comma that follows whitespace or a descriptor, as browsers do.
    """
    out = []
    pos, n = 0, len(value)
    while pos < n:
        while pos < n and (value[pos].isspace() or value[pos] == ","):
            pos += 1
        start = pos
        while pos < n and not value[pos].isspace():
            pos += 1
        url = value[start:pos]
        descriptor = ""
        if url.endswith(","):
            url = url.rstrip(",")
        else:
            start = pos
            while pos < n and value[pos] != ",":
                pos += 1
            descriptor = value[start:pos].strip()
        if not url:
            continue
        number, unit = 1.0, "x"
        match = re.search(r"([\d.]+)\s*([wx])\b", descriptor, re.IGNORECASE)
        if match:
            try:
                number, unit = float(match.group(1)), match.group(2).lower()
            except ValueError:
                pass
        out.append((url, number, unit))
    return out


def best_srcset_url(candidates: Iterable[tuple[str, float, str]], base: str) -> str | None:
    """The largest usable candidate: biggest width descriptor, else biggest density."""
    usable = [(absolute_url(u, base), n, unit) for u, n, unit in candidates]
    usable = [c for c in usable if c[0] and not _PLACEHOLDER_RE.search(urlsplit(c[0]).path)]
    if not usable:
        return None
    with_width = [c for c in usable if c[2] == "w"]
    pool = with_width or usable
    return max(pool, key=lambda c: c[1])[0]


def _img_url(img, base: str, extra_candidates=()) -> str | None:
    candidates = list(extra_candidates)
    for attr in _SRCSET_ATTRS:
        if img.get(attr):
            candidates += parse_srcset(img[attr])
    url = best_srcset_url(candidates, base)
    if url:
        return url
    for attr in _SRC_ATTRS:
        url = absolute_url(img.get(attr), base)
        if url and not _PLACEHOLDER_RE.search(urlsplit(url).path):
            return url
    return None


def extract_images(
    html: bytes | str | BeautifulSoup,
    page_url: str,
    *,
    selector: str | None = None,
    scopes: Iterable | None = None,
) -> list[ImageRef]:
    """Image URLs on a page, one per ``<img>`` or ``<picture>``, in document order.

    Parameters
    ----------
    html : bytes, str or BeautifulSoup
        The page.
    page_url : str
        Its URL (``<base href>`` is honoured on top of it).
    selector : str or None
        CSS selector for the images (``img``/``picture``) or for elements containing them.
    scopes : iterable of bs4 elements or None
        Only look inside these elements (for example the catalog items).

    Returns
    -------
    list of ImageRef
        Absolute http(s) URLs, deduplicated. The largest ``srcset``/``<source>`` candidate
        wins, then lazy attributes (``data-lazy-src``, ``data-src``, ``data-original``), then
        ``src``. ``data:`` URIs and placeholder files (``blank.gif``, ``spacer.png``...) are
        skipped.
    """
    soup = _soup(html)
    base = base_url(soup, page_url)
    roots = list(scopes) if scopes is not None else [soup]
    elements = []
    for root in roots:
        if selector:
            for el in root.select(selector):
                if el.name in ("img", "picture"):
                    elements.append(el)
                else:
                    elements += el.find_all(["img", "picture"])
        else:
            elements += root.find_all(["img", "picture"])
    refs: list[ImageRef] = []
    seen: set[str] = set()
    done: set[int] = set()  # bs4 tags compare by content, so track identity
    for el in elements:
        picture = el.find_parent("picture") if el.name == "img" else None
        if picture is not None:
            el = picture
        if id(el) in done:
            continue
        done.add(id(el))
        if el.name == "picture":
            img = el.find("img")
            extra = []
            for source in el.find_all("source"):
                for attr in _SRCSET_ATTRS:
                    if source.get(attr):
                        extra += parse_srcset(source[attr])
            url = _img_url(img, base, extra) if img is not None else best_srcset_url(extra, base)
            alt = (img.get("alt") or "") if img is not None else ""
        else:
            url = _img_url(el, base)
            alt = el.get("alt") or el.get("title") or ""
        if url and url not in seen:
            seen.add(url)
            refs.append(ImageRef(url, " ".join(alt.split())))
    return refs


def find_next_url(
    html: bytes | str | BeautifulSoup, page_url: str, *, next_selector: str | None = None
) -> str | None:
    """The next listing page: ``next_selector``, else ``<link rel=next>``, else ``<a rel=next>``."""
    soup = _soup(html)
    base = base_url(soup, page_url)
    selectors = ([next_selector] if next_selector else []) + [
        'link[rel~="next"][href]',
        'a[rel~="next"][href]',
    ]
    for sel in selectors:
        el = soup.select_one(sel)
        if el is None:
            continue
        if not el.get("href"):
            el = el.select_one("a[href]")
        url = absolute_url(el.get("href"), base) if el is not None else None
        if url:
            return url
    return None


def find_item_links(
    html: bytes | str | BeautifulSoup, page_url: str, item_selector: str
) -> list[str]:
    """One link per element matching ``item_selector`` (the element itself or its first a[href])."""
    soup = _soup(html)
    base = base_url(soup, page_url)
    links: list[str] = []
    for el in soup.select(item_selector):
        a = el if (el.name == "a" and el.get("href")) else el.select_one("a[href]")
        url = absolute_url(a.get("href"), base) if a is not None else None
        if url and url not in links:
            links.append(url)
    return links


def parse_listing(
    html: bytes | str,
    page_url: str,
    *,
    item_selector: str | None = None,
    image_selector: str | None = None,
    next_selector: str | None = None,
) -> ListingPage:
    """Images (inside the items if ``item_selector``), item links and next link of a page."""
    soup = _soup(html)
    scopes = soup.select(item_selector) if item_selector else None
    return ListingPage(
        images=extract_images(soup, page_url, selector=image_selector, scopes=scopes),
        item_links=find_item_links(soup, page_url, item_selector) if item_selector else [],
        next_url=find_next_url(soup, page_url, next_selector=next_selector),
    )


_JSON_TOKEN = re.compile(r"\[(\*|-?\d+)\]|([^.\[\]]+)")


def json_path_values(obj, path: str) -> list:
    """Values at a dotted path with ``[*]`` wildcards, e.g. ``data.products[*].images.main.url``.

    Missing keys are skipped silently (a product without an image yields nothing); lists at
    the end of the path are flattened.
    """
    current = [obj]
    for index, key in _JSON_TOKEN.findall(path.lstrip("$.")):
        nxt = []
        for value in current:
            if key:
                if isinstance(value, dict) and key in value:
                    nxt.append(value[key])
                elif isinstance(value, list):  # tolerate a forgotten [*]
                    nxt += [v[key] for v in value if isinstance(v, dict) and key in v]
            elif index == "*":
                if isinstance(value, list):
                    nxt += value
                elif isinstance(value, dict):
                    nxt += list(value.values())
            elif isinstance(value, list):
                i = int(index)
                if -len(value) <= i < len(value):
                    nxt.append(value[i])
        current = nxt
    out = []
    for value in current:
        out += value if isinstance(value, list) else [value]
    return out


# -- robots.txt -----------------------------------------------------------------------------


class RobotsCache:
    """robots.txt per host (fetched once, thread-safe), with ``Crawl-delay`` fed to a limiter.

    A missing robots.txt (4xx) allows everything; a 5xx answer disallows the host, as
    RFC 9309 asks; a network failure allows (the real request then reports its own error).
    """

    def __init__(self, session, *, user_agent, fetch_kwargs, limiter=None):
        self.session = session
        self.user_agent = user_agent
        self.fetch_kwargs = dict(fetch_kwargs, max_bytes=_ROBOTS_MAX_BYTES, max_retries=1)
        self.limiter = limiter
        self._rules: dict[str, object] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def _load(self, origin: str):
        r = net.fetch(
            self.session, origin + "/robots.txt", accept="text/plain", **self.fetch_kwargs
        )
        if r.ok:
            rules = Protego.parse(r.content.decode("utf-8", errors="replace"))
            delay = rules.crawl_delay(self.user_agent)
            if delay and self.limiter is not None:
                self.limiter.set_delay(urlsplit(origin).hostname, min(delay, MAX_CRAWL_DELAY_S))
            return rules
        if r.status_code is not None and r.status_code >= 500:
            return _DISALLOW_ALL
        return None  # 4xx or unreachable: no rules

    def allowed(self, url: str) -> tuple[bool, str]:
        """``(allowed, reason)``; reason ``robots_disallowed``, ``robots_unavailable`` or ``""``."""
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
        if rules.can_fetch(url, self.user_agent):
            return True, ""
        return False, "robots_disallowed"


# -- the stage ------------------------------------------------------------------------------


def _empty_table() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in SCRAPE_COLUMNS.items()})


def _to_table(rows: Iterable[dict]) -> pd.DataFrame:
    df = pd.DataFrame(list(rows))
    if df.empty:
        return _empty_table()
    for col, dtype in SCRAPE_COLUMNS.items():
        if col not in df.columns:
            df[col] = pd.NA
        if dtype.startswith("datetime"):
            df[col] = pd.to_datetime(df[col], utc=True)
        else:
            df[col] = df[col].astype(dtype)
    return df[list(SCRAPE_COLUMNS)]


def _load_previous(run_dir: Path) -> dict[str, dict]:
    path = run_dir / SCRAPE_NAME
    if not path.exists():
        return {}
    df = io.read_table(path, required=["url", "status", "path"], what="scrape manifest")
    rows = {}
    for row in df.to_dict("records"):
        rows[row["url"]] = {k: (None if pd.isna(v) else v) for k, v in row.items()}
    return rows


def _is_done(row: dict | None, run_dir: Path) -> bool:
    return bool(
        row and row.get("status") == "ok" and row.get("path") and (run_dir / row["path"]).exists()
    )


def _validate(max_pages, concurrency, page_url_template, json_mode, image_json_path, follow, item):
    if max_pages < 1:
        raise ConfigError(f"max_pages must be >= 1, got {max_pages!r}")
    if concurrency < 1:
        raise ConfigError(f"concurrency must be >= 1, got {concurrency!r}")
    if page_url_template is not None and "{page}" not in page_url_template:
        raise ConfigError(
            f"page_url_template {page_url_template!r} has no '{{page}}' placeholder; "
            "use e.g. 'https://shop.example/shoes/?page={page}'"
        )
    if json_mode and not image_json_path:
        raise ConfigError(
            "json_mode=True needs image_json_path, e.g. 'data.products[*].images.main.url'"
        )
    if follow and not (item and item.strip()):
        raise ConfigError(
            "follow_product_pages=True needs item_selector, the CSS selector of one catalog "
            "item (its first a[href] is the product page), e.g. 'div.product'"
        )


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
        the first such page that fails or adds no new image. ``None`` follows
        ``next_selector``, else ``<link rel=next>``, else ``<a rel=next>``.
    max_pages : int, default 20
        Listing pages visited at most.
    item_selector : str or None
        CSS selector of one catalog item. Without ``follow_product_pages`` only images inside
        items are taken (page chrome such as logos and banners is ignored).
    image_selector : str or None
        CSS selector of the wanted images (or of elements containing them), applied to
        listing pages, or to product pages when ``follow_product_pages``.
    next_selector : str or None
        CSS selector of the "next page" link.
    follow_product_pages : bool, default False
        Open each item's link and take the product page's images instead of the listing
        thumbnails. Needs ``item_selector``.
    max_images : int or None
        Stop collecting after this many distinct image URLs.
    concurrency : int, default 4
        Parallel downloads (threads).
    delay_s : float, default 0.0
        Minimum seconds between two requests to the same host (robots.txt ``Crawl-delay``
        raises it, up to :data:`MAX_CRAWL_DELAY_S`).
    timeout_s, max_retries, max_bytes, proxy, allow_private_hosts
        Passed to :func:`lookalike.net.fetch` / :func:`lookalike.net.make_session`.
    respect_robots : bool, default True
        Check robots.txt for every page and image URL. Turn off only with the site's consent.
    user_agent : str
        Sent with every request and matched against robots.txt.
    min_side : int, default 32
        Images whose shorter side is smaller are ``skipped`` with reason ``too_small``
        (icons, spacers, tracking pixels).
    json_mode : bool, default False
        The listing URLs return JSON; ``image_json_path`` (e.g.
        ``"data.products[*].images.main.url"``) selects the image URLs.

    Returns
    -------
    DataFrame
        ``RUN/scrape.parquet``: one row per image URL with the columns of
        :data:`SCRAPE_COLUMNS`. Rows of earlier runs that were not found again are kept.

    Raises
    ------
    ConfigError
        Inconsistent options (the message names the fix).
    ScrapeError
        The first listing page cannot be fetched or parsed, or robots.txt forbids it.
    """
    _validate(
        max_pages,
        concurrency,
        page_url_template,
        json_mode,
        image_json_path,
        follow_product_pages,
        item_selector,
    )
    run_dir = resolve(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    session = net.make_session(user_agent=user_agent, proxy=proxy, pool_size=concurrency + 2)
    limiter = net.HostRateLimiter(delay_s)
    fetch_kwargs = dict(
        timeout_s=timeout_s,
        max_retries=max_retries,
        allow_private_hosts=allow_private_hosts,
        rate_limiter=limiter,
    )
    robots = (
        RobotsCache(session, user_agent=user_agent, fetch_kwargs=fetch_kwargs, limiter=limiter)
        if respect_robots
        else None
    )

    def get_page(url: str, accept: str) -> net.FetchResult:
        if robots is not None:
            allowed, reason = robots.allowed(url)
            if not allowed:
                return net.FetchResult(url=url, final_url=url, error=reason)
        return net.fetch(session, url, accept=accept, max_bytes=max_bytes, **fetch_kwargs)

    try:
        found, n_pages = _crawl(
            catalog_url,
            get_page,
            page_url_template=page_url_template,
            max_pages=max_pages,
            item_selector=item_selector,
            image_selector=image_selector,
            next_selector=next_selector,
            follow_product_pages=follow_product_pages,
            max_images=max_images,
            concurrency=concurrency,
            json_mode=json_mode,
            image_json_path=image_json_path,
        )
        df, stats = _download_all(
            found,
            run_dir,
            session=session,
            robots=robots,
            fetch_kwargs=dict(fetch_kwargs, max_bytes=max_bytes),
            concurrency=concurrency,
            min_side=min_side,
        )
    finally:
        session.close()
    seconds = time.monotonic() - t_start
    _print_summary(n_pages, len(found), stats, seconds)
    return df


def _crawl(
    catalog_url,
    get_page,
    *,
    page_url_template,
    max_pages,
    item_selector,
    image_selector,
    next_selector,
    follow_product_pages,
    max_images,
    concurrency,
    json_mode,
    image_json_path,
) -> tuple[dict[str, dict], int]:
    """Visit listing (and product) pages; return ``{image_url: meta}`` in discovery order."""
    found: dict[str, dict] = {}
    seen_pages: set[str] = set()
    url: str | None = catalog_url
    page = 0
    bar = tqdm(total=max_pages, desc="pages", unit="page", leave=False)

    def add(refs: list[ImageRef], page_url: str) -> int:
        new = 0
        for ref in refs:
            if max_images is not None and len(found) >= max_images:
                break
            if ref.url not in found:
                found[ref.url] = {"page_url": page_url, "page": page, "alt": ref.alt}
                new += 1
        return new

    try:
        while url and page < max_pages:
            if max_images is not None and len(found) >= max_images:
                break
            page += 1
            seen_pages.add(url)
            accept = net.ACCEPT_JSON if json_mode else net.ACCEPT_HTML
            r = get_page(url, accept)
            bar.update(1)
            if not r.ok:
                if page == 1:
                    hint = {
                        "private_address": " (a local or test server needs "
                        "allow_private_hosts=True)",
                        "robots_disallowed": " (robots.txt forbids it; scrape only with the "
                        "site's consent, then respect_robots=False)",
                    }.get(r.error, "")
                    raise ScrapeError(
                        f"cannot fetch the first catalog page {url}: {r.error} {r.detail}{hint}"
                    )
                tqdm.write(f"scrape: stopping at page {page} ({url}): {r.error}")
                page -= 1
                break
            page_url = r.final_url
            if json_mode:
                try:
                    data = json.loads(r.content)
                except ValueError as exc:
                    if page == 1:
                        raise ScrapeError(f"{url} did not return JSON: {exc}") from None
                    page -= 1
                    break
                values = json_path_values(data, image_json_path)
                refs = [ImageRef(u) for v in values if (u := absolute_url(str(v), page_url))]
                listing = ListingPage(images=refs)
            else:
                listing = parse_listing(
                    r.content,
                    page_url,
                    item_selector=item_selector,
                    image_selector=None if follow_product_pages else image_selector,
                    next_selector=next_selector,
                )
            if follow_product_pages:
                new = _crawl_products(
                    listing.item_links, get_page, add, image_selector, concurrency
                )
            else:
                new = add(listing.images, page_url)
            if page_url_template is not None:
                if new == 0 and page > 1:
                    break  # past the last page: the site repeats or returns an empty page
                url = page_url_template.format(page=page + 1)
            else:
                url = listing.next_url
            if url in seen_pages:
                break
    finally:
        bar.close()
    return found, page


def _crawl_products(links, get_page, add, image_selector, concurrency) -> int:
    new = 0
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = pool.map(lambda u: get_page(u, net.ACCEPT_HTML), links)
        for link, r in zip(links, results, strict=True):
            if not r.ok:
                tqdm.write(f"scrape: product page {link}: {r.error}")
                continue
            new += add(extract_images(r.content, r.final_url, selector=image_selector), r.final_url)
    return new


def _download_one(url, meta, run_dir, session, robots, fetch_kwargs, min_side) -> dict:
    row = {"url": url, **meta, "fetched_at": pd.Timestamp.now(tz="UTC")}
    if robots is not None:
        allowed, reason = robots.allowed(url)
        if not allowed:
            return dict(row, status="skipped", reason=reason)
    r = net.fetch(session, url, accept=net.ACCEPT_IMAGES, **fetch_kwargs)
    row.update(http_status=r.status_code, bytes=len(r.content) if r.ok else None)
    if not r.ok:
        return dict(row, status="failed", reason=r.error)
    try:
        im = images.decode_image(r.content)
    except ImageError as exc:
        reason = images.error_reason(exc)
        status = "skipped" if reason == "unsupported_format" else "failed"
        return dict(row, status=status, reason=reason)
    width, height = im.size
    row.update(width=width, height=height)
    if min(width, height) < min_side:
        return dict(row, status="skipped", reason="too_small")
    sha = io.sha256_bytes(r.content)
    rel = f"{IMAGES_DIR}/{sha}.{images.FORMAT_EXTENSIONS[im.format]}"
    if not (run_dir / rel).exists():  # same bytes under another URL: stored once
        io.atomic_write_bytes(run_dir / rel, r.content)
    return dict(row, status="ok", reason=None, sha256=sha, path=rel)


def _download_all(found, run_dir, *, session, robots, fetch_kwargs, concurrency, min_side):
    previous = _load_previous(run_dir)
    rows: dict[str, dict] = {}
    todo = []
    cached = 0
    for url, meta in found.items():
        old = previous.get(url)
        if _is_done(old, run_dir):
            rows[url] = old
            cached += 1
        else:
            rows[url] = None  # placeholder keeps discovery order
            todo.append((url, meta))
    for url, old in previous.items():  # keep earlier rows not seen this time
        rows.setdefault(url, old)
    out_path = run_dir / SCRAPE_NAME

    def checkpoint() -> pd.DataFrame:
        table = _to_table(r for r in rows.values() if r is not None)
        io.write_table(table, out_path)
        return table

    t0 = time.monotonic()
    pool = ThreadPoolExecutor(max_workers=concurrency)
    futures = {
        pool.submit(_download_one, url, meta, run_dir, session, robots, fetch_kwargs, min_side): url
        for url, meta in todo
    }
    try:
        bar = tqdm(total=len(todo), desc="images", unit="img")
        for i, fut in enumerate(as_completed(futures), 1):
            url = futures[fut]
            try:
                rows[url] = fut.result()
            except Exception as exc:  # a bug for one item must not lose the whole run
                meta = found[url]
                rows[url] = {"url": url, **meta, "status": "failed", "reason": "error"}
                tqdm.write(f"scrape: {url}: unexpected {type(exc).__name__}: {exc}")
            bar.update(1)
            if i % CHECKPOINT_EVERY == 0:
                checkpoint()
        bar.close()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        table = checkpoint()
    stats = {
        "table": table[table["url"].isin(list(found))],
        "cached": cached,
        "fetched": len(todo),
        "download_s": time.monotonic() - t0,
    }
    return table, stats


def _print_summary(n_pages, n_found, stats, seconds):
    t = stats["table"]
    n_ok = int((t["status"] == "ok").sum())

    def by_reason(status):
        counts = Counter(t.loc[t["status"] == status, "reason"].fillna("?"))
        inner = ", ".join(f"{k}: {v}" for k, v in counts.most_common())
        return f"{sum(counts.values())}" + (f" ({inner})" if inner else "")

    rate = 100.0 * n_ok / n_found if n_found else 0.0
    speed = stats["fetched"] / stats["download_s"] if stats["download_s"] > 0 else 0.0
    print(
        f"scrape: {n_pages} pages, {n_found} images found, {n_ok} downloaded "
        f"({stats['cached']} already on disk), skipped {by_reason('skipped')}, "
        f"failed {by_reason('failed')}, success {rate:.1f}%, {seconds:.1f} s, "
        f"{speed:.1f} images/s"
    )


def to_image_manifest(scrape_df: pd.DataFrame) -> pd.DataFrame:
    """Rows for :func:`lookalike.io.merge_manifest`: source ``"catalog"``, origin = image URL."""
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
        }
    )
    return out.astype(io.MANIFEST_COLUMNS)
