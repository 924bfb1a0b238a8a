"""The ``folder`` source: index a folder of images in place (nothing is copied or moved).

Every file that looks like an image (by its name) gets one manifest row, used or not:

==============================  =========  ===================================================
``error`` starts with           status     meaning
==============================  =========  ===================================================
(none)                          ok         hashed and decoded; it will be embedded
``too_small``                   skipped    shorter side under ``min_side`` pixels
``unsupported_format``          skipped    an image format lookalike does not decode (SVG...)
``broken_link``                 skipped    a symbolic link to nothing, or a loop of links
``file_name_not_utf8``          skipped    the name is not valid UTF-8 (rename the file)
``too_large``                   failed     more than ``max_bytes`` bytes (never read)
``unreadable``                  failed     the file could not be read (permissions, I/O)
an image reason                 failed     ``not_an_image``, ``html``, ``corrupt``,
                                           ``decompression_bomb``... (:mod:`lookalike.images`)
==============================  =========  ===================================================

Files are read in chunks: the first chunk is sniffed, and a file that is not an image is
refused without reading the rest, so a 1 GiB log file named ``.jpg`` costs one chunk.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd

from .exceptions import ConfigError, ImageError
from .images import decode_image, error_reason, image_error, sniff_format
from .paths import resolve
from .progress import bar as progress_bar
from .progress import summary as print_summary
from .storage import coerce_manifest, empty_manifest

#: File name endings that are decoded and embedded.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".ico")

#: Image formats that are recognised by name but not decoded: they get a row, not silence.
OTHER_IMAGE_EXTENSIONS = (".svg", ".svgz", ".heic", ".heif", ".avif", ".jxl", ".psd", ".eps")

#: Default size cap per file, in bytes (the same as 01's ``max_bytes``).
DEFAULT_MAX_BYTES = 20_000_000

#: Default shorter side in pixels under which an image is skipped: only one-pixel spacers and
#: trackers (a folder's small icons are usually deliberate; 01's ``min_side`` raises it).
DEFAULT_MIN_SIDE = 2

_CHUNK = 1 << 20
_NOT_IMAGES = {None, "html", "json", "pdf"}


def _walk(root: Path, recursive: bool) -> Iterator[Path]:
    """Every file or link under ``root``; linked folders are followed once (no loops)."""
    seen = {os.path.realpath(root)}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        keep = []
        for d in sorted(dirnames):
            real = os.path.realpath(os.path.join(dirpath, d))
            if recursive and real not in seen:
                seen.add(real)
                keep.append(d)
        dirnames[:] = keep
        for name in filenames:
            yield Path(dirpath, name)


def _display(path: Path) -> str:
    """``path`` as text that any table can hold (undecodable bytes as ``\\xff`` escapes)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _read_checked(path: Path, max_bytes: int) -> tuple[str, bytes]:
    """``(sha256, bytes)`` of an image file, read in chunks; raises ImageError when the first
    chunk is not an image, or OSError when it can't be read."""
    h = hashlib.sha256()
    parts: list[bytes] = []
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            if not parts:
                fmt = sniff_format(chunk)
                if fmt in _NOT_IMAGES:
                    reason = "html" if fmt == "html" else "not_an_image"
                    raise image_error(reason, f"{path.name} starts like {fmt or 'no image'}")
            h.update(chunk)
            parts.append(chunk)
    return h.hexdigest(), b"".join(parts)


def index_file(path: Path, *, min_side: int, max_bytes: int) -> dict:
    """One manifest row for the file at ``path`` (see the module's table of reasons).

    Parameters
    ----------
    path : Path
        An absolute path to a file or a link, whose name ends in an image extension.
    min_side : int
        Images whose shorter side is under this many pixels are ``skipped``.
    max_bytes : int
        Larger files fail as ``too_large`` without being read.
    """
    shown = _display(path)
    row: dict = {"path": shown, "origin": shown, "source": "folder", "image_id": None}
    if shown != os.fsdecode(path):
        return dict(row, status="skipped", error="file_name_not_utf8: rename the file")
    try:
        size = path.stat().st_size
    except OSError as exc:
        if path.is_symlink():
            return dict(row, status="skipped", error=f"broken_link: {exc.strerror or exc}")
        return dict(row, status="failed", error=f"unreadable: {exc.strerror or exc}")
    if path.suffix.lower() in OTHER_IMAGE_EXTENSIONS:
        return dict(row, status="skipped", error=f"unsupported_format: {path.suffix.lower()}")
    if size > max_bytes:
        return dict(row, status="failed", error=f"too_large: {size} bytes > max_bytes={max_bytes}")
    try:
        sha, data = _read_checked(path, max_bytes)
        with decode_image(data) as im:
            w, h = im.size
    except ImageError as exc:
        return dict(row, status="failed", error=f"{error_reason(exc)}: {exc}")
    except OSError as exc:
        return dict(row, status="failed", error=f"unreadable: {exc.strerror or exc}")
    if min(w, h) < min_side:
        return dict(
            row, status="skipped", width=w, height=h, error=f"too_small: {w}x{h} < {min_side}"
        )
    return dict(row, image_id=sha, width=w, height=h, status="ok", error=None)


def index_folder(
    image_dir: str | os.PathLike[str],
    *,
    recursive: bool = True,
    extensions: Iterable[str] = IMAGE_EXTENSIONS,
    min_side: int = DEFAULT_MIN_SIDE,
    max_bytes: int = DEFAULT_MAX_BYTES,
    progress: bool = True,
) -> pd.DataFrame:
    """Build manifest rows for the images in a folder, without copying or moving them.

    Each file is hashed and decoded once (with the decompression-bomb guard). Every file
    whose name ends in an image extension gets a row; those that are not used say why in
    ``error`` (see the module's table).

    Parameters
    ----------
    image_dir : str or Path
        Folder of images; relative paths are taken from the project root.
    recursive : bool, default True
        Also look in sub-folders (linked folders are followed once; loops are cut).
    extensions : iterable of str
        File name endings to decode (case-insensitive); :data:`OTHER_IMAGE_EXTENSIONS` are
        recorded as ``unsupported_format``.
    min_side : int, default 2
        Skip images whose shorter side is smaller, in pixels.
    max_bytes : int, default 20,000,000
        Files larger than this fail as ``too_large`` and are never read.
    progress : bool, default True
        Show a progress bar.

    Returns
    -------
    DataFrame with the columns of :data:`lookalike.storage.MANIFEST_COLUMNS`; ``path`` and
    ``origin`` are the absolute file paths, ``source`` is ``"folder"``.
    """
    root = resolve(image_dir)
    if not root.is_dir():
        raise ConfigError(f"image_dir={str(image_dir)!r} is not a folder ({root})")
    exts = {e.lower() for e in extensions}
    wanted = exts | set(OTHER_IMAGE_EXTENSIONS)
    files = sorted(p for p in _walk(root, recursive) if p.suffix.lower() in wanted)
    t0 = time.perf_counter()
    rows = [
        index_file(p, min_side=int(min_side), max_bytes=int(max_bytes))
        for p in progress_bar(files, desc="folder", unit="file", disable=not progress)
    ]
    _print_summary(rows, time.perf_counter() - t0)
    return coerce_manifest(pd.DataFrame(rows)) if rows else empty_manifest()


def _print_summary(rows: list[dict], seconds: float) -> None:
    n = len(rows)
    ok = sum(r["status"] == "ok" for r in rows)
    reasons: dict[str, int] = {}
    for r in rows:
        if r["status"] != "ok":
            key = f"{r['status']} {r['error'].split(':', 1)[0]}"
            reasons[key] = reasons.get(key, 0) + 1
    rest = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items()))
    rate = 100.0 * ok / n if n else 0.0
    speed = n / seconds if seconds > 0 else 0.0
    print_summary(
        f"folder: {ok}/{n} images usable ({rate:.1f}%)"
        + (f"; {rest}" if rest else "")
        + f"; {seconds:.1f} s, {speed:.0f} files/s"
    )
