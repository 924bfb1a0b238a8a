"""lookalike.preprocess: every mode and format made ready for the network (real files)."""

from __future__ import annotations

import io as stdio
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from logo_images import _icon, _lockup
from PIL import Image

from lookalike.exceptions import ConfigError, ImageError
from lookalike.images import decode_image
from lookalike.preprocess import (
    draft_size,
    load_for_embedding,
    part_boxes,
    part_inputs,
    read_image,
    trim_borders,
)

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


def test_part_inputs_are_the_end_squares_of_the_trimmed_lockup():
    assert part_boxes(300, 100) == [(0, 0, 100, 100), (200, 0, 300, 100)]
    assert part_boxes(100, 300) == [(0, 0, 100, 100), (0, 200, 100, 300)]
    assert part_boxes(140, 100) == []  # below part_min_aspect 1.5: no parts
    lockup = _lockup(_icon("circle", (220, 40, 40)), "Brand")
    first, last = part_inputs(lockup, part_size=64, background="white")
    assert first.shape == last.shape == (64, 64, 3) and first.dtype == np.float32
    # trimmed first: the left square is the red icon, not the 40 px transparent margin
    assert first[..., 0].mean() > first[..., 2].mean() + 40
    assert first.max() <= 255.0 and first.min() >= 0.0
    assert part_inputs(_icon("square", (0, 90, 200))) == []
    tall = part_inputs(lockup.rotate(90, expand=True), part_size=32)
    assert len(tall) == 2 and tall[0].shape == (32, 32, 3)
    # without trim the margins stay, so the end squares are mostly background
    loose = part_inputs(lockup, part_size=64, background="white", trim=False)
    assert loose[0].mean() > first.mean()


# -- draft mode: large JPEGs decoded at a reduced scale ----------------------------------


SHOP = Path(__file__).resolve().parents[1] / "data" / "demo" / "shop"


def _large_jpeg(tmp_path: Path, name: str = "avocado-2.jpg", size=(2048, 1536)) -> bytes:
    """A real product photo scaled up to ``size`` and saved as a JPEG: its bytes."""
    with Image.open(SHOP / name) as im:
        big = im.convert("RGB").resize(size, Image.Resampling.BICUBIC)
    return _save(big, tmp_path / f"large-{name}", "JPEG", quality=90).read_bytes()


def test_draft_size_keeps_twice_the_output_on_the_side_that_matters():
    assert draft_size(2048, 1536, image_size=224) == (448, 336)  # pad: the long side
    assert draft_size(1536, 2048, image_size=224) == (336, 448)
    assert draft_size(2048, 1536, image_size=224, fit="stretch") == (448, 448)  # both sides


def test_large_jpeg_is_decoded_in_draft_mode_and_stays_close(tmp_path):
    data = _large_jpeg(tmp_path)
    need = partial(draft_size, image_size=224)
    assert read_image(data).size == (2048, 1536)
    assert decode_image(data, draft=need).size == (512, 384)  # 1/4 scale, long side >= 448
    for trim in (False, True):
        drafted = load_for_embedding(data, trim=trim)
        full = load_for_embedding(data, trim=trim, draft=False)
        assert drafted.shape == full.shape == (224, 224, 3)
        diff = np.abs(drafted - full)
        # not the same decode (the draft was taken), yet the same picture
        assert diff.max() > 0 and diff.mean() < 1.0, (trim, diff.mean())


def test_stretch_never_drafts_below_the_short_side(tmp_path):
    data = _large_jpeg(tmp_path, size=(2048, 400))  # 400 < 2 x 224: no scale fits both sides
    need = partial(draft_size, image_size=224, fit="stretch")
    assert decode_image(data, draft=need).size == (2048, 400)
    np.testing.assert_array_equal(
        load_for_embedding(data, fit="stretch"),
        load_for_embedding(data, fit="stretch", draft=False),
    )
    # padded, only the long side matters: 2048 / 4 = 512 >= 448
    assert decode_image(data, draft=partial(draft_size, image_size=224)).size == (512, 100)


def test_small_jpegs_and_pngs_are_decoded_in_full(tmp_path):
    small = (SHOP / "avocado-2.jpg").read_bytes()  # 256 px: below 2 x 224
    np.testing.assert_array_equal(load_for_embedding(small), load_for_embedding(small, draft=False))
    with Image.open(SHOP / "avocado-2.jpg") as im:
        big = im.convert("RGB").resize((2048, 1536), Image.Resampling.BICUBIC)
    png = _save(big, tmp_path / "large.png").read_bytes()
    assert decode_image(png, draft=partial(draft_size, image_size=224)).size == (2048, 1536)
    np.testing.assert_array_equal(load_for_embedding(png), load_for_embedding(png, draft=False))


def test_trim_decodes_again_in_full_when_the_artwork_is_small(tmp_path):
    # a small photo in the middle of a large white JPEG: trimmed, the draft would be too small
    canvas = Image.new("RGB", (2048, 1536), "white")
    with Image.open(SHOP / "avocado-2.jpg") as im:
        canvas.paste(im.convert("RGB").resize((300, 300)), (900, 600))
    data = _save(canvas, tmp_path / "small-artwork.jpg", "JPEG", quality=90).read_bytes()
    assert decode_image(data, draft=partial(draft_size, image_size=2 * 224)).size == (1024, 768)
    np.testing.assert_array_equal(
        load_for_embedding(data, trim=True), load_for_embedding(data, trim=True, draft=False)
    )


def test_draft_does_not_let_a_bomb_through(tmp_path):
    data = _large_jpeg(tmp_path)
    with pytest.raises(ImageError) as e:
        decode_image(data, max_pixels=1_000_000, draft=partial(draft_size, image_size=224))
    assert e.value.reason == "decompression_bomb"  # judged by the stored 2048 x 1536


def test_negative_input_only_for_light_on_dark_artwork():
    from PIL import ImageDraw

    from lookalike.preprocess import negative_input, shows_light_on_dark

    dark = Image.new("RGB", (64, 64), (0, 0, 0))
    ImageDraw.Draw(dark).ellipse((16, 16, 48, 48), fill=(255, 255, 255))
    light = Image.new("RGB", (64, 64), (255, 255, 255))
    ImageDraw.Draw(light).ellipse((16, 16, 48, 48), fill=(200, 30, 30))
    assert shows_light_on_dark(dark) and not shows_light_on_dark(light)
    assert negative_input(light, image_size=32) is None
    neg = negative_input(dark, image_size=32)
    assert neg.shape == (32, 32, 3)
    assert neg[16, 16].max() < 30 and neg[0, 0].min() > 225  # dark disc on white, trimmed


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_shape_signature_ignores_polarity_colour_and_fill_but_not_the_outline():
    from PIL import ImageDraw

    from lookalike.preprocess import SHAPE_DIM, SHAPE_SIZE, shape_signature, shape_signatures

    def drawn(shape: str, *, fill=None, outline=None, ground=(255, 255, 255)) -> np.ndarray:
        img = Image.new("RGB", (SHAPE_SIZE, SHAPE_SIZE), ground)
        box = (8, 8, SHAPE_SIZE - 8, SHAPE_SIZE - 8)
        draw = ImageDraw.Draw(img)
        if shape == "disc":
            draw.ellipse(box, fill=fill, outline=outline, width=3)
        else:
            draw.polygon([(32, 8), (56, 56), (8, 56)], fill=fill, outline=outline, width=3)
        return np.asarray(img, dtype=np.float32)

    red_disc = shape_signature(drawn("disc", fill=(220, 40, 40)))
    assert red_disc.shape == (SHAPE_DIM,) and red_disc.dtype == np.uint8
    # unsigned gradients: the negative has the very same signature
    negative = shape_signature(255.0 - drawn("disc", fill=(220, 40, 40)))
    np.testing.assert_array_equal(negative, red_disc)
    blue_disc = shape_signature(drawn("disc", fill=(30, 60, 210)))
    blue_ring = shape_signature(drawn("disc", outline=(30, 60, 210)))
    red_triangle = shape_signature(drawn("triangle", fill=(220, 40, 40)))
    assert _cosine(red_disc, blue_disc) > 0.99  # block normalisation: contrast drops out
    # another colour and fill style is still closer than another outline in the same style
    assert _cosine(red_disc, blue_ring) > _cosine(red_disc, red_triangle) + 0.5
    # an image and its end squares: one row each, the whole first
    wide = Image.new("RGBA", (300, 100), (0, 0, 0, 0))
    ImageDraw.Draw(wide).ellipse((0, 0, 99, 99), fill=(220, 40, 40, 255))
    rows = shape_signatures(wide, [(0, 0, 100, 100), (200, 0, 300, 100)])
    assert rows.shape == (3, SHAPE_DIM) and rows[1].any() and not rows[2].any()  # blank end
    assert shape_signatures(wide, []).shape == (1, SHAPE_DIM)
