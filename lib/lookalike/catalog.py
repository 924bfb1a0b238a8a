"""Reading a catalog's pages: image URLs, product links and the next page (HTML and JSON).

Stage 01 (:mod:`lookalike.scrape`) fetches the pages; this module only parses them. Every
function takes the page (bytes, text or a parsed ``BeautifulSoup``) and its URL, and returns
absolute http(s) URLs (``<base href>`` honoured; see :func:`lookalike.net.absolute_url`).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from bs4 import BeautifulSoup

from .net import absolute_url, base_url

# Lazy-loading attributes, in order of preference, after the srcset-style ones.
_SRCSET_ATTRS = ("data-srcset", "data-lazy-srcset", "srcset")
_SRC_ATTRS = ("data-lazy-src", "data-src", "data-original", "data-lazy", "data-lazyload", "src")
_BG_ATTRS = ("data-bg", "data-background", "data-background-image", "data-bg-src")
_CSS_URL_RE = re.compile(r"url\(\s*(['\"]?)(.+?)\1\s*\)", re.IGNORECASE)
# A file whose name is made only of these words (and sizes such as 1x1) is a placeholder.
# Colour words (grey.jpg, clear.png) are not among them: a product photo may be named so.
_PLACEHOLDER_WORDS = frozenset(
    "blank spacer placeholder transparent pixel lazy loading loader empty dummy".split()
)
# ... and so is one whose name, without separators, is one of these ("no-image.png").
_PLACEHOLDER_NAMES = frozenset({"noimage", "nophoto", "noimg", "noimageavailable", "nopicture"})
_NAME_TOKEN_RE = re.compile(r"[^a-z0-9]+")
_SIZE_RE = re.compile(r"\d+(x\d+)?")
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


# -- parsing --------------------------------------------------------------------------------


@dataclass
class ImageRef:
    """An image URL found on a page, with its alt text.

    ``placeholder`` is True when the element showed nothing but a placeholder (see
    :func:`is_placeholder`): stage 01 records it as ``skipped`` without fetching it.
    """

    url: str
    alt: str = ""
    placeholder: bool = False


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


def is_placeholder(url: str) -> bool:
    """Whether the file name of ``url`` says it is a placeholder, not a picture.

    ``blank.gif``, ``spacer.png``, ``lazy-placeholder.svg``, ``1x1.gif``, ``no-image.png``;
    not ``lazy-bg.jpg``, nor a colour word such as ``grey.jpg`` (a product may be grey).
    """
    stem = urlsplit(url).path.rsplit("/", 1)[-1].rsplit(".", 1)[0].lower()
    tokens = [t for t in _NAME_TOKEN_RE.split(stem) if t]
    if not tokens or all(_SIZE_RE.fullmatch(t) for t in tokens):
        return stem in ("1x1", "0x0")
    if "".join(t for t in tokens if not _SIZE_RE.fullmatch(t)) in _PLACEHOLDER_NAMES:
        return True
    return all(t in _PLACEHOLDER_WORDS or _SIZE_RE.fullmatch(t) for t in tokens)


def _usable(url: str | None) -> bool:
    return bool(url) and not is_placeholder(url)


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


def _img_url(img, base: str, extra_candidates=()) -> tuple[str | None, bool]:
    """``(url, placeholder)``: the best usable URL, else the placeholder it shows, if any."""
    candidates = list(extra_candidates)
    for attr in _SRCSET_ATTRS:
        if img.get(attr):
            candidates += parse_srcset(img[attr])
    url = best_srcset_url(candidates, base)
    if url:
        return url, False
    shown = [absolute_url(u, base) for u, _, _ in candidates]
    for attr in _SRC_ATTRS:
        url = absolute_url(img.get(attr), base)
        if _usable(url):
            return url, False
        shown.append(url)
    return next(((u, True) for u in shown if u), (None, False))


def _background_url(el, base: str) -> tuple[str | None, bool]:
    """A CSS ``background-image: url(...)`` in the style attribute, or a lazy ``data-bg``.

    ``(url, placeholder)`` as for :func:`_img_url`.
    """
    shown = []
    for attr in _BG_ATTRS:
        value = el.get(attr)
        if value:
            match = _CSS_URL_RE.search(value)
            shown.append(absolute_url(match.group(2) if match else value, base))
    style = el.get("style") or ""
    if "url(" in style.lower() and "background" in style.lower():
        shown += [absolute_url(m.group(2), base) for m in _CSS_URL_RE.finditer(style)]
    url = next((u for u in shown if _usable(u)), None)
    if url:
        return url, False
    return next(((u, True) for u in shown if u), (None, False))


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
        lazy ``data-bg`` attributes. ``data:`` URIs are skipped. An element that shows only a
        placeholder file (:func:`is_placeholder`: ``blank.gif``, ``spacer.png``...) or is a
        1x1 tracking pixel gives a ref with ``placeholder=True`` (a lazy-loading placeholder
        beside the real URL gives the real one).
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
            if img is not None:
                url, placeholder = _img_url(img, base, extra)
            else:
                url, placeholder = best_srcset_url(extra, base), False
            alt = (img.get("alt") or "") if img is not None else ""
        elif el.name == "img":
            url, placeholder = _img_url(el, base)
            placeholder = placeholder or (url is not None and _is_tracking_pixel(el))
            alt = el.get("alt") or el.get("title") or ""
        else:
            url, placeholder = _background_url(el, base)
            alt = el.get("aria-label") or el.get("title") or ""
        if url and url not in seen:
            seen.add(url)
            refs.append(ImageRef(url, " ".join(alt.split()), placeholder))
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


def _json_alt(value) -> str:
    """The ``alt``, ``title`` or ``name`` of an image object (a product title), or ""."""
    if not isinstance(value, dict):
        return ""
    text = next((v for k in ("alt", "title", "name") if isinstance(v := value.get(k), str)), "")
    return " ".join(text.split())


def parse_json_listing(data, page_url: str, *, image_json_path: str) -> list[ImageRef]:
    """Image URLs of a JSON listing at ``image_json_path`` (strings, or objects with a url
    and maybe an ``alt``, ``title`` or ``name``: the image's label)."""
    refs, seen = [], set()
    for value in json_path_values(data, image_json_path):
        url = absolute_url(_json_url(value), page_url)
        if url and url not in seen:
            seen.add(url)
            refs.append(ImageRef(url, _json_alt(value)))
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
