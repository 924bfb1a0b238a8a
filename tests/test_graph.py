"""The kNN-graph trees of lookalike.graph: deterministic, equal to dense average linkage on a
complete graph, close to it on a sparse one, and a tree even when the graph falls apart."""

from __future__ import annotations

import numpy as np
import pytest
from blobs import blobs
from scipy import sparse
from sklearn.metrics import adjusted_rand_score

from lookalike import cluster, graph
from lookalike.exceptions import ConfigError
from lookalike.neighbors import nearest_neighbors


def _positive_blobs(n_per=30, centers=5, dim=24, seed=0):
    """Groups in the positive orthant: every cosine is positive, so nothing is floored."""
    rng = np.random.default_rng(seed)
    c = np.abs(rng.normal(size=(centers, dim))) * 3
    truth = np.repeat(np.arange(centers), n_per)
    X = np.abs(c[truth] + rng.normal(0, 0.5, (len(truth), dim)))
    return X.astype(np.float32), truth


def _tree(X, k):
    index, sim = nearest_neighbors(X, k=k)
    return graph.knn_tree(index, sim, X)


def test_complete_graph_is_scipy_average_linkage():
    X, truth = _positive_blobs()
    tree, n_comp = _tree(X, len(X) - 1)
    assert n_comp == 1
    dense = cluster.merge_tree(cluster.cosine_distances(X))
    np.testing.assert_allclose(tree[:, 2], np.sort(dense[:, 2]), atol=1e-5)
    for k in (2, 5, 9, 40):
        got = cluster.relabel_by_size(graph.cut_graph_tree(tree, n_clusters=k))
        np.testing.assert_array_equal(got, cluster.cut_tree(dense, n_clusters=k))


def test_sparse_graph_matches_dense_on_separated_groups_and_is_deterministic():
    X, truth = blobs(n_per=[12, 10, 8, 6], dim=64, seed=3)
    dense = cluster.agglomerative_labels(X, n_clusters=4)
    tree, _ = _tree(X, 10)
    again, _ = _tree(X.copy(), 10)
    np.testing.assert_array_equal(tree, again)
    labels = cluster.relabel_by_size(graph.cut_graph_tree(tree, n_clusters=4))
    np.testing.assert_array_equal(labels, dense)
    assert adjusted_rand_score(truth, labels) == pytest.approx(1.0)
    # heights are mean distances, so a threshold between groups gives the same cut
    cut = cluster.relabel_by_size(graph.cut_graph_tree(tree, distance_threshold=0.5))
    np.testing.assert_array_equal(cut, labels)


def test_disconnected_graph_still_gives_every_k():
    X, truth = blobs(n_per=[8, 8, 8, 8, 8], dim=32, seed=5, spread=0.01)
    index, sim = nearest_neighbors(X, k=3)  # 3 neighbours: each group its own component
    g = graph.knn_graph(index, sim)
    joined, n_comp = graph.join_components(g, X)
    assert n_comp == 5
    from scipy.sparse.csgraph import connected_components

    assert connected_components(joined, directed=False)[0] == 1
    assert joined.max() == g.max() and joined.nnz == g.nnz + 2 * 4  # one bridge per join
    tree = graph.graph_tree(joined)
    for k in range(1, len(X) + 1):
        assert len(np.unique(graph.cut_graph_tree(tree, n_clusters=k))) == k
    five = graph.cut_graph_tree(tree, n_clusters=5)
    assert adjusted_rand_score(truth, five) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="not connected"):
        graph.graph_tree(g)


def test_knn_graph_is_symmetric_and_floored():
    index = np.array([[1, 2], [0, -1], [0, 1]])
    sim = np.array([[0.9, -0.5], [0.9, 0.0], [0.2, 0.3]])
    g = graph.knn_graph(index, sim).toarray()
    np.testing.assert_array_equal(g, g.T)
    assert g[0, 1] == 0.9 and g[1, 2] == 0.3 and g[0, 2] == 0.2  # the larger of both ends
    assert np.diag(g).sum() == 0
    assert graph.knn_graph(np.array([[1], [0]]), np.array([[-0.5], [-0.5]])).data.tolist() == [
        graph.FLOOR,
        graph.FLOOR,
    ]


def test_cut_graph_tree_needs_one_criterion():
    X, _ = _positive_blobs(n_per=5, centers=2)
    tree, _ = _tree(X, 4)
    with pytest.raises(ConfigError, match="exactly one"):
        graph.cut_graph_tree(tree)
    with pytest.raises(ConfigError, match="within 1..10"):
        graph.cut_graph_tree(tree, n_clusters=11)


def test_agglomerative_sweep_graph_path_above_max_samples():
    X, truth = blobs(n_per=[12, 10, 8, 6], dim=64, seed=3)
    dense_m, dense_l = cluster.agglomerative_sweep(X, [2, 4], progress=False)
    m, lab = cluster.agglomerative_sweep(X, [2, 4], max_samples=10, graph_k=10, progress=False)
    assert m["estimator"].str.contains("kNN graph").all()
    assert m["n_clusters"].tolist() == [2, 4]
    np.testing.assert_array_equal(lab[4][0], dense_l[4][0])
    with pytest.raises(ConfigError, match="average linkage only"):
        cluster.agglomerative_sweep(X, [2], max_samples=10, linkage="single", progress=False)


def _leaves(tree, node):
    """Leaf rows under ``node`` of a scipy-layout tree."""
    n = len(tree) + 1
    stack, out = [node], []
    while stack:
        x = stack.pop()
        if x < n:
            out.append(x)
        else:
            stack.extend(tree[x - n, :2].astype(int))
    return np.array(sorted(out))


def test_two_level_tree_gives_the_groups_every_k_and_mean_heights(monkeypatch):
    X, truth = blobs(n_per=[40, 35, 30, 25, 20], dim=48, seed=7)
    index, sim = nearest_neighbors(X, k=10)
    g, _ = graph.join_components(graph.knn_graph(index, sim), X)
    monkeypatch.setattr(graph, "TWO_LEVEL_ABOVE", 10)
    monkeypatch.setattr(graph, "MIN_COMMUNITIES", 8)
    labels = graph.communities(g)
    m = labels.max() + 1
    assert 8 <= m < len(X) // 4
    tree = graph.graph_tree(g)  # above TWO_LEVEL_ABOVE: the two-level tree
    np.testing.assert_array_equal(tree, graph.two_level_tree(g, labels))
    np.testing.assert_array_equal(tree, graph.graph_tree(g.copy()))
    assert tree.shape == (len(X) - 1, 4)
    assert sorted(tree[:, :2].ravel().astype(int).tolist()) == list(range(2 * len(X) - 2))
    for k in range(1, len(X) + 1):
        cut = graph.cut_graph_tree(tree, n_clusters=k)
        assert len(np.unique(cut)) == k
        if k <= m:  # unions of communities
            assert all(len(np.unique(cut[labels == c])) == 1 for c in range(m))
    assert adjusted_rand_score(truth, graph.cut_graph_tree(tree, n_clusters=5)) == 1.0
    # every merge's height is 1 - the mean similarity over all its pairs; sizes count rows
    dense = g.toarray()
    n = len(X)
    for row in tree[[0, n - m - 1, n - m, n - 2]]:
        a, b = _leaves(tree, int(row[0])), _leaves(tree, int(row[1]))
        mean = dense[np.ix_(a, b)].sum() / (len(a) * len(b))
        assert row[2] == pytest.approx(1.0 - mean, abs=1e-5)
        assert row[3] == len(a) + len(b)


def test_two_level_tree_with_singleton_communities_is_the_top_tree():
    X, truth = _positive_blobs(n_per=6, centers=3)
    index, sim = nearest_neighbors(X, k=5)
    g, _ = graph.join_components(graph.knn_graph(index, sim), X)
    tree = graph.two_level_tree(g, np.arange(len(X)))
    np.testing.assert_allclose(tree, graph._paris(g), atol=1e-6)
    assert adjusted_rand_score(truth, graph.cut_graph_tree(tree, n_clusters=3)) == 1.0


@pytest.mark.parametrize("progress", [True, False])
def test_the_communities_bar_follows_progress(progress, capsys):
    X, _ = _positive_blobs(n_per=400, centers=5)  # 2,000 rows in 1,000 communities of 2
    index, sim = nearest_neighbors(X, k=5)
    g, _ = graph.join_components(graph.knn_graph(index, sim), X)
    graph.two_level_tree(g, np.arange(len(X)) // 2, progress=progress)
    err = capsys.readouterr().err
    assert ("trees of communities" in err) == progress


def test_paris_of_a_graph_without_edges_is_a_chain_at_height_one():
    tree = graph._paris(sparse.csr_array((4, 4)))
    np.testing.assert_array_equal(tree, [[0, 1, 1, 2], [4, 2, 1, 3], [5, 3, 1, 4]])
