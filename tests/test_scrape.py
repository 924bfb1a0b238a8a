"""lookalike.scrape: its tables and summary, then whole scrapes of a local catalog site.

The site (``shop_site``) is served on 127.0.0.1 by tests/webserver.py and holds every case
of issue 3: lazy attributes, srcset and <picture>, <noscript> and CSS background images,
JSON mode, a robots.txt that disallows a section, a 429 with Retry-After, a 500 that
succeeds on retry, a page and an image that time out, HTML where an image should be, a
truncated JPEG, a huge image (bytes cap) and a decompression bomb, one image under two URLs,
and a redirect loop. ``SHOP_EXPECTED`` is the outcome of every image URL.
"""

from __future__ import annotations

import collections
import io as pyio
import json
import os
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest
from PIL import Image

from lookalike import scrape, storage
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


def card(attrs, cls="product-card", href="/p/1"):
    return f'<div class="{cls}"><a href="{href}"><img {attrs}></a><h2>t</h2></div>'


# -- tables and summaries ------------------------------------------------------------------


def test_journal_replays_rows_and_drops_a_torn_line(tmp_path):
    path = tmp_path / "t.parquet"
    j = storage.Journal(path, scrape.PAGE_COLUMNS, what="t")
    j.put({"url": "u1", "status": "ok", "image_urls": ["a", "b"], "page": 1})
    j.put({"url": "u2", "status": "failed", "reason": "timeout", "page": 2})
    assert not path.exists() and j.journal.exists()  # not folded yet, but already on disk
    with j.journal.open("a") as f:
        f.write('{"url": "u3", "status": "o')  # a kill in the middle of a line
    again = storage.Journal(path, scrape.PAGE_COLUMNS, what="t")
    assert set(again.rows) == {"u1", "u2"} and not again.journal.exists()
    df = pd.read_parquet(path)
    assert df["url"].tolist() == ["u1", "u2"] and list(df["image_urls"][0]) == ["a", "b"]
    again.put({"url": "u1", "status": "failed", "reason": "http_500"})  # an upsert, not a dup
    assert again.flush()["url"].tolist() == ["u1", "u2"]
    assert storage.Journal(path, scrape.PAGE_COLUMNS, what="t").rows["u1"]["status"] == "failed"


def test_journal_with_a_key_function_and_a_whole_table_write(tmp_path):
    path = tmp_path / "t.parquet"
    columns = {"name": "string", "n": "Int64", "tags": "object"}
    j = storage.Journal(path, columns, key=lambda r: r.get("name") or ("none", r.get("n")))
    j.put({"name": "a", "n": 1, "tags": ["x"]})
    j.put({"name": None, "n": 2})
    assert set(storage.Journal(path, columns, key=j.key).rows) == {"a", ("none", 2)}
    table = j.write([{"name": "b", "n": 3}, {"name": "a", "n": 4, "tags": ["y"]}])
    assert table["name"].tolist() == ["b", "a"] and not j.journal.exists()
    assert pd.read_parquet(path)["n"].tolist() == [3, 4]
    assert list(pd.read_parquet(path)["tags"][0]) == []


def test_summarize_table():
    df = pd.DataFrame(
        {
            "url": list("abcdef"),
            "page_url": ["p1"] * 4 + ["p2"] * 2,
            "status": ["ok", "ok", "skipped", "failed", "failed", "ok"],
            "reason": [None, None, "too_small", "timeout", "timeout", None],
        }
    )
    s = scrape.summarize(df, 2.0, fetched=4, cached=2)["value"]
    assert s["pages visited"] == 2 and s["images found"] == 6 and s["downloaded"] == 3
    assert s["  kept from an earlier run"] == 2
    assert s["skipped"] == 1 and s["  skipped: too_small"] == 1
    assert s["failed"] == 2 and s["  failed: timeout"] == 2
    assert s["success rate %"] == 50.0 and s["images/s"] == 2.0
    line = scrape._summary_line(scrape.summarize(df, 2.0, fetched=4, cached=2))
    assert line.startswith(
        "scrape: 2 pages, 6 images found, 3 downloaded (2 kept from an earlier run)"
    )
    assert "failed 2 (timeout: 2)" in line and "2.0 images/s" in line


# -- whole scrapes --------------------------------------------------------------------------


# -- the local catalog site: every case of the issue on one site ------------------------------


def bomb_png() -> bytes:
    """8000 x 8000 pixels (64 MP, over the 40 MP budget) in a few kilobytes."""
    buf = pyio.BytesIO()
    Image.new("1", (8000, 8000)).save(buf, "PNG")
    return buf.getvalue()


def slow(route, seconds=1.5):
    def handler(n):
        time.sleep(seconds)
        return route

    return handler


def shop_site(srv) -> dict:
    """Routes of the test shop; ``srv.url`` is needed for the protocol-relative URL."""
    host = srv.url.split("//", 1)[1]
    colors = iter((i * 13 % 256, i * 71 % 256, i * 37 % 256) for i in range(1, 200))

    def png(size=(64, 48)):
        return img(image_bytes(size=size, color=next(colors)))

    red = png()
    jpeg = image_bytes("JPEG", (80, 60), (10, 120, 200))
    cards1 = [
        'src="/img/red.png" alt="Red  shoe"',
        'src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" data-src="/img/photo.jpg"',
        'src="/img/spacer.gif" data-lazy-src="/img/lazy2.png"',
        'data-original="/img/orig.png"',
        'src="/img/blue-small.png" srcset="/img/blue-small.png 100w, /img/blue.png 800w"',
        None,  # a <picture>
        f'src="//{host}/img/proto.png"',
        'class="lazy" src="data:image/gif;base64,R0lGOD"><noscript><img src="/img/noscript.png"',
        None,  # a background image
        'src="/img/pixel.gif" width="1" height="1"><img src="/img/ten.png"',
    ]
    items = []
    for i, attrs in enumerate(cards1):
        if i == 5:
            inner = (
                '<picture><source srcset="/img/pic-800.png 800w, /img/pic-1600.png 1600w">'
                '<img src="/img/pic.png" alt="pic"></picture>'
            )
        elif i == 8:
            inner = '<div class="thumb" style="background-image: url(\'/img/bg.png\')"></div>'
        else:
            inner = f"<img {attrs}>"
        items.append(f'<div class="product-card"><a href="/p/{i}">{inner}</a></div>')
    page1 = (
        '<html><head><link rel="next" href="/shop/?page=2"></head><body>'
        '<header><img src="/img/logo.png" alt="Shop"></header><main>'
        + "".join(items)
        + '</main><footer><img src="/img/badge.png"></footer></body></html>'
    )
    names2 = [
        "../img/red-copy.png",  # same bytes as red.png, resolved against <base href>
        "/img/red.png",  # the same URL as on page 1: fetched once
        "rel.png",  # relative to <base href="/media/">
        "/img/tiny.png",
        "/img/not-an-image.png",
        "/img/disguised.png",
        "/img/json.png",
        "/img/truncated.jpg",
        "/img/missing.png",
        "/private/secret.png",
        "/img/busy.png",
        "/img/flaky.png",
        "/img/slow.png",
        "/img/big.png",
        "/img/bomb.png",
        "/img/loop.png",
        "/img/vector.svg",
    ]
    page2 = (
        '<html><head><base href="/media/"></head><body>'
        + "".join(card(f'src="{n}"', href=f"/q/{i}") for i, n in enumerate(names2))
        + '<nav class="pagination"><a rel="next" href="/shop/?page=3">next</a></nav></body></html>'
    )
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"></svg>'
    served = {}

    def busy(n):
        served.setdefault("busy", []).append(time.monotonic())
        return (429, {"Retry-After": "1"}, b"") if n == 1 else png()

    routes = {
        "/robots.txt": (
            200,
            {"Content-Type": "text/plain"},
            b"User-agent: *\nDisallow: /private/\n",
        ),
        "/shop/": html(page1),
        "/shop/?page=2": html(page2),
        "/shop/?page=3": listing_page(
            [card('src="/img/green.png"'), card('src="/img/last.png"', href="/p/x")],
            next_href="/shop/?page=4",
        ),
        "/shop/?page=4": slow(html("<html>too late</html>")),  # a page that times out
        "/img/red.png": red,
        "/img/red-copy.png": red,
        "/img/photo.jpg": png(),  # the URL says JPEG, the bytes are PNG
        "/img/lazy2.png": png(),
        "/img/orig.png": png(),
        "/img/blue.png": png((120, 90)),
        "/img/pic-1600.png": png(),
        "/img/proto.png": png(),
        "/img/noscript.png": png(),
        "/img/bg.png": png(),
        "/img/ten.png": png(),
        "/media/rel.png": png(),
        "/img/green.png": png(),
        "/img/last.png": png(),
        "/img/tiny.png": img(image_bytes(size=(8, 8))),
        "/img/not-an-image.png": html("<html><body>Please log in</body></html>"),
        "/img/disguised.png": img(b"<!DOCTYPE html><html><body>Error</body></html>"),
        "/img/json.png": (200, {"Content-Type": "application/json"}, b'{"error": "gone"}'),
        "/img/truncated.jpg": img(jpeg[: len(jpeg) * 2 // 3], "image/jpeg"),
        "/private/secret.png": png(),
        "/img/busy.png": busy,
        "/img/flaky.png": lambda n: (500, {}, b"oops") if n == 1 else png(),
        "/img/slow.png": slow(png()),
        "/img/big.png": img(image_bytes(size=(400, 400)) + b"\0" * 300_000),
        "/img/bomb.png": img(bomb_png()),
        "/img/loop.png": (302, {"Location": "/img/loop.png?again"}, b""),
        "/img/loop.png?again": (302, {"Location": "/img/loop.png"}, b""),
        "/img/vector.svg": img(svg, "image/svg+xml"),
        # JSON mode: pagination by a "next" URL in the body, then by a Link header
        "/api/products?page=1": json_page(
            ["/img/j1.png", None, "/img/j2.png"], "/api/products?page=2"
        ),
        "/api/products?page=2": json_page(["/img/j3.png"], None),
        "/api/v2?page=1": json_page(["/img/j1.png"], None, link="</api/v2?page=2>; rel=next"),
        "/api/v2?page=2": json_page(["/img/j4.png"], None),
        "/img/j1.png": png(),
        "/img/j2.png": png(),
        "/img/j3.png": png(),
        "/img/j4.png": png(),
    }
    routes["_served"] = served  # not a path: lets the test read the request times
    return routes


def json_page(urls, next_url, link=None):
    products = [{"images": {"main": {"url": u}} if u else {}} for u in urls]
    body = {"data": {"products": products, "pagination": {"next": next_url}}}
    headers = {"Content-Type": "application/json"}
    if link:
        headers["Link"] = link
    return (200, headers, json.dumps(body).encode())


#: Expected (status, reason) of every image URL of the shop's HTML listing.
SHOP_EXPECTED = {
    "/img/red.png": ("ok", None),
    "/img/photo.jpg": ("ok", None),
    "/img/lazy2.png": ("ok", None),
    "/img/orig.png": ("ok", None),
    "/img/blue.png": ("ok", None),
    "/img/pic-1600.png": ("ok", None),
    "/img/proto.png": ("ok", None),
    "/img/noscript.png": ("ok", None),
    "/img/bg.png": ("ok", None),
    "/img/ten.png": ("ok", None),
    "/img/pixel.gif": ("skipped", "placeholder"),  # a 1x1 tracking pixel: a row, no request
    "/img/red-copy.png": ("ok", None),
    "/media/rel.png": ("ok", None),
    "/img/tiny.png": ("skipped", "too_small"),
    "/img/not-an-image.png": ("failed", "html"),
    "/img/disguised.png": ("failed", "html"),
    "/img/json.png": ("failed", "content_type"),
    "/img/truncated.jpg": ("failed", "corrupt"),
    "/img/missing.png": ("failed", "http_404"),
    "/private/secret.png": ("skipped", "robots_disallowed"),
    "/img/busy.png": ("ok", None),
    "/img/flaky.png": ("ok", None),
    "/img/slow.png": ("failed", "timeout"),
    "/img/big.png": ("failed", "too_large"),
    "/img/bomb.png": ("failed", "decompression_bomb"),
    "/img/loop.png": ("failed", "redirect_loop"),
    "/img/vector.svg": ("skipped", "unsupported_format"),
    "/img/green.png": ("ok", None),
    "/img/last.png": ("ok", None),
}

SHOP_OPTS = dict(allow_private_hosts=True, timeout_s=0.5, max_retries=1, concurrency=3)


@pytest.fixture
def shop(serve):
    srv = serve({})
    routes = shop_site(srv)
    srv.served = routes.pop("_served")
    srv.routes.update(routes)
    return srv


@pytest.mark.timeout(60)
def test_catalog_site_every_case(shop, tmp_path, capsys):
    run = tmp_path / "run"
    df = scrape.scrape_catalog(shop.url + "/shop/", run, max_bytes=200_000, **SHOP_OPTS)
    u = shop.url
    assert list(df.columns) == list(scrape.SCRAPE_COLUMNS) and df["url"].is_unique
    got = {
        url.replace(u, ""): (row.status, None if pd.isna(row.reason) else row.reason)
        for url, row in df.set_index("url").iterrows()
    }
    assert got == SHOP_EXPECTED
    by = df.set_index(df["url"].str.replace(u, ""))
    # never requested: page chrome, tracking pixel, placeholders, srcset's smaller candidates,
    # robots-disallowed paths; the URL on two pages once; timeouts and too-large not retried
    for path in ("/img/logo.png", "/img/badge.png", "/img/pixel.gif", "/img/spacer.gif"):
        assert shop.hits[path] == 0, path
    for path in ("/img/blue-small.png", "/img/pic-800.png", "/img/pic.png", "/private/secret.png"):
        assert shop.hits[path] == 0, path
    assert shop.hits["/img/red.png"] == 1 and shop.hits["/img/slow.png"] == 1
    assert shop.hits["/img/flaky.png"] == 2 and shop.hits["/img/busy.png"] == 2
    busy = shop.served["busy"]
    assert busy[1] - busy[0] >= 1.0  # Retry-After: 1 honoured (a causal lower bound)
    assert shop.hits["/img/big.png"] == 1 and by.loc["/img/big.png", "http_status"] == 200
    assert by.loc["/img/missing.png", "http_status"] == 404
    # what was found where
    assert by.loc["/img/red.png", ["page", "alt"]].tolist() == [1, "Red shoe"]
    assert by.loc["/img/red.png", "page_url"] == u + "/shop/"
    assert by.loc["/media/rel.png", "page"] == 2 and by.loc["/img/green.png", "page"] == 3
    # stored once per distinct bytes, named by content hash, extension from the bytes
    assert by.loc["/img/photo.jpg", "path"].endswith(".png")
    red, copy = by.loc["/img/red.png"], by.loc["/img/red-copy.png"]
    assert red["sha256"] == copy["sha256"] and red["path"] == copy["path"]
    ok = df[df.status == "ok"]
    files = sorted(p.name for p in (run / "images").iterdir())
    assert files == sorted(set(ok["path"].str.split("/").str[1])) and len(files) == len(ok) - 1
    for row in ok.itertuples():
        data = (run / row.path).read_bytes()
        assert storage.sha256_bytes(data) == row.sha256 == row.path.split("/")[1].split(".")[0]
        assert len(data) == row.bytes
        assert Image.open(run / row.path).size == (row.width, row.height)
    assert pd.read_parquet(run / "scrape.parquet").equals(df)
    assert not list(run.glob(".*journal"))
    # the pages: three read, the fourth timed out and ended the crawl
    pages = pd.read_parquet(run / "scrape_pages.parquet").set_index("url")
    assert pages["status"].tolist() == ["ok", "ok", "ok", "failed"]
    assert pages.loc[u + "/shop/?page=4", "reason"] == "timeout"
    assert pages.loc[u + "/shop/", "n_images"] == 10 and shop.hits["/shop/?page=5"] == 0
    # the summary table and line
    summary = df.attrs["summary"]["value"]
    n_ok = sum(s == "ok" for s, _ in SHOP_EXPECTED.values())
    assert summary["pages visited"] == 4 and summary["images found"] == len(SHOP_EXPECTED)
    assert summary["downloaded"] == n_ok and summary["  kept from an earlier run"] == 0
    assert summary["  pages read from an earlier run"] == 0
    statuses = collections.Counter(s for s, _ in SHOP_EXPECTED.values())
    assert summary["skipped"] == statuses["skipped"] and summary["  skipped: too_small"] == 1
    assert summary["failed"] == statuses["failed"] and summary["  failed: html"] == 2
    assert summary["success rate %"] == round(100 * n_ok / len(SHOP_EXPECTED), 1)
    out = capsys.readouterr().out
    assert "images/s" in out and "success rate %" in out
    assert (
        out.strip()
        .splitlines()[-1]
        .startswith(f"scrape: 4 pages, {len(SHOP_EXPECTED)} images found, {n_ok} downloaded")
    )
    # merged into the run's image manifest
    merged = storage.merge_manifest(run, scrape.to_image_manifest(df))
    assert len(merged) == len(df) and set(merged["source"]) == {"catalog"}
    assert merged.set_index("origin").loc[u + "/img/bomb.png", "error"] == "decompression_bomb"
    # each row's label: its alt text, else the file name of the URL
    labels = merged.set_index("origin")["label"]
    assert labels[u + "/img/red.png"] == "Red shoe"
    alts = df.set_index("url")["alt"].fillna("")
    assert (
        labels[alts[alts == ""].index] == [x.rsplit("/", 1)[-1] for x in alts[alts == ""].index]
    ).all()

    # JSON mode on the same site: URLs at a [*] path, next page from the body, then from a
    # Link header
    df = scrape.scrape_catalog(
        u + "/api/products?page=1",
        tmp_path / "json",
        json_mode=True,
        image_json_path="data.products[*].images.main.url",
        **SHOP_OPTS,
    )
    assert df["url"].tolist() == [u + "/img/j1.png", u + "/img/j2.png", u + "/img/j3.png"]
    assert df["page"].tolist() == [1, 1, 2] and (df["status"] == "ok").all()
    df = scrape.scrape_catalog(
        u + "/api/v2?page=1",
        tmp_path / "json2",
        json_mode=True,
        image_json_path="data.products[*].images.main.url",
        **SHOP_OPTS,
    )
    assert df["url"].tolist() == [u + "/img/j1.png", u + "/img/j4.png"]


def test_max_bytes_default_is_20_mb():
    import inspect

    params = inspect.signature(scrape.scrape_catalog).parameters
    assert params["max_bytes"].default == 20_000_000
    assert params["respect_robots"].default is True
    assert params["allow_private_hosts"].default is False


def test_rerun_requests_nothing_it_already_has(shop, tmp_path):
    run = tmp_path / "run"
    first = scrape.scrape_catalog(shop.url + "/shop/", run, max_bytes=200_000, **SHOP_OPTS)
    before = collections.Counter(shop.hits)
    removed = first.set_index("url").loc[shop.url + "/img/green.png", "path"]
    (run / removed).unlink()
    second = scrape.scrape_catalog(shop.url + "/shop/", run, max_bytes=200_000, **SHOP_OPTS)
    again = {k for k in shop.hits if shop.hits[k] > before[k]}
    # ok rows with their file, too-small and unsupported images are final; failed rows and
    # the deleted file are tried again; listing pages read before are not; a failed page is
    retried = {p for p, (status, reason) in SHOP_EXPECTED.items() if status == "failed"}
    retried -= {"/img/loop.png"}  # its two hops count under the looping URLs below
    assert again == retried | {
        "/img/green.png",
        "/img/loop.png",
        "/img/loop.png?again",
        "/robots.txt",
        "/shop/?page=4",
    }
    assert (run / removed).exists()
    assert second["status"].tolist() == first["status"].tolist()
    kept = sum(s != "failed" for s, _ in SHOP_EXPECTED.values()) - 2  # green, robots skip
    assert second.attrs["summary"]["value"]["  kept from an earlier run"] == kept
    assert second.attrs["summary"]["value"]["  pages read from an earlier run"] == 3
    # a different item_selector is another parse: those listing pages are read again
    hits = shop.hits["/shop/"]
    scrape.scrape_catalog(
        shop.url + "/shop/", run, item_selector="div.product-card", max_pages=1, **SHOP_OPTS
    )
    assert shop.hits["/shop/"] == hits + 1


def listing_page(cards, next_href=None):
    nxt = f'<link rel="next" href="{next_href}">' if next_href else ""
    return html(f"<html><head>{nxt}</head><body>{''.join(cards)}</body></html>")


def test_template_pagination_stops_when_nothing_new(serve, tmp_path):
    def page(n):
        if n > 3:  # the site repeats its last page forever
            n = 3
        return html(f'<img src="/img/{n}.png">')

    routes = {"/robots.txt": (404, {}, b""), "/list": page(1)}
    routes.update({f"/list?p={n}": page(n) for n in range(2, 10)})
    routes.update({f"/img/{n}.png": img(image_bytes(color=(n * 40, 0, 0))) for n in range(1, 4)})
    srv = serve(routes)
    opts = dict(SHOP_OPTS, timeout_s=5.0)
    df = scrape.scrape_catalog(
        srv.url + "/list", tmp_path, page_url_template=srv.url + "/list?p={page}", **opts
    )
    assert df["page"].tolist() == [1, 2, 3] and (df.status == "ok").all()
    assert srv.hits["/list?p=4"] == 1 and srv.hits["/list?p=5"] == 0


@pytest.mark.timeout(30)
def test_follow_product_pages_with_default_selectors_and_max_images(serve, tmp_path):
    routes = {
        "/robots.txt": (200, {}, b"User-agent: *\nAllow: /\n"),
        "/c": listing_page(
            [
                '<header><a href="/"><img src="/img/logo.png"></a></header>',
                card('src="/img/t1.png"', cls="product", href="/p/1"),
                card('src="/img/t2.png"', cls="product", href="/p/2"),
                card('src="/img/t3.png"', cls="product", href="/p/3"),
                card('src="/img/t4.png"', cls="product", href="/p/1"),  # a second link to p/1
            ]
        ),
        "/p/1": html(
            '<header><img src="/img/logo.png"></header><div class="gallery">'
            '<img src="/img/g1a.png"><img src="/img/g1b.png"></div>'
        ),
        "/p/2": html(
            '<img src="/img/other.png"><div class="gallery"><img src="/img/g2.png"></div>'
        ),
        "/p/3": slow(html('<div class="gallery"><img src="/img/g3.png"></div>')),
    }
    for i, name in enumerate(["logo", "t1", "t2", "t3", "t4", "g1a", "g1b", "g2", "g3", "other"]):
        routes[f"/img/{name}.png"] = img(image_bytes(color=(i * 20, 100, 50)))
    srv = serve(routes)
    opts = dict(SHOP_OPTS, timeout_s=0.5)
    df = scrape.scrape_catalog(srv.url + "/c", tmp_path / "a", follow_product_pages=True, **opts)
    assert [u.rsplit("/", 1)[1] for u in df["url"]] == ["g1a.png", "g1b.png", "g2.png"]
    assert df["page_url"].tolist() == [srv.url + "/p/1"] * 2 + [srv.url + "/p/2"]
    assert srv.hits["/p/1"] == 1 and srv.hits["/img/logo.png"] == 0
    pages = pd.read_parquet(tmp_path / "a" / "scrape_pages.parquet").set_index("url")
    assert pages.loc[srv.url + "/p/3", ["kind", "status", "reason"]].tolist() == [
        "product",
        "failed",
        "timeout",
    ]
    df = scrape.scrape_catalog(srv.url + "/c", tmp_path / "b", max_images=2, **opts)
    assert [u.rsplit("/", 1)[1] for u in df["url"]] == ["t1.png", "t2.png"]
    # a listing without product links cannot be followed
    srv.routes["/flat"] = html('<img src="/img/t1.png"><img src="/img/t2.png">')
    with pytest.raises(ScrapeError, match="item_selector"):
        scrape.scrape_catalog(srv.url + "/flat", tmp_path / "c", follow_product_pages=True, **opts)


def test_json_mode_with_template(serve, tmp_path):
    def payload(n):
        items = (
            [{"images": {"main": {"url": f"/img/{n}-{i}.png"}}} for i in range(2)] if n < 3 else []
        )
        return (
            200,
            {"Content-Type": "application/json"},
            json.dumps({"data": {"products": items}}).encode(),
        )

    routes = {"/robots.txt": (404, {}, b"")}
    routes.update({f"/api/products?page={n}": payload(n) for n in range(1, 5)})
    routes.update(
        {
            f"/img/{n}-{i}.png": img(image_bytes(color=(0, n * 60, i * 90)))
            for n in (1, 2)
            for i in (0, 1)
        }
    )
    srv = serve(routes)
    df = scrape.scrape_catalog(
        srv.url + "/api/products?page=1",
        tmp_path,
        page_url_template=srv.url + "/api/products?page={page}",
        json_mode=True,
        image_json_path="data.products[*].images.main.url",
        **dict(SHOP_OPTS, timeout_s=5.0),
    )
    assert [u.rsplit("/", 1)[1] for u in df["url"]] == ["1-0.png", "1-1.png", "2-0.png", "2-1.png"]
    assert (df["status"] == "ok").all() and srv.hits["/api/products?page=4"] == 0
    srv.routes["/api/bad"] = html("<html>not json</html>")
    with pytest.raises(ScrapeError, match="bad_json"):
        scrape.scrape_catalog(
            srv.url + "/api/bad", tmp_path / "x", json_mode=True, image_json_path="a", **SHOP_OPTS
        )


def test_first_page_problems_raise_scrape_error(serve, tmp_path):
    srv = serve(
        {
            "/robots.txt": (200, {}, b"User-agent: *\nDisallow: /shop/\n"),
            "/shop/": html('<img src="/a.png">'),
        }
    )
    opts = dict(SHOP_OPTS, timeout_s=5.0)
    with pytest.raises(ScrapeError, match="robots_disallowed"):
        scrape.scrape_catalog(srv.url + "/shop/", tmp_path, **opts)
    assert srv.hits["/shop/"] == 0
    # respect_robots=False is the explicit opt-out
    df = scrape.scrape_catalog(srv.url + "/shop/", tmp_path, respect_robots=False, **opts)
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
        ({"json_mode": True, "image_json_path": "a", "follow_product_pages": True}, "gallery"),
        ({"concurrency": 0}, "concurrency"),
        ({"max_pages": 0}, "max_pages"),
        ({"delay_s": -1}, "delay_s"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"max_images": 0}, "max_images"),
        # issue 12: wrong values are refused by the library too, naming the parameter
        ({"max_pages": -3}, "max_pages"),
        ({"max_pages": "abc"}, "max_pages"),
        ({"max_pages": 2.5}, "max_pages"),
        ({"max_images": -1}, "max_images"),
        ({"concurrency": True}, "concurrency"),
        ({"min_side": -1}, "min_side"),
        ({"timeout_s": "abc"}, "timeout_s"),
        ({"max_retries": "3"}, "max_retries"),
        ({"max_bytes": -5}, "max_bytes"),
    ],
)
def test_bad_options_raise_config_error(tmp_path, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        scrape.scrape_catalog("http://s.test/", tmp_path, **kwargs)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("how", ["delay_s", "crawl_delay"])
def test_politeness_one_request_at_a_time_per_host(serve, tmp_path, how):
    # Five workers, 50 ms answers, requests to the host spaced 0.25 s apart: with the
    # per-host limit in force the server never sees two image requests at once.
    state = {"now": 0, "max": 0}
    lock = threading.Lock()

    def image(color):
        def handler(n):
            with lock:
                state["now"] += 1
                state["max"] = max(state["max"], state["now"])
            time.sleep(0.05)
            with lock:
                state["now"] -= 1
            return img(image_bytes(color=color))

        return handler

    robots = b"User-agent: *\nCrawl-delay: 0.25\n" if how == "crawl_delay" else b""
    routes = {
        "/robots.txt": (200, {}, robots),
        "/c": html("".join(f'<img src="/i/{i}.png">' for i in range(5))),
    }
    routes.update({f"/i/{i}.png": image((i * 40, 0, 0)) for i in range(5)})
    srv = serve(routes)
    delay = 0.25 if how == "delay_s" else 0.0
    df = scrape.scrape_catalog(
        srv.url + "/c", tmp_path, delay_s=delay, **dict(SHOP_OPTS, concurrency=5, timeout_s=5.0)
    )
    assert (df["status"] == "ok").all() and len(df) == 5
    assert state["max"] == 1
    # and without politeness the same five workers do overlap (the check can fail)
    if how == "delay_s":
        state["max"] = 0
        scrape.scrape_catalog(
            srv.url + "/c", tmp_path / "fast", **dict(SHOP_OPTS, concurrency=5, timeout_s=5.0)
        )
        assert state["max"] > 1


# -- resume after a kill ----------------------------------------------------------------------


class Gate:
    """Counts image requests; once ``limit`` is reached, further ones hang until released."""

    def __init__(self):
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.limit: int | None = None
        self.count = self.blocked = 0

    def wrap(self, route):
        def handler(n):
            with self.lock:
                self.count += 1
                block = self.limit is not None and self.count > self.limit
                self.blocked += block
            if block:
                self.release.wait(60)
            return route

        return handler


def resume_site(srv, gate: Gate) -> None:
    def card_for(i):
        return card(f'src="/img/{i}.png" alt="item {i}"', href=f"/p/{i}")

    page1 = [card_for(i) for i in range(14)] + [card('src="/img/missing.png"', href="/p/m")]
    page2 = [card_for(i) for i in range(14, 26)] + [
        card('src="/img/tiny.png"', href="/p/t"),
        card('src="/img/copy-of-3.png"', href="/p/c"),
    ]
    srv.routes.update(
        {
            "/robots.txt": (200, {}, b"User-agent: *\nDisallow: /private/\n"),
            "/list": listing_page(page1, next_href="/list?page=2"),
            "/list?page=2": listing_page(page2),
            "/img/missing.png": gate.wrap((404, {}, b"no")),
            "/img/tiny.png": gate.wrap(img(image_bytes(size=(8, 8)))),
        }
    )
    for i in range(26):
        srv.routes[f"/img/{i}.png"] = gate.wrap(img(image_bytes(color=(i * 9, 255 - i * 9, 7))))
    srv.routes["/img/copy-of-3.png"] = srv.routes["/img/3.png"]


def _rows_on_disk(run, name="scrape.parquet") -> dict[str, dict]:
    """What a killed run left: the parquet rows, then the journal's complete lines."""
    rows = {}
    if (run / name).exists():
        for rec in pd.read_parquet(run / name).to_dict("records"):
            rows[rec["url"]] = rec
    journal = run / f".{name}.journal"
    if journal.exists():
        for line in journal.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            rows[rec["url"]] = rec
    return rows


RESUME_COLS = ["url", "status", "reason", "sha256", "path", "width", "height", "bytes", "page"]
RESUME_COLS += ["page_url", "alt", "http_status"]
KILL_AFTER = 9
CONCURRENCY = 3
CHILD = """
import sys
from lookalike import scrape
scrape.scrape_catalog(sys.argv[1], sys.argv[2], allow_private_hosts=True, concurrency=3,
                      timeout_s=30.0, max_retries=0)
"""


def _key(df):
    return sorted(
        map(
            tuple,
            df[RESUME_COLS].astype(object).where(df[RESUME_COLS].notna(), None).values.tolist(),
        )
    )


@pytest.mark.timeout(120)
def test_resume_after_kill_equals_an_uninterrupted_run(serve, tmp_path):
    gate = Gate()
    srv = serve({})
    resume_site(srv, gate)
    url = srv.url + "/list"
    opts = dict(allow_private_hosts=True, concurrency=CONCURRENCY, timeout_s=30.0, max_retries=0)

    # 1. the reference: one uninterrupted run
    full = scrape.scrape_catalog(url, tmp_path / "full", **opts)
    assert len(full) == 29 and (full["status"] == "ok").sum() == 27

    # 2. the same scrape in a child process, SIGKILLed while image requests are in flight
    gate.limit = gate.count + KILL_AFTER
    run = tmp_path / "killed"
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    with open(tmp_path / "child.err", "w") as err:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, url, str(run)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
        )
        try:
            deadline = time.monotonic() + 60
            while (
                gate.blocked < CONCURRENCY and child.poll() is None and time.monotonic() < deadline
            ):
                time.sleep(0.02)
            assert child.poll() is None, (tmp_path / "child.err").read_text()
            assert gate.blocked == CONCURRENCY  # every worker is stuck in a request
        finally:
            child.kill()
            child.wait()
            gate.release.set()
    gate.limit = None

    # the manifest grew as the run went: every image answered before the kill is recorded
    partial = _rows_on_disk(run)
    assert len(partial) == KILL_AFTER
    done = {u for u, r in partial.items() if r["status"] == "ok" or r["reason"] == "too_small"}
    assert {p.name for p in (run / "images").iterdir()} == {
        r["path"].split("/")[1] for r in partial.values() if r["status"] == "ok"
    }
    pages = _rows_on_disk(run, "scrape_pages.parquet")  # pages are journaled too
    pages_before = {u for u, r in pages.items() if r["status"] == "ok"}
    assert srv.url + "/list" in pages_before

    # 3. run again: finishes the job without asking for anything it already has
    before = collections.Counter(srv.hits)
    resumed = scrape.scrape_catalog(url, run, **opts)
    asked = {k for k in srv.hits if srv.hits[k] > before[k] and k.startswith("/img/")}
    assert asked == {u.replace(srv.url, "") for u in full["url"]} - {
        u.replace(srv.url, "") for u in done
    }
    assert all(srv.hits[k] - before[k] == 1 for k in asked)
    assert all(
        srv.hits[p.replace(srv.url, "")] == before[p.replace(srv.url, "")] for p in pages_before
    )

    # ... and ends exactly where the uninterrupted run ended
    assert resumed["url"].is_unique and len(resumed) == len(full)
    assert _key(resumed) == _key(full)
    files = {p.name for p in (run / "images").iterdir()}
    assert files == {p.name for p in (tmp_path / "full" / "images").iterdir()}
    assert pd.read_parquet(run / "scrape.parquet").equals(resumed)
    assert not list(run.glob(".*journal"))


@pytest.mark.timeout(60)
def test_a_response_cut_inside_its_headers_is_never_stored_as_a_success(serve, tmp_path):
    # Issue 12: page 2 and one image send their status line, then trickle their headers past
    # timeout_s. Before, the cut looked like a 200 with an empty body: page 2 was stored as
    # "ok" with no images and no next link (so a re-run never asked again) and the image
    # failed as "empty". Now both are timeouts, and a re-run with a good server gets all.
    from webserver import Trickle

    colors = iter((i * 29 % 256, i * 53 % 256, i * 91 % 256) for i in range(1, 50))
    pngs = {f"/img/{n}.png": img(image_bytes(color=next(colors))) for n in range(1, 7)}
    page2 = listing_page([card('src="/img/3.png"'), card('src="/img/4.png"')], "/list?p=3")
    routes = {
        "/robots.txt": (404, {}, b""),
        "/list": listing_page([card('src="/img/1.png"'), card('src="/img/2.png"')], "/list?p=2"),
        "/list?p=2": Trickle(page2),
        "/list?p=3": listing_page([card('src="/img/5.png"'), card('src="/img/6.png"')]),
        **pngs,
        "/img/2.png": Trickle(pngs["/img/2.png"]),
    }
    srv = serve(routes)
    opts = dict(SHOP_OPTS, timeout_s=0.5)
    run = tmp_path / "run"
    df = scrape.scrape_catalog(srv.url + "/list", run, **opts)
    pages = pd.read_parquet(run / "scrape_pages.parquet").set_index("url")
    cut = pages.loc[srv.url + "/list?p=2"]
    assert (cut["status"], cut["reason"]) == ("failed", "timeout")
    by = df.set_index(df["url"].str.replace(srv.url, ""))
    assert (by.loc["/img/2.png", "status"], by.loc["/img/2.png", "reason"]) == (
        "failed",
        "timeout",
    )
    assert by.loc["/img/1.png", "status"] == "ok" and len(df) == 2
    # the server is fixed: the re-run asks again for what was cut off, and gets everything
    srv.routes.update({"/list?p=2": page2, "/img/2.png": pngs["/img/2.png"]})
    df = scrape.scrape_catalog(srv.url + "/list", run, **opts)
    assert sorted(df["url"].str.replace(srv.url, "")) == sorted(pngs)
    assert (df["status"] == "ok").all()
    assert srv.hits["/list?p=2"] == 2 and srv.hits["/img/2.png"] == 2 and srv.hits["/list"] == 1


@pytest.mark.timeout(60)
def test_every_image_found_leaves_a_row_and_bytes_win_over_content_type(serve, tmp_path):
    # Issue 12: grey.jpg (a product photo named after its colour) was dropped by the
    # placeholder filter with no row; a lone placeholder left no row either; and a real JPEG
    # served as text/html was refused as "html" without a look at its bytes.
    jpeg = image_bytes("JPEG", (80, 60), (120, 120, 120))
    cards = [
        card('src="/img/grey.jpg" alt="Grey shoe"'),
        card('src="/img/no-image.png"', href="/p/2"),
        card('src="/img/as-html.jpg"', href="/p/3"),
        card('src="/img/login.jpg"', href="/p/4"),
    ]
    routes = {
        "/robots.txt": (404, {}, b""),
        "/list": listing_page(cards),
        "/img/grey.jpg": img(image_bytes("JPEG", (80, 60), (128, 128, 128)), "image/jpeg"),
        "/img/no-image.png": img(image_bytes()),
        "/img/as-html.jpg": img(jpeg, "text/html; charset=utf-8"),
        "/img/login.jpg": html("<html><body>Please log in</body></html>"),
    }
    srv = serve(routes)
    run = tmp_path / "run"
    df = scrape.scrape_catalog(srv.url + "/list", run, **dict(SHOP_OPTS, timeout_s=5.0))
    got = {
        url.replace(srv.url, ""): (row.status, None if pd.isna(row.reason) else row.reason)
        for url, row in df.set_index("url").iterrows()
    }
    assert got == {
        "/img/grey.jpg": ("ok", None),
        "/img/no-image.png": ("skipped", "placeholder"),
        "/img/as-html.jpg": ("ok", None),
        "/img/login.jpg": ("failed", "html"),
    }
    assert srv.hits["/img/no-image.png"] == 0  # a placeholder is recorded, not fetched
    assert df.set_index("url").loc[srv.url + "/img/as-html.jpg", "path"].endswith(".jpg")
    summary = df.attrs["summary"]["value"]
    assert summary["images found"] == 4 and summary["  skipped: placeholder"] == 1
    page = pd.read_parquet(run / "scrape_pages.parquet").iloc[0]
    assert page["n_images"] == 3 and list(page["placeholder_urls"]) == [
        srv.url + "/img/no-image.png"
    ]
