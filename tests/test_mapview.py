"""The interactive map: the sample, UMAP (and its t-SNE fallback), the cache in the run
folder, the plotly page; and, in chromium, its hover box with the thumbnail and label."""

from __future__ import annotations

import re
import sys

import numpy as np
import pandas as pd
import pytest
from bs4 import BeautifulSoup
from synthetic_run import make_run

from lookalike import storage
from lookalike.exceptions import ConfigError
from lookalike.mapview import (
    cluster_colours,
    embed_2d,
    map_coords,
    map_html,
    map_points,
    plotly_js,
    projection_available,
    sample_rows,
)
from lookalike.paths import RunLayout


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """31 images in three groups (:func:`synthetic_run.make_run`), clustered with k 2 to 5."""
    return RunLayout(make_run(tmp_path_factory.mktemp("map"), n_per=10))


def _clusters(run: RunLayout, k: int, method: str = "kmeans") -> pd.Series:
    cl = pd.read_parquet(run.clusters)
    sel = cl[(cl["method"] == method) & (cl["k"] == k)]
    return pd.Series(sel["cluster"].to_numpy(), index=sel["image_id"])


# -- the sample --------------------------------------------------------------------------


def test_sample_rows_keeps_everything_up_to_the_bound():
    assert sample_rows(np.zeros(7), 7).tolist() == list(range(7))
    assert sample_rows(np.zeros(3), 10).tolist() == [0, 1, 2]


def test_sample_rows_is_seeded_sized_and_has_every_cluster():
    labels = np.repeat(np.arange(20), [500] + [2] * 19)  # one big cluster, 19 tiny ones
    rows = sample_rows(labels, 50, random_state=3)
    assert len(rows) == len(set(rows)) == 50 and rows.tolist() == sorted(rows.tolist())
    assert set(labels[rows]) == set(range(20))  # a uniform sample would miss tiny ones
    assert rows.tolist() == sample_rows(labels, 50, random_state=3).tolist()
    assert rows.tolist() != sample_rows(labels, 50, random_state=4).tolist()


def test_sample_rows_with_more_clusters_than_points():
    labels = np.arange(100)
    rows = sample_rows(labels, 10, random_state=0)
    assert len(set(labels[rows])) == 10
    with pytest.raises(ConfigError, match="map_max=0 must be >= 1"):
        sample_rows(labels, 0)


def test_cluster_colours_are_distinct():
    for n in (1, 3, 10, 11, 24, 25, 70, 300):
        colours = cluster_colours(n)
        assert len(colours) == len(set(colours)) == n
        assert all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in colours)


# -- the projection ----------------------------------------------------------------------


def test_umap_is_seeded_and_deterministic():
    Z = np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32)
    xy, used = embed_2d(Z, random_state=1)
    assert used == "umap" and xy.shape == (40, 2) and xy.dtype == np.float32
    assert np.isfinite(xy).all()
    again, _ = embed_2d(Z, random_state=1)
    np.testing.assert_array_equal(xy, again)
    other, _ = embed_2d(Z, random_state=2)
    assert not np.allclose(xy, other)


def test_tiny_inputs_get_the_first_components():
    Z = np.arange(6, dtype=np.float32).reshape(3, 2)
    xy, used = embed_2d(Z)
    assert used == "pca" and xy.tolist() == Z.tolist()


def test_without_umap_learn_the_map_falls_back_to_tsne(monkeypatch):
    monkeypatch.setitem(sys.modules, "umap", None)  # as if it were not installed
    assert projection_available("auto") == "tsne"
    with pytest.warns(RuntimeWarning, match="umap-learn is not installed"):
        assert projection_available("umap") == "tsne"
    Z = np.random.default_rng(0).normal(size=(12, 4)).astype(np.float32)
    xy, used = embed_2d(Z)
    assert used == "tsne" and xy.shape == (12, 2)
    with pytest.raises(ConfigError, match="projection='pca3'"):
        projection_available("pca3")


# -- the cache in the run folder ---------------------------------------------------------


def test_map_coords_are_kept_in_the_run_and_reused(run, capsys):
    run.map2d.unlink(missing_ok=True)
    coords = map_coords(run, method="kmeans", k=3, refresh=True)
    assert "map: 31 of 31 images by umap" in capsys.readouterr().out
    assert coords.attrs == {"projection": "umap", "n_images": 31, "cached": False}
    ids, _ = storage.read_embeddings(run)
    assert coords["image_id"].tolist() == ids["image_id"].tolist()  # all, in the run's order
    assert run.map2d.is_file() and storage.read_stamp(run.map2d_state)["used"] == "umap"
    mtime = run.map2d.stat().st_mtime_ns
    again = map_coords(run, method="kmeans", k=3)  # the gallery's call: read back
    assert again.attrs["cached"] and run.map2d.stat().st_mtime_ns == mtime
    assert capsys.readouterr().out == ""
    pd.testing.assert_frame_equal(again, coords, check_dtype=False)
    # not sampled: the clustering does not matter, the same map is reused
    assert map_coords(run, method="agglomerative", k=5).attrs["cached"]
    fresh = map_coords(run, method="kmeans", k=3, refresh=True)  # computed again: the same
    np.testing.assert_array_equal(fresh[["x", "y"]].to_numpy(), coords[["x", "y"]].to_numpy())
    other = map_coords(run, method="kmeans", k=3, random_state=5)  # another seed: computed
    assert not other.attrs["cached"]
    assert not np.allclose(other[["x", "y"]].to_numpy(), coords[["x", "y"]].to_numpy())


def test_a_sampled_map_has_the_bound_and_every_cluster(run):
    coords = map_coords(run, method="kmeans", k=5, max_points=8, random_state=0)
    assert len(coords) == 8 and not coords.attrs["cached"] and coords.attrs["n_images"] == 31
    assert set(_clusters(run, 5).reindex(coords["image_id"])) == set(range(5))
    assert map_coords(run, method="kmeans", k=5, max_points=8).attrs["cached"]
    # sampled: another clustering to keep whole makes another sample
    assert not map_coords(run, method="kmeans", k=4, max_points=8).attrs["cached"]
    assert not map_coords(run, method="kmeans", k=4, max_points=9).attrs["cached"]
    assert len(map_coords(run, method="kmeans", k=4, max_points=9)) == 9


def test_map_points_have_clusters_and_labels(run):
    points = map_points(run, 3, method="kmeans")
    assert list(points.columns) == ["image_id", "x", "y", "cluster", "label", "caption", "abspath"]
    assert points["cluster"].tolist() == _clusters(run, 3).reindex(points["image_id"]).tolist()
    labels = storage.image_info(run)["label"]
    assert points["label"].tolist() == labels.reindex(points["image_id"]).tolist()
    assert points.attrs["clusters"] == [0, 1, 2] and points.attrs["k"] == 3


# -- the page ----------------------------------------------------------------------------


def test_map_html_inlines_plotly_and_the_thumbnails(run):
    page = map_html(run, 3, method="kmeans", full_html=True, thumb=32)
    soup = BeautifulSoup(page, "html.parser")
    assert [s["src"] for s in soup.find_all("script", src=True)] == []  # no CDN, no file
    assert not soup.find_all("link", href=True)
    assert plotly_js() in page  # inlined once
    assert page.count(plotly_js()[:200]) == 1
    assert "cdn.plot.ly" not in page.replace(plotly_js(), "")
    assert page.count("data:image\\u002fjpeg;base64,") == 31  # plotly writes / as \\u002f
    assert len(re.findall(r'"name":\s*"cluster \d \(\d+\)"', page)) == 3  # the legend
    div = map_html(run, 3, method="kmeans", include_plotlyjs=False)
    assert plotly_js()[:200] not in div and div.startswith("<div")


HOVERED = """(() => {
  const tip = document.querySelector('.lookalike-map-tip');
  if (!tip || tip.style.display !== 'block') return null;
  const im = tip.querySelector('img');
  return {label: tip.querySelector('.lookalike-map-label').textContent,
          image: Boolean(im && im.complete && im.naturalWidth > 0)};
})()"""


def test_the_maps_hover_box_shows_the_thumbnail_and_label_in_chromium(run, tmp_path):
    from test_gallery_browser import CHROMIUM, _DevTools, isolated_point

    if CHROMIUM is None:
        pytest.skip("chromium is not installed: run `make browser`")
    page = tmp_path / "map.html"
    page.write_text(map_html(run, 3, method="kmeans", full_html=True), encoding="utf-8")
    browser = _DevTools(tmp_path, page.as_uri(), "--window-size=1200,900")
    try:
        browser.wait_for("document.querySelector('.plotly-graph-div') && "
                         "document.querySelector('.plotly-graph-div')._fullLayout")  # fmt: skip
        gd = "document.querySelector('.plotly-graph-div')"
        point = isolated_point(browser, gd)
        browser.mouse("mouseMoved", point["x"], point["y"])
        browser.wait_for(HOVERED)
        got = browser.js(HOVERED)
    finally:
        browser.close()
    labels = storage.image_info(run)["label"]
    assert got == {"label": labels[point["id"]], "image": True}
