"""lookalike.scrape: HTML parsing on strings, and whole scrapes against a local HTTP server."""

from __future__ import annotations

import collections
import io as pyio
import json
import time

import pandas as pd
import pytest
from PIL import Image

from lookalike import io, scrape
from lookalike.exceptions import ConfigError, ScrapeError


def image_bytes(fmt="PNG", size=(64, 48), color=(200, 30, 30)):
    im = Image.new("RGB", size, color)
    im.putpixel((0, 0), (color[2], color[0], color[1]))  # not a flat image
    buf = pyio.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


def html(body):
    return (200, {"Content-Type": "text/html; charset=utf-8"}, body.encode())


def img(data, ctype="image/png"):
    return (200, {"Content-Type": ctype}, data)


# -- parsing on strings -----------------------------------------------------------------------


def test_parse_srcset_and_pick_largest():
    c = scrape.parse_srcset("a.jpg 320w, b.jpg 1024w,c.jpg 640w")
    assert c == [("a.jpg", 320.0, "w"), ("b.jpg", 1024.0, "w"), ("c.jpg", 640.0, "w")]
    assert scrape.best_srcset_url(c, "http://s.test/p/") == "http://s.test/p/b.jpg"
    c = scrape.parse_srcset("/img/x.jpg, /img/x@2x.jpg 2x, /img/x@3x.jpg 3x")
    assert scrape.best_srcset_url(c, "http://s.test/") == "http://s.test/img/x@3x.jpg"
    # commas inside a URL (image CDNs) are not separators
    c = scrape.parse_srcset(
        "https://cdn.test/f_auto,w_200/a.jpg 200w, https://cdn.test/f_auto,w_800/a.jpg 800w"
    )
    assert [u for u, _, _ in c] == [
        "https://cdn.test/f_auto,w_200/a.jpg",
        "https://cdn.test/f_auto,w_800/a.jpg",
    ]
    assert scrape.best_srcset_url([], "http://s.test/") is None


def test_extract_images_lazy_attrs_srcset_picture_base_and_placeholders():
    page = """<html><head><base href="https://cdn.test/assets/"></head><body>
      <img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" data-src="lazy1.jpg" alt=" Red  shoe ">
      <img src="/img/spacer.gif" data-lazy-src="lazy2.jpg">
      <img src="placeholder.png" data-original="//other.test/orig.jpg">
      <img src="small.jpg" srcset="small.jpg 200w, big.jpg 1200w">
      <img src="plain.png" title="Plain">
      <img src="data:image/png;base64,AAAA">
      <img src="javascript:void(0)">
      <picture>
        <source type="image/webp" srcset="pic-800.webp 800w, pic-1600.webp 1600w">
        <source srcset="pic-400.jpg 400w">
        <img src="pic-fallback.jpg" alt="pic">
      </picture>
      <img src="plain.png">
    </body></html>"""
    refs = scrape.extract_images(page, "https://shop.test/list?page=1")
    assert [(r.url, r.alt) for r in refs] == [
        ("https://cdn.test/assets/lazy1.jpg", "Red shoe"),
        ("https://cdn.test/assets/lazy2.jpg", ""),
        ("https://other.test/orig.jpg", ""),
        ("https://cdn.test/assets/big.jpg", ""),
        ("https://cdn.test/assets/plain.png", "Plain"),
        ("https://cdn.test/assets/pic-1600.webp", "pic"),
    ]


def test_extract_images_without_base_uses_page_url_and_selector_scopes():
    page = """<div class="hdr"><img src="/logo.png"></div>
      <div class="product"><a href="/p/1"><img src="a.jpg"></a></div>
      <div class="product"><a href="p/2"><img src="b.jpg#frag"></a></div>"""
    refs = scrape.extract_images(page, "http://s.test/list/", selector="div.product img")
    assert [r.url for r in refs] == ["http://s.test/list/a.jpg", "http://s.test/list/b.jpg"]
    listing = scrape.parse_listing(page, "http://s.test/list/", item_selector="div.product")
    assert [r.url for r in listing.images] == [
        "http://s.test/list/a.jpg",
        "http://s.test/list/b.jpg",
    ]
    assert listing.item_links == ["http://s.test/p/1", "http://s.test/list/p/2"]
    assert listing.next_url is None


@pytest.mark.parametrize(
    "markup, selector, expected",
    [
        ('<link rel="next" href="?page=2"><a rel="next" href="/x">n</a>', None, "?page=2"),
        ('<a class="pg" rel="prev next" href="/list/3">next</a>', None, "/list/3"),
        ('<li class="nxt"><a href="/list/9">»</a></li>', "li.nxt", "/list/9"),
        ('<a href="/list/2">2</a>', None, None),
    ],
)
def test_find_next_url(markup, selector, expected):
    got = scrape.find_next_url(markup, "http://s.test/list/", next_selector=selector)
    if expected is None:
        assert got is None
    else:
        assert got == __import__("urllib.parse").parse.urljoin("http://s.test/list/", expected)


def test_json_path_values():
    data = {
        "data": {
            "products": [
                {"images": {"main": {"url": "/a.jpg"}}},
                {"images": {}},
                {"images": {"main": {"url": "/b.jpg"}}},
            ]
        }
    }
    assert scrape.json_path_values(data, "data.products[*].images.main.url") == ["/a.jpg", "/b.jpg"]
    assert scrape.json_path_values(data, "$.data.products[2].images.main.url") == ["/b.jpg"]
    assert scrape.json_path_values({"u": ["x", "y"]}, "u") == ["x", "y"]
    assert scrape.json_path_values(data, "nope[*].url") == []


# -- whole scrapes ------------------------------------------------------------------------------


def listing_page(imgs, next_href=None, products=()):
    items = "".join(
        f'<div class="product"><a href="{href}"><img {attrs}></a></div>' for href, attrs in products
    )
    tags = "".join(f"<img {a}>" for a in imgs)
    nxt = f'<link rel="next" href="{next_href}">' if next_href else ""
    return html(f"<html><head>{nxt}</head><body>{tags}{items}</body></html>")


@pytest.fixture
def catalog(serve):
    red, blue, green = image_bytes(), image_bytes(color=(0, 0, 220)), image_bytes(color=(0, 200, 0))
    jpeg = image_bytes("JPEG", (80, 60), (10, 120, 200))
    routes = {
        "/robots.txt": (
            200,
            {"Content-Type": "text/plain"},
            b"User-agent: *\nDisallow: /private/\n",
        ),
        "/shop/": listing_page(
            [
                'src="/img/red.png" alt="red"',
                'src="data:image/gif;base64,R0lGOD" data-src="/img/photo.jpg"',  # PNG bytes
                'srcset="/img/blue-small.png 100w, /img/blue.png 800w"',
            ],
            next_href="/shop/?page=2",
        ),
        "/shop/?page=2": listing_page(
            [
                'src="/img/red-copy.png"',  # same bytes as red.png
                'src="/img/tiny.png"',
                'src="/img/not-an-image.png"',
                'src="/img/truncated.jpg"',
                'src="/img/missing.png"',
                'src="/private/secret.png"',
                'src="/img/red.png"',  # seen on page 1: fetched once
            ],
            next_href="/shop/?page=3",
        ),
        "/shop/?page=3": listing_page(['src="/img/green.png"'], next_href="/shop/"),
        "/img/red.png": img(red),
        "/img/red-copy.png": img(red),
        "/img/photo.jpg": img(blue, "image/jpeg"),  # the URL lies; the bytes are PNG
        "/img/blue.png": img(image_bytes(size=(120, 90), color=(0, 0, 255))),
        "/img/blue-small.png": img(blue),
        "/img/green.png": img(green),
        "/img/tiny.png": img(image_bytes(size=(8, 8))),
        "/img/not-an-image.png": html("<html><body>Please log in</body></html>"),
        "/img/truncated.jpg": img(jpeg[: len(jpeg) * 2 // 3], "image/jpeg"),
        "/private/secret.png": img(green),
    }
    return serve(routes)


OPTS = dict(allow_private_hosts=True, timeout_s=5.0, max_retries=0, concurrency=3)


def test_scrape_catalog_end_to_end(catalog, tmp_path, capsys):
    run = tmp_path / "run"
    df = scrape.scrape_catalog(catalog.url + "/shop/", run, **OPTS)
    assert list(df.columns) == list(scrape.SCRAPE_COLUMNS)
    by = df.set_index("url")
    u = catalog.url
    assert len(df) == 10 and df["url"].is_unique
    assert set(by.loc[by.status == "ok"].index) == {
        f"{u}/img/red.png",
        f"{u}/img/photo.jpg",
        f"{u}/img/blue.png",
        f"{u}/img/red-copy.png",
        f"{u}/img/green.png",
    }
    assert by.loc[f"{u}/img/tiny.png", ["status", "reason"]].tolist() == ["skipped", "too_small"]
    assert by.loc[f"{u}/img/not-an-image.png", "reason"] == "html"
    assert by.loc[f"{u}/img/truncated.jpg", ["status", "reason"]].tolist() == ["failed", "corrupt"]
    assert by.loc[f"{u}/img/missing.png", ["reason", "http_status"]].tolist() == ["http_404", 404]
    assert by.loc[f"{u}/private/secret.png", ["status", "reason"]].tolist() == [
        "skipped",
        "robots_disallowed",
    ]
    assert catalog.hits["/private/secret.png"] == 0
    # each URL once; srcset's largest candidate only; pages 1..3 then the loop back is noticed
    assert catalog.hits["/img/red.png"] == 1 and catalog.hits["/img/blue-small.png"] == 0
    assert catalog.hits["/shop/"] == 1
    assert by.loc[f"{u}/img/green.png", "page"] == 3
    assert by.loc[f"{u}/img/red.png", "alt"] == "red"
    # extension from the decoded bytes, not the URL; duplicates share one file
    assert by.loc[f"{u}/img/photo.jpg", "path"].endswith(".png")
    red, copy = by.loc[f"{u}/img/red.png"], by.loc[f"{u}/img/red-copy.png"]
    assert red["sha256"] == copy["sha256"] and red["path"] == copy["path"]
    files = sorted(p.name for p in (run / "images").iterdir())
    assert len(files) == 4 and not any(f.startswith(".") for f in files)
    for row in df[df.status == "ok"].itertuples():
        data = (run / row.path).read_bytes()
        assert io.sha256_bytes(data) == row.sha256 == row.path.split("/")[1].split(".")[0]
        assert Image.open(run / row.path).size == (row.width, row.height)
    assert pd.read_parquet(run / "scrape.parquet").equals(df)
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert out.startswith("scrape: 3 pages, 10 images found, 5 downloaded")
    assert "too_small: 1" in out and "http_404: 1" in out
    # the generic manifest
    m = scrape.to_image_manifest(df)
    assert list(m.columns) == list(io.MANIFEST_COLUMNS)
    assert set(m["source"]) == {"catalog"} and m["origin"].tolist() == df["url"].tolist()
    merged = io.merge_manifest(run, m)
    assert len(merged) == 10


def test_rerun_does_not_refetch_stored_images(catalog, tmp_path):
    run = tmp_path / "run"
    first = scrape.scrape_catalog(catalog.url + "/shop/", run, **OPTS)
    before = collections.Counter(catalog.hits)
    removed = first.set_index("url").loc[catalog.url + "/img/green.png", "path"]
    (run / removed).unlink()
    second = scrape.scrape_catalog(catalog.url + "/shop/", run, **OPTS)
    refetched = {k for k in catalog.hits if k.startswith("/img/") and catalog.hits[k] > before[k]}
    # ok rows with their file are kept; the deleted file and the failures are tried again
    assert refetched == {
        "/img/green.png",
        "/img/tiny.png",
        "/img/not-an-image.png",
        "/img/truncated.jpg",
        "/img/missing.png",
    }
    assert (run / removed).exists()
    assert second["status"].tolist() == first["status"].tolist()


def test_template_pagination_stops_when_nothing_new(serve, tmp_path):
    def page(n):
        if n > 3:  # the site repeats its last page forever
            n = 3
        return listing_page([f'src="/img/{n}.png"'])

    routes = {"/robots.txt": (404, {}, b""), "/list": page(1)}
    routes.update({f"/list?p={n}": page(n) for n in range(2, 10)})
    routes.update({f"/img/{n}.png": img(image_bytes(color=(n * 40, 0, 0))) for n in range(1, 4)})
    srv = serve(routes)
    df = scrape.scrape_catalog(
        srv.url + "/list", tmp_path, page_url_template=srv.url + "/list?p={page}", **OPTS
    )
    assert df["page"].tolist() == [1, 2, 3] and (df.status == "ok").all()
    assert srv.hits["/list?p=4"] == 1 and srv.hits["/list?p=5"] == 0


def test_follow_product_pages_and_max_images(serve, tmp_path):
    routes = {
        "/robots.txt": (200, {}, b"User-agent: *\nAllow: /\n"),
        "/c": listing_page(
            ['src="/img/banner.png"'],
            products=[("/p/1", 'src="/img/t1.png"'), ("/p/2", 'src="/img/t2.png"')],
        ),
        "/p/1": html('<div class="gallery"><img src="/img/g1a.png"><img src="/img/g1b.png"></div>'),
        "/p/2": html('<img src="/img/logo.png"><div class="gallery"><img src="/img/g2.png"></div>'),
    }
    for i, name in enumerate(["banner", "t1", "t2", "g1a", "g1b", "g2", "logo"]):
        routes[f"/img/{name}.png"] = img(image_bytes(color=(i * 30, 100, 50)))
    srv = serve(routes)
    df = scrape.scrape_catalog(
        srv.url + "/c",
        tmp_path / "a",
        item_selector="div.product",
        image_selector=".gallery img",
        follow_product_pages=True,
        **OPTS,
    )
    assert sorted(u.rsplit("/", 1)[1] for u in df["url"]) == ["g1a.png", "g1b.png", "g2.png"]
    assert set(df["page_url"]) == {srv.url + "/p/1", srv.url + "/p/2"}
    df = scrape.scrape_catalog(srv.url + "/c", tmp_path / "b", max_images=2, **OPTS)
    assert len(df) == 2
    df = scrape.scrape_catalog(srv.url + "/c", tmp_path / "c", item_selector=".product", **OPTS)
    assert sorted(u.rsplit("/", 1)[1] for u in df["url"]) == ["t1.png", "t2.png"]


def test_json_mode(serve, tmp_path):
    payload = {
        "data": {"products": [{"images": {"main": {"url": f"/img/{i}.png"}}} for i in range(3)]}
    }
    routes = {
        "/robots.txt": (404, {}, b""),
        "/api/products": (200, {"Content-Type": "application/json"}, json.dumps(payload).encode()),
    }
    routes.update({f"/img/{i}.png": img(image_bytes(color=(0, i * 60, 0))) for i in range(3)})
    srv = serve(routes)
    df = scrape.scrape_catalog(
        srv.url + "/api/products",
        tmp_path,
        json_mode=True,
        image_json_path="data.products[*].images.main.url",
        **OPTS,
    )
    assert df["url"].tolist() == [f"{srv.url}/img/{i}.png" for i in range(3)]
    assert (df["status"] == "ok").all()


def test_first_page_problems_raise_scrape_error(serve, tmp_path):
    srv = serve(
        {
            "/robots.txt": (200, {}, b"User-agent: *\nDisallow: /shop/\n"),
            "/shop/": listing_page(['src="/a.png"']),
        }
    )
    with pytest.raises(ScrapeError, match="robots_disallowed"):
        scrape.scrape_catalog(srv.url + "/shop/", tmp_path, **OPTS)
    assert srv.hits["/shop/"] == 0
    # respect_robots=False is the explicit opt-out
    df = scrape.scrape_catalog(srv.url + "/shop/", tmp_path, respect_robots=False, **OPTS)
    assert df["reason"].tolist() == ["http_404"]
    # a local server is refused unless the caller allows private hosts
    with pytest.raises(ScrapeError, match="private_address.*allow_private_hosts=True"):
        scrape.scrape_catalog(srv.url + "/shop/", tmp_path / "x", timeout_s=2.0)
    assert srv.hits["/shop/"] == 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"page_url_template": "http://s.test/?p=1"}, "{page}"),
        ({"json_mode": True}, "image_json_path"),
        ({"follow_product_pages": True}, "item_selector"),
        ({"concurrency": 0}, "concurrency"),
        ({"max_pages": 0}, "max_pages"),
    ],
)
def test_bad_options_raise_config_error(tmp_path, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        scrape.scrape_catalog("http://s.test/", tmp_path, **kwargs)


def test_network_failures_become_rows(serve, tmp_path):
    def slow(n):
        time.sleep(1.5)
        return img(image_bytes())

    routes = {
        "/robots.txt": (404, {}, b""),
        "/c": listing_page(
            [f'src="/img/{name}.png"' for name in ("flaky", "slow", "big", "loop", "busy")]
        ),
        "/img/flaky.png": lambda n: (500, {}, b"") if n == 1 else img(image_bytes()),
        "/img/slow.png": slow,
        "/img/big.png": img(image_bytes(size=(400, 400)) + b"\0" * 50_000),
        "/img/loop.png": (302, {"Location": "/img/loop.png?again"}, b""),
        "/img/loop.png?again": (302, {"Location": "/img/loop.png"}, b""),
        "/img/busy.png": lambda n: (
            (429, {"Retry-After": "0"}, b"") if n == 1 else img(image_bytes(color=(1, 2, 3)))
        ),
    }
    srv = serve(routes)
    opts = dict(OPTS, max_retries=1, timeout_s=0.5, max_bytes=20_000)
    df = scrape.scrape_catalog(srv.url + "/c", tmp_path, **opts)
    got = {
        url.rsplit("/", 1)[1]: (row.status, row.reason if row.status != "ok" else "")
        for url, row in df.set_index("url").iterrows()
    }
    assert got == {
        "flaky.png": ("ok", ""),
        "slow.png": ("failed", "timeout"),
        "big.png": ("failed", "too_large"),
        "loop.png": ("failed", "redirect_loop"),
        "busy.png": ("ok", ""),
    }
    assert srv.hits["/img/flaky.png"] == 2 and srv.hits["/img/busy.png"] == 2
