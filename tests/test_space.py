"""lookalike.space: a run's similarity space kept in RUN/index/, exact and indexed search.

No model here: the runs are synthetic unit vectors (wholes, lockup parts and colour
signatures) written where stage 03 writes them, so that the index path can be taken above a
monkeypatched ``index.EXACT_MAX`` on a run of a thousand images in a second.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lookalike import index, space, storage
from lookalike import similarity as sim
from lookalike.find import search
from lookalike.neighbors import pair_similarity
from lookalike.paths import RunLayout

D, N_CENTRES, PER_CENTRE = 32, 40, 25  # 1,000 images in 40 tight groups


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _features(rng: np.random.Generator, n: int, centres: np.ndarray) -> dict[str, np.ndarray]:
    """Wholes around the centres; every third image a lockup whose first part is another
    group's centre; colour signatures that follow the group."""
    group = np.arange(n) % len(centres)
    vectors = _unit(centres[group] + rng.normal(scale=0.35, size=(n, D)))
    parts = np.zeros((n, 2, D), np.float32)
    mask = np.zeros((n, 2), bool)
    lockups = np.arange(0, n, 3)
    other = (group[lockups] + 7) % len(centres)
    parts[lockups, 0] = _unit(centres[other] + rng.normal(scale=0.35, size=(len(lockups), D)))
    parts[lockups, 1] = _unit(rng.normal(size=(len(lockups), D)))
    mask[lockups] = True
    hues = np.abs(rng.normal(size=(len(centres), 64)))
    colour = _unit(hues[group] + np.abs(rng.normal(scale=0.3, size=(n, 64))))
    return {"vectors": vectors, "parts": parts, "part_mask": mask, "colour": colour}


def _write_run(root, feats: dict[str, np.ndarray], settings: dict) -> RunLayout:
    """The files stage 03 leaves: vectors, ids, parts, mask, colour and the settings stamp."""
    run = RunLayout(root / "run")
    run.embeddings_dir.mkdir(parents=True)
    n = len(feats["vectors"])
    ids = pd.DataFrame({"image_id": [f"img{i:04d}" for i in range(n)], "path": "x.png"})
    np.save(run.vectors, feats["vectors"])
    storage.write_table(ids, run.ids)
    np.save(run.parts, feats["parts"])
    np.save(run.part_mask, feats["part_mask"])
    np.save(run.colour, feats["colour"])
    storage.write_stamp(run.similarity_state, {"settings": settings})
    return run


@pytest.fixture
def synthetic(tmp_path, monkeypatch):
    """A run of 1,000 images and 24 queries near some of them (their icons, their whole)."""
    monkeypatch.setattr(space, "_OPEN", {})  # no space of another test
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(N_CENTRES, D))
    settings = sim.resolve_preset("logos", whiten=16)
    run = _write_run(tmp_path, _features(rng, N_CENTRES * PER_CENTRE, centres), settings)
    q = _features(rng, 24, centres[rng.permutation(N_CENTRES)[:24]])
    q["settings"] = settings
    return run, q


def _hits(run: RunLayout, q: dict, k: int = 6) -> list[dict[str, np.ndarray]]:
    sp = space.open_space(run)
    return search(sp, sp.transform(q), k)


def test_the_index_above_exact_max_gives_the_exact_hits(synthetic, monkeypatch, capsys):
    run, q = synthetic
    monkeypatch.setattr(index, "EXACT_MAX", 20)
    sp = space.open_space(run)
    assert sp.wholes is not None and sp.parts is not None  # the index path
    assert sp.wholes.nprobe < sp.wholes.nlist  # a real approximate search, not every list
    assert sp.parts.ntotal == int(np.load(run.part_mask).sum())
    assert run.index_file("wholes").is_file() and run.index_file("parts").is_file()
    indexed = _hits(run, q)
    monkeypatch.setattr(index, "EXACT_MAX", 20_000)
    exact = _hits(run, q)
    assert space.open_space(run).wholes is None  # exact: no index
    out = capsys.readouterr().out
    assert out.count("space: 1000 images, built") == 2
    matches = set()
    for a, b in zip(indexed, exact, strict=True):
        np.testing.assert_array_equal(a["rows"], b["rows"])
        np.testing.assert_allclose(a["similarity"], b["similarity"], atol=1e-6)
        np.testing.assert_array_equal(a["match"], b["match"])
        matches |= set(b["match"].tolist())
    assert matches == {0, 1, 2}  # every kind of pair is exercised: whole, whole~part, part~whole


def test_a_second_open_reads_the_index_folder(synthetic, monkeypatch, capsys):
    run, q = synthetic
    monkeypatch.setattr(index, "EXACT_MAX", 20)
    first = _hits(run, q)
    assert "built" in capsys.readouterr().out
    stamp = run.index_state.stat().st_mtime_ns
    monkeypatch.setattr(space, "_OPEN", {})  # a new process
    again = space.open_space(run)
    assert "space: 1000 images, read in" in capsys.readouterr().out
    assert run.index_state.stat().st_mtime_ns == stamp  # nothing rewritten
    assert again.wholes.ntotal == 1000 and again.whitener.components is not None
    for a, b in zip(first, search(again, again.transform(q), 6), strict=True):
        np.testing.assert_array_equal(a["rows"], b["rows"])
        np.testing.assert_array_equal(a["similarity"], b["similarity"])
    # in the same process the open space is kept: no second read, no message
    assert space.open_space(run) is again and capsys.readouterr().out == ""
    # new embeddings: the kept space is not current any more and is built again
    vectors = np.load(run.vectors)
    np.save(run.vectors, vectors[::-1].copy())
    space.open_space(run)
    assert "built" in capsys.readouterr().out


def test_calibration_is_every_pair_of_a_small_run_and_share_counts_them(synthetic):
    run, _ = synthetic
    feats = sim.load_features(run)
    small = {k: (v[:12] if isinstance(v, np.ndarray) else v) for k, v in feats.items()}
    inputs = sim.fused_inputs(small)
    sample = space.calibration_sample(inputs)
    i, j = np.triu_indices(12, 1)
    feats_ = (inputs["vectors"], inputs["parts"], inputs["part_mask"], inputs["colour"])
    pairs = pair_similarity(i, j, *feats_, inputs["colour_weight"])
    np.testing.assert_array_equal(sample, np.sort(pairs))  # all 66 pairs, sorted
    sp = space.Space([str(x) for x in range(12)], small["settings"], inputs, None, sample)
    grid = np.linspace(pairs.min() - 0.1, pairs.max() + 0.1, 50)
    share = sp.share(grid)
    assert share[0] == 1.0 and share[-1] == 0.0 and np.all(np.diff(share) <= 0)
    for s in pairs[:5]:  # the share of a pair's own similarity counts it and those above
        assert sp.share(np.array([s]))[0] == pytest.approx((pairs >= s).mean())
    # a large run: a seeded sample of random pairs, never an image with itself
    big = space.calibration_sample(sim.fused_inputs(feats), pairs=500)
    assert len(big) == 500 and np.all(np.diff(big) >= 0) and big.max() < 0.9999
    np.testing.assert_array_equal(big, space.calibration_sample(sim.fused_inputs(feats), pairs=500))
