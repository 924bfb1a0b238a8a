"""Logo-aware similarity: parts, colour fusion, presets, neighbours, clustering."""

from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw, ImageFont

from lookalike import similarity as sim
from lookalike import storage
from lookalike.exceptions import ConfigError


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size only
        return ImageFont.load_default()


def _icon(kind: str, colour: tuple[int, int, int], size: int = 120) -> Image.Image:
    """An RGBA icon: a coloured shape with a white detail, on transparency."""
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    s = size
    if kind == "circle":
        d.ellipse((4, 4, s - 4, s - 4), fill=colour)
        d.polygon([(s * 0.35, s * 0.25), (s * 0.35, s * 0.75), (s * 0.78, s * 0.5)], fill="white")
    elif kind == "square":
        d.rounded_rectangle((6, 6, s - 6, s - 6), radius=s // 6, fill=colour)
        d.rectangle((s * 0.3, s * 0.3, s * 0.7, s * 0.45), fill="white")
        d.rectangle((s * 0.3, s * 0.55, s * 0.7, s * 0.7), fill="white")
    elif kind == "diamond":
        d.polygon([(s / 2, 4), (s - 4, s / 2), (s / 2, s - 4), (4, s / 2)], fill=colour)
        d.ellipse((s * 0.38, s * 0.38, s * 0.62, s * 0.62), fill="white")
    elif kind == "star":
        pts = []
        for k in range(10):
            r = s * (0.47 if k % 2 == 0 else 0.2)
            a = np.pi / 2 + k * np.pi / 5
            pts.append((s / 2 + r * np.cos(a), s / 2 - r * np.sin(a)))
        d.polygon(pts, fill=colour)
    else:
        d.pieslice((4, 4, s - 4, s - 4), 30, 330, fill=colour)
    return img


def _lockup(icon: Image.Image, word: str, *, pad: int = 40) -> Image.Image:
    """Icon on the left, a dark wordmark on the right, transparent background."""
    font = _font(80)
    probe = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
    x0, y0, x1, y1 = probe.textbbox((0, 0), word, font=font)
    w = icon.width + 30 + (x1 - x0) + 2 * pad
    h = max(icon.height, y1 - y0) + 2 * pad
    img = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    img.alpha_composite(icon, (pad, (h - icon.height) // 2))
    d = ImageDraw.Draw(img)
    d.text(
        (pad + icon.width + 30 - x0, (h - (y1 - y0)) // 2 - y0),
        word,
        fill=(30, 30, 30, 255),
        font=font,
    )
    return img


@pytest.fixture(scope="module")
def vgg():
    from lookalike.weights import load_vgg16

    return load_vgg16(layer=sim.PRESETS["logos"]["layer"])


def test_presets_resolve_to_documented_values():
    logos = sim.resolve_preset("logos")
    assert logos["layer"] == "block4_pool" and logos["pooling"] == "gem"
    assert logos["trim"] is True and logos["parts"] is True
    assert (logos["image_size"], logos["part_size"], logos["part_min_aspect"]) == (224, 160, 1.5)
    assert (logos["whiten"], logos["colour_weight"], logos["colour_bins"]) == (128, 0.1, 8)
    assert logos["cluster_method"] == "similarity"
    photos = sim.resolve_preset("photos")
    # photos is the plain default embedding: nothing logo-specific
    from lookalike import embed

    defaults = inspect.signature(embed.embed_images).parameters
    assert sim.embed_kwargs(photos) == {k: defaults[k].default for k in sim.EMBED_KEYS}
    assert photos["parts"] is False and photos["colour_weight"] == 0.0
    assert photos["whiten"] == 0 and photos["cluster_method"] == "kmeans"
    # overrides apply, None means "keep the preset's", and the presets stay untouched
    assert sim.resolve_preset("logos", colour_weight=0.5, whiten=None)["colour_weight"] == 0.5
    assert sim.resolve_preset("logos")["whiten"] == 128
    with pytest.raises(ConfigError, match="preset='logo'"):
        sim.resolve_preset("logo")
    with pytest.raises(ConfigError, match="colour_wieght"):
        sim.resolve_preset("logos", colour_wieght=0.5)
    with pytest.raises(ConfigError, match="0..1"):
        sim.resolve_preset("logos", colour_weight=2.0)
    with pytest.raises(ConfigError, match="run folder"):
        sim.resolve_preset("auto")


@pytest.mark.parametrize(
    ("sources", "want"),
    [
        (["logos"] * 3, "logos"),
        (["catalog"] * 3, "photos"),
        (["folder", "logos", "folder"], "photos"),
    ],
)
def test_auto_preset_follows_where_the_images_came_from(tmp_path, sources, want):
    rows = pd.DataFrame(
        {
            "image_id": ["a", "b", "c"],
            "path": ["x", "y", "z"],
            "source": sources,
            "origin": ["1", "2", "3"],
            "status": "ok",
        }
    )
    storage.merge_manifest(tmp_path, rows)
    assert sim.resolve_preset("auto", run_dir=tmp_path)["preset"] == want


def test_part_inputs_are_the_end_squares_of_the_trimmed_lockup():
    assert sim.part_boxes(300, 100) == [(0, 0, 100, 100), (200, 0, 300, 100)]
    assert sim.part_boxes(100, 300) == [(0, 0, 100, 100), (0, 200, 100, 300)]
    assert sim.part_boxes(140, 100) == []  # below part_min_aspect 1.5: no parts
    lockup = _lockup(_icon("circle", (220, 40, 40)), "Brand")
    first, last = sim.part_inputs(lockup, part_size=64, background="white")
    assert first.shape == last.shape == (64, 64, 3) and first.dtype == np.float32
    # trimmed first: the left square is the red icon, not the 40 px transparent margin
    assert first[..., 0].mean() > first[..., 2].mean() + 40
    assert first.max() <= 255.0 and first.min() >= 0.0
    assert sim.part_inputs(_icon("square", (0, 90, 200))) == []
    tall = sim.part_inputs(lockup.rotate(90, expand=True), part_size=32)
    assert len(tall) == 2 and tall[0].shape == (32, 32, 3)
    # without trim the margins stay, so the end squares are mostly background
    loose = sim.part_inputs(lockup, part_size=64, background="white", trim=False)
    assert loose[0].mean() > first.mean()


def test_logo_and_its_icon_are_mutual_nearest_neighbours(vgg):
    brand = _icon("circle", (220, 40, 40))
    images = [
        _lockup(brand, "Redcorp"),  # 0
        brand,  # 1: the icon alone, at another size
        _lockup(_icon("square", (20, 110, 220)), "Bluebox"),
        _icon("square", (20, 110, 220)).resize((90, 90)),
        _lockup(_icon("diamond", (30, 160, 60)), "Greenly"),
        _icon("diamond", (240, 170, 0)),
        _lockup(_icon("star", (120, 60, 200)), "Starry"),
        _icon("pie", (0, 170, 170)),
        _lockup(_icon("pie", (220, 40, 40)), "Rival"),  # same red as the brand, other shape
    ]
    images[1] = images[1].resize((200, 200))
    params = sim.resolve_preset("logos", whiten=0)  # 8 images are too few to whiten on
    emb = sim.embed_parts(images, vgg, **params)
    assert emb["vectors"].shape == (9, 512) and emb["parts"].shape == (9, 2, 512)
    assert emb["part_mask"][[0, 2, 4, 6, 8]].all() and not emb["part_mask"][[1, 3, 5, 7]].any()
    colour = np.stack([sim.colour_signature(im) for im in images])
    for weight in (0.0, params["colour_weight"]):  # the parts alone do it; colour keeps it
        nn = sim.nearest_neighbors(
            emb["vectors"], emb["parts"], emb["part_mask"], colour, k=1, colour_weight=weight
        )
        top = dict(zip(nn["image_id"], nn["neighbor_id"], strict=True))
        assert top["0"] == "1" and top["1"] == "0", (weight, top)


def test_colour_fusion_separates_shapes_that_differ_only_in_colour(vgg):
    red, blue = (210, 30, 40), (30, 60, 210)
    images = [
        _icon("star", red),
        _icon("star", blue),  # the same drawing in another colour
        _icon("star", red, size=90).rotate(15),  # the red star, redrawn smaller and turned
    ]
    params = sim.resolve_preset("logos", whiten=0)
    emb = sim.embed_parts(images, vgg, **params)
    colour = np.stack([sim.colour_signature(im) for im in images])
    assert colour.shape == (3, 512)
    np.testing.assert_allclose(np.linalg.norm(colour, axis=1), 1.0, rtol=1e-5)
    assert colour[0] @ colour[2] > 0.9 and colour[0] @ colour[1] < 0.1
    cnn = sim.similarity_matrix(emb["vectors"], colour_weight=0.0)
    fused = sim.similarity_matrix(
        emb["vectors"], colour=colour, colour_weight=params["colour_weight"]
    )
    assert cnn[0, 1] > cnn[0, 2]  # shape alone prefers the blue twin
    assert fused[0, 2] > fused[0, 1]  # the preset's colour share puts the red stars together


def test_nearest_neighbors_blockwise_matches_full_matrix(monkeypatch):
    rng = np.random.default_rng(0)
    n, m, d = 23, 2, 16
    vectors = sim._l2(rng.normal(size=(n, d)))
    parts = sim._l2(rng.normal(size=(n, m, d)))
    mask = rng.random((n, m)) > 0.5
    colour = sim._l2(rng.random((n, 8)))
    full = sim.similarity_matrix(vectors, parts, mask, colour, colour_weight=0.3)
    np.testing.assert_allclose(full, full.T, atol=1e-6)
    assert np.all(full >= (vectors @ vectors.T) * 0.7 + 0.3 * (colour @ colour.T) - 1e-6)
    monkeypatch.setattr(sim, "_chunk_rows", lambda n, m, budget=0: 4)  # force 6 row blocks
    nn = sim.nearest_neighbors(
        vectors, parts, mask, colour, image_ids=[f"id{i}" for i in range(n)], k=5
    )
    assert list(nn.columns) == ["image_id", "rank", "neighbor_id", "similarity"]
    assert len(nn) == n * 5 and nn["rank"].tolist()[:5] == [1, 2, 3, 4, 5]
    S = full.copy()
    np.fill_diagonal(S, -np.inf)
    want = np.argsort(-S, axis=1, kind="stable")[:, :5]
    got = nn["neighbor_id"].str[2:].astype(int).to_numpy().reshape(n, 5)
    np.testing.assert_array_equal(got, want)
    assert (nn["image_id"] != nn["neighbor_id"]).all()
    assert np.all(np.diff(nn["similarity"].to_numpy().reshape(n, 5), axis=1) <= 0)


def test_similarity_clusters_are_deterministic_and_find_blocks():
    rng = np.random.default_rng(1)
    centres = sim._l2(rng.normal(size=(4, 32)))
    labels_true = np.repeat(np.arange(4), 6)
    x = sim._l2(centres[labels_true] + 0.08 * rng.normal(size=(24, 32)))
    perm = rng.permutation(24)
    x, labels_true = x[perm], labels_true[perm]
    S = sim.similarity_matrix(x)
    a = sim.similarity_clusters(S, n_clusters=4)
    b = sim.similarity_clusters(S.copy(), n_clusters=4)
    np.testing.assert_array_equal(a, b)
    assert a[0] == 0 and set(a) == {0, 1, 2, 3}
    # the same partition as the truth (labels may be renamed)
    pairs = {(int(t), int(c)) for t, c in zip(labels_true, a, strict=True)}
    assert len(pairs) == 4
    t = sim.similarity_clusters(S, distance_threshold=0.5)
    assert len(set(t)) == 4
    with pytest.raises(ConfigError, match="exactly one"):
        sim.similarity_clusters(S)
    with pytest.raises(ConfigError, match="n_clusters=99"):
        sim.similarity_clusters(S, n_clusters=99)


def _logo_run(tmp_path, images: list[Image.Image], source: str = "logos"):
    run = tmp_path / "run"
    (run / "logos").mkdir(parents=True)
    rows = []
    for i, img in enumerate(images):
        path = run / "logos" / f"logo{i}.png"
        img.save(path)
        rows.append(
            {
                "image_id": storage.sha256_bytes(path.read_bytes()),
                "path": f"logos/logo{i}.png",
                "source": source,
                "origin": f"brand{i}.test",
                "status": "ok",
            }
        )
    storage.merge_manifest(run, pd.DataFrame(rows))
    return run, [r["image_id"] for r in rows]


def _on_white(img: Image.Image) -> Image.Image:
    """An opaque RGB copy, as a JPEG logo would be."""
    base = Image.new("RGBA", img.size, (255, 255, 255, 255))
    return Image.alpha_composite(base, img).convert("RGB")


def _brand_images() -> list[Image.Image]:
    return [
        _on_white(_lockup(_icon("circle", (220, 40, 40)), "Redcorp")),
        _icon("circle", (220, 40, 40)).resize((200, 200)),
        _lockup(_icon("square", (20, 110, 220)), "Bluebox"),
        _icon("square", (20, 110, 220)).resize((90, 90)),
        _lockup(_icon("diamond", (30, 160, 60)), "Greenly"),
        _icon("diamond", (30, 160, 60)),
        _icon("star", (120, 60, 200)),
        _icon("pie", (0, 170, 170)),
    ]


def test_logos_preset_runs_through_stages_03_and_04(tmp_path, capsys):
    from lookalike import cluster, embed

    run, ids = _logo_run(tmp_path, _brand_images())
    settings = sim.resolve_preset("auto", run_dir=run, whiten=0)  # 8 images: too few to whiten
    assert settings["preset"] == "logos"
    cache = tmp_path / "cache"
    embed.embed_images(run, **sim.embed_kwargs(settings), cache_dir=cache, progress=False)
    first = sim.embed_extras(run, settings, cache_dir=cache, progress=False)
    assert first["with_parts"] == 3 and first["parts_computed"] == 6 and first["cached"] == 0
    assert "3 lockups with parts" in capsys.readouterr().out
    emb = run / "embeddings"
    parts, mask = np.load(emb / sim.PARTS_NAME), np.load(emb / sim.PART_MASK_NAME)
    assert parts.shape == (8, 2, 512) and mask[[0, 2, 4]].all() and not mask[[1, 3, 5, 6, 7]].any()
    colour = np.load(emb / sim.COLOUR_NAME)
    np.testing.assert_allclose(np.linalg.norm(colour, axis=1), 1.0, rtol=1e-5)
    assert sim.read_settings(run)["cluster_method"] == "similarity"

    # resume: a second call reuses the files; a rebuilt RUN/embeddings is served by the cache
    assert sim.embed_extras(run, settings, cache_dir=cache, progress=False)["reused"]
    for name in (sim.PARTS_NAME, sim.PART_MASK_NAME, sim.COLOUR_NAME):
        (emb / name).unlink()
    again = sim.embed_extras(run, settings, cache_dir=cache, progress=False)
    assert again["cached"] == 8 and again["parts_computed"] == 0
    np.testing.assert_array_equal(np.load(emb / sim.PARTS_NAME), parts)

    metrics = cluster.cluster_run(run, k_values=[2, 3, 4], progress=False)
    assert set(metrics["method"]) == {"kmeans", "agglomerative", "similarity"}
    nb = sim.read_neighbors(run)
    assert list(nb.columns) == sim.NEIGHBORS_COLUMNS and len(nb) == 8 * 7
    top = nb[nb["rank"] == 1].set_index("image_id")["neighbor_id"]
    for lockup, icon in ((0, 1), (2, 3), (4, 5)):  # each icon finds its own lockup
        assert top[ids[icon]] == ids[lockup], (lockup, icon)
    table = pd.read_parquet(run / cluster.CLUSTERS_NAME)
    at4 = table[(table["method"] == "similarity") & (table["k"] == 4)].set_index("image_id")
    for lockup, icon in ((0, 1), (2, 3), (4, 5)):
        assert at4.loc[ids[lockup], "cluster"] == at4.loc[ids[icon], "cluster"]
    # deterministic: recomputing gives the identical table
    cluster.cluster_run(run, k_values=[2, 3, 4], progress=False, force=True)
    pd.testing.assert_frame_equal(pd.read_parquet(run / cluster.CLUSTERS_NAME), table)


def test_photos_preset_adds_nothing_logo_specific(tmp_path):
    from lookalike import cluster, embed, inspect

    run, ids = _logo_run(tmp_path, _brand_images()[:6], source="catalog")
    settings = sim.resolve_preset("auto", run_dir=run)
    assert settings["preset"] == "photos"
    embed.embed_images(run, **sim.embed_kwargs(settings), cache_dir=tmp_path, progress=False)
    out = sim.embed_extras(run, settings, cache_dir=tmp_path, progress=False)
    assert out["parts_computed"] == 0 and not (run / "embeddings" / sim.PARTS_NAME).exists()
    metrics = cluster.cluster_run(run, k_values=[2, 3], progress=False)
    assert set(metrics["method"]) == {"kmeans", "agglomerative"}
    assert inspect.default_method(metrics) == "kmeans"
    # neighbours are plain cosine on the L2 vectors
    _, vectors = storage.read_embeddings(run)
    nb = sim.read_neighbors(run)
    v = np.asarray(vectors)
    got = nb[(nb["image_id"] == ids[0]) & (nb["rank"] == 1)]["similarity"].iloc[0]
    assert got == pytest.approx(np.sort(v[1:] @ v[0])[-1], abs=1e-5)


def test_colour_weight_works_without_parts(tmp_path):
    from lookalike import embed

    run, _ = _logo_run(tmp_path, _brand_images()[:4], source="catalog")
    settings = sim.resolve_preset("photos", colour_weight=0.3)
    embed.embed_images(run, **sim.embed_kwargs(settings), cache_dir=tmp_path, progress=False)
    out = sim.embed_extras(run, settings, cache_dir=tmp_path, progress=False)
    assert out["parts_computed"] == 0 and out["with_parts"] == 0
    feats = sim.load_features(run)
    assert feats["colour"].shape == (4, 512) and not feats["part_mask"].any()
    inputs = sim.fused_inputs(feats)
    assert inputs["parts"] is None and inputs["colour_weight"] == 0.3
