"""Stage 04: PCA, the KMeans sweep, agglomerative clustering and folder export (no model)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from blobs import blobs as _blobs
from sklearn.metrics import adjusted_rand_score

from lookalike import cluster, storage
from lookalike.cluster import (
    CLUSTERS_COLUMNS,
    METRICS_COLUMNS,
    agglomerative_labels,
    agglomerative_sweep,
    cluster_run,
    cluster_scores,
)
from lookalike.exceptions import ConfigError
from lookalike.neighbors import l2_normalize
from lookalike.paths import RunLayout
from lookalike.similarity import similarity_matrix

SCORES = ["inertia", "silhouette", "davies_bouldin", "calinski_harabasz", "seconds"]


def _write_embeddings(run, X):
    ids = pd.DataFrame({"image_id": [f"{i:064x}" for i in range(len(X))]})
    vec_path, ids_path = storage.embeddings_paths(run)
    vec_path.parent.mkdir(parents=True, exist_ok=True)
    np.save(vec_path, X)
    storage.write_table(ids, ids_path)
    return ids


# -- fit_pca ------------------------------------------------------------------------------


# -- k values and the algorithm -------------------------------------------------------------


# -- scores ---------------------------------------------------------------------------------


# -- kmeans_sweep -------------------------------------------------------------------------


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
    params = storage.read_stamp(RunLayout(tmp_path).cluster_state)["key"]
    assert params["k_values"] == [3, 4] and params["algorithm"] == "kmeans"

    _write_embeddings(tmp_path, X[:-5])  # new embeddings: recomputed
    cluster_run(tmp_path, **{**kw, "k_values": [3, 4]})
    assert "skipped" not in capsys.readouterr().out
    assert len(pd.read_parquet(tmp_path / "clusters.parquet")) == 2 * 2 * (len(X) - 5)


def test_cluster_run_above_agglomerative_max_takes_the_graph_path(tmp_path, capsys):
    X, truth = _blobs()
    _write_embeddings(tmp_path, X)
    dense = cluster_run(tmp_path, k_values=[2, 4], progress=False)
    dense_table = pd.read_parquet(tmp_path / "clusters.parquet")
    dense_nb = pd.read_parquet(tmp_path / "neighbors.parquet")
    metrics = cluster_run(tmp_path, k_values=[2, 4], agglomerative_max=50, progress=False)
    assert "skipped" not in capsys.readouterr().out
    ag = metrics[metrics["method"] == "agglomerative"]
    assert ag["estimator"].str.contains("kNN graph").all() and ag["n_clusters"].tolist() == [2, 4]
    assert list(metrics.columns) == list(dense.columns)
    table = pd.read_parquet(tmp_path / "clusters.parquet")
    assert list(table.columns) == CLUSTERS_COLUMNS and len(table) == len(dense_table)
    assert dict(table.dtypes) == dict(dense_table.dtypes)
    at4 = table[(table["method"] == "agglomerative") & (table["k"] == 4)]["cluster"]
    assert adjusted_rand_score(truth, at4) == pytest.approx(1.0)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "neighbors.parquet"), dense_nb)
    # the graph's cosine kNN is kept beside Z, for 05's near-duplicates
    from lookalike.duplicates import DUP_MAX_LINKS
    from lookalike.neighbors import nearest_neighbors
    from lookalike.reduce import read_pca_neighbours, read_reduced

    knn_index, knn_sim = read_pca_neighbours(tmp_path)
    want = nearest_neighbors(read_reduced(tmp_path)[1], k=DUP_MAX_LINKS)
    assert np.array_equal(knn_index, want[0]) and np.allclose(knn_sim, want[1])
    # other linkages have no graph tree: skipped there, with a message
    metrics = cluster_run(
        tmp_path, k_values=[2, 3], agglomerative_max=50, agglomerative_linkage="single",
        progress=False,
    )  # fmt: skip
    assert "agglomerative: skipped: 80 images > agglomerative_max=50" in capsys.readouterr().out
    assert set(metrics["method"]) == {"kmeans"}
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


def test_similarity_clusters_are_deterministic_and_find_blocks():
    rng = np.random.default_rng(1)
    centres = l2_normalize(rng.normal(size=(4, 32)))
    labels_true = np.repeat(np.arange(4), 6)
    x = l2_normalize(centres[labels_true] + 0.08 * rng.normal(size=(24, 32)))
    perm = rng.permutation(24)
    x, labels_true = x[perm], labels_true[perm]
    S = similarity_matrix(x)
    a = cluster.similarity_clusters(S, n_clusters=4)
    b = cluster.similarity_clusters(S.copy(), n_clusters=4)
    np.testing.assert_array_equal(a, b)
    assert a[0] == 0 and set(a) == {0, 1, 2, 3}
    # the same partition as the truth (labels may be renamed)
    pairs = {(int(t), int(c)) for t, c in zip(labels_true, a, strict=True)}
    assert len(pairs) == 4
    t = cluster.similarity_clusters(S, distance_threshold=0.5)
    assert len(set(t)) == 4
    with pytest.raises(ConfigError, match="exactly one"):
        cluster.similarity_clusters(S)
    with pytest.raises(ConfigError, match="n_clusters=99"):
        cluster.similarity_clusters(S, n_clusters=99)


def test_merge_tree_is_scipy_average_linkage_of_either_distance():
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import pdist, squareform

    X, _ = _blobs(n_per=6, centers=3)
    D = cluster.cosine_distances(X)
    np.testing.assert_array_equal(D, np.clip(pdist(X, metric="cosine"), 0.0, 2.0))
    np.testing.assert_array_equal(cluster.merge_tree(D), linkage(D, method="average"))
    S = (X @ X.T).astype(np.float64)
    Ds = cluster.similarity_distances(S)
    want = np.clip(1.0 - (S + S.T) / 2.0, 0.0, None)
    np.fill_diagonal(want, 0.0)
    np.testing.assert_array_equal(Ds, squareform(want, checks=False))
    assert cluster.merge_tree(Ds, linkage="single").shape == (len(X) - 1, 4)
    with pytest.raises(ConfigError, match="linkage='ward'"):
        cluster.merge_tree(D, linkage="ward")
    with pytest.raises(ConfigError, match="max_samples=5"):
        cluster.similarity_distances(S, max_samples=5)


def _outputs(run) -> dict[str, bytes]:
    layout = RunLayout(run)
    out = {p.name: p.read_bytes() for p in (layout.clusters, layout.pca, layout.neighbors)}
    out["metrics"] = pd.read_csv(layout.metrics).drop(columns="seconds").to_csv().encode()
    return out


@pytest.mark.parametrize("kill_at", [1, 2, 3, 4, 5])
def test_a_kill_at_any_write_then_a_rerun_equals_a_clean_run(tmp_path, monkeypatch, kill_at):
    """Killed before its Nth file write (with other parameters than the last run's), then
    run again with the first parameters: every output equals an uninterrupted run's."""
    X, _ = _blobs(centers=4, spread=0.25, seed=3)
    kw = {"pca_components": 8, "k_values": [3, 5], "random_state": 1, "progress": False}
    clean, run = tmp_path / "clean", tmp_path / "run"
    for r in (clean, run):
        _write_embeddings(r, X)
    cluster_run(clean, **kw)
    cluster_run(run, **kw)
    real, calls = storage.atomic_path, []

    def dying(path):
        calls.append(path)
        if len(calls) == kill_at:
            raise SystemExit("killed")
        return real(path)

    monkeypatch.setattr(storage, "atomic_path", dying)
    with pytest.raises(SystemExit):
        cluster_run(run, **{**kw, "k_values": [3, 4]})
    monkeypatch.setattr(storage, "atomic_path", real)
    cluster_run(run, **kw)
    assert _outputs(run) == _outputs(clean)


# -- scores in each method's own space -------------------------------------------------------


def _logo_run(run: RunLayout, n_per=20, centers=4, seed=5):
    """RUN/embeddings/ of a labelled ``logos`` run as stage 03 leaves it (no model).

    The fused similarity sees what the vectors do not: parts that repeat the whole, and
    brand colours.
    """
    from lookalike.similarity import resolve_preset

    X, truth = _blobs(n_per=n_per, centers=centers, spread=0.1, seed=seed)
    rng = np.random.default_rng(seed)
    n = len(X)
    mask = rng.random((n, 2)) < 0.4
    parts = X[:, None, :] + rng.normal(scale=0.3, size=(n, 2, X.shape[1]))
    colour = np.abs(rng.normal(size=(centers, 512)))[truth] + rng.random((n, 512))
    colour = l2_normalize(colour)  # as colour_signature gives
    _write_embeddings(run, X)
    np.save(run.parts, np.where(mask[..., None], parts, 0).astype(np.float32))
    np.save(run.part_mask, mask)
    np.save(run.colour, colour.astype(np.float32))
    storage.write_stamp(run.similarity_state, {"settings": resolve_preset("logos")})
    return truth


@pytest.mark.parametrize("agglomerative_max", [None, 50])  # the dense tree, the kNN graph's
def test_similarity_silhouette_is_computed_on_one_minus_the_fused_similarity(
    tmp_path, agglomerative_max
):
    from sklearn.metrics import silhouette_score

    from lookalike.kmeans import silhouette_rows
    from lookalike.similarity import fused_inputs, load_features
    from lookalike.space import run_whitener

    run = RunLayout(tmp_path / "run")
    _logo_run(run)
    kw = {"pca_components": 10, "k_values": [2, 4, 6], "silhouette_sample": 50}
    metrics = cluster_run(
        run, random_state=3, agglomerative_max=agglomerative_max, progress=False, **kw
    )
    assert list(metrics.columns) == METRICS_COLUMNS
    space = metrics.groupby("method")["silhouette_space"].unique().map(list).to_dict()
    assert space == {
        "kmeans": ["pca"], "agglomerative": ["pca"], "similarity": ["fused similarity"]
    }  # fmt: skip
    sim = metrics[metrics["method"] == "similarity"].set_index("k")
    assert sim["estimator"].str.contains("kNN graph").all() == (agglomerative_max == 50)
    assert (sim["silhouette_n"] == 50).all()

    # Recompute by hand: the seeded sample of 50 of the 80 images, 1 - fused similarity.
    features = load_features(run)
    inputs = fused_inputs(features, whitener=run_whitener(run, features, random_state=3))
    rows = silhouette_rows(80, 50, 3)
    D = np.clip(1.0 - similarity_matrix(**inputs)[np.ix_(rows, rows)], 0.0, None)
    np.fill_diagonal(D, 0.0)
    table = pd.read_parquet(run.clusters).query("method == 'similarity'")
    with np.load(run.pca) as f:
        Z = f["Z"]
    for k in (2, 4, 6):
        labels = table[table["k"] == k]["cluster"].to_numpy()
        own = silhouette_score(D, labels[rows], metric="precomputed")
        assert sim.loc[k, "silhouette"] == pytest.approx(own, abs=1e-5)
        in_pca, _ = cluster_scores(Z, labels, silhouette_sample=50, random_state=3)
        assert abs(in_pca["silhouette"] - own) > 1e-3  # a different number than before
        assert in_pca["silhouette_space"] == "pca"
        for col in ("inertia", "davies_bouldin", "calinski_harabasz"):  # still in PCA space
            assert sim.loc[k, col] == pytest.approx(in_pca[col], rel=1e-6)
