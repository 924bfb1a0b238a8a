"""The demo web's content: the shop catalog and brand sites, and the pages built from them.

:mod:`lookalike.demo` serves it over HTTP; this module only loads the demo data
(``data/demo``) and renders pages, JSON and images as bytes or text.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import html
import io
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from PIL import Image

from .exceptions import ConfigError

SHOP_HOST = "shop.test"
#: Products per listing page.
PAGE_SIZE = 24
#: Thumbnail widths served under ``/thumb/<width>/<file>``.
THUMB_WIDTHS = (128, 192)
#: How a brand homepage points at its icon; chosen per brand from a hash of its name.
ICON_MECHANISMS = (
    "svg-link",  # <link rel="icon" type="image/svg+xml" href="/logo.svg">
    "apple-touch-icon",  # <link rel="apple-touch-icon" sizes="180x180" href=...png>
    "png-link",  # <link rel="icon" sizes="192x192" href="/static/icon-192.png">, maybe <base>
    "manifest",  # <link rel="manifest" href="/site.webmanifest"> listing PNG icons
    "favicon-only",  # no markup at all; /favicon.ico holds 16..128 px frames
)
_GIF_1x1 = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"
CONTENT_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
}
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def _hash(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)


# --------------------------------------------------------------------------------------------
# data


@dataclass(frozen=True)
class Product:
    slug: str
    title: str
    category: str
    price: str
    files: tuple[str, ...]


@dataclass(frozen=True)
class Site:
    domain: str  # bare host, e.g. "github.test"
    slug: str  # logo file stem
    company: str
    mechanism: str
    base_href: bool  # png-link pages use <base href="/static/"> and a relative href
    www_redirects: bool  # www.<domain> answers 301 to the bare domain


def _site_domain(raw: str) -> str | None:
    """Loosely normalise a domains.csv entry to a bare ``x.test`` host (demo data only)."""
    text = raw.strip().lower()
    if not text or " " in text:
        return None
    if "//" not in text:
        text = "//" + text
    host = (urlsplit(text).hostname or "").rstrip(".")
    host = host.removeprefix("www.")
    labels = host.split(".")
    if len(labels) < 2 or not all(_LABEL.match(lb) for lb in labels):
        return None
    return host


class DemoData:
    """Everything the handler serves, loaded once; renders are cached in memory."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.shop_dir = data_dir / "shop"
        self.logo_dir = data_dir / "logos"
        catalog = self.shop_dir / "catalog.csv"
        domains = data_dir / "domains.csv"
        for p in (catalog, domains, self.logo_dir):
            if not p.exists():
                raise ConfigError(
                    f"demo data_dir={str(data_dir)!r} has no {p.name!r}; pass the folder "
                    "holding shop/, logos/ and domains.csv (default: data/demo), or rebuild it "
                    "with scripts/build_demo_data.py"
                )
        with catalog.open(newline="") as f:
            self.products = [
                Product(
                    slug=r["slug"],
                    title=r["title"],
                    category=r["category"],
                    price=r["price"],
                    files=tuple(x for x in r["files"].split(";") if x),
                )
                for r in csv.DictReader(f)
            ]
        self.by_slug = {p.slug: p for p in self.products}
        self.shop_files = {f for p in self.products for f in p.files}
        self.n_pages = max(1, -(-len(self.products) // PAGE_SIZE))

        self.sites: dict[str, Site] = {}
        with domains.open(newline="") as f:
            for row in csv.DictReader(f):
                domain = _site_domain(row.get("domain") or "")
                if domain is None or domain in self.sites or domain == SHOP_HOST:
                    continue
                slug = domain.rsplit(".", 1)[0]
                if not (self.logo_dir / f"{slug}.png").exists():
                    continue  # listed but not served: behaves like an unreachable site
                h = _hash(slug)
                self.sites[domain] = Site(
                    domain=domain,
                    slug=slug,
                    company=(row.get("company") or "").strip() or slug.capitalize(),
                    mechanism=ICON_MECHANISMS[h % len(ICON_MECHANISMS)],
                    base_href=bool((h >> 8) & 1),
                    www_redirects=bool((h >> 9) & 1),
                )

    # -- cached renders (the same image is asked for by many threads; compute it once) --------

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - one instance per server, lives with it
    def logo_png(self, slug: str, side: int, *, opaque: bool = False) -> bytes:
        img = Image.open(self.logo_dir / f"{slug}.png").convert("RGBA")
        if opaque:  # apple-touch-icons are opaque squares with some padding
            canvas = Image.new("RGBA", (side, side), (255, 255, 255, 255))
            inner = round(side * 0.8)
            small = img.resize((inner, inner), Image.LANCZOS)
            canvas.alpha_composite(small, ((side - inner) // 2, (side - inner) // 2))
            img = canvas.convert("RGB")
        elif img.size != (side, side):
            img = img.resize((side, side), Image.LANCZOS)
        buf = io.BytesIO()
        img.save(buf, "PNG", optimize=True)
        return buf.getvalue()

    @functools.lru_cache(maxsize=4096)  # noqa: B019
    def favicon(self, slug: str, *, big: bool) -> bytes:
        img = Image.open(self.logo_dir / f"{slug}.png").convert("RGBA")
        sizes = (
            [(16, 16), (32, 32), (48, 48), (64, 64), (128, 128)] if big else [(16, 16), (32, 32)]
        )
        buf = io.BytesIO()
        img.save(buf, "ICO", sizes=sizes)
        return buf.getvalue()

    @functools.lru_cache(maxsize=2048)  # noqa: B019
    def thumbnail(self, file: str, width: int) -> bytes:
        img = Image.open(self.shop_dir / file).convert("RGB")
        img = img.resize((width, round(img.height * width / img.width)), Image.LANCZOS)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=80)
        return buf.getvalue()

    @functools.lru_cache(maxsize=8192)  # noqa: B019
    def file_bytes(self, path: Path) -> bytes:
        return path.read_bytes()


# --------------------------------------------------------------------------------------------
# pages


def html_page(title: str, head: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"{head}</head>\n<body>\n{body}</body>\n</html>\n"
    )


def _card_img(p: Product) -> str:
    """Listing thumbnail markup; the style varies per product like on real shops."""
    f = p.files[0]
    alt = html.escape(p.title)
    style = _hash("img:" + p.slug) % 5
    if style == 0:
        return f'<img src="/img/{f}" alt="{alt}" width="256" height="256">'
    if style == 1:  # relative to /shoes/
        return f'<img src="../img/{f}" alt="{alt}">'
    if style == 2:  # lazy loading: the real URL is in data-src, protocol-relative
        return (
            f'<img class="lazy" src="{_GIF_1x1}" data-src="//{SHOP_HOST}/img/{f}" '
            f'alt="{alt}" loading="lazy">'
        )
    if style == 3:  # density descriptors; 2x is the full image
        return f'<img src="/thumb/128/{f}" srcset="/thumb/128/{f} 1x, /img/{f} 2x" alt="{alt}">'
    return (  # width descriptors; the widest candidate is the full image
        f'<img src="/thumb/128/{f}" srcset="/thumb/128/{f} 128w, /thumb/192/{f} 192w, '
        f'http://{SHOP_HOST}/img/{f} 256w" sizes="(max-width: 600px) 50vw, 200px" alt="{alt}">'
    )


def listing(data: DemoData, page: int) -> str:
    items = data.products[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    head = f'<link rel="canonical" href="http://{SHOP_HOST}/shoes/?page={page}">\n'
    if page > 1:
        head += f'<link rel="prev" href="/shoes/?page={page - 1}">\n'
    if page < data.n_pages:
        head += f'<link rel="next" href="/shoes/?page={page + 1}">\n'
    cards = []
    for p in items:
        href = f"/product/{p.slug}" if _hash("a:" + p.slug) % 3 else f"../product/{p.slug}"
        cards.append(
            f'<div class="product" data-sku="{p.slug}">\n'
            f'  <a href="{href}">{_card_img(p)}</a>\n'
            f'  <h2 class="title"><a href="{href}">{html.escape(p.title)}</a></h2>\n'
            f'  <span class="category">{html.escape(p.category)}</span>\n'
            f'  <span class="price">${p.price}</span>\n</div>\n'
        )
    nav = ['<nav class="pagination">']
    if page > 1:
        nav.append(f'<a rel="prev" class="prev" href="?page={page - 1}">Previous</a>')
    nav += [
        f'<a href="/shoes/?page={n}"{" aria-current=page" if n == page else ""}>{n}</a>'
        for n in range(1, data.n_pages + 1)
    ]
    if page < data.n_pages:
        nav.append(f'<a rel="next" class="next" href="?page={page + 1}">Next</a>')
    nav.append("</nav>\n")
    body = (
        '<header><a href="/">Demo Shop</a> &rsaquo; All products</header>\n'
        f"<h1>All products (page {page} of {data.n_pages})</h1>\n"
        f'<main class="products">\n{"".join(cards)}</main>\n' + "\n".join(nav)
    )
    return html_page(f"All products - page {page} - Demo Shop", head, body)


def product_page(p: Product) -> str:
    imgs = []
    for i, f in enumerate(p.files, 1):
        src = f"/img/{f}" if i % 2 else f"http://{SHOP_HOST}/img/{f}"
        imgs.append(f'  <img src="{src}" alt="{html.escape(p.title)}, image {i}">')
    body = (
        f'<header><a href="/">Demo Shop</a> &rsaquo; <a href="/shoes/">All products</a></header>\n'
        f'<div class="product-detail" data-sku="{p.slug}">\n'
        f"<h1>{html.escape(p.title)}</h1>\n"
        f'<p class="price">${p.price}</p>\n'
        f'<p class="category">{html.escape(p.category)}</p>\n'
        f'<div class="gallery">\n' + "\n".join(imgs) + "\n</div>\n</div>\n"
    )
    return html_page(f"{p.title} - Demo Shop", "", body)


def listing_json(data: DemoData, page: int) -> dict:
    items = data.products[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    base = f"http://{SHOP_HOST}"
    products = [
        {
            "slug": p.slug,
            "title": p.title,
            "category": p.category,
            "price": float(p.price),
            "url": f"{base}/product/{p.slug}",
            "images": {
                "main": {"url": f"{base}/img/{p.files[0]}"},
                "gallery": [{"url": f"{base}/img/{f}"} for f in p.files],
            },
        }
        for p in items
    ]
    nxt = f"{base}/shoes.json?page={page + 1}" if page < data.n_pages else None
    return {
        "data": {
            "products": products,
            "pagination": {"page": page, "pages": data.n_pages, "next": nxt},
        }
    }


def site_home(site: Site) -> str:
    name = html.escape(site.company)
    head, m = "", site.mechanism
    if m == "svg-link":
        head = '<link rel="icon" type="image/svg+xml" href="/logo.svg">\n'
    elif m == "apple-touch-icon":
        head = '<link rel="apple-touch-icon" sizes="180x180" href="/apple-touch-icon.png">\n'
    elif m == "png-link":
        if site.base_href:
            head = (
                '<base href="/static/">\n'
                '<link rel="icon" type="image/png" sizes="192x192" href="icon-192.png">\n'
            )
        else:
            head = (
                '<link rel="icon" type="image/png" sizes="192x192" href="/static/icon-192.png">\n'
            )
    elif m == "manifest":
        head = '<link rel="manifest" href="/site.webmanifest">\n'
    head += '<meta name="theme-color" content="#ffffff">\n'
    body = (
        f'<header><span class="brand">{name}</span>\n'
        '<nav><a href="/about">About</a> <a href="/contact">Contact</a></nav></header>\n'
        f"<main><h1>Welcome to {name}</h1>\n<p>This is the demo homepage of {name}.</p></main>\n"
    )
    return html_page(name, head, body)


def web_manifest(site: Site) -> dict:
    return {
        "name": site.company,
        "short_name": site.company[:12],
        "start_url": "/",
        "display": "standalone",
        "icons": [  # src is relative to the manifest URL
            {"src": "android-chrome-96x96.png", "sizes": "96x96", "type": "image/png"},
            {"src": "/android-chrome-192x192.png", "sizes": "192x192", "type": "image/png"},
        ],
    }
