"""KMeans over a sweep of k, and the scores every clustering of stage 04 gets.

:func:`kmeans_sweep` fits KMeans (or MiniBatchKMeans) for every k; :func:`cluster_scores`
scores any clustering the same way (inertia, silhouette, Davies-Bouldin,
Calinski-Harabasz), so :mod:`lookalike.cluster` compares KMeans with its trees; silhouette
may instead be computed on a method's own distances (``silhouette_space``).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.metrics import silhouette_score

from .exceptions import ConfigError

#: Default k sweep (the original logo notebook's); k at or above the number of images is dropped.
DEFAULT_K_VALUES: tuple[int, ...] = (3, 5, 10, 20, 50, 70, 100, *range(200, 1001, 100))

#: ``algorithm="auto"`` uses MiniBatchKMeans above this many images, exact KMeans up to it.
#: Chosen from ``benchmarks/cluster.py`` (section "auto threshold"), whose rule is: above the
#: largest measured size at which MiniBatchKMeans is not yet at least 2x faster with inertia
#: within 2% of KMeans. Three runs on a busy 2-core machine: speed-up 1.97x, 1.80x, 1.95x at
#: 5,000 images; 3.5x, 1.41x, 2.27x at 10,000; 3.1x-3.4x at 20,000 (inertia +0.6% to +0.8%);
#: two of the three suggested 5,000.
MINIBATCH_ABOVE = 5_000

#: ``algorithm="auto"`` uses faiss (:func:`fit_faiss_kmeans`) above this many images. From
#: ``benchmarks/kmeans_scale.py`` (docs/benchmarks.md, "KMeans at large n"; busy 2-core
#: machine): at 100,000 rows faiss was slower than MiniBatchKMeans (0.34x-0.70x at k = 10 to
#: 1000); at 1,000,000 as fast or faster at equal inertia (within 1%: +0.4%, +0.1%, -0.1%):
#: 3.8x at k=10, 1.2x at k=100, 0.99x at k=1000. faiss trains on a sample of at most
#: 256 rows per centroid, so above 256,000 rows its cost stops growing with n for every k of
#: the sweep, while MiniBatchKMeans' passes over all rows keep growing; the threshold is set
#: above that, half way to the measured win (sizes in between were not measured).
FAISS_ABOVE = 500_000

#: MiniBatchKMeans batch size (raised to 3 k so that every batch can seed every centroid).
MINIBATCH_BATCH = 4096

#: Silhouette is O(n^2): above this many images it is computed on a fixed-seed sample.
SILHOUETTE_SAMPLE = 10_000

#: Exact KMeans restarts per k (the best inertia wins).
N_INIT = 4

#: faiss KMeans (``algorithm="faiss"``): Lloyd iterations from a k-means++ start. faiss's own
#: random start left the inertia 19-48% above MiniBatchKMeans' at k >= 100 on perturbed real
#: embeddings (benchmarks/kmeans_scale.py); from k-means++ it is within 0.4% (or lower).
FAISS_NITER = 20

#: faiss trains on a seeded sample of at most this many rows per centroid (faiss's default).
FAISS_MAX_POINTS_PER_CENTROID = 256

ALGORITHMS = ("auto", "kmeans", "minibatch", "faiss")

#: ``estimator`` column of the metrics for each choice of :func:`choose_algorithm`.
ESTIMATOR_NAMES = {"kmeans": "KMeans", "minibatch": "MiniBatchKMeans", "faiss": "faiss.Kmeans"}

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
    "silhouette_space",
]

#: ``silhouette_space`` of a silhouette computed on Euclidean distance in ``Z`` (the PCA space).
PCA_SPACE = "pca"

#: labels of one clustering: (labels (n,), distances to the cluster centre (n,))
Labels = dict[int, tuple[np.ndarray, np.ndarray]]


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
    """``"kmeans"``, ``"minibatch"`` or ``"faiss"`` for ``algorithm`` in :data:`ALGORITHMS`.

    ``"auto"`` is ``"faiss"`` above :data:`FAISS_ABOVE` samples, ``"minibatch"`` above
    :data:`MINIBATCH_ABOVE`, else ``"kmeans"``.
    """
    if algorithm not in ALGORITHMS:
        raise ConfigError(f"algorithm={algorithm!r} is not one of {list(ALGORITHMS)}")
    if algorithm == "auto":
        if n_samples > FAISS_ABOVE:
            return "faiss"
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


#: Rows per block of the dispersion scores' passes (bounds their float64 temporaries).
SCORE_BLOCK = 65_536


def cluster_means(Z: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean of each cluster and its size, summed in float64 a block of rows at a time.

    Parameters
    ----------
    Z : array (n_samples, n_features)
    labels : int array (n_samples,), 0..m-1

    Returns
    -------
    means : float64 (m, n_features), 0 for an empty label
    counts : int64 (m,)
    """
    labels = np.asarray(labels, dtype=np.int64)
    m = int(labels.max()) + 1
    counts = np.bincount(labels, minlength=m)
    sums = np.zeros((m, Z.shape[1]), dtype=np.float64)
    for s in range(0, len(Z), SCORE_BLOCK):
        lab = labels[s : s + SCORE_BLOCK]
        onehot = sparse.csr_matrix(
            (np.ones(len(lab)), (lab, np.arange(len(lab)))), shape=(m, len(lab))
        )
        sums += onehot @ np.asarray(Z[s : s + SCORE_BLOCK], dtype=np.float64)
    return sums / np.maximum(counts, 1)[:, None], counts


def _distances_to(Z: np.ndarray, centers: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Euclidean distance of each row of ``Z`` to ``centers[labels]``: float64 (n,)."""
    out = np.empty(len(Z), dtype=np.float64)
    for s in range(0, len(Z), SCORE_BLOCK):
        diff = np.asarray(Z[s : s + SCORE_BLOCK], np.float64) - centers[labels[s : s + SCORE_BLOCK]]
        out[s : s + SCORE_BLOCK] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return out


def dispersion_scores(
    Z: np.ndarray, labels: np.ndarray, means: np.ndarray, counts: np.ndarray, to_mean: np.ndarray
) -> tuple[float, float]:
    """Davies-Bouldin and Calinski-Harabasz of a clustering, from its cluster means.

    The formulas of :func:`sklearn.metrics.davies_bouldin_score` and
    :func:`sklearn.metrics.calinski_harabasz_score` (equal to them within float rounding;
    tests/test_kmeans.py), in O(n d + m^2 d) instead of one pass over the rows per cluster:
    at 1,000,000 rows and k = 1,000 that is seconds instead of minutes.

    Parameters
    ----------
    Z : array (n, d); labels : int (n,), 0..m-1, at least 2 non-empty and fewer than n
    means, counts : from :func:`cluster_means`
    to_mean : float (n,), each row's Euclidean distance to its cluster's mean

    Returns
    -------
    (davies_bouldin, calinski_harabasz)
    """
    n = len(labels)
    full = counts > 0
    means, counts = means[full], counts[full]
    k = len(counts)
    # Calinski-Harabasz: between- over within-cluster dispersion, each per degree of freedom
    centre = (means * counts[:, None]).sum(axis=0) / n
    extra = float((counts * ((means - centre) ** 2).sum(axis=1)).sum())
    intra = float(np.sum(to_mean**2))
    ch = 1.0 if intra == 0.0 else extra * (n - k) / (intra * (k - 1))
    # Davies-Bouldin: mean over clusters of the worst (s_i + s_j) / d(c_i, c_j)
    spread = np.bincount(labels, weights=to_mean, minlength=len(full))[full] / counts
    sq = (means**2).sum(axis=1)
    between = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * means @ means.T, 0.0))
    np.fill_diagonal(between, 0.0)
    if np.allclose(spread, 0) or np.allclose(between, 0):
        return 0.0, ch
    between[between == 0] = np.inf
    db = float(np.max((spread[:, None] + spread[None, :]) / between, axis=1).mean())
    return db, ch


def silhouette_rows(
    n_samples: int, silhouette_sample: int = SILHOUETTE_SAMPLE, random_state: int | None = 0
) -> np.ndarray:
    """The rows silhouette is computed on: all of them, or a seeded sample above the limit.

    The same draw as ``sklearn.metrics.silhouette_score(sample_size=...)``, so every
    clustering of a run is scored on the same rows. Returns int64 (min(n, sample),).
    """
    if n_samples <= silhouette_sample:
        return np.arange(n_samples, dtype=np.int64)
    seed = 0 if random_state is None else random_state
    return np.random.RandomState(seed).permutation(n_samples)[:silhouette_sample].astype(np.int64)


def pca_sample_distances(
    Z: np.ndarray, silhouette_sample: int = SILHOUETTE_SAMPLE, random_state: int | None = 0
) -> np.ndarray:
    """Euclidean distances between the :func:`silhouette_rows` of ``Z``: (m, m), float32.

    The distances ``silhouette_score(Z[rows], labels)`` computes, once for a whole sweep
    (every cut of a run is scored on the same rows): pass them as ``silhouette_distances``.
    """
    from sklearn.metrics import pairwise_distances

    rows = silhouette_rows(len(Z), silhouette_sample, random_state)
    return pairwise_distances(np.asarray(Z[rows], dtype=np.float32))


def cluster_scores(
    Z: np.ndarray,
    labels: np.ndarray,
    *,
    centers: np.ndarray | None = None,
    silhouette_sample: int = SILHOUETTE_SAMPLE,
    random_state: int | None = 0,
    silhouette_distances: np.ndarray | None = None,
    silhouette_space: str = PCA_SPACE,
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
    silhouette_distances : ndarray of shape (m, m), optional
        Distances between the rows of :func:`silhouette_rows` (``m`` of them), in the
        method's own distance, e.g. ``1 - `` the fused similarity
        (:func:`lookalike.similarity.sample_distances`); silhouette is then computed on them
        (``metric="precomputed"``) instead of on Euclidean distance in ``Z``. Inertia,
        Davies-Bouldin and Calinski-Harabasz need a Euclidean space and stay in ``Z``.
    silhouette_space : str, default "pca"
        Name of the space of ``silhouette_distances``, recorded as ``silhouette_space``.

    Returns
    -------
    scores : dict
        ``inertia`` (sum of squared Euclidean distances to the centres), ``silhouette``
        (-1..1, higher is better), ``davies_bouldin`` (>= 0, lower is better),
        ``calinski_harabasz`` (higher is better), all three on every sample but silhouette
        (:func:`dispersion_scores`), ``n_clusters`` (non-empty clusters),
        ``silhouette_n`` (samples silhouette was computed on) and ``silhouette_space``
        (``"pca"``, or the ``silhouette_space`` given). A score that is undefined (one
        cluster, or one sample per cluster) is NaN.
    distances : float32 array of shape (n_samples,)
        Euclidean distance of each sample to its cluster's centre.
    """
    Z = np.asarray(Z, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    n = len(Z)
    means, counts = cluster_means(Z, labels)
    to_mean = _distances_to(Z, means, labels)
    dist = to_mean if centers is None else _distances_to(Z, np.asarray(centers, np.float64), labels)
    n_clusters = int((counts > 0).sum())
    nan = float("nan")
    sil = db = ch = nan
    if 2 <= n_clusters <= n - 1:
        db, ch = dispersion_scores(Z, labels, means, counts, to_mean)
    idx = silhouette_rows(n, silhouette_sample, random_state)
    space = PCA_SPACE
    if silhouette_distances is not None:
        if silhouette_distances.shape != (len(idx), len(idx)):
            raise ValueError(
                f"silhouette_distances has shape {silhouette_distances.shape}; it must be "
                f"({len(idx)}, {len(idx)}): the rows of silhouette_rows({n}, "
                f"{silhouette_sample}, {random_state})"
            )
        space = silhouette_space
    if 2 <= len(np.unique(labels[idx])) <= len(idx) - 1:
        if silhouette_distances is None:
            sil = float(silhouette_score(Z[idx], labels[idx]))
        else:
            sil = float(silhouette_score(silhouette_distances, labels[idx], metric="precomputed"))
    scores = {
        "inertia": float(np.sum(dist**2)),
        "silhouette": sil,
        "davies_bouldin": db,
        "calinski_harabasz": ch,
        "n_clusters": n_clusters,
        "silhouette_n": len(idx),
        "silhouette_space": space,
    }
    return scores, dist.astype(np.float32)


def metrics_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows of scores as a table with the columns and dtypes of :data:`METRICS_COLUMNS`."""
    metrics = pd.DataFrame(rows, columns=METRICS_COLUMNS)
    for col in ("k", "n_clusters", "silhouette_n"):
        metrics[col] = metrics[col].astype("int64")
    for col in ("inertia", "silhouette", "davies_bouldin", "calinski_harabasz", "seconds"):
        metrics[col] = metrics[col].astype("float64")
    return metrics


def fit_faiss_kmeans(
    Z: np.ndarray,
    k: int,
    *,
    niter: int = FAISS_NITER,
    max_points_per_centroid: int = FAISS_MAX_POINTS_PER_CENTROID,
    init: str = "k-means++",
    random_state: int | None = 0,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """KMeans with faiss: a k-means++ start, then ``niter`` Lloyd iterations in faiss.

    Parameters
    ----------
    Z : float32 array of shape (n_samples, n_features)
    k : int
        Number of clusters, ``< n_samples``.
    niter : int, default :data:`FAISS_NITER`
    max_points_per_centroid : int, default :data:`FAISS_MAX_POINTS_PER_CENTROID`
        faiss trains on a seeded sample of ``k * max_points_per_centroid`` rows when there are
        more; every row is assigned at the end.
    init : {"k-means++", "random"}, default "k-means++"
        ``k-means++``: sklearn's seeding on a seeded sample of ``max(3 * MINIBATCH_BATCH,
        3 k)`` rows (as MiniBatchKMeans seeds); ``random``: faiss's own (k random rows).
    random_state : int or None, default 0
        Seed of the samples, of the seeding and of faiss; None is 0 (faiss needs a seed).
    threads : int or None, default None
        faiss's OpenMP threads; None: this process's CPUs. The labels do not depend on it
        (checked by benchmarks/kmeans_scale.py): each centroid is summed by one thread.

    Returns
    -------
    labels : int64 array of shape (n_samples,)
        Index of each row's nearest centroid.
    centers : float32 array of shape (k, n_features)
    """
    from sklearn.cluster import kmeans_plusplus
    from threadpoolctl import threadpool_limits

    from .index import _faiss

    faiss = _faiss()
    if threads is not None:
        faiss.omp_set_num_threads(int(threads))
    Z = np.ascontiguousarray(Z, dtype=np.float32)
    n, d = Z.shape
    seed = 0 if random_state is None else int(random_state)
    start = None
    if init == "k-means++":
        rows = np.random.RandomState(seed).permutation(n)[: max(3 * MINIBATCH_BATCH, 3 * k)]
        # Thin matrix products: threaded BLAS only thrashes on them (see kmeans_sweep).
        with threadpool_limits(limits=1, user_api="blas"):
            start, _ = kmeans_plusplus(Z[np.sort(rows)], k, random_state=seed)
        start = np.ascontiguousarray(start, dtype=np.float32)
    elif init != "random":
        raise ConfigError(f"init={init!r} is not 'k-means++' or 'random'")
    # min_points_per_centroid=1: small inputs are fine here, and faiss would print a warning.
    model = faiss.Kmeans(d, k, niter=int(niter), nredo=1, seed=seed, spherical=False,
                         max_points_per_centroid=int(max_points_per_centroid),
                         min_points_per_centroid=1, verbose=False)  # fmt: skip
    model.train(Z, init_centroids=start)
    _, nearest = model.index.search(Z, 1)
    return nearest[:, 0].astype(np.int64), np.asarray(model.centroids, dtype=np.float32)


def _fit_kmeans(
    Z: np.ndarray, k: int, *, estimator: str, n_init: int, random_state: int | None
) -> tuple[np.ndarray, np.ndarray]:
    if estimator == "faiss":
        return fit_faiss_kmeans(Z, k, random_state=random_state)
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
    n_init: int = N_INIT,
    random_state: int | None = 0,
    silhouette_sample: int = SILHOUETTE_SAMPLE,
    progress: bool = True,
    silhouette_distances: np.ndarray | None = None,
) -> tuple[pd.DataFrame, Labels]:
    """Fit KMeans for every k and score each clustering.

    Parameters
    ----------
    Z : array of shape (n_samples, n_features)
        Usually the PCA output.
    k_values : iterable of int
        Numbers of clusters; clipped with :func:`clip_k_values`.
    algorithm : {"auto", "kmeans", "minibatch", "faiss"}, default "auto"
        ``kmeans``: exact Lloyd KMeans; ``minibatch``: MiniBatchKMeans (batches of
        :data:`MINIBATCH_BATCH`); ``faiss``: :func:`fit_faiss_kmeans`; ``auto``: faiss above
        :data:`FAISS_ABOVE` samples, minibatch above :data:`MINIBATCH_ABOVE`, else kmeans.
    n_init : int, default 4
        Restarts of exact KMeans per k; the best inertia wins. MiniBatchKMeans makes one
        k-means++ start (sklearn's default; more did not help, see benchmarks/cluster.py).
    random_state : int or None, default 0
        Seed of KMeans and of the silhouette sample; a fixed seed gives identical labels.
    silhouette_sample : int, default :data:`SILHOUETTE_SAMPLE`
        Silhouette is O(n^2): above this many samples it is computed on a fixed-seed sample.
    silhouette_distances : ndarray (m, m), optional
        :func:`pca_sample_distances` of ``Z``, computed once by the caller for a whole run.

    Returns
    -------
    metrics : DataFrame, one row per k, columns :data:`METRICS_COLUMNS`
        ``method`` is "kmeans"; ``estimator`` "KMeans", "MiniBatchKMeans" or "faiss.Kmeans";
        ``seconds`` is fit + scoring. See :func:`cluster_scores` for the scores.
    labels : dict k -> (labels, distances)
        ``labels`` int64 (n_samples,), numbered by decreasing cluster size (0 is largest);
        ``distances`` float32 (n_samples,), Euclidean distance to the centroid in ``Z``.
    """
    from threadpoolctl import threadpool_limits

    from .progress import bar as progress_bar

    Z = np.ascontiguousarray(Z, dtype=np.float32)
    ks = clip_k_values(k_values, len(Z))
    estimator = choose_algorithm(algorithm, len(Z))
    name = ESTIMATOR_NAMES[estimator]
    rows: list[dict[str, Any]] = []
    out: Labels = {}
    # The k-means++ seeding does many thin matrix products; threaded BLAS only thrashes on
    # them (measured 5-20x slower on a busy 2-core machine). Lloyd's loop uses OpenMP anyway.
    # faiss's Lloyd loop is BLAS itself (it limits the threads of its own seeding).
    with threadpool_limits(limits=None if estimator == "faiss" else 1, user_api="blas"):
        for k in progress_bar(ks, desc=f"kmeans ({name})", unit="k", disable=not progress):
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
                silhouette_distances=silhouette_distances,
            )
            seconds = time.perf_counter() - t0
            rows.append(
                {"method": "kmeans", "k": k, **scores, "seconds": seconds, "estimator": name}
            )
            out[k] = (labels, dist)
    return metrics_frame(rows), out
