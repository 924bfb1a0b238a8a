"""Stage 03: image preprocessing (real files made with Pillow) and VGG16 embedding.

The embedding tests use the real ImageNet weights (lookalike.weights); they never fall back to
a randomly initialised network.
"""

from __future__ import annotations

import io as stdio
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lookalike import embed, storage
from lookalike.embed import (
    VectorCache,
    embed_images,
    l2_normalize,
    load_for_embedding,
    pool_features,
    trim_borders,
)
from lookalike.exceptions import ConfigError, ImageError
from lookalike.paths import DEMO_DIR

WHITE = np.array([255.0, 255.0, 255.0])
BLACK = np.zeros(3)


def _save(img: Image.Image, path: Path, fmt: str | None = None, **kw) -> Path:
    img.save(path, fmt, **kw)
    return path


def _logo(fg: tuple[int, int, int], size=(60, 40)) -> Image.Image:
    """A filled rectangle of colour ``fg`` on a fully transparent canvas."""
    img = Image.new("RGBA", size, (0, 0, 0, 0))
    img.paste((*fg, 255), (size[0] // 4, size[1] // 4, 3 * size[0] // 4, 3 * size[1] // 4))
    return img


# -- load_for_embedding: every mode and format --------------------------------------------


def test_transparent_logo_is_composited_on_white(tmp_path):
    p = _save(_logo((30, 30, 160)), tmp_path / "logo.png")
    a = load_for_embedding(p, image_size=64)
    assert a.shape == (64, 64, 3) and a.dtype == np.float32
    np.testing.assert_allclose(a[0, 0], WHITE)  # transparent corner -> white
    np.testing.assert_allclose(a[32, 32], [30, 30, 160], atol=1)  # artwork kept


def test_white_logo_on_transparency_gets_black_with_auto(tmp_path):
    p = _save(_logo((255, 255, 255)), tmp_path / "white.png")
    a = load_for_embedding(p, image_size=64, background="auto")
    np.testing.assert_allclose(a[32, 32], WHITE, atol=1)
    np.testing.assert_allclose(a[2, 2], BLACK)  # would be invisible on white
    # With "auto", a dark logo still gets white.
    dark = load_for_embedding(
        _save(_logo((20, 20, 20)), tmp_path / "dark.png"), image_size=64, background="auto"
    )
    np.testing.assert_allclose(dark[2, 2], WHITE)


def test_black_background_option(tmp_path):
    p = _save(_logo((200, 0, 0)), tmp_path / "logo.png")
    np.testing.assert_allclose(load_for_embedding(p, image_size=32, background="black")[0, 0], 0)


def test_semi_transparent_pixels_are_blended(tmp_path):
    img = Image.new("RGBA", (10, 10), (0, 0, 0, 128))  # 50% black
    a = load_for_embedding(_save(img, tmp_path / "half.png"), image_size=10)
    np.testing.assert_allclose(a[5, 5], 127.0, atol=1.5)


def test_cmyk_jpeg(tmp_path):
    img = Image.new("CMYK", (40, 30), (0, 255, 255, 0))  # pure red in CMYK
    p = _save(img, tmp_path / "cmyk.jpg", "JPEG", quality=95)
    assert Image.open(p).mode == "CMYK"
    a = load_for_embedding(p, image_size=32, fit="stretch")
    r, g, b = a[16, 16]
    assert r > 200 and g < 60 and b < 60, a[16, 16]


def test_16bit_png_is_rescaled_not_clipped(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 50).astype(np.uint16), (20, 1))
    p = _save(Image.fromarray(ramp), tmp_path / "gray16.png")
    assert Image.open(p).mode.startswith("I")  # I;16 (or I on older Pillow)
    a = load_for_embedding(p, image_size=50, fit="stretch")
    assert a[10, 0, 0] < 5 and a[10, -1, 0] > 250
    assert 100 < a[10, 25, 0] < 160  # mid-grey stays mid-grey (a plain clip would give 255)
    np.testing.assert_allclose(a[..., 0], a[..., 2])  # grey -> equal channels


def test_float_and_int32_tiffs(tmp_path):
    f = np.tile(np.linspace(0.0, 1.0, 30, dtype=np.float32), (10, 1))
    pf = _save(Image.fromarray(f, mode="F"), tmp_path / "f.tif")
    a = load_for_embedding(pf, image_size=30, fit="stretch")
    assert a[5, 0, 0] < 5 and a[5, -1, 0] > 250
    i = np.tile(np.linspace(0, 200, 30).astype(np.int32), (10, 1))
    pi = _save(Image.fromarray(i, mode="I"), tmp_path / "i.tif")
    b = load_for_embedding(pi, image_size=30, fit="stretch")
    assert b[5, -1, 0] == pytest.approx(200, abs=3)  # 8-bit range values kept as they are


def test_palette_png_with_transparency(tmp_path):
    img = Image.new("P", (20, 20), 0)
    img.putpalette([0, 0, 255] + [255, 0, 0] * 255)  # index 0 blue, the rest red
    img.paste(1, (5, 5, 15, 15))
    p = _save(img, tmp_path / "pal.png", transparency=0)
    assert Image.open(p).mode == "P"
    a = load_for_embedding(p, image_size=20)
    np.testing.assert_allclose(a[0, 0], WHITE)  # the transparent index is not blue
    np.testing.assert_allclose(a[10, 10], [255, 0, 0], atol=1)


def test_la_and_grey_modes(tmp_path):
    la = Image.new("LA", (16, 16), (0, 0))
    la.paste((50, 255), (4, 4, 12, 12))
    a = load_for_embedding(_save(la, tmp_path / "la.png"), image_size=16)
    np.testing.assert_allclose(a[0, 0], WHITE)
    np.testing.assert_allclose(a[8, 8], [50, 50, 50], atol=1)
    one = Image.new("1", (8, 8), 1)
    np.testing.assert_allclose(
        load_for_embedding(_save(one, tmp_path / "b.png"), image_size=8), 255
    )


def test_ico_uses_the_largest_frame(tmp_path):
    small = Image.new("RGBA", (16, 16), (255, 0, 0, 255))  # a different picture per size
    large = Image.new("RGBA", (48, 48), (0, 128, 0, 255))
    p = _save(large, tmp_path / "favicon.ico", sizes=[(16, 16), (48, 48)], append_images=[small])
    assert Image.open(p).info["sizes"] == {(16, 16), (48, 48)}
    a = load_for_embedding(p, image_size=24)
    np.testing.assert_allclose(a[12, 12], [0, 128, 0], atol=2)


def test_exif_rotated_jpeg(tmp_path):
    # Stored 60x30: left half red, right half blue; orientation 6 = rotate 90 deg clockwise.
    img = Image.new("RGB", (60, 30), (255, 0, 0))
    img.paste((0, 0, 255), (30, 0, 60, 30))
    exif = Image.Exif()
    exif[0x0112] = 6
    p = _save(img, tmp_path / "rot.jpg", "JPEG", exif=exif, quality=95)
    a = load_for_embedding(p, image_size=64)  # displayed 30x60: tall, padded left and right
    np.testing.assert_allclose(a[32, 1], WHITE)  # side padding
    np.testing.assert_allclose(a[5, 32], [255, 0, 0], atol=20)  # red (was left) is on top
    np.testing.assert_allclose(a[58, 32], [0, 0, 255], atol=20)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animations_use_the_first_frame(tmp_path, fmt):
    frames = [Image.new("RGB", (20, 20), c) for c in ((255, 0, 0), (0, 0, 255))]
    p = tmp_path / f"anim.{fmt.lower()}"
    extra = {"lossless": True} if fmt == "WEBP" else {}
    frames[0].save(p, fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **extra)
    assert Image.open(p).n_frames == 2
    a = load_for_embedding(p, image_size=20)
    assert a[10, 10, 0] > 200 and a[10, 10, 2] < 50


def test_i16_mode_png(tmp_path):
    img = Image.new("I;16", (30, 10), 0)
    img.paste(65535, (15, 0, 30, 10))  # left half black, right half white, 16-bit
    p = _save(img, tmp_path / "i16.png")
    assert Image.open(p).mode.startswith("I")
    a = load_for_embedding(p, image_size=30, fit="stretch")
    assert a[15, 2, 0] < 5 and a[15, 27, 0] > 250


def test_background_none_is_the_seeds_plain_convert(tmp_path):
    img = Image.new("RGBA", (20, 20), (0, 0, 0, 0))  # transparent black, as most PNGs store it
    img.paste((200, 0, 0, 255), (5, 5, 15, 15))
    p = _save(img, tmp_path / "logo.png")
    np.testing.assert_allclose(load_for_embedding(p, image_size=20, background="none")[1, 1], 0)
    np.testing.assert_allclose(load_for_embedding(p, image_size=20)[1, 1], WHITE)


def test_trim_removes_transparent_and_flat_margins(tmp_path):
    # A 20x10 blue bar in the middle of a 100x100 transparent canvas fills the width once trimmed.
    img = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    img.paste((0, 0, 255, 255), (40, 45, 60, 55))
    p = _save(img, tmp_path / "small-logo.png")
    plain = load_for_embedding(p, image_size=50)
    trimmed = load_for_embedding(p, image_size=50, trim=True)
    np.testing.assert_allclose(plain[25, 2], WHITE)  # untrimmed: margin at the left edge
    np.testing.assert_allclose(trimmed[25, 2], [0, 0, 255], atol=2)  # trimmed: the bar
    np.testing.assert_allclose(trimmed[2, 25], WHITE)  # padded above and below (2:1 bar)
    # The same on an opaque light-grey canvas (a JPEG-like flat margin).
    flat = Image.new("RGB", (100, 100), (240, 240, 240))
    flat.paste((0, 0, 255), (40, 45, 60, 55))
    t = load_for_embedding(_save(flat, tmp_path / "flat.png"), image_size=50, trim=True)
    np.testing.assert_allclose(t[25, 2], [0, 0, 255], atol=2)


def test_trim_leaves_photos_and_blank_images_alone():
    rng = np.random.default_rng(0)
    photo = Image.fromarray((rng.random((30, 40, 3)) * 255).astype(np.uint8))
    assert trim_borders(photo).size == (40, 30)  # corners disagree: no uniform margin
    blank = Image.new("RGBA", (30, 30), (0, 0, 0, 0))
    assert trim_borders(blank).size == (30, 30)  # nothing but margin: left as it is
    framed = Image.new("RGB", (30, 30), (255, 255, 255))
    framed.paste((0, 0, 0), (10, 5, 20, 25))
    assert trim_borders(framed).size == (10, 20)


def test_pad_keeps_aspect_and_stretch_fills(tmp_path):
    img = Image.new("RGB", (80, 40), (10, 200, 10))  # 2:1 landscape
    p = _save(img, tmp_path / "wide.png")
    pad = load_for_embedding(p, image_size=64, fit="pad")
    stretch = load_for_embedding(p, image_size=64, fit="stretch")
    assert pad.shape == stretch.shape == (64, 64, 3)
    np.testing.assert_allclose(pad[2, 32], WHITE)  # top band is padding
    np.testing.assert_allclose(pad[32, 32], [10, 200, 10], atol=1)
    np.testing.assert_allclose(stretch[2, 32], [10, 200, 10], atol=1)


def test_accepts_bytes(tmp_path):
    buf = stdio.BytesIO()
    Image.new("RGB", (5, 5), (1, 2, 3)).save(buf, "PNG")
    np.testing.assert_allclose(load_for_embedding(buf.getvalue(), image_size=5)[2, 2], [1, 2, 3])


@pytest.mark.parametrize(
    "data",
    [b"", b"<!DOCTYPE html><html><body>404</body></html>", b"just some text, not an image"],
    ids=["empty", "html", "text"],
)
def test_non_images_raise_image_error(data):
    with pytest.raises(ImageError):
        load_for_embedding(data)


def test_truncated_jpeg_raises_image_error(tmp_path):
    rng = np.random.default_rng(0)
    img = Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8))
    p = _save(img, tmp_path / "full.jpg", "JPEG")
    with pytest.raises(ImageError):
        load_for_embedding(p.read_bytes()[: p.stat().st_size // 2])


def test_bad_options_raise_config_error(tmp_path):
    p = _save(Image.new("RGB", (4, 4)), tmp_path / "x.png")
    with pytest.raises(ConfigError, match="background"):
        load_for_embedding(p, background="grey")
    with pytest.raises(ConfigError, match="fit"):
        load_for_embedding(p, fit="crop")


# -- pooling, normalisation, cache ---------------------------------------------------------


def test_pooling_shapes_and_values():
    rng = np.random.default_rng(0)
    fmap = rng.random((3, 7, 7, 512)).astype(np.float32)
    avg, mx, gem = (pool_features(fmap, p) for p in ("avg", "max", "gem"))
    assert avg.shape == mx.shape == gem.shape == (3, 512)
    assert pool_features(fmap, "flatten").shape == (3, 7 * 7 * 512)
    assert np.all(avg <= gem + 1e-6) and np.all(gem <= mx + 1e-6)  # power-mean inequality
    np.testing.assert_allclose(avg, fmap.mean(axis=(1, 2)), rtol=1e-6)
    with pytest.raises(ConfigError):
        pool_features(fmap, "median")


def test_l2_normalize_keeps_zero_rows():
    v = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(v, [[0.6, 0.8], [0.0, 0.0]])


def test_vector_cache_roundtrip_and_damaged_file(tmp_path):
    cache = VectorCache(tmp_path)
    image_id = "ab" + "0" * 62
    assert cache.get(image_id) is None
    cache.put(image_id, np.arange(4, dtype=np.float32))
    np.testing.assert_array_equal(cache.get(image_id, 4), np.arange(4))
    assert cache.get(image_id, 8) is None  # wrong dimension reads as a miss
    (tmp_path / "ab" / f"{image_id}.npy").write_bytes(b"\x93NUMPY garbage")
    assert cache.get(image_id) is None
    assert not list(tmp_path.rglob("*.tmp"))


# -- embed_images with the real VGG16 ------------------------------------------------------


def _photo(seed: int, size=(96, 72)) -> Image.Image:
    """A small synthetic picture: a coloured gradient with a shape, distinct per seed."""
    rng = np.random.default_rng(seed)
    w, h = size
    base = np.linspace(0, 1, w)[None, :, None] * rng.random(3)[None, None, :] * 255
    arr = np.broadcast_to(base, (h, w, 3)).copy()
    x0, y0 = rng.integers(0, w // 2), rng.integers(0, h // 2)
    arr[y0 : y0 + h // 3, x0 : x0 + w // 3] = rng.random(3) * 255
    return Image.fromarray(arr.astype(np.uint8))


def _add_rows(run: Path, items: list[tuple[str, bytes]], *, status: str = "ok") -> None:
    rows = []
    for name, data in items:
        p = run / "images" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        rows.append(
            {
                "image_id": storage.sha256_bytes(data),
                "path": f"images/{name}",
                "source": "folder",
                "origin": name,
                "width": 1,
                "height": 1,
                "status": status,
                "error": None,
            }
        )
    storage.merge_manifest(run, pd.DataFrame(rows))


def _png(img: Image.Image) -> bytes:
    buf = stdio.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


EMBED_KW = {"image_size": 64, "batch_size": 4, "workers": 2, "progress": False}


def _bomb_png() -> bytes:
    """A few kB of PNG that claims 9000x5000 pixels (45 MP, over the 40 MP budget)."""
    return _png(Image.new("1", (9000, 5000), 0))


@pytest.fixture(scope="module")
def embedded_run(tmp_path_factory):
    """A run with 8 good images and 4 bad ones, embedded once with the real weights."""
    run = tmp_path_factory.mktemp("embed-run")
    cache = tmp_path_factory.mktemp("embed-cache")
    good = [(f"p{i}.png", _png(_photo(i))) for i in range(7)]
    good.append(("logo.png", _png(_logo((0, 90, 200)))))
    rng = np.random.default_rng(1)
    jpg = stdio.BytesIO()
    Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(jpg, "JPEG")
    bad = [
        ("truncated.jpg", jpg.getvalue()[: len(jpg.getvalue()) // 2]),
        ("empty.png", b""),
        ("page.jpg", b"<!doctype html><html><head><title>Not found</title></head></html>"),
        ("bomb.png", _bomb_png()),
    ]
    _add_rows(run, good[:4] + bad + good[4:])
    _add_rows(run, [("failed_upstream.png", _png(_photo(99)))], status="failed")
    summary = embed_images(run, cache_dir=cache, **EMBED_KW)
    return run, cache, summary, good, bad


def test_embed_writes_unit_vectors(embedded_run):
    run, _, summary, good, _ = embedded_run
    assert summary["computed"] == 8 and summary["cached"] == 0 and summary["failed"] == 4
    assert summary["embedded"] == 8 and summary["n_images"] == 12
    ids, vectors = storage.read_embeddings(run)
    assert vectors.shape == (8, 512) and vectors.dtype == np.float32
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Rows follow the manifest order, minus the failures and the upstream-failed row.
    expected = [storage.sha256_bytes(data) for _, data in good]
    assert ids["image_id"].tolist() == expected
    assert ids["path"].tolist() == [f"images/{name}" for name, _ in good]


def test_embed_records_failures_without_stopping(embedded_run):
    run, _, _, _, bad = embedded_run
    failed = pd.read_parquet(run / "embeddings" / "failed.parquet")
    assert list(failed.columns) == ["image_id", "path", "error"]
    by_path = dict(zip(failed["path"], failed["error"], strict=True))
    assert set(by_path) == {f"images/{name}" for name, _ in bad}
    assert by_path["images/page.jpg"].startswith("html")
    assert by_path["images/empty.png"].startswith("empty")
    assert by_path["images/truncated.jpg"].startswith("corrupt")
    assert by_path["images/bomb.png"].startswith("decompression_bomb")


def test_embed_marks_failures_in_the_manifest(embedded_run):
    run, _, _, good, bad = embedded_run
    m = storage.read_manifest(run).set_index("path")
    for name, _ in bad:
        row = m.loc[f"images/{name}"]
        assert row["status"] == "failed" and row["error"].startswith("embed: "), row
    assert m.loc["images/page.jpg", "error"].startswith("embed: html")
    assert (m.loc[[f"images/{name}" for name, _ in good], "status"] == "ok").all()
    # A row an earlier stage failed keeps its own status and reason.
    assert m.loc["images/failed_upstream.png", "status"] == "failed"
    assert pd.isna(m.loc["images/failed_upstream.png", "error"])


def test_embed_vectors_discriminate(embedded_run, tmp_path):
    """Real ImageNet features: an image re-encoded as JPEG stays close, others are further."""
    run, cache, _, good, _ = embedded_run
    _, vectors = storage.read_embeddings(run)
    twin = tmp_path / "twin-run"
    buf = stdio.BytesIO()
    Image.open(stdio.BytesIO(good[0][1])).save(buf, "JPEG", quality=92)
    _add_rows(twin, [("twin.jpg", buf.getvalue())])
    embed_images(twin, cache_dir=cache, **EMBED_KW)
    _, v_twin = storage.read_embeddings(twin)
    sims = np.asarray(vectors) @ v_twin[0]
    assert sims[0] > 0.95
    assert sims[0] > np.max(sims[1:])


def test_second_run_reuses_everything(embedded_run, capsys):
    run, cache, _, _, _ = embedded_run
    before = np.load(run / "embeddings" / "vectors.npy")
    again = embed_images(run, cache_dir=cache, **EMBED_KW)
    assert again["reused"] and again["computed"] == 0 and again["embedded"] == 8
    assert "computed 0" in capsys.readouterr().out
    np.testing.assert_array_equal(np.load(run / "embeddings" / "vectors.npy"), before)
    # Forced rebuild: every vector comes from the cache, nothing is computed.
    forced = embed_images(run, cache_dir=cache, force=True, **EMBED_KW)
    assert not forced["reused"] and forced["computed"] == 0 and forced["cached"] == 8
    np.testing.assert_array_equal(np.load(run / "embeddings" / "vectors.npy"), before)


def test_new_images_are_the_only_ones_computed(embedded_run):
    run, cache, _, _, _ = embedded_run
    before_ids, before = storage.read_embeddings(run)
    before = np.array(before)
    _add_rows(run, [("new1.png", _png(_photo(50))), ("new2.png", _png(_photo(51)))])
    summary = embed_images(run, cache_dir=cache, **EMBED_KW)
    assert summary["computed"] == 2 and summary["cached"] == 8 and summary["failed"] == 4
    ids, vectors = storage.read_embeddings(run)
    assert vectors.shape == (10, 512)
    np.testing.assert_array_equal(vectors[:8], before)
    assert ids["image_id"].tolist()[:8] == before_ids["image_id"].tolist()


def test_changed_parameters_get_their_own_cache(embedded_run):
    run, cache, first, _, _ = embedded_run
    other = embed_images(run, cache_dir=cache, pooling="gem", normalize=False, **EMBED_KW)
    assert other["computed"] == other["n_images"] - 4  # nothing shared with the avg vectors
    assert other["cache_dir"] != first["cache_dir"]
    _, v = storage.read_embeddings(run)
    assert v.shape[1] == 512 and not np.allclose(np.linalg.norm(v, axis=1), 1.0)
    # Restore the default embeddings for the tests that follow (served from the cache).
    assert embed_images(run, cache_dir=cache, **EMBED_KW)["computed"] == 0


def test_modified_or_missing_files_are_recorded_not_embedded(tmp_path):
    run = tmp_path / "run"
    items = [(f"{c}.png", _png(_photo(i))) for i, c in enumerate("abc")]
    _add_rows(run, items)
    (run / "images" / "b.png").write_bytes(_png(_photo(5)))  # changed after the manifest
    (run / "images" / "c.png").unlink()
    summary = embed_images(run, cache_dir=tmp_path / "cache", **EMBED_KW)
    assert summary["computed"] == 1 and summary["failed"] == 2
    failed = pd.read_parquet(run / "embeddings" / "failed.parquet").set_index("path")
    assert "sha256" in failed.loc["images/b.png", "error"]
    assert failed.loc["images/c.png", "error"].startswith("FileNotFoundError")
    assert storage.read_embeddings(run)[0]["path"].tolist() == ["images/a.png"]


def test_no_ok_images_is_an_error(tmp_path):
    run = tmp_path / "run"
    _add_rows(run, [("a.png", b"")], status="failed")
    with pytest.raises(Exception, match="no images to embed"):
        embed_images(run, cache_dir=tmp_path / "cache", **EMBED_KW)


def test_image_size_too_small_for_the_layer(embedded_run):
    run, cache, _, _, _ = embedded_run
    with pytest.raises(ConfigError, match="too small"):
        embed_images(run, cache_dir=cache, **{**EMBED_KW, "image_size": 16})


def test_all_images_failing_gives_empty_embeddings(tmp_path):
    run = tmp_path / "run"
    _add_rows(run, [("a.png", b"not an image"), ("b.jpg", b"<html><body>x</body></html>")])
    summary = embed_images(run, cache_dir=tmp_path / "cache", **EMBED_KW)
    assert summary["embedded"] == 0 and summary["failed"] == 2
    ids, vectors = storage.read_embeddings(run)
    assert len(ids) == 0 and vectors.shape == (0, 512)


def test_failures_are_retried_and_cleared_when_the_file_is_fixed(tmp_path):
    """A failure is not stale: the next run retries it and un-marks the row once it works."""
    run, cache = tmp_path / "run", tmp_path / "cache"
    items = [("a.png", _png(_photo(1))), ("b.png", _png(_photo(2)))]
    _add_rows(run, items)
    (run / "images" / "b.png").unlink()  # e.g. a disk that was not mounted yet
    first = embed_images(run, cache_dir=cache, **EMBED_KW)
    assert first["failed"] == 1 and first["manifest_updated"] == 1
    m = storage.read_manifest(run).set_index("path")
    assert m.loc["images/b.png", "status"] == "failed"
    assert m.loc["images/b.png", "error"].startswith("embed: FileNotFoundError")
    (run / "images" / "b.png").write_bytes(items[1][1])
    second = embed_images(run, cache_dir=cache, **EMBED_KW)
    assert second["computed"] == 1 and second["cached"] == 1 and second["failed"] == 0
    assert second["manifest_updated"] == 1
    m = storage.read_manifest(run).set_index("path")
    assert m.loc["images/b.png", "status"] == "ok" and pd.isna(m.loc["images/b.png", "error"])
    assert len(storage.read_embeddings(run)[0]) == 2
    assert pd.read_parquet(run / "embeddings" / "failed.parquet").empty


def test_temp_folders_of_a_crashed_run_are_removed(tmp_path):
    run = tmp_path / "run"
    _add_rows(run, [("a.png", _png(_photo(1)))])
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    stale = [
        run / f".embeddings-tmp-{dead.stdout.strip()}-abc",  # its process is gone
        run / ".embeddings-k2j3h4",  # the first version's name, without a pid
        run / f".embeddings.old-{dead.stdout.strip()}-123",
    ]
    live = run / f".embeddings-tmp-{os.getppid()}-xyz"  # a process that is still running
    for d in [*stale, live]:
        d.mkdir()
        (d / "all.npy").write_bytes(b"partial")
    embed_images(run, cache_dir=tmp_path / "cache", **EMBED_KW)
    assert not any(d.exists() for d in stale)
    assert live.exists()
    left = sorted(p.name for p in run.iterdir() if p.name.startswith(".embeddings"))
    assert left == [live.name]


def test_cache_key_holds_the_weights_digest_and_every_parameter():
    from lookalike.weights import WEIGHTS_ID, ensure_vgg16_weights

    params = embed.embedding_params()
    digest_id = ensure_vgg16_weights(allow_download=False).weights_id
    assert params["weights_id"] == digest_id and digest_id != WEIGHTS_ID
    assert params["weights_id"].startswith(WEIGHTS_ID + "-")
    base = embed.params_hash(params)
    assert embed.params_hash(embed.embedding_params(weights="other-weights")) != base
    for change in (
        {"trim": True},
        {"precision": "bf16"},
        {"background": "auto"},
        {"layer": "block4_pool"},
        {"image_size": 128},
    ):
        assert embed.params_hash(embed.embedding_params(**change)) != base, change
    assert "calib" in embed.embedding_params(precision="int8")["quantization"]


@pytest.mark.parametrize(
    ("layer", "size", "shape"),
    [
        ("block5_pool", 224, (7, 7, 512)),
        ("block4_pool", 64, (4, 4, 512)),
        ("block3_conv3", 50, (12, 12, 256)),
        ("block1_pool", 33, (16, 16, 64)),
    ],
)
def test_feature_map_shape_matches_the_network(layer, size, shape):
    assert embed.feature_map_shape(layer, size) == shape
    from lookalike.weights import load_vgg16

    out = load_vgg16(layer=layer).compute_output_shape((1, size, size, 3))
    assert tuple(out[1:]) == shape
    assert embed.output_dim(layer, size, "flatten") == int(np.prod(shape))


def _real_images(n: int) -> list[Path]:
    """``n`` real images bundled with the repository: logos and product photos."""
    logos = sorted((DEMO_DIR / "logos").glob("*.png"))
    shop = sorted((DEMO_DIR / "shop").glob("*.jpg"))
    return (
        logos[7 :: len(logos) // (n // 2)][: n // 2]
        + shop[5 :: len(shop) // (n - n // 2)][: n - n // 2]
    )


@pytest.fixture(scope="module")
def real_batch():
    files = _real_images(16)
    assert len(files) == 16
    x = np.stack([embed.prepare(load_for_embedding(p, image_size=64)) for p in files])
    ref = l2_normalize(pool_features(embed.load_extractor(image_size=64)(x), "avg"))
    return x, ref


def _agreement(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, float]:
    cos = np.einsum("ij,ij->i", a, b)
    sa, sb = a @ a.T, b @ b.T
    np.fill_diagonal(sa, -2)
    np.fill_diagonal(sb, -2)
    return cos, float(np.mean(sa.argmax(1) == sb.argmax(1)))


def test_onnx_fp32_equals_keras(real_batch):
    x, ref = real_batch
    ex = embed.load_extractor(image_size=64, backend="onnxruntime")
    cos, _ = _agreement(ref, l2_normalize(pool_features(ex(x), "avg")))
    assert 1.0 - cos.min() < 1e-4


@pytest.mark.parametrize(("precision", "min_mean_cos"), [("bf16", 0.999), ("int8", 0.98)])
def test_fast_path_agrees_with_fp32(real_batch, tmp_path_factory, precision, min_mean_cos):
    """Loose bounds on 16 real images at 64 px; benchmarks/embed.py measures the real figures."""
    x, ref = real_batch
    cache = tmp_path_factory.mktemp("int8-models")
    ex = embed.load_extractor(image_size=64, precision=precision, cache_dir=cache, progress=False)
    assert ex.precision == precision
    cos, nn_same = _agreement(ref, l2_normalize(pool_features(ex(x), "avg")))
    assert cos.mean() > min_mean_cos and cos.min() > 0.9
    assert nn_same >= 0.75
    if precision == "int8":
        assert len(list(cache.glob("models/*.onnx"))) == 1  # built once, then reused


def test_embed_images_int8_has_its_own_cache(embedded_run):
    run, cache, first, _, _ = embedded_run
    fast = embed_images(run, cache_dir=cache, precision="int8", **EMBED_KW)
    assert fast["precision"] == "int8" and fast["backend"] == "onnxruntime"
    assert fast["cache_dir"] != first["cache_dir"] and fast["cached"] == 0
    _, v = storage.read_embeddings(run)
    v = np.array(v)
    assert embed_images(run, cache_dir=cache, **EMBED_KW)["computed"] == 0  # fp32 back
    _, ref = storage.read_embeddings(run)
    assert np.einsum("ij,ij->i", v, ref).mean() > 0.98


def test_bad_precision_and_backend_raise_config_error():
    with pytest.raises(ConfigError, match="precision"):
        embed.load_extractor(precision="fp16")
    with pytest.raises(ConfigError, match="backend"):
        embed.load_extractor(precision="int8", backend="keras")


def test_prepare_is_keras_preprocess_input():
    from keras.applications.vgg16 import preprocess_input

    x = np.random.default_rng(0).random((2, 5, 4, 3)).astype(np.float32) * 255
    np.testing.assert_allclose(embed.prepare(x), preprocess_input(x.copy()), atol=1e-4)
    assert embed.prepare(x[0]).shape == (5, 4, 3)


def test_nearest_neighbours_by_cosine():
    v = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0], [5.0, 0.2]], np.float32)
    near = embed.nearest_neighbours(v, [0, 2], k=2, chunk=2)
    assert near.tolist() == [[4, 1], [1, 4]]  # cosine, not distance: row 4 is far but aligned
    assert embed.nearest_neighbours(v, [3], k=10).shape == (1, 4)  # at most n - 1, never itself
