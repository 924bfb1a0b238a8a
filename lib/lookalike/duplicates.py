"""Images alike in the PCA space: neighbours and near-duplicate groups.

* :func:`run_neighbours` (the run's own similarity, ``RUN/neighbors.parquet``, with the
  cosine of the PCA vectors as the fallback): "more like this";
* :func:`near_duplicate_groups` and :func:`find_near_duplicates`: groups of images whose
  cosine similarity is at least a threshold, written to ``RUN/near_duplicates.csv``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from . import storage
from .cluster import image_paths
from .exceptions import ConfigError
from .index import EXACT_MAX, range_pairs
from .neighbors import l2_normalize, nearest_neighbors, read_neighbors
from .paths import RunLayout, resolve
from .reduce import read_reduced

__all__ = [
    "DUP_THRESHOLD",
    "NEAR_DUPLICATES_COLUMNS",
    "N_NEIGHBOURS",
    "find_near_duplicates",
    "near_duplicate_groups",
    "run_neighbours",
]

NEAR_DUPLICATES_COLUMNS = ["group", "image_id", "path", "group_size", "max_similarity"]
#: Cosine similarity at or above which two images are near-duplicates, by default.
DUP_THRESHOLD = 0.97
#: Neighbours listed per image by default (the notebook's browser and the HTML gallery).
N_NEIGHBOURS = 8


def run_neighbours(
    run_dir: str | os.PathLike[str],
    ids: Sequence[str] | np.ndarray,
    Z: np.ndarray,
    queries: Sequence[int] | np.ndarray,
    n_neighbours: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """'More like this': each query's nearest images under the run's own similarity.

    Reads ``RUN/neighbors.parquet`` (stage 04; the fused similarity of the ``logos`` preset,
    cosine for ``photos``) and falls back to the cosine of ``Z``
    (:func:`lookalike.neighbors.nearest_neighbors`) for queries it does not cover (an older
    run, or more neighbours than it stores).

    Returns
    -------
    index : int64 array (m, n), rows of ``ids``, nearest first
    distance : float32 array (m, n), ``1 - similarity``
    """
    q = np.asarray(queries, dtype=np.int64)
    nn = max(0, min(int(n_neighbours), len(ids) - 1))
    idx, sim = nearest_neighbors(Z, q, k=nn)
    dist = np.clip(1.0 - sim, 0.0, 2.0)
    table = read_neighbors(run_dir)
    if table is None or nn == 0 or int(table["rank"].max()) < nn:
        return idx, dist
    row_of = {str(i): r for r, i in enumerate(ids)}
    table = table[table["rank"] <= nn].sort_values(["image_id", "rank"])
    by_id = {
        image_id: (g["neighbor_id"].astype(str).tolist(), g["similarity"].to_numpy())
        for image_id, g in table.groupby("image_id", sort=False)
    }
    for r, row in enumerate(q):
        got = by_id.get(str(ids[row]))
        if got is None or len(got[0]) < nn or any(n not in row_of for n in got[0]):
            continue
        idx[r] = [row_of[n] for n in got[0]]
        dist[r] = 1.0 - got[1].astype(np.float32)
    return idx, dist


def near_duplicate_groups(
    Z: np.ndarray, threshold: float = DUP_THRESHOLD, *, exact_max: int | None = None
) -> list[np.ndarray]:
    """Groups of rows linked by cosine similarity above ``threshold``.

    Two rows are linked when their cosine similarity is at least ``threshold``; a group is a
    connected set of links (so a chain a~b~c is one group even if a and c are further apart).
    Returns the groups of 2 or more rows, largest first, each sorted by row index.

    The links come from :func:`lookalike.index.range_pairs`: exact up to ``exact_max`` rows
    (default :data:`lookalike.index.EXACT_MAX`), a range search of the faiss index above, so
    no n x n similarity is ever held.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if not 0.0 < float(threshold) <= 1.0:
        raise ConfigError(f"dup_threshold={threshold!r} must be a cosine similarity in (0, 1]")
    U = l2_normalize(np.asarray(Z, dtype=np.float32))
    if len(U) < 2:
        return []
    # The link rule of the radius search this replaced: |a-b| <= sqrt(2 - 2t) + 1e-6 for unit
    # vectors, i.e. cos >= 1 - r^2 / 2; the small slack absorbs rounding.
    radius = math.sqrt(max(2.0 - 2.0 * float(threshold), 0.0)) + 1e-6
    exact_max = EXACT_MAX if exact_max is None else exact_max
    rows, cols = range_pairs(U, 1.0 - radius * radius / 2.0, exact_max=exact_max)
    graph = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(len(U), len(U)))
    _, comp = connected_components(graph, directed=False)
    sizes = np.bincount(comp)
    groups = [np.flatnonzero(comp == c) for c in np.flatnonzero(sizes >= 2)]
    return sorted(groups, key=lambda g: (-len(g), g[0]))


def find_near_duplicates(
    run_dir: str | os.PathLike[str],
    *,
    threshold: float | None = None,
    out_path: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """List groups of near-duplicate images and write them to ``RUN/near_duplicates.csv``.

    Parameters
    ----------
    threshold : float, optional
        Cosine similarity (of the PCA vectors) at or above which two images are linked;
        None: :data:`DUP_THRESHOLD` (0.97).
    out_path : path, optional
        Default ``RUN/near_duplicates.csv``.

    Returns
    -------
    DataFrame with :data:`NEAR_DUPLICATES_COLUMNS`: ``group`` (0 = largest), ``image_id``,
    ``path`` (absolute), ``group_size`` and ``max_similarity`` (the image's highest cosine
    similarity to another member of its group). Empty (with the columns) when none.
    ``table.attrs["threshold"]`` is the threshold used (:func:`lookalike.gallery.write_gallery`
    states it).
    """
    t0 = time.perf_counter()
    threshold = DUP_THRESHOLD if threshold is None else threshold
    run = RunLayout(run_dir)
    ids, Z = read_reduced(run)
    paths = image_paths(run)
    U = l2_normalize(Z)
    rows = []
    groups = near_duplicate_groups(Z, threshold)
    for g, members in enumerate(groups):
        sim = U[members] @ U[members].T
        np.fill_diagonal(sim, -np.inf)
        for i, m in enumerate(members):
            rows.append(
                {
                    "group": g,
                    "image_id": ids[m],
                    "path": str(paths.get(ids[m], "")),
                    "group_size": len(members),
                    "max_similarity": float(sim[i].max()),
                }
            )
    table = pd.DataFrame(rows, columns=NEAR_DUPLICATES_COLUMNS)
    table = table.astype({"group": "int64", "group_size": "int64", "max_similarity": "float64"})
    storage.write_table(table, resolve(out_path) if out_path else run.near_duplicates)
    table.attrs["threshold"] = threshold  # after writing: parquet would store attrs
    print(
        f"near-duplicates: {len(groups)} groups, {len(table)} of {len(ids)} images at cosine "
        f">= {threshold}; {time.perf_counter() - t0:.1f} s"
    )
    return table
