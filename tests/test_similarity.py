"""lookalike.similarity: presets, and the fused similarity of wholes, parts and colour."""

from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import pytest
from logo_images import _icon, _lockup
from PIL import Image, ImageDraw

from lookalike import similarity as sim
from lookalike import storage
from lookalike.exceptions import ConfigError
from lookalike.extras import embed_parts
from lookalike.neighbors import NEGATIVE_SLOT, nearest_neighbors, neighbors_table
from lookalike.preprocess import colour_signature


@pytest.fixture(scope="module")
def vgg():
    from lookalike.model import load_vgg16

    return load_vgg16(layer=sim.PRESETS["logos"]["layer"])


def test_presets_resolve_to_documented_values():
    logos = sim.resolve_preset("logos")
    assert logos["layer"] == "block4_pool" and logos["pooling"] == "gem"
    assert logos["trim"] is True and logos["parts"] is True and logos["negatives"] is True
    assert (logos["image_size"], logos["part_size"], logos["part_min_aspect"]) == (160, 160, 1.5)
    assert (logos["whiten"], logos["colour_weight"], logos["colour_bins"]) == (128, 0.1, 8)
    assert logos["shape_weight"] == 0.3
    assert logos["cluster_method"] == "similarity"
    photos = sim.resolve_preset("photos")
    # photos is the plain default embedding: nothing logo-specific
    from lookalike import embed

    defaults = inspect.signature(embed.embed_images).parameters
    assert sim.embed_kwargs(photos) == {k: defaults[k].default for k in sim.EMBED_KEYS}
    assert photos["parts"] is False and photos["negatives"] is False
    assert photos["colour_weight"] == 0.0 and photos["shape_weight"] == 0.0
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
    with pytest.raises(ConfigError, match="shape_weight"):
        sim.resolve_preset("logos", shape_weight=-0.1)
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
    emb = embed_parts(images, vgg, **params)
    assert emb["vectors"].shape == (9, 512) and emb["parts"].shape == (9, 3, 512)
    mask = emb["part_mask"]
    assert mask[[0, 2, 4, 6, 8], :2].all() and not mask[[1, 3, 5, 7]].any() and not mask[:, 2].any()
    colour = np.stack([colour_signature(im) for im in images])
    for weight in (0.0, params["colour_weight"]):  # the parts alone do it; colour keeps it
        nn = neighbors_table(
            *nearest_neighbors(
                emb["vectors"],
                k=1,
                parts=emb["parts"],
                part_mask=emb["part_mask"],
                colour=colour,
                colour_weight=weight,
                normalize=False,
            )
        )
        top = dict(zip(nn["image_id"], nn["neighbor_id"], strict=True))
        assert top["0"] == "1" and top["1"] == "0", (weight, top)


def _white_on_black(img: Image.Image) -> Image.Image:
    """A logo's dark-mode version: its artwork in white on an opaque black tile, with a
    margin of a quarter of its side (artwork that fills its canvas shows no ground)."""
    rgba = np.asarray(img.convert("RGBA"))
    m = rgba.shape[0] // 4
    out = np.zeros((rgba.shape[0] + 2 * m, rgba.shape[1] + 2 * m, 3), dtype=np.uint8)
    out[m:-m, m:-m][rgba[..., 3] > 127] = 255
    return Image.fromarray(out)


def _symbol(shape: str, *, fill=None, outline=None, size: int = 192) -> Image.Image:
    """A star, heart, triangle or cross on transparency, filled or as a 10 px outline."""
    if shape == "star":
        t = np.pi / 2 + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 0.45, 0.19)
        x, y = r * np.cos(t), r * np.sin(t)
    elif shape == "heart":
        t = np.linspace(0, 2 * np.pi, 60)
        x = 0.45 * np.sin(t) ** 3
        y = 0.028 * (13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    elif shape == "triangle":
        t = np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        x, y = 0.45 * np.cos(t), 0.45 * np.sin(t)
    else:  # a cross
        x = np.array([-1, 1, 1, 3, 3, 1, 1, -1, -1, -3, -3, -1]) * 0.14
        y = np.array([3, 3, 1, 1, -1, -1, -3, -3, -1, -1, 1, 1]) * 0.14
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    points = [(size / 2 + size * a, size / 2 - size * b) for a, b in zip(x, y, strict=True)]
    ImageDraw.Draw(img).polygon(points, fill=fill, outline=outline, width=10 if outline else 0)
    return img


SYMBOLS = ("star", "heart", "triangle", "cross")


@pytest.fixture(scope="module")
def demo_space(vgg):
    """The fused similarity of 100 demo logos (distractors, and a run to whiten on as stage
    04 does), white-on-black versions of a quarter of them, and four symbols."""
    from lookalike.paths import DEMO_DIR

    logos = [Image.open(f) for f in sorted((DEMO_DIR / "logos").glob("*.png"))[::3][:100]]
    picks = list(range(0, len(logos), 4))
    red, blue = (220, 40, 40), (30, 60, 210)
    symbols = [_symbol(k, fill=red) for k in SYMBOLS] + [_symbol(k, outline=blue) for k in SYMBOLS]
    images = logos + [_white_on_black(logos[i]) for i in picks] + symbols
    params = sim.resolve_preset("logos")
    emb = embed_parts(images, vgg, **params)
    S = sim.similarity_matrix(**sim.fused_inputs({**emb, "settings": params}))
    no_shape = {**emb, "settings": {**params, "shape_weight": 0.0}}
    S_cnn = sim.similarity_matrix(**sim.fused_inputs(no_shape))
    return {"logos": logos, "picks": picks, "emb": emb, "S": S, "S_cnn": S_cnn}


def test_logo_and_its_white_on_black_version_are_mutual_nearest_neighbours(demo_space):
    logos, picks, emb = demo_space["logos"], demo_space["picks"], demo_space["emb"]
    n, m = len(logos), len(picks)
    assert emb["part_mask"][n : n + m, NEGATIVE_SLOT].all()  # each dark version has its negative
    S = demo_space["S"][: n + m, : n + m].copy()  # the symbols are not distractors here
    np.fill_diagonal(S, -np.inf)
    nn = S.argmax(axis=1)
    missed = [logos[i].filename for a, i in enumerate(picks) if nn[i] != n + a or nn[n + a] != i]
    # without the negative slot 15 of the 25 pairs miss: dark artwork finds dark artwork
    assert len(missed) <= m // 10, missed


def _style_margins(S: np.ndarray) -> np.ndarray:
    """Per symbol: its score against itself in the other style minus its best score against
    another symbol in one style (``S``: red filled symbols, then blue outlined ones)."""
    m = len(SYMBOLS)
    S = S[-2 * m :, -2 * m :]
    fill, line = S[:m, :m].copy(), S[m:, m:].copy()
    np.fill_diagonal(fill, -np.inf)
    np.fill_diagonal(line, -np.inf)
    return np.diag(S[:m, m:]) - np.maximum(fill.max(axis=1), line.max(axis=1))


def test_one_symbol_in_two_styles_beats_two_symbols_in_one_style(demo_space):
    margins = _style_margins(demo_space["S"])
    assert (margins > 0).all(), margins.round(3)
    # and the shape signature is what carries it: without it every margin is smaller (the
    # cross's is ~0: the CNN weighs fill and colour about as much as the outline)
    assert (margins > _style_margins(demo_space["S_cnn"]) + 0.01).all()


def test_colour_fusion_separates_shapes_that_differ_only_in_colour(vgg):
    red, blue = (210, 30, 40), (30, 60, 210)
    images = [
        _icon("star", red),
        _icon("star", blue),  # the same drawing in another colour
        _icon("star", red, size=90).rotate(15),  # the red star, redrawn smaller and turned
    ]
    params = sim.resolve_preset("logos", whiten=0)
    emb = embed_parts(images, vgg, **params)
    colour = np.stack([colour_signature(im) for im in images])
    assert colour.shape == (3, 512)
    np.testing.assert_allclose(np.linalg.norm(colour, axis=1), 1.0, rtol=1e-5)
    assert colour[0] @ colour[2] > 0.9 and colour[0] @ colour[1] < 0.1
    cnn = sim.similarity_matrix(emb["vectors"], colour_weight=0.0)
    fused = sim.similarity_matrix(
        emb["vectors"], colour=colour, colour_weight=params["colour_weight"]
    )
    assert cnn[0, 1] > cnn[0, 2]  # shape alone prefers the blue twin
    assert fused[0, 2] > fused[0, 1]  # the preset's colour share puts the red stars together


def test_sample_distances_are_one_minus_the_fused_similarity_of_the_rows():
    rng = np.random.default_rng(0)
    n, d = 30, 16
    vectors = rng.normal(size=(n, d)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors[7] = vectors[3]  # a duplicate: similarity 1 (up to rounding), distance 0
    parts = rng.normal(size=(n, 2, d)).astype(np.float32)
    parts /= np.linalg.norm(parts, axis=2, keepdims=True)
    inputs = {
        "vectors": vectors,
        "parts": parts,
        "part_mask": rng.random((n, 2)) < 0.5,
        "colour": np.abs(rng.normal(size=(n, 8))).astype(np.float32),
        "colour_weight": 0.2,
    }
    rows = np.array([3, 7, 0, 12, 29])
    D = sim.sample_distances(inputs, rows)
    S = sim.similarity_matrix(**inputs)[np.ix_(rows, rows)]
    assert D.shape == (5, 5) and D.dtype == np.float32
    np.testing.assert_allclose(D, np.clip(1.0 - S, 0.0, None) * (1 - np.eye(5)), atol=1e-6)
    assert (D >= 0).all() and (np.diag(D) == 0).all() and D[0, 1] < 1e-5
    full = sim.similarity_matrix(**inputs)  # already computed: its rows are taken
    np.testing.assert_allclose(sim.sample_distances(inputs, rows, similarity=full), D, atol=1e-6)


def test_whitening_above_fit_rows_matches_its_sample(monkeypatch):
    from lookalike import reduce, similarity

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(1200, 16)).astype(np.float32)
    parts = rng.normal(size=(1200, 2, 16)).astype(np.float32)
    mask = rng.random((1200, 2)) > 0.7
    monkeypatch.setattr(reduce, "FIT_ROWS", 500)
    monkeypatch.setattr(similarity, "TRANSFORM_ROWS", 200)
    w = similarity.fit_whitener(vectors, parts, mask, n_components=6, random_state=1)
    rows = reduce.fit_rows(1200, random_state=1)
    monkeypatch.setattr(reduce, "FIT_ROWS", 10**6)
    ref = similarity.fit_whitener(
        vectors[rows], parts[rows], mask[rows], n_components=6, random_state=1
    )
    assert np.allclose(w.components, ref.components, atol=1e-6)
    wholes, w_parts = w.transform(vectors, parts, mask)
    t = lambda x: similarity.l2_normalize((x - w.mean) @ w.components.T * w.scale)  # noqa: E731
    assert np.allclose(wholes, t(vectors), atol=1e-5)
    assert np.allclose(w_parts[mask], t(parts[mask]), atol=1e-5)
    assert not w_parts[~mask].any()


@pytest.mark.parametrize(("folder", "want"), [("logos", "logos"), ("shop", "photos")])
def test_auto_preset_reads_a_folder_s_images(tmp_path, folder, want):
    from lookalike.folder import index_folder
    from lookalike.paths import DEMO_DIR

    storage.merge_manifest(tmp_path, index_folder(DEMO_DIR / folder, progress=False))
    name, why = sim.choose_preset(tmp_path, sample=40)
    assert name == want, why
    assert "of 40 sampled images look like logos" in why
    assert sim.resolve_preset("auto", run_dir=tmp_path)["preset"] == want


def test_auto_preset_counts_only_readable_images(tmp_path):
    rows = pd.DataFrame(
        {
            "image_id": ["a", "b"],
            "path": ["missing.png", "also-missing.jpg"],
            "source": "folder",
            "origin": ["1", "2"],
            "status": "ok",
        }
    )
    storage.merge_manifest(tmp_path, rows)
    assert sim.choose_preset(tmp_path) == ("photos", "none of the sampled images could be read")


def test_whitening_with_a_shape_channel_survives_save_and_load(tmp_path):
    from lookalike.preprocess import SHAPE_DIM

    rng = np.random.default_rng(0)
    n = 40
    vectors = rng.normal(size=(n, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    parts = np.zeros((n, 3, 16), np.float32)
    mask = np.zeros((n, 3), bool)
    parts[:5, :2], mask[:5, :2] = vectors[:5, None], True
    shape = rng.integers(0, 255, size=(n, 3, SHAPE_DIM), dtype=np.uint8)
    settings = {**sim.resolve_preset("logos"), "whiten": 8}
    features = {"vectors": vectors, "parts": parts, "part_mask": mask, "shape": shape}
    features.update(colour=None, settings=settings)
    w = sim.fused_whitener(features)
    assert w.shape is not None and w.shape.unit_rows and not w.unit_rows
    w.save(tmp_path / "w.npz")
    back = sim.Whitener.load(tmp_path / "w.npz")
    first = sim.fused_inputs(features, whitener=w)
    again = sim.fused_inputs(features, whitener=back)
    assert first["vectors"].shape == (n, 16) and first["parts"].shape == (n, 3, 16)
    np.testing.assert_array_equal(first["vectors"], again["vectors"])
    np.testing.assert_array_equal(first["parts"], again["parts"])
    # each slot is a unit vector whose cosine blends CNN and shape 0.7 : 0.3
    np.testing.assert_allclose(np.linalg.norm(first["vectors"], axis=1), 1.0, rtol=1e-5)
    cnn = sim.fused_inputs({**features, "settings": {**settings, "shape_weight": 0.0}})
    hw, _ = w.shape.transform(shape[:, 0])
    blend = 0.7 * (cnn["vectors"] @ cnn["vectors"].T) + 0.3 * (hw @ hw.T)
    np.testing.assert_allclose(first["vectors"] @ first["vectors"].T, blend, atol=1e-5)
    # the negative slot carries the whole's shape signature
    np.testing.assert_allclose(first["parts"][:, 2, 8:], first["vectors"][:, 8:], atol=1e-6)
