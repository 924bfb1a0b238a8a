"""lookalike.extras: lockup parts and colour signatures beside RUN/embeddings, through 04."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from logo_images import _brand_images, _logo_run

from lookalike import similarity as sim
from lookalike import storage
from lookalike.extras import embed_extras
from lookalike.neighbors import MATCH_COLUMNS, NEIGHBORS_COLUMNS, read_neighbors
from lookalike.paths import RunLayout
from lookalike.preprocess import SHAPE_DIM


def test_logos_preset_runs_through_stages_03_and_04(tmp_path, capsys):
    from lookalike import cluster, embed

    run, ids = _logo_run(tmp_path, _brand_images())
    settings = sim.resolve_preset("auto", run_dir=run, whiten=0)  # 8 images: too few to whiten
    assert settings["preset"] == "logos"
    cache = tmp_path / "cache"
    embed.embed_images(run, **sim.embed_kwargs(settings), cache_dir=cache, progress=False)
    first = embed_extras(run, settings, cache_dir=cache, progress=False)
    assert first["with_parts"] == 3 and first["parts_computed"] == 6 and first["cached"] == 0
    assert "3 with parts (0 light-on-dark with a negative)" in capsys.readouterr().out
    layout = RunLayout(run)
    parts, mask = np.load(layout.parts), np.load(layout.part_mask)
    assert parts.shape == (8, 3, 512) and mask[[0, 2, 4], :2].all()
    assert not mask[[1, 3, 5, 6, 7]].any() and not mask[:, 2].any()  # no light-on-dark artwork
    colour = np.load(layout.colour)
    np.testing.assert_allclose(np.linalg.norm(colour, axis=1), 1.0, rtol=1e-5)
    shape = np.load(layout.shape)
    assert shape.shape == (8, 3, SHAPE_DIM) and shape.dtype == np.uint8
    assert shape[:, 0].any(axis=1).all()  # every whole has one
    assert shape[[0, 2, 4], 1:].any(axis=2).all() and not shape[[1, 3, 5, 6, 7], 1:].any()
    assert sim.read_settings(run)["cluster_method"] == "similarity"

    # resume: a second call reuses the files; a rebuilt RUN/embeddings is served by the cache
    assert embed_extras(run, settings, cache_dir=cache, progress=False)["reused"]
    for path in (layout.parts, layout.part_mask, layout.colour, layout.shape):
        path.unlink()
    again = embed_extras(run, settings, cache_dir=cache, progress=False)
    assert again["cached"] == 8 and again["parts_computed"] == 0
    np.testing.assert_array_equal(np.load(layout.parts), parts)
    np.testing.assert_array_equal(np.load(layout.shape), shape)  # short records, for no parts

    metrics = cluster.cluster_run(run, k_values=[2, 3, 4], progress=False)
    assert set(metrics["method"]) == {"kmeans", "agglomerative", "similarity"}
    nb = read_neighbors(run)
    assert list(nb.columns) == NEIGHBORS_COLUMNS + MATCH_COLUMNS and len(nb) == 8 * 7
    top = nb[nb["rank"] == 1].set_index("image_id")["neighbor_id"]
    for lockup, icon in ((0, 1), (2, 3), (4, 5)):  # each icon finds its own lockup
        assert top[ids[icon]] == ids[lockup], (lockup, icon)
    why = nb[nb["rank"] == 1].set_index("image_id")["match"]
    assert all(why[ids[icon]] == "whole-part" for icon in (1, 3, 5))  # through its icon
    table = pd.read_parquet(layout.clusters)
    at4 = table[(table["method"] == "similarity") & (table["k"] == 4)].set_index("image_id")
    for lockup, icon in ((0, 1), (2, 3), (4, 5)):
        assert at4.loc[ids[lockup], "cluster"] == at4.loc[ids[icon], "cluster"]
    # deterministic: recomputing gives the identical table
    cluster.cluster_run(run, k_values=[2, 3, 4], progress=False, force=True)
    pd.testing.assert_frame_equal(pd.read_parquet(layout.clusters), table)


def test_photos_preset_adds_nothing_logo_specific(tmp_path):
    from lookalike import cluster, elbow, embed

    run, ids = _logo_run(tmp_path, _brand_images()[:6], source="catalog")
    settings = sim.resolve_preset("photos")
    embed.embed_images(run, **sim.embed_kwargs(settings), cache_dir=tmp_path, progress=False)
    out = embed_extras(run, settings, cache_dir=tmp_path, progress=False)
    assert out["parts_computed"] == 0 and not RunLayout(run).parts.exists()
    metrics = cluster.cluster_run(run, k_values=[2, 3], progress=False)
    assert set(metrics["method"]) == {"kmeans", "agglomerative"}
    assert elbow.default_method(metrics) == "kmeans"
    # neighbours are plain cosine on the L2 vectors
    _, vectors = storage.read_embeddings(run)
    nb = read_neighbors(run)
    v = np.asarray(vectors)
    got = nb[(nb["image_id"] == ids[0]) & (nb["rank"] == 1)]["similarity"].iloc[0]
    assert got == pytest.approx(np.sort(v[1:] @ v[0])[-1], abs=1e-5)


def test_colour_weight_works_without_parts(tmp_path):
    from lookalike import embed

    run, _ = _logo_run(tmp_path, _brand_images()[:4], source="catalog")
    settings = sim.resolve_preset("photos", colour_weight=0.3)
    embed.embed_images(run, **sim.embed_kwargs(settings), cache_dir=tmp_path, progress=False)
    out = embed_extras(run, settings, cache_dir=tmp_path, progress=False)
    assert out["parts_computed"] == 0 and out["with_parts"] == 0
    feats = sim.load_features(run)
    assert feats["colour"].shape == (4, 512) and not feats["part_mask"].any()
    inputs = sim.fused_inputs(feats)
    assert inputs["parts"] is None and inputs["colour_weight"] == 0.3


def test_a_kill_at_any_write_of_the_extras_then_a_rerun_equals_a_clean_run(tmp_path, monkeypatch):
    """Killed before each of its file writes (with other settings than the last run's),
    then run again: parts, mask and colour equal an uninterrupted run's, to the byte."""
    from lookalike import embed

    cache = tmp_path / "cache"
    runs = []
    for name in ("clean", "killed"):
        run, _ = _logo_run(tmp_path / name, _brand_images())
        settings = sim.resolve_preset("auto", run_dir=run, whiten=0)
        embed.embed_images(run, **sim.embed_kwargs(settings), cache_dir=cache, progress=False)
        embed_extras(run, settings, cache_dir=cache, progress=False)
        runs.append(RunLayout(run))
    clean, killed = runs
    other = {**settings, "colour_bins": 4, "part_size": 128}  # other parts and colours
    real = storage.atomic_path

    def files(run):
        return [p.read_bytes() for p in (run.parts, run.part_mask, run.colour)]

    killed_at = []
    for kill_at in range(1, 20):
        calls = []

        def dying(path, calls=calls, kill_at=kill_at):
            calls.append(path)
            if len(calls) == kill_at:
                raise SystemExit("killed")
            return real(path)

        monkeypatch.setattr(storage, "atomic_path", dying)
        try:
            embed_extras(killed.root, other, cache_dir=cache, progress=False)
        except SystemExit:
            killed_at.append(kill_at)
        monkeypatch.setattr(storage, "atomic_path", real)
        embed_extras(killed.root, settings, cache_dir=cache, progress=False)
        assert files(killed) == files(clean), kill_at
        if killed_at[-1:] != [kill_at]:
            break  # the run finished: every write point was tried
    assert len(killed_at) >= 4  # parts, mask, colour and the stamp at least


def test_the_parts_of_a_lockup_come_from_one_decode(tmp_path, monkeypatch):
    from lookalike import extras
    from lookalike.exceptions import ImageError
    from lookalike.vectors import prefetch

    paths = []
    for i, img in enumerate(_brand_images()):
        img.save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    opts = extras._part_opts(sim.resolve_preset("logos"))
    real = extras.part_inputs
    # the colour pass counts the boxes without cutting them: the same count
    counts = [
        int(extras._look(p, 0, opts=opts, bins=8, parts=True, negatives=True)[0]) for p in paths
    ]
    assert counts == [len(real(p, **opts)) for p in paths] == [2, 0, 2, 0, 2, 0, 0, 0]
    decoded = []
    monkeypatch.setattr(
        extras, "part_inputs", lambda path, **kw: decoded.append(path) or real(path, **kw)
    )
    todo = [(i, j) for i, n in enumerate(counts) for j in range(n)]
    load = extras._PartsOnce(paths, opts)
    got = list(prefetch(todo, load, workers=2, lookahead=4))
    assert sorted(decoded) == [paths[0], paths[2], paths[4]]  # once per lockup, not per part
    for (i, j), arr, err in got:
        assert err is None
        np.testing.assert_array_equal(arr, real(paths[i], **opts)[j])
    assert load._rows == {}  # nothing held once both parts were taken
    paths[2].write_bytes(b"not an image any more")  # broken after the colour pass
    load = extras._PartsOnce(paths, opts)
    errors = [err for _, _, err in prefetch(todo, load, workers=2, lookahead=4)]
    assert [type(e) for e in errors] == [type(None)] * 2 + [ImageError] * 2 + [type(None)] * 2
