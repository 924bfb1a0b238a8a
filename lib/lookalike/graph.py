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
   with height ``1 - mean similarity``, the dense tree's average distance.
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
    sums = np.zeros((m, unit.shape[1]), dtype=np.float64)
    np.add.at(sums, labels, unit)
    cent = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
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


def graph_tree(graph: sparse.csr_array) -> np.ndarray:
    """The average-linkage merge tree of a connected similarity graph (Paris, uniform weights).

    Parameters
    ----------
    graph : sparse (n, n), symmetric, positive weights, connected (:func:`join_components`)

    Returns
    -------
    ndarray (n - 1, 4) in the layout of :func:`scipy.cluster.hierarchy.linkage`: the two
    merged nodes, the height ``1 - W(A, B) / (|A| |B|)`` (the mean distance ``1 -
    similarity`` over all pairs, pairs without an edge at similarity 0), and the size; rows in
    merge order, heights non-decreasing.
    """
    from sknetwork.hierarchy import Paris

    n = graph.shape[0]
    if n < 2:
        raise ConfigError(f"a merge tree needs at least 2 rows, got {n}")
    adjacency = sparse.csr_matrix(graph, dtype=np.float64)
    adjacency.indices = adjacency.indices.astype(np.int32)  # Paris's Cython wants C ints
    adjacency.indptr = adjacency.indptr.astype(np.int32)
    tree = Paris(weights="uniform", reorder=True).fit_predict(adjacency)
    if not np.isfinite(tree[:, 2]).all():
        raise ConfigError("the graph is not connected; pass it through join_components first")
    tree = np.array(tree, dtype=np.float64)
    # Paris's height is p(A) p(B) / p(A, B) with p(A) = |A| / n, p(A, B) = W(A, B) / W
    tree[:, 2] = 1.0 - float(adjacency.sum()) / (float(n) * n * tree[:, 2])
    return tree


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
) -> tuple[np.ndarray, int]:
    """:func:`knn_graph`, :func:`join_components` and :func:`graph_tree` in one call.

    Returns
    -------
    tree : ndarray (n - 1, 4), see :func:`graph_tree`
    n_components : int, components of the kNN graph before joining
    """
    graph = knn_graph(index, similarity, floor=floor)
    graph, n_components = join_components(graph, vectors, floor=floor)
    return graph_tree(graph), n_components
