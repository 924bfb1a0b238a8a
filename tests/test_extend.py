"""Stage 04 for a run that grew: new images join the kept clusters (no model needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from blobs import blobs
from sklearn.metrics import adjusted_rand_score

from lookalike import storage
from lookalike.cluster import cluster_run
from lookalike.extend import ADDITIONS_COLUMNS, can_extend
from lookalike.paths import RunLayout
from lookalike.reduce import project
from lookalike.similarity import resolve_preset

K = [2, 4, 6]


def _write(run: RunLayout, X: np.ndarray, ids: list[str], extras: dict | None = None) -> None:
    """RUN/embeddings/ as stage 03 leaves it (vectors, ids and, for logos, the extras)."""
    run.embeddings_dir.mkdir(parents=True, exist_ok=True)
    np.save(run.vectors, X)
    storage.write_table(pd.DataFrame({"image_id": ids}), run.ids)
    if extras is not None:
        for path, key in ((run.parts, "parts"), (run.part_mask, "mask"), (run.colour, "colour")):
            np.save(path, extras[key])
        storage.write_stamp(run.similarity_state, {"settings": resolve_preset("logos")})


def _clusters(run: RunLayout) -> pd.DataFrame:
    table = pd.read_parquet(run.clusters).set_index(["method", "k", "image_id"])
    return table["cluster"].sort_index()


def _grown(tmp_path, *, extras=None, drop=12, seed=3):
    """A run clustered on all but ``drop`` images, then given all of them."""
    X, truth = blobs(n_per=20, centers=4, seed=seed)
    ids = [f"{i:064x}" for i in range(len(X))]
    later = np.random.default_rng(seed).choice(len(X), size=drop, replace=False)
    first = np.setdiff1d(np.arange(len(X)), later)
    run = RunLayout(tmp_path / "run")
    sub = None if extras is None else {k: v[first] for k, v in extras.items()}
    _write(run, X[first], [ids[i] for i in first], sub)
    cluster_run(run, pca_components=10, k_values=K, progress=False)
    before = _clusters(run)
    with np.load(run.pca) as f:
        z_before = dict(zip(f["image_id"], f["Z"], strict=True))
    _write(run, X, ids, extras)
    return run, X, ids, truth, later, before, z_before


def test_new_images_join_the_kept_clusters(tmp_path, capsys):
    run, X, ids, truth, later, before, z_before = _grown(tmp_path)
    capsys.readouterr()
    metrics = cluster_run(run, pca_components=10, k_values=K, progress=False)
    out = capsys.readouterr().out
    assert "12 new images joined the 68 already clustered" in out
    after = _clusters(run)
    # every old image keeps its cluster, for every method and k
    pd.testing.assert_series_equal(after.loc[before.index], before)
    for method in ("kmeans", "agglomerative"):
        at4 = after.loc[(method, 4)].reindex(ids)
        assert adjusted_rand_score(truth, at4.to_numpy()) == pytest.approx(1.0)
    # the PCA is kept: old rows unchanged, new rows projected by the stored PCA
    with np.load(run.pca) as f:
        Z = dict(zip(f["image_id"], f["Z"], strict=True))
    for i, z in z_before.items():
        np.testing.assert_array_equal(Z[i], z)
    np.testing.assert_allclose(
        np.stack([Z[ids[i]] for i in later]), project(run, X[later]), atol=1e-6
    )
    add = pd.read_csv(run.additions)
    assert list(add.columns) == ADDITIONS_COLUMNS
    assert (add.groupby(["method", "k"])["joined"].sum() == 12).all()
    assert set(add["n_before"]) == {68} and set(add["n_new"]) == {12}
    assert metrics["estimator"].str.endswith(", extended").all()
    nb = pd.read_parquet(run.neighbors)
    assert nb["image_id"].nunique() == 80  # the new images have neighbours too
    # the scores describe the grown clustering (all 80 images), not the old one
    assert set(pd.read_csv(run.metrics)["n_clusters"]) <= set(K)
    assert cluster_run(run, pca_components=10, k_values=K, progress=False) is not None
    assert "outputs are current" in capsys.readouterr().out


def test_refit_clusters_every_image_again(tmp_path, capsys):
    run, *_ = _grown(tmp_path)
    capsys.readouterr()
    metrics = cluster_run(run, pca_components=10, k_values=K, refit=True, progress=False)
    assert "every image is clustered again: refit: true" in capsys.readouterr().out
    assert not metrics["estimator"].str.contains("extended").any()
    assert not run.additions.exists()


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"k_values": [2, 4]}, "the clustering parameters changed"),
        ({"drop_old": True}, "no longer in the run"),
    ],
)
def test_what_forces_a_refit(tmp_path, capsys, change, why):
    run, X, ids, *_ = _grown(tmp_path)
    k = change.get("k_values", K)
    if change.get("drop_old"):
        with np.load(run.pca) as f:
            gone = str(f["image_id"][0])
        keep = [i for i, name in enumerate(ids) if name != gone]
        _write(run, X[keep], [ids[i] for i in keep])
    capsys.readouterr()
    cluster_run(run, pca_components=10, k_values=k, progress=False)
    out = capsys.readouterr().out
    assert "every image is clustered again" in out and why in out


def test_the_fused_similarity_keeps_its_whitening(tmp_path, capsys):
    X, truth = blobs(n_per=20, centers=4, seed=3)  # the vectors _grown writes
    rng = np.random.default_rng(5)
    n = len(X)
    parts = X[:, None, :] + rng.normal(scale=0.3, size=(n, 2, X.shape[1]))  # crops: like it
    mask = rng.random((n, 2)) < 0.3
    colour = np.abs(rng.normal(size=(4, 512)))[truth] + rng.random((n, 512))  # brand colours
    extras = {
        "parts": np.where(mask[..., None], parts, 0).astype(np.float32),
        "mask": mask,
        "colour": colour.astype(np.float32),
    }
    run, X, ids, truth, later, before, _ = _grown(tmp_path, extras=extras)
    whitening = run.whitening.read_bytes()
    cluster_run(run, pca_components=10, k_values=K, progress=False)
    assert "new images joined" in capsys.readouterr().out
    assert run.whitening.read_bytes() == whitening  # fitted on the old images, kept
    spaces = pd.read_csv(run.metrics).groupby("method")["silhouette_space"].unique()
    assert spaces["similarity"].tolist() == ["fused similarity"]  # rescored in its own space
    assert spaces["kmeans"].tolist() == ["pca"]
    after = _clusters(run)
    assert "similarity" in after.index.get_level_values("method")
    pd.testing.assert_series_equal(after.loc[before.index], before)
    # a new image joins the similarity cluster of its most similar old image
    sim6 = after.loc[("similarity", 6)]
    nb = pd.read_parquet(run.neighbors)
    old = set(before.index.get_level_values("image_id"))
    checked = 0
    for i in later:
        mine = nb[nb["image_id"] == ids[i]].sort_values("rank")
        nearest_old = mine[mine["neighbor_id"].isin(old)]["neighbor_id"].iloc[0]
        assert sim6.loc[ids[i]] == sim6.loc[nearest_old]
        checked += 1
    assert checked == len(later)


def test_can_extend_explains_itself(tmp_path):
    run = RunLayout(tmp_path / "run")
    X, _ = blobs(n_per=10, centers=3)
    ids = [f"{i:064x}" for i in range(len(X))]
    assert can_extend(run, {}, ids) == "no complete earlier clustering"
    _write(run, X, ids)
    cluster_run(run, pca_components=5, k_values=[2, 3], progress=False)
    key = storage.read_stamp(run.cluster_state)["key"]
    assert can_extend(run, key, ids) == "no new images"
