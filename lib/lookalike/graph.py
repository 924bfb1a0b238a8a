"""Average-linkage trees from the sparse k-nearest-neighbour graph: stage 04 at any n.

The dense trees of :mod:`lookalike.cluster` hold all n (n - 1) / 2 distances. Here the same
kind of tree is built from each image's ``k`` nearest neighbours
(:func:`lookalike.neighbors.nearest_neighbors`), so memory grows as n k:

1. :func:`knn_graph`: the neighbour rows as a symmetric sparse graph whose edge weights are
   the similarities (cosine, or the fused logo similarity), floored at :data:`FLOOR`.
2. :func:`join_components`: a kNN graph can fall apart (a group of near-identical images
   whose neighbours are all each other). Each component is joined to the component whose
   mean direction is nearest, by one bridge edge between their most central images, weighted
   below every real edge; this repeats until the graph is connected, so the tree has a root
   and can be cut at every k.
3. :func:`graph_tree`: the Paris algorithm of scikit-network (Bonald et al. 2018) with uniform
   node weights, which merges the pair of clusters with the largest
   ``W(A, B) / (|A| |B|)``: the mean similarity over **all** pairs of A x B, the pairs
   without an edge counting as similarity 0. That is average linkage on ``1 - similarity``
   with the far pairs' similarities set to 0 (on a complete graph of positive similarities
   it is exactly scipy's average linkage). The tree is returned in scipy's linkage layout
   with height ``1 - mean similarity``, the dense tree's average distance. Paris's own run
   grows faster than n even on a graph cut into blocks of at most ~120 rows (so not from big
   clusters; most likely each new chain starts at the first live key of a Python dict, found
   past every deleted one), so above :data:`TWO_LEVEL_ABOVE` rows the tree has two levels
   (:func:`two_level_tree`): Paris within small Louvain :func:`communities`, then Paris on
   the graph of communities weighted by their sizes, so heights stay mean similarities over
   all pairs of images.
4. :func:`cut_graph_tree`: flat clusters after the first ``n - k`` merges (always exactly k
   clusters), or of the merges below a distance.

Everything is deterministic: the same graph gives the same tree and labels.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from .exceptions import ConfigError

#: Neighbours per image in the graph. Measured with ``benchmarks/graph_cluster.py`` (ARI
#: against the dense tree's on the labelled sets, docs/benchmarks.md).
GRAPH_K = 15

#: Smallest edge weight (similarity): Paris needs positive weights; bridges between
#: components weigh less (see :func:`join_components`).
FLOOR = 1e-4

#: Above this many rows :func:`graph_tree` builds :func:`two_level_tree` (Paris alone grows
#: faster than n; measured with ``benchmarks/graph_cluster.py``, docs/benchmarks.md).
TWO_LEVEL_ABOVE = 50_000

#: :func:`two_level_tree` wants at least this many communities (3 x the sweep's largest k of
#: 1,000), so every cut of the sweep is a cut of the top tree.
MIN_COMMUNITIES = 3_000


def knn_graph(
    index: np.ndarray, similarity: np.ndarray, *, floor: float = FLOOR
) -> sparse.csr_array:
    """The symmetric sparse graph of neighbour rows: ``G[i, j]`` = similarity of i and j.

    Parameters
    ----------
    index : int ndarray (n, k)
        Row numbers of each row's neighbours (:func:`lookalike.neighbors.nearest_neighbors`
        over every row); -1 entries are ignored.
    similarity : float ndarray (n, k)
        Their similarities (cosine or fused, roughly -1..1).
    floor : float, default :data:`FLOOR`
        Similarities are raised to at least this (the tree needs positive weights).

    Returns
    -------
    scipy.sparse.csr_array (n, n) float64, symmetric (an edge found from either end), no
    diagonal; its ``nnz`` is at most 2 n k.
    """
    index = np.asarray(index, dtype=np.int64)
    n, k = index.shape
    rows = np.repeat(np.arange(n, dtype=np.int64), k)
    cols = index.ravel()
    w = np.maximum(np.asarray(similarity, dtype=np.float64).ravel(), floor)
    keep = (cols >= 0) & (cols != rows)
    g = sparse.coo_array((w[keep], (rows[keep], cols[keep])), shape=(n, n)).tocsr()
    g.sum_duplicates()
    return g.maximum(g.T).tocsr()


def _central_rows(unit: np.ndarray, labels: np.ndarray, m: int) -> tuple[np.ndarray, ...]:
    """Unit mean direction of each of ``m`` groups and its most central row (ties: first)."""
    from .kmeans import cluster_means

    means, _ = cluster_means(unit, labels)  # np.add.at took 17 s at 200,000 rows
    cent = means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    cent = cent.astype(np.float32)
    score = np.einsum("ij,ij->i", unit, cent[labels])
    order = np.lexsort((np.arange(len(unit)), -score, labels))  # by group, best first
    first = np.ones(len(order), bool)
    first[1:] = labels[order][1:] != labels[order][:-1]
    return cent, order[first]


def join_components(
    graph: sparse.csr_array, vectors: np.ndarray, *, floor: float = FLOOR
) -> tuple[sparse.csr_array, int]:
    """``graph`` with bridge edges added until it is connected.

    Each round, every component is joined to the component whose mean direction (of the unit
    rows of ``vectors``) is nearest by cosine, through one edge between the two components'
    most central rows, of weight ``floor * (1 + cosine) / 4`` (below every real edge, so
    components merge last, nearest first). Every round at least halves the components.

    Parameters
    ----------
    graph : sparse (n, n), from :func:`knn_graph`
    vectors : ndarray (n, d), the vectors the graph was built from (any scale)

    Returns
    -------
    graph : csr_array (n, n), connected
    n_components : int, the components of the input graph
    """
    from scipy.sparse.csgraph import connected_components

    from .neighbors import l2_normalize, nearest_neighbors

    n_comp, labels = connected_components(graph, directed=False)
    first = n_comp
    unit = None
    while n_comp > 1:
        if unit is None:
            unit = l2_normalize(np.asarray(vectors, dtype=np.float32))
        cent, central = _central_rows(unit, labels, n_comp)
        nn, cos = nearest_neighbors(cent, k=1, normalize=False)
        a, b = central, central[nn[:, 0]]
        w = floor * (1.0 + np.clip(cos[:, 0].astype(np.float64), -1.0, 1.0)) / 4.0 + 1e-12
        bridges = sparse.coo_array((w, (a, b)), shape=graph.shape).tocsr()
        graph = graph.maximum(bridges.maximum(bridges.T)).tocsr()
        n_comp, labels = connected_components(graph, directed=False)
    return graph, first


def _paris(adjacency: sparse.spmatrix, weights: np.ndarray | str = "uniform") -> np.ndarray:
    """Paris's tree of ``adjacency`` with heights ``1 - W(A, B) / (w(A) w(B))``.

    ``weights`` are the node weights (``"uniform"``: 1 each); ``w(A)`` sums them. Columns 0, 1
    and 3 are Paris's (its size counts nodes, not weights); a merge of two parts without an edge
    gets height 1 (mean similarity 0).
    """
    from sknetwork.hierarchy import Paris

    adjacency = sparse.csr_matrix(adjacency, dtype=np.float64)
    n = adjacency.shape[0]
    if adjacency.nnz == 0:  # no edge at all (a community can be so): one chain at height 1
        nodes = np.concatenate([[0], n + np.arange(n - 2)])
        return np.column_stack([nodes, np.arange(1, n), np.ones(n - 1), np.arange(2, n + 1)])
    adjacency.indices = adjacency.indices.astype(np.int32)  # Paris's Cython wants C ints
    adjacency.indptr = adjacency.indptr.astype(np.int32)
    total = float(n) if isinstance(weights, str) else float(np.sum(weights))
    paris = Paris(weights="uniform", reorder=True)
    paris.weights = weights  # its __init__ takes a name only; fit takes an array too
    tree = np.array(paris.fit_predict(adjacency), np.float64)
    # Paris's height is p(A) p(B) / p(A, B) with p(A) = w(A) / total, p(A, B) = W(A, B) / W
    with np.errstate(divide="ignore"):
        tree[:, 2] = 1.0 - float(adjacency.sum()) / (total * total * tree[:, 2])
    return tree


def graph_tree(graph: sparse.csr_array, *, progress: bool = True) -> np.ndarray:
    """The average-linkage merge tree of a connected similarity graph (Paris, uniform weights).

    Above :data:`TWO_LEVEL_ABOVE` rows this is :func:`two_level_tree` (Paris's own run grows
    faster than n: 50,000 rows 7.8 s, 100,000 rows 28 s, docs/benchmarks.md).

    Parameters
    ----------
    graph : sparse (n, n), symmetric, positive weights, connected (:func:`join_components`)

    Returns
    -------
    ndarray (n - 1, 4) in the layout of :func:`scipy.cluster.hierarchy.linkage`: the two
    merged nodes, the height ``1 - W(A, B) / (|A| |B|)`` (the mean distance ``1 -
    similarity`` over all pairs, pairs without an edge at similarity 0), and the size; rows in
    merge order (up to :data:`TWO_LEVEL_ABOVE` rows, heights non-decreasing).
    """
    from scipy.sparse.csgraph import connected_components

    n = graph.shape[0]
    if n < 2:
        raise ConfigError(f"a merge tree needs at least 2 rows, got {n}")
    if connected_components(graph, directed=False)[0] > 1:
        raise ConfigError("the graph is not connected; pass it through join_components first")
    if n > TWO_LEVEL_ABOVE:
        return two_level_tree(graph, progress=progress)
    return _paris(graph)


def communities(graph: sparse.csr_array, min_communities: int | None = None) -> np.ndarray:
    """Small communities of a graph: one level of Louvain's local moves (Potts modularity).

    The resolution starts at 1 and is raised (up to 5 times, 3 x the shortfall)
    until there are at least ``min(min_communities, n // 2)`` communities (default
    :data:`MIN_COMMUNITIES`). Deterministic (nodes in row
    order, no shuffling). On kNN graphs of k = 15 at resolution 1 they hold a few tens of rows
    (about n / 50 of them at 50,000 rows).

    Returns
    -------
    int64 ndarray (n,), community numbers 0..m-1, largest first
    """
    from sknetwork.clustering import Louvain

    adjacency = sparse.csr_matrix(graph)
    want = MIN_COMMUNITIES if min_communities is None else int(min_communities)
    want = min(want, adjacency.shape[0] // 2)
    resolution = 1.0
    for _ in range(6):
        louvain = Louvain(
            resolution=resolution,
            modularity="potts",
            n_aggregations=1,
            shuffle_nodes=False,
            random_state=0,
            return_probs=False,
            return_aggregate=False,
        )
        labels = np.asarray(louvain.fit_predict(adjacency), dtype=np.int64)
        m = int(labels.max()) + 1
        if m >= want:
            break
        # community sizes fall about as 1 / resolution: aim past the target
        resolution *= 3.0 * want / m
    return labels


def two_level_tree(
    graph: sparse.csr_array, labels: np.ndarray | None = None, *, progress: bool = True
) -> np.ndarray:
    """Paris within each community, then Paris on the graph of communities, as one tree.

    Rows: every merge inside the communities (by height, all communities together), then the
    merges of the top tree, whose nodes are the communities weighted by their sizes, so its
    heights are still ``1 - W(A, B) / (|A| |B|)`` over images. Cutting at ``n_clusters <= m`` (m
    communities) gives unions of communities; above m, splits of them.

    Parameters
    ----------
    graph : sparse (n, n), as :func:`graph_tree`
    labels : int ndarray (n,), optional
        Community of each row; default :func:`communities` (at least
        ``min(MIN_COMMUNITIES, n // 2)`` of them).
    progress : bool, default True
        A bar over the communities' trees (from 1,000 communities).

    Returns
    -------
    ndarray (n - 1, 4), as :func:`graph_tree` (heights non-decreasing within each level only)
    """
    from .progress import bar

    n = graph.shape[0]
    labels = communities(graph) if labels is None else np.asarray(labels, np.int64)
    _, labels = np.unique(labels, return_inverse=True)
    m = int(labels.max()) + 1
    order = np.argsort(labels, kind="stable")
    sizes = np.bincount(labels, minlength=m)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    g = sparse.csr_matrix(graph)[order][:, order].tocsr()
    rows, keys, top_rows = [np.empty((0, 4))], [np.empty(0)], np.full(m, -1, np.int64)
    done = 0  # merges so far, in community order: merge r is node n + r until sorted
    for c in bar(range(m), desc="trees of communities", disable=not progress or m < 1000):
        a, b = starts[c], starts[c + 1]
        if b - a > 1:
            t = _paris(g[a:b, a:b])
            ids = np.concatenate([order[a:b], n + done + np.arange(b - a - 1)])
            t[:, :2] = ids[t[:, :2].astype(np.int64)]
            rows.append(t)
            keys.append(np.maximum.accumulate(t[:, 2]))  # rounding must not reorder a tree
            done += b - a - 1
            top_rows[c] = done - 1
    # all communities' merges by height (stable: each community's own order is kept), so a
    # cut above m clusters splits every community alike
    rows = np.concatenate(rows)
    rank = np.empty(len(rows), np.int64)
    rank[np.argsort(np.concatenate(keys), kind="stable")] = np.arange(len(rows))
    rows[rank] = rows.copy()
    inner = rows[:, :2] >= n
    rows[:, :2][inner] = n + rank[rows[:, :2][inner].astype(np.int64) - n]
    top_ids = np.where(top_rows >= 0, n + np.append(rank, 0)[top_rows], order[starts[:-1]])
    member = sparse.csr_matrix((np.ones(n), (np.arange(n), labels)), shape=(n, m))
    agg = (member.T @ sparse.csr_matrix(graph) @ member).tocsr()
    agg.setdiag(0)
    agg.eliminate_zeros()
    if m > 1:
        top = _paris(agg, weights=sizes.astype(np.float64))
        ids = np.concatenate([top_ids, n + done + np.arange(m - 1)])
        size = np.concatenate([sizes, np.zeros(m - 1, np.int64)])
        for j, (x, y) in enumerate(top[:, :2].astype(np.int64)):
            size[m + j] = size[x] + size[y]
        top[:, 3] = size[m:]
        top[:, :2] = ids[top[:, :2].astype(np.int64)]
        rows = np.concatenate([rows, top])
    return rows


def cut_graph_tree(
    tree: np.ndarray, *, n_clusters: int | None = None, distance_threshold: float | None = None
) -> np.ndarray:
    """Raw flat clusters of a tree (any layout of :func:`scipy.cluster.hierarchy.linkage`).

    ``n_clusters``: the clusters after the first ``n - n_clusters`` merges (exactly
    ``n_clusters`` of them, ties in height notwithstanding); ``distance_threshold``: the
    clusters of the merges whose height is at most the threshold. Give exactly one.

    Returns
    -------
    int64 ndarray (n,), cluster numbers in no particular order (see
    :func:`lookalike.kmeans.relabel_by_size`).
    """
    from scipy.sparse.csgraph import connected_components

    n = len(tree) + 1
    if (n_clusters is None) == (distance_threshold is None):
        raise ConfigError("give exactly one of n_clusters or distance_threshold")
    if n_clusters is not None:
        if not 1 <= int(n_clusters) <= n:
            raise ConfigError(f"n_clusters={n_clusters!r} must be within 1..{n}")
        done = np.arange(len(tree)) < n - int(n_clusters)
    else:
        done = tree[:, 2] <= float(distance_threshold)
    child = tree[done, :2].astype(np.int64).ravel()
    parent = np.repeat(n + np.flatnonzero(done), 2)
    links = sparse.coo_array(
        (np.ones(len(child), np.int8), (child, parent)), shape=(2 * n - 1, 2 * n - 1)
    )
    _, labels = connected_components(links, directed=False)
    return labels[:n].astype(np.int64)


def knn_tree(
    index: np.ndarray,
    similarity: np.ndarray,
    vectors: np.ndarray,
    *,
    floor: float = FLOOR,
    progress: bool = True,
) -> tuple[np.ndarray, int]:
    """:func:`knn_graph`, :func:`join_components` and :func:`graph_tree` in one call
    (``progress``: see :func:`two_level_tree`).

    Returns
    -------
    tree : ndarray (n - 1, 4), see :func:`graph_tree`
    n_components : int, components of the kNN graph before joining
    """
    graph = knn_graph(index, similarity, floor=floor)
    graph, n_components = join_components(graph, vectors, floor=floor)
    return graph_tree(graph, progress=progress), n_components
