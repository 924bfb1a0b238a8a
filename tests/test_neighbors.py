"""lookalike.neighbors: the one L2 normaliser and the one nearest-neighbour search."""

from __future__ import annotations

import numpy as np

from lookalike import neighbors
from lookalike.neighbors import l2_normalize, nearest_neighbors
from lookalike.similarity import similarity_matrix


def test_l2_normalize_keeps_zero_rows():
    v = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(v, [[0.6, 0.8], [0.0, 0.0]])


def test_nearest_neighbours_by_cosine():
    v = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0], [5.0, 0.2]], np.float32)
    near, sim = nearest_neighbors(v, [0, 2], k=2, chunk=2)
    assert near.tolist() == [[4, 1], [1, 4]]  # cosine, not distance: row 4 is far but aligned
    assert nearest_neighbors(v, [3], k=10)[0].shape == (1, 4)  # at most n - 1, never itself
    unit = l2_normalize(v)
    np.testing.assert_allclose(sim, np.take_along_axis(unit[[0, 2]] @ unit.T, near, 1), atol=1e-6)
    assert nearest_neighbors(v[:1], [0], k=4)[0].shape == (1, 0)  # one row: nobody near


def test_nearest_neighbors_blockwise_matches_full_matrix(monkeypatch):
    rng = np.random.default_rng(0)
    n, m, d = 23, 2, 16
    vectors = l2_normalize(rng.normal(size=(n, d)))
    parts = l2_normalize(rng.normal(size=(n, m, d)))
    mask = rng.random((n, m)) > 0.5
    colour = l2_normalize(rng.random((n, 8)))
    full = similarity_matrix(vectors, parts, mask, colour, colour_weight=0.3)
    np.testing.assert_allclose(full, full.T, atol=1e-6)
    assert np.all(full >= (vectors @ vectors.T) * 0.7 + 0.3 * (colour @ colour.T) - 1e-6)
    monkeypatch.setattr(neighbors, "block_rows", lambda n, m, budget=0: 4)  # force 6 row blocks
    index, sim = nearest_neighbors(
        vectors,
        k=5,
        parts=parts,
        part_mask=mask,
        colour=colour,
        colour_weight=0.3,
        normalize=False,
    )
    nn = neighbors.neighbors_table(index, sim, [f"id{i}" for i in range(n)])
    assert list(nn.columns) == ["image_id", "rank", "neighbor_id", "similarity"]
    assert len(nn) == n * 5 and nn["rank"].tolist()[:5] == [1, 2, 3, 4, 5]
    S = full.copy()
    np.fill_diagonal(S, -np.inf)
    want = np.argsort(-S, axis=1, kind="stable")[:, :5]
    got = nn["neighbor_id"].str[2:].astype(int).to_numpy().reshape(n, 5)
    np.testing.assert_array_equal(got, want)
    assert (nn["image_id"] != nn["neighbor_id"]).all()
    assert np.all(np.diff(nn["similarity"].to_numpy().reshape(n, 5), axis=1) <= 0)


def test_nearest_neighbors_of_some_queries_match_brute_force():
    rng = np.random.default_rng(2)
    Z = rng.normal(size=(40, 6)).astype(np.float32)
    idx, sim = nearest_neighbors(Z, [0, 5, 39], k=4)
    dist = 1 - sim
    U = Z / np.linalg.norm(Z, axis=1, keepdims=True)
    for r, q in enumerate([0, 5, 39]):
        cos = U @ U[q]
        cos[q] = -np.inf
        expect = np.argsort(-cos, kind="stable")[:4]
        np.testing.assert_array_equal(idx[r], expect)
        np.testing.assert_allclose(dist[r], 1 - cos[expect], atol=1e-5)
        assert q not in idx[r]
    assert nearest_neighbors(Z[:1], [0], k=4)[0].shape == (1, 0)  # one row: nobody near


def test_top_k_is_the_stable_argsort_even_with_ties():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 6, size=(50, 200)).astype(np.float32)  # many ties, some at k
    scores[0, :] = 1.0  # a row of nothing but ties
    for k in (1, 5, 20, 60, 200):
        want = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(neighbors.top_k(scores, k), want)
