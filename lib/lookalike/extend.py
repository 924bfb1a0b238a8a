"""Stage 04 for a run that grew: new images join the clusters the run already has.

When stage 03 has added images to a run that stage 04 had clustered (new domains in the
list, new files in the folder), :func:`extend_run` keeps everything the old images were given
and places only the new ones:

- **PCA**: the new vectors are projected by the run's stored PCA
  (:func:`lookalike.reduce.project`); the old rows of ``RUN/pca.npz`` are kept as they are.
- **whitening**: the fused similarity keeps the run's whitening (``RUN/index/whitening.npz``,
  :func:`lookalike.space.run_whitener`), so old similarities do not move.
- **kmeans**: a new image joins the cluster whose centre (the mean of its old members in PCA
  space) is nearest.
- **agglomerative** and **similarity**: a new image joins the cluster of its most similar old
  image (cosine in PCA space, or the fused similarity), the rule average linkage itself would
  apply to a lone point.
- **neighbours**: ``RUN/neighbors.parquet`` is searched again over every image (a new image
  can be an old one's nearest), with the kept whitening.
- **scores**: every clustering is scored again on all its images, as stage 04 scores them.

Old images keep their cluster numbers. ``refit=True`` in
:func:`lookalike.cluster.cluster_run` re-clusters everything instead (the vectors come from
the cache either way). ``RUN/additions.csv`` says how many images were new and how many
joined each cluster (:data:`ADDITIONS_COLUMNS`).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from . import index as _index
from . import storage
from .export import CLUSTERS_COLUMNS, write_assignments
from .kmeans import METRICS_COLUMNS, cluster_scores, metrics_frame, silhouette_rows
from .neighbors import l2_normalize, nearest_neighbors, similarity_rows, write_neighbors
from .paths import RunLayout
from .progress import summary as print_summary
from .reduce import project, read_pca, write_pca
from .similarity import FUSED_SPACE, fused_inputs, sample_distances
from .space import run_whitener

#: Columns of ``RUN/additions.csv``: one row per clustering and cluster that new images joined.
ADDITIONS_COLUMNS = ["added_at", "n_before", "n_new", "method", "k", "cluster", "joined"]
#: Neighbours asked for per new image above the exact size, when looking for its nearest old
#: image (the rare image whose nearest are all new is then searched exactly).
JOIN_CANDIDATES = 32
#: Keys of stage 04's stamp that only say which images there are (they may change here).
INPUT_KEYS = ("vectors_sha256", "ids_sha256", "extras_sha256")


def can_extend(run: RunLayout, params: dict[str, Any], ids: list[str]) -> str | None:
    """Why the run cannot be extended (a sentence), or None when it can.

    It can when stage 04's last outputs are complete, were made with the same parameters
    (only the images differ), cover only images that are still in the run, and the run has
    new ones; and ``RUN/pca.npz`` holds its PCA.
    """
    stamp = storage.read_stamp(run.cluster_state)
    if stamp is None or not run.clusters.is_file() or not run.pca.is_file():
        return "no complete earlier clustering"
    old_key = {k: v for k, v in stamp.get("key", {}).items() if k not in INPUT_KEYS}
    new_key = {k: v for k, v in params.items() if k not in INPUT_KEYS}
    if storage.fingerprint(old_key) != storage.fingerprint(new_key):
        return "the clustering parameters changed"
    with np.load(run.pca, allow_pickle=False) as f:
        old = set(f["image_id"].astype(str))
        if "components" not in f:
            return "RUN/pca.npz predates the stored PCA"
    whiten = int((stamp.get("key", {}).get("similarity_settings") or {}).get("whiten", 0))
    if whiten > 0 and not run.whitening.is_file():
        return "the run's whitening was not stored (made before it was kept)"
    if not old <= set(ids):
        return f"{len(old - set(ids))} clustered images are no longer in the run"
    if len(old) == len(ids):
        return "no new images"
    return None


def _nearest_old(
    inputs: dict[str, Any], new_rows: np.ndarray, old_mask: np.ndarray, fused: bool
) -> np.ndarray:
    """For each row of ``new_rows``, the most similar row where ``old_mask`` is True.

    Exact (blockwise) up to ``index.EXACT_MAX`` rows; above, from the index search's
    :data:`JOIN_CANDIDATES` nearest, exactly for a row whose candidates are all new.
    """
    v, n = inputs["vectors"], len(inputs["vectors"])
    out = np.full(len(new_rows), -1, dtype=np.int64)
    todo = np.arange(len(new_rows))
    if n > _index.EXACT_MAX:
        kw = dict(inputs, normalize=False) if fused else {"vectors": v}
        idx, _ = nearest_neighbors(**kw, queries=new_rows, k=JOIN_CANDIDATES)
        is_old = old_mask[np.maximum(idx, 0)] & (idx >= 0)
        found = is_old.any(axis=1)
        out[found] = idx[found, is_old[found].argmax(axis=1)]
        todo = np.nonzero(~found)[0]
    unit = v if fused else l2_normalize(v)
    keys = ("parts", "part_mask", "colour", "colour_weight")
    feats = tuple(inputs.get(k) for k in keys)
    for s in range(0, len(todo), 256):
        rows = new_rows[todo[s : s + 256]]
        block = similarity_rows(rows, unit, *feats) if fused else unit[rows] @ unit.T
        block[:, ~old_mask] = -np.inf
        out[todo[s : s + 256]] = block.argmax(axis=1)
    return out


def _joined_labels(
    method: str, old: pd.DataFrame, Z: np.ndarray, row_of: dict, new_rows: np.ndarray,
    nearest: dict[str, np.ndarray],
) -> np.ndarray:  # fmt: skip
    """Labels (n,) of one clustering: the old rows' own, the new rows' joined."""
    labels = np.full(len(Z), -1, dtype=np.int64)
    labels[[row_of[i] for i in old["image_id"]]] = old["cluster"].to_numpy()
    if method == "kmeans":
        m = int(labels.max()) + 1
        have = labels >= 0
        sums = np.zeros((m, Z.shape[1]))
        np.add.at(sums, labels[have], Z[have])
        centres = sums / np.maximum(np.bincount(labels[have], minlength=m), 1)[:, None]
        c2 = (centres**2).sum(axis=1)
        for s in range(0, len(new_rows), 4096):  # |z - c|^2 without z itself: -2 z.c + |c|^2
            rows = new_rows[s : s + 4096]
            labels[rows] = (c2[None, :] - 2.0 * (Z[rows] @ centres.T)).argmin(axis=1)
    else:
        labels[new_rows] = labels[nearest["similarity" if method == "similarity" else "cosine"]]
    return labels


def _rescored(
    Z, labels_by, old_metrics, scoring, own=None
) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """Every clustering of ``labels_by`` ((method, k) -> labels) scored on all images.

    ``own``: the sample's fused distances, for the silhouette of ``similarity`` (as stage 04).
    """
    rows, tables = [], []
    for (method, k), labels in labels_by.items():
        t0 = time.perf_counter()
        fused = {"silhouette_distances": own, "silhouette_space": FUSED_SPACE}
        scores, dist = cluster_scores(
            Z, labels, **scoring, **(fused if method == "similarity" else {})
        )
        prev = old_metrics[(old_metrics["method"] == method) & (old_metrics["k"] == k)]
        estimator = str(prev["estimator"].iloc[0]) if len(prev) else method
        estimator = estimator.removesuffix(", extended")
        rows.append(
            {
                "method": method,
                "k": k,
                **scores,
                "seconds": time.perf_counter() - t0,
                "estimator": f"{estimator}, extended",
            }  # fmt: skip
        )
        tables.append((method, k, labels, dist))
    return metrics_frame(rows), tables


def extend_run(
    run: RunLayout,
    X: np.ndarray,
    ids: list[str],
    features: dict[str, Any],
    params: dict[str, Any],
) -> pd.DataFrame:
    """Place the images of ``ids`` that stage 04 has not clustered yet (see the module).

    ``X`` (n, d) are the vectors in ``ids`` order, ``features`` their
    :func:`lookalike.similarity.load_features`, ``params`` stage 04's new stamp key. Writes
    ``RUN/pca.npz``, ``RUN/clusters.parquet``, ``RUN/metrics.csv``, ``RUN/neighbors.parquet``
    and ``RUN/additions.csv``; returns the metrics.
    """
    t0 = time.perf_counter()
    with np.load(run.pca, allow_pickle=False) as f:
        old_ids, Z_old = f["image_id"].astype(str), np.asarray(f["Z"], np.float32)
    row_of = {i: r for r, i in enumerate(ids)}
    old_mask = np.zeros(len(ids), bool)
    old_mask[[row_of[i] for i in old_ids]] = True
    new_rows = np.nonzero(~old_mask)[0]
    Z = np.empty((len(ids), Z_old.shape[1]), np.float32)
    Z[[row_of[i] for i in old_ids]] = Z_old
    Z[new_rows] = project(run, X[new_rows])
    whitener = run_whitener(run, features, random_state=params["random_state"], keep=True)
    inputs = fused_inputs(features, whitener=whitener)
    nearest = {"cosine": _nearest_old({"vectors": Z}, new_rows, old_mask, fused=False)}
    old = storage.read_table(run.clusters, required=CLUSTERS_COLUMNS, what="clusters")
    if (old["method"] == "similarity").any():
        nearest["similarity"] = _nearest_old(inputs, new_rows, old_mask, fused=True)
    labels_by = {
        (str(m), int(k)): _joined_labels(str(m), g, Z, row_of, new_rows, nearest)
        for (m, k), g in old.groupby(["method", "k"], sort=False)
    }
    old_metrics = storage.read_table(run.metrics, required=METRICS_COLUMNS, what="metrics")
    scoring = {k: params[k] for k in ("silhouette_sample", "random_state")}
    own = None
    if "similarity" in nearest:
        rows = silhouette_rows(len(Z), scoring["silhouette_sample"], scoring["random_state"])
        own = sample_distances(inputs, rows)
    metrics, tables = _rescored(Z, labels_by, old_metrics, scoring, own)
    write_neighbors(run, inputs, ids, k=params["neighbors_k"])
    write_assignments(run.clusters, ids, [(m, {k: (lab, d)}) for m, k, lab, d in tables])
    storage.write_table(metrics, run.metrics)
    write_pca(run, ids, Z, read_pca(run))
    additions = additions_table(labels_by, new_rows, n_before=len(old_ids))
    with storage.atomic_path(run.additions) as tmp:
        additions.to_csv(tmp, index=False)
    _print_additions(additions, len(old_ids), len(new_rows), time.perf_counter() - t0)
    return metrics


def additions_table(labels_by: dict, new_rows: np.ndarray, *, n_before: int) -> pd.DataFrame:
    """How many new images joined each cluster of each clustering (:data:`ADDITIONS_COLUMNS`)."""
    now = pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds")
    rows = []
    for (method, k), labels in labels_by.items():
        clusters, joined = np.unique(labels[new_rows], return_counts=True)
        for c, j in zip(clusters, joined, strict=True):
            rows.append([now, n_before, len(new_rows), method, k, int(c), int(j)])
    return pd.DataFrame(rows, columns=ADDITIONS_COLUMNS)


def _print_additions(additions: pd.DataFrame, n_before: int, n_new: int, dt: float) -> None:
    def busiest(method: str) -> str:
        a = additions[additions["method"] == method]
        if a.empty:
            return ""
        k = int(a["k"].max())
        top = a[a["k"] == k].nlargest(3, "joined")
        pairs = zip(top["cluster"], top["joined"], strict=True)
        shown = ", ".join(f"{int(c)} (+{int(j)})" for c, j in pairs)
        return f"; {method} k={k}: {shown}"

    print_summary(
        f"cluster: {n_new} new images joined the {n_before} already clustered (PCA, whitening "
        f"and clusters kept; refit: true re-clusters everything)"
        + "".join(busiest(m) for m in additions["method"].unique())
        + f"; {dt:.1f} s"
    )
