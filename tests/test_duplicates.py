"""Neighbours and near-duplicate groups in the PCA space."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from synthetic_run import assert_png, make_run

from lookalike import storage
from lookalike.duplicates import (
    DUP_THRESHOLD,
    NEAR_DUPLICATES_COLUMNS,
    find_near_duplicates,
    near_duplicate_groups,
)
from lookalike.exceptions import ConfigError
from lookalike.sheets import near_duplicates_sheet


@pytest.fixture
def clustered_run(tmp_path):
    return make_run(tmp_path)


def test_near_duplicate_groups_threshold_and_chains():
    base = np.eye(6, dtype=np.float32)
    a = base[0] + 0.05 * base[1]  # cos(a, e0) = 0.9988
    b = base[0] + 0.10 * base[2]  # cos(b, e0) = 0.995; cos(a, b) = 0.993
    c = base[3] + 0.5 * base[4]  # cos(c, e3) = 0.894: not a duplicate at 0.97
    Z = np.vstack([base, a, b, c])
    groups = near_duplicate_groups(Z, 0.99)
    assert [g.tolist() for g in groups] == [[0, 6, 7]]
    assert near_duplicate_groups(Z, 0.999) == []
    assert [g.tolist() for g in near_duplicate_groups(Z, 0.85)] == [[0, 6, 7], [3, 8]]
    with pytest.raises(ConfigError, match="dup_threshold=1.5"):
        near_duplicate_groups(Z, 1.5)


def test_find_near_duplicates_lists_and_shows_them(clustered_run, capsys):
    table = find_near_duplicates(clustered_run, threshold=0.99)
    out = capsys.readouterr().out
    assert "0 images with several origins" in out and "1 near-duplicate groups, 2 of 19" in out
    on_disk = pd.read_csv(clustered_run / "near_duplicates.csv")
    assert list(on_disk.columns) == NEAR_DUPLICATES_COLUMNS
    assert sorted(Path(p).name for p in on_disk["path"]) == ["logo 0.png", "logo 18.png"]
    assert (on_disk["group_size"] == 2).all() and (on_disk["max_similarity"] > 0.99).all()
    assert (on_disk["kind"] == "near").all() and sorted(on_disk["label"]) == [0, 18]
    sheet = near_duplicates_sheet(table, clustered_run / "figures" / "dups.png", thumb=32)
    assert assert_png(sheet).shape[0] == 26 + (32 + 13 + 4) + 4  # one group, one row
    none = find_near_duplicates(clustered_run, threshold=1.0, out_path=clustered_run / "n.csv")
    assert none.empty and list(pd.read_csv(clustered_run / "n.csv").columns) == list(none)
    assert_png(near_duplicates_sheet(none, clustered_run / "none.png"))


def test_exact_duplicates_come_first_with_all_their_origins(clustered_run, capsys):
    """Two more origins of image 5's bytes (another URL, another domain): one exact group,
    a row per origin with its label, before the near-duplicates."""
    m = storage.read_manifest(clustered_run)
    five = m[m["origin"] == "5"].iloc[0]
    extra = [
        dict(five, origin="http://shop.test/img/five-sale.jpg", source="catalog", label="Five"),
        dict(five, origin="five.test", source="logos", label=None),
    ]
    storage.merge_manifest(clustered_run, pd.DataFrame(extra))
    table = find_near_duplicates(clustered_run, threshold=0.99)
    assert "1 images with several origins (exact duplicates, 3 origins)" in capsys.readouterr().out
    exact = table[table["group"] == 0]
    assert (exact["kind"] == "exact").all() and (exact["image_id"] == five["image_id"]).all()
    assert exact["origin"].tolist() == ["5", "http://shop.test/img/five-sale.jpg", "five.test"]
    assert exact["label"].tolist() == ["5", "Five", "five.test"]
    assert (exact["group_size"] == 3).all() and (exact["max_similarity"] == 1.0).all()
    near = table[table["group"] == 1]
    assert (near["kind"] == "near").all() and len(near) == 2 and table["group"].max() == 1
    sheet = near_duplicates_sheet(table, clustered_run / "figures" / "dups.png", thumb=32)
    assert assert_png(sheet).shape[0] == 26 + 2 * (32 + 13 + 4) + 4  # exact row, then near


def test_find_near_duplicates_default_threshold_and_records_it(clustered_run):
    table = find_near_duplicates(clustered_run)
    assert table.attrs["threshold"] == DUP_THRESHOLD == 0.97
    assert find_near_duplicates(clustered_run, threshold=0.99).attrs["threshold"] == 0.99


def test_near_duplicate_groups_through_the_index_match_the_exact_ones():
    rng = np.random.default_rng(4)
    base = rng.normal(size=(300, 16)).astype(np.float32)
    Z = np.vstack([base, base[:40] + 0.01 * rng.normal(size=(40, 16)), base[:5] * 2.0])
    exact = near_duplicate_groups(Z, 0.97)
    assert len(exact) == 40 and len(exact[0]) == 3
    via_index = near_duplicate_groups(Z, 0.97, exact_max=10)
    assert [g.tolist() for g in via_index] == [g.tolist() for g in exact]


def test_near_duplicate_links_are_capped_above_exact_max_and_groups_stay_whole():
    """A pile of 60 copies has 60 * 59 pairs; through the index each copy links to at most
    max_links others, yet the pile is still one group, with the same groups as exact."""
    from lookalike.duplicates import _links

    rng = np.random.default_rng(5)
    base = rng.normal(size=(200, 16)).astype(np.float32)
    pile = base[0] + 0.002 * rng.normal(size=(60, 16)).astype(np.float32)
    Z = np.vstack([base, pile])
    U = Z / np.linalg.norm(Z, axis=1, keepdims=True)
    rows, _, sim = _links(U, 0.97, 10, 4)
    assert np.bincount(rows).max() <= 4 and (sim >= 0.97 - 1e-6).all()
    exact_rows, _, _ = _links(U, 0.97, len(U), 4)
    assert len(exact_rows) == 61 * 60 > len(rows)  # exact: every ordered pair of the pile
    capped = near_duplicate_groups(Z, 0.97, exact_max=10, max_links=4)
    assert [g.tolist() for g in capped] == [g.tolist() for g in near_duplicate_groups(Z, 0.97)]
    assert len(capped) == 1 and len(capped[0]) == 61


def test_find_near_duplicates_max_similarity_is_the_best_pair(clustered_run):
    table = find_near_duplicates(clustered_run, threshold=0.9)
    from lookalike.reduce import read_reduced

    ids, Z = read_reduced(clustered_run)
    U = Z / np.linalg.norm(Z, axis=1, keepdims=True)
    row = {i: r for r, i in enumerate(ids)}
    for _, grp in table.groupby("group"):
        m = [row[i] for i in grp["image_id"]]
        sim = U[m] @ U[m].T
        np.fill_diagonal(sim, -np.inf)
        np.testing.assert_allclose(grp["max_similarity"], sim.max(axis=1), atol=1e-5)


def test_near_duplicates_from_stage_04s_neighbours_match_the_exact_ones():
    from lookalike.duplicates import _near_duplicates
    from lookalike.neighbors import nearest_neighbors

    rng = np.random.default_rng(4)
    base = rng.normal(size=(300, 16)).astype(np.float32)
    Z = np.vstack([base, base[:40] + 0.01 * rng.normal(size=(40, 16)), base[:5] * 2.0])
    knn = nearest_neighbors(Z, k=32)[0]
    groups, best = _near_duplicates(Z, 0.97, exact_max=10, neighbours=knn)
    exact, exact_best = _near_duplicates(Z, 0.97)
    assert [g.tolist() for g in groups] == [g.tolist() for g in exact]
    assert np.allclose(best, exact_best)
    too_few = _near_duplicates(Z, 0.97, exact_max=10, neighbours=knn[:, :3])[0]  # searched
    assert [g.tolist() for g in too_few] == [g.tolist() for g in exact]
