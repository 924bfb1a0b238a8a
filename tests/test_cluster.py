"""Stage 04: PCA, the KMeans sweep, agglomerative clustering and folder export (no model)."""

from __future__ import annotations

import json
import os
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import adjusted_rand_score

from lookalike import cluster, storage
from lookalike.cluster import (
    CLUSTERS_COLUMNS,
    METRICS_COLUMNS,
    agglomerative_labels,
    agglomerative_sweep,
    choose_algorithm,
    clip_k_values,
    cluster_run,
    cluster_scores,
    export_cluster_folders,
    fit_pca,
    kmeans_sweep,
    relabel_by_size,
)
from lookalike.exceptions import ConfigError

SCORES = ["inertia", "silhouette", "davies_bouldin", "calinski_harabasz", "seconds"]


def _blobs(n_per=20, centers=4, dim=64, seed=0, spread=0.05):
    """Unit-norm vectors around ``centers`` random directions, like pooled VGG16 features.

    ``n_per`` may be a list (uneven cluster sizes).
    """
    rng = np.random.default_rng(seed)
    sizes = [n_per] * centers if np.isscalar(n_per) else list(n_per)
    c = rng.normal(size=(len(sizes), dim))
    truth = np.repeat(np.arange(len(sizes)), sizes)
    X = c[truth] + rng.normal(scale=spread * np.sqrt(dim), size=(len(truth), dim))
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32), truth


def _write_embeddings(run, X):
    ids = pd.DataFrame({"image_id": [f"{i:064x}" for i in range(len(X))]})
    vec_path, ids_path = storage.embeddings_paths(run)
    vec_path.parent.mkdir(parents=True, exist_ok=True)
    np.save(vec_path, X)
    storage.write_table(ids, ids_path)
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


# -- k values and the algorithm -------------------------------------------------------------


def test_default_k_values_are_the_seed_list():
    assert cluster.DEFAULT_K_VALUES == (3, 5, 10, 20, 50, 70, 100, 200, 300, 400, 500, 600, 700,
                                        800, 900, 1000)  # fmt: skip
    with pytest.warns(UserWarning, match="dropped"):
        assert clip_k_values(cluster.DEFAULT_K_VALUES, 250) == [3, 5, 10, 20, 50, 70, 100, 200]


def test_clip_k_values_warns_about_dropped():
    with pytest.warns(UserWarning, match=r"\[0, 1, 10, 12\]"):
        assert clip_k_values([5, 1, 3, 3, 12, 0, 10, 2], n_samples=10) == [2, 3, 5]


def test_clip_k_values_silent_when_all_valid():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert clip_k_values(range(2, 6), n_samples=50) == [2, 3, 4, 5]


def test_choose_algorithm_switches_above_the_measured_size():
    n = cluster.MINIBATCH_ABOVE
    assert choose_algorithm("auto", n) == "kmeans"
    assert choose_algorithm("auto", n + 1) == "minibatch"
    assert choose_algorithm("kmeans", 10 * n) == "kmeans"
    assert choose_algorithm("minibatch", 10) == "minibatch"
    with pytest.raises(ConfigError, match="'faiss'"):
        choose_algorithm("faiss", 10)


def test_relabel_by_size_puts_the_largest_first():
    labels = np.array([7, 3, 3, 9, 3, 9, 7, 9, 9])
    np.testing.assert_array_equal(relabel_by_size(labels), [2, 1, 1, 0, 1, 0, 2, 0, 0])
    np.testing.assert_array_equal(relabel_by_size(np.array([1, 0])), [0, 1])  # ties: first seen


# -- scores ---------------------------------------------------------------------------------


def test_cluster_scores_distances_and_undefined_scores():
    Z = np.array([[0, 0], [2, 0], [10, 10], [10, 12]], dtype=np.float32)
    scores, dist = cluster_scores(Z, np.array([0, 0, 1, 1]))
    np.testing.assert_allclose(dist, [1, 1, 1, 1])  # each is 1 from its cluster's mean
    assert scores["inertia"] == pytest.approx(4.0)
    assert scores["n_clusters"] == 2 and scores["silhouette_n"] == 4
    assert all(np.isfinite(scores[s]) for s in SCORES[:4])
    one, _ = cluster_scores(Z, np.zeros(4, dtype=int))  # one cluster: scores undefined
    assert np.isnan(one["silhouette"]) and np.isnan(one["davies_bouldin"])
    assert one["inertia"] > 0


def test_silhouette_sampling_is_seeded():
    X, _ = _blobs(n_per=40)
    a, _ = kmeans_sweep(X, [4], silhouette_sample=50, random_state=1, progress=False)
    b, _ = kmeans_sweep(X, [4], silhouette_sample=50, random_state=1, progress=False)
    full, _ = kmeans_sweep(X, [4], random_state=1, progress=False)
    assert a["silhouette"].iloc[0] == b["silhouette"].iloc[0]
    assert a["silhouette"].iloc[0] != full["silhouette"].iloc[0]
    assert a["silhouette_n"].iloc[0] == 50 and full["silhouette_n"].iloc[0] == 160


# -- kmeans_sweep -------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["kmeans", "minibatch"])
def test_sweep_finds_the_blobs_and_scores_are_finite(algorithm):
    X, truth = _blobs(n_per=[30, 20, 25, 15])
    Z, _ = fit_pca(X, n_components=10)
    metrics, labels = kmeans_sweep(Z, [2, 3, 4, 5, 6], algorithm=algorithm, progress=False)
    assert list(metrics.columns) == METRICS_COLUMNS
    assert metrics["k"].tolist() == [2, 3, 4, 5, 6]
    assert (metrics["method"] == "kmeans").all()
    name = {"kmeans": "KMeans", "minibatch": "MiniBatchKMeans"}[algorithm]
    assert (metrics["estimator"] == name).all()
    assert np.isfinite(metrics[SCORES].to_numpy(dtype=float)).all()
    assert metrics["inertia"].is_monotonic_decreasing
    assert metrics.loc[metrics["silhouette"].idxmax(), "k"] == 4
    lab, dist = labels[4]
    assert adjusted_rand_score(truth, lab) == pytest.approx(1.0)
    assert np.bincount(lab).tolist() == [30, 25, 20, 15]  # cluster 0 is the largest
    assert lab.shape == dist.shape == (90,) and (dist >= 0).all()
    # distance is to the fitted centroid: the mean of the cluster once KMeans has converged
    centre = Z[lab == 0].mean(axis=0)
    if algorithm == "kmeans":
        np.testing.assert_allclose(dist[lab == 0], np.linalg.norm(Z[lab == 0] - centre, axis=1),
                                   rtol=1e-3, atol=1e-4)  # fmt: skip


@pytest.mark.parametrize("algorithm", ["kmeans", "minibatch"])
def test_sweep_is_deterministic_for_a_seed(algorithm):
    X, _ = _blobs(centers=6, spread=0.3, seed=3)  # overlapping: restarts matter
    m1, l1 = kmeans_sweep(X, [3, 5], algorithm=algorithm, random_state=7, progress=False)
    m2, l2 = kmeans_sweep(X, [3, 5], algorithm=algorithm, random_state=7, progress=False)
    for k in (3, 5):
        np.testing.assert_array_equal(l1[k][0], l2[k][0])
        np.testing.assert_array_equal(l1[k][1], l2[k][1])
    pd.testing.assert_frame_equal(m1.drop(columns="seconds"), m2.drop(columns="seconds"))


def test_sweep_clips_k():
    X, _ = _blobs(n_per=2, centers=3)  # 6 samples
    with pytest.warns(UserWarning, match="dropped"):
        metrics, labels = kmeans_sweep(X, [1, 2, 5, 6, 40], progress=False)
    assert metrics["k"].tolist() == [2, 5] and sorted(labels) == [2, 5]


# -- agglomerative --------------------------------------------------------------------------


def _directions(sizes=(12, 8, 5), dim=32, seed=1, jitter=0.02, lengths=True):
    """Groups that share a direction but not a length: cosine sees them, Euclidean not."""
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(len(sizes)), sizes)
    d = rng.normal(size=(len(sizes), dim))
    X = d[truth] + rng.normal(scale=jitter * np.sqrt(dim), size=(len(truth), dim))
    if lengths:
        X *= rng.uniform(0.2, 5.0, size=(len(truth), 1))  # lengths vary 25-fold
    return X.astype(np.float32), truth


def test_agglomerative_groups_by_cosine_direction():
    X, truth = _directions()
    labels = agglomerative_labels(X, n_clusters=3)
    assert adjusted_rand_score(truth, labels) == pytest.approx(1.0)
    assert np.bincount(labels).tolist() == [12, 8, 5]
    # the same cut from a threshold between the within- and between-group distances
    cut = agglomerative_labels(X, distance_threshold=0.3)
    np.testing.assert_array_equal(cut, labels)


def test_agglomerative_sweep_scores_like_kmeans():
    X, truth = _directions()
    with pytest.warns(UserWarning, match=r"dropped k=\[30\]"):
        metrics, labels = agglomerative_sweep(X, [2, 3, 4, 30], progress=False)
    assert metrics["k"].tolist() == [2, 3, 4]  # 30 >= n is dropped
    assert (metrics["method"] == "agglomerative").all()
    assert (metrics["estimator"] == "average-linkage cosine").all()
    assert list(metrics.columns) == METRICS_COLUMNS
    assert np.isfinite(metrics[SCORES].to_numpy(dtype=float)).all()
    np.testing.assert_array_equal(labels[3][0], agglomerative_labels(X, n_clusters=3))
    # the same score function as KMeans: distance to the mean of the cluster
    lab, dist = labels[3]
    ref, ref_dist = cluster_scores(X, lab)
    np.testing.assert_allclose(dist, ref_dist)
    assert metrics.loc[metrics["k"] == 3, "inertia"].item() == pytest.approx(ref["inertia"])
    thr, tl = agglomerative_sweep(X, None, distance_threshold=0.3, progress=False)
    assert thr["k"].tolist() == [3] and sorted(tl) == [3]


def test_agglomerative_refuses_above_its_cap():
    X, _ = _directions()
    with pytest.raises(ConfigError, match=r"25 images.*max_samples=10.*agglomerative_max"):
        agglomerative_labels(X, n_clusters=3, max_samples=10)
    with pytest.raises(ConfigError, match="linkage='ward'"):
        agglomerative_labels(X, n_clusters=3, linkage="ward")
    with pytest.raises(ConfigError, match="exactly one"):
        agglomerative_labels(X)


# -- cluster_run --------------------------------------------------------------------------


def test_cluster_run_writes_outputs(tmp_path, capsys):
    X, truth = _blobs()
    ids = _write_embeddings(tmp_path, X)
    metrics = cluster_run(tmp_path, pca_components=10, k_values=[2, 4, 6], progress=False)
    out = capsys.readouterr().out
    assert "cluster: 80 images" in out and "3 kmeans + 3 agglomerative" in out

    on_disk = pd.read_csv(tmp_path / "metrics.csv")
    assert list(on_disk.columns) == METRICS_COLUMNS
    assert on_disk["method"].tolist() == ["kmeans"] * 3 + ["agglomerative"] * 3
    assert on_disk["k"].tolist() == [2, 4, 6] * 2
    pd.testing.assert_frame_equal(on_disk, metrics, check_dtype=False)
    assert np.isfinite(on_disk[SCORES].to_numpy(dtype=float)).all()

    cl = pd.read_parquet(tmp_path / "clusters.parquet")
    assert list(cl.columns) == CLUSTERS_COLUMNS
    assert len(cl) == 80 * 3 * 2
    assert str(cl["k"].dtype) == "int64" and str(cl["cluster"].dtype) == "int64"
    assert str(cl["rank"].dtype) == "int64" and cl["distance"].dtype == np.float32
    for (_, k), grp in cl.groupby(["method", "k"]):
        assert grp["image_id"].tolist() == ids["image_id"].tolist()
        assert grp["cluster"].nunique() == k
        for _, members in grp.groupby("cluster"):  # rank 0 is nearest, ranks are 0..n-1
            ordered = members.sort_values("rank")
            assert ordered["rank"].tolist() == list(range(len(members)))
            assert ordered["distance"].is_monotonic_increasing
    for method in ("kmeans", "agglomerative"):
        at4 = cl[(cl["k"] == 4) & (cl["method"] == method)]
        assert adjusted_rand_score(truth, at4["cluster"]) == pytest.approx(1.0)

    with np.load(tmp_path / "pca.npz") as f:
        assert f["Z"].shape == (80, 10) and f["coords2d"].shape == (80, 2)
        np.testing.assert_array_equal(f["coords2d"], f["Z"][:, :2])
        assert f["explained_variance_ratio"].shape == (10,)
        assert f["image_id"].tolist() == ids["image_id"].tolist()
    assert not (tmp_path / "clusters").exists()  # export_folders defaults to none


def test_cluster_run_is_deterministic_and_resumes(tmp_path, capsys):
    X, _ = _blobs(centers=5, spread=0.25, seed=4)
    _write_embeddings(tmp_path, X)
    kw = {"pca_components": 8, "k_values": [3, 5], "random_state": 2, "progress": False}
    cluster_run(tmp_path, **kw)
    first = pd.read_parquet(tmp_path / "clusters.parquet")
    first_bytes = (tmp_path / "clusters.parquet").read_bytes()
    stamp = (tmp_path / "clusters.parquet").stat().st_mtime_ns
    capsys.readouterr()

    cluster_run(tmp_path, **kw)  # same inputs and params: skipped
    assert "skipped" in capsys.readouterr().out
    assert (tmp_path / "clusters.parquet").stat().st_mtime_ns == stamp

    cluster_run(tmp_path, force=True, **kw)  # recomputed, same answer, same bytes
    assert "skipped" not in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "clusters.parquet"), first)
    assert (tmp_path / "clusters.parquet").read_bytes() == first_bytes

    cluster_run(tmp_path, **{**kw, "k_values": [3, 4]})  # new params: recomputed
    assert sorted(pd.read_parquet(tmp_path / "clusters.parquet")["k"].unique()) == [3, 4]
    params = json.loads((tmp_path / "cluster_params.json").read_text())
    assert params["k_values"] == [3, 4] and params["algorithm"] == "kmeans"

    _write_embeddings(tmp_path, X[:-5])  # new embeddings: recomputed
    cluster_run(tmp_path, **{**kw, "k_values": [3, 4]})
    assert "skipped" not in capsys.readouterr().out
    assert len(pd.read_parquet(tmp_path / "clusters.parquet")) == 2 * 2 * (len(X) - 5)


def test_cluster_run_skips_agglomerative_above_its_cap(tmp_path, capsys):
    X, _ = _blobs()
    _write_embeddings(tmp_path, X)
    metrics = cluster_run(tmp_path, k_values=[2, 3], agglomerative_max=50, progress=False)
    assert "agglomerative: skipped: 80 images > agglomerative_max=50" in capsys.readouterr().out
    assert set(metrics["method"]) == {"kmeans"}
    assert set(pd.read_parquet(tmp_path / "clusters.parquet")["method"]) == {"kmeans"}
    cluster_run(tmp_path, k_values=[2, 3], agglomerative=False, progress=False)
    assert "agglomerative" not in capsys.readouterr().out


def test_cluster_run_agglomerative_threshold(tmp_path):
    # cluster_run works on centred PCA vectors: groups of unit vectors stay apart there.
    X, truth = _directions(lengths=False)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    _write_embeddings(tmp_path, X)
    metrics = cluster_run(tmp_path, k_values=[2, 5], agglomerative_threshold=0.3, progress=False)
    ag = metrics[metrics["method"] == "agglomerative"]
    assert ag["k"].tolist() == [3] and ag["n_clusters"].tolist() == [3]
    cl = pd.read_parquet(tmp_path / "clusters.parquet")
    at3 = cl[(cl["method"] == "agglomerative") & (cl["k"] == 3)]
    assert adjusted_rand_score(truth, at3["cluster"]) == pytest.approx(1.0)


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


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"export_folders": "hardlink"}, "export_folders='hardlink'"),
        ({"algorithm": "elkan"}, "algorithm='elkan'"),
        ({"agglomerative_linkage": "ward"}, "agglomerative_linkage='ward'"),
    ],
)
def test_cluster_run_bad_options(tmp_path, kw, match):
    X, _ = _blobs()
    _write_embeddings(tmp_path, X)
    with pytest.raises(ConfigError, match=match):
        cluster_run(tmp_path, k_values=[2, 3], progress=False, **kw)
    assert not (tmp_path / "metrics.csv").exists()


# -- export_folders -------------------------------------------------------------------------


@pytest.fixture
def image_run(tmp_path):
    """12 images in 3 colour groups: half inside the run, half in the user's own folder."""
    run, user = tmp_path / "run", tmp_path / "my photos"
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16))
    rows, vecs = [], []
    for i in range(12):
        folder, rel = (run / "images", f"images/{i}.png") if i % 2 else (user, None)
        folder.mkdir(parents=True, exist_ok=True)
        p = folder / f"{i}.png"
        Image.new("RGB", (8, 8), (40 * i, 255 - 20 * i, 90)).save(p)
        rows.append(
            {"image_id": storage.sha256_file(p), "path": rel or str(p), "source": "folder",
             "origin": str(i), "status": "ok"}
        )  # fmt: skip
        vecs.append(centres[i % 3] + rng.normal(scale=0.05, size=16))
    manifest = storage.merge_manifest(run, pd.DataFrame(rows))
    vec_path, ids_path = storage.embeddings_paths(run)
    vec_path.parent.mkdir(parents=True)
    np.save(vec_path, np.asarray(vecs, dtype=np.float32))
    storage.write_table(manifest[["image_id", "path"]], ids_path)
    return run, user


def _snapshot(paths):
    return {p: (p.stat().st_mtime_ns, p.stat().st_size, storage.sha256_file(p)) for p in paths}


def test_export_symlinks_touch_no_original(image_run, capsys):
    run, user = image_run
    originals = sorted(user.glob("*.png")) + sorted((run / "images").glob("*.png"))
    before = _snapshot(originals)
    cluster_run(run, pca_components=4, k_values=[2, 3], export_folders="symlink", progress=False)
    assert "export: 4 clusterings, 48 links" in capsys.readouterr().out

    cl = pd.read_parquet(run / "clusters.parquet")
    manifest = storage.read_manifest(run).set_index("image_id")
    links = sorted((run / "clusters").rglob("*.png"))
    assert len(links) == 12 * 4
    for k in (2, 3):
        kmeans = run / "clusters" / f"k_{k}"
        assert sorted(p.name for p in kmeans.iterdir()) == [f"cluster_{c}" for c in range(k)]
        assert (run / "clusters" / "agglomerative" / f"k_{k}").is_dir()
        for row in cl[(cl["k"] == k) & (cl["method"] == "kmeans")].itertuples():
            original = storage.image_abspath(run, manifest.loc[row.image_id, "path"])
            link = kmeans / f"cluster_{row.cluster}" / f"{row.rank:05d}_{original.name}"
            assert link.is_symlink() and link.resolve() == original.resolve()
            assert link.read_bytes() == original.read_bytes()
            # links into the run are relative (the run can move), into the user's folder absolute
            assert os.path.isabs(os.readlink(link)) == (user in original.parents)
    assert _snapshot(originals) == before  # nothing moved, rewritten or touched
    assert sorted(p for p in user.iterdir()) == sorted(p for p in before if p.parent == user)

    # Exporting again rebuilds the folders; removing the links leaves the originals.
    export_cluster_folders(run, mode="symlink", k_values=[2], methods=["kmeans"])
    assert len(list((run / "clusters" / "k_2").rglob("*.png"))) == 12
    shutil.rmtree(run / "clusters")
    assert _snapshot(originals) == before


def test_export_copy_and_none(image_run, capsys):
    run, user = image_run
    cluster_run(run, pca_components=4, k_values=[2], agglomerative=False, progress=False)
    before = _snapshot(sorted(user.glob("*.png")))
    assert export_cluster_folders(run, mode="none") is None
    assert not (run / "clusters").exists()
    out = export_cluster_folders(run, mode="copy")
    assert out == run / "clusters"
    copies = sorted(out.rglob("*.png"))
    assert len(copies) == 12 and not any(p.is_symlink() for p in copies)
    assert "12 copies" in capsys.readouterr().out
    assert _snapshot(sorted(user.glob("*.png"))) == before
    # a missing original is counted and skipped, never fatal
    next(user.glob("*.png")).unlink()
    export_cluster_folders(run, mode="symlink")
    assert "(1 images missing)" in capsys.readouterr().out
    assert len(list(out.rglob("*.png"))) == 11
