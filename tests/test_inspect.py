"""Stage 05: choosing k, plots and contact sheets (synthetic run, no model needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lookalike import io
from lookalike.cluster import cluster_run
from lookalike.exceptions import ConfigError
from lookalike.inspect import (
    cluster_contact_sheets,
    contact_sheet,
    find_knee,
    overview_sheet,
    plot_elbow,
    plot_pca,
    plot_scores,
    recommend_k,
)

# Inertia falls steeply to k=4, then slowly: the knee is at 4.
KNEE_K = list(range(1, 11))
KNEE_INERTIA = [100.0, 70.0, 40.0, 10.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0]


def _metrics(k, inertia, silhouette=None):
    n = len(k)
    return pd.DataFrame(
        {
            "method": "kmeans",
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


def test_find_knee_none_for_a_straight_line_or_too_few_points():
    assert find_knee([2, 3, 4, 5, 6], [50.0, 40.0, 30.0, 20.0, 10.0]) is None
    assert find_knee([2, 3], [10.0, 5.0]) is None


def test_recommend_k_prefers_the_knee_then_silhouette():
    k, rule = recommend_k(_metrics(KNEE_K, KNEE_INERTIA))
    assert k == 4 and "knee" in rule
    sil = [0.2, 0.3, 0.6, 0.4, 0.1]
    k, rule = recommend_k(_metrics([2, 3, 4, 5, 6], [50.0, 40.0, 30.0, 20.0, 10.0], sil))
    assert k == 4 and "silhouette" in rule
    with pytest.raises(ConfigError):
        recommend_k(_metrics([], []))


# -- plots --------------------------------------------------------------------------------


def test_plot_elbow_and_scores(tmp_path):
    m = _metrics(KNEE_K, KNEE_INERTIA)
    elbow = plot_elbow(m, tmp_path / "figs" / "elbow.png", knee=4)
    scores = plot_scores(m, tmp_path / "figs" / "scores.png")
    assert elbow == tmp_path / "figs" / "elbow.png"
    _assert_png(elbow)
    arr = _assert_png(scores)
    assert arr.shape[1] > arr.shape[0]  # three panels side by side
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


COLORS = [(220, 30, 30), (30, 160, 30), (30, 30, 220)]


@pytest.fixture
def clustered_run(tmp_path):
    """A run of 18 solid-colour images in 3 colour groups, with embeddings and clusters."""
    run = tmp_path / "run"
    rng = np.random.default_rng(0)
    rows, vecs = [], []
    centers = rng.normal(size=(3, 16))
    for i in range(18):
        g = i % 3
        shade = np.clip(np.array(COLORS[g]) + rng.integers(-20, 20, 3), 0, 255)
        mode, size = ("RGBA", (30, 20)) if i == 0 else ("RGB", (24, 24))
        img = Image.new(mode, size, tuple(int(x) for x in shade) + ((255,) if i == 0 else ()))
        p = run / "images" / f"{i}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        img.save(p)
        rows.append(
            {
                "image_id": io.sha256_file(p),
                "path": f"images/{i}.png",
                "source": "folder",
                "origin": str(i),
                "width": size[0],
                "height": size[1],
                "status": "ok",
                "error": None,
            }
        )
        vecs.append(centers[g] + rng.normal(scale=0.05, size=16))
    manifest = io.merge_manifest(run, pd.DataFrame(rows))
    vec_path, ids_path = io.embeddings_paths(run)
    vec_path.parent.mkdir(parents=True)
    np.save(vec_path, np.asarray(vecs, dtype=np.float32))
    io.write_table(manifest[["image_id", "path"]], ids_path)
    cluster_run(run, pca_components=5, k_values=[2, 3], progress=False)
    return run


def test_cluster_contact_sheets(clustered_run):
    paths = cluster_contact_sheets(clustered_run, 3, max_images=10)
    assert [p.name for p in paths] == [f"k3_cluster{c}.png" for c in range(3)]
    assert all(p.parent == clustered_run / "figures" / "clusters" for p in paths)
    cl = pd.read_parquet(clustered_run / "clusters.parquet")
    cl = cl[cl["k"] == 3]
    manifest = io.read_manifest(clustered_run)
    color_of = {
        r.image_id: np.asarray(Image.open(clustered_run / r.path).convert("RGB"))[10, 10]
        for r in manifest.itertuples()
    }
    for c, path in enumerate(paths):
        arr = _assert_png(path)
        nearest = cl[(cl["cluster"] == c) & (cl["rank"] == 0)]["image_id"].item()
        # First tile (top-left under the header) is the image nearest the centroid.
        first_tile_centre = arr[24 + 4 + 48, 4 + 48]  # header is thumb // 4 = 24
        np.testing.assert_allclose(first_tile_centre, color_of[nearest], atol=3)


def test_overview_and_pca_plot(clustered_run):
    out = overview_sheet(clustered_run, 3, per_cluster=4, thumb=32)
    assert out == clustered_run / "figures" / "overview_k3.png"
    arr = _assert_png(out)
    assert arr.shape[0] == 26 + 3 * (32 + 4) + 4  # one row per cluster
    _assert_png(plot_pca(clustered_run, 3))


def test_unknown_k_names_the_available_ones(clustered_run):
    with pytest.raises(ConfigError, match=r"available k: \[2, 3\]"):
        cluster_contact_sheets(clustered_run, 7)
