"""lookalike.logos: domain normalization, icon discovery and ranking, against a local proxy.

The test server is a plain-HTTP forward proxy on 127.0.0.1: clients ask it for
``http://<name>.test/...`` and it answers from a route table keyed by absolute URL, 404 for
unknown paths of a known host and 502 for unknown hosts. CONNECT (https) is not implemented,
so https URLs fail fast with a proxy error, as through the demo server.
"""

from __future__ import annotations

import collections
import io as pyio
import json
import shutil
import time

import pandas as pd
import pytest
from PIL import Image
from webserver import RouteServer

from lookalike import io, logos
from lookalike.exceptions import ConfigError

# -- a tiny forward proxy with a route table ------------------------------------------------


# -- images and pages ---------------------------------------------------------------------------


def png(size, color=(220, 20, 60, 255), fmt="PNG"):
    im = Image.new("RGBA", size, (0, 0, 0, 0))
    w, h = size
    inner = Image.new("RGBA", (max(1, w // 2), max(1, h // 2)), color)
    im.paste(inner, (w // 4, h // 4))
    buf = pyio.BytesIO()
    (im.convert("RGB") if fmt == "JPEG" else im).save(buf, fmt)
    return buf.getvalue()


def ico(sizes):
    big = max(sizes)
    im = Image.open(pyio.BytesIO(png((big, big), (10, 90, 200, 255))))
    buf = pyio.BytesIO()
    im.save(buf, "ICO", sizes=[(s, s) for s in sizes])
    return buf.getvalue()


def flat_png(size):
    buf = pyio.BytesIO()
    Image.new("RGB", size, "red").save(buf, "PNG")
    return buf.getvalue()


SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10">'
    b'<circle cx="5" cy="5" r="4" fill="#f60"/></svg>'
)


def page(head, body=""):
    return (200, {"Content-Type": "text/html"}, f"<html><head>{head}</head>{body}</html>".encode())


def image(data, ctype="image/png"):
    return (200, {"Content-Type": ctype}, data)


def slow_page(n):
    time.sleep(1.5)
    return page("")


ROUTES = {
    # several <link rel> icons: the biggest *real* image wins, not the declared size
    "http://links.test/": page(
        '<link rel="icon" sizes="16x16" href="/i16.png">'
        '<link rel="shortcut icon" href="/i32.png">'
        '<link rel="icon" sizes="512x512" href="/liar.png">'
        '<link rel="apple-touch-icon" href="/apple.png">'
    ),
    "http://links.test/i16.png": image(png((16, 16))),
    "http://links.test/i32.png": image(png((32, 32))),
    "http://links.test/liar.png": image(png((24, 24))),
    "http://links.test/apple.png": image(png((180, 180), (0, 120, 0, 255))),
    # SVG ranks above rasters
    "http://svg.test/": page(
        '<link rel="icon" sizes="64x64" href="/i64.png">'
        '<link rel="icon" type="image/svg+xml" href="/logo.svg">'
    ),
    "http://svg.test/i64.png": image(png((64, 64))),
    "http://svg.test/logo.svg": image(SVG, "image/svg+xml"),
    # web app manifest in a sub-folder, relative icon URLs
    "http://manifest.test/": page(
        '<link rel="icon" sizes="16x16" href="/f.png"><link rel="manifest" href="/m/site.json">'
    ),
    "http://manifest.test/f.png": image(png((16, 16))),
    "http://manifest.test/m/site.json": (
        200,
        {"Content-Type": "application/manifest+json"},
        json.dumps(
            {
                "icons": [
                    {"src": "i192.png", "sizes": "192x192"},
                    {"src": "i96.png", "sizes": "96x96"},
                ]
            }
        ).encode(),
    ),
    "http://manifest.test/m/i192.png": image(png((192, 192), (90, 0, 160, 255))),
    "http://manifest.test/m/i96.png": image(png((96, 96))),
    # nothing declared: /favicon.ico with several frames
    "http://ico.test/": page("<title>plain</title>"),
    "http://ico.test/favicon.ico": image(ico([16, 32, 48]), "image/x-icon"),
    # <base href> moves relative icon URLs to another host
    "http://base.test/": page(
        '<base href="http://cdn.base.test/assets/"><link rel="icon" href="fav.png">'
    ),
    "http://cdn.base.test/assets/fav.png": image(png((40, 40))),
    # og:image only when no icon works; a mask-icon ranks below a coloured icon
    "http://og.test/": page('<meta property="og:image" content="/social.jpg">'),
    "http://og.test/social.jpg": image(png((600, 300), (200, 200, 0, 255), "JPEG"), "image/jpeg"),
    "http://ogicon.test/": page(
        '<meta property="og:image" content="/social.jpg"><link rel="icon" href="/i32.png">'
        '<link rel="mask-icon" href="/mask.svg" color="#000">'
    ),
    "http://ogicon.test/social.jpg": image(png((600, 300), fmt="JPEG"), "image/jpeg"),
    "http://ogicon.test/i32.png": image(png((32, 32))),
    "http://ogicon.test/mask.svg": image(SVG, "image/svg+xml"),
    # only the www. host answers
    "http://www.wwwonly.test/": page('<link rel="icon" href="/w.png">'),
    "http://www.wwwonly.test/w.png": image(png((50, 50))),
    # junk everywhere: 1x1, HTML served as an icon, a single colour, a transparent square
    "http://junk.test/": page(
        '<link rel="icon" href="/one.png"><link rel="icon" sizes="64x64" href="/flat.png">'
        '<link rel="icon" sizes="32x32" href="/clear.png">'
    ),
    "http://junk.test/one.png": image(png((1, 1))),
    "http://junk.test/flat.png": image(flat_png((64, 64))),
    "http://junk.test/clear.png": image(png((32, 32), (0, 0, 0, 0))),
    "http://junk.test/favicon.ico": page("<p>oops</p>"),
    "http://junk.test/apple-touch-icon.png": page("<p>oops</p>"),
    # down (502 from the proxy is the default for unknown hosts) and slow
    "http://slow.test/": slow_page,
    # a favicon service stand-in
    "http://icons.test/ip3/junk.test.ico": image(ico([32]), "image/x-icon"),
}


@pytest.fixture(scope="module")
def proxy():
    p = RouteServer(dict(ROUTES))
    yield p
    p.close()


OPTS = dict(
    providers=("site",),
    site_url_template="http://{domain}/",
    allow_private_hosts=True,
    max_retries=0,
    timeout_s=0.5,
    concurrency=8,
)


@pytest.fixture(scope="module")
def fetched(proxy, tmp_path_factory):
    run = tmp_path_factory.mktemp("logos-run")
    domains = [
        "links.test",
        "https://www.SVG.test/about",
        "manifest.test",
        "ico.test",
        "base.test",
        "og.test",
        "ogicon.test",
        "wwwonly.test",
        "junk.test",
        "down.test",
        "slow.test",
        "links.test.",
        "not a domain",
    ]
    df = logos.fetch_logos(domains, run, proxy=proxy.url, **OPTS)
    return run, df


# -- normalization ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("example.com", "example.com"),
        ("  https://www.Example.COM:8443/path?q=1#x ", "example.com"),
        ("HTTP://user:pw@Shop.Example.co.uk./", "shop.example.co.uk"),
        ("www.example.com.", "example.com"),
        ("//cdn.example.com/x.png", "cdn.example.com"),
        ("www.com", "www.com"),
        ("Bücher.de", "xn--bcher-kva.de"),
        ("xn--bcher-kva.de", "xn--bcher-kva.de"),
        ("", "empty"),
        ("   ", "empty"),
        (None, "empty"),
        (float("nan"), "empty"),
        ("https://", "empty"),
        ("foo bar.com", "has_space"),
        ("localhost", "no_dot"),
        ("http://intranet/", "no_dot"),
        ("192.168.1.1", "ip_not_allowed"),
        ("http://[::1]:8080/", "ip_not_allowed"),
        ("a..b.com", "invalid_idna"),
        ("-bad-.com", "invalid_idna"),
        ("under_score.com", "invalid_idna"),
        ("x" * 64 + ".com", "invalid_idna"),
    ],
)
def test_normalize_domain(raw, expected):
    if "." in expected:
        assert logos.normalize_domain(raw) == expected
    else:
        with pytest.raises(ValueError, match=f"^{expected}") as info:
            logos.normalize_domain(raw)
        assert info.value.reason == expected


def test_normalize_domain_ip_allowed():
    assert logos.normalize_domain("http://192.168.1.1:80/", allow_ip=True) == "192.168.1.1"
    assert logos.normalize_domain("[::1]", allow_ip=True) == "::1"


def test_read_domains_dedupes_spellings_and_keeps_invalid_rows(tmp_path):
    src = pd.DataFrame(
        {
            "site": [
                "Example.com",
                "https://www.example.com/",
                "other.org",
                "",
                "bad domain",
                "EXAMPLE.COM.",
                "",
            ]
        }
    )
    src.to_csv(tmp_path / "d.csv", index=False)
    src.to_parquet(tmp_path / "d.parquet")
    for name in ("d.csv", "d.parquet"):
        df = logos.read_domains(tmp_path / name, domain_column="site")
        assert list(df.columns) == ["domain", "input_rows", "raw", "status", "reason"]
        assert df["domain"].tolist()[:2] == ["example.com", "other.org"]
        assert df.loc[0, "input_rows"] == [0, 1, 5] and df.loc[0, "raw"] == "Example.com"
        invalid = df[df.status == "invalid"]
        assert invalid["reason"].tolist() == ["empty", "has_space"]
        assert invalid["input_rows"].tolist() == [[3, 6], [4]]
    with pytest.raises(ConfigError, match=r"no column 'domain'.*\['site'\]"):
        logos.read_domains(tmp_path / "d.csv")
    with pytest.raises(ConfigError, match="not found"):
        logos.read_domains(tmp_path / "missing.csv")


def test_is_blank():
    assert logos.is_blank(Image.new("RGBA", (20, 20), (0, 0, 0, 0)))
    assert logos.is_blank(Image.new("RGBA", (20, 20), (255, 0, 0, 255)))
    white_on_clear = Image.new("RGBA", (20, 20), (255, 255, 255, 0))
    white_on_clear.paste((255, 255, 255, 255), (5, 5, 15, 15))
    assert not logos.is_blank(white_on_clear)  # a white logo on a transparent background
    assert not logos.is_blank(Image.open(pyio.BytesIO(png((20, 20)))))


def test_parse_icon_links_and_manifest():
    html = (
        '<base href="https://cdn.test/a/"><link rel="ICON" sizes="16x16 48x48" href="f.png">'
        '<link rel="apple-touch-icon-precomposed" href="//x.test/t.png">'
        '<link rel="mask-icon" href="m.svg"><link rel="stylesheet" href="s.css">'
        '<link rel="manifest" href="/site.webmanifest">'
        '<link rel="icon" href="data:image/png;base64,AA">'
        '<meta name="twitter:image" content="tw.png">'
    )
    cands, manifest = logos.parse_icon_links(html, "https://shop.test/")
    got = [(c.url, c.kind, c.declared, c.svg, c.tier) for c in cands]
    assert got == [
        ("https://cdn.test/a/f.png", "icon", 48, False, 0),
        ("https://x.test/t.png", "apple-touch-icon-precomposed", 180, False, 0),
        ("https://cdn.test/a/m.svg", "mask-icon", 0, True, 0),
        ("https://cdn.test/a/tw.png", "twitter:image", 0, False, 1),
    ]
    assert manifest == "https://cdn.test/site.webmanifest"
    data = json.dumps(
        {"icons": [{"src": "a.svg", "sizes": "any", "type": "image/svg+xml"}, {"x": 1}]}
    )
    (icon,) = logos.parse_manifest_icons(data.encode(), "https://shop.test/m/site.json")
    assert (icon.url, icon.declared, icon.svg) == ("https://shop.test/m/a.svg", 10_000, True)
    assert logos.parse_manifest_icons(b"not json", "https://shop.test/") == []


# -- fetching -----------------------------------------------------------------------------------


def test_each_icon_mechanism_picks_the_biggest(fetched, proxy):
    run, df = fetched
    by = df.set_index("domain")
    expect = {
        "links.test": ("http://links.test/apple.png", 180, "PNG"),
        "svg.test": ("http://svg.test/logo.svg", logos.SVG_RENDER_SIZE, "SVG"),
        "manifest.test": ("http://manifest.test/m/i192.png", 192, "PNG"),
        "ico.test": ("http://ico.test/favicon.ico", 48, "ICO"),
        "base.test": ("http://cdn.base.test/assets/fav.png", 40, "PNG"),
        "og.test": ("http://og.test/social.jpg", 256, "JPEG"),  # 600x300 capped at 512 wide
        "ogicon.test": ("http://ogicon.test/i32.png", 32, "PNG"),
        "wwwonly.test": ("http://www.wwwonly.test/w.png", 50, "PNG"),
    }
    for domain, (url, side, fmt) in expect.items():
        row = by.loc[domain]
        assert (row["status"], row["provider"], row["url"]) == ("ok", "site", url), domain
        assert (row["format"], min(row["width"], row["height"])) == (fmt, side), domain
        out = run / "logos" / f"{domain}.png"
        data = out.read_bytes()
        assert io.sha256_bytes(data) == row["sha256"]
        with Image.open(out) as im:
            assert im.mode == "RGBA" and im.size == (row["width"], row["height"])
        ext = {"PNG": "png", "SVG": "svg", "ICO": "ico", "JPEG": "jpg"}[fmt]
        assert (run / "logos" / "original" / f"{domain}.{ext}").exists()
    # the ICO keeps its largest frame; the SVG keeps its transparency
    with Image.open(run / "logos" / "svg.test.png") as im:
        assert im.getpixel((0, 0))[3] == 0
    # og:image is not even downloaded when an icon works
    assert proxy.hits["http://ogicon.test/social.jpg"] == 0


def test_failures_have_reasons_and_dedupe(fetched):
    run, df = fetched
    assert list(df.columns) == list(logos.LOGO_COLUMNS)
    by = df.set_index("domain", drop=False)
    junk = by.loc["junk.test"]
    assert (junk["status"], junk["reason"]) == ("failed", "no_usable_icon")
    for why in ("too_small", "blank", "html"):
        assert why in junk["detail"]
    assert junk["candidates_tried"] == 5
    assert not (run / "logos" / "junk.test.png").exists()
    assert (by.loc["down.test", "status"], by.loc["down.test", "reason"]) == ("failed", "http_502")
    assert by.loc["slow.test", "reason"] == "timeout"
    # the two spellings of links.test are one row; the invalid input has its own row
    assert by.loc["links.test", "input_rows"] == [0, 11]
    bad = df[df["status"] == "invalid"]
    assert bad["raw"].tolist() == ["not a domain"] and bad["reason"].tolist() == ["has_space"]
    assert pd.read_parquet(run / "logos.parquet")["domain"].tolist() == df["domain"].tolist()
    names = sorted(p.name for p in (run / "logos").glob("*.png"))
    assert names == sorted(f"{d}.png" for d in df.loc[df.status == "ok", "domain"])


def test_manifest_rows(fetched):
    run, df = fetched
    m = logos.to_image_manifest(df)
    assert list(m.columns) == list(io.MANIFEST_COLUMNS)
    ok = m[m["status"] == "ok"]
    assert (ok["path"] == "logos/" + ok["origin"] + ".png").all()
    for row in ok.itertuples():
        assert io.sha256_file(run / row.path) == row.image_id
    assert set(m["status"]) == {"ok", "failed", "skipped"}
    assert m.loc[m["status"] == "skipped", "origin"].tolist() == ["not a domain"]


def test_resume_skips_domains_already_done(fetched, proxy, capsys, tmp_path):
    run, first = fetched
    run = shutil.copytree(run, tmp_path / "run")
    before = collections.Counter(proxy.hits)
    again = logos.fetch_logos(["links.test", "svg.test", "junk.test"], run, proxy=proxy.url, **OPTS)
    assert proxy.hits["http://links.test/"] == before["http://links.test/"]
    assert proxy.hits["http://svg.test/"] == before["http://svg.test/"]
    assert proxy.hits["http://junk.test/"] == before["http://junk.test/"] + 1  # failed: retried
    assert (
        again.set_index("domain").loc["links.test", "sha256"]
        == (first.set_index("domain").loc["links.test", "sha256"])
    )
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("logos: 3 domains (0 invalid inputs), 2 ok (66.7%, 2 already on disk)")
    assert "site 0/1 (0%)" in line and "no_usable_icon: 1" in line


def test_fallback_providers_and_https_to_http(proxy, tmp_path):
    # https through this proxy fails fast (no CONNECT); the site provider falls back to http.
    # The favicon-service providers use a local stand-in and fail cleanly for unknown hosts.
    df = logos.fetch_logos(
        ["ico.test", "junk.test", "down.test"],
        tmp_path,
        providers=("site", "duckduckgo", "google"),
        site_url_template="https://{domain}/",
        duckduckgo_url="http://icons.test/ip3/{domain}.ico",
        google_url="http://favicons.test/s2?domain={domain}",
        proxy=proxy.url,
        allow_private_hosts=True,
        max_retries=0,
        timeout_s=2.0,
    )
    by = df.set_index("domain")
    assert by.loc["ico.test", ["status", "provider"]].tolist() == ["ok", "site"]
    assert by.loc["junk.test", ["status", "provider"]].tolist() == ["ok", "duckduckgo"]
    assert by.loc["junk.test", "url"] == "http://icons.test/ip3/junk.test.ico"
    down = by.loc["down.test"]
    assert down["status"] == "failed" and down["reason"] == "proxy_error"
    assert "duckduckgo: http_404" in down["detail"] and "google: http_502" in down["detail"]


def test_default_service_urls_fail_fast_offline(proxy, tmp_path):
    # The real services are never contacted: requests go to the local proxy, which has no
    # CONNECT, so each provider fails at once with a reason instead of hanging.
    df = logos.fetch_logos(
        ["down.test"],
        tmp_path,
        providers=("duckduckgo", "google"),
        proxy=proxy.url,
        allow_private_hosts=True,
        max_retries=0,
        timeout_s=2.0,
    )
    row = df.iloc[0]
    assert row["status"] == "failed" and row["reason"] == "proxy_error"
    assert row["detail"].startswith("duckduckgo: proxy_error")


def test_private_hosts_refused_by_default(tmp_path):
    df = logos.fetch_logos(
        ["127.0.0.1"], tmp_path, providers=("site",), site_url_template="http://{domain}/"
    )
    assert df.iloc[0]["status"] == "invalid"  # IPs are not domains unless allowed
    frame = logos.normalize_domains(["127.0.0.1"], allow_ip=True)
    df = logos.fetch_logos(
        frame, tmp_path, providers=("site",), site_url_template="http://{domain}/"
    )
    assert (df.iloc[0]["status"], df.iloc[0]["reason"]) == ("failed", "private_address")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"providers": ("site", "bing")}, "bing"),
        ({"providers": ()}, "provider"),
        ({"concurrency": 0}, "concurrency"),
        ({"site_url_template": "https://example.com/"}, "{domain}"),
    ],
)
def test_bad_options(tmp_path, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        logos.fetch_logos(["example.com"], tmp_path, **kwargs)
    with pytest.raises(ConfigError, match="read_domains"):
        logos.fetch_logos("domains.csv", tmp_path)
