"""Stage 04: PCA and the KMeans sweep, on synthetic blobs (no model needed)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from lookalike import io
from lookalike.cluster import (
    CLUSTERS_COLUMNS,
    METRICS_COLUMNS,
    clip_k_values,
    cluster_run,
    fit_pca,
    kmeans_sweep,
)
from lookalike.exceptions import ConfigError


def _blobs(n_per=20, centers=4, dim=64, seed=0, spread=0.05):
    """Unit-norm vectors around ``centers`` random directions, like pooled VGG16 features."""
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centers, dim))
    X = np.repeat(c, n_per, axis=0) + rng.normal(
        scale=spread * np.sqrt(dim), size=(n_per * centers, dim)
    )
    truth = np.repeat(np.arange(centers), n_per)
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32), truth


def _write_embeddings(run, X):
    ids = pd.DataFrame({"image_id": [f"{i:064x}" for i in range(len(X))]})
    vec_path, ids_path = io.embeddings_paths(run)
    vec_path.parent.mkdir(parents=True, exist_ok=True)
    np.save(vec_path, X)
    io.write_table(ids, ids_path)
    return ids


# -- fit_pca ------------------------------------------------------------------------------


def test_pca_clips_int_components():
    X, _ = _blobs(n_per=5, centers=3)  # 15 samples, 64 features
    Z, pca = fit_pca(X, n_components=100)
    assert Z.shape == (15, 15) and pca.n_components_ == 15
    assert Z.dtype == np.float32


def test_pca_float_is_variance_fraction():
    X, _ = _blobs()
    Z, pca = fit_pca(X, n_components=0.9)
    assert pca.explained_variance_ratio_.sum() >= 0.9
    assert Z.shape[1] == pca.n_components_ < X.shape[1]


def test_pca_whiten_gives_unit_variance():
    X, _ = _blobs()
    Z, _ = fit_pca(X, n_components=5, whiten=True)
    np.testing.assert_allclose(Z.var(axis=0, ddof=1), 1.0, rtol=1e-3)


@pytest.mark.parametrize("bad", [0, -3, 1.5, 0.0])
def test_pca_bad_components(bad):
    X, _ = _blobs()
    with pytest.raises(ConfigError, match="n_components"):
        fit_pca(X, n_components=bad)


# -- clip_k_values ------------------------------------------------------------------------


def test_clip_k_values_warns_about_dropped():
    with pytest.warns(UserWarning, match=r"\[0, 1, 10, 12\]"):
        assert clip_k_values([5, 1, 3, 3, 12, 0, 10, 2], n_samples=10) == [2, 3, 5]


def test_clip_k_values_silent_when_all_valid():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert clip_k_values(range(2, 6), n_samples=50) == [2, 3, 4, 5]


# -- kmeans_sweep -------------------------------------------------------------------------


def test_sweep_finds_the_blobs_and_scores_are_finite():
    X, truth = _blobs()
    Z, _ = fit_pca(X, n_components=10)
    metrics, labels = kmeans_sweep(Z, [2, 3, 4, 5, 6], progress=False)
    assert list(metrics.columns) == METRICS_COLUMNS
    assert metrics["k"].tolist() == [2, 3, 4, 5, 6]
    assert (metrics["method"] == "kmeans").all()
    assert np.isfinite(metrics[METRICS_COLUMNS[2:]].to_numpy(dtype=float)).all()
    assert metrics["inertia"].is_monotonic_decreasing
    assert metrics.loc[metrics["silhouette"].idxmax(), "k"] == 4
    lab, dist = labels[4]
    assert adjusted_rand_score(truth, lab) == pytest.approx(1.0)
    assert lab.shape == dist.shape == (80,) and (dist >= 0).all()


def test_sweep_is_deterministic_for_a_seed():
    X, _ = _blobs(centers=6, spread=0.3, seed=3)  # overlapping: restarts matter
    m1, l1 = kmeans_sweep(X, [3, 5], random_state=7, progress=False)
    m2, l2 = kmeans_sweep(X, [3, 5], random_state=7, progress=False)
    for k in (3, 5):
        np.testing.assert_array_equal(l1[k][0], l2[k][0])
        np.testing.assert_array_equal(l1[k][1], l2[k][1])
    pd.testing.assert_frame_equal(m1.drop(columns="seconds"), m2.drop(columns="seconds"))


def test_sweep_clips_k():
    X, _ = _blobs(n_per=2, centers=3)  # 6 samples
    with pytest.warns(UserWarning, match="dropped"):
        metrics, labels = kmeans_sweep(X, [1, 2, 5, 6, 40], progress=False)
    assert metrics["k"].tolist() == [2, 5] and sorted(labels) == [2, 5]


def test_silhouette_sampling_is_seeded():
    X, _ = _blobs(n_per=40)
    a, _ = kmeans_sweep(X, [4], silhouette_sample=50, random_state=1, progress=False)
    b, _ = kmeans_sweep(X, [4], silhouette_sample=50, random_state=1, progress=False)
    full, _ = kmeans_sweep(X, [4], random_state=1, progress=False)
    assert a["silhouette"].iloc[0] == b["silhouette"].iloc[0]
    assert a["silhouette"].iloc[0] != full["silhouette"].iloc[0]


# -- cluster_run --------------------------------------------------------------------------


def test_cluster_run_writes_outputs(tmp_path, capsys):
    X, truth = _blobs()
    ids = _write_embeddings(tmp_path, X)
    metrics = cluster_run(tmp_path, pca_components=10, k_values=[2, 4, 6], progress=False)
    assert "cluster: 80 images" in capsys.readouterr().out

    on_disk = pd.read_csv(tmp_path / "metrics.csv")
    assert list(on_disk.columns) == METRICS_COLUMNS and on_disk["k"].tolist() == [2, 4, 6]
    pd.testing.assert_frame_equal(on_disk, metrics, check_dtype=False)

    cl = pd.read_parquet(tmp_path / "clusters.parquet")
    assert list(cl.columns) == CLUSTERS_COLUMNS
    assert len(cl) == 80 * 3
    assert str(cl["k"].dtype) == "int64" and str(cl["cluster"].dtype) == "int64"
    assert str(cl["rank"].dtype) == "int64" and cl["distance"].dtype == np.float32
    for k, grp in cl.groupby("k"):
        assert grp["image_id"].tolist() == ids["image_id"].tolist()
        assert grp["cluster"].nunique() == k
        for _, members in grp.groupby("cluster"):  # rank 0 is nearest, ranks are 0..n-1
            ordered = members.sort_values("rank")
            assert ordered["rank"].tolist() == list(range(len(members)))
            assert ordered["distance"].is_monotonic_increasing
    at4 = cl[cl["k"] == 4]
    assert adjusted_rand_score(truth, at4["cluster"]) == pytest.approx(1.0)

    with np.load(tmp_path / "pca.npz") as f:
        assert f["Z"].shape == (80, 10) and f["coords2d"].shape == (80, 2)
        np.testing.assert_array_equal(f["coords2d"], f["Z"][:, :2])
        assert f["explained_variance_ratio"].shape == (10,)
        assert f["image_id"].tolist() == ids["image_id"].tolist()


def test_cluster_run_is_deterministic_and_resumes(tmp_path, capsys):
    X, _ = _blobs(centers=5, spread=0.25, seed=4)
    _write_embeddings(tmp_path, X)
    kw = {"pca_components": 8, "k_values": [3, 5], "random_state": 2, "progress": False}
    cluster_run(tmp_path, **kw)
    first = pd.read_parquet(tmp_path / "clusters.parquet")
    stamp = (tmp_path / "clusters.parquet").stat().st_mtime_ns
    capsys.readouterr()

    cluster_run(tmp_path, **kw)  # same inputs and params: skipped
    assert "skipped" in capsys.readouterr().out
    assert (tmp_path / "clusters.parquet").stat().st_mtime_ns == stamp

    cluster_run(tmp_path, force=True, **kw)  # recomputed, same answer
    assert "skipped" not in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "clusters.parquet"), first)

    cluster_run(tmp_path, **{**kw, "k_values": [3, 4]})  # new params: recomputed
    assert sorted(pd.read_parquet(tmp_path / "clusters.parquet")["k"].unique()) == [3, 4]
    params = json.loads((tmp_path / "cluster_params.json").read_text())
    assert params["k_values"] == [3, 4]

    _write_embeddings(tmp_path, X[:-5])  # new embeddings: recomputed
    cluster_run(tmp_path, **{**kw, "k_values": [3, 4]})
    assert "skipped" not in capsys.readouterr().out
    assert len(pd.read_parquet(tmp_path / "clusters.parquet")) == 2 * (len(X) - 5)


def test_cluster_run_rejects_non_finite(tmp_path):
    X, _ = _blobs()
    X[3, 0] = np.nan
    _write_embeddings(tmp_path, X)
    with pytest.raises(ConfigError, match="NaN"):
        cluster_run(tmp_path, k_values=[2, 3], progress=False)


def test_cluster_run_without_usable_k(tmp_path):
    X, _ = _blobs(n_per=1, centers=3)  # 3 images: only k=2 is possible
    _write_embeddings(tmp_path, X)
    with pytest.warns(UserWarning), pytest.raises(ConfigError, match="no usable k"):
        cluster_run(tmp_path, k_values=[3, 5], progress=False)
