"""Stage 01: walk a paginated web catalog and download its images into the run folder.

Outputs (inside ``run_dir``):

- ``images/<sha256>.<ext>`` — each distinct image once; ``ext`` comes from the decoded format.
- ``scrape.parquet`` — one row per image URL (see :data:`SCRAPE_COLUMNS`).
- ``scrape_pages.parquet`` — one row per listing or product page read (see
  :data:`PAGE_COLUMNS`), with what was found on it, so a re-run does not fetch it again.

Both tables grow as the run goes: every finished row is appended at once to a small journal
(``.scrape.parquet.journal``, JSON lines) that is folded into the parquet file every
:data:`CHECKPOINT_EVERY` rows and at the end. Kill the run at any point and run it again: it
finishes with no duplicate rows, no lost images, and no request for what it already has.

Typical use::

    df = scrape_catalog("https://shop.example/shoes/", "runs/shoes", max_pages=5)
    display(df.attrs["summary"])
    storage.merge_manifest("runs/shoes", to_image_manifest(df))
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlsplit, urlunsplit

import pandas as pd
from bs4 import BeautifulSoup
from protego import Protego
from tqdm.auto import tqdm

from . import images, net, storage
from .exceptions import ConfigError, ImageError, ScrapeError
from .net import DEFAULT_USER_AGENT
from .paths import resolve

SCRAPE_NAME = "scrape.parquet"
PAGES_NAME = "scrape_pages.parquet"
IMAGES_DIR = "images"
#: Fold the journals into the parquet files after this many rows (and at the end).
CHECKPOINT_EVERY = 25
#: ... or when this many seconds have passed since the last fold.
CHECKPOINT_S = 10.0
#: A robots.txt ``Crawl-delay`` is honoured up to this many seconds per request.
MAX_CRAWL_DELAY_S = 30.0
#: Bump when what the parsers extract changes: cached pages are then read again.
PARSER_VERSION = 2
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

#: Columns of ``RUN/scrape_pages.parquet`` ("object" columns hold lists of strings).
PAGE_COLUMNS: dict[str, str] = {
    "url": "string",  # the page URL as requested; one row per URL
    "final_url": "string",  # after redirects (relative links resolve against it)
    "kind": "string",  # listing | product
    "page": "Int64",  # listing page number (for a product page: its listing page)
    "status": "string",  # ok | skipped | failed
    "reason": "string",  # short code when status != ok
    "http_status": "Int64",
    "n_images": "Int64",  # image URLs found on the page
    "next_url": "string",  # the next listing page it points to (rel=next, JSON, Link header)
    "image_urls": "object",  # the image URLs found, in page order
    "image_alts": "object",  # their alt texts
    "item_links": "object",  # product page links of the catalog items (listing pages)
    "parse_key": "string",  # hash of the parsing options; another key reads the page again
    "fetched_at": "datetime64[ns, UTC]",
}

# Lazy-loading attributes, in order of preference, after the srcset-style ones.
_SRCSET_ATTRS = ("data-srcset", "data-lazy-srcset", "srcset")
_SRC_ATTRS = ("data-lazy-src", "data-src", "data-original", "data-lazy", "data-lazyload", "src")
_BG_ATTRS = ("data-bg", "data-background", "data-background-image", "data-bg-src")
_CSS_URL_RE = re.compile(r"url\(\s*(['\"]?)(.+?)\1\s*\)", re.IGNORECASE)
# A file whose name is made only of these words (and sizes such as 1x1) is a placeholder.
_PLACEHOLDER_WORDS = frozenset(
    "blank spacer placeholder transparent pixel lazy loading loader empty dummy grey gray "
    "clear".split()
)
_NAME_TOKEN_RE = re.compile(r"[^a-z0-9]+")
_SIZE_RE = re.compile(r"\d+(x\d+)?")
_SKIP_SCHEMES = ("data:", "javascript:", "about:", "blob:", "mailto:", "#")
# Page chrome: images here are logos, banners and badges, not products.
_CHROME = "header, nav, footer, aside, [role=banner], [role=navigation], [role=contentinfo]"

#: Product cards on typical listing pages, tried in order when ``item_selector`` is None.
#: The first one that matches at least two elements holding an image wins; if none does,
#: the largest group of repeated sibling elements that hold an image and a link is used.
DEFAULT_ITEM_SELECTORS = (
    '[itemtype$="schema.org/Product" i]',
    "[data-product-id]",
    "[data-productid]",
    ".product-card",
    ".product-item",
    ".product-tile",
    ".product-grid-item",
    ".grid-product",
    ".productCard",
    ".ProductCard",
    "li.product",
    ".product",
    "[data-sku]",
)
#: The gallery on a product page, tried in order when ``image_selector`` is None (with
#: ``follow_product_pages``); without a match, every image outside the page chrome is taken.
DEFAULT_GALLERY_SELECTORS = (
    ".product-gallery",
    ".product__media",
    ".product-images",
    ".product-media",
    ".gallery",
    "[data-gallery]",
    '[class*="gallery" i]',
    '[itemtype$="schema.org/Product" i] [itemprop=image]',
)
#: Next-page links tried after ``next_selector``.
DEFAULT_NEXT_SELECTORS = (
    'link[rel~="next"][href]',
    'a[rel~="next"][href]',
    ".pagination a.next[href]",
    ".pager a.next[href]",
    "li.next > a[href]",
    'a[aria-label="Next page" i][href]',
    'a[aria-label="Next" i][href]',
)
_MIN_ITEMS = 2
# Keys that hold the next page's URL in JSON APIs (compared lowercase, without _ and -).
_JSON_NEXT_KEYS = frozenset({"next", "nextpage", "nexturl", "nextpageurl", "nextlink", "nexthref"})
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
    item_selector: str | None = None  # the selector that found the items (None: none found)


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


def _is_placeholder(path: str) -> bool:
    """``blank.gif``, ``spacer.png``, ``lazy-placeholder.svg``, ``1x1.gif``; not ``lazy-bg.jpg``."""
    stem = path.rsplit("/", 1)[-1].rsplit(".", 1)[0].lower()
    tokens = [t for t in _NAME_TOKEN_RE.split(stem) if t]
    if not tokens or all(_SIZE_RE.fullmatch(t) for t in tokens):
        return stem in ("1x1", "0x0")
    return all(t in _PLACEHOLDER_WORDS or _SIZE_RE.fullmatch(t) for t in tokens)


def _usable(url: str | None) -> bool:
    return bool(url) and not _is_placeholder(urlsplit(url).path)


def best_srcset_url(candidates: Iterable[tuple[str, float, str]], base: str) -> str | None:
    """The largest usable candidate: biggest width descriptor, else biggest density."""
    usable = [(absolute_url(u, base), n, unit) for u, n, unit in candidates]
    usable = [c for c in usable if _usable(c[0])]
    if not usable:
        return None
    with_width = [c for c in usable if c[2] == "w"]
    pool = with_width or usable
    return max(pool, key=lambda c: c[1])[0]


def _is_tracking_pixel(img) -> bool:
    """``<img width="1" height="1">`` and the like."""
    try:
        w, h = int(str(img.get("width", "")).strip()), int(str(img.get("height", "")).strip())
    except ValueError:
        return False
    return w <= 2 and h <= 2


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
        if _usable(url):
            return url
    return None


def _background_url(el, base: str) -> str | None:
    """A CSS ``background-image: url(...)`` in the style attribute, or a lazy ``data-bg``."""
    for attr in _BG_ATTRS:
        value = el.get(attr)
        if value:
            match = _CSS_URL_RE.search(value)
            url = absolute_url(match.group(2) if match else value, base)
            if _usable(url):
                return url
    style = el.get("style") or ""
    if "url(" in style.lower() and "background" in style.lower():
        for match in _CSS_URL_RE.finditer(style):
            url = absolute_url(match.group(2), base)
            if _usable(url):
                return url
    return None


def _image_like(el) -> bool:
    """An ``<img>``/``<picture>`` or an element that shows a background image."""
    if el.name in ("img", "picture"):
        return True
    if any(el.get(a) for a in _BG_ATTRS):
        return True
    style = (el.get("style") or "").lower()
    return "background" in style and "url(" in style


def _image_elements(root) -> list:
    """``root`` itself if it is image-like, then its image-like descendants, in order."""
    out = [root] if getattr(root, "name", None) and _image_like(root) else []
    return out + root.find_all(_image_like)


def extract_images(
    html: bytes | str | BeautifulSoup,
    page_url: str,
    *,
    selector: str | None = None,
    scopes: Iterable | None = None,
) -> list[ImageRef]:
    """Image URLs on a page, one per ``<img>``, ``<picture>`` or background image, in order.

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
        ``src``. Images inside ``<noscript>`` count (lazy-loading pages put the real ``<img>``
        there), and so do CSS ``background-image: url(...)`` in a ``style`` attribute and the
        lazy ``data-bg`` attributes. ``data:`` URIs, placeholder files (``blank.gif``,
        ``spacer.png``...) and 1x1 tracking pixels are skipped.
    """
    soup = _soup(html)
    base = base_url(soup, page_url)
    roots = list(scopes) if scopes is not None else [soup]
    elements = []
    for root in roots:
        if selector:
            for el in root.select(selector):
                elements += _image_elements(el)
        else:
            elements += _image_elements(root)
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
        elif el.name == "img":
            url = None if _is_tracking_pixel(el) else _img_url(el, base)
            alt = el.get("alt") or el.get("title") or ""
        else:
            url = _background_url(el, base)
            alt = el.get("aria-label") or el.get("title") or ""
        if url and url not in seen:
            seen.add(url)
            refs.append(ImageRef(url, " ".join(alt.split())))
    return refs


def find_next_url(
    html: bytes | str | BeautifulSoup, page_url: str, *, next_selector: str | None = None
) -> str | None:
    """The next listing page: ``next_selector``, else ``rel=next``, else common pager links.

    See :data:`DEFAULT_NEXT_SELECTORS`. An element without ``href`` stands for its first
    ``a[href]``.
    """
    soup = _soup(html)
    base = base_url(soup, page_url)
    selectors = ([next_selector] if next_selector else []) + list(DEFAULT_NEXT_SELECTORS)
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


def _first_link(el, base: str) -> str | None:
    a = el if (el.name == "a" and el.get("href")) else el.select_one("a[href]")
    return absolute_url(a.get("href"), base) if a is not None else None


def _item_links(items: Iterable, base: str) -> list[str]:
    links = [_first_link(el, base) for el in items]
    return list(dict.fromkeys(u for u in links if u))


def find_item_links(
    html: bytes | str | BeautifulSoup, page_url: str, item_selector: str | None = None
) -> list[str]:
    """One link per catalog item (the element itself or its first ``a[href]``), deduplicated.

    ``item_selector=None`` finds the items with :func:`detect_items`.
    """
    soup = _soup(html)
    base = base_url(soup, page_url)
    items = soup.select(item_selector) if item_selector else detect_items(soup)[1]
    return _item_links(items, base)


def _in_chrome(el) -> bool:
    return any(
        p.name in ("header", "nav", "footer", "aside")
        or p.get("role") in ("banner", "navigation", "contentinfo")
        for p in el.parents
        if getattr(p, "name", None)
    )


def _repeated_items(soup: BeautifulSoup) -> list:
    """The largest group of same-tag, same-class siblings that each hold an image and a link."""
    best: list = []
    for parent in soup.find_all(True):
        groups = defaultdict(list)
        for child in parent.find_all(True, recursive=False):
            groups[(child.name, tuple(sorted(child.get("class") or ())))].append(child)
        for group in groups.values():
            if len(group) <= max(len(best), _MIN_ITEMS):
                continue
            items = [
                c
                for c in group
                if _image_elements(c)
                and (c.name == "a" and c.get("href") or c.find("a", href=True))
            ]
            if len(items) > max(len(best), _MIN_ITEMS) and not _in_chrome(items[0]):
                best = items
    return best


def detect_items(html: bytes | str | BeautifulSoup) -> tuple[str | None, list]:
    """Find the product cards of a listing page without a selector.

    Returns
    -------
    (selector, elements)
        The first of :data:`DEFAULT_ITEM_SELECTORS` that matches at least two elements
        holding an image, and those elements. Else ``("<repeated siblings>", elements)``: the
        largest group (three or more) of sibling elements with the same tag and classes that
        each hold an image and a link, outside the page chrome. Else ``(None, [])``.
    """
    soup = _soup(html)
    for sel in DEFAULT_ITEM_SELECTORS:
        found = [el for el in soup.select(sel) if _image_elements(el)]
        if len(found) >= _MIN_ITEMS:
            return sel, found
    found = _repeated_items(soup)
    return ("<repeated siblings>", found) if found else (None, [])


def _outside_chrome(soup: BeautifulSoup) -> list:
    """Image-like elements of the page that are not in its header, nav, footer or aside."""
    chrome = {id(e) for c in soup.select(_CHROME) for e in _image_elements(c)}
    return [e for e in _image_elements(soup) if id(e) not in chrome]


def parse_listing(
    html: bytes | str,
    page_url: str,
    *,
    item_selector: str | None = None,
    image_selector: str | None = None,
    next_selector: str | None = None,
) -> ListingPage:
    """Images of the catalog items, their links and the next link of one listing page.

    With ``item_selector=None`` the items are found by :func:`detect_items`; when no item
    is found, every image outside the page chrome (header, nav, footer, aside) is taken.
    ``image_selector`` narrows the images inside each item (default: all of them).
    """
    soup = _soup(html)
    if item_selector:
        used, items = item_selector, soup.select(item_selector)
    else:
        used, items = detect_items(soup)
    if items:
        refs = extract_images(soup, page_url, selector=image_selector, scopes=items)
    elif image_selector:
        refs = extract_images(soup, page_url, selector=image_selector)
    else:
        refs = extract_images(soup, page_url, scopes=_outside_chrome(soup))
    return ListingPage(
        images=refs,
        item_links=_item_links(items, base_url(soup, page_url)),
        next_url=find_next_url(soup, page_url, next_selector=next_selector),
        item_selector=used if items else None,
    )


def parse_product(
    html: bytes | str, page_url: str, *, image_selector: str | None = None
) -> list[ImageRef]:
    """The gallery images of a product page.

    ``image_selector=None`` tries :data:`DEFAULT_GALLERY_SELECTORS`, then takes every image
    outside the page chrome.
    """
    soup = _soup(html)
    if image_selector:
        return extract_images(soup, page_url, selector=image_selector)
    for sel in DEFAULT_GALLERY_SELECTORS:
        refs = extract_images(soup, page_url, selector=sel)
        if refs:
            return refs
    return extract_images(soup, page_url, scopes=_outside_chrome(soup))


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


def _json_url(value) -> str | None:
    """A URL string, or the ``url``/``src``/``href`` of an object."""
    if isinstance(value, dict):
        value = value.get("url") or value.get("src") or value.get("href")
    return value if isinstance(value, str) else None


def parse_json_listing(data, page_url: str, *, image_json_path: str) -> list[ImageRef]:
    """Image URLs of a JSON listing at ``image_json_path`` (strings, or objects with a url)."""
    refs, seen = [], set()
    for value in json_path_values(data, image_json_path):
        url = absolute_url(_json_url(value), page_url)
        if url and url not in seen:
            seen.add(url)
            refs.append(ImageRef(url))
    return refs


def find_json_next(data, page_url: str, *, next_json_path: str | None = None) -> str | None:
    """The next page of a JSON listing.

    With ``next_json_path`` (e.g. ``"data.pagination.next"``) the first URL there. Otherwise
    the shallowest key (three levels deep at most, lists not searched) named ``next``,
    ``next_page``, ``nextUrl``, ``next_page_url``... whose value is a URL or an object with an
    ``href``/``url``, as in most paginated APIs. A page number (``"next": 3``) is not a URL:
    use ``page_url_template`` for those.
    """
    if next_json_path:
        for value in json_path_values(data, next_json_path):
            url = absolute_url(_json_url(value), page_url)
            if url:
                return url
        return None
    level = [data]
    for _ in range(3):
        deeper = []
        for obj in level:
            if not isinstance(obj, dict):
                continue
            for key, value in obj.items():
                norm = str(key).lower().replace("_", "").replace("-", "")
                if norm in _JSON_NEXT_KEYS:
                    url = absolute_url(_json_url(value), page_url)
                    if url:
                        return url
                elif isinstance(value, dict):
                    deeper.append(value)
        level = deeper
    return None


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


# -- tables that grow row by row ------------------------------------------------------------


def _is_missing(value) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def _clean(value):
    """A parquet/pandas value as plain JSON-able Python (None, list, ISO time string)."""
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if hasattr(value, "tolist") and not isinstance(value, str):
        return value.tolist()  # numpy scalars and arrays (list columns)
    return None if _is_missing(value) else value


def _to_table(rows: Iterable[dict], columns: dict[str, str] = SCRAPE_COLUMNS) -> pd.DataFrame:
    df = pd.DataFrame(list(rows))
    if df.empty:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})
    for col, dtype in columns.items():
        if col not in df.columns:
            df[col] = None
        if dtype.startswith("datetime"):
            df[col] = pd.to_datetime(df[col], utc=True, format="ISO8601")
        elif dtype == "object":
            df[col] = [[] if _is_missing(v) else list(v) for v in df[col]]
        else:
            df[col] = df[col].astype(dtype)
    return df[list(columns)]


class _Journal:
    """A table keyed by ``url`` that survives a kill at any point.

    Each row is appended at once to ``.<name>.journal`` (one JSON line). The parquet file is
    rewritten atomically every :data:`CHECKPOINT_EVERY` rows or :data:`CHECKPOINT_S` seconds
    and by :meth:`flush`, which then empties the journal. Opening replays the journal over the
    parquet file (a line cut short by a kill is dropped) and folds it in.
    """

    def __init__(self, path: Path, columns: dict[str, str], *, what: str):
        self.path, self.columns = path, columns
        self.journal = path.with_name(f".{path.name}.journal")
        self.rows: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._pending = 0
        self._last = time.monotonic()
        if path.exists():
            df = storage.read_table(path, required=list(columns), what=what)
            for rec in df.to_dict("records"):
                self.rows[rec["url"]] = {k: _clean(v) for k, v in rec.items() if k in columns}
        if self.journal.exists():
            with self.journal.open(encoding="utf-8", errors="replace") as f:
                for line in f:
                    try:
                        row = json.loads(line)
                    except ValueError:
                        continue  # the last line of a killed run
                    if isinstance(row, dict) and row.get("url"):
                        self.rows[row["url"]] = row
            self.flush()

    def get(self, url: str) -> dict | None:
        with self._lock:
            return self.rows.get(url)

    def put(self, row: dict) -> None:
        row = {k: _clean(v) for k, v in row.items()}
        line = json.dumps(row, default=str, ensure_ascii=False)
        with self._lock:
            self.rows[row["url"]] = row
            with self.journal.open("a", encoding="utf-8") as f:
                f.write(line + "\n")
            self._pending += 1
            due = self._pending >= CHECKPOINT_EVERY or time.monotonic() - self._last > CHECKPOINT_S
            if due:
                self._write()

    def _write(self, order: Iterable[str] = ()) -> pd.DataFrame:
        keys = [k for k in dict.fromkeys(order) if k in self.rows]
        keys += [k for k in self.rows if k not in set(keys)]
        table = _to_table((self.rows[k] for k in keys), self.columns)
        storage.write_table(table, self.path)
        self.journal.unlink(missing_ok=True)  # after the write: a kill in between loses nothing
        self._pending, self._last = 0, time.monotonic()
        return table

    def flush(self, order: Iterable[str] = ()) -> pd.DataFrame:
        """Write the parquet file (rows in ``order`` first) and empty the journal."""
        with self._lock:
            return self._write(order)


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


def _validate(opts: dict) -> None:
    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise ConfigError(msg)

    need(opts["max_pages"] >= 1, f"max_pages must be >= 1, got {opts['max_pages']!r}")
    need(opts["concurrency"] >= 1, f"concurrency must be >= 1, got {opts['concurrency']!r}")
    need(opts["delay_s"] >= 0, f"delay_s must be >= 0 seconds, got {opts['delay_s']!r}")
    need(opts["timeout_s"] > 0, f"timeout_s must be > 0 seconds, got {opts['timeout_s']!r}")
    need(opts["max_retries"] >= 0, f"max_retries must be >= 0, got {opts['max_retries']!r}")
    need(opts["max_bytes"] > 0, f"max_bytes must be > 0, got {opts['max_bytes']!r}")
    need(opts["min_side"] >= 0, f"min_side must be >= 0 pixels, got {opts['min_side']!r}")
    need(
        opts["max_images"] is None or opts["max_images"] >= 1,
        f"max_images must be None or >= 1, got {opts['max_images']!r}",
    )
    template = opts["page_url_template"]
    need(
        template is None or "{page}" in template,
        f"page_url_template {template!r} has no '{{page}}' placeholder; "
        "use e.g. 'https://shop.example/shoes/?page={page}'",
    )
    need(
        not opts["json_mode"] or bool(opts["image_json_path"]),
        "json_mode=True needs image_json_path, e.g. 'data.products[*].images.main.url'",
    )
    need(
        not (opts["json_mode"] and opts["follow_product_pages"]),
        "follow_product_pages works on HTML listings; with json_mode=True point "
        "image_json_path at the gallery images instead, e.g. 'data.products[*].images.gallery'",
    )


def _row_done(row: dict | None, run_dir: Path, min_side: int) -> bool:
    """Whether an earlier row is final: an ``ok`` image still on disk, or a deliberate skip."""
    if not row:
        return False
    if row.get("status") == "ok":
        return bool(row.get("path")) and (run_dir / row["path"]).exists()
    if row.get("status") == "skipped":
        if row.get("reason") == "unsupported_format":
            return True
        if row.get("reason") == "too_small":
            w, h = row.get("width"), row.get("height")
            return w is not None and h is not None and min(w, h) < min_side
    return False  # failed rows (maybe transient) and robots skips are tried again


class _Scrape:
    """The state of one scrape: tables, worker pool, politeness, progress."""

    def __init__(self, run_dir: Path, opts: dict):
        self.run_dir, self.o = run_dir, opts
        self.images = _Journal(run_dir / SCRAPE_NAME, SCRAPE_COLUMNS, what="scrape manifest")
        self.pages = _Journal(run_dir / PAGES_NAME, PAGE_COLUMNS, what="scrape page table")
        key = {k: opts[k] for k in _PARSE_OPTIONS}
        key["version"] = PARSER_VERSION
        self.parse_key = storage.sha256_bytes(json.dumps(key, sort_keys=True).encode())[:16]
        self.session = net.make_session(
            user_agent=opts["user_agent"], proxy=opts["proxy"], pool_size=opts["concurrency"] + 2
        )
        self.limiter = net.HostRateLimiter(opts["delay_s"])
        self.fetch_kwargs = dict(
            timeout_s=opts["timeout_s"],
            max_retries=opts["max_retries"],
            allow_private_hosts=opts["allow_private_hosts"],
            rate_limiter=self.limiter,
        )
        self.robots = (
            RobotsCache(
                self.session,
                user_agent=opts["user_agent"],
                fetch_kwargs=self.fetch_kwargs,
                limiter=self.limiter,
            )
            if opts["respect_robots"]
            else None
        )
        for tmp in (run_dir / IMAGES_DIR).glob(".*.tmp"):  # left by a killed atomic write
            tmp.unlink(missing_ok=True)
        self.pool = ThreadPoolExecutor(opts["concurrency"], thread_name_prefix="scrape")
        self.found: dict[str, dict] = {}  # image URL -> where it was found, discovery order
        self.futures: list[Future] = []
        self.stats: Counter = Counter()
        self._stats_lock = threading.Lock()
        self.bar = tqdm(total=0, desc="images", unit="img")

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
        row["n_images"] = len(row.get("image_urls") or [])
        self.pages.put(row)
        return row

    def _read_page(self, url: str, kind: str) -> dict:
        o = self.o
        if self.robots is not None:
            allowed, reason = self.robots.allowed(url)
            if not allowed:
                return {"status": "skipped", "reason": reason}
        accept = net.ACCEPT_JSON if o["json_mode"] else net.ACCEPT_HTML
        r = net.fetch(
            self.session, url, accept=accept, max_bytes=o["max_bytes"], **self.fetch_kwargs
        )
        out = {"final_url": r.final_url, "http_status": r.status_code}
        if not r.ok:
            return dict(out, status="failed", reason=r.error, detail=r.detail)
        next_url = None
        if o["json_mode"]:
            try:
                data = json.loads(r.content)
            except ValueError:
                return dict(out, status="failed", reason="bad_json")
            refs = parse_json_listing(data, r.final_url, image_json_path=o["image_json_path"])
            next_url = find_json_next(data, r.final_url, next_json_path=o["next_json_path"])
            links: list[str] = []
        elif kind == "product":
            refs = parse_product(r.content, r.final_url, image_selector=o["image_selector"])
            links = []
        else:
            listing = parse_listing(
                r.content,
                r.final_url,
                item_selector=o["item_selector"],
                image_selector=None if o["follow_product_pages"] else o["image_selector"],
                next_selector=o["next_selector"],
            )
            refs, links, next_url = listing.images, listing.item_links, listing.next_url
            if not o["item_selector"] and self.stats["pages_fetched"] == 1:
                found = listing.item_selector or "none: images outside header/nav/footer"
                tqdm.write(f"scrape: product cards found with {found!r} (item_selector=None)")
        return dict(
            out,
            status="ok",
            reason=None,
            next_url=next_url or r.link("next"),
            image_urls=[normalize_url(x.url) or x.url for x in refs],
            image_alts=[x.alt for x in refs],
            item_links=[normalize_url(x) or x for x in links],
        )

    # -- images -------------------------------------------------------------------------

    def full(self) -> bool:
        return self.o["max_images"] is not None and len(self.found) >= self.o["max_images"]

    def add(self, row: dict, page: int) -> int:
        """Queue the images of a page row that are new; return how many were new."""
        new = 0
        for url, alt in zip(row["image_urls"], row["image_alts"], strict=False):
            if self.full():
                break
            if url in self.found:
                continue
            new += 1
            meta = {"page_url": row["final_url"], "page": page, "alt": alt}
            self.found[url] = meta
            if _row_done(self.images.get(url), self.run_dir, self.o["min_side"]):
                self.count("cached")
                continue
            self.count("fetched")
            self.bar.total += 1  # shown at the next update
            self.futures.append(self.pool.submit(self._download, url, meta))
        return new

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
        if self.robots is not None:
            allowed, reason = self.robots.allowed(url)
            if not allowed:
                return dict(row, status="skipped", reason=reason)
        r = net.fetch(
            self.session,
            url,
            accept=net.ACCEPT_IMAGES,
            max_bytes=o["max_bytes"],
            reject_types=_NOT_IMAGE_TYPES,
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
        if min(width, height) < o["min_side"]:
            return dict(row, status="skipped", reason="too_small")
        sha = storage.sha256_bytes(r.content)
        rel = f"{IMAGES_DIR}/{sha}.{images.FORMAT_EXTENSIONS[im.format]}"
        if not (self.run_dir / rel).exists():  # same bytes under another URL: stored once
            storage.atomic_write_bytes(self.run_dir / rel, r.content)
        return dict(row, status="ok", reason=None, sha256=sha, path=rel)

    # -- the crawl ----------------------------------------------------------------------

    def crawl(self, catalog_url: str) -> None:
        """Read listing pages in order (this thread); images download in the pool meanwhile."""
        o = self.o
        url: str | None = normalize_url(catalog_url) or catalog_url
        seen_pages: set[str] = set()
        seen_items: set[str] = set()
        page = 0
        bar = tqdm(total=o["max_pages"], desc="pages", unit="page", leave=False)
        try:
            while url and page < o["max_pages"] and not self.full():
                page += 1
                seen_pages.add(url)
                row = self.get_page(url, "listing", page)
                bar.update(1)
                if row["status"] != "ok":
                    if page == 1:
                        raise ScrapeError(_first_page_message(url, row))
                    tqdm.write(f"scrape: stopping at page {page} ({url}): {row['reason']}")
                    break
                if o["follow_product_pages"]:
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
                if o["page_url_template"] is not None:
                    if new == 0 and page > 1:
                        break  # past the last page: the site repeats or returns an empty page
                    url = o["page_url_template"].format(page=page + 1)
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
        :data:`DEFAULT_NEXT_SELECTORS`), else an HTTP ``Link: rel=next`` header.
    max_pages : int, default 20
        Listing pages visited at most.
    item_selector : str or None
        CSS selector of one catalog item (product card). Only images inside items are taken
        (page chrome such as logos and banners is ignored). ``None`` finds the cards with
        :func:`detect_items` (:data:`DEFAULT_ITEM_SELECTORS`, then repeated siblings).
    image_selector : str or None
        CSS selector of the wanted images (or of elements containing them) inside each item,
        or on product pages when ``follow_product_pages``. ``None``: every image of an item;
        on product pages the gallery (:data:`DEFAULT_GALLERY_SELECTORS`).
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
        workers (robots.txt ``Crawl-delay`` raises it, up to :data:`MAX_CRAWL_DELAY_S`; a
        ``429`` or ``Retry-After`` pauses the host).
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
        header (see :func:`find_json_next`).
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
    opts = dict(locals())
    opts.pop("run_dir")
    _validate(opts)
    run_dir = resolve(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    state = _Scrape(run_dir, opts)
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
    print(_summary_line(summary))
    return df


def to_image_manifest(scrape_df: pd.DataFrame) -> pd.DataFrame:
    """Rows for :func:`lookalike.storage.merge_manifest`: source ``"catalog"``, origin = URL."""
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
    return out.astype(storage.MANIFEST_COLUMNS)
