"""The HTML gallery in a real browser: Debian's chromium, headless.

``make test`` installs chromium first (``make browser``); without it these tests are skipped
with the command that installs it. The page is opened from disk (file://), as someone would
open a shared gallery. A small check script, added to a copy of the page, renders every
clustering with every image before the page's load event, then writes which images failed
to load into the DOM, which chromium dumps. The search, the CSV export, the header and the
layout of a narrow window are checked so too (:data:`HELPERS`); real key presses (Tab, Enter,
Space) go through chromium's DevTools pipe (:class:`_DevTools`).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from bs4 import BeautifulSoup
from chromium import CHROMIUM
from chromium import FLAGS as HEADLESS
from PIL import Image
from synthetic_run import COLORS, explain_neighbours, make_run
from test_gallery import DEMO_DUPLICATE, QUERY_COLOUR, add_find_results, make_demo_shop_run

from lookalike import storage
from lookalike.duplicates import find_near_duplicates
from lookalike.elbow import choose_k
from lookalike.gallery import write_gallery
from lookalike.paths import RunLayout

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed and could not be: run `make browser` "
    "(as root: apt-get install -y chromium) to run the real-browser gallery test",
)

FLAGS = [*HEADLESS, "--hide-scrollbars"]

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
    _screenshot(tmp_path, out, shot, "1280,1500")  # the map, then the clusters
    with Image.open(shot) as im:
        assert im.size == (1280, 1500)
        arr = np.asarray(im.convert("RGB")).astype(int)
    # The thumbnails are on screen: each group's colour is in the picture, far more of it
    # than the map's dots (about 500 pixels a cluster) could make.
    for colour in COLORS:
        close = np.abs(arr - np.array(colour)).max(axis=2) < 40
        assert close.sum() > 2000, colour
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


def test_gallery_panel_says_why_neighbours_matched(tmp_path):
    """As drawn by the browser: the panel the page opens on lists each neighbour with why it
    matched, from RUN/neighbors.parquet, under its distance (and in its tooltip)."""
    run = make_run(tmp_path)
    data = json.loads(
        BeautifulSoup(write_gallery(run).read_text(encoding="utf-8"), "html.parser")
        .find("script", id="gallery-data")
        .string
    )
    opened = data["clusterings"][data["start"]]["clusters"][0]["m"][0]  # shown on load
    image_id = data["images"][opened]["id"]
    explain_neighbours(run, image_id, [("part-whole", 0.031), ("whole-part", -0.012)])
    out = write_gallery(run, tmp_path / "report" / "gallery.html", n_neighbours=3)
    proc = _chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", out.as_uri())
    figures = BeautifulSoup(proc.stdout, "html.parser").select("#panel figure:not(.query)")
    assert len(figures) == 3, proc.stderr[-3000:]
    why = [f.select_one("figcaption.why") for f in figures]
    assert [w.get_text() if w else None for w in why] == [
        "icon of this ↔ whole of that, +0.03 colour",
        "whole of this ↔ icon of that, -0.01 colour",
        None,  # two wholes without colour: nothing to explain
    ]
    assert "icon of this ↔ whole of that" in figures[0].img["title"]


# -- search, export, keyboard, the header and a narrow window ---------------------------------

#: Put before a check script: ``done(result)`` writes it into the DOM for --dump-dom, and
#: ``until(test)`` waits (in chromium's virtual time) for an asynchronous step, such as a
#: page file loading.
HELPERS = """
<script>
window.done = (out) => {
  const pre = document.createElement("pre");
  pre.id = "check";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
};
window.until = (test) => new Promise((ok) => {
  const poll = () => (test() ? ok() : setTimeout(poll, 20));
  poll();
});
window.shownLabels = () =>
  [...document.querySelectorAll("#clusters img.t")].map((im) => im.getAttribute("alt"));
window.search = (text) => {
  const box = document.getElementById("search");
  box.value = text;
  box.dispatchEvent(new Event("input"));  // as typing does
};
</script>
"""


def _run_check(tmp_path, gallery, script: str, *flags: str) -> dict:
    """Open a copy of ``gallery`` with :data:`HELPERS` and ``script`` (which calls ``done``)
    from file:// in chromium and return what ``done`` got."""
    page = gallery.with_name("ux_check.html")  # beside it: same relative image and page paths
    text = gallery.read_text(encoding="utf-8")
    page.write_text(text.replace("</body>", HELPERS + script + "</body>"), encoding="utf-8")
    proc = _chromium(tmp_path, *flags, "--virtual-time-budget=10000", "--dump-dom", page.as_uri())
    found = BeautifulSoup(proc.stdout, "html.parser").find("pre", id="check")
    assert found is not None, f"the check did not run:\n{proc.stderr[-3000:]}"
    return json.loads(found.string)


#: The labels of :func:`named_run`'s groups: mixed case, for the case-insensitive search.
GROUP_NAMES = ["Red disc", "green SQUARE", "Blue Triangle"]


@pytest.fixture(scope="module")
def named_run(tmp_path_factory):
    """The run of ``gallery_run`` with labels people would search: "green SQUARE 4"."""
    run = make_run(tmp_path_factory.mktemp("named"), n_per=10)
    m = storage.read_manifest(run)
    n = int(m["origin"].astype(int).max())
    group = [i % 3 if i < n else 0 for i in m["origin"].astype(int)]  # as make_run's
    m["label"] = [f"{GROUP_NAMES[g]} {i}" for g, i in zip(group, m["origin"], strict=True)]
    storage.write_table(m, storage.manifest_path(run))
    choice = choose_k(pd.read_csv(run / "metrics.csv"), 3)
    return run, choice


def _labels(run) -> pd.Series:
    """Each image's label, by image id."""
    return storage.image_info(run)["label"]


def _members(run, method: str, k: int) -> pd.DataFrame:
    """image_id, label and cluster of one clustering, cluster by cluster, nearest first."""
    cl = pd.read_parquet(run / "clusters.parquet")
    sel = cl[(cl["method"] == method) & (cl["k"] == k)].sort_values(["cluster", "rank"])
    sel = sel.assign(label=_labels(run).reindex(sel["image_id"]).to_numpy())
    return sel[["image_id", "label", "cluster"]].reset_index(drop=True)


SEARCH_CHECK = """
<script>
window.addEventListener("load", async () => {
  const g = window.gallery;
  const out = {before: shownLabels().length};
  search("  square 1");  // any case, spaces around
  const c = g.data.clusterings[g.data.start];
  await until(() => c.loaded);  // a search loads the clustering's page file
  await until(() => !/loading/.test(document.getElementById("matches").textContent));
  out.shown = shownLabels();
  out.cards = document.querySelectorAll("#clusters section.card").length;
  out.matches = document.getElementById("matches").textContent;
  search("no such label");
  out.none = {shown: shownLabels().length, matches: document.getElementById("matches").textContent};
  search("");
  out.after = shownLabels().length;
  done(out);
});
</script>
"""


def test_gallery_search_shows_only_matching_labels(named_run, tmp_path):
    """A paged gallery (3 images per cluster in the page): the search covers every image
    the clustering keeps, including those of its page file."""
    run, choice = named_run
    out = write_gallery(
        run, tmp_path / "report" / "gallery.html", choice=choice, page_size=3, inline=False
    )
    result = _run_check(tmp_path, out, SEARCH_CHECK)
    labels = _labels(run)
    want = sorted(lab for lab in labels if "square 1" in lab.lower())
    assert want == ["green SQUARE 1", "green SQUARE 10", "green SQUARE 13", "green SQUARE 16",
                    "green SQUARE 19"]  # fmt: skip
    assert sorted(result["shown"]) == want
    assert result["before"] < len(labels)  # before the search: the first page of each cluster
    assert result["matches"].startswith(f"{len(want)} images in {result['cards']} clusters")
    assert result["none"] == {"shown": 0, "matches": "no image matches \u201cno such label\u201d"}
    assert result["after"] == result["before"]  # no search: the first pages again


EXPORT_CHECK = """
<script>
window.addEventListener("load", async () => {
  const a = document.getElementById("export");
  let clicks = 0;
  // after the page's own handler: no real download, just what it would save
  a.addEventListener("click", (e) => {
    if (!e.defaultPrevented) { clicks++; e.preventDefault(); }
  });
  const read = async () => {
    const before = clicks;
    a.click();
    await until(() => clicks > before);  // a paged clustering loads its page file first
    return {href: a.getAttribute("href").split(":")[0], name: a.download,
            text: await (await fetch(a.href)).text()};
  };
  const out = {all: await read()};
  search("TRIANGLE");
  out.search = await read();
  done(out);
});
</script>
"""


def _rows(table: pd.DataFrame) -> list[tuple[str, str, int]]:
    return [(str(i), str(lab), int(c)) for i, lab, c in table.itertuples(index=False)]


def _csv_rows(text: str) -> list[tuple[str, str, int]]:
    table = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    assert list(table.columns) == ["image_id", "label", "cluster"]
    return _rows(table)


@pytest.mark.parametrize("page_size", [3, 24])
def test_gallery_exports_the_shown_images_as_csv(named_run, tmp_path, page_size):
    run, choice = named_run
    out = write_gallery(
        run, tmp_path / "report" / "gallery.html", choice=choice, page_size=page_size
    )
    result = _run_check(tmp_path, out, EXPORT_CHECK)
    want = _members(run, choice.method, choice.k)
    assert result["all"]["href"] == "blob" and result["search"]["href"] == "blob"  # made here
    assert result["all"]["name"] == f"lookalike-{choice.method}-k{choice.k}.csv"
    assert _csv_rows(result["all"]["text"]) == _rows(want)  # every kept image, its cluster
    want = want[want["label"].str.startswith("Blue Triangle")]
    assert len(want) == 10 and result["search"]["name"].endswith("-search-TRIANGLE.csv")
    assert _csv_rows(result["search"]["text"]) == _rows(want)


KEYBOARD_CHECK = """
<script>
window.addEventListener("load", () => {
  const key = (el, k) => el.dispatchEvent(new KeyboardEvent("keydown", {key: k, bubbles: true}));
  const panel = () => ({
    title: document.querySelector("#panel h3").textContent,
    images: [...document.querySelectorAll("#panel img.t")].map((im) => im.getAttribute("alt")),
  });
  const thumbs = [...document.querySelectorAll("#clusters img.t")];
  const button = (t) => t.tabIndex === 0 && t.getAttribute("role") === "button";
  const out = {focusable: thumbs.length > 0 && thumbs.every(button)};
  const t = thumbs[5];
  t.focus();
  out.focused = document.activeElement === t;
  out.outline = getComputedStyle(t).outlineStyle;  // the focus is visible
  out.label = t.getAttribute("alt");
  key(t, "Enter");
  out.enter = panel();
  const u = thumbs[7];
  u.focus();
  key(u, " ");
  out.space = {label: u.getAttribute("alt"), panel: panel()};
  // a neighbour in the panel opens in its turn, and the focus stays in the panel
  const nb = document.querySelectorAll("#panel img.t")[1];
  nb.focus();
  key(nb, "Enter");
  out.neighbour = {label: nb.getAttribute("alt"), panel: panel(),
                   focus: document.activeElement.closest("#panel") !== null};
  done(out);
});
</script>
"""


def test_gallery_thumbnails_open_from_the_keyboard(gallery_run, tmp_path):
    run, dups, choice = gallery_run
    out = write_gallery(run, tmp_path / "report" / "gallery.html", choice=choice, n_neighbours=6)
    result = _run_check(tmp_path, out, KEYBOARD_CHECK)
    assert result["focusable"] and result["focused"] and result["outline"] == "solid"
    by_label = {lab: i for i, lab in _labels(run).items()}
    for opened, label in [
        (result["enter"], result["label"]),
        (result["space"]["panel"], result["space"]["label"]),
        (result["neighbour"]["panel"], result["neighbour"]["label"]),
    ]:
        assert opened["title"] == label
        assert opened["images"][0] == label and len(opened["images"]) == 1 + 6  # its neighbours
        assert by_label[label] not in {by_label[x] for x in opened["images"][1:]}
    assert result["enter"] != result["space"]["panel"] and result["neighbour"]["focus"]


SWITCH_CHECK = """
<script>
window.addEventListener("load", () => {
  const pick = document.getElementById("clustering");
  const rule = () => document.getElementById("rule").textContent;
  const out = {start: rule(), options: [...pick.options].map((o) => o.textContent)};
  const to = (label) => {
    pick.value = [...pick.options].find((o) => o.textContent.startsWith(label)).value;
    pick.dispatchEvent(new Event("change"));
    return rule();
  };
  out.agglomerative = to("agglomerative k=5");
  out.kmeans = to("kmeans k=2");
  out.back = to("kmeans k=3");
  done(out);
});
</script>
"""


def test_gallery_header_follows_the_clustering_picked(gallery_run, tmp_path):
    run, dups, choice = gallery_run  # kmeans k=3
    out = write_gallery(run, tmp_path / "report" / "gallery.html", choice=choice)
    result = _run_check(tmp_path, out, SWITCH_CHECK)
    assert result["start"] == str(choice)
    rec = str(choice).split("; inspecting")[0]
    assert result["agglomerative"] == rec + "; inspecting agglomerative k = 5, picked in this page"
    assert result["kmeans"] == rec + "; inspecting kmeans k = 2, picked in this page"
    assert result["back"] == str(choice)


NARROW_CHECK = """
<script>
window.addEventListener("load", async () => {
  const out = {width: window.innerWidth, views: []};
  const look = () => {
    const head = document.querySelector("header").getBoundingClientRect();
    const title = document.querySelector("#panel h3").getBoundingClientRect();
    out.views.push({scroll: window.scrollY, header_bottom: head.bottom, title_top: title.top,
                    title_height: title.height});
  };
  const g = window.gallery;
  g.showNeighbours(g.data.clusterings[g.data.start].clusters[0].m[0]);
  // the top, a little down, and the end of the clusters (past it the panel leaves with them)
  const end = document.querySelector("main").getBoundingClientRect().bottom - window.innerHeight;
  for (const y of [0, 200, end]) {
    window.scrollTo(0, y);
    await new Promise((ok) => setTimeout(ok, 50));
    look();
  }
  done(out);
});
</script>
"""


@pytest.mark.parametrize("width", [700, 1280])
def test_gallery_header_never_covers_the_panel_title(gallery_run, tmp_path, width):
    """At 700 px the header wraps to several lines; the sticky panel stays below it."""
    run, dups, choice = gallery_run
    out = write_gallery(
        run, tmp_path / "report" / "gallery.html", choice=choice, duplicates=dups, n_neighbours=6
    )
    result = _run_check(tmp_path, out, NARROW_CHECK, f"--window-size={width},800")
    assert result["width"] == width
    views = result["views"]
    assert views[-1]["scroll"] > 200  # the page scrolls: the panel is stuck under the header
    for view in views:
        assert view["title_height"] > 0 and view["title_top"] >= view["header_bottom"], view


# -- real key presses: chromium driven over its DevTools pipe ----------------------------------


class _DevTools:
    """Chromium with ``--remote-debugging-pipe``: DevTools protocol messages (JSON, each
    ended by a NUL byte) on its file descriptors 3 (in) and 4 (out). Key presses sent so
    (``Input.dispatchKeyEvent``) are the browser's own, as from a keyboard: Tab moves the
    focus, unlike a script's synthetic events."""

    def __init__(self, tmp_path, url: str, *flags: str):
        to_chrome, self._out = os.pipe()
        self._in, from_chrome = os.pipe()
        profile = tmp_path / "chromium-devtools-profile"
        shutil.rmtree(profile, ignore_errors=True)
        profile.mkdir()
        # a small trampoline puts the two pipe ends on descriptors 3 and 4, then runs chromium
        hop = "import os,sys; os.dup2(int(sys.argv[1]),3); os.dup2(int(sys.argv[2]),4); "
        hop += "os.execv(sys.argv[3], sys.argv[3:])"
        cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe"]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", hop, str(to_chrome), str(from_chrome), *cmd, *flags, url],
            pass_fds=(to_chrome, from_chrome),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome)
        os.close(from_chrome)
        self._buf, self._id = b"", 0
        targets = self.send("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        attached = self.send("Target.attachToTarget", targetId=page["targetId"], flatten=True)
        self.session = attached["sessionId"]

    def send(self, method: str, session: str | None = None, **params) -> dict:
        """Send one command and return its result (events on the way are dropped)."""
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._out, json.dumps(msg).encode() + b"\0")
        while True:
            while b"\0" not in self._buf:
                chunk = os.read(self._in, 1 << 16)
                assert chunk, "chromium closed its DevTools pipe"
                self._buf += chunk
            raw, _, self._buf = self._buf.partition(b"\0")
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                assert "error" not in reply, reply
                return reply["result"]

    def js(self, expression: str):
        """The value of ``expression`` in the page."""
        got = self.send(
            "Runtime.evaluate",
            self.session,
            expression=expression,
            returnByValue=True,
            awaitPromise=True,
        )
        assert "exceptionDetails" not in got, got
        return got["result"].get("value")

    def press(self, key: str, code: int, text: str = "") -> None:
        """One key down and up, as typed."""
        down = {"key": key, "code": key if key != " " else "Space", "windowsVirtualKeyCode": code}
        self.send("Input.dispatchKeyEvent", self.session, type="keyDown", text=text, **down)
        self.send("Input.dispatchKeyEvent", self.session, type="keyUp", **down)

    def mouse(self, kind: str, x: float, y: float, *, pressed: bool = False) -> None:
        """One mouse event at (x, y) CSS pixels of the window, as from a real mouse:
        ``mouseMoved``, ``mousePressed`` or ``mouseReleased`` (the left button)."""
        button = "left" if kind != "mouseMoved" else ("left" if pressed else "none")
        buttons = 1 if pressed or kind == "mousePressed" else 0
        clicks = 1 if kind != "mouseMoved" else 0
        self.send("Input.dispatchMouseEvent", self.session, type=kind, x=x, y=y,
                  button=button, buttons=buttons, clickCount=clicks)  # fmt: skip

    def click(self, x: float, y: float) -> None:
        """Move to (x, y), press and release the left button there."""
        self.mouse("mouseMoved", x, y)
        self.mouse("mousePressed", x, y)
        self.mouse("mouseReleased", x, y)

    def drag(self, start: tuple[float, float], end: tuple[float, float], steps: int = 12) -> None:
        """Press at ``start``, move to ``end`` in ``steps`` and release there."""
        self.mouse("mouseMoved", *start)
        self.mouse("mousePressed", *start)
        for t in np.linspace(0, 1, steps + 1)[1:]:
            x, y = (start[0] + t * (end[0] - start[0]), start[1] + t * (end[1] - start[1]))
            self.mouse("mouseMoved", x, y, pressed=True)
        self.mouse("mouseReleased", *end)

    def wait_for(self, expression: str, tries: int = 500) -> None:
        """Until ``expression`` is true in the page (polled, each poll waiting 20 ms there)."""
        wait = "new Promise((ok) => setTimeout(() => ok(Boolean(" + expression + ")), 20))"
        for _ in range(tries):
            try:
                if self.js(wait):
                    return
            except AssertionError as e:  # the page was still being replaced by the next
                if "context was destroyed" not in str(e):
                    raise
        raise AssertionError(f"never true in the page: {expression}")

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (AssertionError, OSError):
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._in)
        os.close(self._out)


@pytest.fixture
def devtools(tmp_path):
    """Open a page in chromium for real key presses: ``devtools(url, *flags)``."""
    opened = []

    def open_page(url: str, *flags: str) -> _DevTools:
        opened.append(_DevTools(tmp_path, url, *flags))
        return opened[-1]

    yield open_page
    for browser in opened:
        browser.close()


FOCUSED = """(() => {
  const t = document.activeElement;
  return {tag: t.tagName, id: t.id, thumb: t.matches("#clusters img.t"),
          alt: t.getAttribute("alt"), visible: t.matches(":focus-visible"),
          outline: getComputedStyle(t).outlineStyle};
})()"""
PANEL = """(() => ({title: document.querySelector("#panel h3").textContent,
  images: [...document.querySelectorAll("#panel img.t")].map((im) => im.getAttribute("alt"))
}))()"""


def test_gallery_thumbnails_open_with_real_key_presses(gallery_run, tmp_path, devtools):
    """Tab from the top of the page reaches a thumbnail; Enter shows its neighbours, and
    Space those of the next thumbnail, Tab away."""
    run, dups, choice = gallery_run
    out = write_gallery(run, tmp_path / "report" / "gallery.html", choice=choice, n_neighbours=6)
    page = devtools(out.as_uri())
    page.wait_for("document.readyState === 'complete' && window.gallery")
    stops = []
    for _ in range(20):  # the header's controls first, then the clusters' thumbnails
        page.press("Tab", 9)
        focused = page.js(FOCUSED)
        stops.append(focused["id"] or focused["tag"])
        if focused["thumb"]:
            break
    assert focused["thumb"], stops
    assert {"clustering", "order", "search", "export"} <= set(stops)
    assert focused["visible"] and focused["outline"] == "solid"
    page.press("Enter", 13, "\r")
    opened = page.js(PANEL)
    assert opened["title"] == focused["alt"] == opened["images"][0]
    assert len(opened["images"]) == 1 + 6
    for _ in range(3):  # past the thumbnail's caption, a link to its source
        page.press("Tab", 9)
        following = page.js(FOCUSED)
        if following["thumb"]:
            break
    assert following["thumb"] and following["alt"] != focused["alt"]
    page.press(" ", 32, " ")
    opened = page.js(PANEL)
    assert opened["title"] == following["alt"] and len(opened["images"]) == 1 + 6


# -- the map: hover, click and a selection's CSV, with a real mouse ---------------------------

#: Where plotly drew each point of a map (``GD``: its graph div) that is in view, in CSS
#: pixels of the window, and its customdata; the point farthest from any other comes first
#: (the mouse reaches it alone).
POINTS = """((gd) => {
  const L = gd._fullLayout, r = gd.getBoundingClientRect(), S = L._size;
  const pts = [];
  gd._fullData.forEach((t) => {
    for (let j = 0; j < t.x.length; j++) {
      const x = L.xaxis.l2p(t.x[j]), y = L.yaxis.l2p(t.y[j]);
      if (x < 0 || x > S.w || y < 0 || y > S.h) continue;  // zoomed out of view
      pts.push({x: r.left + S.l + x, y: r.top + S.t + y, custom: t.customdata[j]});
    }
  });
  for (const p of pts) {
    p.gap = Infinity;
    for (const q of pts) if (q !== p) p.gap = Math.min(p.gap, Math.hypot(p.x - q.x, p.y - q.y));
  }
  return pts.sort((a, b) => b.gap - a.gap);
})(GD)"""


#: Zoom the map in on its first trace's points (as the mouse wheel or the zoom tool would):
#: a synthetic run's clusters are tight blobs, their points a pixel or two apart.
ZOOM = """((gd) => {
  const t = gd._fullData[0];
  const lo = (a) => Math.min(...a), hi = (a) => Math.max(...a);
  const pad = 0.3 * Math.max(hi(t.x) - lo(t.x), hi(t.y) - lo(t.y), 1e-3);
  return Plotly.relayout(gd, {"xaxis.range": [lo(t.x) - pad, hi(t.x) + pad],
                              "yaxis.range": [lo(t.y) - pad, hi(t.y) + pad]}).then(() => true);
})(GD)"""


def zoom_in(browser, gd: str) -> None:
    """Zoom the map in graph div ``gd`` (a JS expression) in on its first cluster."""
    assert browser.js(ZOOM.replace("GD", gd))


def map_points_on_screen(browser, gd: str) -> list[dict]:
    """Every point of the map in graph div ``gd`` (a JS expression) as :data:`POINTS` has it."""
    return browser.js(POINTS.replace("GD", gd))


def isolated_point(browser, gd: str) -> dict:
    """The point of the map farthest from the others, with ``id``: its image id (the
    notebook's customdata holds it first, the gallery's is the image's number)."""
    zoom_in(browser, gd)
    point = map_points_on_screen(browser, gd)[0]
    assert point["gap"] > 12, point  # nothing else under the mouse (markers are 8 px)
    custom = point["custom"]
    if isinstance(custom, list):
        point["id"] = custom[0]
    else:
        point["id"] = browser.js(f"window.gallery.data.images[{custom}].id")
    return point


GALLERY_MAP = "document.getElementById('map')"
TIP = """(() => {
  const tip = document.getElementById('map-tip');
  if (tip.style.display !== 'block') return null;
  const im = tip.querySelector('img');
  return {label: tip.querySelector('.tip-label').textContent,
          cluster: tip.querySelector('.tip-cluster').textContent,
          image: Boolean(im && im.complete && im.naturalWidth > 0)};
})()"""


@pytest.fixture
def map_page(gallery_run, tmp_path, devtools):
    """The gallery of :func:`gallery_run` (plotly.js and thumbnails in files beside it) in
    chromium, its map drawn."""
    run, dups, choice = gallery_run
    out = write_gallery(
        run, tmp_path / "report" / "gallery.html", choice=choice, n_neighbours=6, inline=False
    )
    assert (out.parent / "gallery_files" / "plotly.min.js").is_file()
    page = devtools(out.as_uri(), "--window-size=1280,1000")  # the map in the window
    page.wait_for("window.gallery && window.gallery.mapReady")
    return run, choice, page


def test_gallery_map_hover_shows_the_thumbnail_and_label(map_page):
    run, choice, page = map_page
    point = isolated_point(page, GALLERY_MAP)
    page.mouse("mouseMoved", point["x"], point["y"])
    page.wait_for(TIP)
    got = page.js(TIP)
    cluster = _members(run, choice.method, choice.k).set_index("image_id")["cluster"]
    assert got == {"label": _labels(run)[point["id"]], "image": True,
                   "cluster": f"cluster {cluster[point['id']]}"}  # fmt: skip


def test_gallery_map_click_shows_the_neighbours_in_the_panel(map_page):
    run, choice, page = map_page
    zoom_in(page, GALLERY_MAP)
    points = map_points_on_screen(page, GALLERY_MAP)
    before = page.js(PANEL)
    labels = _labels(run)
    # the most isolated point that is not the image the panel opened on
    for point in points:
        point["id"] = page.js(f"window.gallery.data.images[{point['custom']}].id")
        if point["gap"] > 12 and labels[point["id"]] != before["title"]:
            break
    page.click(point["x"], point["y"])
    title = "document.querySelector('#panel h3').textContent"
    page.wait_for(f"{title} !== {json.dumps(before['title'])}")
    opened = page.js(PANEL)
    assert opened["title"] == labels[point["id"]] == opened["images"][0]
    assert len(opened["images"]) == 1 + 6  # the image and its neighbours


READ_SELECTION = """(async () => {
  const a = document.getElementById('map-export');
  return {href: a.getAttribute('href').split(':')[0], name: a.download,
          disabled: a.getAttribute('aria-disabled'),
          selected: document.getElementById('map-selected').textContent,
          text: await (await fetch(a.href)).text()};
})()"""


def test_gallery_map_selection_exports_its_rows_as_csv(map_page):
    """A box drawn with the mouse around one cluster's points (the "Box Select" tool picked
    in the map's toolbar): the CSV link has exactly the images inside, cluster by cluster."""
    run, choice, page = map_page
    assert page.js("document.getElementById('map-export').getAttribute('aria-disabled')") == "true"
    zoom_in(page, GALLERY_MAP)
    points = map_points_on_screen(page, GALLERY_MAP)
    button = page.js("""(() => {
      const b = document.querySelector('#map-box .modebar-btn[data-val="select"]');
      const r = b.getBoundingClientRect();
      return {x: r.left + r.width / 2, y: r.top + r.height / 2};
    })()""")
    page.mouse("mouseMoved", button["x"], button["y"])  # the toolbar shows on hover
    page.click(button["x"], button["y"])
    page.wait_for("document.getElementById('map')._fullLayout.dragmode === 'select'")
    members = _members(run, choice.method, choice.k).set_index("image_id")
    ids = {p["custom"]: page.js(f"window.gallery.data.images[{p['custom']}].id") for p in points}
    # a box around the left half of the points in view (the first cluster's), 4 px out
    xs = sorted(p["x"] for p in points)
    inside = [p for p in points if p["x"] <= xs[len(xs) // 2]]
    start = (min(p["x"] for p in inside) - 4, min(p["y"] for p in inside) - 4)
    end = (max(p["x"] for p in inside) + 4, max(p["y"] for p in inside) + 4)
    within = [start[0] < p["x"] < end[0] and start[1] < p["y"] < end[1] for p in points]
    on_edge = [
        p for p in points
        if min(abs(p["x"] - start[0]), abs(p["x"] - end[0]), abs(p["y"] - start[1]),
               abs(p["y"] - end[1])) < 1.5
        and start[0] - 1.5 < p["x"] < end[0] + 1.5 and start[1] - 1.5 < p["y"] < end[1] + 1.5
    ]  # fmt: skip
    assert not on_edge, "a point on the box's edge: in or out is a matter of rounding"
    want_ids = {ids[p["custom"]] for p, w in zip(points, within, strict=True) if w}
    assert 0 < len(want_ids) < len(points)  # a part of what is in view
    page.drag(start, end)
    page.wait_for("document.getElementById('map-selected').textContent !== ''")
    got = page.js(READ_SELECTION)
    assert got["href"] == "blob" and got["disabled"] == "false"
    assert got["name"] == f"lookalike-map-{choice.method}-k{choice.k}-selection.csv"
    assert got["selected"] == f"{len(want_ids)} images selected"
    order = {i: n for n, i in enumerate(pd.read_parquet(RunLayout(run).map2d)["image_id"])}
    want = members.loc[sorted(want_ids, key=lambda i: (members.loc[i, "cluster"], order[i]))]
    assert _csv_rows(got["text"]) == _rows(want.reset_index()[["image_id", "label", "cluster"]])
