"""The offline demo: committed data under data/demo and the demo web server (real HTTP)."""

from __future__ import annotations

import csv
import io
import json
import re
import socket
from urllib.parse import urljoin

import pytest
import requests
from PIL import Image

from lookalike import demo
from lookalike.exceptions import ConfigError
from lookalike.paths import DATA_DIR, DEMO_DIR


@pytest.fixture(scope="module")
def server():
    with demo.serve() as srv:
        yield srv


@pytest.fixture(scope="module")
def http(server):
    s = requests.Session()
    s.proxies = {"http": server.url, "https": server.url}
    s.trust_env = False  # ignore any proxy settings of the machine running the tests
    yield s
    s.close()


def _decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


# -- committed data ---------------------------------------------------------------------------


def test_logos_present_and_decodable():
    pngs = sorted((DEMO_DIR / "logos").glob("*.png"))
    svgs = {p.stem for p in (DEMO_DIR / "logos").glob("*.svg")}
    assert 250 <= len(pngs) <= 400
    assert {p.stem for p in pngs} == svgs
    for p in pngs:
        assert re.fullmatch(r"[a-z0-9-]+", p.stem), p.name
        img = _decode(p.read_bytes())
        assert img.mode == "RGBA" and max(img.size) <= 256, p.name
        assert img.getchannel("A").getextrema()[0] == 0, f"{p.name} has no transparent pixels"
    for name in list(svgs)[:50]:
        text = (DEMO_DIR / "logos" / f"{name}.svg").read_text()
        assert text.startswith("<svg") and 'fill="#' in text


def test_shop_images_present_and_decodable():
    with (DEMO_DIR / "shop" / "catalog.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert {"slug", "title", "category", "files"} <= set(rows[0])
    assert len({r["slug"] for r in rows}) == len(rows) >= 200
    assert 5 <= len({r["category"] for r in rows}) <= 8
    files = [f for r in rows for f in r["files"].split(";")]
    assert all(1 <= len(r["files"].split(";")) <= 3 for r in rows)
    assert len(files) == len(set(files)) >= 250
    on_disk = {p.name for p in (DEMO_DIR / "shop").glob("*.jpg")}
    assert on_disk == set(files)
    digests = {}
    for name in files:
        data = (DEMO_DIR / "shop" / name).read_bytes()
        assert _decode(data).size == (256, 256), name
        digests.setdefault(data, []).append(name)
    dups = [names for names in digests.values() if len(names) > 1]
    assert len(dups) == 1 and len(dups[0]) == 2  # one deliberate duplicate under two URLs


def test_domains_csv_and_readme():
    with (DEMO_DIR / "domains.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and "domain" in rows[0] and "company" in rows[0]
    domains = [r["domain"] for r in rows]
    clean = [d for d in domains if re.fullmatch(r"[a-z0-9-]+\.test", d)]
    assert len(clean) >= 250
    assert any(d.startswith("https://www.") for d in domains)  # messy spellings present
    assert "" in domains and "not a domain" in domains  # and invalid rows
    readme = (DATA_DIR / "README.md").read_text()
    for item in DEMO_DIR.iterdir():
        assert item.name in readme, f"data/README.md does not mention {item.name}"
    for needed in ("simple-icons", "@iconify-json/noto", "CC0", "Apache", "build_demo_data.py"):
        assert needed in readme


def test_demo_data_is_small():
    total = sum(p.stat().st_size for p in DEMO_DIR.rglob("*") if p.is_file())
    assert total < 8_000_000, f"data/demo is {total / 1e6:.1f} MB"


def test_demo_queries_are_rebuilt_byte_for_byte(tmp_path):
    import subprocess
    import sys

    from lookalike.paths import PROJECT_ROOT

    committed = sorted(p.relative_to(demo.QUERIES_DIR) for p in demo.QUERIES_DIR.rglob("*.*"))
    assert [str(p) for p in committed] == [
        "catalog/broom-flipped.jpg",
        "catalog/keyboard-cropped.jpg",
        "logos/iris-icon.png",
        "logos/kicad-icon-recoloured.png",
        "logos/kicad-icon.png",
        "logos/scrumalliance-icon.png",
    ]
    script = PROJECT_ROOT / "scripts" / "build_demo_queries.py"
    subprocess.run([sys.executable, script, "--out", tmp_path], check=True, capture_output=True)
    for rel in committed:
        assert (tmp_path / rel).read_bytes() == (demo.QUERIES_DIR / rel).read_bytes(), rel
    with Image.open(demo.QUERIES_DIR / "logos" / "kicad-icon.png") as icon:
        logo = Image.open(DEMO_DIR / "logos" / "kicad.png").convert("RGBA")
        bbox = logo.getchannel("A").getbbox()
        assert icon.size == (bbox[3] - bbox[1],) * 2  # the left square of the trimmed logo


def test_demo_queries_only_for_a_run_of_the_demo(tmp_path):
    import pandas as pd

    from lookalike import storage

    def run(name, source, origins):
        rows = pd.DataFrame(
            {
                "image_id": [f"{name}{i}" for i in range(len(origins))],
                "path": [f"x{i}.png" for i in range(len(origins))],
                "source": source,
                "origin": origins,
                "status": "ok",
            }
        )
        storage.merge_manifest(tmp_path / name, rows)
        return demo.demo_queries(tmp_path / name)

    assert run("logos", "logos", ["kicad.test", "iris.test"]) == demo.QUERIES_DIR / "logos"
    assert run("own", "logos", ["kicad.test", "example.com"]) is None
    shop = ["http://shop.test/img/broom.jpg", "http://shop.test/img/axe.jpg"]
    assert run("shop", "catalog", shop) == demo.QUERIES_DIR / "catalog"
    assert run("other-shop", "catalog", ["https://shop.example/a.jpg"]) is None
    assert run("folder", "folder", ["/photos/a.jpg"]) is None


# -- shop.test --------------------------------------------------------------------------------


def test_shop_listing_pagination_and_products(server, http):
    assert server.catalog_url == "http://shop.test/shoes/"
    r = http.get(server.catalog_url, timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    assert r.text.count('<div class="product"') == demo.PAGE_SIZE
    assert '<link rel="next" href="/shoes/?page=2">' in r.text
    assert re.search(r'<a rel="next" class="next" href="\?page=2">', r.text)
    # the thumbnail markup mixes src, lazy data-src (with a data: placeholder) and srcset
    assert "data-src=" in r.text and 'src="data:image/gif' in r.text
    assert " 2x" in r.text or " 256w" in r.text

    last = http.get(f"{server.catalog_url}?page={server.n_pages}", timeout=10)
    assert last.status_code == 200
    assert 'rel="next"' not in last.text
    assert 1 <= last.text.count('<div class="product"') <= demo.PAGE_SIZE
    assert (
        http.get(f"{server.catalog_url}?page={server.n_pages + 1}", timeout=10).status_code == 404
    )
    assert http.get(f"{server.catalog_url}?page=x", timeout=10).status_code == 400

    # every product on page 1 links to a product page whose gallery has 1-3 decodable images
    hrefs = re.findall(r'<div class="product"[^>]*>\s*<a href="([^"]+)"', r.text)
    assert len(hrefs) == demo.PAGE_SIZE
    page_url = urljoin(server.catalog_url, hrefs[0])
    assert re.fullmatch(r"http://shop\.test/product/[a-z0-9-]+", page_url)
    p = http.get(page_url, timeout=10)
    assert p.status_code == 200
    gallery = p.text.split('<div class="gallery">', 1)[1].split("</div>", 1)[0]
    srcs = re.findall(r'<img src="([^"]+)"', gallery)
    assert 1 <= len(srcs) <= 3
    img = http.get(urljoin(page_url, srcs[0]), timeout=10)
    assert img.status_code == 200 and img.headers["Content-Type"] == "image/jpeg"
    assert _decode(img.content).size == (256, 256)


def test_shop_srcset_and_lazy_urls_resolve(server, http):
    html = http.get(server.catalog_url, timeout=10).text
    lazy = re.search(r'data-src="(//shop\.test/img/[^"]+)"', html)
    assert lazy, "page 1 should show a lazy image"
    r = http.get(urljoin(server.catalog_url, lazy.group(1)), timeout=10)
    assert r.status_code == 200 and _decode(r.content).size == (256, 256)
    thumb = re.search(r'src="(/thumb/128/[^"]+)"', html)
    assert thumb
    t = http.get(urljoin(server.catalog_url, thumb.group(1)), timeout=10)
    assert _decode(t.content).size == (128, 128)


def test_shop_json_robots_and_direct_access(server, http):
    j = http.get("http://shop.test/shoes.json?page=2", timeout=10)
    assert j.headers["Content-Type"] == "application/json"
    data = j.json()["data"]
    assert len(data["products"]) == demo.PAGE_SIZE
    assert data["products"][0]["images"]["main"]["url"].startswith("http://shop.test/img/")
    assert data["pagination"]["next"].endswith("page=3")

    robots = http.get("http://shop.test/robots.txt", timeout=10)
    assert robots.status_code == 200 and robots.headers["Content-Type"].startswith("text/plain")
    assert "Disallow: /private/" in robots.text

    # without the proxy, the server itself answers as the shop
    direct = requests.get(f"{server.url}/shoes/", timeout=10)
    assert direct.status_code == 200 and '<div class="product"' in direct.text
    assert requests.get(f"{server.url}/img/nope.jpg", timeout=10).status_code == 404


# -- <brand>.test -----------------------------------------------------------------------------


def _icon_url(http, domain: str, mechanism: str) -> str:
    """Follow the icon markup of a homepage the way a logo fetcher would."""
    home = f"http://{domain}/"
    text = http.get(home, timeout=10).text
    base = re.search(r'<base href="([^"]+)"', text)
    base_url = urljoin(home, base.group(1)) if base else home
    if mechanism == "favicon-only":
        assert "<link" not in text.split("</head>")[0].replace('rel="canonical"', "")
        return urljoin(home, "/favicon.ico")
    if mechanism == "manifest":
        href = re.search(r'<link rel="manifest" href="([^"]+)"', text).group(1)
        manifest_url = urljoin(base_url, href)
        icons = http.get(manifest_url, timeout=10).json()["icons"]
        best = max(icons, key=lambda i: int(i["sizes"].split("x")[0]))
        return urljoin(manifest_url, best["src"])
    rel = {"svg-link": "icon", "png-link": "icon", "apple-touch-icon": "apple-touch-icon"}
    href = re.search(rf'<link rel="{rel[mechanism]}"[^>]*href="([^"]+)"', text).group(1)
    return urljoin(base_url, href)


def test_every_icon_mechanism_serves_a_decodable_icon(server, http):
    by_mech = {}
    for d in server.domains:
        by_mech.setdefault(server.hosts[d], d)
    assert set(by_mech) == set(demo.ICON_MECHANISMS)
    for mech, domain in by_mech.items():
        url = _icon_url(http, domain, mech)
        r = http.get(url, timeout=10)
        assert r.status_code == 200, (mech, url)
        if mech == "svg-link":
            assert r.headers["Content-Type"] == "image/svg+xml"
            assert r.text.startswith("<svg")
            continue
        img = _decode(r.content)
        assert min(img.size) >= 96, (mech, url, img.size)
        # /favicon.ico always exists; small unless it is the only icon
        fav = _decode(http.get(f"http://{domain}/favicon.ico", timeout=10).content)
        assert fav.format == "ICO"
        assert max(fav.ico.sizes()) == ((128, 128) if mech == "favicon-only" else (32, 32))


def test_base_href_variant_resolves(server, http):
    domain = next(
        d for d in server.domains
        if server.hosts[d] == "png-link" and server.site_info(d)["base_href"]
    )  # fmt: skip
    url = _icon_url(http, domain, "png-link")
    assert url == f"http://{domain}/static/icon-192.png"
    assert _decode(http.get(url, timeout=10).content).size == (192, 192)


def test_www_redirects_and_messy_rows(server, http):
    redirecting = [d for d in server.domains if server.site_info(d)["www_redirects"]]
    staying = [d for d in server.domains if not server.site_info(d)["www_redirects"]]
    assert redirecting and staying
    r = http.get(f"http://www.{redirecting[0]}/about", timeout=10, allow_redirects=False)
    assert r.status_code == 301 and r.headers["Location"] == f"http://{redirecting[0]}/about"
    assert http.get(f"http://www.{staying[0]}/", timeout=10, allow_redirects=False).ok
    # the messy spelling in domains.csv ("https://www.Foo.test/about") is served as foo.test
    with (DEMO_DIR / "domains.csv").open(newline="") as f:
        messy = next(r["domain"] for r in csv.DictReader(f) if r["domain"].startswith("https://"))
    bare = messy.split("//www.")[1].split("/")[0].lower()
    assert bare in server.hosts
    # a host header with upper case and a trailing dot still reaches the site
    assert http.get(f"http://{bare.upper()}./", timeout=10).status_code == 200


def test_unknown_host_connect_and_missing_files(server, http):
    assert http.get("http://no-such-brand.test/", timeout=10).status_code == 502
    assert http.get("http://example.invalid/x", timeout=10).status_code == 502
    with pytest.raises(requests.exceptions.ProxyError, match="405"):
        http.get("https://shop.test/shoes/", timeout=10)
    # sites only serve the icon files their markup points at
    d = next(d for d in server.domains if server.hosts[d] == "favicon-only")
    assert http.get(f"http://{d}/apple-touch-icon.png", timeout=10).status_code == 404
    assert ("CONNECT", "shop.test:443", "", 405) in list(server.request_log)


def test_raw_proxy_request_line_and_head(server):
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"HEAD http://shop.test/robots.txt HTTP/1.1\r\nHost: ignored.test\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            assert chunk, f"connection closed after {head!r}"
            head += chunk
        head = head.decode()
    assert head.startswith("HTTP/1.1 200") and "text/plain" in head
    assert "Disallow" not in head  # HEAD has no body


def test_latency_option_and_bad_args(tmp_path):
    with pytest.raises(ConfigError, match="latency_s"):
        demo.serve(latency_s=-1)
    with pytest.raises(ConfigError, match="data_dir"):
        demo.serve(data_dir=tmp_path)
    s = requests.Session()
    with demo.serve(latency_s=0.01) as srv:
        assert s.get(f"{srv.url}/robots.txt", timeout=10).status_code == 200
    srv.stop()  # idempotent
    # after stop, neither the kept-alive connection nor a new one is answered
    with pytest.raises(requests.exceptions.ConnectionError):
        s.get(f"{srv.url}/robots.txt", timeout=10)
    s.close()


def test_manifest_is_json(server, http):
    d = next(d for d in server.domains if server.hosts[d] == "manifest")
    r = http.get(f"http://{d}/site.webmanifest", timeout=10)
    assert r.headers["Content-Type"] == "application/manifest+json"
    assert json.loads(r.text)["icons"]


def test_serving_stops_the_server_and_can_be_switched_off():
    with demo.serving(enabled=False) as nothing:
        assert nothing is None
    with pytest.raises(RuntimeError, match="inside"):
        with demo.serving() as web:
            assert web.client_options == {"proxy": web.url, "allow_private_hosts": True}
            proxies = {"http": web.url}
            r = requests.get(web.catalog_url, proxies=proxies, timeout=10)
            assert r.status_code == 200
            raise RuntimeError("inside the block")
    with pytest.raises(requests.ConnectionError):
        requests.get(web.catalog_url, proxies=proxies, timeout=2)
