"""Stage 04's reduction: PCA of the embeddings, and ``RUN/pca.npz``.

:func:`fit_pca` projects the vectors onto their principal components (the space every
clustering of :mod:`lookalike.cluster` is scored in); :func:`write_pca` and
:func:`read_reduced` keep the result beside the run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.decomposition import PCA

from . import storage
from .exceptions import ConfigError
from .paths import RunLayout

#: Most rows a PCA is fitted on (here and for the fused similarity's whitening): above it a
#: seeded sample. 200,000 rows of 512-d features settle the components, and fitting on all
#: of 1,000,000 would hold centred copies of them (2 GB each).
FIT_ROWS = 200_000
#: Rows projected at a time when the fit was on a sample (bounds the temporaries).
TRANSFORM_ROWS = 1 << 16


def fit_rows(
    n_samples: int, max_rows: int | None = None, random_state: int | None = 0
) -> np.ndarray | None:
    """Row numbers to fit on: None (all of them) up to ``max_rows`` (default
    :data:`FIT_ROWS`), else a seeded sample of ``max_rows`` rows, sorted (int64)."""
    max_rows = FIT_ROWS if max_rows is None else int(max_rows)
    if n_samples <= max_rows:
        return None
    rng = np.random.default_rng(0 if random_state is None else random_state)
    return np.sort(rng.choice(n_samples, size=max_rows, replace=False)).astype(np.int64)


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
        Seed of the randomized SVD solver, which sklearn picks for large inputs, and of the
        sample it is fitted on above :data:`FIT_ROWS` rows (all rows are then projected, a
        block at a time).

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
                f"pca_components={n_components!r} (PCA n_components): a float must be a variance "
                "fraction in (0, 1)"
            )
        nc = float(n_components)
    else:
        if int(n_components) < 1:
            raise ConfigError(
                f"pca_components={n_components!r} (PCA n_components) must be >= 1, or a "
                "variance fraction in (0, 1)"
            )
        nc = min(int(n_components), limit)
    solver = "full" if isinstance(nc, float) else "auto"
    pca = PCA(n_components=nc, whiten=whiten, svd_solver=solver, random_state=random_state)
    rows = fit_rows(len(X), random_state=random_state)
    if rows is None:
        Z = pca.fit_transform(X).astype(np.float32)
    else:
        pca.fit(X[rows])
        Z = np.empty((len(X), pca.n_components_), dtype=np.float32)
        for s in range(0, len(X), TRANSFORM_ROWS):
            Z[s : s + TRANSFORM_ROWS] = pca.transform(X[s : s + TRANSFORM_ROWS])
    storage.drop_pages(X)  # a memory map of the embeddings: read once, not kept resident
    return Z, pca


def write_pca(
    run_dir: str | os.PathLike[str] | RunLayout,
    image_ids: Sequence[str],
    Z: np.ndarray,
    pca: PCA | Mapping[str, np.ndarray],
    neighbours: tuple[np.ndarray, np.ndarray] | None = None,
) -> None:
    """Write ``RUN/pca.npz``.

    It holds ``image_id`` (n,), ``explained_variance_ratio`` (n_components,), ``coords2d``
    (n, 2), the first two components for scatter plots (zero-padded), ``Z``
    (n, n_components), and the PCA itself (``mean`` (d,), ``components`` (n_components, d),
    ``explained_variance`` (n_components,), ``whiten`` ()), so that images added to the run
    later are projected by the same PCA (:func:`project`). ``pca`` is the fitted PCA, or
    those arrays as :func:`read_pca` returns them. ``neighbours``, the cosine kNN of ``Z``
    from :func:`lookalike.neighbors.nearest_neighbors` (index (n, k), similarity (n, k)), is
    kept beside ``Z`` as ``knn_index`` and ``knn_similarity`` (:func:`read_pca_neighbours`),
    so that stage 05's near-duplicates need not search again.
    """
    if not isinstance(pca, Mapping):
        pca = {
            "explained_variance_ratio": pca.explained_variance_ratio_.astype(np.float64),
            "mean": pca.mean_,
            "components": pca.components_,
            "explained_variance": pca.explained_variance_,
            "whiten": np.asarray(bool(pca.whiten)),
        }
    coords2d = np.zeros((len(Z), 2), dtype=np.float32)
    coords2d[:, : min(2, Z.shape[1])] = Z[:, :2]
    knn = {}
    if neighbours is not None:
        knn = {"knn_index": neighbours[0].astype(np.int32), "knn_similarity": neighbours[1]}
    with storage.atomic_path(RunLayout(run_dir).pca) as tmp, open(tmp, "wb") as fh:
        ids = np.asarray(image_ids, dtype=str)
        np.savez(fh, image_id=ids, coords2d=coords2d, Z=Z, **pca, **knn)


def read_pca(run_dir: str | os.PathLike[str] | RunLayout) -> dict[str, np.ndarray] | None:
    """The PCA stored in ``RUN/pca.npz`` (see :func:`write_pca`), or None when the file is
    missing or predates it."""
    path = RunLayout(run_dir).pca
    if not path.exists():
        return None
    keys = ("explained_variance_ratio", "mean", "components", "explained_variance", "whiten")
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in keys} if "components" in f else None


def read_pca_neighbours(
    run_dir: str | os.PathLike[str] | RunLayout,
) -> tuple[np.ndarray, np.ndarray] | None:
    """The cosine kNN of ``Z`` kept in ``RUN/pca.npz`` (:func:`write_pca`): index int64
    (n, k) and similarity float32 (n, k), or None when stage 04 kept none."""
    path = RunLayout(run_dir).pca
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as f:
        if "knn_index" not in f:
            return None
        return f["knn_index"].astype(np.int64), np.asarray(f["knn_similarity"], np.float32)


def read_reduced(run_dir: str | os.PathLike[str] | RunLayout) -> tuple[np.ndarray, np.ndarray]:
    """``(image_ids, Z)`` from ``RUN/pca.npz``: ids (n,) str and PCA vectors (n, m) float32."""
    path = RunLayout(run_dir).pca
    if not path.exists():
        raise ConfigError(f"{path} not found; run 04_pca_kmeans (cluster_run) first")
    with np.load(path, allow_pickle=False) as f:
        return f["image_id"].astype(str), np.asarray(f["Z"], dtype=np.float32)


def project(run_dir: str | os.PathLike[str] | RunLayout, X: np.ndarray) -> np.ndarray | None:
    """``X`` (m, d) projected by the PCA of ``RUN/pca.npz``: (m, n_components) float32, as
    ``PCA.transform`` would; None when the file predates the stored PCA (re-run 04)."""
    f = read_pca(run_dir)
    if f is None:
        return None
    Z = (np.asarray(X, dtype=np.float32) - f["mean"]) @ f["components"].T
    if bool(f["whiten"]):
        Z = Z / np.sqrt(np.maximum(f["explained_variance"], 1e-12))
    return Z.astype(np.float32)
