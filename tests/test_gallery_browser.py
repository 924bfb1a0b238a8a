"""The HTML gallery in a real browser: Debian's chromium, headless.

``make test`` installs chromium first (``make browser``); without it these tests are skipped
with the command that installs it. The page is opened from disk (file://), as someone would
open a shared gallery. A small check script, added to a copy of the page, renders every
clustering with every image before the page's load event, then writes which images failed
to load into the DOM, which chromium dumps.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from bs4 import BeautifulSoup
from PIL import Image
from synthetic_run import COLORS, make_run
from test_gallery import DEMO_DUPLICATE, QUERY_COLOUR, add_find_results, make_demo_shop_run

from lookalike.duplicates import find_near_duplicates
from lookalike.elbow import choose_k
from lookalike.gallery import write_gallery
from lookalike.paths import RunLayout

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed and could not be: run `make browser` "
    "(as root: apt-get install -y chromium) to run the real-browser gallery test",
)

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
]

CHECK = """
<script>
(function () {
  // Runs while the page is parsed: every image created now delays the load event, so when
  // "load" fires each one has loaded or failed. All views are cloned into one off-screen box.
  const g = window.gallery;
  const all = document.createElement("div");
  all.style.cssText = "position: absolute; left: -100000px; top: 0";
  document.body.appendChild(all);
  let views = 0;
  for (let i = 0; i < g.data.clusterings.length; i++) {
    g.render(i, {expand: true});
    for (const node of document.getElementById("clusters").children) {
      all.appendChild(node.cloneNode(true));
    }
    views++;
  }
  g.render(g.data.start);
  g.showNeighbours(g.data.clusterings[g.data.start].clusters[0].m[0]);
  window.addEventListener("load", () => {
    const bad = (im) => !im.complete || im.naturalWidth === 0;
    const imgs = [...document.images];
    const panel = [...document.querySelectorAll("#panel img")];
    const out = {
      views: views,
      images: imgs.length,
      broken: imgs.filter(bad).map((im) => im.getAttribute("src")),
      neighbours: panel.filter((im) => !bad(im)).length,
      panel_broken: panel.filter(bad).length,
    };
    const pre = document.createElement("pre");
    pre.id = "check";
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  });
})();
</script>
"""


def _chromium(tmp_path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"  # an empty profile for every run
    shutil.rmtree(profile, ignore_errors=True)
    profile.mkdir()
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )


def _check_in_browser(tmp_path, gallery) -> dict:
    page = gallery.with_name("gallery_check.html")  # beside it: same relative image paths
    page.write_text(gallery.read_text(encoding="utf-8").replace("</body>", CHECK + "</body>"))
    proc = _chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", page.as_uri())
    found = BeautifulSoup(proc.stdout, "html.parser").find("pre", id="check")
    assert found is not None, (
        f"the check did not run:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    )
    return json.loads(found.string)


@pytest.fixture(scope="module")
def gallery_run(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("gallery"), n_per=10)
    dups = find_near_duplicates(run, threshold=0.99)
    choice = choose_k(pd.read_csv(run / "metrics.csv"), 3)
    return run, dups, choice


def _screenshot(tmp_path, page, shot, size: str) -> None:
    """Chromium's screenshot of ``page`` at ``size`` ("W,H") into ``shot``."""
    proc = _chromium(
        tmp_path,
        f"--window-size={size}",
        "--virtual-time-budget=10000",
        f"--screenshot={shot}",
        page.as_uri(),
    )
    assert shot.exists(), proc.stderr[-3000:]


@pytest.mark.parametrize("inline", [False, True])
def test_gallery_images_load_in_chromium(gallery_run, tmp_path, inline):
    run, dups, choice = gallery_run
    out = write_gallery(
        run,
        tmp_path / "report" / "gallery.html",
        choice=choice,
        duplicates=dups,
        dup_threshold=0.99,
        inline=inline,
        n_neighbours=6,
    )
    result = _check_in_browser(tmp_path, out)
    assert result["views"] == 8  # kmeans and agglomerative, k = 2, 3, 4, 5
    assert result["images"] >= 8 * 31  # every image in every view, and the duplicates
    assert result["broken"] == []
    assert result["neighbours"] == 1 + 6 and result["panel_broken"] == 0


def test_the_check_sees_a_broken_image(gallery_run, tmp_path):
    run, dups, choice = gallery_run
    out = write_gallery(run, tmp_path / "report" / "gallery.html", choice=choice, inline=False)
    victim = sorted((tmp_path / "report" / "gallery_files").glob("*.jpg"))[0]
    victim.unlink()
    result = _check_in_browser(tmp_path, out)
    assert result["broken"] and all(victim.name in src for src in result["broken"])


def test_gallery_screenshot(gallery_run, tmp_path):
    run, dups, choice = gallery_run
    out = write_gallery(
        run, choice=choice, duplicates=dups, dup_threshold=0.99, inline=False, n_neighbours=6
    )
    shot = run / "report" / "gallery.png"  # kept with the run for a person to look at
    _screenshot(tmp_path, out, shot, "1280,900")
    with Image.open(shot) as im:
        assert im.size == (1280, 900)
        arr = np.asarray(im.convert("RGB")).astype(int)
    # The thumbnails are on screen: each group's colour is in the picture.
    for colour in COLORS:
        close = np.abs(arr - np.array(colour)).max(axis=2) < 40
        assert close.sum() > 200, colour
    print(f"screenshot: {shot}")


LOAD_PAGES = """
<script>
(function () {
  // Loads every clustering's page file (a script from file://) before the load event,
  // renders each expanded and records which images failed.
  const g = window.gallery;
  const got = {views: 0, members: 0, kept: 0};
  let left = g.data.clusterings.length;
  g.data.clusterings.forEach((c, index) => g.loadPage(c, () => {
    g.render(index, {expand: true});
    got.views++;
    for (const cl of c.clusters) { got.members += cl.m.length; got.kept += cl.kept; }
    if (--left === 0) window.addEventListener("load", () => {
      const pre = document.createElement("pre");
      pre.id = "check";
      pre.textContent = JSON.stringify(got);
      document.body.appendChild(pre);
    });
  }));
})();
</script>
"""


def test_gallery_page_files_load_from_file_urls(gallery_run, tmp_path):
    run, dups, choice = gallery_run
    out = write_gallery(
        run, tmp_path / "report" / "gallery.html", choice=choice, page_size=3, inline=False
    )
    assert len(list((tmp_path / "report" / "gallery_pages").glob("*.js"))) == 8
    page = out.with_name("paged.html")
    page.write_text(out.read_text().replace("</body>", LOAD_PAGES + "</body>"))
    proc = _chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", page.as_uri())
    found = BeautifulSoup(proc.stdout, "html.parser").find("pre", id="check")
    assert found is not None, f"the pages did not load:\n{proc.stderr[-3000:]}"
    result = json.loads(found.string)
    assert result["views"] == 8 and result["members"] == result["kept"] > 8 * 3 * 2


FIND_CHECK = """
<script>
window.addEventListener("load", () => {
  // The Find section as the browser drew it: its cards, their images and captions.
  const bad = (im) => !im.complete || im.naturalWidth === 0;
  const cards = [...document.querySelectorAll("#find section.card")];
  const out = {
    link: !document.getElementById("find-link").hidden,
    cards: cards.map((c) => ({
      query: c.getAttribute("data-query"),
      images: c.querySelectorAll("img").length,
      broken: [...c.querySelectorAll("img")].filter(bad).length,
      captions: [...c.querySelectorAll("figure.hit")].map((f) => f.textContent),
    })),
  };
  const first = cards[0].querySelector("figure.hit img");
  first.click();  // a hit shows its neighbours in the panel
  out.panel = [...document.querySelectorAll("#panel figure img")].filter((im) => !bad(im)).length;
  const pre = document.createElement("pre");
  pre.id = "check";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


@pytest.mark.parametrize("inline", [False, True])
def test_gallery_find_section_shows_the_hits(tmp_path, inline):
    run = make_run(tmp_path, n_per=4)
    table = add_find_results(run, "find", n_queries=2, top=3)
    out = write_gallery(run, tmp_path / "report" / "gallery.html", inline=inline, n_neighbours=4)
    page = out.with_name("find_check.html")
    page.write_text(out.read_text(encoding="utf-8").replace("</body>", FIND_CHECK + "</body>"))
    proc = _chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", page.as_uri())
    found = BeautifulSoup(proc.stdout, "html.parser").find("pre", id="check")
    assert found is not None, f"the check did not run:\n{proc.stderr[-3000:]}"
    result = json.loads(found.string)
    assert result["link"] and [c["query"] for c in result["cards"]] == list(
        dict.fromkeys(table["query"].map(RunLayout(run).shown))  # paths shown inside the run
    )
    for card, (_, rows) in zip(result["cards"], table.groupby("query", sort=False), strict=True):
        assert card["images"] == 1 + 3 and card["broken"] == 0  # the query and its hits
        for caption, (_, hit) in zip(card["captions"], rows.iterrows(), strict=True):
            assert f"{hit['similarity']:.3f}" in caption and hit["label"] in caption
            assert "share" in caption
    assert result["panel"] == 1 + 4  # the clicked hit and its neighbours


def test_gallery_find_section_screenshot(tmp_path):
    run = make_run(tmp_path, n_per=4)
    add_find_results(run, "find", n_queries=2, top=3)
    out = write_gallery(run, inline=False)
    shot = run / "report" / "gallery-find.png"  # kept with the run for a person to look at
    _screenshot(tmp_path, out, shot, "1280,1600")
    with Image.open(shot) as im:
        arr = np.asarray(im.convert("RGB")).astype(int)
    # below the clusters, the Find section: the orange query thumbnails are on screen
    close = np.abs(arr - np.array(QUERY_COLOUR)).max(axis=2) < 40
    assert close.sum() > 2 * 400, close.sum()
    print(f"screenshot: {shot}")


def test_gallery_shows_the_demo_shops_duplicate_with_both_links(tmp_path):
    """As drawn by the browser: the exact duplicates come first in the duplicates section,
    the demo shop's product with a link to each of its two URLs, and every thumbnail of a
    cluster has its label under it."""
    run = make_demo_shop_run(tmp_path)
    dups = find_near_duplicates(run)
    out = write_gallery(run, tmp_path / "report" / "gallery.html", duplicates=dups, inline=False)
    proc = _chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", out.as_uri())
    dom = BeautifulSoup(proc.stdout, "html.parser")
    cards = dom.select("#dups section.card")
    assert cards and "exact-group" in cards[0]["class"]
    links = {a["href"]: a.get_text() for a in cards[0].select("ul.origins a")}
    assert links == {url: url for url in DEMO_DUPLICATE}
    assert cards[0].h2.get_text().startswith("Melon, pack of 3")
    tiles = dom.select("#clusters figure.tile")
    assert tiles and all(t.select_one("figcaption.label").get_text() for t in tiles)
    caption = cards[0].select_one("figure.tile figcaption.label")
    assert caption.get_text() == "Melon, pack of 3 (+1 more)"
    assert caption.a["href"] in DEMO_DUPLICATE and "origins:" in caption["title"]
