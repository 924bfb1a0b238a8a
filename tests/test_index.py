"""lookalike.index, and the neighbour search through it (lookalike.neighbors above its size)."""

from __future__ import annotations

import numpy as np
import pytest
from logo_images import _icon, _lockup

from lookalike import index as ix
from lookalike.neighbors import l2_normalize, nearest_neighbors, neighbors_table


def _fused_set(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    vectors = l2_normalize(rng.normal(size=(n, 16)))
    parts = l2_normalize(vectors[:, None, :] + rng.normal(size=(n, 2, 16)))
    mask = rng.random((n, 2)) > 0.5
    colour = l2_normalize(rng.random((n, 8)))
    return {"vectors": vectors, "parts": parts, "part_mask": mask, "colour": colour}


@pytest.mark.parametrize("fused", [False, True])
def test_index_neighbours_equal_brute_force_on_a_small_set(fused):
    # 300 rows: few enough lists that every list is probed, so the index must be exact
    feats = _fused_set(300)
    if fused:
        kw = dict(feats, colour_weight=0.3, normalize=False)
    else:
        kw = {"vectors": feats["vectors"] * 3.0}  # raw, not unit: cosine normalises
    want = nearest_neighbors(**kw, k=7)
    got = nearest_neighbors(**kw, k=7, exact_max=10)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_allclose(got[1], want[1], atol=1e-5)
    ids = [f"img{i}" for i in range(300)]
    a, b = neighbors_table(*want, ids), neighbors_table(*got, ids)
    assert a[["image_id", "rank", "neighbor_id"]].equals(b[["image_id", "rank", "neighbor_id"]])
    q = [3, 150, 299]  # some queries: more than min(EXACT_QUERIES, exact_max) goes to the index
    some = nearest_neighbors(**kw, queries=q, k=7, exact_max=2)
    np.testing.assert_array_equal(some[0], want[0][q])


def test_approximate_index_finds_the_exact_top1_of_a_well_separated_set():
    rng = np.random.default_rng(1)
    base = l2_normalize(rng.normal(size=(1500, 32)))
    twins = l2_normalize(base + rng.normal(scale=0.02, size=base.shape))
    x = np.concatenate([base, twins])
    index = ix.build_index(x)
    assert index.nprobe < index.nlist  # the approximate regime, not a disguised flat search
    near, sim = nearest_neighbors(x, k=3, exact_max=100)
    n = len(base)
    np.testing.assert_array_equal(near[:, 0], np.r_[np.arange(n) + n, np.arange(n)])
    assert np.all(np.diff(sim, axis=1) <= 0)
    again = nearest_neighbors(x, k=3, exact_max=100)  # seeded: the same answer twice
    np.testing.assert_array_equal(again[0], near)


def test_range_pairs_exact_and_through_the_index_agree():
    rng = np.random.default_rng(2)
    base = l2_normalize(rng.normal(size=(400, 24)))
    x = np.concatenate([base, l2_normalize(base[:100] + rng.normal(scale=0.01, size=(100, 24)))])
    exact = set(zip(*ix.range_pairs(x, 0.95), strict=True))
    approx = set(zip(*ix.range_pairs(x, 0.95, exact_max=10), strict=True))
    assert exact == approx and len(exact) >= 200  # each twin pair, both ways
    assert all(i != j for i, j in exact)


@pytest.fixture(scope="module")
def vgg():
    from lookalike.model import load_vgg16
    from lookalike.similarity import PRESETS

    return load_vgg16(layer=PRESETS["logos"]["layer"])


def test_logo_and_its_icon_are_mutual_nearest_neighbours_through_the_index(vgg):
    from lookalike import similarity as sim
    from lookalike.extras import embed_parts
    from lookalike.preprocess import colour_signature

    brand = _icon("circle", (220, 40, 40))
    images = [_lockup(brand, "Redcorp"), brand.resize((200, 200))]
    for kind, rgb, word in [
        ("square", (20, 110, 220), "Bluebox"),
        ("diamond", (30, 160, 60), "Greenly"),
        ("star", (120, 60, 200), "Starry"),
        ("pie", (220, 40, 40), "Rival"),  # same red as the brand, other shape
    ]:
        images += [_lockup(_icon(kind, rgb), word), _icon(kind, rgb).resize((90, 90))]
    params = sim.resolve_preset("logos", whiten=0)
    emb = embed_parts(images, vgg, **params)
    colour = np.stack([colour_signature(im) for im in images])
    kw = dict(
        parts=emb["parts"],
        part_mask=emb["part_mask"],
        colour=colour,
        colour_weight=params["colour_weight"],
        normalize=False,
    )
    exact = nearest_neighbors(emb["vectors"], k=1, **kw)
    near, _ = nearest_neighbors(emb["vectors"], k=1, exact_max=0, **kw)
    assert near[0, 0] == 1 and near[1, 0] == 0
    np.testing.assert_array_equal(near, exact[0])


def test_search_order_changes_speed_only():
    rng = np.random.default_rng(5)
    x = l2_normalize(rng.normal(size=(3000, 8))).astype(np.float32)
    index = ix.build_index(x)
    order = ix.search_order(index, x, np.arange(100, 3000))
    assert sorted(order.tolist()) == list(range(2900))  # a permutation of the positions
    assert not np.array_equal(order, np.arange(2900))
    rows = np.arange(100, 3000)[order]
    want = ix.search(index, x[100:], 5)[1]
    assert np.array_equal(ix.search(index, x[rows], 5)[1], want[order])


def test_queries_with_too_few_candidates_are_answered_exactly_in_blocks(monkeypatch):
    from lookalike import neighbors as nb

    feats = _fused_set(120)
    kw = dict(feats, colour_weight=0.3, normalize=False)
    want = nearest_neighbors(**kw, k=5)
    v, p, m, c = nb.check_features(
        feats["vectors"], feats["parts"], feats["part_mask"], feats["colour"]
    )
    qb = np.arange(10, 20)
    cand = np.tile(np.arange(120), (10, 1))
    cand[[2, 5, 7]] = -1  # three queries the index found nothing for
    scores = np.zeros(cand.shape, np.float32)
    monkeypatch.setattr(nb, "block_rows", lambda n, m: 2)  # several blocks of the exact rows
    index, sim = nb._best_found(cand, scores, qb, 5, (v, p, m, c, 0.3), None)
    np.testing.assert_array_equal(index[[2, 5, 7]], want[0][qb[[2, 5, 7]]])
    np.testing.assert_allclose(sim[[2, 5, 7]], want[1][qb[[2, 5, 7]]], atol=1e-6)
