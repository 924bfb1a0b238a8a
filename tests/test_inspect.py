"""Stage 05: choosing k, plots, contact sheets, neighbours, near-duplicates, the browser and
the HTML gallery (synthetic runs, no model needed)."""

from __future__ import annotations

import base64
import json
from io import BytesIO
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from bs4 import BeautifulSoup
from PIL import Image, ImageDraw
from sklearn.cluster import KMeans

from lookalike import storage
from lookalike.cluster import DEFAULT_K_VALUES, cluster_run
from lookalike.exceptions import ConfigError
from lookalike.inspect import (
    NEAR_DUPLICATES_COLUMNS,
    ClusterBrowser,
    _spread_out,
    choose_k,
    cluster_contact_sheets,
    contact_sheet,
    find_knee,
    find_near_duplicates,
    near_duplicate_groups,
    near_duplicates_sheet,
    nearest_neighbours,
    overview_sheet,
    plot_elbow,
    plot_map,
    plot_pca_variance,
    plot_scores,
    recommend_k,
    write_gallery,
)

# Inertia falls steeply to k=4, then slowly: the knee is at 4.
KNEE_K = list(range(1, 11))
KNEE_INERTIA = [100.0, 70.0, 40.0, 10.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0]


def _metrics(k, inertia, silhouette=None, method="kmeans"):
    n = len(k)
    return pd.DataFrame(
        {
            "method": method,
            "k": k,
            "inertia": inertia,
            "silhouette": silhouette if silhouette is not None else np.linspace(0.1, 0.5, n),
            "davies_bouldin": np.linspace(2.0, 1.0, n),
            "calinski_harabasz": np.linspace(10.0, 50.0, n),
            "seconds": 0.01,
        }
    )


def _assert_png(path, *, min_size=(50, 50)):
    assert path.exists() and path.stat().st_size > 0
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.width >= min_size[0] and im.height >= min_size[1]
        arr = np.asarray(im.convert("RGB"), dtype=float)
    assert arr.std() > 1.0  # something was drawn
    return arr


# -- choosing k ---------------------------------------------------------------------------


def test_find_knee_on_a_known_curve():
    assert find_knee(KNEE_K, KNEE_INERTIA) == 4
    # Order of the points does not matter, NaNs are ignored.
    order = np.random.default_rng(0).permutation(len(KNEE_K))
    assert find_knee(np.array(KNEE_K)[order], np.array(KNEE_INERTIA)[order]) == 4
    assert find_knee(KNEE_K + [11], KNEE_INERTIA + [float("nan")]) == 4


@pytest.mark.parametrize("knee", [10, 20, 50, 100])
def test_find_knee_on_the_default_sweep_grid(knee):
    # Two straight pieces meeting at a known k: steep before it, nearly flat after.
    k = np.array(DEFAULT_K_VALUES, dtype=float)
    inertia = np.where(k <= knee, 1000 - 900 * (k - 3) / (knee - 3), 100 - 50 * (k - knee) / 1e3)
    assert find_knee(k, inertia) == knee


def test_find_knee_on_kmeans_of_five_blobs():
    rng = np.random.default_rng(1)
    centres = rng.normal(scale=10.0, size=(5, 8))
    X = np.repeat(centres, 40, axis=0) + rng.normal(size=(200, 8))
    ks = list(range(2, 13))  # a sweep starts at 2: one cluster has no scores
    inertia = [KMeans(k, n_init=4, random_state=0).fit(X).inertia_ for k in ks]
    assert find_knee(ks, inertia) == 5


def test_find_knee_none_for_a_straight_line_or_too_few_points():
    assert find_knee([2, 3, 4, 5, 6], [50.0, 40.0, 30.0, 20.0, 10.0]) is None
    assert find_knee([2, 3], [10.0, 5.0]) is None


def test_recommend_k_prefers_the_knee_then_silhouette():
    k, rule = recommend_k(_metrics(KNEE_K, KNEE_INERTIA))
    assert k == 4 and "knee" in rule and "Kneedle" in rule
    sil = [0.2, 0.3, 0.6, 0.4, 0.1]
    k, rule = recommend_k(_metrics([2, 3, 4, 5, 6], [50.0, 40.0, 30.0, 20.0, 10.0], sil))
    assert k == 4 and "silhouette" in rule and "no knee" in rule
    with pytest.raises(ConfigError):
        recommend_k(_metrics([], []))


def test_choose_k_states_the_rule_and_lets_k_override():
    both = pd.concat(
        [_metrics(KNEE_K, KNEE_INERTIA), _metrics([2, 3], [5.0, 4.0], method="agglomerative")]
    )
    rec = choose_k(both)
    assert (rec.k, rec.recommended, rec.knee, rec.overridden) == (4, 4, 4, False)
    assert str(rec).startswith("kmeans: recommended k = 4 (knee")
    over = choose_k(both, 7)
    assert (over.k, over.recommended, over.overridden) == (7, 4, True)
    assert "inspecting k = 7, set by the k parameter" in str(over)
    with pytest.raises(ConfigError, match=r"k=12 was not clustered with kmeans.*\[1, 2, 3"):
        choose_k(both, 12)
    ag = choose_k(both, method="agglomerative")  # two points: no knee, best silhouette
    assert ag.knee is None and ag.k == 3 and "silhouette" in ag.rule
    with pytest.raises(ConfigError, match="no 'spectral' rows"):
        choose_k(both, method="spectral")


# -- plots --------------------------------------------------------------------------------


def test_plot_elbow_and_scores(tmp_path):
    m = pd.concat(
        [_metrics(KNEE_K, KNEE_INERTIA), _metrics(KNEE_K, KNEE_INERTIA, method="agglomerative")]
    )
    elbow = plot_elbow(m, tmp_path / "figs" / "elbow.png", knee=4, chosen=6)
    scores = plot_scores(m, tmp_path / "figs" / "scores.png", chosen=6)
    assert elbow == tmp_path / "figs" / "elbow.png"
    _assert_png(elbow)
    arr = _assert_png(scores)
    assert arr.shape[1] > arr.shape[0]  # three panels side by side
    # No knee: the plot says so instead of marking a line at the recommended k.
    line = _metrics([2, 3, 4, 5, 6], [50.0, 40.0, 30.0, 20.0, 10.0])
    _assert_png(plot_elbow(line, tmp_path / "figs" / "line.png", knee=None))
    assert not list((tmp_path / "figs").glob("*.tmp"))


# -- contact sheets -----------------------------------------------------------------------


def test_contact_sheet_grid_and_transparent_logo_on_white(tmp_path):
    logo = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    logo.paste((0, 0, 0, 255), (15, 15, 25, 25))
    logo.save(tmp_path / "logo.png")
    paths = [tmp_path / "logo.png"] + [tmp_path / "missing.png"] * 9
    out = contact_sheet(paths, tmp_path / "sheet.png", title="ten images", thumb=40, columns=8)
    arr = _assert_png(out)
    header, gap = 22, 4
    assert arr.shape[0] == header + 2 * (40 + gap) + gap  # 10 images in rows of 8
    tile = arr[header + gap : header + gap + 40, gap : gap + 40]
    np.testing.assert_allclose(tile[2, 2], [255, 255, 255])  # transparent corner shows white
    np.testing.assert_allclose(tile[20, 20], [0, 0, 0], atol=2)
    # max_images caps the grid; an empty list still gives a titled sheet.
    capped = contact_sheet(paths, tmp_path / "capped.png", title="t", thumb=40, max_images=3)
    assert Image.open(capped).height == header + (40 + gap) + gap
    assert Image.open(contact_sheet([], tmp_path / "empty.png", title="nothing")).width > 0
    # captions add a text line under every tile
    cap = contact_sheet(paths[:3], tmp_path / "cap.png", title="t", thumb=40, captions=["a"] * 3)
    assert Image.open(cap).height == header + (40 + 14 + gap) + gap


COLORS = [(220, 30, 30), (30, 160, 30), (30, 30, 220)]


def _shape(group: int, i: int, size: int = 48) -> Image.Image:
    """A logo-like picture: group 0 red discs, 1 green squares, 2 blue triangles."""
    rng = np.random.default_rng(100 + i)
    img = Image.new("RGBA", (size, size), (255, 255, 255, 0))
    d = ImageDraw.Draw(img)
    colour = tuple(int(c) for c in np.clip(np.array(COLORS[group]) + rng.integers(-25, 25, 3),
                                           0, 255)) + (255,)  # fmt: skip
    m = int(rng.integers(4, 10))
    box = (m, m, size - m, size - m)
    if group == 0:
        d.ellipse(box, fill=colour)
    elif group == 1:
        d.rectangle(box, fill=colour)
    else:
        d.polygon([(size // 2, m), (size - m, size - m), (m, size - m)], fill=colour)
    return img


def make_run(root: Path, *, n_per: int = 6, k_values=(2, 3, 4, 5)) -> Path:
    """A run of 3 x ``n_per`` + 1 synthetic logos with embeddings and clusters.

    Image 0 and the last image are near-duplicates: the same picture one pixel apart, with
    nearly the same vector. Group g's vectors lie around centre g.
    """
    run = root / "run"
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 3
    rows, vecs = [], []
    n = 3 * n_per
    for i in range(n + 1):
        g = i % 3 if i < n else 0
        img = _shape(g, i if i < n else 0)
        if i == n:  # the near-duplicate of image 0
            img = img.transform(img.size, Image.AFFINE, (1, 0, 1, 0, 1, 0))
        p = run / "images" / f"logo {i}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        img.save(p)
        rows.append(
            {
                "image_id": storage.sha256_file(p),
                "path": f"images/logo {i}.png",
                "source": "folder",
                "origin": str(i),
                "width": img.width,
                "height": img.height,
                "status": "ok",
                "error": None,
            }
        )
        v = centres[g] + rng.normal(scale=1.0, size=16)
        vecs.append(vecs[0] + rng.normal(scale=1e-3, size=16) if i == n else v)
    manifest = storage.merge_manifest(run, pd.DataFrame(rows))
    vec_path, ids_path = storage.embeddings_paths(run)
    vec_path.parent.mkdir(parents=True)
    np.save(vec_path, np.asarray(vecs, dtype=np.float32))
    storage.write_table(manifest[["image_id", "path"]], ids_path)
    cluster_run(run, pca_components=8, k_values=list(k_values), progress=False)
    return run


@pytest.fixture
def clustered_run(tmp_path):
    return make_run(tmp_path)


def _colour_of(run):
    manifest = storage.read_manifest(run)
    out = {}
    for r in manifest.itertuples():
        with Image.open(run / r.path) as im:
            rgba = np.asarray(im.convert("RGBA"))[24, 24]
        out[r.image_id] = rgba[:3]
    return out


def test_cluster_contact_sheets_nearest_first(clustered_run):
    paths = cluster_contact_sheets(clustered_run, 3, max_images=10)
    assert [p.name for p in paths] == [f"k3_cluster{c}.png" for c in range(3)]
    assert all(p.parent == clustered_run / "figures" / "clusters" for p in paths)
    cl = pd.read_parquet(clustered_run / "clusters.parquet")
    cl = cl[(cl["k"] == 3) & (cl["method"] == "kmeans")]
    colour_of = _colour_of(clustered_run)
    for c, path in enumerate(paths):
        arr = _assert_png(path)
        nearest = cl[(cl["cluster"] == c) & (cl["rank"] == 0)]["image_id"].item()
        # First tile (top-left under the header) is the image nearest the centroid.
        first_tile_centre = arr[24 + 4 + 48, 4 + 48]  # header is thumb // 4 = 24
        np.testing.assert_allclose(first_tile_centre, colour_of[nearest], atol=3)
    agg = cluster_contact_sheets(clustered_run, 3, method="agglomerative")
    assert agg[0].name == "agglomerative_k3_cluster0.png"


def test_overview_variance_and_maps(clustered_run):
    out = overview_sheet(clustered_run, 3, per_cluster=4, thumb=32)
    assert out == clustered_run / "figures" / "overview_k3.png"
    arr = _assert_png(out)
    assert arr.shape[0] == 26 + 3 * (32 + 4) + 4  # one row per cluster
    capped = overview_sheet(clustered_run, 5, clustered_run / "o.png", thumb=32, max_clusters=2)
    assert _assert_png(capped).shape[0] == 26 + 2 * (32 + 4) + 4
    _assert_png(plot_pca_variance(clustered_run))
    pca_map = plot_map(clustered_run, 3, projection="pca", max_thumbnails=10)
    assert pca_map.name == "map_pca_k3.png"
    _assert_png(pca_map, min_size=(500, 400))
    tsne_map = plot_map(clustered_run, 3, projection="tsne", max_points=12, random_state=0)
    _assert_png(tsne_map, min_size=(500, 400))
    with pytest.raises(ConfigError, match="projection='umap'"):
        plot_map(clustered_run, 3, projection="umap")


def test_map_thumbnails_are_bounded_and_never_overlap():
    rng = np.random.default_rng(0)
    xy = rng.normal(size=(500, 2))
    order = np.arange(500)
    box = (0.05, 0.08)
    taken = _spread_out(xy, order, 60, box)
    assert 0 < len(taken) <= 60 and taken[0] == 0
    p = (xy - xy.min(0)) / (xy.max(0) - xy.min(0))
    for a in range(len(taken)):
        for b in range(a):
            d = np.abs(p[taken[a]] - p[taken[b]])
            assert d[0] >= box[0] or d[1] >= box[1]
    assert len(_spread_out(xy, order, 3, box)) == 3


def test_unknown_k_names_the_available_ones(clustered_run):
    with pytest.raises(ConfigError, match=r"available k: \[2, 3, 4, 5\]"):
        cluster_contact_sheets(clustered_run, 7)


# -- neighbours and near-duplicates ---------------------------------------------------------


def test_nearest_neighbours_match_brute_force():
    rng = np.random.default_rng(2)
    Z = rng.normal(size=(40, 6)).astype(np.float32)
    idx, dist = nearest_neighbours(Z, [0, 5, 39], 4)
    U = Z / np.linalg.norm(Z, axis=1, keepdims=True)
    for r, q in enumerate([0, 5, 39]):
        cos = U @ U[q]
        cos[q] = -np.inf
        expect = np.argsort(-cos, kind="stable")[:4]
        np.testing.assert_array_equal(idx[r], expect)
        np.testing.assert_allclose(dist[r], 1 - cos[expect], atol=1e-5)
        assert q not in idx[r]
    assert nearest_neighbours(Z[:1], [0], 4)[0].shape == (1, 0)  # one row: nobody near


def test_near_duplicate_groups_threshold_and_chains():
    base = np.eye(6, dtype=np.float32)
    a = base[0] + 0.05 * base[1]  # cos(a, e0) = 0.9988
    b = base[0] + 0.10 * base[2]  # cos(b, e0) = 0.995; cos(a, b) = 0.993
    c = base[3] + 0.5 * base[4]  # cos(c, e3) = 0.894: not a duplicate at 0.97
    Z = np.vstack([base, a, b, c])
    groups = near_duplicate_groups(Z, 0.99)
    assert [g.tolist() for g in groups] == [[0, 6, 7]]
    assert near_duplicate_groups(Z, 0.999) == []
    assert [g.tolist() for g in near_duplicate_groups(Z, 0.85)] == [[0, 6, 7], [3, 8]]
    with pytest.raises(ConfigError, match="dup_threshold=1.5"):
        near_duplicate_groups(Z, 1.5)


def test_find_near_duplicates_lists_and_shows_them(clustered_run, capsys):
    table = find_near_duplicates(clustered_run, threshold=0.99)
    assert "near-duplicates: 1 groups, 2 of 19 images" in capsys.readouterr().out
    on_disk = pd.read_csv(clustered_run / "near_duplicates.csv")
    assert list(on_disk.columns) == NEAR_DUPLICATES_COLUMNS
    assert sorted(Path(p).name for p in on_disk["path"]) == ["logo 0.png", "logo 18.png"]
    assert (on_disk["group_size"] == 2).all() and (on_disk["max_similarity"] > 0.99).all()
    sheet = near_duplicates_sheet(table, clustered_run / "figures" / "dups.png", thumb=32)
    assert _assert_png(sheet).shape[0] == 26 + (32 + 4) + 4  # one group, one row
    none = find_near_duplicates(clustered_run, threshold=1.0, out_path=clustered_run / "n.csv")
    assert none.empty and list(pd.read_csv(clustered_run / "n.csv").columns) == list(none)
    _assert_png(near_duplicates_sheet(none, clustered_run / "none.png"))


# -- the notebook browser -------------------------------------------------------------------


def _png_size(data: bytes) -> tuple[int, int]:
    with Image.open(BytesIO(data)) as im:
        assert im.format == "PNG"
        return im.size


def test_browser_callbacks_without_a_browser(clustered_run):
    b = ClusterBrowser(clustered_run, k=3, n_neighbours=4, thumb=40)
    assert b.k_options() == [2, 3, 4, 5]
    opts = b.cluster_options()
    assert [c for _, c in opts] == [0, 1, 2] and "images, cohesion" in opts[0][0]
    first = b.grid_png
    assert _png_size(first)[1] > 40
    members = b.members(3, 0)
    assert members["rank"].tolist() == list(range(len(members)))
    assert b.image_id == members["image_id"].iloc[0]  # the central image is picked

    b.on_k({"new": 5})
    assert b.k == 5 and b.cluster == 0 and len(b.cluster_options()) == 5
    b.on_cluster({"new": 4})
    assert b.cluster == 4 and b.grid_png != first
    n_members = len(b.members(5, 4))
    w, h = _png_size(b.grid_png)
    assert h == 22 + ((n_members + 7) // 8) * (40 + 4) + 4

    dup = (
        storage.read_manifest(clustered_run).set_index("path").loc["images/logo 18.png", "image_id"]
    )
    b.on_image({"new": dup})
    nb = b.neighbours_table
    assert len(nb) == 4 and dup not in set(nb["image_id"])
    assert Path(nb["path"].iloc[0]).name == "logo 0.png"  # its near-duplicate comes first
    assert nb["distance"].is_monotonic_increasing and nb["distance"].iloc[0] < 0.01
    np.testing.assert_allclose(nb["similarity"], 1 - nb["distance"])
    assert _png_size(b.neighbours_png)[0] >= 5 * 44
    with pytest.raises(ConfigError, match="not in"):
        b.neighbours("f" * 64)
    with pytest.raises(ConfigError, match=r"available k: \[2, 3, 4, 5\]"):
        ClusterBrowser(clustered_run, k=9)


def test_browser_widgets_drive_the_same_callbacks(clustered_run):
    b = ClusterBrowser(clustered_run, method="agglomerative", n_neighbours=3, thumb=32)
    ui = b.widget()
    assert type(ui).__name__ == "VBox"
    w = b._w
    assert w["k"].options == (2, 3, 4, 5) and w["k"].value == 2
    w["k"].value = 4  # as if picked in the notebook
    assert b.k == 4 and [c for _, c in w["cluster"].options] == [0, 1, 2, 3]
    w["cluster"].value = 2
    assert b.cluster == 2 and w["grid"].value == b.grid_png
    picked = w["image"].options[-1][1]
    w["image"].value = picked
    assert b.image_id == picked and w["neighbours"].value == b.neighbours_png
    html = BeautifulSoup(w["table"].value, "html.parser")
    assert len(html.find_all("tr")) == 1 + 3  # header + 3 neighbours with distances
    assert "distance" in w["table"].value


# -- the HTML gallery -----------------------------------------------------------------------


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
