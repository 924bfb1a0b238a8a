"""lookalike.neighbors: the one L2 normaliser, the one nearest-neighbour search, and why two
images are neighbours (``match`` and ``colour_gain`` of ``neighbors.parquet``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from logo_images import _icon, _lockup

from lookalike import neighbors, storage
from lookalike.neighbors import NEIGHBORS_COLUMNS, l2_normalize, nearest_neighbors
from lookalike.paths import RunLayout
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


# -- why two images are neighbours: match and colour_gain ----------------------------------


def _hand_set():
    """Three images, one lockup with two parts, the scores of every pair known by hand."""
    vectors = np.array([[1, 0, 0], [0, 1, 0], [0.6, 0.8, 0]], np.float32)
    parts = np.zeros((3, 2, 3), np.float32)
    parts[1] = [[0, 0, 1], [0.8, 0.6, 0]]  # image 1's end squares; 0 and 2 have none
    mask = np.array([[False, False], [True, True], [False, False]])
    colour = np.array([[1, 0], [0.6, 0.8], [1, 0]], np.float32)
    return {"vectors": vectors, "parts": parts, "part_mask": mask, "colour": colour}


def test_pair_matches_say_which_pair_matched_and_what_colour_added():
    feats = _hand_set()
    i, j = np.array([0, 1, 0, 1, 2]), np.array([1, 0, 2, 2, 1])
    kind, slot, gain = neighbors.pair_matches(i, j, **feats, colour_weight=0.25)
    names = [neighbors.MATCHES[c] for c in kind]
    # (0,1): 0's whole . 1's right square = 0.8 beats the wholes' 0; (1,0) the other way;
    # (0,2): no parts; (1,2): 1's right square . 2 = 0.96 beats the wholes' 0.8
    assert names == ["whole-part", "part-whole", "whole-whole", "part-whole", "whole-part"]
    assert slot.tolist() == [1, 1, -1, 1, 1]
    best = np.array([0.8, 0.8, 0.6, 0.96, 0.96])
    tint = np.array([0.6, 0.6, 1.0, 0.6, 0.6])  # colour . colour
    by_hand = (0.75 * best + 0.25 * tint) - best  # fused minus the score without colour
    np.testing.assert_allclose(gain, by_hand, atol=1e-6)
    np.testing.assert_allclose(gain, [-0.05, -0.05, 0.1, -0.09, -0.09], atol=1e-6)
    assert gain.dtype == np.float32 and kind.dtype == np.int8
    # the same as the fused similarity with and without colour, and its full matrix
    args = (feats["vectors"], feats["parts"], feats["part_mask"], feats["colour"])
    fused = neighbors.pair_similarity(i, j, *args, 0.25)
    np.testing.assert_allclose(gain, fused - neighbors.pair_similarity(i, j, *args, 0.0), atol=1e-6)
    np.testing.assert_allclose(fused, similarity_matrix(*args, colour_weight=0.25)[i, j], atol=1e-6)


def test_pair_matches_without_parts_or_colour_are_whole_whole_and_gain_nothing():
    rng = np.random.default_rng(4)
    v = l2_normalize(rng.normal(size=(12, 5)))
    i, j = np.arange(12), (np.arange(12) + 3) % 12
    kind, slot, gain = neighbors.pair_matches(i, j, v)  # the photos preset
    assert (kind == 0).all() and (slot == -1).all() and (gain == 0).all()
    # colour given with weight 0 adds nothing either; a tie of whole and part stays whole
    v = np.eye(5, dtype=np.float32)[rng.integers(0, 5, 12)]  # exact products: true ties
    parts = np.repeat(v[:, None, :], 2, axis=1)  # every part equal to its whole
    kind, slot, gain = neighbors.pair_matches(i, j, v, parts, None, l2_normalize(v), 0.0)
    assert (kind == 0).all() and (slot == -1).all() and (gain == 0).all()
    with pytest.raises(ValueError, match="one length"):
        neighbors.pair_matches(i, j[:3], v)


def test_match_text_in_words():
    said = {
        ("part-whole", 0.031): "icon of this ↔ whole of that, +0.03 colour",
        ("whole-part", -0.012): "whole of this ↔ icon of that, -0.01 colour",
        ("whole-whole", 0.0): "whole ↔ whole",
        ("whole~part", 0.0): "whole of this ↔ icon of that",  # lookalike find's spelling
        (None, np.nan): "",  # unknown: an older table
        (None, 0.02): "+0.02 colour",
    }
    for (match, gain), words in said.items():
        assert neighbors.match_text(match, gain) == words, (match, gain)


def _fused_inputs(n: int = 30, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    vectors = l2_normalize(rng.normal(size=(n, 16)))
    parts = l2_normalize(vectors[:, None, :] + rng.normal(size=(n, 2, 16)))
    mask = rng.random((n, 2)) > 0.5
    colour = l2_normalize(rng.random((n, 8)))
    return {"vectors": vectors, "parts": parts, "part_mask": mask, "colour": colour,
            "colour_weight": 0.3}  # fmt: skip


def _old_writer(path, inputs, ids, k):
    """``write_neighbors`` before it explained its pairs: four columns."""
    index, sim = nearest_neighbors(**inputs, k=k, normalize=False)
    n = len(ids)
    ids = np.asarray(ids)
    table = pd.DataFrame(
        {
            "image_id": np.repeat(ids, k),
            "rank": np.tile(np.arange(1, k + 1), n),
            "neighbor_id": ids[index.ravel()],
            "similarity": sim.ravel(),
        }
    )
    storage.write_table(table, path)


def test_write_neighbors_adds_the_match_after_the_same_four_columns(tmp_path):
    inputs, k = _fused_inputs(), 5
    ids = [f"img{i}" for i in range(30)]
    written = neighbors.write_neighbors(tmp_path, inputs, ids, k=k)
    path = RunLayout(tmp_path).neighbors
    _old_writer(tmp_path / "old.parquet", inputs, ids, k)
    new, old = pq.read_table(path), pq.read_table(tmp_path / "old.parquet")
    cols = NEIGHBORS_COLUMNS + neighbors.MATCH_COLUMNS
    assert new.schema.names == cols == ["image_id", "rank", "neighbor_id", "similarity",
                                        "match", "colour_gain"]  # fmt: skip
    assert new.select(NEIGHBORS_COLUMNS).equals(old)  # the first four bit for bit
    for c in NEIGHBORS_COLUMNS:
        assert new.schema.field(c).type == old.schema.field(c).type
    assert new.schema.field("match").type == new.schema.field("image_id").type  # a string
    assert str(new.schema.field("colour_gain").type) == "float"
    table = neighbors.read_neighbors(tmp_path)
    pd.testing.assert_frame_equal(table, written)
    # every pair's reason, checked against its three scores by brute force
    v, p, m, c = (inputs[x] for x in ("vectors", "parts", "part_mask", "colour"))
    row = {x: r for r, x in enumerate(ids)}
    seen = set()
    for a, b, match, gain, s in table[["image_id", "neighbor_id", "match", "colour_gain",
                                       "similarity"]].itertuples(index=False):  # fmt: skip
        a, b = row[a], row[b]
        scores = {
            "whole-whole": v[a] @ v[b],
            "whole-part": max((v[a] @ p[b, s_] for s_ in range(2) if m[b, s_]), default=-9),
            "part-whole": max((p[a, s_] @ v[b] for s_ in range(2) if m[a, s_]), default=-9),
        }
        best = max(scores.values())
        assert scores[match] == pytest.approx(best, abs=1e-6)
        assert gain == pytest.approx(s - best, abs=1e-5)
        assert gain == pytest.approx(0.3 * (c[a] @ c[b] - best), abs=1e-5)
        seen.add(match)
    assert seen == set(neighbors.MATCHES[:3])  # the three kinds of 2-slot parts all occur
    # the photos preset: plain wholes, nothing from colour
    plain = neighbors.write_neighbors(
        tmp_path, {"vectors": inputs["vectors"], "parts": None, "part_mask": None,
                   "colour": None, "colour_weight": 0.0}, ids, k=k,
    )  # fmt: skip
    assert (plain["match"] == "whole-whole").all() and (plain["colour_gain"] == 0).all()


def test_an_older_neighbors_table_reads_with_the_reason_unknown(tmp_path):
    inputs, ids = _fused_inputs(8), [f"img{i}" for i in range(8)]
    _old_writer(RunLayout(tmp_path).neighbors, inputs, ids, 3)
    table = neighbors.read_neighbors(tmp_path)
    assert list(table.columns) == NEIGHBORS_COLUMNS + neighbors.MATCH_COLUMNS
    assert table["match"].isna().all() and table["colour_gain"].isna().all()
    assert table["colour_gain"].dtype == np.float32
    pairs = np.array([["img1", "img2"], ["img0", "img2"]])
    match, gain = neighbors.read_matches(tmp_path, ["img0", "img1"], pairs)
    assert all(m is None for m in match.ravel()) and np.isnan(gain).all()
    # the same pairs once the table says why: looked up by pair, unknown where not listed
    written = neighbors.write_neighbors(tmp_path, inputs, ids, k=3)
    first = written[written["image_id"] == "img0"]
    nid = np.array([[*first["neighbor_id"], "img0"]])  # its 3 neighbours, then itself
    match, gain = neighbors.read_matches(tmp_path, ["img0"], nid)
    assert match[0, :3].tolist() == first["match"].tolist() and match[0, 3] is None
    np.testing.assert_array_equal(gain[0, :3], first["colour_gain"].to_numpy())
    assert np.isnan(gain[0, 3])
    assert neighbors.read_matches(tmp_path / "nothing", ["img0"], nid)[0][0, 0] is None


@pytest.fixture(scope="module")
def vgg():
    from lookalike.model import load_vgg16
    from lookalike.similarity import PRESETS

    return load_vgg16(layer=PRESETS["logos"]["layer"])


def test_a_logo_and_its_own_icon_crop_are_neighbours_through_its_icon(vgg, tmp_path):
    from lookalike import similarity as sim
    from lookalike.extras import embed_parts

    brand = _icon("circle", (220, 40, 40))
    lockup = _lockup(brand, "Redcorp")  # the icon at the left, 40 px in
    top = (lockup.height - brand.height) // 2
    icon = lockup.crop((40, top, 40 + brand.width, top + brand.height))  # its own icon
    images = [lockup, icon]
    for kind, rgb, word in [("square", (20, 110, 220), "Bluebox"),
                            ("diamond", (30, 160, 60), "Greenly")]:  # fmt: skip
        images += [_lockup(_icon(kind, rgb), word), _icon(kind, rgb).resize((90, 90))]
    images.append(_icon("star", (120, 60, 200)))
    params = sim.resolve_preset("logos", whiten=0)  # too few images to whiten on
    emb = embed_parts(images, vgg, **params)
    inputs = {"vectors": emb["vectors"], "parts": emb["parts"], "part_mask": emb["part_mask"],
              "colour": emb["colour"], "colour_weight": params["colour_weight"]}  # fmt: skip
    ids = ["lockup", "icon", "b1", "b2", "g1", "g2", "star"]
    neighbors.write_neighbors(tmp_path, inputs, ids, k=2)
    nb = neighbors.read_neighbors(tmp_path)
    first = nb[nb["rank"] == 1].set_index("image_id")
    # the lockup's left end square is the icon: part of this against the whole of that
    assert first.loc["lockup", "neighbor_id"] == "icon"
    assert first.loc["lockup", "match"] == "part-whole"
    assert first.loc["icon", "neighbor_id"] == "lockup"
    assert first.loc["icon", "match"] == "whole-part"
    kind, slot, gain = neighbors.pair_matches(np.array([0, 1]), np.array([1, 0]), **inputs)
    assert slot.tolist() == [0, 0]  # the left square, where _lockup puts the icon
    v, p, c, w = emb["vectors"], emb["parts"], emb["colour"], params["colour_weight"]
    part = p[0, 0] @ v[1]
    assert part > v[0] @ v[1]  # the icon is more like the lockup's icon than its whole
    by_hand = (1 - w) * part + w * (c[0] @ c[1]) - part
    np.testing.assert_allclose(gain, [by_hand, by_hand], atol=1e-5)
    np.testing.assert_allclose(first.loc[["lockup", "icon"], "colour_gain"], gain, atol=1e-6)
    assert neighbors.match_text("part-whole", gain[0]).startswith("icon of this ↔ whole of that")
