"""Stage 04: cluster the PCA-reduced embeddings over a sweep of k.

Three methods, scored alike (inertia, silhouette, Davies-Bouldin, Calinski-Harabasz, all in the
PCA space of :func:`lookalike.reduce.fit_pca`, except the silhouette of ``similarity``: it is
computed on that method's own distance, ``1 -`` the fused similarity; the metrics'
``silhouette_space`` says which):

* ``kmeans``: KMeans for every k of the sweep (exact Lloyd KMeans, MiniBatchKMeans above
  :data:`MINIBATCH_ABOVE` images, faiss's KMeans above :data:`lookalike.kmeans.FAISS_ABOVE`).
* ``agglomerative``: average-linkage agglomerative clustering on cosine distance, built once
  and cut at every k or at a distance threshold. It suits many small groups (variants of one
  logo) where KMeans with a large k fits poorly.
* ``similarity``: the same on ``1 - `` the fused similarity of the ``logos`` preset
  (:mod:`lookalike.similarity`; :func:`similarity_clusters`).

Up to :data:`AGGLOMERATIVE_MAX` images both trees are exact (dense n x n distances,
:func:`merge_tree`); above it they are built from the sparse k-nearest-neighbour graph
(:mod:`lookalike.graph`: average linkage with the pairs outside the graph at similarity 0),
so memory grows as n k and no size is skipped. :func:`kmeans_sweep`,
:func:`agglomerative_labels` and :func:`agglomerative_sweep` work on plain arrays;
:func:`cluster_run` reads ``RUN/embeddings/`` and writes ``RUN/metrics.csv``,
``RUN/clusters.parquet``, ``RUN/pca.npz`` and ``RUN/neighbors.parquet``;
:func:`lookalike.export.export_cluster_folders` writes ``RUN/clusters/`` folders.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from . import storage
from .duplicates import DUP_MAX_LINKS
from .exceptions import ConfigError
from .export import (  # noqa: F401 (image_paths, export_folder: re-exported for callers)
    CLUSTERS_COLUMNS,
    EXPORT_MODES,
    assignments_table,
    export_cluster_folders,
    export_folder,
    image_paths,
    write_assignments,
)
from .extend import can_extend, extend_run
from .graph import GRAPH_K, cut_graph_tree, knn_tree
from .kmeans import (  # noqa: F401 (re-exported: the stage's names in one place)
    ALGORITHMS,
    DEFAULT_K_VALUES,
    METRICS_COLUMNS,
    MINIBATCH_ABOVE,
    MINIBATCH_BATCH,
    N_INIT,
    PCA_SPACE,
    SILHOUETTE_SAMPLE,
    Labels,
    choose_algorithm,
    clip_k_values,
    cluster_scores,
    kmeans_sweep,
    metrics_frame,
    pca_sample_distances,
    relabel_by_size,
    silhouette_rows,
)
from .neighbors import nearest_neighbors, write_neighbors
from .paths import RunLayout
from .progress import summary as print_summary
from .reduce import fit_pca, write_pca  # noqa: F401 (fit_pca re-exported)
from .similarity import (
    FUSED_SPACE,
    fused_inputs,
    load_features,
    sample_distances,
    similarity_matrix,
)
from .space import run_whitener

#: Largest number of images clustered with the exact dense tree (n (n - 1) / 2 float64
#: distances: 1.6 GB at 20,000 images); above it both trees come from the kNN graph
#: (:mod:`lookalike.graph`). Measured in docs/benchmarks.md ("Clustering from the kNN graph").
AGGLOMERATIVE_MAX = 20_000

#: Neighbours per image in ``RUN/neighbors.parquet``.
NEIGHBORS_K = 10

LINKAGES = ("average", "complete", "single")


# -- agglomerative --------------------------------------------------------------------------


def _check_agglomerative_size(n_samples: int, max_samples: int) -> None:
    if n_samples > max_samples:
        gib = 2 * n_samples * (n_samples - 1) / 2 * 8 / 2**30  # the matrix and scipy's copy
        raise ConfigError(
            f"agglomerative clustering of {n_samples} images needs about {gib:.1f} GiB for "
            f"its distance matrices, above the limit max_samples={max_samples}; raise "
            f"agglomerative_max if the machine has the memory, or use KMeans alone"
        )


def cosine_distances(X: np.ndarray, *, max_samples: int = AGGLOMERATIVE_MAX) -> np.ndarray:
    """Condensed cosine distances between the rows of ``X``, for :func:`merge_tree`.

    Parameters
    ----------
    X : array of shape (n_samples, n_features), n_samples >= 2
    max_samples : int, default :data:`AGGLOMERATIVE_MAX`
        Refuse larger inputs: memory grows as n^2 (two float64 copies of the n (n - 1) / 2
        distances, 3.2 GB at 20,000 samples).

    Returns
    -------
    float64 ndarray of shape (n (n - 1) / 2,), 0..2 (an all-zero row is at distance 1).
    """
    from scipy.spatial.distance import pdist

    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or len(X) < 2:
        raise ConfigError(f"agglomerative clustering needs at least 2 rows, got shape {X.shape}")
    _check_agglomerative_size(len(X), max_samples)
    with np.errstate(invalid="ignore", divide="ignore"):
        D = pdist(X, metric="cosine")
    np.nan_to_num(D, copy=False, nan=1.0)  # an all-zero vector has no direction
    np.clip(D, 0.0, 2.0, out=D)  # rounding leaves tiny negatives for identical rows
    return D


def similarity_distances(
    similarity: np.ndarray, *, max_samples: int = AGGLOMERATIVE_MAX
) -> np.ndarray:
    """Condensed ``1 - similarity`` (symmetrised, at least 0), for :func:`merge_tree`.

    Parameters
    ----------
    similarity : ndarray (n, n), n >= 2
        E.g. :func:`lookalike.similarity.similarity_matrix`.
    max_samples : int, default :data:`AGGLOMERATIVE_MAX`
        Refuse larger inputs (the n x n matrix is 8 n**2 bytes); use KMeans there.
    """
    from scipy.spatial.distance import squareform

    S = np.asarray(similarity, dtype=np.float64)
    if S.ndim != 2 or S.shape[0] != S.shape[1] or S.shape[0] < 2:
        raise ValueError(f"similarity must be a square (n, n) matrix, n >= 2; got {S.shape}")
    _check_agglomerative_size(S.shape[0], max_samples)
    D = np.clip(1.0 - (S + S.T) / 2.0, 0.0, None)
    np.fill_diagonal(D, 0.0)
    return squareform(D, checks=False)


def merge_tree(distances: np.ndarray, *, linkage: str = "average") -> np.ndarray:
    """The full agglomerative merge tree of n items from their condensed distances.

    The one tree builder of stage 04: :func:`cosine_distances` gives the ``agglomerative``
    tree, :func:`similarity_distances` the ``similarity`` one.

    Parameters
    ----------
    distances : ndarray of shape (n (n - 1) / 2,)
        Condensed pairwise distances (:func:`scipy.spatial.distance.squareform` layout).
    linkage : {"average", "complete", "single"}, default "average"
        Distance between two groups: the mean, largest or smallest distance between their
        members (Ward needs Euclidean distance, so it is not offered).

    Returns
    -------
    ndarray of shape (n - 1, 4), see :func:`scipy.cluster.hierarchy.linkage`; cut it with
    :func:`cut_tree`.
    """
    from scipy.cluster.hierarchy import linkage as scipy_linkage

    if linkage not in LINKAGES:
        raise ConfigError(f"linkage={linkage!r} is not one of {list(LINKAGES)}")
    return scipy_linkage(distances, method=linkage)


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
    linkage : {"average", "complete", "single"}, default "average"
        See :func:`merge_tree`.
    max_samples : int, default :data:`AGGLOMERATIVE_MAX`
        See :func:`cosine_distances`.

    Returns
    -------
    labels : int64 ndarray of shape (n_samples,), 0 = the largest cluster.

    Examples
    --------
    >>> labels = agglomerative_labels(Z, n_clusters=20)  # doctest: +SKIP
    """
    if linkage not in LINKAGES:  # before the n^2 distances
        raise ConfigError(f"linkage={linkage!r} is not one of {list(LINKAGES)}")
    tree = merge_tree(cosine_distances(X, max_samples=max_samples), linkage=linkage)
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
    graph: bool | None = None,
    graph_k: int = GRAPH_K,
    silhouette_distances: np.ndarray | None = None,
    silhouette_space: str = PCA_SPACE,
    neighbours: tuple[np.ndarray, np.ndarray] | None = None,
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
    linkage : {"average", "complete", "single"}, default "average"
        See :func:`merge_tree`; the graph tree is average linkage only.
    max_samples : int, default :data:`AGGLOMERATIVE_MAX`
        Up to this many samples the tree is the exact dense one (:func:`cosine_distances`);
        above it, the graph tree of :mod:`lookalike.graph`.
    silhouette_sample, random_state, silhouette_distances, silhouette_space :
        See :func:`cluster_scores`; scores are computed in ``Z`` exactly as for KMeans, but
        silhouette on ``silhouette_distances`` when given (for a ``similarity`` tree: 1 -
        the fused similarity of the sample, :func:`lookalike.similarity.sample_distances`).
    tree : ndarray (n_samples - 1, 4), optional
        A merge tree built elsewhere, e.g. :func:`merge_tree` of :func:`similarity_distances`
        of the fused similarity, or :func:`lookalike.graph.knn_tree`; default: the cosine
        tree of ``Z``.
    method : str, default "agglomerative"
        The ``method`` named in the rows (``"similarity"`` for a similarity tree).
    graph : bool, optional
        Build (or, with ``tree``, cut) a graph tree: cuts after the first n - k merges
        (:func:`lookalike.graph.cut_graph_tree`). Default: ``n_samples > max_samples``
        (with ``tree``: False).
    graph_k : int, default :data:`lookalike.graph.GRAPH_K`
        Neighbours per sample of the cosine kNN graph (when this function builds it).
    neighbours : (index, similarity), optional
        The cosine kNN of ``Z`` (:func:`lookalike.neighbors.nearest_neighbors`, at least
        ``graph_k`` columns) when the caller has it; default: searched here.

    Returns
    -------
    metrics, labels :
        As :func:`kmeans_sweep`, with ``method`` as given. ``distances`` are to the
        mean of each cluster. The one tree build is shared: its time is split evenly over the
        rows' ``seconds``.
    """
    from .progress import bar as progress_bar

    Z = np.ascontiguousarray(Z, dtype=np.float32)
    if distance_threshold is None:
        if k_values is None:
            raise ConfigError("agglomerative_sweep needs k_values or a distance_threshold")
        cuts: list[dict[str, Any]] = [{"n_clusters": k} for k in clip_k_values(k_values, len(Z))]
    else:
        cuts = [{"distance_threshold": float(distance_threshold)}]
    if graph is None:
        graph = tree is None and len(Z) > max_samples
    t0 = time.perf_counter()
    if tree is not None:
        name = f"{linkage}-linkage fused similarity" + (" kNN graph" if graph else "")
    elif graph:
        if linkage != "average":
            raise ConfigError(
                f"{len(Z)} images > max_samples={max_samples}: above it the tree is built "
                f"from the kNN graph, average linkage only (got linkage={linkage!r})"
            )
        index, sim = nearest_neighbors(Z, k=graph_k) if neighbours is None else neighbours
        tree, _ = knn_tree(index[:, :graph_k], sim[:, :graph_k], Z, progress=progress)
        name = f"average-linkage cosine kNN graph (k={graph_k})"
    else:
        tree = merge_tree(cosine_distances(Z, max_samples=max_samples), linkage=linkage)
        name = f"{linkage}-linkage cosine"
    tree_seconds = time.perf_counter() - t0
    rows: list[dict[str, Any]] = []
    out: Labels = {}
    for cut in progress_bar(cuts, desc=method, unit="k", disable=not progress or len(cuts) < 2):
        t1 = time.perf_counter()
        labels = relabel_by_size(cut_graph_tree(tree, **cut)) if graph else cut_tree(tree, **cut)
        scores, dist = cluster_scores(
            Z, labels, silhouette_sample=silhouette_sample, random_state=random_state,
            silhouette_distances=silhouette_distances, silhouette_space=silhouette_space,
        )  # fmt: skip
        k = int(cut.get("n_clusters", scores["n_clusters"]))
        seconds = time.perf_counter() - t1 + tree_seconds / len(cuts)
        rows.append({"method": method, "k": k, **scores, "seconds": seconds, "estimator": name})
        out[k] = (labels, dist)
    return metrics_frame(rows), out


def similarity_clusters(
    similarity: np.ndarray,
    *,
    n_clusters: int | None = None,
    distance_threshold: float | None = None,
) -> np.ndarray:
    """Average-linkage agglomerative clusters on ``1 - similarity`` (deterministic).

    Parameters
    ----------
    similarity : ndarray (n, n)
        From :func:`lookalike.similarity.similarity_matrix`.
    n_clusters : int, optional
        Number of clusters; give this or ``distance_threshold``.
    distance_threshold : float, optional
        Merge while the average distance ``1 - similarity`` between clusters is below this.

    Returns
    -------
    ndarray (n,) int64 cluster labels, 0 = the largest cluster (as :func:`cut_tree`), so
    equal inputs always give equal labels.

    Raises
    ------
    ConfigError
        For more than :data:`AGGLOMERATIVE_MAX` images (the n x n matrix); use KMeans there.
    """
    if (n_clusters is None) == (distance_threshold is None):
        raise ConfigError("give exactly one of n_clusters or distance_threshold")
    n = np.asarray(similarity).shape[0]
    if n_clusters is not None and not 1 <= int(n_clusters) <= n:
        raise ConfigError(f"n_clusters={n_clusters!r} must be within 1..{n} (the image count)")
    if n == 1:
        return np.zeros(1, dtype=np.int64)
    tree = merge_tree(similarity_distances(similarity))
    return cut_tree(tree, n_clusters=n_clusters, distance_threshold=distance_threshold)


# -- tables and the stage ------------------------------------------------------------------


#: What ``None`` means for the options of :func:`cluster_run` (the one place for each).
CLUSTER_DEFAULTS: dict[str, Any] = {
    "whiten": False,
    "k_values": DEFAULT_K_VALUES,
    "algorithm": "auto",
    "n_init": N_INIT,
    "silhouette_sample": SILHOUETTE_SAMPLE,
    "agglomerative": True,
    "agglomerative_linkage": "average",
    "agglomerative_max": AGGLOMERATIVE_MAX,
    "similarity": True,
    "neighbors_k": NEIGHBORS_K,
    "export_folders": "none",
    "refit": False,
}


def _resolve_options(**given: Any) -> dict[str, Any]:
    """``given`` with every None replaced by its :data:`CLUSTER_DEFAULTS` value, checked."""
    o = {k: CLUSTER_DEFAULTS[k] if given[k] is None else given[k] for k in CLUSTER_DEFAULTS}
    if o["export_folders"] not in EXPORT_MODES:
        raise ConfigError(
            f"export_folders={o['export_folders']!r} is not one of {list(EXPORT_MODES)}"
        )
    if o["agglomerative_linkage"] not in LINKAGES:
        raise ConfigError(
            f"agglomerative_linkage={o['agglomerative_linkage']!r} is not one of {list(LINKAGES)}"
        )
    return o


def _plan(
    run: RunLayout,
    n: int,
    settings: dict[str, Any],
    o: dict[str, Any],
    *,
    pca_components: int | float | None,
    random_state: int | None,
    agglomerative_threshold: float | None,
) -> dict[str, Any]:
    """The stamp key of :func:`cluster_run`: every resolved parameter and input fingerprint."""
    estimator = choose_algorithm(o["algorithm"], n)
    requested = [int(k) for k in o["k_values"]]
    ks = clip_k_values(requested, n)
    if not ks:
        raise ConfigError(
            f"no usable k in k_values={requested} for {n} images: every k must be "
            f">= 2 and < the number of images; embed more images or lower k"
        )
    use_graph = n > int(o["agglomerative_max"])
    do_agglo = bool(o["agglomerative"])
    if do_agglo and use_graph and o["agglomerative_linkage"] != "average":
        do_agglo = False
        print(
            f"agglomerative: skipped: {n} images > agglomerative_max={o['agglomerative_max']}, "
            f"where the tree comes from the kNN graph (average linkage only, not "
            f"{o['agglomerative_linkage']!r}); raise agglomerative_max for a dense tree"
        )
    do_sim = bool(o["similarity"]) and settings.get("cluster_method") == "similarity"
    if isinstance(o["neighbors_k"], bool) or int(o["neighbors_k"]) < 1:
        raise ConfigError(f"neighbors_k={o['neighbors_k']!r} must be >= 1")
    return {
        "pca_components": pca_components,
        "whiten": bool(o["whiten"]),
        "k_values": ks,
        "algorithm": estimator,
        "n_init": int(o["n_init"]),
        "random_state": random_state,
        "silhouette_sample": int(o["silhouette_sample"]),
        "agglomerative": do_agglo,
        "agglomerative_threshold": agglomerative_threshold,
        "agglomerative_linkage": o["agglomerative_linkage"],
        "similarity": do_sim,
        "similarity_settings": settings,
        "similarity_silhouette": FUSED_SPACE,  # older runs scored it in PCA space: redo them
        "graph_k": GRAPH_K if use_graph and (do_agglo or do_sim) else None,
        "neighbors_k": int(o["neighbors_k"]),
        "extras_sha256": [
            storage.sha256_file(p) for p in (run.parts, run.part_mask, run.colour) if p.is_file()
        ],
        "vectors_sha256": storage.sha256_file(run.vectors),
        "ids_sha256": storage.sha256_file(run.ids),
    }


def _cluster(
    run: RunLayout,
    Z: np.ndarray,
    image_ids: list[str],
    features: dict[str, Any],
    params: dict[str, Any],
    *,
    agglomerative_max: int,
    progress: bool,
) -> tuple[pd.DataFrame, list[tuple[str, Labels]], tuple[np.ndarray, np.ndarray] | None]:
    """Every clustering of ``params`` on ``Z``, and ``RUN/neighbors.parquet``.

    The run's neighbours are searched once, with ``max(graph k, neighbors_k)`` columns when
    the similarity tree comes from the kNN graph; the first ``neighbors_k`` are written.
    Returns the metrics (kmeans rows, then agglomerative, then similarity), each method's
    labels (for :func:`lookalike.export.write_assignments`) and the cosine kNN of ``Z`` when
    the agglomerative graph tree searched it (for :func:`lookalike.reduce.write_pca`).
    """
    ks, seed, sample = params["k_values"], params["random_state"], params["silhouette_sample"]
    scoring = {"silhouette_sample": sample, "random_state": seed, "progress": progress}
    pca_dist = pca_sample_distances(Z, sample, seed)  # once: every PCA-space cut uses them
    metrics, labels = kmeans_sweep(
        Z, ks, algorithm=params["algorithm"], n_init=params["n_init"],
        silhouette_distances=pca_dist, **scoring,
    )  # fmt: skip
    all_metrics = [metrics]
    sweeps: list[tuple[str, Labels]] = [("kmeans", labels)]
    graph_k = params.get("graph_k")
    pca_knn = None
    if params["agglomerative"]:
        t_knn = time.perf_counter()
        if len(Z) > agglomerative_max and params["agglomerative_linkage"] == "average":
            # one search for the graph tree and for 05's near-duplicates (kept in pca.npz)
            pca_knn = nearest_neighbors(Z, k=max(graph_k or GRAPH_K, DUP_MAX_LINKS))
        knn_seconds = time.perf_counter() - t_knn
        ag_metrics, ag_labels = agglomerative_sweep(
            Z,
            ks,
            distance_threshold=params["agglomerative_threshold"],
            linkage=params["agglomerative_linkage"],
            max_samples=agglomerative_max,
            graph_k=graph_k or GRAPH_K,
            silhouette_distances=pca_dist,
            neighbours=pca_knn,
            **scoring,
        )
        ag_metrics["seconds"] += knn_seconds / len(ag_metrics)
        all_metrics.append(ag_metrics)
        sweeps.append(("agglomerative", ag_labels))
    t_sim = time.perf_counter()
    whitener = run_whitener(run, features, random_state=seed, keep=False)
    inputs = fused_inputs(features, random_state=seed, whitener=whitener)
    nk = params["neighbors_k"]
    sim_graph = bool(params["similarity"]) and graph_k is not None
    found = nearest_neighbors(**inputs, k=max(nk, graph_k) if sim_graph else nk, normalize=False)
    write_neighbors(run, inputs, image_ids, k=nk, neighbors=found)
    if params["similarity"]:
        # Silhouette in the tree's own distance (own), on the rows every method is scored on
        rows = silhouette_rows(len(Z), sample, seed)
        if sim_graph:
            top = found[0][:, :graph_k], found[1][:, :graph_k]
            tree, _ = knn_tree(*top, inputs["vectors"], progress=progress)
            own = sample_distances(inputs, rows)
        else:
            S = similarity_matrix(**inputs)
            own = sample_distances(inputs, rows, similarity=S)  # S's rows: not computed again
            D = similarity_distances(S)
            del S  # freed before the tree is built
            tree = merge_tree(D)
            del D
        build_seconds = time.perf_counter() - t_sim
        sim_metrics, sim_labels = agglomerative_sweep(
            Z, ks, tree=tree, graph=sim_graph, method="similarity", **scoring,
            silhouette_distances=own, silhouette_space=FUSED_SPACE,
        )  # fmt: skip
        sim_metrics["seconds"] += build_seconds / len(sim_metrics)
        all_metrics.append(sim_metrics)
        sweeps.append(("similarity", sim_labels))
    metrics = pd.concat(all_metrics, ignore_index=True) if len(all_metrics) > 1 else metrics
    return metrics, sweeps, pca_knn


def _print_done(n: int, d: int, Z: np.ndarray, pca: Any, metrics: pd.DataFrame, dt: float) -> None:
    evr = float(pca.explained_variance_ratio_.sum())
    parts = [f"{(metrics['method'] == m).sum()} {m}" for m in metrics["method"].unique()]
    best_txt = ""
    km = metrics[metrics["method"] == "kmeans"]
    if km["silhouette"].notna().any():
        best = km.loc[km["silhouette"].idxmax()]
        best_txt = f"; best kmeans silhouette {best['silhouette']:.3f} at k={int(best['k'])}"
    print_summary(
        f"cluster: {n} images, PCA {d}->{Z.shape[1]} dims ({100 * evr:.1f}% variance), "
        f"{' + '.join(parts)} clusterings ({metrics['estimator'].iloc[0]}){best_txt}; "
        f"{dt:.1f} s, {n * len(metrics) / max(dt, 1e-9):.0f} image-clusterings/s"
    )


def cluster_run(
    run_dir: str | os.PathLike[str] | RunLayout,
    *,
    pca_components: int | float | None = 100,
    whiten: bool | None = None,
    k_values: Iterable[int] | None = None,
    algorithm: str | None = None,
    n_init: int | None = None,
    random_state: int | None = 0,
    silhouette_sample: int | None = None,
    agglomerative: bool | None = None,
    agglomerative_threshold: float | None = None,
    agglomerative_linkage: str | None = None,
    agglomerative_max: int | None = None,
    similarity: bool | None = None,
    neighbors_k: int | None = None,
    export_folders: str | None = None,
    refit: bool | None = None,
    force: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """PCA, the KMeans sweep, agglomerative clustering and neighbours on ``RUN/embeddings/``.

    Every option given as ``None`` takes its value from :data:`CLUSTER_DEFAULTS`.

    Parameters
    ----------
    run_dir : str, Path or RunLayout
        The run folder (needs ``RUN/embeddings/`` from stage 03).
    pca_components : int, float or None, default 100
        See :func:`lookalike.reduce.fit_pca` (None there keeps every component).
    whiten : bool, default False
        See :func:`lookalike.reduce.fit_pca`.
    k_values, algorithm, n_init, random_state, silhouette_sample :
        See :func:`kmeans_sweep`; defaults :data:`DEFAULT_K_VALUES`, ``"auto"``,
        :data:`N_INIT`, 0 and :data:`SILHOUETTE_SAMPLE`.
    agglomerative : bool, default True
        Also cluster with :func:`agglomerative_sweep` (same k values, or
        ``agglomerative_threshold``). Above ``agglomerative_max`` images the tree comes
        from the cosine kNN graph of the PCA vectors (:mod:`lookalike.graph`; average
        linkage only: another linkage is skipped there with a message).
    agglomerative_threshold : float, optional
        Cosine distance at which to cut the tree, instead of cutting at every k.
    agglomerative_linkage : {"average", "complete", "single"}, default "average"
    agglomerative_max : int, default :data:`AGGLOMERATIVE_MAX`
        Largest number of images clustered with the exact dense trees (memory n^2); above
        it both trees come from the kNN graph (memory n k). Nothing is skipped for size.
    similarity : bool, default True
        When stage 03 ran the ``logos`` preset (``cluster_method`` "similarity" in
        ``RUN/embeddings/similarity.json``), also cut an average-linkage tree of the fused
        similarity (:mod:`lookalike.similarity`) at the same k values: ``method``
        "similarity", scored in the PCA space like the others except for silhouette, which
        is computed on ``1 -`` the fused similarity of the same sample
        (``silhouette_space`` "fused similarity"). Above ``agglomerative_max``
        the tree comes from the run's fused kNN graph (the search that also writes
        ``RUN/neighbors.parquet``, with :data:`lookalike.graph.GRAPH_K` columns).
    neighbors_k : int, default :data:`NEIGHBORS_K`
        Neighbours per image in ``RUN/neighbors.parquet``, under the similarity of the run's
        preset (fused for ``logos``, cosine for ``photos``).
    export_folders : {"none", "symlink", "copy"}, default "none"
        Also write ``RUN/clusters/`` with :func:`lookalike.export.export_cluster_folders`.
    refit : bool, default False
        When images were added to a clustered run (same parameters otherwise), False keeps
        the old images' PCA, whitening and clusters and places only the new ones
        (:func:`lookalike.extend.extend_run`); True re-clusters every image.
    force : bool, default False
        Recompute even if the outputs are current for the same embeddings and parameters
        (everything is re-clustered, as with ``refit``).

    Returns
    -------
    metrics : DataFrame (see :func:`kmeans_sweep`), also written to ``RUN/metrics.csv``; the
    kmeans rows first, then the agglomerative ones, then the similarity ones.

    Notes
    -----
    Writes ``RUN/clusters.parquet`` (see :func:`assignments_table`), ``RUN/pca.npz`` (see
    :func:`lookalike.reduce.write_pca`), ``RUN/neighbors.parquet`` (see
    :func:`lookalike.neighbors.write_neighbors`), ``RUN/metrics.csv``, and last the stamp
    ``RUN/cluster_params.json`` (:func:`lookalike.storage.write_stamp` of the parameters and
    input fingerprints, for resume). The same inputs and parameters give identical
    ``clusters.parquet`` files.
    """
    t0 = time.perf_counter()
    o = _resolve_options(
        whiten=whiten,
        k_values=k_values,
        algorithm=algorithm,
        n_init=n_init,
        silhouette_sample=silhouette_sample,
        agglomerative=agglomerative,
        agglomerative_linkage=agglomerative_linkage,
        agglomerative_max=agglomerative_max,
        similarity=similarity,
        neighbors_k=neighbors_k,
        export_folders=export_folders,
        refit=refit,
    )
    run = RunLayout(run_dir)
    ids, vectors = storage.read_embeddings(run)
    n = len(ids)
    features = load_features(run)
    params = _plan(
        run,
        n,
        features["settings"],
        o,
        pca_components=pca_components,
        random_state=random_state,
        agglomerative_threshold=agglomerative_threshold,
    )
    outputs = [run.metrics, run.clusters, run.pca, run.neighbors]
    if not force and storage.is_current(run.cluster_state, params, outputs=outputs):
        metrics = storage.read_table(run.metrics, required=METRICS_COLUMNS, what="metrics")
        print(
            f"cluster: {n} images, k in {params['k_values']}: outputs are current, "
            f"skipped ({time.perf_counter() - t0:.1f} s)"
        )
        export_cluster_folders(run, mode=o["export_folders"])
        return metrics

    image_ids = ids["image_id"].astype(str).tolist()
    why = "force" if force else can_extend(run, params, image_ids)
    storage.clear_stamp(run.cluster_state)
    X = np.asarray(vectors, dtype=np.float32)
    if not np.isfinite(X).all():
        bad = int((~np.isfinite(X).all(axis=1)).sum())
        raise ConfigError(f"{run.vectors} has {bad} rows with NaN/inf; re-run 03_embed_vgg16")
    if why is None and not o["refit"]:
        metrics = extend_run(run, X, image_ids, features, params)
        storage.write_stamp(run.cluster_state, params)
        export_cluster_folders(run, mode=o["export_folders"])
        return metrics
    if why is None or why not in ("force", "no complete earlier clustering", "no new images"):
        print(f"cluster: every image is clustered again: {why or 'refit: true'}")
    run.additions.unlink(missing_ok=True)  # it describes an extension these outputs replace
    Z, pca = fit_pca(X, n_components=pca_components, whiten=o["whiten"], random_state=random_state)
    metrics, sweeps, pca_knn = _cluster(
        run,
        Z,
        image_ids,
        features,
        params,
        agglomerative_max=o["agglomerative_max"],
        progress=progress,
    )
    write_pca(run, image_ids, Z, pca, neighbours=pca_knn)
    write_assignments(run.clusters, image_ids, sweeps)
    storage.write_table(metrics, run.metrics)
    storage.write_stamp(run.cluster_state, params)  # last: the outputs above are complete
    _print_done(n, X.shape[1], Z, pca, metrics, time.perf_counter() - t0)
    export_cluster_folders(run, mode=o["export_folders"])
    return metrics
