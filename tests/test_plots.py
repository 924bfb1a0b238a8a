"""Figures: the elbow and scores, the PCA variance and the 2-D maps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from synthetic_run import KNEE_INERTIA, KNEE_K, assert_png, make_run, metrics_table

from lookalike.exceptions import ConfigError
from lookalike.plots import (
    _silhouette_label,
    _spread_out,
    plot_elbow,
    plot_map,
    plot_pca_variance,
    plot_scores,
)


@pytest.fixture
def clustered_run(tmp_path):
    return make_run(tmp_path)


def test_plot_elbow_and_scores(tmp_path):
    m = pd.concat(
        [
            metrics_table(KNEE_K, KNEE_INERTIA),
            metrics_table(KNEE_K, KNEE_INERTIA, method="agglomerative"),
        ]
    )
    elbow = plot_elbow(m, tmp_path / "figs" / "elbow.png", knee=4, chosen=6)
    scores = plot_scores(m, tmp_path / "figs" / "scores.png", chosen=6)
    assert elbow == tmp_path / "figs" / "elbow.png"
    assert_png(elbow)
    arr = assert_png(scores)
    assert arr.shape[1] > arr.shape[0]  # three panels side by side
    # No knee: the plot says so instead of marking a line at the recommended k.
    line = metrics_table([2, 3, 4, 5, 6], [50.0, 40.0, 30.0, 20.0, 10.0])
    assert_png(plot_elbow(line, tmp_path / "figs" / "line.png", knee=None))
    assert not list((tmp_path / "figs").glob("*.tmp"))


def test_scores_name_the_space_of_each_silhouette(tmp_path):
    km = metrics_table(KNEE_K, KNEE_INERTIA).assign(silhouette_space="pca")
    fused = metrics_table(KNEE_K, KNEE_INERTIA, method="similarity")
    fused = fused.assign(silhouette_space="fused similarity")
    assert _silhouette_label(km, "kmeans") == "kmeans: PCA space"
    assert _silhouette_label(fused, "similarity") == "similarity: 1 - fused similarity"
    old = metrics_table(KNEE_K, KNEE_INERTIA)  # a metrics.csv from before the column
    assert _silhouette_label(old, "kmeans") == "kmeans: PCA space"
    assert_png(plot_scores(pd.concat([km, fused]), tmp_path / "scores.png"))


def test_variance_and_maps(clustered_run):
    assert_png(plot_pca_variance(clustered_run))
    pca_map = plot_map(clustered_run, 3, projection="pca", max_thumbnails=10)
    assert pca_map.name == "map_pca_k3.png"
    assert_png(pca_map, min_size=(500, 400))
    tsne_map = plot_map(clustered_run, 3, projection="tsne", max_points=12, random_state=0)
    assert_png(tsne_map, min_size=(500, 400))
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
