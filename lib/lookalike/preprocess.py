"""Image preprocessing: a decoded image made ready for the network, its parts and colours.

Every function takes what :func:`lookalike.images.decode_image` gives (or a path or bytes,
decoded with it) and is deterministic:

* :func:`load_for_embedding`: one square RGB array, the input of stage 03. EXIF orientation,
  first frame of animations, every Pillow mode (:func:`to_rgba`), alpha composited on a chosen
  background (:func:`pick_background`, :func:`composite`), optional trimming of uniform
  borders (:func:`trim_borders`), and the aspect ratio kept by padding (or stretched). A JPEG
  at least twice as large as needed is decoded by libjpeg at 1/2, 1/4 or 1/8 scale
  (:func:`draft_size`), several times faster than decoding every pixel.
* :func:`part_boxes` and :func:`part_inputs`: the end squares of a wide or tall logo lockup,
  where its icon sits.
* :func:`foreground_mask` and :func:`colour_signature`: the artwork and its colours.
* :func:`negative_input`: the luminance negative of light-on-dark artwork (a dark-mode logo),
  embedded beside the whole so it meets its usual version.
* :func:`shape_signatures`: histograms of oriented gradients (HOG) of the whole and its end
  squares, which ignore colour, fill and polarity (a filled star and its outline match).
* :func:`logo_traits`: transparency, a flat ground and few colours, which the ``auto`` preset
  reads to tell a folder of logos from one of photos.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from .exceptions import ConfigError, ImageError
from .images import decode_image

BACKGROUNDS = ("white", "black", "auto", "none")
FITS = ("pad", "stretch")

#: Mean luma (0..255, Rec. 601) of the opaque artwork above which ``background="auto"`` picks
#: black: light artwork (a white logo on transparency) would vanish on white.
AUTO_LIGHT_LUMA = 186.0

#: ``trim``: a border pixel belongs to the margin when every channel is within this many
#: levels (0..255) of the margin colour, or its alpha is at most this (JPEG noise, soft edges).
TRIM_TOLERANCE = 12

#: Bump when the preprocessing changes in a way that changes vectors: invalidates the cache.
#: 3: large JPEGs are decoded in draft mode (:data:`DRAFT_MARGIN`).
PREPROCESS_VERSION = 3

#: Draft mode: a JPEG larger than needed is decoded by libjpeg at 1/2, 1/4 or 1/8 scale, but
#: only while the side that decides the final resize stays at least this many times the
#: output side, so the last step is still a bicubic reduction from a sharper image (2 is the
#: margin of Pillow's own ``Image.thumbnail``).
DRAFT_MARGIN = 2.0

#: Per-channel difference (0..255) from the border colour above which an opaque pixel is
#: artwork. Loose enough for JPEG noise and anti-aliasing, tight enough for pale artwork.
FOREGROUND_TOL = 28.0

#: Alpha (0..255) above which a pixel of a transparent image is artwork.
ALPHA_MIN = 32

#: Saturation (max-min)/max above which a pixel counts as chromatic for the colour signature.
CHROMA_MIN = 0.2

#: Mean luma (0..255) of an image's outer ring below which its ground counts as dark
#: (:func:`is_light_on_dark`); black is 0, a mid grey 128.
DARK_GROUND_LUMA = 96.0

#: Width of that ring, as a share of the image's short side.
RING_SHARE = 0.05

#: :func:`logo_traits`: at most this many colours (16 levels per channel) cover 90% of an
#: opaque logo's pixels; flat artwork needs 1-3, the demo's product photos 9 or more.
LOGO_MAX_COLOURS = 4

#: Shape signature (:func:`shape_signatures`): side (px) of the grey square it is computed on,
#: side (px) of a HOG cell, and orientation bins. Small and coarse on purpose: the outline of
#: the artwork, not its texture (docs/benchmarks.md, "Dark-mode variants and drawing styles").
SHAPE_SIZE = 64
SHAPE_CELL = 8
SHAPE_ORIENTATIONS = 9

#: Length of one shape signature: (cells - 1)**2 blocks of 2 x 2 cells, each cell's histogram.
SHAPE_DIM = (SHAPE_SIZE // SHAPE_CELL - 1) ** 2 * 4 * SHAPE_ORIENTATIONS

#: RGB (0..255) of the named backgrounds.
COLOURS: dict[str, tuple[float, float, float]] = {
    "white": (255.0, 255.0, 255.0),
    "black": (0.0, 0.0, 0.0),
}

_ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``choices`` (``name`` = it)."""
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not supported; use one of {list(choices)}")


def read_image(
    path_or_bytes: str | os.PathLike[str] | bytes,
    *,
    draft: Callable[[int, int], tuple[int, int]] | None = None,
) -> Image.Image:
    """:func:`lookalike.images.decode_image` of a file or of bytes (``draft``: see there).

    Raises
    ------
    ImageError
        If the bytes are not a decodable image; OSError if the file cannot be read.
    """
    return decode_image(_read_bytes(path_or_bytes), draft=draft)


def _read_bytes(path_or_bytes: str | os.PathLike[str] | bytes) -> bytes:
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return bytes(path_or_bytes)
    return Path(path_or_bytes).read_bytes()


def first_frame_upright(img: Image.Image) -> Image.Image:
    """The first frame of an animation, turned upright by its EXIF orientation.

    A corrupt EXIF block leaves the image as it is rather than losing it.
    """
    try:
        img.seek(0)  # animated GIF/WebP/APNG: the first frame is the "poster" image
    except (EOFError, AttributeError, ValueError):
        pass
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # a corrupt EXIF block must not lose an otherwise fine image
        return img


def _rescale_to_uint8(a: np.ndarray, mode: str) -> np.ndarray:
    """Map a single-channel 16-bit, int32 or float array to 0..255."""
    a = a.astype(np.float64)
    finite = np.isfinite(a)
    if not finite.all():
        a = np.where(finite, a, 0.0)
    hi = float(a.max()) if a.size else 0.0
    lo = float(a.min()) if a.size else 0.0
    if mode.startswith("I;16"):
        a = a / 257.0  # 65535 -> 255
    elif mode == "F" and lo >= 0.0 and hi <= 1.0:
        a = a * 255.0  # float images are usually 0..1
    elif lo >= 0.0 and hi <= 255.0:
        pass  # already 8-bit range (a PNG "I" that holds 8-bit values)
    elif lo >= 0.0 and hi <= 65535.0:
        a = a / 257.0  # 16-bit data stored in a 32-bit mode
    else:
        a = (a - lo) / (hi - lo) * 255.0  # anything else: stretch its range
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _cmyk_to_rgb(img: Image.Image) -> Image.Image:
    icc = img.info.get("icc_profile")
    if icc:
        try:  # the embedded profile gives far truer colours than the naive formula
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            dst = ImageCms.createProfile("sRGB")
            return ImageCms.profileToProfile(img, src, dst, outputMode="RGB")
        except Exception:
            pass
    return img.convert("RGB")


def to_rgba(img: Image.Image) -> Image.Image:
    """Convert any Pillow image to ``RGB`` (opaque) or ``RGBA`` (has transparency).

    Handles palette and grey images with a transparent colour, ``LA``/``PA`` and
    premultiplied modes, CMYK (through the embedded ICC profile when there is one), 16-bit
    (``I;16*``), 32-bit integer (``I``) and float (``F``) images.
    """
    mode = img.mode
    if mode in ("RGB", "RGBA"):
        if mode == "RGB" and "transparency" in img.info:
            return img.convert("RGBA")
        return img
    if mode.startswith("I;16") or mode in ("I", "F"):
        grey = _rescale_to_uint8(np.asarray(img), mode)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode == "CMYK":
        return _cmyk_to_rgb(img)
    if mode in _ALPHA_MODES or "transparency" in img.info:
        return img.convert("RGBA")
    return img.convert("RGB")


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def pick_background(img: Image.Image) -> str:
    """``"black"`` if the opaque part of ``img`` is light (mean luma > 186), else ``"white"``.

    Parameters
    ----------
    img : PIL.Image in mode ``RGB`` or ``RGBA``
        An opaque image always gets ``"white"``.
    """
    if img.mode != "RGBA":
        return "white"
    a = np.asarray(img, dtype=np.float32)
    alpha = a[..., 3] / 255.0
    weight = float(alpha.sum())
    if weight < 1e-6 or float(alpha.min()) >= 1.0:
        return "white"
    mean_luma = float((_luma(a[..., :3]) * alpha).sum() / weight)
    return "black" if mean_luma > AUTO_LIGHT_LUMA else "white"


def trim_borders(img: Image.Image, *, tolerance: int = TRIM_TOLERANCE) -> Image.Image:
    """Crop away uniform margins: transparent ones, then ones of a single flat colour.

    The flat colour is the colour of the four corners; when the corners disagree (a photo, or
    artwork touching a corner) there is no uniform margin and nothing is cropped on that
    account. An image that is all margin is returned unchanged.

    Parameters
    ----------
    img : PIL.Image in mode ``RGB`` or ``RGBA``
    tolerance : int, default TRIM_TOLERANCE
        Levels (0..255) within which a pixel still counts as margin.

    Returns
    -------
    PIL.Image, same mode, cropped to the content's bounding box.
    """
    a = np.asarray(img)
    keep = np.ones(a.shape[:2], dtype=bool)
    if img.mode == "RGBA":
        keep = a[..., 3] > tolerance
    rgb = a[..., :3].astype(np.int16)
    corners = rgb[[0, 0, -1, -1], [0, -1, 0, -1]]  # (4, 3)
    corner_alpha = keep[[0, 0, -1, -1], [0, -1, 0, -1]]
    if corner_alpha.all() and int(np.ptp(corners, axis=0).max()) <= tolerance:
        flat = np.median(corners, axis=0)
        keep &= np.abs(rgb - flat).max(axis=2) > tolerance
    rows, cols = np.flatnonzero(keep.any(axis=1)), np.flatnonzero(keep.any(axis=0))
    if rows.size == 0:
        return img
    box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
    return img if box == (0, 0, img.width, img.height) else img.crop(box)


def composite(img: Image.Image, bg: tuple[float, float, float]) -> np.ndarray:
    """RGB float32 array of ``img`` laid over a solid ``bg`` colour.

    Parameters
    ----------
    img : PIL.Image in mode ``RGB`` or ``RGBA``
    bg : (r, g, b), 0..255

    Returns
    -------
    ndarray of shape (height, width, 3), float32, 0..255
    """
    a = np.asarray(img, dtype=np.float32)
    if img.mode != "RGBA":
        return a[..., :3]
    alpha = a[..., 3:4] / 255.0
    return a[..., :3] * alpha + np.asarray(bg, dtype=np.float32) * (1.0 - alpha)


def check_preprocessing(image_size: int, background: str, fit: str) -> int:
    """Validate the preprocessing options; return ``image_size`` as an int."""
    check_choice("background", background, BACKGROUNDS)
    check_choice("fit", fit, FITS)
    if isinstance(image_size, bool) or int(image_size) < 1:
        raise ConfigError(f"image_size={image_size!r} must be a positive number of pixels")
    return int(image_size)


def draft_size(width: int, height: int, *, image_size: int, fit: str = "pad") -> tuple[int, int]:
    """The smallest ``(w, h)`` a ``width`` x ``height`` image may be decoded to (draft mode).

    The side that decides the final resize keeps at least ``DRAFT_MARGIN * image_size``
    pixels: the long side for ``fit="pad"`` (the aspect ratio is kept), both sides for
    ``"stretch"`` (each is resized to ``image_size``). Pillow's :meth:`~PIL.Image.Image.draft`
    then picks the largest JPEG scale (1/2, 1/4, 1/8) that stays at least this size.
    """
    need = DRAFT_MARGIN * int(image_size)
    if fit == "stretch":
        return (math.ceil(need), math.ceil(need))
    r = need / max(int(width), int(height), 1)
    return (math.ceil(width * r), math.ceil(height * r))


def _big_enough(width: int, height: int, size: int, fit: str) -> bool:
    """True when a (trimmed) draft decode still has the pixels :func:`draft_size` asks for."""
    side = min(width, height) if fit == "stretch" else max(width, height)
    return side >= DRAFT_MARGIN * size


def _decoded_for(
    data: bytes, *, size: int, background: str, fit: str, trim: bool, draft: bool
) -> Image.Image:
    """``data`` decoded (in draft mode when ``draft``), first frame upright, RGB or RGBA,
    alpha dropped for ``background="none"``, trimmed when ``trim``.

    A draft decode is sized before the crop is known, so with ``trim`` it keeps twice the
    pixels (margins of up to half the side may go); when the crop still leaves fewer than
    :func:`draft_size` asks for (the artwork is a small part of a large JPEG), the file is
    decoded again in full.
    """
    stored: list[tuple[int, int]] = []
    room = 2 if trim else 1

    def request(w: int, h: int) -> tuple[int, int]:
        stored.append((w, h))
        return draft_size(w, h, image_size=room * size, fit=fit)

    img = read_image(data, draft=request if draft else None)
    drafted = bool(stored) and img.size != stored[0]
    img = to_rgba(first_frame_upright(img))
    if img.width < 1 or img.height < 1:
        raise ImageError(f"empty image ({img.width}x{img.height} pixels)")
    if background == "none" and img.mode == "RGBA":
        img = img.convert("RGB")  # the original notebooks' way: the stored colours under alpha
    if trim:
        img = trim_borders(img)
        if drafted and not _big_enough(img.width, img.height, size, fit):
            return _decoded_for(
                data, size=size, background=background, fit=fit, trim=trim, draft=False
            )
    return img


def load_for_embedding(
    path_or_bytes: str | os.PathLike[str] | bytes,
    *,
    image_size: int = 224,
    background: str = "white",
    fit: str = "pad",
    trim: bool = False,
    draft: bool = True,
) -> np.ndarray:
    """Decode one image and make it the square RGB input VGG16 expects.

    Parameters
    ----------
    path_or_bytes : path or bytes
        The image file, or its bytes. Decoded by :func:`lookalike.images.decode_image`, which
        refuses corrupt files, HTML pages and decompression bombs.
    image_size : int, default 224
        Side of the output square, in pixels.
    background : {"white", "black", "auto", "none"}, default "white"
        Colour that transparent pixels and the padding become. ``"auto"`` picks black for light
        artwork on transparency (a white logo stays visible) and white otherwise. ``"none"``
        reproduces the seed notebooks' plain ``convert("RGB")``: alpha is dropped and
        transparent pixels keep whatever colour they store (often black); padding is white.
    fit : {"pad", "stretch"}, default "pad"
        ``"pad"`` keeps the aspect ratio and pads to a square with the background colour;
        ``"stretch"`` resizes straight to the square, like the original notebooks.
    trim : bool, default False
        Crop uniform margins (transparent, or one flat colour) first, see :func:`trim_borders`,
        so the artwork fills the square whatever padding its file came with.
    draft : bool, default True
        Decode a JPEG at least twice as large as needed at a reduced scale
        (:func:`draft_size`), which is faster and changes the result very little; other
        formats, and JPEGs that are not that large, are decoded in full either way.

    Returns
    -------
    ndarray of shape (image_size, image_size, 3), float32, RGB, values 0..255

    Raises
    ------
    ImageError
        If the bytes are not a decodable image.
    ConfigError
        If an option has an unsupported value.
    """
    size = check_preprocessing(image_size, background, fit)
    data = _read_bytes(path_or_bytes)  # read once: a trimmed draft may decode twice
    try:
        img = _decoded_for(data, size=size, background=background, fit=fit, trim=trim, draft=draft)
        return _square_input(img, size=size, background=background, fit=fit)
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError) as e:  # truncated data surfaces on first load
        raise ImageError(f"cannot decode image: {type(e).__name__}: {e}") from e


def _square_input(img: Image.Image, *, size: int, background: str, fit: str) -> np.ndarray:
    """``img`` (RGB or RGBA, decoded and trimmed) resized, composited and padded to the
    ``size`` x ``size`` float32 RGB input of :func:`load_for_embedding`."""
    if fit == "stretch":
        target = (size, size)
    else:
        scale = size / max(img.width, img.height)
        target = (
            max(1, min(size, round(img.width * scale))),
            max(1, min(size, round(img.height * scale))),
        )
    # Pillow premultiplies alpha while resampling RGBA, so edges do not get dark fringes.
    img = img.resize(target, Image.Resampling.BICUBIC, reducing_gap=3.0)
    bg = _ground(img, background)
    rgb = composite(img, bg)
    if rgb.shape[:2] == (size, size):
        return np.ascontiguousarray(rgb, dtype=np.float32)
    out = np.empty((size, size, 3), dtype=np.float32)
    out[...] = np.asarray(bg, dtype=np.float32)
    top = (size - rgb.shape[0]) // 2
    left = (size - rgb.shape[1]) // 2
    out[top : top + rgb.shape[0], left : left + rgb.shape[1]] = rgb
    return out


def _ground(img: Image.Image, background: str) -> tuple[float, float, float]:
    """The RGB that ``background`` puts under ``img``'s transparent pixels (``"none"``: white)."""
    if background == "auto":
        return COLOURS[pick_background(img)]
    return COLOURS.get(background, COLOURS["white"])


def is_light_on_dark(
    rgb: np.ndarray,
    alpha: np.ndarray | None = None,
    *,
    ring: float = RING_SHARE,
    dark: float = DARK_GROUND_LUMA,
) -> bool:
    """True when an image's ground is dark and its artwork lighter: white-on-black artwork.

    Parameters
    ----------
    rgb : ndarray (h, w, 3), 0..255
        The image as the network would see it (transparency composited).
    alpha : ndarray (h, w), 0..255, optional
        Its transparency. Where the outer ring is mostly opaque (a plate with rounded,
        transparent corners), the ground is the plate: the ring's opaque pixels decide.
    ring : float, default RING_SHARE
        Width of the outer ring that stands for the ground, as a share of the short side.
    dark : float, default DARK_GROUND_LUMA
        Luma (0..255) below which the ground is dark.

    Returns
    -------
    bool: the ground's mean luma is below ``dark`` and below the whole image's.
    """
    h, w = rgb.shape[:2]
    r = max(1, round(ring * min(h, w)))
    luma = _luma(np.asarray(rgb, dtype=np.float32))
    edge = np.ones((h, w), dtype=bool)
    edge[r : h - r, r : w - r] = False
    weight = np.ones((h, w), dtype=np.float32)
    if alpha is not None:
        opaque = np.asarray(alpha, dtype=np.float32) / 255.0
        if float(opaque[edge].mean()) >= 0.5:
            weight = opaque
    ground = float((luma[edge] * weight[edge]).sum() / max(1e-6, float(weight[edge].sum())))
    return ground < dark and ground < float(luma.mean())


def negative_image(img: Image.Image) -> Image.Image:
    """The luminance negative of an RGB image: light and dark swap, hues stay (YCbCr)."""
    y, cb, cr = img.convert("RGB").convert("YCbCr").split()
    return Image.merge("YCbCr", (ImageOps.invert(y), cb, cr)).convert("RGB")


def _as_seen(img: Image.Image, background: str) -> tuple[np.ndarray, np.ndarray | None]:
    """``img`` composited as the whole is (float32 RGB 0..255), and its alpha (or None)."""
    if background == "none":
        img = img.convert("RGB")
    alpha = np.asarray(img.getchannel("A")) if img.mode == "RGBA" else None
    return composite(img, _ground(img, background)), alpha


def shows_light_on_dark(
    path_or_bytes: str | os.PathLike[str] | bytes | Image.Image, *, background: str = "auto"
) -> bool:
    """:func:`is_light_on_dark` of an image as the whole is composited with ``background``:
    whether :func:`negative_input` gives it a negative."""
    return is_light_on_dark(*_as_seen(upright_rgba(path_or_bytes), background))


def negative_input(
    path_or_bytes: str | os.PathLike[str] | bytes | Image.Image,
    *,
    image_size: int = 160,
    background: str = "auto",
    fit: str = "pad",
    trim: bool = True,
    **_ignored: Any,
) -> np.ndarray | None:
    """The network input of the negative of light-on-dark artwork, or None for the rest.

    A dark-mode logo (white artwork on black, on a dark plate, or light artwork that
    ``background="auto"`` lays on black) and its usual version (dark or coloured artwork on
    white) have opposite edges, and CNN features follow edges. The image is composited as
    for the whole, tested with :func:`is_light_on_dark`, and when it is light on dark, its
    :func:`negative_image` goes through the whole's trimming, resizing and padding (on white).

    Returns
    -------
    ndarray of shape (image_size, image_size, 3), float32, RGB 0..255, or None
    """
    size = check_preprocessing(image_size, background, fit)
    rgb, alpha = _as_seen(upright_rgba(path_or_bytes), background)
    if not is_light_on_dark(rgb, alpha):
        return None
    neg = negative_image(Image.fromarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8), "RGB"))
    if trim:
        neg = trim_borders(neg)
    return _square_input(neg, size=size, background="white", fit=fit)


# -- parts and colour ------------------------------------------------------------------


def upright_rgba(path_or_bytes: str | os.PathLike[str] | bytes | Image.Image) -> Image.Image:
    """Decode (unless already an image), take the first frame upright, as ``RGB``/``RGBA``.

    Raises
    ------
    ImageError
        If it cannot be decoded or is empty.
    """
    img = path_or_bytes if isinstance(path_or_bytes, Image.Image) else read_image(path_or_bytes)
    try:
        img = to_rgba(first_frame_upright(img))
        img.load()
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageError(f"cannot decode image: {type(e).__name__}: {e}") from e
    if img.width < 1 or img.height < 1:
        raise ImageError(f"empty image ({img.width}x{img.height} pixels)")
    return img


def part_boxes(width: int, height: int, *, min_aspect: float = 1.5) -> list[tuple[int, ...]]:
    """Boxes of the end squares of a ``width`` x ``height`` crop: none, or two.

    A wide crop (``width >= min_aspect * height``) gives its left and right squares, a tall
    one its top and bottom squares; their side is the crop's short side.
    """
    w, h = int(width), int(height)
    if w >= min_aspect * h:
        return [(0, 0, h, h), (w - h, 0, w, h)]
    if h >= min_aspect * w:
        return [(0, 0, w, w), (0, h - w, w, h)]
    return []


def lockup_parts(
    img: Image.Image, *, part_min_aspect: float = 1.5, trim: bool = True
) -> tuple[Image.Image, list[tuple[int, ...]]]:
    """``img`` as its parts are cut from (trimmed when ``trim``) and its :func:`part_boxes`.

    Returns
    -------
    (PIL.Image, list of 0 or 2 boxes ``(left, top, right, bottom)`` in that image's pixels)
    """
    if trim:
        img = trim_borders(img)
    return img, part_boxes(img.width, img.height, min_aspect=part_min_aspect)


def part_inputs(
    path_or_bytes: str | os.PathLike[str] | bytes | Image.Image,
    *,
    part_size: int = 160,
    part_min_aspect: float = 1.5,
    background: str = "auto",
    trim: bool = True,
    **_ignored: Any,
) -> list[np.ndarray]:
    """Network inputs of the end squares of a lockup (see :func:`part_boxes`).

    The image is prepared as stage 03 prepares the whole (EXIF orientation, first frame,
    every Pillow mode, :func:`trim_borders` when ``trim``), then each end
    square is resized to ``part_size`` and laid on the same background as the whole.

    Returns
    -------
    list of 0 or 2 ndarrays of shape (part_size, part_size, 3), float32, RGB 0..255
    """
    img, boxes = lockup_parts(
        upright_rgba(path_or_bytes), part_min_aspect=part_min_aspect, trim=trim
    )
    if not boxes:
        return []
    if background == "none":
        img = img.convert("RGB")  # the original plain conversion, as for the whole
    return _end_squares(img, boxes, size=int(part_size), bg=_ground(img, background))


def _end_squares(
    img: Image.Image, boxes: list[tuple[int, ...]], *, size: int, bg: tuple[float, float, float]
) -> list[np.ndarray]:
    out = []
    for box in boxes:
        crop = img.crop(box).resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0)
        out.append(np.ascontiguousarray(composite(crop, bg), dtype=np.float32))
    return out


def shape_signature(rgb: np.ndarray) -> np.ndarray:
    """Square-rooted HOG of one (SHAPE_SIZE, SHAPE_SIZE, 3) input: uint8 (SHAPE_DIM,).

    scikit-image's ``hog`` (Dalal and Triggs: unsigned gradient orientations, L2-Hys block
    normalisation) on the luma, square-rooted like the colour signature and scaled to 0..255
    so a run of a million images keeps it in a few GB. Gradient orientation ignores colour,
    fill and polarity: a filled star and its outline, or white artwork on black and its usual
    version, get close signatures.
    """
    from skimage.feature import hog  # imported here: only the logos preset needs it

    grey = _luma(np.asarray(rgb, dtype=np.float32)) / 255.0
    h = hog(
        grey,
        orientations=SHAPE_ORIENTATIONS,
        pixels_per_cell=(SHAPE_CELL, SHAPE_CELL),
        cells_per_block=(2, 2),
        feature_vector=True,
    )
    return np.round(np.sqrt(np.clip(h, 0.0, 1.0)) * 255.0).astype(np.uint8)


def shape_signatures(
    img: Image.Image, boxes: list[tuple[int, ...]], *, background: str = "auto"
) -> np.ndarray:
    """Shape signatures of an image and of its end squares: uint8 (1 + len(boxes), SHAPE_DIM).

    Parameters
    ----------
    img : PIL.Image
        As :func:`lockup_parts` returns it (upright, trimmed when the preset trims).
    boxes : list of box
        Its :func:`part_boxes` (empty for an image without parts).
    background : str, default "auto"
        As for the whole (:func:`load_for_embedding`).
    """
    whole = _square_input(img, size=SHAPE_SIZE, background=background, fit="pad")
    squares = _end_squares(img, boxes, size=SHAPE_SIZE, bg=_ground(img, background))
    return np.stack([shape_signature(a) for a in [whole, *squares]])


def logo_traits(path_or_bytes: str | os.PathLike[str] | bytes | Image.Image) -> dict[str, Any]:
    """What makes an image look like a logo rather than a photo, measured on a 96 px copy.

    Returns
    -------
    dict with ``transparent`` (bool: some pixel has alpha < 250), ``flat_ground`` (share,
    0..1, of the border pixels within :data:`TRIM_TOLERANCE` levels of the border's median
    colour), ``colours`` (how many colours, at 16 levels per channel, cover 90% of the opaque
    pixels: 1-3 for flat artwork, 10 or more for a photo, whose shading and noise spread it)
    and ``logo`` (bool: transparent, or a flat ground, >= 0.9, with at most
    :data:`LOGO_MAX_COLOURS` colours).
    """
    img = upright_rgba(path_or_bytes)
    img.thumbnail((96, 96))
    a = np.asarray(img.convert("RGBA"), dtype=np.int32)
    transparent = bool(a[..., 3].min() < 250)
    rgb = a[..., :3]
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    flat = float((np.abs(border - np.median(border, axis=0)).max(axis=1) <= TRIM_TOLERANCE).mean())
    px = rgb[a[..., 3] > 128] if transparent else rgb.reshape(-1, 3)
    if len(px) == 0:
        px = rgb.reshape(-1, 3)
    q = px // 16
    counts = np.sort(np.bincount((q[:, 0] * 16 + q[:, 1]) * 16 + q[:, 2], minlength=4096))[::-1]
    colours = int(np.searchsorted(np.cumsum(counts), 0.9 * counts.sum()) + 1)
    logo = transparent or (flat >= 0.9 and colours <= LOGO_MAX_COLOURS)
    return {"transparent": transparent, "flat_ground": flat, "colours": colours, "logo": logo}


def foreground_mask(image: Image.Image, *, tol: float = FOREGROUND_TOL) -> np.ndarray:
    """Boolean mask of the artwork.

    Parameters
    ----------
    image : PIL.Image
        Any mode; converted to RGBA.
    tol : float, default 28
        For opaque images, a pixel is artwork when one channel differs from the median colour
        of the image border by more than ``tol`` (0..255).

    Returns
    -------
    ndarray of shape (height, width), bool
        For images with transparency, ``alpha > 32``.
    """
    a = np.asarray(image.convert("RGBA"), dtype=np.float32)
    alpha = a[..., 3]
    if alpha.min() < 250:
        return alpha > ALPHA_MIN
    rgb = a[..., :3]
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    bg = np.median(border, axis=0)
    return np.abs(rgb - bg).max(axis=2) > tol


def colour_signature(
    image: Image.Image | str | os.PathLike[str] | bytes, *, bins: int = 8
) -> np.ndarray:
    """Square-rooted colour histogram of the artwork's chromatic pixels.

    Black, white and grey pixels (saturation < 0.2 or very dark) are left out when at least
    5% of the artwork is chromatic, so a lockup's black wordmark does not drown the brand
    colours it shares with its icon; all-grey artwork keeps every pixel.

    Parameters
    ----------
    image : PIL.Image, path or bytes
    bins : int, default 8
        Levels per RGB channel.

    Returns
    -------
    ndarray of shape (bins**3,), float32
        Unit L2 norm (the square roots of a histogram that sums to 1), so the dot product of
        two signatures is their Bhattacharyya coefficient, 0..1.
    """
    rgba = upright_rgba(image).convert("RGBA")
    a = np.asarray(rgba, dtype=np.float32)
    mask = foreground_mask(rgba)
    if not mask.any():
        mask = np.ones(mask.shape, dtype=bool)
    px = a[..., :3][mask]
    w = a[..., 3][mask] / 255.0
    hi, lo = px.max(axis=1), px.min(axis=1)
    chromatic = ((hi - lo) / np.maximum(hi, 1.0) > CHROMA_MIN) & (hi > 40)
    if (w * chromatic).sum() > 0.05 * w.sum():
        w = w * chromatic
    q = np.minimum((px * bins / 256.0).astype(np.int64), bins - 1)
    idx = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]
    hist = np.bincount(idx, weights=w, minlength=bins**3)
    hist = hist / max(float(hist.sum()), 1e-12)
    return np.sqrt(hist).astype(np.float32)
