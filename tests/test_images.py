"""lookalike.images: safe decoding, format sniffing and SVG rendering."""

from __future__ import annotations

import base64
import gzip
import io
import struct
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from lookalike import images
from lookalike.exceptions import ImageError


def encode(fmt, size=(40, 30), mode="RGB", color=(200, 40, 40), **kw):
    im = Image.new(mode, size, color)
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def png_claiming(width, height):
    """A tiny valid-looking PNG whose header claims ``width`` x ``height`` pixels."""
    data = bytearray(encode("PNG", (1, 1)))
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def reason_of(data, **kw):
    with pytest.raises(ImageError) as info:
        images.decode_image(data, **kw)
    assert str(info.value).startswith(info.value.reason + ":")
    return info.value.reason


@pytest.mark.parametrize(
    "fmt, ext, kw",
    [
        ("JPEG", "jpg", {}),
        ("PNG", "png", {}),
        ("GIF", "gif", {}),
        ("WEBP", "webp", {}),
        ("BMP", "bmp", {}),
        ("TIFF", "tif", {}),
    ],
)
def test_decode_common_formats(fmt, ext, kw):
    im = images.decode_image(encode(fmt, **kw))
    assert im.format == fmt and im.size == (40, 30)
    assert images.FORMAT_EXTENSIONS[im.format] == ext
    assert images.sniff_format(encode(fmt, **kw)) == fmt.lower().replace("tiff", "tiff")


def test_ico_picks_largest_frame():
    data = encode("ICO", (64, 64), "RGBA", (0, 0, 255, 128), sizes=[(16, 16), (48, 48), (32, 32)])
    im = images.decode_image(data)
    assert im.format == "ICO" and im.size == (48, 48)
    assert images.sniff_format(data) == "ico"


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (b"<!DOCTYPE html><html><head><title>Login</title></head></html>", "html"),
        (b"  <html><body>404</body></html>", "html"),
        (b"just some text", "not_an_image"),
        (b'{"error": "nope"}', "not_an_image"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"></svg>', "unsupported_format"),
        (b"%PDF-1.7\n...", "unsupported_format"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "not_an_image"),  # no Ghostscript
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "corrupt"),
    ],
)
def test_bad_inputs_have_reasons(data, reason):
    assert reason_of(data) == reason


def test_truncated_files_are_corrupt():
    photo = Image.effect_noise((300, 200), 64).convert("RGB")
    buf = io.BytesIO()
    photo.save(buf, "JPEG", quality=90)
    jpeg = buf.getvalue()
    assert reason_of(jpeg[: len(jpeg) // 2]) == "corrupt"
    png = encode("PNG", (300, 200))
    assert reason_of(png[:-30]) == "corrupt"


def test_decompression_bombs():
    # our per-call limit, from the header, before any pixel is decoded
    assert reason_of(encode("PNG", (100, 100)), max_pixels=5000) == "decompression_bomb"
    # Pillow's hard error (> 2 * MAX_IMAGE_PIXELS)
    assert reason_of(png_claiming(30_000, 30_000), max_pixels=10**10) == "decompression_bomb"
    # Pillow's warning (> MAX_IMAGE_PIXELS) counts as an error too, and leaks no filter
    n_filters = len(warnings.filters)
    side = int((Image.MAX_IMAGE_PIXELS * 1.2) ** 0.5)
    assert reason_of(png_claiming(side, side), max_pixels=10**10) == "decompression_bomb"
    assert len(warnings.filters) == n_filters


def test_decode_is_thread_safe():
    good, bad = encode("PNG", (50, 50)), png_claiming(12_000, 12_000)

    def work(i):
        try:
            return images.decode_image(good if i % 2 else bad).size
        except ImageError as exc:
            return exc.reason

    n_filters = len(warnings.filters)
    with ThreadPoolExecutor(8) as pool:
        out = list(pool.map(work, range(64)))
    assert out.count((50, 50)) == 32 and out.count("decompression_bomb") == 32
    assert len(warnings.filters) == n_filters


@pytest.mark.parametrize(
    "head, kind",
    [
        (b"\xff\xd8\xff\xe0", "jpeg"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "webp"),
        (b"\x00\x00\x00\x1cftypavif", "avif"),
        (b"\x00\x00\x00\x1cftypheic", "heic"),
        (b"\xef\xbb\xbf<?xml version='1.0'?><svg xmlns='x'>", "svg"),
        (b"\x1f\x8b\x08\x00", "svgz"),
        (b"<!doctype html><svg>", "html"),
        (b"[1, 2]", "json"),
        (b"", None),
        (b"\x00\x01\x02\x03", None),
    ],
)
def test_sniff_format(head, kind):
    assert images.sniff_format(head) == kind


SVG = b"""<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 20 10">
<rect width="20" height="10" fill="#0a0"/></svg>"""


def test_render_svg_fits_box_and_keeps_alpha():
    im = images.render_svg(SVG, size=128)
    assert im.mode == "RGBA" and im.size == (128, 64) and im.format == "SVG"
    assert im.getpixel((64, 32)) == (0, 170, 0, 255)
    transparent = (
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
        b'<circle cx="5" cy="5" r="2"/></svg>'
    )
    im = images.render_svg(transparent, size=64)
    assert im.getpixel((0, 0))[3] == 0 and im.getpixel((32, 32))[3] == 255
    assert images.render_svg(gzip.compress(SVG), size=32).size == (32, 16)


def test_render_svg_never_reads_external_references(tmp_path):
    secret = tmp_path / "secret.png"
    Image.new("RGB", (10, 10), (255, 0, 0)).save(secret)
    inline = base64.b64encode(secret.read_bytes()).decode()
    template = (
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        'width="10" height="10"><image {attr}="{href}" width="10" height="10"/></svg>'
    )
    for attr in ("href", "xlink:href"):
        for href in (secret.as_uri(), str(secret), "secret.png", "http://127.0.0.1:9/x.png"):
            svg = template.format(attr=attr, href=href).encode()
            im = images.render_svg(svg, size=10)
            assert im.getchannel("A").getextrema() == (0, 0), (attr, href)
    # inline raster data is self-contained and allowed
    svg = template.format(attr="href", href="data:image/png;base64," + inline).encode()
    assert images.render_svg(svg, size=10).getpixel((5, 5)) == (255, 0, 0, 255)
    # CSS url() to a file is neutralised as well
    css = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><style>'
        f'@import url("{secret.as_uri()}"); rect {{ fill: url({secret.as_uri()}) }}</style>'
        '<rect width="10" height="10" style="fill:url(file:///etc/passwd)"/></svg>'
    )
    images.render_svg(css.encode(), size=10)  # renders without touching the files


@pytest.mark.parametrize(
    "data, reason",
    [
        (
            b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;">]>'
            b'<svg xmlns="http://www.w3.org/2000/svg"><text>&b;</text></svg>',
            "svg_unsafe",
        ),
        (b"<svg xmlns='http://www.w3.org/2000/svg'><rect></svg>", "svg_error"),
        (b"<html><body>no</body></html>", "svg_error"),
        (b"", "empty"),
    ],
)
def test_render_svg_errors(data, reason):
    with pytest.raises(ImageError) as info:
        images.render_svg(data)
    assert info.value.reason == reason


def _ico_with_a_broken_entry() -> bytes:
    """A 16 + 48 px ICO whose 48 px entry is damaged (its data zeroed past the header)."""
    import struct

    im = Image.new("RGBA", (48, 48), (0, 0, 0, 0))
    for x in range(48):
        im.putpixel((x, x), (200, 30, 30, 255))
    buf = io.BytesIO()
    im.save(buf, "ICO", sizes=[(16, 16), (48, 48)])
    data = bytearray(buf.getvalue())
    count = struct.unpack_from("<H", data, 4)[0]
    for i in range(count):
        width, _, _, _, _, _, size, offset = struct.unpack_from("<BBBBHHII", data, 6 + 16 * i)
        if width == 48:
            data[offset + 40 : offset + size] = bytes(size - 40)
    return bytes(data)


def test_an_ico_with_one_broken_entry_uses_the_good_one():
    # Issue 12: before, the largest entry was chosen and its failure refused the whole file.
    im = images.decode_image(_ico_with_a_broken_entry())
    assert im.format == "ICO" and im.size == (16, 16)
    good = io.BytesIO()
    Image.new("RGB", (32, 32), (1, 2, 3)).save(good, "ICO", sizes=[(32, 32)])
    assert images.decode_image(good.getvalue()).size == (32, 32)
