"""The ``folder`` source: index a folder of images in place (nothing is copied or moved)."""

from __future__ import annotations

import os
from collections.abc import Iterable

import pandas as pd

from .exceptions import ConfigError, ImageError
from .images import decode_image
from .paths import resolve
from .storage import coerce_manifest, empty_manifest, sha256_bytes

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".ico")


def index_folder(
    image_dir: str | os.PathLike[str],
    *,
    recursive: bool = True,
    extensions: Iterable[str] = IMAGE_EXTENSIONS,
) -> pd.DataFrame:
    """Build manifest rows for the images in a folder, without copying or moving them.

    Each file is hashed and decoded once (with the decompression-bomb guard); files that
    don't decode get ``status="failed"`` and the reason in ``error``.

    Parameters
    ----------
    image_dir : str or Path
        Folder of images; relative paths are taken from the project root.
    recursive : bool, default True
        Also look in sub-folders.
    extensions : iterable of str
        File name endings to include (case-insensitive).

    Returns
    -------
    DataFrame with the columns of :data:`MANIFEST_COLUMNS`; ``path`` and ``origin`` are the
    absolute file paths, ``source`` is ``"folder"``.
    """
    root = resolve(image_dir)
    if not root.is_dir():
        raise ConfigError(f"image_dir={str(image_dir)!r} is not a folder ({root})")
    exts = {e.lower() for e in extensions}
    files = sorted(
        p
        for p in (root.rglob("*") if recursive else root.iterdir())
        if p.is_file() and p.suffix.lower() in exts
    )
    rows = []
    for p in files:
        row = {"path": str(p), "origin": str(p), "source": "folder"}
        try:
            data = p.read_bytes()
            with decode_image(data) as im:
                w, h = im.size
            row.update(image_id=sha256_bytes(data), width=w, height=h, status="ok", error=None)
        except (OSError, ImageError) as exc:
            row.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        rows.append(row)
    return coerce_manifest(pd.DataFrame(rows)) if rows else empty_manifest()
