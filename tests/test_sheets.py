"""Thumbnails and contact sheets: the grid, the clusters nearest first, the overview."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from synthetic_run import assert_png, make_run

from lookalike import storage
from lookalike.exceptions import ConfigError
from lookalike.paths import RunLayout
from lookalike.sheets import cluster_contact_sheets, contact_sheet, overview_sheet


@pytest.fixture
def clustered_run(tmp_path):
    return make_run(tmp_path)


def test_contact_sheet_grid_and_transparent_logo_on_white(tmp_path):
    logo = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    logo.paste((0, 0, 0, 255), (15, 15, 25, 25))
    logo.save(tmp_path / "logo.png")
    paths = [tmp_path / "logo.png"] + [tmp_path / "missing.png"] * 9
    out = contact_sheet(paths, tmp_path / "sheet.png", title="ten images", thumb=40, columns=8)
    arr = assert_png(out)
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
    two = contact_sheet(paths[:3], tmp_path / "two.png", title="t", thumb=40, captions=["a\nb"])
    assert Image.open(two).height == header + (40 + 27 + gap) + gap  # a line per "\n"


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
        arr = assert_png(path)
        nearest = cl[(cl["cluster"] == c) & (cl["rank"] == 0)]["image_id"].item()
        # First tile (top-left under the header) is the image nearest the centroid.
        first_tile_centre = arr[24 + 4 + 48, 4 + 48]  # header is thumb // 4 = 24
        np.testing.assert_allclose(first_tile_centre, colour_of[nearest], atol=3)
    agg = cluster_contact_sheets(clustered_run, 3, method="agglomerative")
    assert agg[0].name == "agglomerative_k3_cluster0.png"


def test_cluster_sheets_name_each_image_by_its_label(clustered_run):
    from lookalike.sheets import cluster_assignments

    m = storage.read_manifest(clustered_run)
    first = m.iloc[0]
    copy = dict(first, origin="http://shop.test/img/x.jpg", source="catalog", label="Red shoe")
    storage.merge_manifest(clustered_run, pd.DataFrame([copy]))  # the same bytes elsewhere
    sel = cluster_assignments(RunLayout(clustered_run), 3, "kmeans").set_index("image_id")
    assert sel.loc[first["image_id"], "caption"] == f"{first['label']} (+1 more)"
    assert sel.loc[m.iloc[1]["image_id"], "label"] == m.iloc[1]["label"] == m.iloc[1]["origin"]
    [sheet] = cluster_contact_sheets(clustered_run, 3, max_images=4, max_sheets=1)
    assert Image.open(sheet).height == 24 + (96 + 14 + 4) + 4  # a label line under the row


def test_overview_sheet_one_row_per_cluster(clustered_run):
    out = overview_sheet(clustered_run, 3, per_cluster=4, thumb=32)
    assert out == clustered_run / "figures" / "overview_k3.png"
    arr = assert_png(out)
    assert arr.shape[0] == 26 + 3 * (32 + 13 + 4) + 4  # one row per cluster, labels under
    capped = overview_sheet(clustered_run, 5, clustered_run / "o.png", thumb=32, max_clusters=2)
    assert assert_png(capped).shape[0] == 26 + 2 * (32 + 13 + 4) + 4


def test_unknown_k_names_the_available_ones(clustered_run):
    with pytest.raises(ConfigError, match=r"available k: \[2, 3, 4, 5\]"):
        cluster_contact_sheets(clustered_run, 7)


def test_cluster_contact_sheets_are_bounded_to_the_largest_clusters(clustered_run, monkeypatch):
    import lookalike.sheets as sheets

    monkeypatch.setattr(sheets, "MAX_CLUSTER_SHEETS", 2)
    paths = cluster_contact_sheets(clustered_run, 5, max_images=3)
    assert [p.name for p in paths] == ["k5_cluster0.png", "k5_cluster1.png"]
    assert len(cluster_contact_sheets(clustered_run, 5, max_sheets=4)) == 4
    # the title still counts the whole cluster, though only max_images rows are read
    cl = pd.read_parquet(clustered_run / "clusters.parquet")
    size0 = int(((cl["k"] == 5) & (cl["method"] == "kmeans") & (cl["cluster"] == 0)).sum())
    assert size0 > 3
    stats = sheets._cluster_stats(sheets.RunLayout(clustered_run), 5, "kmeans")
    assert int(stats.loc[0, "size"]) == size0
    assert f"{size0} images" in sheets._cluster_title("kmeans", 5, 0, stats.loc[0])
