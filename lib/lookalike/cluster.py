"""Stage 04: reduce the embeddings with PCA, then cluster them over a sweep of k.

Two methods, scored alike (inertia, silhouette, Davies-Bouldin, Calinski-Harabasz, all in the
PCA space):

* ``kmeans``: KMeans for every k of the sweep (exact Lloyd KMeans, or MiniBatchKMeans for
  large inputs; see :data:`MINIBATCH_ABOVE`).
* ``agglomerative``: average-linkage agglomerative clustering on cosine distance, built once
  and cut at every k or at a distance threshold. It suits many small groups (variants of one
  logo) where KMeans with a large k fits poorly. It needs an n x n distance matrix, so it is
  skipped above :data:`AGGLOMERATIVE_MAX` images.

:func:`fit_pca`, :func:`kmeans_sweep`, :func:`agglomerative_labels` and
:func:`agglomerative_sweep` work on plain arrays; :func:`cluster_run` reads ``RUN/embeddings/``
and writes ``RUN/metrics.csv``, ``RUN/clusters.parquet`` and ``RUN/pca.npz``;
:func:`export_cluster_folders` writes ``RUN/clusters/`` folders of links or copies.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.decomposition import PCA
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

from . import similarity as sim
from . import storage
from .exceptions import ConfigError
from .paths import resolve

#: Default k sweep, the logo seed's list; values at or above the number of images are dropped.
DEFAULT_K_VALUES: tuple[int, ...] = (3, 5, 10, 20, 50, 70, 100, *range(200, 1001, 100))

#: ``algorithm="auto"`` uses MiniBatchKMeans above this many images, exact KMeans up to it.
#: Chosen from ``benchmarks/cluster.py`` (section "auto threshold"), whose rule is: above the
#: largest measured size at which MiniBatchKMeans is not yet at least 2x faster with inertia
#: within 2% of KMeans. Three runs on a busy 2-core machine: speed-up 1.97x, 1.80x, 1.95x at
#: 5,000 images; 3.5x, 1.41x, 2.27x at 10,000; 3.1x-3.4x at 20,000 (inertia +0.6% to +0.8%);
#: two of the three suggested 5,000.
MINIBATCH_ABOVE = 5_000

#: MiniBatchKMeans batch size (raised to 3 k so that every batch can seed every centroid).
MINIBATCH_BATCH = 4096

#: Silhouette is O(n^2): above this many images it is computed on a fixed-seed sample.
SILHOUETTE_SAMPLE = 10_000

#: Agglomerative clustering keeps n (n - 1) / 2 float64 distances: 1.6 GB at 20,000 images.
AGGLOMERATIVE_MAX = 20_000

ALGORITHMS = ("auto", "kmeans", "minibatch")
LINKAGES = ("average", "complete", "single")
EXPORT_MODES = ("none", "symlink", "copy")

METRICS_COLUMNS = [
    "method",
    "k",
    "inertia",
    "silhouette",
    "davies_bouldin",
    "calinski_harabasz",
    "seconds",
    "n_clusters",
    "estimator",
    "silhouette_n",
]
CLUSTERS_COLUMNS = ["image_id", "method", "k", "cluster", "distance", "rank"]

METRICS_NAME = "metrics.csv"
CLUSTERS_NAME = "clusters.parquet"
PCA_NAME = "pca.npz"
PARAMS_NAME = "cluster_params.json"
EXPORT_DIR = "clusters"

#: labels of one clustering: (labels (n,), distances to the cluster centre (n,))
Labels = dict[int, tuple[np.ndarray, np.ndarray]]


def fit_pca(
    X: np.ndarray,
    *,
    n_components: int | float | None = 100,
    whiten: bool = False,
    random_state: int | None = 0,
) -> tuple[np.ndarray, PCA]:
    """Project ``X`` onto its principal components.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
    n_components : int, float or None, default 100
        An int is clipped to ``min(n_samples, n_features)``; a float in (0, 1) keeps as many
        components as explain that fraction of the variance; None keeps them all.
    whiten : bool, default False
        Scale components to unit variance (every direction then counts equally in KMeans).
    random_state : int or None, default 0
        Seed of the randomized SVD solver, which sklearn picks for large inputs.

    Returns
    -------
    Z : ndarray of shape (n_samples, n_components_), float32
    pca : fitted :class:`sklearn.decomposition.PCA`
    """
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[0] < 2:
        raise ConfigError(f"PCA needs a 2-D array with at least 2 rows, got shape {X.shape}")
    limit = min(X.shape)
    if n_components is None:
        nc: int | float = limit
    elif isinstance(n_components, float) and not float(n_components).is_integer():
        if not 0.0 < n_components < 1.0:
            raise ConfigError(
                f"n_components={n_components!r}: a float must be a variance fraction in (0, 1)"
            )
        nc = float(n_components)
    else:
        if int(n_components) < 1:
            raise ConfigError(f"n_components={n_components!r} must be >= 1")
        nc = min(int(n_components), limit)
    solver = "full" if isinstance(nc, float) else "auto"
    pca = PCA(n_components=nc, whiten=whiten, svd_solver=solver, random_state=random_state)
    Z = pca.fit_transform(X).astype(np.float32)
    return Z, pca


def clip_k_values(k_values: Iterable[int], n_samples: int) -> list[int]:
    """Keep the k with ``2 <= k < n_samples``, sorted and unique; warn about the others.

    Silhouette and the other scores are undefined for one cluster or one point per cluster.
    """
    ks = sorted({int(k) for k in k_values})
    keep = [k for k in ks if 2 <= k < n_samples]
    dropped = [k for k in ks if k not in keep]
    if dropped:
        warnings.warn(
            f"dropped k={dropped}: k must be >= 2 and < the number of images ({n_samples})",
            stacklevel=2,
        )
    return keep


def choose_algorithm(algorithm: str, n_samples: int) -> str:
    """``"kmeans"`` or ``"minibatch"`` for ``algorithm`` in :data:`ALGORITHMS`.

    ``"auto"`` is ``"minibatch"`` above :data:`MINIBATCH_ABOVE` samples, else ``"kmeans"``.
    """
    if algorithm not in ALGORITHMS:
        raise ConfigError(f"algorithm={algorithm!r} is not one of {list(ALGORITHMS)}")
    if algorithm == "auto":
        return "minibatch" if n_samples > MINIBATCH_ABOVE else "kmeans"
    return algorithm


def relabel_by_size(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters 0..m-1 by decreasing size (ties: first appearance), so 0 is largest."""
    labels = np.asarray(labels)
    uniq, first, inverse, counts = np.unique(
        labels, return_index=True, return_inverse=True, return_counts=True
    )
    order = np.lexsort((first, -counts))
    new_of_old = np.empty(len(uniq), dtype=np.int64)
    new_of_old[order] = np.arange(len(uniq))
    return new_of_old[inverse.ravel()]


def cluster_scores(
    Z: np.ndarray,
    labels: np.ndarray,
    *,
    centers: np.ndarray | None = None,
    silhouette_sample: int = SILHOUETTE_SAMPLE,
    random_state: int | None = 0,
) -> tuple[dict[str, Any], np.ndarray]:
    """Score one clustering of ``Z``, the same way for every method.

    Parameters
    ----------
    Z : array of shape (n_samples, n_features)
    labels : int array of shape (n_samples,)
    centers : array of shape (n_labels, n_features), optional
        The model's centroids, indexed by label (KMeans); default: the mean of each cluster.
    silhouette_sample : int, default :data:`SILHOUETTE_SAMPLE`
        Above this many samples silhouette is computed on a sample of this size, drawn with
        ``random_state``.
    random_state : int or None, default 0

    Returns
    -------
    scores : dict
        ``inertia`` (sum of squared Euclidean distances to the centres), ``silhouette``
        (-1..1, higher is better), ``davies_bouldin`` (>= 0, lower is better),
        ``calinski_harabasz`` (higher is better), ``n_clusters`` (non-empty clusters) and
        ``silhouette_n`` (samples silhouette was computed on). A score that is undefined (one
        cluster, or one sample per cluster) is NaN.
    distances : float32 array of shape (n_samples,)
        Euclidean distance of each sample to its cluster's centre.
    """
    Z = np.asarray(Z, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    n = len(Z)
    if centers is None:
        m = int(labels.max()) + 1
        sums = np.zeros((m, Z.shape[1]), dtype=np.float64)
        np.add.at(sums, labels, Z)
        counts = np.bincount(labels, minlength=m)
        centers = sums / np.maximum(counts, 1)[:, None]
    dist = np.sqrt(((Z - np.asarray(centers, dtype=np.float32)[labels]) ** 2).sum(axis=1))
    n_clusters = len(np.unique(labels))
    nan = float("nan")
    sil = db = ch = nan
    if 2 <= n_clusters <= n - 1:
        db = float(davies_bouldin_score(Z, labels))
        ch = float(calinski_harabasz_score(Z, labels))
    idx = np.arange(n)
    if n > silhouette_sample:  # the same draw as sklearn's silhouette_score(sample_size=...)
        seed = 0 if random_state is None else random_state
        idx = np.random.RandomState(seed).permutation(n)[:silhouette_sample]
    if 2 <= len(np.unique(labels[idx])) <= len(idx) - 1:
        sil = float(silhouette_score(Z[idx], labels[idx]))
    scores = {
        "inertia": float(np.sum(dist.astype(np.float64) ** 2)),
        "silhouette": sil,
        "davies_bouldin": db,
        "calinski_harabasz": ch,
        "n_clusters": n_clusters,
        "silhouette_n": len(idx),
    }
    return scores, dist.astype(np.float32)


def _metrics_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    metrics = pd.DataFrame(rows, columns=METRICS_COLUMNS)
    for col in ("k", "n_clusters", "silhouette_n"):
        metrics[col] = metrics[col].astype("int64")
    for col in ("inertia", "silhouette", "davies_bouldin", "calinski_harabasz", "seconds"):
        metrics[col] = metrics[col].astype("float64")
    return metrics


def _fit_kmeans(
    Z: np.ndarray, k: int, *, estimator: str, n_init: int, random_state: int | None
) -> tuple[np.ndarray, np.ndarray]:
    if estimator == "minibatch":
        batch = min(len(Z), max(MINIBATCH_BATCH, 3 * k))
        # One k-means++ start (sklearn's default): more starts tripled the time at 100,000
        # images without lowering the inertia (benchmarks/cluster.py).
        model: KMeans | MiniBatchKMeans = MiniBatchKMeans(
            n_clusters=k, n_init=1, batch_size=batch, random_state=random_state
        )
    else:
        model = KMeans(n_clusters=k, n_init=n_init, random_state=random_state)
    with warnings.catch_warnings():
        # Duplicate points can leave fewer distinct clusters than k; n_clusters reports it.
        warnings.filterwarnings("ignore", message="Number of distinct clusters")
        labels = model.fit_predict(Z)
    return labels, model.cluster_centers_


def kmeans_sweep(
    Z: np.ndarray,
    k_values: Iterable[int],
    *,
    algorithm: str = "auto",
    n_init: int = 4,
    random_state: int | None = 0,
    silhouette_sample: int = SILHOUETTE_SAMPLE,
    progress: bool = True,
) -> tuple[pd.DataFrame, Labels]:
    """Fit KMeans for every k and score each clustering.

    Parameters
    ----------
    Z : array of shape (n_samples, n_features)
        Usually the PCA output.
    k_values : iterable of int
        Numbers of clusters; clipped with :func:`clip_k_values`.
    algorithm : {"auto", "kmeans", "minibatch"}, default "auto"
        ``kmeans``: exact Lloyd KMeans; ``minibatch``: MiniBatchKMeans (batches of
        :data:`MINIBATCH_BATCH`); ``auto``: minibatch above :data:`MINIBATCH_ABOVE` samples.
    n_init : int, default 4
        Restarts of exact KMeans per k; the best inertia wins. MiniBatchKMeans makes one
        k-means++ start (sklearn's default; more did not help, see benchmarks/cluster.py).
    random_state : int or None, default 0
        Seed of KMeans and of the silhouette sample; a fixed seed gives identical labels.
    silhouette_sample : int, default :data:`SILHOUETTE_SAMPLE`
        Silhouette is O(n^2): above this many samples it is computed on a fixed-seed sample.

    Returns
    -------
    metrics : DataFrame, one row per k, columns :data:`METRICS_COLUMNS`
        ``method`` is "kmeans"; ``estimator`` "KMeans" or "MiniBatchKMeans"; ``seconds`` is
        fit + scoring. See :func:`cluster_scores` for the scores.
    labels : dict k -> (labels, distances)
        ``labels`` int64 (n_samples,), numbered by decreasing cluster size (0 is largest);
        ``distances`` float32 (n_samples,), Euclidean distance to the centroid in ``Z``.
    """
    from threadpoolctl import threadpool_limits
    from tqdm.auto import tqdm

    Z = np.ascontiguousarray(Z, dtype=np.float32)
    ks = clip_k_values(k_values, len(Z))
    estimator = choose_algorithm(algorithm, len(Z))
    name = "MiniBatchKMeans" if estimator == "minibatch" else "KMeans"
    rows: list[dict[str, Any]] = []
    out: Labels = {}
    # The k-means++ seeding does many thin matrix products; threaded BLAS only thrashes on
    # them (measured 5-20x slower on a busy 2-core machine). Lloyd's loop uses OpenMP anyway.
    with threadpool_limits(limits=1, user_api="blas"):
        for k in tqdm(ks, desc=f"kmeans ({name})", unit="k", disable=not progress):
            t0 = time.perf_counter()
            raw, centers = _fit_kmeans(
                Z, k, estimator=estimator, n_init=n_init, random_state=random_state
            )
            labels = relabel_by_size(raw)
            old_of_new = np.empty(labels.max() + 1, dtype=np.int64)
            old_of_new[labels] = raw  # centroids follow their clusters to the new numbers
            scores, dist = cluster_scores(
                Z,
                labels,
                centers=centers[old_of_new],
                silhouette_sample=silhouette_sample,
                random_state=random_state,
            )
            seconds = time.perf_counter() - t0
            rows.append(
                {"method": "kmeans", "k": k, **scores, "seconds": seconds, "estimator": name}
            )
            out[k] = (labels, dist)
    return _metrics_frame(rows), out


# -- agglomerative --------------------------------------------------------------------------


def _check_agglomerative_size(n_samples: int, max_samples: int) -> None:
    if n_samples > max_samples:
        gib = 2 * n_samples * (n_samples - 1) / 2 * 8 / 2**30  # the matrix and scipy's copy
        raise ConfigError(
            f"agglomerative clustering of {n_samples} images needs about {gib:.1f} GiB for "
            f"its distance matrices, above the limit max_samples={max_samples}; raise "
            f"agglomerative_max if the machine has the memory, or use KMeans alone"
        )


def agglomerative_tree(
    X: np.ndarray, *, linkage: str = "average", max_samples: int = AGGLOMERATIVE_MAX
) -> np.ndarray:
    """The full merge tree of ``X`` under cosine distance (scipy linkage matrix).

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
    linkage : {"average", "complete", "single"}, default "average"
        Distance between two groups: the mean, largest or smallest cosine distance between
        their members (Ward needs Euclidean distance, so it is not offered).
    max_samples : int, default :data:`AGGLOMERATIVE_MAX`
        Refuse larger inputs: memory grows as n^2 (two float64 copies of the n (n - 1) / 2
        distances, 3.2 GB at 20,000 samples).

    Returns
    -------
    ndarray of shape (n_samples - 1, 4), see :func:`scipy.cluster.hierarchy.linkage`.
    """
    from scipy.cluster.hierarchy import linkage as scipy_linkage
    from scipy.spatial.distance import pdist

    if linkage not in LINKAGES:
        raise ConfigError(f"linkage={linkage!r} is not one of {list(LINKAGES)}")
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or len(X) < 2:
        raise ConfigError(f"agglomerative clustering needs at least 2 rows, got shape {X.shape}")
    _check_agglomerative_size(len(X), max_samples)
    with np.errstate(invalid="ignore", divide="ignore"):
        D = pdist(X, metric="cosine")
    np.nan_to_num(D, copy=False, nan=1.0)  # an all-zero vector has no direction
    np.clip(D, 0.0, 2.0, out=D)  # rounding leaves tiny negatives for identical rows
    return scipy_linkage(D, method=linkage)


def cut_tree(
    tree: np.ndarray, *, n_clusters: int | None = None, distance_threshold: float | None = None
) -> np.ndarray:
    """Flat clusters from a merge tree: at most ``n_clusters``, or cut at a distance.

    Exactly one of ``n_clusters`` and ``distance_threshold`` must be given. Ties in the merge
    heights can give fewer than ``n_clusters`` clusters. Returns int64 labels (n_samples,),
    numbered by decreasing cluster size.
    """
    from scipy.cluster.hierarchy import fcluster

    if (n_clusters is None) == (distance_threshold is None):
        raise ConfigError(
            f"give exactly one of n_clusters ({n_clusters!r}) and distance_threshold "
            f"({distance_threshold!r})"
        )
    if n_clusters is not None:
        if int(n_clusters) < 1:
            raise ConfigError(f"n_clusters={n_clusters!r} must be >= 1")
        raw = fcluster(tree, t=int(n_clusters), criterion="maxclust")
    else:
        if not float(distance_threshold) >= 0.0:
            raise ConfigError(
                f"distance_threshold={distance_threshold!r} must be a cosine distance >= 0"
            )
        raw = fcluster(tree, t=float(distance_threshold), criterion="distance")
    return relabel_by_size(raw)


def agglomerative_labels(
    X: np.ndarray,
    *,
    n_clusters: int | None = None,
    distance_threshold: float | None = None,
    linkage: str = "average",
    max_samples: int = AGGLOMERATIVE_MAX,
) -> np.ndarray:
    """Agglomerative clustering of ``X`` on cosine distance, in one call.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
        Usually PCA-reduced embeddings.
    n_clusters : int, optional
        Cut the tree into (at most) this many clusters.
    distance_threshold : float, optional
        Cut the tree where groups are further apart than this cosine distance (0..2; with
        average linkage, the mean distance between the members of two groups).
    linkage, max_samples :
        See :func:`agglomerative_tree`.

    Returns
    -------
    labels : int64 ndarray of shape (n_samples,), 0 = the largest cluster.

    Examples
    --------
    >>> labels = agglomerative_labels(Z, n_clusters=20)  # doctest: +SKIP
    """
    tree = agglomerative_tree(X, linkage=linkage, max_samples=max_samples)
    return cut_tree(tree, n_clusters=n_clusters, distance_threshold=distance_threshold)


def agglomerative_sweep(
    Z: np.ndarray,
    k_values: Iterable[int] | None = None,
    *,
    distance_threshold: float | None = None,
    linkage: str = "average",
    max_samples: int = AGGLOMERATIVE_MAX,
    silhouette_sample: int = SILHOUETTE_SAMPLE,
    random_state: int | None = 0,
    progress: bool = True,
    tree: np.ndarray | None = None,
    method: str = "agglomerative",
) -> tuple[pd.DataFrame, Labels]:
    """Build the cosine merge tree once and cut it at every k (or at a distance threshold).

    Parameters
    ----------
    Z : array of shape (n_samples, n_features)
    k_values : iterable of int, optional
        Numbers of clusters (clipped with :func:`clip_k_values`). Ignored when
        ``distance_threshold`` is given.
    distance_threshold : float, optional
        One cut at this cosine distance instead; its ``k`` is the number of clusters found.
    linkage, max_samples :
        See :func:`agglomerative_tree` (raises :class:`ConfigError` above ``max_samples``).
    silhouette_sample, random_state :
        See :func:`cluster_scores`; scores are computed in ``Z`` exactly as for KMeans.
    tree : ndarray (n_samples - 1, 4), optional
        A merge tree built elsewhere, e.g. :func:`lookalike.similarity.similarity_tree` on
        the fused similarity; default: :func:`agglomerative_tree` of ``Z``.
    method : str, default "agglomerative"
        The ``method`` named in the rows (``"similarity"`` for a similarity tree).

    Returns
    -------
    metrics, labels :
        As :func:`kmeans_sweep`, with ``method`` as given. ``distances`` are to the
        mean of each cluster. The one tree build is shared: its time is split evenly over the
        rows' ``seconds``.
    """
    from tqdm.auto import tqdm

    Z = np.ascontiguousarray(Z, dtype=np.float32)
    if distance_threshold is None:
        if k_values is None:
            raise ConfigError("agglomerative_sweep needs k_values or a distance_threshold")
        cuts: list[dict[str, Any]] = [{"n_clusters": k} for k in clip_k_values(k_values, len(Z))]
    else:
        cuts = [{"distance_threshold": float(distance_threshold)}]
    _check_agglomerative_size(len(Z), max_samples)
    t0 = time.perf_counter()
    if tree is None:
        tree = agglomerative_tree(Z, linkage=linkage, max_samples=max_samples)
        name = f"{linkage}-linkage cosine"
    else:
        name = f"{linkage}-linkage fused similarity"
    tree_seconds = time.perf_counter() - t0
    rows: list[dict[str, Any]] = []
    out: Labels = {}
    for cut in tqdm(cuts, desc=method, unit="k", disable=not progress or len(cuts) < 2):
        t1 = time.perf_counter()
        labels = cut_tree(tree, **cut)
        scores, dist = cluster_scores(
            Z, labels, silhouette_sample=silhouette_sample, random_state=random_state
        )
        k = int(cut.get("n_clusters", scores["n_clusters"]))
        seconds = time.perf_counter() - t1 + tree_seconds / len(cuts)
        rows.append({"method": method, "k": k, **scores, "seconds": seconds, "estimator": name})
        out[k] = (labels, dist)
    return _metrics_frame(rows), out


# -- tables, folders and the stage ------------------------------------------------------------


def assignments_table(
    image_ids: Iterable[str],
    labels: Labels,
    *,
    method: str = "kmeans",
) -> pd.DataFrame:
    """Long table of cluster assignments: one row per (image, k).

    Returns
    -------
    DataFrame with columns :data:`CLUSTERS_COLUMNS`: ``image_id``, ``method``, ``k``,
    ``cluster``, ``distance`` (to the cluster centre, in PCA space) and ``rank`` (0 = nearest
    the centre within its cluster; ties by row order).
    """
    ids = np.asarray(list(image_ids), dtype=object)
    parts = []
    for k, (lab, dist) in sorted(labels.items()):
        df = pd.DataFrame(
            {
                "image_id": ids,
                "method": method,
                "k": np.int64(k),
                "cluster": lab.astype(np.int64),
                "distance": dist.astype(np.float32),
            }
        )
        df["rank"] = (
            df.sort_values(["cluster", "distance"], kind="stable")
            .groupby("cluster")
            .cumcount()
            .reindex(df.index)
            .astype(np.int64)
        )
        parts.append(df)
    if not parts:
        return pd.DataFrame(
            {
                "image_id": pd.Series(dtype="string"),
                "method": pd.Series(dtype="string"),
                "k": pd.Series(dtype="int64"),
                "cluster": pd.Series(dtype="int64"),
                "distance": pd.Series(dtype="float32"),
                "rank": pd.Series(dtype="int64"),
            }
        )
    out = pd.concat(parts, ignore_index=True)
    out["image_id"] = out["image_id"].astype("string")
    out["method"] = out["method"].astype("string")
    return out[CLUSTERS_COLUMNS]


def image_paths(run_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Absolute path of every ok image of ``RUN/images.parquet``, by ``image_id``."""
    run = resolve(run_dir)
    manifest = storage.read_manifest(run, ok_only=True)
    return {
        str(i): storage.image_abspath(run, p)
        for i, p in zip(manifest["image_id"], manifest["path"], strict=True)
        if isinstance(p, str)
    }


def export_folder(run_dir: str | os.PathLike[str], method: str, k: int) -> Path:
    """``RUN/clusters/k_{k}`` for kmeans, ``RUN/clusters/{method}/k_{k}`` for other methods."""
    base = resolve(run_dir) / EXPORT_DIR
    return base / f"k_{int(k)}" if method == "kmeans" else base / method / f"k_{int(k)}"


def export_cluster_folders(
    run_dir: str | os.PathLike[str],
    *,
    mode: str = "symlink",
    k_values: Iterable[int] | None = None,
    methods: Iterable[str] = ("kmeans", "agglomerative", "similarity"),
) -> Path | None:
    """Write one folder per cluster, filled with links to (or copies of) its images.

    The user's images are never moved or changed: ``symlink`` makes symbolic links (relative
    for images inside the run folder, so the run can be moved; absolute for a user's folder),
    ``copy`` copies the bytes (``shutil.copy2``), ``none`` does nothing.

    Parameters
    ----------
    run_dir : str or Path
        Needs ``RUN/clusters.parquet`` and ``RUN/images.parquet``.
    mode : {"none", "symlink", "copy"}, default "symlink"
    k_values : iterable of int, optional
        Only these k (default: every k in ``clusters.parquet``).
    methods : iterable of str, default ("kmeans", "agglomerative", "similarity")

    Returns
    -------
    ``RUN/clusters`` (None for mode "none"). Layout: ``k_{k}/cluster_{c}/{rank:05d}_{name}``
    for kmeans and ``{method}/k_{k}/cluster_{c}/...`` otherwise, ``rank`` 0 nearest the
    centre. Each exported ``k_{k}`` folder is rebuilt from scratch; images whose file is
    missing are counted and skipped.
    """
    if mode not in EXPORT_MODES:
        raise ConfigError(f"export_folders={mode!r} is not one of {list(EXPORT_MODES)}")
    if mode == "none":
        return None
    t0 = time.perf_counter()
    run = resolve(run_dir)
    table = storage.read_table(run / CLUSTERS_NAME, required=CLUSTERS_COLUMNS, what="clusters")
    where = image_paths(run)
    table = table[table["method"].isin(list(methods))]
    if k_values is not None:
        table = table[table["k"].isin([int(k) for k in k_values])]
    written = missing = 0
    for (method, k), grp in table.groupby(["method", "k"], sort=True):
        folder = export_folder(run, str(method), int(k))
        if folder.is_symlink() or folder.is_file():
            folder.unlink()
        elif folder.exists():
            shutil.rmtree(folder)  # removes our links, never what they point to
        for row in grp.itertuples(index=False):
            src = where.get(row.image_id)
            if src is None or not src.is_file():
                missing += 1
                continue
            dst = folder / f"cluster_{int(row.cluster)}" / f"{int(row.rank):05d}_{src.name}"
            dst.parent.mkdir(parents=True, exist_ok=True)
            if mode == "copy":
                shutil.copy2(src, dst)
            else:
                inside = src.resolve().is_relative_to(run.resolve())
                os.symlink(os.path.relpath(src, dst.parent) if inside else src, dst)
            written += 1
    groups = table.groupby(["method", "k"]).ngroups
    print(
        f"export: {groups} clusterings, {written} {'links' if mode == 'symlink' else 'copies'} "
        f"in {run / EXPORT_DIR} ({missing} images missing); {time.perf_counter() - t0:.1f} s"
    )
    return run / EXPORT_DIR


def cluster_run(
    run_dir: str | os.PathLike[str],
    *,
    pca_components: int | float | None = 100,
    whiten: bool = False,
    k_values: Iterable[int] = DEFAULT_K_VALUES,
    algorithm: str = "auto",
    n_init: int = 4,
    random_state: int | None = 0,
    silhouette_sample: int = SILHOUETTE_SAMPLE,
    agglomerative: bool = True,
    agglomerative_threshold: float | None = None,
    agglomerative_linkage: str = "average",
    agglomerative_max: int = AGGLOMERATIVE_MAX,
    similarity: bool = True,
    neighbors_k: int = 10,
    export_folders: str = "none",
    force: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """PCA, the KMeans sweep, agglomerative clustering and neighbours on ``RUN/embeddings/``.

    Parameters
    ----------
    run_dir : str or Path
        The run folder (needs ``RUN/embeddings/`` from stage 03).
    pca_components, whiten :
        See :func:`fit_pca`.
    k_values, algorithm, n_init, random_state, silhouette_sample :
        See :func:`kmeans_sweep`.
    agglomerative : bool, default True
        Also cluster with :func:`agglomerative_sweep` (same k values, or
        ``agglomerative_threshold``); skipped with a message above ``agglomerative_max``
        images.
    agglomerative_threshold : float, optional
        Cosine distance at which to cut the tree, instead of cutting at every k.
    agglomerative_linkage : {"average", "complete", "single"}, default "average"
    agglomerative_max : int, default :data:`AGGLOMERATIVE_MAX`
    similarity : bool, default True
        When stage 03 ran the ``logos`` preset (``cluster_method`` "similarity" in
        ``RUN/embeddings/similarity.json``), also cut an average-linkage tree of the fused
        similarity (:mod:`lookalike.similarity`) at the same k values: ``method``
        "similarity", scored in the PCA space like the others. Same size limit as
        agglomerative.
    neighbors_k : int, default 10
        Neighbours per image in ``RUN/neighbors.parquet``, under the similarity of the run's
        preset (fused for ``logos``, cosine for ``photos``).
    export_folders : {"none", "symlink", "copy"}, default "none"
        Also write ``RUN/clusters/`` with :func:`export_cluster_folders` (every k).
    force : bool, default False
        Recompute even if the outputs exist for the same embeddings and parameters.

    Returns
    -------
    metrics : DataFrame (see :func:`kmeans_sweep`), also written to ``RUN/metrics.csv``; the
    kmeans rows first, then the agglomerative ones, then the similarity ones.

    Notes
    -----
    Writes ``RUN/clusters.parquet`` (see :func:`assignments_table`), ``RUN/pca.npz`` with
    ``image_id`` (n,), ``explained_variance_ratio`` (n_components,), ``coords2d`` (n, 2), the
    first two components for scatter plots, and ``Z`` (n, n_components), and
    ``RUN/cluster_params.json`` (parameters and input fingerprints, for resume), and
    ``RUN/neighbors.parquet`` (see :func:`lookalike.similarity.write_neighbors`). The same
    inputs and parameters give identical ``clusters.parquet`` files.
    """
    t0 = time.perf_counter()
    if export_folders not in EXPORT_MODES:
        raise ConfigError(f"export_folders={export_folders!r} is not one of {list(EXPORT_MODES)}")
    if agglomerative_linkage not in LINKAGES:
        raise ConfigError(
            f"agglomerative_linkage={agglomerative_linkage!r} is not one of {list(LINKAGES)}"
        )
    run = resolve(run_dir)
    vec_path, ids_path = storage.embeddings_paths(run)
    ids, vectors = storage.read_embeddings(run)
    n = len(ids)
    estimator = choose_algorithm(algorithm, n)
    requested = [int(k) for k in k_values]
    ks = clip_k_values(requested, n)
    if not ks:
        raise ConfigError(
            f"no usable k in k_values={requested} for {n} images: every k must be "
            f">= 2 and < the number of images; embed more images or lower k"
        )
    do_agglo = bool(agglomerative) and n <= agglomerative_max
    features = sim.load_features(run)
    settings = features["settings"]
    want_sim = bool(similarity) and settings.get("cluster_method") == "similarity"
    do_sim = want_sim and n <= min(agglomerative_max, sim.MAX_CLUSTER_IMAGES)
    if isinstance(neighbors_k, bool) or int(neighbors_k) < 1:
        raise ConfigError(f"neighbors_k={neighbors_k!r} must be >= 1")
    params = {
        "pca_components": pca_components,
        "whiten": bool(whiten),
        "k_values": ks,
        "algorithm": estimator,
        "n_init": int(n_init),
        "random_state": random_state,
        "silhouette_sample": int(silhouette_sample),
        "agglomerative": do_agglo,
        "agglomerative_threshold": agglomerative_threshold,
        "agglomerative_linkage": agglomerative_linkage,
        "similarity": do_sim,
        "similarity_settings": settings,
        "neighbors_k": int(neighbors_k),
        "extras_sha256": [
            storage.sha256_file(p)
            for name in (sim.PARTS_NAME, sim.PART_MASK_NAME, sim.COLOUR_NAME)
            if (p := vec_path.parent / name).is_file()
        ],
        "vectors_sha256": storage.sha256_file(vec_path),
        "ids_sha256": storage.sha256_file(ids_path),
    }
    if agglomerative and not do_agglo:
        gib = n * (n - 1) * 8 / 2**30
        print(
            f"agglomerative: skipped: {n} images > agglomerative_max={agglomerative_max} "
            f"(it would need about {gib:.1f} GiB); raise agglomerative_max to run it anyway"
        )
    if want_sim and not do_sim:
        print(
            f"similarity clustering: skipped: {n} images > "
            f"{min(agglomerative_max, sim.MAX_CLUSTER_IMAGES)} (its n x n matrix); "
            "KMeans and the neighbours still use the run's features"
        )
    outputs = [run / METRICS_NAME, run / CLUSTERS_NAME, run / PCA_NAME, run / sim.NEIGHBORS_NAME]
    params_path = run / PARAMS_NAME
    if not force and params_path.exists() and all(p.exists() for p in outputs):
        try:
            old = json.loads(params_path.read_text())
        except ValueError:
            old = None
        if old == params:
            metrics = storage.read_table(
                run / METRICS_NAME, required=METRICS_COLUMNS, what="metrics"
            )
            print(
                f"cluster: {n} images, k in {params['k_values']}: outputs are current, "
                f"skipped ({time.perf_counter() - t0:.1f} s)"
            )
            export_cluster_folders(run, mode=export_folders)
            return metrics

    X = np.asarray(vectors, dtype=np.float32)
    if not np.isfinite(X).all():
        bad = int((~np.isfinite(X).all(axis=1)).sum())
        raise ConfigError(f"{vec_path} has {bad} rows with NaN/inf; re-run 03_embed_vgg16")
    Z, pca = fit_pca(X, n_components=pca_components, whiten=whiten, random_state=random_state)
    image_ids = ids["image_id"].astype(str).tolist()
    metrics, labels = kmeans_sweep(
        Z,
        ks,
        algorithm=estimator,
        n_init=n_init,
        random_state=random_state,
        silhouette_sample=silhouette_sample,
        progress=progress,
    )
    tables = [assignments_table(image_ids, labels, method="kmeans")]
    if do_agglo:
        ag_metrics, ag_labels = agglomerative_sweep(
            Z,
            ks,
            distance_threshold=agglomerative_threshold,
            linkage=agglomerative_linkage,
            max_samples=agglomerative_max,
            silhouette_sample=silhouette_sample,
            random_state=random_state,
            progress=progress,
        )
        metrics = pd.concat([metrics, ag_metrics], ignore_index=True)
        tables.append(assignments_table(image_ids, ag_labels, method="agglomerative"))
    t_sim = time.perf_counter()
    inputs = sim.fused_inputs(features, random_state=random_state)
    sim.write_neighbors(run, inputs, image_ids, k=int(neighbors_k))
    if do_sim:
        S = sim.similarity_matrix(**inputs)
        tree = sim.similarity_tree(S)
        del S
        build_seconds = time.perf_counter() - t_sim
        sim_metrics, sim_labels = agglomerative_sweep(
            Z,
            ks,
            max_samples=agglomerative_max,
            silhouette_sample=silhouette_sample,
            random_state=random_state,
            progress=progress,
            tree=tree,
            method="similarity",
        )
        sim_metrics["seconds"] += build_seconds / len(sim_metrics)
        metrics = pd.concat([metrics, sim_metrics], ignore_index=True)
        tables.append(assignments_table(image_ids, sim_labels, method="similarity"))
    table = pd.concat(tables, ignore_index=True)

    coords2d = np.zeros((len(Z), 2), dtype=np.float32)
    coords2d[:, : min(2, Z.shape[1])] = Z[:, :2]
    buf = io.BytesIO()
    np.savez(
        buf,
        image_id=np.asarray(image_ids, dtype=str),
        explained_variance_ratio=pca.explained_variance_ratio_.astype(np.float64),
        coords2d=coords2d,
        Z=Z,
    )
    storage.atomic_write_bytes(run / PCA_NAME, buf.getvalue())
    storage.write_table(table, run / CLUSTERS_NAME)
    storage.write_table(metrics, run / METRICS_NAME)
    storage.atomic_write_bytes(params_path, (json.dumps(params, indent=2) + "\n").encode())

    dt = time.perf_counter() - t0
    evr = float(pca.explained_variance_ratio_.sum())
    parts = [f"{(metrics['method'] == m).sum()} {m}" for m in metrics["method"].unique()]
    best_txt = ""
    km = metrics[metrics["method"] == "kmeans"]
    if km["silhouette"].notna().any():
        best = km.loc[km["silhouette"].idxmax()]
        best_txt = f"; best kmeans silhouette {best['silhouette']:.3f} at k={int(best['k'])}"
    print(
        f"cluster: {n} images, PCA {X.shape[1]}->{Z.shape[1]} dims ({100 * evr:.1f}% variance), "
        f"{' + '.join(parts)} clusterings ({metrics['estimator'].iloc[0]}){best_txt}; "
        f"{dt:.1f} s, {n * len(metrics) / max(dt, 1e-9):.0f} image-clusterings/s"
    )
    export_cluster_folders(run, mode=export_folders)
    return metrics
