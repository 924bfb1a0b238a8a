"""Nearest neighbours: the one L2 normaliser, the one neighbour search, ``neighbors.parquet``.

:func:`nearest_neighbors` answers "which images are most like this one?" for every use in
the package: plain cosine on raw vectors (stage 03's check, 05's "more like this"), or the
fused similarity of :mod:`lookalike.similarity` (wholes, lockup parts and colour), computed
in row blocks so memory never holds an n x n matrix. :func:`write_neighbors` and
:func:`read_neighbors` keep stage 04's table of every image's neighbours.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from . import storage
from .paths import RunLayout

NEIGHBORS_COLUMNS = ["image_id", "rank", "neighbor_id", "similarity"]

#: Rows of the (possibly memory-mapped) vectors normalised at a time by a cosine search.
COSINE_CHUNK = 4096


def l2_normalize(v: np.ndarray) -> np.ndarray:
    """``v`` scaled to unit L2 norm along its last axis (all-zero rows stay zero).

    Parameters
    ----------
    v : ndarray of shape (..., d)

    Returns
    -------
    ndarray of the same shape, float32
    """
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    return (v / np.maximum(norms, 1e-12)).astype(np.float32)


def check_features(
    vectors: np.ndarray,
    parts: np.ndarray | None = None,
    part_mask: np.ndarray | None = None,
    colour: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """The fused-similarity inputs as float32/bool arrays, their shapes checked.

    Returns
    -------
    vectors (n, d), parts (n, m, d) or None, part_mask (n, m) or None (all True when parts
    are given without a mask), colour (n, c) or None.

    Raises
    ------
    ValueError
        If a shape does not fit ``vectors``.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise ValueError(f"vectors must be (n, d), got shape {vectors.shape}")
    n = vectors.shape[0]
    if parts is not None:
        parts = np.asarray(parts, dtype=np.float32)
        part_mask = (
            np.ones(parts.shape[:2], bool) if part_mask is None else np.asarray(part_mask, bool)
        )
        if parts.ndim != 3 or parts.shape[0] != n or parts.shape[2] != vectors.shape[1]:
            raise ValueError(
                f"parts must be (n, m, d) = ({n}, m, {vectors.shape[1]}), got {parts.shape}"
            )
        if part_mask.shape != parts.shape[:2]:
            raise ValueError(f"part_mask must be {parts.shape[:2]}, got {part_mask.shape}")
    if colour is not None:
        colour = np.asarray(colour, dtype=np.float32)
        if colour.ndim != 2 or colour.shape[0] != n:
            raise ValueError(f"colour must be (n, bins**3) with n={n}, got {colour.shape}")
    return vectors, parts, part_mask, colour


def block_rows(n: int, m: int, budget: int = 20_000_000) -> int:
    """Rows per block of a fused similarity over ``n`` images with ``m`` parts each.

    A block of r rows holds about ``r * n * (1 + 2 m)`` float32 values; ``budget`` caps that
    (20 million: 80 MB).
    """
    return max(1, min(n, budget // max(1, n * (1 + 2 * m))))


def similarity_rows(
    rows: slice | np.ndarray,
    vectors: np.ndarray,
    parts: np.ndarray | None,
    part_mask: np.ndarray | None,
    colour: np.ndarray | None,
    colour_weight: float,
) -> np.ndarray:
    """Fused similarity of the images ``rows`` to every image: (len(rows), n), float32.

    The inputs are those of :func:`check_features`, already checked; see
    :func:`lookalike.similarity.similarity_matrix` for the formula.
    """
    w = vectors[rows]
    s = w @ vectors.T
    if parts is not None and part_mask is not None and part_mask.any():
        n, m, d = parts.shape
        r = w.shape[0]
        # whole_i . part_j  and  part_i . whole_j as matrix products (BLAS), absent parts -inf
        wp = (w @ parts.reshape(n * m, d).T).reshape(r, n, m)
        wp = np.where(part_mask[None, :, :], wp, -np.inf).max(axis=2)
        pw = (parts[rows].reshape(r * m, d) @ vectors.T).reshape(r, m, n)
        pw = np.where(part_mask[rows][:, :, None], pw, -np.inf).max(axis=1)
        s = np.maximum(s, np.maximum(wp, pw))
    if colour is not None and colour_weight > 0:
        s = (1.0 - colour_weight) * s + colour_weight * (colour[rows] @ colour.T)
    return s.astype(np.float32)


def _cosine_rows(vectors: np.ndarray, q: np.ndarray, chunk: int) -> np.ndarray:
    """Cosine of rows ``q`` to every row, reading ``chunk`` rows of ``vectors`` at a time."""
    unit = l2_normalize(np.asarray(vectors[q], dtype=np.float32))
    n = len(vectors)
    return np.concatenate(
        [unit @ l2_normalize(np.asarray(vectors[s : s + chunk])).T for s in range(0, n, chunk)],
        axis=1,
    )


def nearest_neighbors(
    vectors: np.ndarray,
    queries: Sequence[int] | np.ndarray | None = None,
    *,
    k: int = 10,
    parts: np.ndarray | None = None,
    part_mask: np.ndarray | None = None,
    colour: np.ndarray | None = None,
    colour_weight: float = 0.0,
    normalize: bool = True,
    chunk: int = COSINE_CHUNK,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most similar other rows of each query row, most similar first.

    Two similarities: plain **cosine** (``normalize=True``, the default: the rows of
    ``vectors`` are scaled to unit length, ``chunk`` rows at a time, so a memory map of
    :func:`lookalike.storage.read_embeddings` need not fit in memory), or the **fused**
    similarity of :func:`lookalike.similarity.similarity_matrix` (``normalize=False``, on
    unit vectors such as :func:`lookalike.similarity.fused_inputs` gives, with ``parts``
    and ``colour``). Either way the scores are computed a block of query rows at a time
    (:func:`block_rows`), never as an n x n matrix. A row is never its own neighbour; ties
    are broken by row order, so results are reproducible.

    Parameters
    ----------
    vectors : ndarray (n, d)
    queries : sequence of int, optional
        Row numbers; default every row.
    k : int, default 10
        Clipped to n - 1 (no neighbours at all for a single row).
    parts, part_mask, colour, colour_weight
        As in :func:`lookalike.similarity.similarity_matrix`; only with ``normalize=False``.
    normalize : bool, default True
        Cosine of raw vectors; False when ``vectors`` already have unit length.
    chunk : int, default COSINE_CHUNK
        Rows normalised at a time by the cosine search.

    Returns
    -------
    index : int64 ndarray (m, k), row numbers, nearest first
    similarity : float32 ndarray (m, k), their similarity to the query (cosine: -1..1)
    """
    fused = not normalize
    if fused:
        vectors, parts, part_mask, colour = check_features(vectors, parts, part_mask, colour)
    n = len(vectors)
    q = np.arange(n) if queries is None else np.asarray(queries, dtype=np.int64)
    k = int(max(0, min(int(k), n - 1)))
    index = np.empty((len(q), k), dtype=np.int64)
    similarity = np.empty((len(q), k), dtype=np.float32)
    if k == 0:
        return index, similarity
    m = 0 if parts is None else parts.shape[1]
    step = block_rows(n, m)
    for s in range(0, len(q), step):
        if queries is None:  # a slice: the same blocks as a full similarity matrix
            rows: slice | np.ndarray = slice(s, min(n, s + step))
            r = np.arange(rows.start, rows.stop)
        else:
            rows = r = q[s : s + step]
        if fused:
            block = similarity_rows(rows, vectors, parts, part_mask, colour, colour_weight)
        else:
            block = _cosine_rows(vectors, r, int(chunk))
        block[np.arange(len(r)), r] = -np.inf  # not its own neighbour
        # stable sort on -similarity: equal scores keep row order
        order = np.argsort(-block, axis=1, kind="stable")[:, :k]
        index[s : s + len(r)] = order
        similarity[s : s + len(r)] = np.take_along_axis(block, order, axis=1)
    return index, similarity


def neighbors_table(
    index: np.ndarray, similarity: np.ndarray, image_ids: Sequence[str] | None = None
) -> pd.DataFrame:
    """Long table of every row's neighbours from :func:`nearest_neighbors` (all rows queried).

    Parameters
    ----------
    index, similarity : ndarray (n, k)
    image_ids : sequence of str, optional
        Row names (default ``"0"``, ``"1"``, ...).

    Returns
    -------
    DataFrame with columns :data:`NEIGHBORS_COLUMNS`: image_id (str), rank (int, 1 =
    nearest), neighbor_id (str), similarity (float32); n * k rows sorted by image then rank.
    """
    n, k = index.shape
    ids = np.asarray([str(i) for i in range(n)] if image_ids is None else list(image_ids))
    if len(ids) != n:
        raise ValueError(f"image_ids has {len(ids)} entries for {n} vectors")
    if k < 1:
        return pd.DataFrame({c: [] for c in NEIGHBORS_COLUMNS}).astype(
            {"image_id": str, "rank": int, "neighbor_id": str, "similarity": np.float32}
        )
    return pd.DataFrame(
        {
            "image_id": np.repeat(ids, k),
            "rank": np.tile(np.arange(1, k + 1), n),
            "neighbor_id": ids[index.ravel()],
            "similarity": similarity.ravel(),
        }
    )


def write_neighbors(
    run_dir: str | os.PathLike[str] | RunLayout,
    inputs: dict[str, Any],
    image_ids: Sequence[str],
    *,
    k: int = 10,
) -> pd.DataFrame:
    """Write ``RUN/neighbors.parquet``: every image's ``k`` most similar images.

    Parameters
    ----------
    run_dir : str, Path or RunLayout
    inputs : dict
        :func:`lookalike.similarity.fused_inputs` (unit vectors, parts, colour).
    image_ids : sequence of str, one per row of ``inputs["vectors"]``
    k : int, default 10

    Returns
    -------
    The table written (see :func:`neighbors_table`); ``similarity`` is the fused similarity
    of the run's preset (cosine for ``photos``).
    """
    index, similarity = nearest_neighbors(**inputs, k=k, normalize=False)
    table = neighbors_table(index, similarity, image_ids)
    storage.write_table(table, RunLayout(run_dir).neighbors)
    return table


def read_neighbors(run_dir: str | os.PathLike[str] | RunLayout) -> pd.DataFrame | None:
    """``RUN/neighbors.parquet``, or None when stage 04 has not written it."""
    path = RunLayout(run_dir).neighbors
    if not path.is_file():
        return None
    return storage.read_table(path, required=NEIGHBORS_COLUMNS, what="neighbours")
