"""Safe image decoding shared by every stage (scrape, logos, embed).

Preparing a decoded image for the network (modes, margins, backgrounds, parts, colour) is
:mod:`lookalike.preprocess`.

Everything that comes off the network or a user's folder goes through :func:`decode_image`,
which either returns a fully loaded :class:`PIL.Image.Image` or raises :class:`ImageError`
with a short machine-readable ``reason`` (also the start of the message):

=====================  ==================================================================
reason                 meaning
=====================  ==================================================================
``empty``              no bytes at all
``html``               an HTML page (often an error or login page) served as an image
``not_an_image``       text, JSON or anything else that no image format recognises
``unsupported_format`` a real format that lookalike does not decode (SVG, PDF, EPS, ...)
``decompression_bomb`` more pixels than ``max_pixels``
``corrupt``            truncated or damaged data (the whole image is decoded to find out)
``svg_unsafe``         an SVG with entity declarations (refused rather than expanded)
``svg_error``          an SVG that resvg cannot render
=====================  ==================================================================
"""

from __future__ import annotations

import gzip
import io
import re
import threading
import warnings
from collections.abc import Callable

from PIL import Image, ImageFile

from .exceptions import ImageError

#: Default pixel budget per image (width * height): ~40 megapixels, about 160 MB as RGBA.
DEFAULT_MAX_PIXELS = 40_000_000

#: Formats Pillow may use. A closed list keeps exotic plugins (EPS runs Ghostscript) out.
DECODE_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "ICO", "TIFF", "AVIF")

#: File extension used when an image is stored, keyed by Pillow's format name.
FORMAT_EXTENSIONS = {
    "JPEG": "jpg",
    "PNG": "png",
    "GIF": "gif",
    "WEBP": "webp",
    "BMP": "bmp",
    "ICO": "ico",
    "TIFF": "tif",
    "AVIF": "avif",
    "SVG": "svg",
}

# Image.open may emit DecompressionBombWarning; turning it into an error needs
# warnings.catch_warnings, which swaps process-wide state. Serialise only that (cheap) step.
_OPEN_LOCK = threading.Lock()

_SVG_RE = re.compile(rb"<svg[\s>]", re.IGNORECASE)
_HTML_RE = re.compile(rb"<(!doctype\s+html|html|head|body|title|script|div|p|a)[\s>]", re.I)
_SVG_MAX_BYTES = 5_000_000


def image_error(reason: str, detail: str) -> ImageError:
    """The one way to build an :class:`ImageError`: message ``"<reason>: <detail>"``.

    Parameters
    ----------
    reason : str
        Short machine-readable code (see the module docstring); also set as ``.reason``.
    detail : str
        What exactly went wrong, for people.
    """
    err = ImageError(f"{reason}: {detail}")
    err.reason = reason  # type: ignore[attr-defined]
    return err


def error_reason(exc: BaseException) -> str:
    """The short reason code of an :class:`ImageError` (``"corrupt"`` if it has none)."""
    return getattr(exc, "reason", "corrupt")


def sniff_format(data: bytes) -> str | None:
    """Guess the format of ``data`` from its first bytes, without decoding.

    Returns
    -------
    str or None
        One of ``"jpeg"``, ``"png"``, ``"gif"``, ``"webp"``, ``"bmp"``, ``"ico"``, ``"tiff"``,
        ``"avif"``, ``"heic"``, ``"svg"``, ``"svgz"``, ``"pdf"``, ``"html"``, ``"json"``, or
        ``None`` when nothing matches (including empty input).
    """
    if not data:
        return None
    head = data[:32]
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:2] == b"BM":
        return "bmp"
    if head[:4] in (b"\x00\x00\x01\x00", b"\x00\x00\x02\x00"):
        return "ico"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "avif"
        if brand in (b"heic", b"heix", b"mif1", b"msf1"):
            return "heic"
    if head.startswith(b"%PDF"):
        return "pdf"
    if head[:2] == b"\x1f\x8b":
        return "svgz"  # gzip; on the web as an "image" this is practically always SVGZ
    text = data[:2048].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text[:1] in (b"{", b"["):
        return "json"
    if _SVG_RE.search(text) and not text.startswith((b"<!doctype html", b"<html")):
        return "svg"
    if _HTML_RE.search(text):
        return "html"
    return None


def decode_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft: Callable[[int, int], tuple[int, int]] | None = None,
) -> Image.Image:
    """Decode ``data`` completely and safely.

    Parameters
    ----------
    data : bytes
        The encoded image (JPEG, PNG, GIF, WebP, BMP, ICO, TIFF or AVIF).
    max_pixels : int, default 40_000_000
        Refuse images with more than ``width * height`` pixels (checked from the header,
        before decoding). Pillow's own ``Image.MAX_IMAGE_PIXELS`` guard still applies on top.
    draft : callable, optional
        For a JPEG only: ``draft(width, height)`` gets the stored size and returns the
        smallest ``(w, h)`` the caller needs; libjpeg then decodes at the largest of 1/2,
        1/4 or 1/8 scale that stays at least that size (:meth:`PIL.Image.Image.draft`), which
        is several times faster than decoding every pixel and resizing afterwards.

    Returns
    -------
    PIL.Image.Image
        Fully loaded (``load()`` has run, so truncation is detected here, not later).
        ``format`` is set. For ICO the largest frame is chosen; for animations the first frame.

    Raises
    ------
    ImageError
        With ``.reason`` set to one of the codes in the module docstring.
    """
    if not data:
        raise image_error("empty", "no bytes")
    kind = sniff_format(data)
    if kind == "html":
        raise image_error("html", "got an HTML page, not an image")
    if kind in ("svg", "svgz", "pdf", "heic"):
        raise image_error("unsupported_format", f"{kind} is not decoded here")
    if ImageFile.LOAD_TRUNCATED_IMAGES:  # someone flipped the global; we still want errors
        raise image_error("corrupt", "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True; set it to False")
    try:
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=DECODE_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise image_error("decompression_bomb", str(exc)) from None
    except Image.UnidentifiedImageError:
        if kind == "ico":  # Pillow opens an ICO by loading its largest entry: try the others
            return _decode_ico_entries(data, max_pixels)
        if kind is None or kind == "json":
            raise image_error("not_an_image", "no known image format") from None
        raise image_error("corrupt", f"looks like {kind} but cannot be decoded") from None
    except Exception as exc:  # Pillow raises OSError, ValueError, SyntaxError, struct.error...
        raise image_error("corrupt", f"{type(exc).__name__}: {exc}") from None
    fmt = im.format
    if fmt == "ICO":
        return _decode_ico(data, im, max_pixels)
    return _load_checked(im, fmt, max_pixels, draft=draft if fmt == "JPEG" else None)


def _decode_ico(data: bytes, im: Image.Image | None, max_pixels: int) -> Image.Image:
    """The largest ICO entry that decodes: a broken entry does not spoil the good ones."""
    sizes = sorted(im.info.get("sizes") or {im.size}, key=lambda s: s[0] * s[1], reverse=True)
    err: ImageError | None = None
    for size in sizes:
        try:
            if im is None:
                im = Image.open(io.BytesIO(data), formats=("ICO",))
            im.size = size
            return _load_checked(im, "ICO", max_pixels)
        except ImageError as exc:
            if exc.reason == "decompression_bomb":  # type: ignore[attr-defined]
                raise
            err = exc
        except Exception as exc:  # Pillow raises many kinds on a damaged directory entry
            err = image_error("corrupt", f"{type(exc).__name__}: {exc}")
        im = None  # a failed load leaves the object unusable: open afresh
    raise err if err is not None else image_error("corrupt", "no ICO entry decodes")


def _decode_ico_entries(data: bytes, max_pixels: int) -> Image.Image:
    """The largest entry of an ICO that Pillow cannot open (its largest entry is broken)."""
    from PIL import IcoImagePlugin

    try:
        ico = IcoImagePlugin.IcoFile(io.BytesIO(data))
        sizes = sorted(ico.sizes(), key=lambda s: s[0] * s[1], reverse=True)
    except Exception as exc:
        raise image_error("corrupt", f"bad ICO directory: {type(exc).__name__}: {exc}") from None
    for size in sizes:
        w, h = size
        if w * h > max_pixels:
            continue
        try:
            im = ico.getimage(size)
            return _load_checked(im, "ICO", max_pixels)
        except Exception:  # this entry is broken too: try the next one
            continue
    raise image_error("corrupt", "looks like ico but no entry can be decoded")


def _load_checked(
    im: Image.Image,
    fmt: str,
    max_pixels: int,
    *,
    draft: Callable[[int, int], tuple[int, int]] | None = None,
) -> Image.Image:
    """Load ``im`` fully, refusing zero-sized images and more than ``max_pixels``.

    ``draft`` (JPEG only, see :func:`decode_image`) is applied after the size checks, so a
    bomb is refused by its stored size, not by the reduced one.
    """
    width, height = im.size
    if width * height > max_pixels:
        raise image_error("decompression_bomb", f"{width}x{height} exceeds max_pixels={max_pixels}")
    if width < 1 or height < 1:
        raise image_error("corrupt", f"zero-sized image {width}x{height}")
    try:
        if draft is not None:
            im.draft(im.mode, draft(width, height))
        im.load()
    except Image.DecompressionBombError as exc:
        raise image_error("decompression_bomb", str(exc)) from None
    except Exception as exc:
        raise image_error("corrupt", f"{type(exc).__name__}: {exc}") from None
    # An ICO frame can be a PNG larger than its directory entry says.
    if im.size[0] * im.size[1] > max_pixels:
        raise image_error("decompression_bomb", f"{im.size} exceeds max_pixels={max_pixels}")
    im.format = fmt
    return im


def png_bytes(img: Image.Image) -> bytes:
    """``img`` encoded as PNG (lossless; for figures, widgets and re-decoding)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


# -- SVG ------------------------------------------------------------------------------------

_XLINK = "{http://www.w3.org/1999/xlink}"
_CSS_URL_RE = re.compile(r"url\(\s*(['\"]?)(?!#)[^)]*\1\s*\)", re.IGNORECASE)
_CSS_IMPORT_RE = re.compile(r"@import[^;]*;?", re.IGNORECASE)
_SAFE_DATA_HREF = re.compile(r"^data:image/(png|jpe?g|gif|webp);", re.IGNORECASE)


def _sanitize_svg(data: bytes) -> str:
    """Parse an SVG and drop every reference that would leave the document.

    resvg never uses the network, but it does read local files for ``<image href>``; so any
    href that is not a fragment (``#id``) or an inline raster ``data:`` URI is removed, as are
    CSS ``url(...)``/``@import`` pointing elsewhere. Entity declarations are refused.
    """
    from lxml import etree

    if data[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
                data = f.read(_SVG_MAX_BYTES + 1)
        except (OSError, EOFError) as exc:
            raise image_error("svg_error", f"bad svgz: {exc}") from None
    if len(data) > _SVG_MAX_BYTES:
        raise image_error("svg_error", f"svg larger than {_SVG_MAX_BYTES} bytes")
    if b"<!ENTITY" in data.upper():
        raise image_error("svg_unsafe", "svg declares XML entities")
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, recover=False
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise image_error("svg_error", f"not well-formed XML: {exc}") from None
    if not isinstance(root.tag, str) or etree.QName(root).localname != "svg":
        raise image_error("svg_error", "root element is not <svg>")
    for el in root.iter():
        if not isinstance(el.tag, str):
            continue
        for attr in list(el.attrib):
            value = el.attrib[attr].strip()
            if attr in ("href", _XLINK + "href"):
                if not (value.startswith("#") or _SAFE_DATA_HREF.match(value)):
                    del el.attrib[attr]
            elif attr == "style" or "url(" in value.lower():
                el.attrib[attr] = _CSS_URL_RE.sub("none", value)
        if etree.QName(el).localname == "style" and el.text:
            el.text = _CSS_URL_RE.sub("none", _CSS_IMPORT_RE.sub("", el.text))
    return etree.tostring(root, encoding="unicode")


def render_svg(data: bytes, *, size: int = 256) -> Image.Image:
    """Render SVG (or gzip-compressed SVGZ) bytes to an RGBA image without external access.

    Parameters
    ----------
    data : bytes
        The SVG document.
    size : int, default 256
        The image fits in a ``size`` x ``size`` box, aspect ratio kept.

    Returns
    -------
    PIL.Image.Image
        Mode ``"RGBA"``, ``format == "SVG"``, longest side ``size`` pixels.

    Raises
    ------
    ImageError
        ``svg_unsafe`` (entities), ``svg_error`` (unparseable or unrenderable), ``empty``.
    """
    import resvg_py

    if not data:
        raise image_error("empty", "no bytes")
    svg = _sanitize_svg(data)
    try:
        png = resvg_py.svg_to_bytes(svg_string=svg, width=int(size), height=int(size))
        im = Image.open(io.BytesIO(bytes(png)), formats=("PNG",))
        im.load()
    except Exception as exc:  # resvg raises ValueError; anything else is equally fatal here
        raise image_error("svg_error", f"{type(exc).__name__}: {exc}") from None
    im = im.convert("RGBA")
    im.format = "SVG"
    return im
