"""The HTML gallery (its data, bounds and escaping), and notebooks 04 and 05 end to end.

The real-browser checks of the page are in ``test_gallery_browser.py``.
"""

from __future__ import annotations

import base64
import json
from io import BytesIO
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from bs4 import BeautifulSoup
from PIL import Image
from synthetic_run import make_run

from lookalike import storage
from lookalike.duplicates import find_near_duplicates
from lookalike.elbow import choose_k
from lookalike.exceptions import ConfigError
from lookalike.gallery import write_gallery


@pytest.fixture
def clustered_run(tmp_path):
    return make_run(tmp_path)


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
    assert not soup.find_all("link") and not soup.find_all("script", src=True)  # no network
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
    cl = pd.read_parquet(clustered_run / "clusters.parquet")
    ids = storage.read_manifest(clustered_run).set_index("path")["image_id"]
    name_to_id = {Path(p).name: i for p, i in ids.items()}
    for g in data["clusterings"]:
        sel = cl[(cl["method"] == g["method"]) & (cl["k"] == g["k"])]
        assert sum(c["size"] for c in g["clusters"]) == 19
        for c in g["clusters"]:
            expect = sel[sel["cluster"] == c["c"]].sort_values("rank")["image_id"].tolist()
            got = [name_to_id[data["images"][i]["name"]] for i in c["m"]]
            assert got == expect  # nearest the centre first
    for i, nb in enumerate(data["neighbours"]):
        assert nb is not None and len(nb) == 5
        assert all(0 <= j < len(data["images"]) and j != i for j, _ in nb)
    assert len(data["duplicates"]["groups"]) == 1 and data["duplicates"]["threshold"] == 0.99


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


def test_gallery_bounds_clusters(clustered_run):
    out = write_gallery(clustered_run, k_values=[2], methods=["kmeans"], max_per_cluster=3)
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
    assert all(key in template.read_text(encoding="utf-8") for key in ("__TITLE__", "__DATA__"))
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
    for name in ("elbow.png", "scores.png", "pca_variance.png", "near_duplicates.png"):
        assert (run / "figures" / name).exists(), name
    assert list((run / "figures").glob("map_tsne_k*.png"))
    assert (run / "report" / "gallery.html").exists()
    assert (run / "near_duplicates.csv").exists()
    assert (run / "clusters" / "k_2" / "cluster_0").is_dir()  # export_folders from 04
    assert (run / "notebooks" / "05_elbow_and_inspect.ipynb").stat().st_size < 3_000_000


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
    out = write_gallery(clustered_run, page_size=2, n_neighbours=3, inline=inline, thumb=32)
    _, data = _gallery_data(out)
    assert data["page_size"] == 2
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
