"""lookalike.logos: normalization, icon discovery and ranking, the provider chain, safety.

Everything network-facing runs against :class:`simweb.SimWeb`, a real forward proxy on
127.0.0.1 that dispatches on the requested host (http directly, https through CONNECT with a
throw-away test CA), so the real default URL templates -- ``https://{domain}/``,
``https://icons.duckduckgo.com/ip3/...``, ``https://www.google.com/s2/favicons?...`` -- are the
ones exercised. The simulated hosts exist only behind the proxy, so most tests pass
``allow_private_hosts=True`` to skip the DNS pre-check of every fake name (it would ask this
machine's resolver about hosts that do not exist); the safety tests run with the default.
"""

from __future__ import annotations

import collections
import json
import shutil
import struct
import time
import zlib
from urllib.parse import urlsplit

import pandas as pd
import pytest
import simweb
from PIL import Image
from simweb import Host, file, page

from lookalike import icons, logos, storage
from lookalike.exceptions import ConfigError
from lookalike.paths import RunLayout

# -- a hand-made web: one host per mechanism or failure ------------------------------------------


def png(side, seed=1, **kw):
    return file(simweb.logo_png(side, seed, **kw))


def ico(sizes, seed=2):
    return file(simweb.logo_ico(sizes, seed), "image/x-icon")


def bomb_png(side=12_000):
    """A small PNG whose header claims side x side pixels (a decompression bomb)."""
    data = bytearray(simweb.logo_png(8, 3))
    struct.pack_into(">II", data, 16, side, side)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def slow_home(req):
    time.sleep(1.5)
    return page()


EXTERNAL_SVG = simweb.logo_svg(
    7,
    extra=(
        '<image href="http://tracker.test/pixel.png" width="50" height="50"/>'
        '<image xlink:href="https://tracker.test/x.png" width="50" height="50"/>'
        '<rect width="10" height="10" style="fill:url(http://tracker.test/bg.png)"/>'
    ),
)
MANIFEST = {
    "icons": [{"src": "i192.png", "sizes": "192x192"}, {"src": "i96.png", "sizes": "96x96"}]
}

HOSTS = {
    # several <link rel> icons: the biggest *real* image wins, not the declared size
    "links.test": Host(
        routes={
            "/": page(
                '<link rel="icon" sizes="16x16" href="/i16.png">'
                '<link rel="shortcut icon" href="/i32.png">'
                '<link rel="icon" sizes="512x512" href="/liar.png">'
                '<link rel="apple-touch-icon" href="/apple.png">'
            ),
            "/i16.png": png(16),
            "/i32.png": png(32),
            "/liar.png": png(24),
            "/apple.png": png(180),
        }
    ),
    # SVG ranks above rasters; its external references are never fetched
    "svg.test": Host(
        routes={
            "/": page(
                '<link rel="icon" sizes="64x64" href="/i64.png">'
                '<link rel="icon" type="image/svg+xml" href="/logo.svg">'
            ),
            "/i64.png": png(64),
            "/logo.svg": file(EXTERNAL_SVG, "image/svg+xml"),
        }
    ),
    "tracker.test": Host(routes={"/pixel.png": png(50), "/x.png": png(50), "/bg.png": png(50)}),
    # web app manifest in a sub-folder, relative icon URLs
    "manifest.test": Host(
        routes={
            "/": page(
                '<link rel="icon" sizes="16x16" href="/f.png">'
                '<link rel="manifest" href="/m/site.json">'
            ),
            "/f.png": png(16),
            "/m/site.json": (
                200,
                {"Content-Type": "application/json"},
                json.dumps(MANIFEST).encode(),
            ),
            "/m/i192.png": png(192, 4),
            "/m/i96.png": png(96),
        }
    ),
    # nothing declared: /favicon.ico with several frames (its largest counts)
    "ico.test": Host(routes={"/": page("<title>plain</title>"), "/favicon.ico": ico([16, 32, 48])}),
    # <base href> moves relative icon URLs to another host
    "base.test": Host(
        routes={
            "/": page('<base href="https://cdn.base.test/assets/"><link rel="icon" href="fav.png">')
        }
    ),
    "cdn.base.test": Host(routes={"/assets/fav.png": png(64)}),
    # social images only when no icon works; a mask-icon ranks below a colour icon
    "og.test": Host(
        routes={
            "/": page('<meta property="og:image" content="/social.jpg">'),
            "/social.jpg": file(simweb.logo_png(600, 5, height=300, fmt="JPEG"), "image/jpeg"),
        }
    ),
    "twitter.test": Host(
        routes={
            "/": page('<meta name="twitter:image" content="/card.png">'),
            "/card.png": png(400, height=200),
        }
    ),
    "ogicon.test": Host(
        routes={
            "/": page(
                '<meta property="og:image" content="/social.jpg"><link rel="icon" href="/i32.png">'
                '<link rel="mask-icon" href="/mask.svg" color="#000">'
            ),
            "/social.jpg": file(simweb.logo_png(600, 5, height=300, fmt="JPEG"), "image/jpeg"),
            "/i32.png": png(32),
            "/mask.svg": file(simweb.logo_svg(8), "image/svg+xml"),
        }
    ),
    "precomposed.test": Host(
        routes={
            "/": page('<link rel="apple-touch-icon-precomposed" href="/t.png">'),
            "/t.png": png(152),
        }
    ),
    # no markup: the well-known files; a large PNG beats small ICO frames
    "wellknown.test": Host(
        routes={"/": page(), "/apple-touch-icon.png": png(180), "/favicon.ico": ico([16, 32])}
    ),
    # transports: bare -> www redirect, www only, no TLS, http -> https redirect
    "redirect.test": Host(default=simweb.to_host("www.redirect.test")),
    "www.redirect.test": Host(
        routes={"/": page('<link rel="icon" href="/icon.png">'), "/icon.png": png(96)}
    ),
    "www.wwwonly.test": Host(
        routes={"/": page('<link rel="icon" href="/w.png">'), "/w.png": png(50)}
    ),
    "httponly.test": Host(
        routes={"/": page('<link rel="icon" href="/h.png">'), "/h.png": png(60)}, tls=False
    ),
    "tohttps.test": simweb.https_only(
        Host(
            routes={
                "/": page('<link rel="icon" href="http://tohttps.test/icon.png">'),
                "/icon.png": png(70),
            }
        )
    ),
    # junk: every path is HTML; a 0-byte favicon; huge and bomb images; a corrupt PNG
    "htmleverywhere.test": Host(default=page("<title>Welcome</title>")),
    "emptyfav.test": Host(routes={"/": page(), "/favicon.ico": file(b"", "image/x-icon")}),
    "huge.test": Host(
        routes={
            "/": page(
                '<link rel="icon" sizes="512x512" href="/huge.png">'
                '<link rel="icon" sizes="256x256" href="/bomb.png">'
                '<link rel="icon" sizes="64x64" href="/ok.png">'
            ),
            "/huge.png": file(b"\x89PNG\r\n\x1a\n" + bytes(6_000_000)),
            "/bomb.png": file(bomb_png()),
            "/ok.png": png(64),
        }
    ),
    "corrupt.test": Host(
        routes={
            "/": page('<link rel="icon" sizes="128x128" href="/c.png">'),
            "/c.png": file(simweb.logo_png(128, 6)[:300]),
            "/favicon.ico": ico([16, 32, 64]),
        }
    ),
    "junk.test": Host(
        routes={
            "/": page(
                '<link rel="icon" href="/one.png"><link rel="icon" sizes="64x64" href="/flat.png">'
                '<link rel="icon" sizes="32x32" href="/clear.png">'
            ),
            "/one.png": png(1),
            "/flat.png": file(simweb.flat_png(64)),
            "/clear.png": file(simweb.flat_png(32, (0, 0, 0, 0))),
            "/favicon.ico": page("<p>oops</p>"),
            "/apple-touch-icon.png": page("<p>oops</p>"),
        }
    ),
    # tiny icons: kept only when no provider has a bigger one
    "tiny.test": Host(routes={"/": page(), "/favicon.ico": ico([16])}),
    "tinyonly.test": Host(routes={"/": page(), "/favicon.ico": ico([16])}),
    # the site has nothing and Google answers with its 16x16 globe
    "globe.test": Host(routes={"/": page()}),
    # robots.txt: one path forbidden, or the whole site
    "robots.test": Host(
        routes={
            "/robots.txt": (
                200,
                {"Content-Type": "text/plain"},
                b"User-agent: *\nDisallow: /private/\n",
            ),
            "/": page('<link rel="icon" sizes="256x256" href="/private/logo.png">'),
            "/private/logo.png": png(256),
            "/favicon.ico": ico([16, 48]),
        }
    ),
    "norobots.test": Host(
        routes={
            "/robots.txt": (200, {"Content-Type": "text/plain"}, b"User-agent: *\nDisallow: /\n"),
            "/": page('<link rel="icon" href="/i.png">'),
            "/i.png": png(64),
        }
    ),
    "slow.test": Host(routes={"/": slow_home}),
    # ddgwww.test and down.test are down (no host); only DuckDuckGo knows www.ddgwww.test
    **simweb.service_hosts(
        duckduckgo={"www.ddgwww.test": simweb.logo_ico([32, 64], 9)},
        google={"tiny.test": simweb.logo_png(128, 10), "globe.test": simweb.globe_png()},
    ),
}

INPUT = [
    "links.test",
    "https://www.SVG.test/about",
    "manifest.test",
    "ico.test",
    "base.test",
    "og.test",
    "twitter.test",
    "ogicon.test",
    "precomposed.test",
    "wellknown.test",
    "redirect.test",
    "wwwonly.test",
    "httponly.test",
    "tohttps.test",
    "htmleverywhere.test",
    "emptyfav.test",
    "huge.test",
    "corrupt.test",
    "junk.test",
    "tiny.test",
    "tinyonly.test",
    "globe.test",
    "robots.test",
    "norobots.test",
    "ddgwww.test",
    "down.test",
    "slow.test",
    "HTTP://Links.TEST:8080/x?y=1",  # the same domain spelled differently
    "links.test.",
    "not a domain",
    "localhost",
    "10.0.0.1",
    "",
]

#: domain -> (provider, url, kind, format, shorter side of the written PNG)
EXPECTED_OK = {
    "links.test": ("site", "https://links.test/apple.png", "apple-touch-icon", "PNG", 180),
    "svg.test": ("site", "https://svg.test/logo.svg", "icon", "SVG", icons.SVG_RENDER_SIZE),
    "manifest.test": ("site", "https://manifest.test/m/i192.png", "manifest", "PNG", 192),
    "ico.test": ("site", "https://ico.test/favicon.ico", "favicon.ico", "ICO", 48),
    "base.test": ("site", "https://cdn.base.test/assets/fav.png", "icon", "PNG", 64),
    "og.test": ("site", "https://og.test/social.jpg", "og:image", "JPEG", 256),  # 512x256
    "twitter.test": ("site", "https://twitter.test/card.png", "twitter:image", "PNG", 200),
    "ogicon.test": ("site", "https://ogicon.test/i32.png", "icon", "PNG", 32),
    "precomposed.test": (
        "site",
        "https://precomposed.test/t.png",
        "apple-touch-icon-precomposed",
        "PNG",
        152,
    ),
    "wellknown.test": (
        "site",
        "https://wellknown.test/apple-touch-icon.png",
        "apple-touch-icon.png",
        "PNG",
        180,
    ),
    "redirect.test": ("site", "https://www.redirect.test/icon.png", "icon", "PNG", 96),
    "wwwonly.test": ("site", "https://www.wwwonly.test/w.png", "icon", "PNG", 50),
    "httponly.test": ("site", "http://httponly.test/h.png", "icon", "PNG", 60),
    "tohttps.test": ("site", "https://tohttps.test/icon.png", "icon", "PNG", 70),
    "huge.test": ("site", "https://huge.test/ok.png", "icon", "PNG", 64),
    "corrupt.test": ("site", "https://corrupt.test/favicon.ico", "favicon.ico", "ICO", 64),
    "tiny.test": (
        "google",
        "https://www.google.com/s2/favicons?domain=tiny.test&sz=256",
        "google",
        "PNG",
        128,
    ),
    "tinyonly.test": ("site", "https://tinyonly.test/favicon.ico", "favicon.ico", "ICO", 16),
    "robots.test": ("site", "https://robots.test/favicon.ico", "favicon.ico", "ICO", 48),
    "ddgwww.test": (
        "duckduckgo",
        "https://icons.duckduckgo.com/ip3/www.ddgwww.test.ico",
        "duckduckgo",
        "ICO",
        64,
    ),
}
#: domain -> (reason, words the detail must contain)
EXPECTED_FAILED = {
    "htmleverywhere.test": ("no_usable_icon", ["html"]),
    "emptyfav.test": ("no_usable_icon", ["empty"]),
    "junk.test": ("no_usable_icon", ["too_small", "blank", "html"]),
    "globe.test": ("no_usable_icon", ["google: placeholder", "16x16"]),
    "norobots.test": ("robots_disallowed", ["duckduckgo: http_404"]),
    "down.test": ("proxy_error", ["google: placeholder", "404"]),
    "slow.test": ("timeout", ["slow.test"]),
}
OPTS = dict(allow_private_hosts=True, max_retries=0, timeout_s=1.0, concurrency=8, progress=False)


@pytest.fixture(scope="module")
def web():
    with simweb.SimWeb(HOSTS) as w, pytest.MonkeyPatch.context() as mp:
        mp.setenv("REQUESTS_CA_BUNDLE", w.ca_bundle)  # trust the simulated sites' TLS
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "NO_PROXY"):
            mp.delenv(name, raising=False)
        yield w


@pytest.fixture(scope="module")
def fetched(web, tmp_path_factory):
    """One run of the default chain (default URL templates) over the hand-made web."""
    run = tmp_path_factory.mktemp("logos-run")
    df = logos.fetch_logos(INPUT, run, proxy=web.url, **OPTS)
    return run, df


# -- the chain over the hand-made web -------------------------------------------------------------


def test_each_domain_gets_the_expected_logo(fetched):
    run, df = fetched
    by = df.set_index("domain")
    for domain, (provider, url, kind, fmt, side) in EXPECTED_OK.items():
        row = by.loc[domain]
        got = (row["status"], row["provider"], row["url"], row["kind"], row["format"])
        assert got == ("ok", provider, url, kind, fmt), (domain, row["detail"])
        assert min(row["width"], row["height"]) == side, domain
        assert pd.isna(row["reason"]) and row["http_status"] == 200, domain
        out = run / "logos" / f"{domain}.png"
        assert storage.sha256_bytes(out.read_bytes()) == row["sha256"]
        with Image.open(out) as im:
            assert im.mode == "RGBA" and im.size == (row["width"], row["height"])
        ext = {"PNG": "png", "SVG": "svg", "ICO": "ico", "JPEG": "jpg"}[fmt]
        assert (run / "logos" / "original" / f"{domain}.{ext}").exists()
    for domain, (reason, words) in EXPECTED_FAILED.items():
        row = by.loc[domain]
        assert (row["status"], row["reason"]) == ("failed", reason), (domain, row["detail"])
        for word in words:
            assert word in row["detail"], (domain, word, row["detail"])
        assert not (run / "logos" / f"{domain}.png").exists()
    assert set(EXPECTED_OK) | set(EXPECTED_FAILED) == set(df["domain"].dropna())


def test_details_explain_rejected_candidates(fetched):
    _, df = fetched
    detail = df.set_index("domain")["detail"]
    assert "too_large" in detail["huge.test"] and "decompression_bomb" in detail["huge.test"]
    assert "corrupt" in detail["corrupt.test"]
    # a 16 px icon is kept but the chain goes on, and Google's bigger one wins
    assert detail["tiny.test"].startswith("site: favicon.ico 16x16")
    assert detail["tinyonly.test"].startswith("site: favicon.ico 16x16")
    assert "google: placeholder" in detail["tinyonly.test"]


def test_svg_keeps_alpha_and_its_external_references_are_never_fetched(fetched, web):
    run, _ = fetched
    with Image.open(run / "logos" / "svg.test.png") as im:
        assert im.getpixel((0, 0))[3] == 0
    assert web.hits["https://svg.test/logo.svg"] == 1
    assert web.hits_for_host("tracker.test") == 0


def test_last_resorts_and_robots(fetched, web):
    # og:image is not even downloaded when an icon works
    assert web.hits["https://ogicon.test/social.jpg"] == 0
    # robots.txt is honoured for the homepage and every icon
    assert web.hits["https://robots.test/robots.txt"] == 1
    assert web.hits["https://robots.test/private/logo.png"] == 0
    assert web.hits["https://norobots.test/"] == web.hits["http://norobots.test/"] == 0
    # the logo services are not consulted without their credentials
    assert web.hits_for_host("img.logo.dev") == web.hits_for_host("cdn.brandfetch.io") == 0


def test_duplicates_and_invalid_inputs(fetched):
    run, df = fetched
    assert list(df.columns) == list(logos.LOGO_COLUMNS)
    by = df.set_index("domain")
    assert by.loc["links.test", "input_rows"] == [0, 27, 28]
    assert by.loc["links.test", "raw"] == "links.test"
    bad = df[df["status"] == "invalid"].set_index("raw")
    assert bad["reason"].to_dict() == {
        "not a domain": "has_space",
        "localhost": "no_dot",
        "10.0.0.1": "ip_not_allowed",
        "": "empty",
    }
    assert bad["candidates_tried"].eq(0).all() and bad["domain"].isna().all()
    on_disk = pd.read_parquet(run / "logos.parquet")
    assert on_disk["domain"].tolist() == df["domain"].tolist()
    names = sorted(p.name for p in (run / "logos").glob("*.png"))
    assert names == sorted(f"{d}.png" for d in df.loc[df.status == "ok", "domain"])


def test_summary_table(fetched, capsys):
    run, df = fetched
    summary = logos.summarize(df)
    assert list(summary.columns) == ["section", "name", "domains", "ok", "percent"]
    rows = {(s, n): (d, ok, p) for s, n, d, ok, p in summary.itertuples(index=False)}
    n_ok, n_valid = len(EXPECTED_OK), len(EXPECTED_OK) + len(EXPECTED_FAILED)
    assert rows["overall", "all domains"] == (n_valid, n_ok, round(100 * n_ok / n_valid, 1))
    n_site = sum(v[0] == "site" for v in EXPECTED_OK.values())
    assert rows["provider", "site"][:2] == (n_valid, n_site)
    assert rows["provider", "google"][1] == 1 and rows["provider", "duckduckgo"][1] == 1
    assert rows["failed", "no_usable_icon"][0] == 4
    assert rows["invalid", "has_space"][0] == 1
    assert [p for p in summary.loc[summary.section == "provider", "name"]] == [
        "site",
        "duckduckgo",
        "google",
    ]
    on_disk = pd.read_csv(RunLayout(run).logos_summary)
    assert on_disk["domains"].tolist() == summary["domains"].tolist()


def test_manifest_rows(fetched):
    run, df = fetched
    m = logos.to_image_manifest(df)
    assert list(m.columns) == list(storage.MANIFEST_COLUMNS)
    ok = m[m["status"] == "ok"]
    assert (ok["path"] == "logos/" + ok["origin"] + ".png").all()
    for row in ok.itertuples():
        assert storage.sha256_file(run / row.path) == row.image_id
    assert set(m["status"]) == {"ok", "failed", "skipped"}
    assert "not a domain" in m.loc[m["status"] == "skipped", "origin"].tolist()
    assert (m["label"] == m["origin"]).all()  # a logo is named by its domain
    one = ok["origin"].iloc[0]
    named = logos.to_image_manifest(df, {one: "Acme Inc."}).set_index("origin")["label"]
    assert named[one] == "Acme Inc." and (named.drop(one) == named.drop(one).index).all()


def test_resume_skips_domains_already_done(fetched, web, capsys, tmp_path):
    run, first = fetched
    run = shutil.copytree(run, tmp_path / "run")
    before = collections.Counter(web.hits)
    again = logos.fetch_logos(
        ["links.test", "svg.test", "junk.test"], run, proxy=web.url, providers=["site"], **OPTS
    )
    assert web.hits["https://links.test/"] == before["https://links.test/"]
    assert web.hits["https://svg.test/"] == before["https://svg.test/"]
    assert web.hits["https://junk.test/"] == before["https://junk.test/"] + 1  # failed: retried
    sha = again.set_index("domain")["sha256"]
    assert sha["links.test"] == first.set_index("domain").loc["links.test", "sha256"]
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("logos: 3 domains (0 invalid inputs), 2 ok (66.7%, 2 already on disk)")
    assert "no_usable_icon: 1" in line and "1 fetched" in line


def test_a_killed_run_loses_no_domain_it_had_fetched(fetched, web, tmp_path):
    # A kill leaves the finished domains in the journal only (logos.parquet not yet written):
    # the next run replays it and asks nothing again for them.
    run, first = fetched
    run = shutil.copytree(run, tmp_path / "run")
    layout = RunLayout(run)
    done = first[first["domain"].isin(["links.test", "svg.test"])]
    layout.logos.unlink()
    with RunLayout.journal(layout.logos).open("w") as f:
        for rec in done.to_dict("records"):
            rec["input_rows"] = [int(i) for i in rec["input_rows"]]
            f.write(
                json.dumps(
                    {
                        k: (None if pd.isna(v) else v) if k != "input_rows" else v
                        for k, v in rec.items()
                    }
                )
                + "\n"
            )
        f.write('{"domain": "ico.te')  # the line being written when the run was killed
    before = collections.Counter(web.hits)
    again = logos.fetch_logos(["links.test", "svg.test"], run, proxy=web.url, **OPTS)
    assert web.hits == before
    assert again["status"].tolist() == ["ok", "ok"]
    assert not RunLayout.journal(layout.logos).exists()


# -- inputs, proxies, credentials, safety, limits -----------------------------------------------


def test_file_input_and_proxy_from_the_environment(web, tmp_path, monkeypatch):
    pd.DataFrame({"site": ["https://www.Links.test/", "ico.test", "a b"]}).to_parquet(
        tmp_path / "d.parquet"
    )
    monkeypatch.setenv("HTTP_PROXY", web.url)
    monkeypatch.setenv("HTTPS_PROXY", web.url)
    df = logos.fetch_logos(
        tmp_path / "d.parquet", tmp_path / "run", domain_column="site", providers=["site"], **OPTS
    )
    assert df["status"].tolist() == ["ok", "ok", "invalid"]
    assert df["url"].tolist()[:2] == [
        "https://links.test/apple.png",
        "https://ico.test/favicon.ico",
    ]
    with pytest.raises(ConfigError, match="no column 'domain'"):
        logos.fetch_logos(tmp_path / "d.parquet", tmp_path / "run", **OPTS)


def test_ip_addresses_only_when_allowed(tmp_path):
    df = logos.fetch_logos(["127.0.0.1"], tmp_path, providers=["site"], progress=False)
    assert (df.iloc[0]["status"], df.iloc[0]["reason"]) == ("invalid", "ip_not_allowed")
    # allowed as a domain, then refused as a private address (the default safety rule)
    df = logos.fetch_logos(
        ["http://127.0.0.1:9/"],
        tmp_path,
        providers=["site"],
        allow_ip=True,
        respect_robots=False,
        progress=False,
    )
    assert (df.iloc[0]["status"], df.iloc[0]["reason"]) == ("failed", "private_address")


def test_private_addresses_refused_on_links_and_redirects(tmp_path):
    """Through the proxy, with allow_private_hosts left False: links or redirects to loopback,
    private or metadata addresses are refused before any request is sent."""
    inner = simweb.SimWeb({"intranet.test": Host(routes={"/secret.png": png(200)})})
    port = urlsplit(inner.url).port
    hosts = {
        "safe.test": Host(
            routes={
                "/": page(
                    f'<link rel="icon" sizes="512x512" href="http://127.0.0.1:{port}/secret.png">'
                    '<link rel="icon" sizes="256x256" href="/meta.png">'
                    '<link rel="icon" sizes="128x128" href="http://localhost/x.png">'
                    '<link rel="icon" sizes="64x64" href="/ok.png">'
                ),
                "/meta.png": simweb.redirect("http://169.254.169.254/latest/meta-data/"),
                "/ok.png": png(64),
            }
        )
    }
    with inner, simweb.SimWeb(hosts) as web, pytest.MonkeyPatch.context() as mp:
        mp.setenv("REQUESTS_CA_BUNDLE", web.ca_bundle)
        df = logos.fetch_logos(
            ["safe.test"],
            tmp_path,
            providers=["site"],
            proxy=web.url,
            max_retries=0,
            progress=False,
        )
        row = df.iloc[0]
        assert (row["status"], row["url"]) == ("ok", "https://safe.test/ok.png")
        assert "private_address x3" in row["detail"]
        assert web.hits["https://safe.test/meta.png"] == 1  # the redirect itself was fetched
        assert sum(inner.hits.values()) == 0
        assert web.hits_for_host("169.254.169.254") == web.hits_for_host("localhost") == 0
        assert web.hits_for_host("127.0.0.1") == 0


def test_credentialed_providers_and_redaction(tmp_path, monkeypatch):
    token, client_id = "pk_SECRET123", "bf-ID-456"
    seen = []

    def logodev(req):
        seen.append(req.params.get("token"))
        if req.params.get("token") != token:
            return 401, {}, b'{"msg": "invalid api token"}'
        return file(simweb.logo_png(256, 11)) if req.path == "/acme.test" else (404, {}, b"")

    def brandfetch(req):
        seen.append(req.params.get("c"))
        return (
            file(simweb.logo_png(200, 12)) if "/domain/beta.test/" in req.path else (404, {}, b"")
        )

    hosts = {
        "img.logo.dev": Host(default=logodev),
        "cdn.brandfetch.io": Host(default=brandfetch),
        "logo.clearbit.com": Host(default=lambda req: (404, {}, b"")),
    }
    with simweb.SimWeb(hosts) as web:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", web.ca_bundle)
        monkeypatch.setenv("BRANDFETCH_CLIENT_ID", client_id)  # read from the environment
        opts = dict(OPTS, proxy=web.url)
        providers = ["logodev", "brandfetch", "clearbit"]
        with pytest.warns(UserWarning, match="shut down on 1 December 2025"):
            df = logos.fetch_logos(
                ["acme.test", "beta.test", "gamma.test"],
                tmp_path,
                providers=providers,
                logodev_token=token,
                **opts,
            )
        by = df.set_index("domain")
        assert by.loc["acme.test", ["status", "provider"]].tolist() == ["ok", "logodev"]
        assert by.loc["beta.test", ["status", "provider"]].tolist() == ["ok", "brandfetch"]
        gamma = by.loc["gamma.test"]
        assert (gamma["status"], gamma["reason"]) == ("failed", "http_404")
        assert gamma["providers_tried"] == "logodev,brandfetch,clearbit"
        assert web.hits["https://logo.clearbit.com/gamma.test"] == 1
        assert set(seen) == {token, client_id}
        text = df.astype(str).to_string()
        assert token not in text and client_id not in text and "REDACTED" in text
        assert by.loc["acme.test", "url"] == (
            "https://img.logo.dev/acme.test?token=REDACTED&size=256&format=png&fallback=404"
        )
        # without credentials both are skipped: no request at all
        monkeypatch.delenv("BRANDFETCH_CLIENT_ID")
        before = web.hits_for_host("img.logo.dev") + web.hits_for_host("cdn.brandfetch.io")
        with pytest.raises(ConfigError, match=r"logodev \(no logodev_token\)"):
            logos.fetch_logos(["acme.test"], tmp_path / "b", providers=providers[:2], **opts)
        df = logos.fetch_logos(
            ["acme.test"], tmp_path / "c", providers=["brandfetch", "site"], **opts
        )
        assert df.iloc[0]["providers_tried"] == "site"
        after = web.hits_for_host("img.logo.dev") + web.hits_for_host("cdn.brandfetch.io")
        assert after == before


def test_per_host_concurrency_cap_on_a_service(tmp_path, monkeypatch):
    ddg = simweb.InFlight((404, {}, b""))
    with simweb.SimWeb({simweb.DUCKDUCKGO_HOST: Host(default=ddg)}) as web:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", web.ca_bundle)
        df = logos.fetch_logos(
            [f"d{i}.test" for i in range(16)],
            tmp_path,
            providers=["duckduckgo"],
            per_host_concurrency=2,
            service_delay_s=0.0,
            proxy=web.url,
            **OPTS,
        )
    assert (df["reason"] == "http_404").all() and sum(web.hits.values()) == 32
    assert ddg.peak <= 2


def test_per_domain_budget(tmp_path, monkeypatch):
    def slow_icon(req):
        time.sleep(0.4)
        return file(simweb.logo_png(16, 13))

    home = page("".join(f'<link rel="icon" href="/i{i}.png">' for i in range(10)))
    with simweb.SimWeb({"slowicons.test": Host(routes={"/": home}, default=slow_icon)}) as web:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", web.ca_bundle)
        df = logos.fetch_logos(
            ["slowicons.test", "other.test"],
            tmp_path,
            providers=["site"],
            proxy=web.url,
            domain_budget_s=1.5,
            respect_robots=False,
            **dict(OPTS, timeout_s=5.0),
        )
    by = df.set_index("domain")
    # some 16 px icons arrived before the budget ran out: the domain keeps the best of them
    assert by.loc["slowicons.test", "status"] == "ok"
    assert 1 <= by.loc["slowicons.test", "candidates_tried"] < 10
    assert sum(v for k, v in web.hits.items() if "/i" in k) < 10
    with simweb.SimWeb({"slowhome.test": Host(default=slow_icon)}) as web:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", web.ca_bundle)
        df = logos.fetch_logos(
            ["slowhome.test"],
            tmp_path / "b",
            providers=["site", "duckduckgo"],
            proxy=web.url,
            domain_budget_s=0.2,
            respect_robots=False,
            **dict(OPTS, timeout_s=5.0),
        )
    row = df.iloc[0]
    assert (row["status"], row["reason"]) == ("failed", "budget_exceeded")
    assert web.hits_for_host(simweb.DUCKDUCKGO_HOST) == 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"providers": ("site", "bing")}, "bing"),
        ({"providers": ()}, "provider"),
        ({"concurrency": 0}, "concurrency"),
        ({"per_host_concurrency": 0}, "per_host_concurrency"),
        ({"domain_budget_s": 0}, "domain_budget_s"),
        ({"site_url_template": "https://example.com/"}, "{domain}"),
        ({"google_url": "https://g.test/?d={domain}&x={other}"}, "google_url"),
        ({"logodev_url": "https://img.logo.dev/{domain}"}, "{token}"),
        ({"duckduckgo_url": "ftp://{domain}/x.ico"}, "https://"),
        # issue 12: max_domains=-3 used to process 1 of 4 domains ([:-3]) without a word
        ({"max_domains": -3}, "max_domains"),
        ({"max_domains": 0}, "max_domains"),
        ({"max_domains": "abc"}, "max_domains"),
        ({"max_domains": 1.5}, "max_domains"),
        ({"concurrency": -2}, "concurrency"),
        ({"min_side": -1}, "min_side"),
        ({"prefer_side": "big"}, "prefer_side"),
        ({"service_delay_s": -1}, "service_delay_s"),
        ({"domain_budget_s": "abc"}, "domain_budget_s"),
        ({"timeout_s": -1}, "timeout_s"),
    ],
)
def test_bad_options(tmp_path, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        logos.fetch_logos(["example.com"], tmp_path, **kwargs)


def test_bad_inputs(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        logos.fetch_logos("domains.csv", tmp_path)
    with pytest.raises(ConfigError, match="no 'host' column"):
        logos.fetch_logos(pd.DataFrame({"x": ["a.com"]}), tmp_path, domain_column="host")


# -- a generated web of 500 domains ---------------------------------------------------------------


def test_generated_web_recovers_the_largest_logos(tmp_path, monkeypatch):
    hosts, truth = simweb.generate_web(500, random_state=0)
    with simweb.SimWeb(hosts) as web:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", web.ca_bundle)
        df = logos.fetch_logos(truth["domain"].tolist(), tmp_path, proxy=web.url, **OPTS)
    got = truth.merge(df, on="domain", suffixes=("_truth", ""), validate="1:1")
    rec = got[got["recoverable"]]
    assert set(rec["mechanism"]) == set(simweb.MECHANISMS)  # every mechanism is exercised
    recovered = (rec["status"] == "ok").mean()
    assert recovered >= 0.99, rec.loc[rec["status"] != "ok", ["domain", "mechanism", "detail"]]
    path = rec["url"].map(lambda u: urlsplit(u).path if isinstance(u, str) else None)
    largest = (path == rec["path"]) & (rec["provider"] == rec["provider_truth"])
    assert largest.mean() >= 0.95, rec.loc[~largest, ["domain", "mechanism", "decoys", "url"]]
    side = rec[largest][["width", "height"]].min(axis=1)
    assert (side == rec.loc[largest, "side"]).mean() >= 0.95
    bad = got[~got["recoverable"]]
    assert len(bad) == 40 and (bad["status"] == "failed").all()
    assert (bad["reason"] == bad["reason_truth"]).all(), bad[["domain", "mechanism", "reason"]]


@pytest.mark.parametrize("status", [400, 403])
def test_site_still_tries_the_well_known_icons_when_the_homepage_answers_an_error(
    tmp_path, monkeypatch, status
):
    # Issue 12: bot protection answers 403 (or a site 400) on "/", yet serves /favicon.ico
    # (here through a redirect). Before, the site provider gave up on the homepage's error.
    # A host that cannot be reached at all is not asked for its icons.
    refused = (status, {"Content-Type": "text/html"}, b"<html>no bots</html>")
    hosts = {
        "guarded.test": Host(
            routes={
                "/": refused,
                "/favicon.ico": simweb.redirect("/static/icon.ico"),
                "/static/icon.ico": ico([16, 48]),
            }
        ),
        "www.guarded.test": Host(default=refused),
    }
    with simweb.SimWeb(hosts) as web:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", web.ca_bundle)
        df = logos.fetch_logos(
            ["guarded.test", "gone.test"],
            tmp_path,
            providers=["site"],
            proxy=web.url,
            respect_robots=False,
            **dict(OPTS, timeout_s=5.0),
        )
    by = df.set_index("domain")
    row = by.loc["guarded.test"]
    assert (row["status"], row["kind"], row["format"]) == ("ok", "favicon.ico", "ICO")
    assert row["url"] == "https://guarded.test/static/icon.ico"
    assert (row["width"], row["height"]) == (48, 48)
    assert by.loc["gone.test", "status"] == "failed"
    assert not [u for u in web.hits if "gone.test/" in u and u.endswith(("ico", "png"))]
