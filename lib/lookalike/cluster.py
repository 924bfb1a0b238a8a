"""Stage 04: reduce the embeddings with PCA and sweep KMeans over a range of k.

:func:`fit_pca`, :func:`clip_k_values` and :func:`kmeans_sweep` work on plain arrays;
:func:`cluster_run` reads ``RUN/embeddings/`` and writes ``RUN/metrics.csv``,
``RUN/clusters.parquet`` and ``RUN/pca.npz``.
"""

from __future__ import annotations

import io as _stdio
import json
import os
import time
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

from . import io
from .exceptions import ConfigError
from .paths import resolve

#: Default k sweep: 2..20 clusters.
DEFAULT_K_VALUES: tuple[int, ...] = tuple(range(2, 21))

METRICS_COLUMNS = [
    "method",
    "k",
    "inertia",
    "silhouette",
    "davies_bouldin",
    "calinski_harabasz",
    "seconds",
]
CLUSTERS_COLUMNS = ["image_id", "method", "k", "cluster", "distance", "rank"]

METRICS_NAME = "metrics.csv"
CLUSTERS_NAME = "clusters.parquet"
PCA_NAME = "pca.npz"
PARAMS_NAME = "cluster_params.json"


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


def _scores(
    Z: np.ndarray, labels: np.ndarray, *, silhouette_sample: int, random_state: int | None
) -> tuple[float, float, float]:
    if len(np.unique(labels)) < 2:  # KMeans on duplicate points can leave clusters empty
        return float("nan"), float("nan"), float("nan")
    sample = silhouette_sample if len(Z) > silhouette_sample else None
    seed = 0 if random_state is None else random_state
    sil = float(silhouette_score(Z, labels, sample_size=sample, random_state=seed))
    return sil, float(davies_bouldin_score(Z, labels)), float(calinski_harabasz_score(Z, labels))


def kmeans_sweep(
    Z: np.ndarray,
    k_values: Iterable[int],
    *,
    n_init: int = 4,
    random_state: int | None = 0,
    silhouette_sample: int = 10_000,
    progress: bool = True,
) -> tuple[pd.DataFrame, dict[int, tuple[np.ndarray, np.ndarray]]]:
    """Fit KMeans for every k and score each clustering.

    Parameters
    ----------
    Z : array of shape (n_samples, n_features)
        Usually the PCA output.
    k_values : iterable of int
        Numbers of clusters; clipped with :func:`clip_k_values`.
    n_init : int, default 4
        KMeans restarts per k (the best inertia wins).
    random_state : int or None, default 0
        Seed of KMeans and of the silhouette subsample.
    silhouette_sample : int, default 10_000
        Silhouette is O(n^2): above this many samples it is estimated on a fixed-seed sample.

    Returns
    -------
    metrics : DataFrame, one row per k
        ``method`` ("kmeans"), ``k``, ``inertia`` (sum of squared distances to the centroids),
        ``silhouette`` (-1..1, higher is better), ``davies_bouldin`` (>= 0, lower is better),
        ``calinski_harabasz`` (higher is better), ``seconds`` (fit + scoring).
    labels : dict k -> (labels, distances)
        ``labels`` int array (n_samples,), ``distances`` float32 (n_samples,), the Euclidean
        distance of each sample to its centroid in ``Z`` space.
    """
    from tqdm.auto import tqdm

    Z = np.asarray(Z, dtype=np.float32)
    ks = clip_k_values(k_values, len(Z))
    rows: list[dict[str, Any]] = []
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for k in tqdm(ks, desc="kmeans", unit="k", disable=not progress):
        t0 = time.perf_counter()
        km = KMeans(n_clusters=k, n_init=n_init, random_state=random_state)
        labels = km.fit_predict(Z)
        dist = km.transform(Z)[np.arange(len(Z)), labels].astype(np.float32)
        sil, db, ch = _scores(
            Z, labels, silhouette_sample=silhouette_sample, random_state=random_state
        )
        rows.append(
            {
                "method": "kmeans",
                "k": k,
                "inertia": float(km.inertia_),
                "silhouette": sil,
                "davies_bouldin": db,
                "calinski_harabasz": ch,
                "seconds": time.perf_counter() - t0,
            }
        )
        out[k] = (labels.astype(np.int64), dist)
    metrics = pd.DataFrame(rows, columns=METRICS_COLUMNS)
    metrics["k"] = metrics["k"].astype("int64")
    return metrics, out


def assignments_table(
    image_ids: Iterable[str],
    labels: dict[int, tuple[np.ndarray, np.ndarray]],
    *,
    method: str = "kmeans",
) -> pd.DataFrame:
    """Long table of cluster assignments: one row per (image, k).

    Returns
    -------
    DataFrame with ``image_id``, ``method``, ``k``, ``cluster``, ``distance`` (to the centroid,
    in PCA space) and ``rank`` (0 = nearest the centroid within its cluster; ties by row order).
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


def cluster_run(
    run_dir: str | os.PathLike[str],
    *,
    pca_components: int | float | None = 100,
    whiten: bool = False,
    k_values: Iterable[int] = DEFAULT_K_VALUES,
    n_init: int = 4,
    random_state: int | None = 0,
    silhouette_sample: int = 10_000,
    force: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """PCA + KMeans sweep on ``RUN/embeddings/``; write metrics, assignments and PCA outputs.

    Parameters
    ----------
    run_dir : str or Path
        The run folder (needs ``RUN/embeddings/`` from stage 03).
    pca_components, whiten :
        See :func:`fit_pca`.
    k_values, n_init, random_state, silhouette_sample :
        See :func:`kmeans_sweep`.
    force : bool, default False
        Recompute even if the outputs exist for the same embeddings and parameters.

    Returns
    -------
    metrics : DataFrame (see :func:`kmeans_sweep`), also written to ``RUN/metrics.csv``.

    Notes
    -----
    Writes ``RUN/clusters.parquet`` (see :func:`assignments_table`), ``RUN/pca.npz`` with
    ``image_id`` (n,), ``explained_variance_ratio`` (n_components,), ``coords2d`` (n, 2), the
    first two components for scatter plots, and ``Z`` (n, n_components), and
    ``RUN/cluster_params.json`` (parameters and input fingerprints, for resume).
    """
    t0 = time.perf_counter()
    run = resolve(run_dir)
    vec_path, ids_path = io.embeddings_paths(run)
    ids, vectors = io.read_embeddings(run)
    requested = [int(k) for k in k_values]
    ks = clip_k_values(requested, len(ids))
    if not ks:
        raise ConfigError(
            f"no usable k in k_values={requested} for {len(ids)} images: every k must be "
            f">= 2 and < the number of images; embed more images or lower k"
        )
    params = {
        "pca_components": pca_components,
        "whiten": bool(whiten),
        "k_values": ks,
        "n_init": int(n_init),
        "random_state": random_state,
        "silhouette_sample": int(silhouette_sample),
        "vectors_sha256": io.sha256_file(vec_path),
        "ids_sha256": io.sha256_file(ids_path),
    }
    outputs = [run / METRICS_NAME, run / CLUSTERS_NAME, run / PCA_NAME]
    params_path = run / PARAMS_NAME
    if not force and params_path.exists() and all(p.exists() for p in outputs):
        try:
            old = json.loads(params_path.read_text())
        except ValueError:
            old = None
        if old == params:
            metrics = io.read_table(run / METRICS_NAME, required=METRICS_COLUMNS, what="metrics")
            print(
                f"cluster: {len(ids)} images, k in {params['k_values']}: outputs are current, "
                f"skipped ({time.perf_counter() - t0:.1f} s)"
            )
            return metrics

    X = np.asarray(vectors, dtype=np.float32)
    if not np.isfinite(X).all():
        bad = int((~np.isfinite(X).all(axis=1)).sum())
        raise ConfigError(f"{vec_path} has {bad} rows with NaN/inf; re-run 03_embed_vgg16")
    Z, pca = fit_pca(X, n_components=pca_components, whiten=whiten, random_state=random_state)
    metrics, labels = kmeans_sweep(
        Z,
        ks,
        n_init=n_init,
        random_state=random_state,
        silhouette_sample=silhouette_sample,
        progress=progress,
    )
    table = assignments_table(ids["image_id"].astype(str), labels)

    coords2d = np.zeros((len(Z), 2), dtype=np.float32)
    coords2d[:, : min(2, Z.shape[1])] = Z[:, :2]
    buf = _stdio.BytesIO()
    np.savez(
        buf,
        image_id=ids["image_id"].to_numpy(dtype=str),
        explained_variance_ratio=pca.explained_variance_ratio_.astype(np.float64),
        coords2d=coords2d,
        Z=Z,
    )
    io.atomic_write_bytes(run / PCA_NAME, buf.getvalue())
    io.write_table(table, run / CLUSTERS_NAME)
    io.write_table(metrics, run / METRICS_NAME)
    io.atomic_write_bytes(params_path, (json.dumps(params, indent=2) + "\n").encode())

    dt = time.perf_counter() - t0
    evr = float(pca.explained_variance_ratio_.sum())
    best_txt = ""
    if metrics["silhouette"].notna().any():
        best = metrics.loc[metrics["silhouette"].idxmax()]
        best_txt = f"; best silhouette {best['silhouette']:.3f} at k={int(best['k'])}"
    print(
        f"cluster: {len(ids)} images, PCA {X.shape[1]}->{Z.shape[1]} dims "
        f"({100 * evr:.1f}% variance), {len(metrics)} k values{best_txt}; {dt:.1f} s"
    )
    return metrics
