"""The HTML gallery (its data, bounds and escaping), and notebooks 04 and 05 end to end.

The real-browser checks of the page are in ``test_gallery_browser.py``.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from io import BytesIO
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from bs4 import BeautifulSoup
from PIL import Image
from synthetic_run import explain_neighbours, make_run

from lookalike import storage
from lookalike.duplicates import find_near_duplicates
from lookalike.elbow import choose_k
from lookalike.exceptions import ConfigError
from lookalike.find import FIND_COLUMNS
from lookalike.gallery import write_gallery
from lookalike.mapview import plotly_js
from lookalike.paths import RunLayout

#: The colour of the query images of :func:`add_find_results` (no run image has it).
QUERY_COLOUR = (255, 140, 0)


@pytest.fixture
def clustered_run(tmp_path):
    return make_run(tmp_path)


def add_find_results(run: Path, name: str = "find", n_queries: int = 2, top: int = 3):
    """A search as :func:`lookalike.find.find` leaves it, without the model: orange query
    images in their own run folder ``RUN/find/<name>/`` and a results table of run images."""
    layout = RunLayout(run)
    qrun = RunLayout(layout.find_queries(name))
    images = storage.read_manifest(run, ok_only=True).sort_values(
        "origin", key=lambda o: o.astype(int)
    )
    rows, hits = [], []
    for q in range(n_queries):
        path = qrun.images_dir / f"query {q}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40 + 10 * q, 40), QUERY_COLOUR).save(path)
        qid = storage.sha256_file(path)
        rows.append({"image_id": qid, "path": qrun.relative(path), "source": "folder",
                     "origin": str(path), "status": "ok"})  # fmt: skip
        for r in range(top):
            hit = images.iloc[(q + 3 * r) % len(images)]
            hits.append({"query": str(path), "query_id": qid, "rank": r + 1,
                         "image_id": hit["image_id"], "label": f"logo {hit['origin']}",
                         "origin": hit["origin"], "n_origins": 1, "similarity": 0.9 - 0.1 * r,
                         "share": [0.0, 2e-4, 0.25][r % 3], "precision": np.nan,
                         "match": "whole~whole", "colour": 0.0})  # fmt: skip
    storage.merge_manifest(qrun, pd.DataFrame(rows))
    table = pd.DataFrame(hits).astype(FIND_COLUMNS)
    storage.write_table(table, layout.find_results(name))
    return table


def _gallery_data(html_path: Path) -> tuple[BeautifulSoup, dict]:
    soup = BeautifulSoup(html_path.read_text(encoding="utf-8"), "html.parser")
    blob = soup.find("script", id="gallery-data")
    return soup, json.loads(blob.string)


def _check_gallery_images(html_path: Path, data: dict) -> int:
    """Every image the page references decodes; returns how many."""
    for im in data["images"]:
        src = im["src"]
        if src.startswith("data:"):
            raw = base64.b64decode(src.split(",", 1)[1])
        else:
            raw = (html_path.parent / src).read_bytes()  # FileNotFoundError fails the test
        with Image.open(BytesIO(raw)) as pic:
            assert pic.format == "JPEG" and pic.size == (data["thumb"], data["thumb"])
    return len(data["images"])


@pytest.mark.parametrize("inline", [True, False])
def test_gallery_is_self_contained(clustered_run, inline, capsys):
    dups = find_near_duplicates(clustered_run, threshold=0.99)
    choice = choose_k(pd.read_csv(clustered_run / "metrics.csv"), 4)
    out = write_gallery(
        clustered_run, choice=choice, duplicates=dups, dup_threshold=0.99, inline=inline,
        n_neighbours=5, thumb=48,
    )  # fmt: skip
    assert out == clustered_run / "report" / "gallery.html"
    assert ("inlined" in capsys.readouterr().out) == inline
    soup, data = _gallery_data(out)
    assert soup.title.string == "lookalike gallery: run"
    assert not soup.find_all("link")  # no network: plotly.js inlined, or in a file beside
    scripts = [s["src"] for s in soup.find_all("script", src=True)]
    assert scripts == ([] if inline else ["gallery_files/plotly.min.js"])
    assert (plotly_js() in out.read_text(encoding="utf-8")) == inline
    assert _check_gallery_images(out, data) == 19
    assert (clustered_run / "report" / "gallery_files").exists() == (not inline)
    assert out.stat().st_mode & 0o777 == 0o644  # readable by whoever it is shared with

    labels = [(g["method"], g["k"]) for g in data["clusterings"]]
    assert labels == [("kmeans", k) for k in (2, 3, 4, 5)] + [
        ("agglomerative", k) for k in (2, 3, 4, 5)
    ]
    assert (
        data["clusterings"][data["start"]]["k"] == 4 and "chosen" in data["clusterings"][2]["label"]
    )
    assert data["rule"] == str(choice)
    assert data["choice"] == {"method": "kmeans", "k": 4, "recommended": choice.recommended,
                              "rule": choice.rule, "overridden": choice.overridden}  # fmt: skip
    cl = pd.read_parquet(clustered_run / "clusters.parquet")
    ids = storage.read_manifest(clustered_run).set_index("path")["image_id"]
    name_to_id = {Path(p).name: i for p, i in ids.items()}
    assert all(im["id"] == name_to_id[im["name"]] for im in data["images"])  # for the export
    for g in data["clusterings"]:
        sel = cl[(cl["method"] == g["method"]) & (cl["k"] == g["k"])]
        assert sum(c["size"] for c in g["clusters"]) == 19
        for c in g["clusters"]:
            expect = sel[sel["cluster"] == c["c"]].sort_values("rank")["image_id"].tolist()
            got = [data["images"][i]["id"] for i in c["m"]]
            assert got == expect  # nearest the centre first
    for i, nb in enumerate(data["neighbours"]):
        assert nb is not None and len(nb) == 5
        assert all(0 <= j < len(data["images"]) and j != i for j, *_ in nb)
        assert all(len(e) == 3 and data["why"][e[2]] == "" for e in nb)  # nothing to explain
    assert len(data["duplicates"]["groups"]) == 1 and data["duplicates"]["threshold"] == 0.99


def test_gallery_says_why_the_run_s_neighbours_matched(clustered_run):
    """The panel's neighbours are the rows of RUN/neighbors.parquet, each with why it matched:
    which of the two images' wholes and icons, and what colour added."""
    first = _gallery_data(write_gallery(clustered_run, n_neighbours=4))[1]["images"][0]["id"]
    reasons = [("part-whole", 0.031), ("whole-part", -0.012), ("whole-whole", 0.02)]
    stored = explain_neighbours(clustered_run, first, reasons)  # rank 4: whole-whole, 0
    _, data = _gallery_data(write_gallery(clustered_run, n_neighbours=4))
    number = {im["id"]: n for n, im in enumerate(data["images"])}
    nb = data["neighbours"][number[first]]
    assert [data["images"][j]["id"] for j, _, _ in nb] == stored["neighbor_id"].tolist()[:4]
    sim = stored["similarity"].to_numpy(np.float32)[:4]
    assert [d for _, d, _ in nb] == [round(float(x), 3) for x in 1.0 - sim]
    assert [data["why"][w] for *_, w in nb] == [
        "icon of this ↔ whole of that, +0.03 colour",
        "whole of this ↔ icon of that, -0.01 colour",
        "whole ↔ whole, +0.02 colour",
        "",  # two wholes, no colour: nothing to explain
    ]
    # a table written before the reasons existed: the same neighbours, reasons unknown
    old = pd.read_parquet(RunLayout(clustered_run).neighbors).iloc[:, :4]
    storage.write_table(old, RunLayout(clustered_run).neighbors)
    _, data = _gallery_data(write_gallery(clustered_run, n_neighbours=4))
    nb = data["neighbours"][[im["id"] for im in data["images"]].index(first)]
    assert [data["images"][j]["id"] for j, _, _ in nb] == stored["neighbor_id"].tolist()[:4]
    assert [data["why"][w] for *_, w in nb] == [""] * 4 and data["why"] == [""]


@pytest.mark.parametrize("inline", [True, False])
def test_gallery_find_section_lists_each_search(clustered_run, inline, capsys):
    """Each search of RUN/find/: the query's own thumbnail, then its hits in rank order
    with label, similarity and share; hits have neighbours, queries need none."""
    _, data = _gallery_data(write_gallery(clustered_run, inline=inline))
    assert data["finds"] is None  # no searches yet: no section
    first = add_find_results(clustered_run, "find", n_queries=2, top=3)
    add_find_results(clustered_run, "logos-b", n_queries=1, top=2)
    out = write_gallery(clustered_run, inline=inline, n_neighbours=4, page_size=2)
    assert "3 find queries" in capsys.readouterr().out
    _, data = _gallery_data(out)
    _check_gallery_images(out, dict(data, images=[im for im in data["images"] if im]))
    assert [(s["search"], s["n_queries"]) for s in data["finds"]] == [("find", 2), ("logos-b", 1)]
    ids = storage.read_manifest(clustered_run).set_index("image_id")["path"]
    for q, (_, rows) in zip(data["finds"][0]["queries"], first.groupby("query_id", sort=False),
                              strict=True):  # fmt: skip
        # the query file as the page shows it: inside the run, relative to it
        assert q["query"] == RunLayout(clustered_run).shown(rows["query"].iloc[0])
        assert not Path(q["query"]).is_absolute()
        assert [h["label"] for h in q["hits"]] == rows["label"].tolist()
        assert [h["similarity"] for h in q["hits"]] == [0.9, 0.8, 0.7]
        assert [h["share"] for h in q["hits"]] == [0.0, 0.0002, 0.25]
        assert all(h["precision"] is None for h in q["hits"])  # NaN is not JSON: null
        for h, image_id in zip(q["hits"], rows["image_id"], strict=True):
            assert data["images"][h["i"]]["name"] == Path(ids[image_id]).name
            assert data["neighbours"][h["i"]] is not None  # a click shows its neighbours
        assert data["images"][q["q"]]["name"].startswith("query ")
        assert data["neighbours"][q["q"]] is None
        src = data["images"][q["q"]]["src"]
        raw = base64.b64decode(src.split(",", 1)[1]) if inline else (out.parent / src).read_bytes()
        with Image.open(BytesIO(raw)) as pic:  # the query's own picture: orange on white
            rgb = np.asarray(pic.convert("RGB"), dtype=float)
        centre = rgb[rgb.shape[0] // 2, rgb.shape[1] // 2]
        assert np.abs(centre - QUERY_COLOUR).max() < 30
    # a search whose query images are gone still lists its hits (a crossed tile for the query)
    import shutil

    shutil.rmtree(RunLayout(clustered_run).find_queries("find"))
    _, data = _gallery_data(write_gallery(clustered_run, inline=inline))
    assert [len(q["hits"]) for q in data["finds"][0]["queries"]] == [3, 3]


def test_gallery_find_section_is_bounded(clustered_run, monkeypatch):
    from lookalike import gallery

    monkeypatch.setattr(gallery, "GALLERY_FIND_MAX", 3)
    add_find_results(clustered_run, "a", n_queries=2, top=2)
    add_find_results(clustered_run, "b", n_queries=4, top=2)
    _, data = _gallery_data(write_gallery(clustered_run))
    assert [(s["search"], len(s["queries"]), s["n_queries"]) for s in data["finds"]] == [
        ("a", 2, 2), ("b", 1, 4)
    ]  # fmt: skip


def test_gallery_escapes_names(clustered_run):
    # "<!--<script>" inside a script element would change how the browser parses the page
    odd = clustered_run / "images" / "<!--<script>x.png"
    (clustered_run / "images" / "logo 1.png").rename(odd)
    manifest = storage.read_manifest(clustered_run)
    manifest["path"] = manifest["path"].replace({"images/logo 1.png": f"images/{odd.name}"})
    storage.write_table(manifest, storage.manifest_path(clustered_run))
    out = write_gallery(clustered_run, k_values=[2], methods=["kmeans"])
    blob = out.read_text(encoding="utf-8").split('id="gallery-data">')[1].split("</script>")[0]
    assert "<" not in blob
    _, data = _gallery_data(out)
    assert odd.name in [im["name"] for im in data["images"]]
    assert _check_gallery_images(out, data) == 19


def test_gallery_labels_and_links_each_image_to_its_source(clustered_run, tmp_path):
    """A folder's file by a path relative to the page, a logo by its homepage; labels in
    the data; never an absolute path of this machine."""
    manifest = storage.read_manifest(clustered_run)
    manifest["origin"] = [str(clustered_run / p) for p in manifest["path"]]
    manifest["label"] = [Path(p).name for p in manifest["path"]]
    logo = manifest["path"] == "images/logo 3.png"
    manifest.loc[logo, ["source", "origin", "label"]] = ["logos", "acme.test", "acme.test"]
    storage.write_table(manifest, storage.manifest_path(clustered_run))
    out = write_gallery(clustered_run, tmp_path / "shared" / "gallery.html", inline=False)
    text = out.read_text(encoding="utf-8")
    assert str(clustered_run) not in text and str(tmp_path) not in text
    _, data = _gallery_data(out)
    by_name = {im["name"]: im for im in data["images"] if im}
    assert by_name["logo 3.png"]["origins"] == [["acme.test", "https://acme.test"]]
    five = by_name["logo 5.png"]
    assert five["label"] == "logo 5.png" and five["n"] == 1
    [[text, href]] = five["origins"]
    assert text == "logo 5.png" and not href.startswith(("/", "file:"))
    assert (out.parent / urllib.parse.unquote(href)).resolve() == clustered_run / "images" / text


def test_gallery_bounds_clusters(clustered_run):
    out = write_gallery(  # without the map, whose images have neighbours too
        clustered_run, k_values=[2], methods=["kmeans"], max_per_cluster=3, show_map=False
    )
    _, data = _gallery_data(out)
    assert len(data["clusterings"]) == 1
    clusters = data["clusterings"][0]["clusters"]
    assert [len(c["m"]) for c in clusters] == [3, 3]
    assert sum(c["size"] for c in clusters) == 19
    # neighbours of the 6 shown images are listed too, so the page has more thumbnails
    assert 6 < len(data["images"]) <= 19
    assert sum(nb is not None for nb in data["neighbours"]) == 6
    with pytest.raises(ConfigError, match="no clusterings"):
        write_gallery(clustered_run, k_values=[99])


def test_gallery_leaves_out_clusterings_beyond_max_images(clustered_run, capsys):
    choice = choose_k(pd.read_csv(clustered_run / "metrics.csv"), 4, method="agglomerative")
    out = write_gallery(clustered_run, choice=choice, max_per_cluster=2, max_images=8)
    _, data = _gallery_data(out)
    kept = [(g["method"], g["k"]) for g in data["clusterings"]]
    assert ("agglomerative", 4) in kept and len(kept) < 8  # the chosen one always stays
    assert data["clusterings"][data["start"]]["k"] == 4
    shown = {i for g in data["clusterings"] for c in g["clusters"] for i in c["m"]}
    assert len(shown) <= 8
    assert "Left out to stay under 8 images" in data["summary"]
    assert "left out" in capsys.readouterr().out


def test_gallery_template_is_package_data_and_states_the_duplicates_threshold(clustered_run):
    from importlib import resources

    template = resources.files("lookalike") / "templates" / "gallery.html"
    page = template.read_text(encoding="utf-8")
    assert all(key in page for key in ("__TITLE__", "__DATA__"))
    # the search box and the export link (test_gallery_browser.py uses them)
    assert 'id="search"' in page and 'id="export"' in page and "createObjectURL" in page
    dups = find_near_duplicates(clustered_run, threshold=0.99)
    out = write_gallery(clustered_run, duplicates=dups)  # the threshold dups was found with
    text = out.read_text(encoding="utf-8")
    assert "__TITLE__" not in text and "__THUMB__" not in text and "__DATA__" not in text
    _, data = _gallery_data(out)
    assert data["duplicates"]["threshold"] == 0.99
    assert all(nb is None or len(nb) == 8 for nb in data["neighbours"])  # N_NEIGHBOURS


# -- the notebooks, end to end on a synthetic run --------------------------------------------


def test_notebooks_04_05_run_and_stay_small(tmp_path):
    """04 and 05 through the runner: figures go to files, the notebook embeds a bounded few."""
    from lookalike.run import run_pipeline

    run = make_run(tmp_path, n_per=8, k_values=(2, 3))
    run_pipeline(
        {}, run_dir=run, start="04", stop="05",
        overrides={"k_values": [2, 3, 4, 6, 8], "max_sheets_inline": 2, "dup_threshold": 0.99,
                   "export_folders": "symlink"},
        progress=False,
    )  # fmt: skip
    nb = nbformat.read(run / "notebooks" / "05_elbow_and_inspect.ipynb", as_version=4)
    images = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if "image/png" in o.get("data", {})
    ]
    figures = sorted((run / "figures").rglob("*.png"))
    sheets = sorted((run / "figures" / "clusters").glob("*.png"))
    # recommended k = 3: three sheets saved, two embedded (max_sheets_inline), and eight
    # other figures: elbow, scores, variance, two maps, overview, duplicates, neighbours
    assert len(sheets) == 3 and len(images) == 8 + 2 < len(figures)
    text = json.dumps([c.get("outputs", []) for c in nb.cells])
    assert "recommended k" in text and "gallery" in text
    assert "find: no queries" in text  # find_queries: auto, and this is not a demo run
    for name in ("elbow.png", "scores.png", "pca_variance.png", "near_duplicates.png"):
        assert (run / "figures" / name).exists(), name
    assert list((run / "figures").glob("map_tsne_k*.png"))
    assert (run / "report" / "gallery.html").exists()
    assert (run / "near_duplicates.csv").exists()
    assert (run / "clusters" / "k_2" / "cluster_0").is_dir()  # export_folders from 04
    # the interactive map's plotly.js is inlined once (about 4.8 MB): all else is bounded
    size = (run / "notebooks" / "05_elbow_and_inspect.ipynb").stat().st_size
    assert size < 3_000_000 + len(plotly_js().encode("utf-8"))
    text = (run / "notebooks" / "05_elbow_and_inspect.ipynb").read_text(encoding="utf-8")
    marker = plotly_js().splitlines()[1]  # " * plotly.js vX.Y.Z", its header
    assert plotly_js().count(marker) == 1 and text.count(marker) == 1
    assert (run / "map2d.parquet").exists()  # the map, kept for the gallery


def _page_file_data(path: Path) -> tuple[str, dict]:
    text = path.read_text(encoding="utf-8")
    head = "window.galleryPage("
    assert text.startswith(head) and text.rstrip().endswith(");")
    key, _, rest = text[len(head) :].partition(", ")
    return json.loads(key), json.loads(rest.rstrip().removesuffix(");"))


@pytest.mark.parametrize("inline", [False, True])
def test_gallery_pages_keep_the_html_bounded(clustered_run, inline):
    """More images per cluster than the page size: the HTML holds only the first page of
    each cluster; the rest are in one page file per clustering, with their thumbnails."""
    out = write_gallery(
        clustered_run, page_size=2, n_neighbours=3, inline=inline, thumb=32, show_map=False
    )
    _, data = _gallery_data(out)
    assert data["page_size"] == 2 and data["map"] is None
    pages = sorted((out.parent / "gallery_pages").glob("*.js"))
    assert len(pages) == len(data["clusterings"]) == 8  # every clustering has a cluster > 2
    inline_members = set()
    for g in data["clusterings"]:
        assert g["page"] == f"gallery_pages/{g['method']}-k{g['k']}.js"
        for cl in g["clusters"]:
            assert len(cl["m"]) == len(cl["d"]) <= 2 and "more_m" not in cl
            assert cl["kept"] == cl["size"]  # the run is small: all kept, most in pages
            inline_members |= set(cl["m"])
    for page in pages:
        key, extra = _page_file_data(page)
        g = next(g for g in data["clusterings"] if f"{g['method']}-k{g['k']}" == key)
        for cl in g["clusters"]:
            more = extra["clusters"].get(str(cl["c"]), {"m": [], "d": []})
            assert len(cl["m"]) + len(more["m"]) == cl["kept"]  # nothing lost, no repeats
            assert not set(more["m"]) & set(cl["m"])
            for i in more["m"]:  # every page image has its thumbnail somewhere
                im = data["images"][i] or extra["images"][str(i)]
                assert im["src"].startswith("data:image/jpeg" if inline else "gallery_files/")
    # the HTML lists thumbnails only for what it shows: first pages, their neighbours
    shown = [im for im in data["images"] if im is not None]
    assert len(shown) < len(data["images"])
    assert {i for i, nb in enumerate(data["neighbours"]) if nb is not None} == inline_members
    # a second gallery without pages removes the stale page files
    write_gallery(clustered_run, page_size=60, inline=inline)
    assert list((out.parent / "gallery_pages").glob("*.js")) == []


def test_gallery_map_has_every_point_with_its_image_neighbours_and_clusters(clustered_run):
    """The map of ``RUN/map2d.parquet`` (a sample of 8: every cluster of the opening
    clustering in it) in a paged gallery: each point's image and neighbours are in the
    page itself, and its cluster in every clustering; each cluster has its colour."""
    choice = choose_k(pd.read_csv(clustered_run / "metrics.csv"), 4)
    out = write_gallery(clustered_run, choice=choice, page_size=2, n_neighbours=3, map_max=8)
    _, data = _gallery_data(out)
    m = data["map"]
    coords = pd.read_parquet(clustered_run / "map2d.parquet")
    assert len(m["m"]) == len(m["x"]) == len(m["y"]) == len(coords) == 8
    assert m["n_images"] == 19 and m["projection"] == "umap"
    assert [data["images"][i]["id"] for i in m["m"]] == coords["image_id"].tolist()
    assert np.allclose(m["x"], coords["x"], atol=1e-4) and np.allclose(
        m["y"], coords["y"], atol=1e-4
    )
    assert all(len(data["neighbours"][i]) == 3 for i in m["m"])  # a click shows them
    cl = pd.read_parquet(clustered_run / "clusters.parquet")
    for g in data["clusterings"]:
        sel = cl[(cl["method"] == g["method"]) & (cl["k"] == g["k"])].set_index("image_id")
        assert (
            m["c"][f"{g['method']}-k{g['k']}"]
            == sel["cluster"].reindex(coords["image_id"]).tolist()
        )
        colours = [c["colour"] for c in g["clusters"]]
        assert len(set(colours)) == len(colours) == g["k"]
    assert set(m["c"]["kmeans-k4"]) == {0, 1, 2, 3}  # the opening clustering: all in the sample


# -- the demo shop's duplicated product ---------------------------------------------------------


def make_demo_shop_run(root: Path) -> Path:
    """The demo shop scraped over real HTTP (stage 01), then clustered on random vectors in
    place of VGG16's (the labels and origins do not depend on them)."""
    from lookalike import demo, scrape
    from lookalike.cluster import cluster_run

    run = root / "shop"
    with demo.serving() as web:
        scraped = scrape.scrape_catalog(web.catalog_url, run, **web.client_options)
    storage.merge_manifest(run, scrape.to_image_manifest(scraped))
    ok = storage.read_manifest(run, ok_only=True)
    vec_path, ids_path = storage.embeddings_paths(run)
    vec_path.parent.mkdir(parents=True)
    vectors = np.random.default_rng(0).normal(size=(len(ok), 16)).astype(np.float32)
    np.save(vec_path, vectors)
    storage.write_table(ok[["image_id", "path"]], ids_path)
    cluster_run(run, pca_components=8, k_values=[3, 4], progress=False)
    return run


DEMO_DUPLICATE = {
    "http://shop.test/img/melon-pack.jpg": "Melon, pack of 3",
    "http://shop.test/img/melon-pack-sale.jpg": "Melon, pack of 3 (sale)",
}


@pytest.fixture(scope="module")
def demo_shop_run(tmp_path_factory):
    return make_demo_shop_run(tmp_path_factory.mktemp("demo-shop"))


def test_the_demo_shops_duplicate_product_shows_both_urls(demo_shop_run):
    """The demo shop lists one product twice, under two URLs with the same bytes: the
    manifest keeps a row (and a label) per URL, and every view knows both."""
    manifest = storage.read_manifest(demo_shop_run)
    rows = manifest[manifest["origin"].isin(DEMO_DUPLICATE)]
    assert dict(zip(rows["origin"], rows["label"], strict=True)) == DEMO_DUPLICATE
    assert rows["image_id"].nunique() == 1 and (rows["status"] == "ok").all()
    image_id = rows["image_id"].iloc[0]
    info = storage.image_info(demo_shop_run)
    assert info["n_origins"].max() == 2 and (info["n_origins"] == 2).sum() == 1
    assert info.loc[image_id, "origins"] == list(DEMO_DUPLICATE)
    assert info.loc[image_id, "caption"] == "Melon, pack of 3 (+1 more)"

    dups = find_near_duplicates(demo_shop_run)
    exact = dups[dups["kind"] == "exact"]
    assert exact["group"].tolist() == [0, 0] and exact["origin"].tolist() == list(DEMO_DUPLICATE)
    out = write_gallery(demo_shop_run, duplicates=dups, inline=False)
    text = out.read_text(encoding="utf-8")
    assert all(url in text for url in DEMO_DUPLICATE)
    _, data = _gallery_data(out)
    first = data["duplicates"]["groups"][0]
    assert first["kind"] == "exact" and first["size"] == 2
    entry = data["images"][first["m"][0]]
    assert entry["label"] == "Melon, pack of 3" and entry["n"] == 2
    assert entry["origins"] == [[url, url] for url in DEMO_DUPLICATE]  # linked to the source
    assert str(demo_shop_run.parent) not in text  # no absolute path of this machine
