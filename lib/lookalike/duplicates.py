"""Images alike in the PCA space: neighbours and near-duplicate groups.

* :func:`run_neighbours` (the run's own similarity, ``RUN/neighbors.parquet``, with the
  cosine of the PCA vectors as the fallback): "more like this";
* :func:`near_duplicate_groups` and :func:`find_near_duplicates`: groups of images whose
  cosine similarity is at least a threshold, written to ``RUN/near_duplicates.csv`` after
  the exact duplicates (one image whose bytes came from several origins: URLs, domains,
  files).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from . import storage
from .exceptions import ConfigError
from .index import EXACT_MAX, build_index, range_pairs, search, search_order
from .neighbors import NEIGHBORS_COLUMNS, l2_normalize, nearest_neighbors
from .paths import RunLayout, resolve
from .reduce import read_pca_neighbours, read_reduced

__all__ = [
    "DUP_MAX_LINKS",
    "DUP_THRESHOLD",
    "NEAR_DUPLICATES_COLUMNS",
    "N_NEIGHBOURS",
    "find_near_duplicates",
    "near_duplicate_groups",
    "run_neighbours",
]

NEAR_DUPLICATES_COLUMNS = [
    "group",  # 0, 1, ...: the exact duplicates first (most origins first), then the near ones
    "kind",  # exact (one image, a row per origin) | near (a row per image)
    "image_id",
    "label",  # the origin's label (exact), the image's first label (near)
    "origin",  # the origin (exact), the image's first origin (near)
    "n_origins",  # origins of the image
    "path",  # absolute path of the image
    "group_size",  # origins (exact) or images (near) in the group
    "max_similarity",  # 1 for exact; near: the image's best cosine similarity in its group
]
#: Cosine similarity at or above which two images are near-duplicates, by default.
DUP_THRESHOLD = 0.97
#: Neighbours listed per image by default (the notebook's browser and the HTML gallery).
N_NEIGHBOURS = 8
#: Above :data:`lookalike.index.EXACT_MAX` images each image links to at most this many
#: near-duplicates (its nearest ones at or above the threshold), so the links are O(n) and
#: not O(n^2) when copies pile up (a logo used by 5,000 domains has 5,000^2 pairs). A group
#: stays one group: its members still link to each other through their nearest ones.
DUP_MAX_LINKS = 32


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
    ids = np.asarray(ids).astype(str)
    nn = max(0, min(int(n_neighbours), len(ids) - 1))
    idx = np.zeros((len(q), nn), np.int64)
    dist = np.zeros((len(q), nn), np.float32)
    covered = np.zeros(len(q), bool)
    table = _stored_neighbours(RunLayout(run_dir), ids[q], nn)
    if table is not None and len(table):
        img = table["image_id"].astype(str).to_numpy()  # sorted by image, then rank
        nrow = pd.Index(ids).get_indexer(table["neighbor_id"].astype(str))
        uniq, start, counts = np.unique(img, return_index=True, return_counts=True)
        # an image is covered when it has nn stored neighbours, all of them in ``ids``
        good = (counts == nn) & (np.minimum.reduceat(nrow, start) >= 0)
        pos = np.minimum(np.searchsorted(uniq, ids[q]), len(uniq) - 1)
        covered = (uniq[pos] == ids[q]) & good[pos]
        take = start[pos[covered]][:, None] + np.arange(nn)
        idx[covered] = nrow[take]
        dist[covered] = 1.0 - table["similarity"].to_numpy(np.float32)[take]
    if not covered.all():  # an older run, or more neighbours than it stores
        miss = np.flatnonzero(~covered)
        m_idx, m_sim = nearest_neighbors(Z, q[miss], k=nn)
        idx[miss], dist[miss] = m_idx, np.clip(1.0 - m_sim, 0.0, 2.0)
    return idx, dist


def _stored_neighbours(run: RunLayout, query_ids: np.ndarray, nn: int) -> pd.DataFrame | None:
    """The ``nn`` first rows of ``RUN/neighbors.parquet`` of the query images, by image and
    rank; None when stage 04 wrote none or with fewer than ``nn`` per image.

    Filtered while reading: at 1,000,000 images the table has 10 million rows and only the
    queries' are decoded.
    """
    path = run.neighbors
    if nn == 0 or not path.is_file():
        return None
    first = pd.read_parquet(path, columns=["rank"], filters=[("rank", ">=", nn)])
    if first.empty:
        return None
    table = pd.read_parquet(
        path,
        columns=NEIGHBORS_COLUMNS,
        filters=[("image_id", "in", sorted(set(query_ids.tolist()))), ("rank", "<=", nn)],
    )
    return table.sort_values(["image_id", "rank"], kind="stable")


def _links(
    U: np.ndarray,
    threshold: float,
    exact_max: int,
    max_links: int,
    neighbours: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``rows, cols, similarity`` of the near-duplicate links between unit rows of ``U``.

    Every pair at or above ``threshold`` up to ``exact_max`` rows
    (:func:`lookalike.index.range_pairs`); above it each row's ``max_links`` nearest at or
    above it: the first ``max_links`` columns of ``neighbours`` (each row's nearest other
    rows, (n, k >= max_links), as stage 04 keeps them) when given, else from the faiss index
    (:func:`lookalike.index.search`).
    """
    # The link rule of the radius search this replaced: |a-b| <= sqrt(2 - 2t) + 1e-6 for unit
    # vectors, i.e. cos >= 1 - r^2 / 2; the small slack absorbs rounding.
    radius = math.sqrt(max(2.0 - 2.0 * float(threshold), 0.0)) + 1e-6
    min_score = 1.0 - radius * radius / 2.0
    if len(U) <= exact_max:
        rows, cols = range_pairs(U, min_score, exact_max=exact_max)
    elif neighbours is not None:
        cols = neighbours[:, :max_links].ravel()
        rows = np.repeat(np.arange(len(U)), min(max_links, neighbours.shape[1]))
    else:
        index = build_index(U)
        order = search_order(index, U)
        rows_l, cols_l = [], []
        for s in range(0, len(U), 65536):  # bounded memory: (block, max_links + 1) results
            at = order[s : s + 65536]
            _, ids = search(index, U[at], int(max_links) + 1)
            rows_l.append(np.repeat(at, ids.shape[1]))
            cols_l.append(ids.ravel())
        rows, cols = np.concatenate(rows_l), np.concatenate(cols_l)
    keep = (cols >= 0) & (cols != rows)
    rows, cols = rows[keep], cols[keep]
    sim = np.empty(len(rows), np.float32)
    for s in range(0, len(rows), 1 << 20):  # O(pairs), in blocks
        sim[s : s + (1 << 20)] = np.einsum(
            "ij,ij->i", U[rows[s : s + (1 << 20)]], U[cols[s : s + (1 << 20)]]
        )
    keep = sim >= min_score
    return rows[keep], cols[keep], sim[keep]


def _components(n: int, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Connected components of the links: ``(component of each row, groups of 2 or more)``,
    the groups largest first, each sorted by row. O(n + links)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    sizes = np.bincount(comp)
    order = np.argsort(comp, kind="stable")  # rows by component, ascending row within
    bounds = np.cumsum(sizes)[:-1]
    members = np.split(order, bounds)
    groups = [members[c] for c in np.flatnonzero(sizes >= 2)]
    return comp, sorted(groups, key=lambda g: (-len(g), g[0]))


def near_duplicate_groups(
    Z: np.ndarray,
    threshold: float = DUP_THRESHOLD,
    *,
    exact_max: int | None = None,
    max_links: int | None = None,
) -> list[np.ndarray]:
    """Groups of rows linked by cosine similarity above ``threshold``.

    Two rows are linked when their cosine similarity is at least ``threshold``; a group is a
    connected set of links (so a chain a~b~c is one group even if a and c are further apart).
    Returns the groups of 2 or more rows, largest first, each sorted by row index.

    The links are every pair at or above the threshold up to ``exact_max`` rows (default
    :data:`lookalike.index.EXACT_MAX`, blockwise products); above it each row's
    ``max_links`` (default :data:`DUP_MAX_LINKS`) nearest at or above the threshold, from the
    faiss index. So no n x n similarity, and no more than n * ``max_links`` links, is ever
    held; grouping is O(n + links).
    """
    return _near_duplicates(Z, threshold, exact_max=exact_max, max_links=max_links)[0]


def _near_duplicates(
    Z: np.ndarray,
    threshold: float,
    *,
    exact_max: int | None = None,
    max_links: int | None = None,
    neighbours: np.ndarray | None = None,
) -> tuple[list[np.ndarray], np.ndarray]:
    """The groups of :func:`near_duplicate_groups` and each row's highest link similarity
    (-inf for a row without links), float32 (n,). ``neighbours``: see :func:`_links`."""
    if not 0.0 < float(threshold) <= 1.0:
        raise ConfigError(f"dup_threshold={threshold!r} must be a cosine similarity in (0, 1]")
    U = l2_normalize(np.asarray(Z, dtype=np.float32))
    best = np.full(len(U), -np.inf, np.float32)
    if len(U) < 2:
        return [], best
    exact_max = EXACT_MAX if exact_max is None else exact_max
    max_links = DUP_MAX_LINKS if max_links is None else max(1, int(max_links))
    if neighbours is not None and (len(neighbours) != len(U) or neighbours.shape[1] < max_links):
        neighbours = None  # not this Z's, or too few
    rows, cols, sim = _links(U, threshold, exact_max, max_links, neighbours)
    np.maximum.at(best, rows, sim)
    np.maximum.at(best, cols, sim)
    return _components(len(U), rows, cols)[1], best


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
    DataFrame with :data:`NEAR_DUPLICATES_COLUMNS`. First the exact duplicates: each image
    of the run with more than one origin (two product URLs, two domains with the same
    bytes) is a group of ``kind`` "exact" with a row per origin and its label, most origins
    first. Then the near-duplicate groups (``kind`` "near", largest first), a row per image:
    ``max_similarity`` is the image's highest cosine similarity to another member of its
    group (above :data:`lookalike.index.EXACT_MAX` images, the highest among its
    :data:`DUP_MAX_LINKS` nearest). ``path`` is absolute. Empty (with the columns) when none.
    ``table.attrs["threshold"]`` is the threshold used (:func:`lookalike.gallery.write_gallery`
    states it).
    """
    t0 = time.perf_counter()
    threshold = DUP_THRESHOLD if threshold is None else threshold
    run = RunLayout(run_dir)
    ids, Z = read_reduced(run)
    info = storage.image_info(run)
    knn = read_pca_neighbours(run)  # stage 04's search, when it kept one
    groups, best = _near_duplicates(Z, threshold, neighbours=None if knn is None else knn[0])
    exact = _exact_duplicates(run, info, ids)
    members = np.concatenate(groups) if groups else np.zeros(0, np.int64)
    sizes = np.array([len(g) for g in groups], dtype=np.int64)
    near_ids = ids[members].astype(str)
    meta = info.reindex(near_ids)
    near = pd.DataFrame(
        {
            "group": exact["group"].nunique() + np.repeat(np.arange(len(groups)), sizes),
            "kind": "near",
            "image_id": near_ids,
            "label": meta["label"].fillna("").to_numpy(),
            "origin": meta["origin"].fillna("").to_numpy(),
            "n_origins": meta["n_origins"].fillna(1).to_numpy(),
            "path": [_abspath(run, p) for p in meta["path"]],
            "group_size": np.repeat(sizes, sizes),
            "max_similarity": best[members].astype(np.float64),
        },
        columns=NEAR_DUPLICATES_COLUMNS,
    )
    table = pd.concat([exact, near], ignore_index=True) if len(exact) else near
    table = table.astype(
        {"group": "int64", "n_origins": "int64", "group_size": "int64", "max_similarity": "float64"}
    )[NEAR_DUPLICATES_COLUMNS]
    storage.write_table(table, resolve(out_path) if out_path else run.near_duplicates)
    table.attrs["threshold"] = threshold  # after writing: parquet would store attrs
    n_exact = int(exact["group"].nunique())
    print(
        f"near-duplicates: {n_exact} images with several origins (exact duplicates, "
        f"{len(exact)} origins); {len(groups)} near-duplicate groups, {len(members)} of "
        f"{len(ids)} images at cosine >= {threshold}; {time.perf_counter() - t0:.1f} s"
    )
    return table


def _abspath(run: RunLayout, path: object) -> str:
    return str(run.image_path(path)) if isinstance(path, str) and path else ""


def _exact_duplicates(run: RunLayout, info: pd.DataFrame, ids: np.ndarray) -> pd.DataFrame:
    """The rows of the exact duplicates: each image of ``ids`` with several origins, most
    origins first (then in the order of ``ids``), a row per origin."""
    many = info.reindex(pd.Index(ids).astype(str))
    many = many[many["n_origins"].fillna(1) > 1]
    many = many.iloc[np.argsort(-many["n_origins"].to_numpy(), kind="stable")]
    sizes = many["n_origins"].to_numpy(np.int64)
    return pd.DataFrame(
        {
            "group": np.repeat(np.arange(len(many)), sizes),
            "kind": "exact",
            "image_id": np.repeat(many.index.to_numpy(str), sizes),
            "label": [lab for labs in many["labels"] for lab in labs],
            "origin": [o for origins in many["origins"] for o in origins],
            "n_origins": np.repeat(sizes, sizes),
            "path": np.repeat([_abspath(run, p) for p in many["path"]], sizes),
            "group_size": np.repeat(sizes, sizes),
            "max_similarity": 1.0,
        },
        columns=NEAR_DUPLICATES_COLUMNS,
    )
