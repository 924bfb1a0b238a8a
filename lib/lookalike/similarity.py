"""Logo-aware similarity: parts, colour signature, fused similarity, neighbours and clusters.

Global CNN features fail on logos: the favicon of a brand (the icon alone) and its full lockup
(icon plus wordmark) share almost no pixels at the same place. The ``logos`` preset compares
images the way a logo researcher would, in four plain steps:

1. **Whole and parts.** Stage 03 embeds every image cropped to its artwork (``trim``) with
   VGG16 cut at ``block4_pool`` and GeM pooling (:func:`lookalike.embed.embed_images`). For a
   wide or tall lockup (aspect >= ``part_min_aspect``) it also embeds the square at each end
   of the crop, at ``part_size`` px: that is where the icon of a lockup sits
   (:func:`part_inputs`, :func:`embed_extras`).
2. **Colour signature** (:func:`colour_signature`): the colour histogram of the chromatic
   artwork pixels, because brand colours are the other half of a logo's identity.
3. **Fused similarity** (:func:`similarity_matrix`, :func:`nearest_neighbors`). Vectors are
   PCA-whitened on the run's own images (:func:`whiten`); two images are as similar as their
   best-matching pair of (whole, whole), (whole, part) or (part, whole), so an icon finds the
   lockup that contains it; that cosine is blended with the colour signatures' overlap.
4. **Clustering** (:func:`similarity_clusters`): average-linkage agglomerative clustering on
   ``1 - similarity``, beside KMeans on PCA.

The ``photos`` preset is the plain default embedding (block5_pool, max pooling, on white),
compared by cosine and clustered with KMeans: no logo-specific step touches product photos.
:data:`PRESETS` names both; :func:`resolve_preset` applies a user's overrides to one of them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from . import storage
from .exceptions import ConfigError, ImageError, ManifestError
from .paths import default_cache_dir, resolve

#: Measured defaults per kind of image (see the README, "How well does it work").
#:
#: Embedding keys (passed to :func:`lookalike.embed.embed_images`): ``layer``, ``pooling``,
#: ``image_size`` (px), ``background``, ``fit``, ``trim`` (crop to the artwork first).
#: Part keys: ``parts`` (embed the end squares of lockups), ``part_size`` (px),
#: ``part_min_aspect`` (long/short side ratio from which an image has parts).
#: Similarity keys: ``whiten`` (PCA-whitening dimensions, 0 = off), ``colour_weight`` (share
#: of the colour signature in the fused similarity, 0 = CNN only), ``colour_bins`` (levels per
#: RGB channel of the colour histogram), ``cluster_method`` (``"similarity"`` = also cluster
#: with average linkage on the fused similarity; ``"kmeans"`` = KMeans and agglomerative on
#: PCA only).
PRESETS: dict[str, dict[str, Any]] = {
    "logos": {
        "layer": "block4_pool",
        "pooling": "gem",
        "image_size": 224,
        "background": "auto",
        "fit": "pad",
        "trim": True,
        "parts": True,
        "part_size": 160,
        "part_min_aspect": 1.5,
        "whiten": 128,
        "colour_weight": 0.1,
        "colour_bins": 8,
        "cluster_method": "similarity",
    },
    "photos": {
        "layer": "block5_pool",
        "pooling": "max",
        "image_size": 224,
        "background": "white",
        "fit": "pad",
        "trim": False,
        "parts": False,
        "part_size": 160,
        "part_min_aspect": 1.5,
        "whiten": 0,
        "colour_weight": 0.0,
        "colour_bins": 8,
        "cluster_method": "kmeans",
    },
}

#: Keys of a preset that are parameters of :func:`lookalike.embed.embed_images`.
EMBED_KEYS = ("layer", "pooling", "image_size", "background", "fit", "trim")

#: ``RUN/embeddings/`` files written by :func:`embed_extras`.
PARTS_NAME = "parts.npy"
PART_MASK_NAME = "part_mask.npy"
COLOUR_NAME = "colour.npy"
SETTINGS_NAME = "similarity.json"
NEIGHBORS_NAME = "neighbors.parquet"
NEIGHBORS_COLUMNS = ["image_id", "rank", "neighbor_id", "similarity"]

#: Bumped when part or colour preprocessing changes, so cached records are not reused.
PARTS_VERSION = 1

#: Per-channel difference (0..255) from the border colour above which an opaque pixel is
#: artwork. Loose enough for JPEG noise and anti-aliasing, tight enough for pale artwork.
FOREGROUND_TOL = 28.0

#: Alpha (0..255) above which a pixel of a transparent image is artwork.
ALPHA_MIN = 32

#: Saturation (max-min)/max above which a pixel counts as chromatic for the colour signature.
CHROMA_MIN = 0.2

#: Largest run :func:`similarity_clusters` takes (its distance matrix is 8 n**2 bytes: 3.2 GB).
MAX_CLUSTER_IMAGES = 20_000


def resolve_preset(
    name: str = "logos", *, run_dir: str | os.PathLike[str] | None = None, **overrides: Any
) -> dict[str, Any]:
    """The settings of preset ``name`` with ``overrides`` applied.

    Parameters
    ----------
    name : {"logos", "photos", "auto"}, default "logos"
        ``"auto"`` picks ``logos`` when most images of ``run_dir``'s manifest came from stage
        02 (``source == "logos"``), else ``photos``.
    run_dir : str or Path, optional
        Needed for ``"auto"``.
    **overrides
        Any key of the preset (see :data:`PRESETS`); ``None`` values are ignored, so a notebook
        can pass its parameters straight through.

    Returns
    -------
    dict
        A new dict with every key of :data:`PRESETS` plus ``preset`` (the resolved name).

    Raises
    ------
    ConfigError
        For an unknown preset or key, or an out-of-range value.
    """
    if name == "auto":
        if run_dir is None:
            raise ConfigError("preset='auto' needs the run folder to look at its images")
        sources = storage.read_manifest(resolve(run_dir))["source"].astype(str)
        name = "logos" if (sources == "logos").mean() > 0.5 else "photos"
    if name not in PRESETS:
        raise ConfigError(f"preset={name!r} is not known; use one of {sorted(PRESETS)} or auto")
    params = dict(PRESETS[name])
    for key, value in overrides.items():
        if key not in params:
            raise ConfigError(
                f"{key!r} is not a parameter of preset {name!r}; use one of {sorted(params)}"
            )
        if value is not None:
            params[key] = value
    if not 0.0 <= float(params["colour_weight"]) <= 1.0:
        raise ConfigError(f"colour_weight={params['colour_weight']!r} must be within 0..1")
    if int(params["whiten"]) < 0:
        raise ConfigError(f"whiten={params['whiten']!r} must be >= 0 (0 turns it off)")
    if float(params["part_min_aspect"]) < 1.0:
        raise ConfigError(f"part_min_aspect={params['part_min_aspect']!r} must be >= 1")
    if params["cluster_method"] not in ("similarity", "kmeans"):
        raise ConfigError(
            f"cluster_method={params['cluster_method']!r} must be 'similarity' or 'kmeans'"
        )
    params["preset"] = name
    return params


def embed_kwargs(settings: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of :func:`lookalike.embed.embed_images` that ``settings`` sets."""
    return {k: settings[k] for k in EMBED_KEYS}


# -- one image: parts and colour ------------------------------------------------------------


def _upright_rgba(path_or_bytes: str | os.PathLike[str] | bytes | Image.Image) -> Image.Image:
    from .embed import _decode, _first_frame_upright, to_rgba

    img = path_or_bytes if isinstance(path_or_bytes, Image.Image) else _decode(path_or_bytes)
    try:
        img = to_rgba(_first_frame_upright(img))
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
    every Pillow mode, :func:`lookalike.embed.trim_borders` when ``trim``), then each end
    square is resized to ``part_size`` and laid on the same background as the whole.

    Returns
    -------
    list of 0 or 2 ndarrays of shape (part_size, part_size, 3), float32, RGB 0..255
    """
    from .embed import _COLOR, _composite, pick_background, trim_borders

    img = _upright_rgba(path_or_bytes)
    if trim:
        img = trim_borders(img)
    boxes = part_boxes(img.width, img.height, min_aspect=part_min_aspect)
    if not boxes:
        return []
    if background == "none":
        img = img.convert("RGB")  # the seeds' plain conversion, as for the whole
        bg = _COLOR["white"]
    elif background == "auto":
        bg = _COLOR[pick_background(img)]
    else:
        bg = _COLOR[background]
    size = (int(part_size), int(part_size))
    out = []
    for box in boxes:
        crop = img.crop(box).resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)
        out.append(np.ascontiguousarray(_composite(crop, bg), dtype=np.float32))
    return out


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
    rgba = _upright_rgba(image).convert("RGBA")
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


# -- many images in memory (tests, benchmarks) ----------------------------------------------


def _l2(v: np.ndarray) -> np.ndarray:
    return (v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def _png_bytes(image: Image.Image | str | os.PathLike[str] | bytes) -> bytes | str:
    if isinstance(image, Image.Image):
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return buf.getvalue()
    return image if isinstance(image, (bytes, bytearray)) else str(image)


def embed_parts(
    images: Sequence[Image.Image | str | os.PathLike[str] | bytes],
    model: Any = None,
    *,
    layer: str = "block4_pool",
    pooling: str = "gem",
    image_size: int = 224,
    background: str = "auto",
    fit: str = "pad",
    trim: bool = True,
    parts: bool = True,
    part_size: int = 160,
    part_min_aspect: float = 1.5,
    colour_bins: int = 8,
    batch_size: int = 32,
    **_ignored: Any,
) -> dict[str, np.ndarray]:
    """Whole, part and colour features of a few images held in memory.

    The same preprocessing as stage 03 (:func:`lookalike.embed.load_for_embedding` for the
    whole, :func:`part_inputs` for the parts), without the run folder and cache: for tests,
    benchmarks and notebooks that compare a handful of images.

    Parameters
    ----------
    images : sequence of PIL.Image, paths or bytes, length n
    model : keras.Model, optional
        Default ``lookalike.weights.load_vgg16(layer=layer)``.
    layer, pooling, image_size, background, fit, trim, parts, part_size, part_min_aspect,
    colour_bins
        As in :data:`PRESETS`; ``embed_parts(images, **resolve_preset("logos"))`` works.
    batch_size : int, default 32
    **_ignored
        Other preset keys.

    Returns
    -------
    dict with
        ``vectors`` (n, d) float32, L2-normalised vectors of the wholes;
        ``parts`` (n, 2, d) float32, the end-square vectors (zeros where absent);
        ``part_mask`` (n, 2) bool, which parts exist;
        ``colour`` (n, colour_bins**3) float32 colour signatures.

    Raises
    ------
    ImageError
        If an image cannot be decoded.
    """
    from .embed import load_for_embedding, pool_features, prepare

    if model is None:
        from .weights import load_vgg16

        model = load_vgg16(layer=layer)
    wholes, part_arrays, owners, colours = [], [], [], []
    for i, img in enumerate(images):
        data = _png_bytes(img)
        wholes.append(
            load_for_embedding(
                data, image_size=image_size, background=background, fit=fit, trim=trim
            )
        )
        if parts:
            for j, arr in enumerate(
                part_inputs(
                    data,
                    part_size=part_size,
                    part_min_aspect=part_min_aspect,
                    background=background,
                    trim=trim,
                )
            ):
                part_arrays.append(arr)
                owners.append((i, j))
        colours.append(colour_signature(data, bins=colour_bins))

    def run(arrays: list[np.ndarray]) -> np.ndarray:
        out = []
        for s in range(0, len(arrays), batch_size):
            x = np.stack([prepare(a) for a in arrays[s : s + batch_size]])
            out.append(_l2(pool_features(np.asarray(model.predict_on_batch(x)), pooling)))
        return np.concatenate(out)

    vectors = run(wholes) if wholes else np.zeros((0, 0), np.float32)
    n, d = len(wholes), vectors.shape[1]
    part_vecs = np.zeros((n, 2, d), dtype=np.float32)
    part_mask = np.zeros((n, 2), dtype=bool)
    if part_arrays:
        for (i, j), v in zip(owners, run(part_arrays), strict=True):
            part_vecs[i, j] = v
            part_mask[i, j] = True
    colour = np.stack(colours) if colours else np.zeros((0, colour_bins**3), np.float32)
    return {"vectors": vectors, "parts": part_vecs, "part_mask": part_mask, "colour": colour}


# -- a run: parts and colour beside RUN/embeddings ------------------------------------------


def _settings_hash(settings: dict[str, Any], embed_params: dict[str, Any]) -> str:
    keys = {k: settings[k] for k in ("part_size", "part_min_aspect", "colour_bins", "parts")}
    blob = {"embed": embed_params, "parts": keys, "version": PARTS_VERSION}
    text = json.dumps(blob, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _save_npy(path: Path, array: np.ndarray) -> None:
    with storage.atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)


def read_settings(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The similarity settings stage 03 recorded (``RUN/embeddings/similarity.json``), or None."""
    path = resolve(run_dir) / "embeddings" / SETTINGS_NAME
    try:
        return json.loads(path.read_text())["settings"]
    except (OSError, ValueError, KeyError):
        return None


def embed_extras(
    run_dir: str | os.PathLike[str],
    settings: dict[str, Any],
    *,
    batch_size: int = 32,
    precision: str = "fp32",
    workers: int = 2,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Part vectors and colour signatures for every row of ``RUN/embeddings/``.

    Run after :func:`lookalike.embed.embed_images` with the same ``settings``
    (:func:`embed_kwargs`). Records ``settings`` in ``RUN/embeddings/similarity.json``, which
    stage 04 reads. With ``parts`` off and ``colour_weight`` 0 (the ``photos`` preset)
    nothing else is computed; with parts off but a colour weight, only the colour.

    Parameters
    ----------
    run_dir : str or Path
    settings : dict
        From :func:`resolve_preset`.
    batch_size, precision, workers, progress
        As in :func:`lookalike.embed.embed_images`; parts run at ``precision`` too.
    cache_dir : str or Path, optional
        Root of the vector cache (default ``default_cache_dir() / "embeddings"``). Each
        image's record (part mask, part vectors, colour) is cached under a
        ``parts-<hash>`` folder, keyed by its sha256 and every setting that decides it.

    Returns
    -------
    dict with ``n_images``, ``with_parts`` (images that are lockups), ``parts_computed``
    (part inputs run through the model now), ``cached`` (images served by the cache),
    ``failed``, ``seconds``, ``reused``.

    Notes
    -----
    Writes, aligned with the rows of ``RUN/embeddings/vectors.npy``: ``parts.npy`` float32
    (n, 2, d), ``part_mask.npy`` bool (n, 2) and ``colour.npy`` float32 (n, bins**3). A
    re-run with the same images and settings reuses them; an interrupted run loses only the
    records not yet cached.
    """
    from tqdm.auto import tqdm

    from .embed import (
        VectorCache,
        _prefetch,
        feature_batches,
        l2_normalize,
        load_extractor,
        output_dim,
        pool_features,
    )

    t0 = time.perf_counter()
    run = resolve(run_dir)
    emb = run / "embeddings"
    state_path = emb / "state.json"
    try:
        embed_state = json.loads(state_path.read_text())
    except (OSError, ValueError) as e:
        raise ManifestError(f"{state_path} is missing or unreadable: run stage 03 first") from e
    embed_params = embed_state["params"]
    for k in EMBED_KEYS:
        if embed_params.get(k) != settings[k]:
            raise ConfigError(
                f"RUN/embeddings was embedded with {k}={embed_params.get(k)!r}, but the "
                f"similarity settings say {settings[k]!r}; embed with the same settings"
            )
    ids = storage.read_table(
        emb / "ids.parquet", required=["image_id", "path"], what="embedding ids"
    )
    n = len(ids)
    d = output_dim(settings["layer"], int(settings["part_size"]), settings["pooling"])
    c = int(settings["colour_bins"]) ** 3
    phash = _settings_hash(settings, embed_params)
    record = {"settings": settings, "parts_hash": phash, "precision": precision}
    fingerprint = hashlib.sha256("\n".join(ids["image_id"].astype(str)).encode()).hexdigest()
    summary: dict[str, Any] = {
        "n_images": n,
        "with_parts": 0,
        "parts_computed": 0,
        "cached": 0,
        "failed": 0,
        "seconds": 0.0,
        "reused": False,
    }
    settings_path = emb / SETTINGS_NAME
    if not settings["parts"] and not float(settings["colour_weight"]) > 0:
        storage.atomic_write_bytes(settings_path, json.dumps(record, indent=2).encode())
        for name in (PARTS_NAME, PART_MASK_NAME, COLOUR_NAME):
            (emb / name).unlink(missing_ok=True)
        print(f"similarity: preset {settings['preset']}: whole-image vectors only")
        return summary
    record["ids_sha256"] = fingerprint
    outputs = [emb / name for name in (PARTS_NAME, PART_MASK_NAME, COLOUR_NAME)]
    try:
        old = json.loads(settings_path.read_text())
    except (OSError, ValueError):
        old = None
    done = old is not None and old.get("n_failed") == 0
    if (
        done
        and {k: v for k, v in old.items() if k != "n_failed"} == record
        and all(p.is_file() for p in outputs)
    ):
        mask = np.load(emb / PART_MASK_NAME)
        summary.update(
            reused=True,
            cached=n,
            with_parts=int(mask.any(axis=1).sum()),
            seconds=time.perf_counter() - t0,
        )
        _print_extras(summary)
        return summary

    cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "embeddings"
    cache = VectorCache(cache_root / f"parts-{phash}")
    width = 2 + 2 * d + c  # record: mask (2), part 0 (d), part 1 (d), colour (c)
    parts = np.zeros((n, 2, d), dtype=np.float32)
    mask = np.zeros((n, 2), dtype=bool)
    colour = np.zeros((n, c), dtype=np.float32)
    paths = [storage.image_abspath(run, p) for p in ids["path"].astype(str)]
    image_ids = ids["image_id"].astype(str).tolist()

    def store(i: int) -> None:
        rec = np.concatenate([mask[i].astype(np.float32), parts[i].ravel(), colour[i]])
        cache.put(image_ids[i], rec)

    misses = []
    for i, image_id in enumerate(image_ids):
        rec = cache.get(image_id, width)
        if rec is None:
            misses.append(i)
            continue
        mask[i] = rec[:2] > 0.5
        parts[i] = rec[2 : 2 + 2 * d].reshape(2, d)
        colour[i] = rec[2 + 2 * d :]
    summary["cached"] = n - len(misses)

    opts = {k: settings[k] for k in ("part_size", "part_min_aspect", "background", "trim")}

    def look(i: int) -> tuple[np.ndarray, int]:
        img = _upright_rgba(paths[i])
        n_parts = len(part_inputs(img, **opts)) if settings["parts"] else 0
        return colour_signature(img, bins=int(settings["colour_bins"])), n_parts

    todo: list[tuple[int, int]] = []
    failed: dict[int, str] = {}
    stream = _prefetch(misses, look, workers=int(workers), lookahead=64)
    for i, result, err in tqdm(
        stream, total=len(misses), desc="colour", unit="img", disable=not progress
    ):
        if err is not None:
            failed[i] = f"{type(err).__name__}: {err}"
            continue
        colour[i], n_parts = result
        if n_parts:
            todo += [(i, j) for j in range(n_parts)]
        else:
            store(i)
    pending = {i: 2 for i, j in todo if j == 0}
    if todo:
        extractor = load_extractor(
            layer=settings["layer"],
            precision=precision,
            image_size=int(settings["part_size"]),
            cache_dir=cache_root,
            progress=progress,
        )

        def load(item: tuple[int, int]) -> np.ndarray:
            i, j = item
            return part_inputs(paths[i], **opts)[j]

        batches = feature_batches(
            todo,
            load,
            extractor,
            batch_size=int(batch_size),
            workers=int(workers),
            desc="parts",
            progress=progress,
        )
        for positions, feats, errors in batches:
            for p, err in errors:
                failed[todo[p][0]] = f"{type(err).__name__}: {err}"
            if feats is None:
                continue
            vecs = l2_normalize(pool_features(feats, settings["pooling"]))
            for p, v in zip(positions, vecs, strict=True):
                i, j = todo[p]
                parts[i, j] = v
                mask[i, j] = True
                pending[i] -= 1
                if pending[i] == 0 and i not in failed:
                    store(i)
            summary["parts_computed"] += len(positions)
    for i in failed:  # keep the whole-image vector; no parts or colour for this image
        parts[i] = 0.0
        mask[i] = False
        colour[i] = 0.0
    summary["failed"] = len(failed)
    for i, reason in list(failed.items())[:3]:
        print(f"similarity: no parts or colour for {ids['path'].iloc[i]}: {reason}")
    summary["with_parts"] = int(mask.any(axis=1).sum())
    _save_npy(emb / PARTS_NAME, parts)
    _save_npy(emb / PART_MASK_NAME, mask)
    _save_npy(emb / COLOUR_NAME, colour)
    record["n_failed"] = len(failed)  # a later run retries those (the rest is cached)
    storage.atomic_write_bytes(settings_path, json.dumps(record, indent=2).encode())
    summary["seconds"] = time.perf_counter() - t0
    _print_extras(summary)
    return summary


def _print_extras(s: dict[str, Any]) -> None:
    how = " (reused)" if s["reused"] else ""
    print(
        f"similarity: {s['n_images']} images, {s['with_parts']} lockups with parts; "
        f"{s['parts_computed']} part inputs computed, {s['cached']} images from the cache, "
        f"{s['failed']} failed; {s['seconds']:.1f} s{how}"
    )


def load_features(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Everything the fused similarity of a run needs, as stage 03 left it.

    Returns
    -------
    dict with ``ids`` (DataFrame of ``RUN/embeddings/ids.parquet``), ``vectors`` (n, d),
    ``parts`` (n, 2, d') or None, ``part_mask`` (n, 2) or None, ``colour`` (n, c) or None, and
    ``settings`` (the recorded settings; the ``photos`` preset's when none were recorded).
    """
    run = resolve(run_dir)
    ids, vectors = storage.read_embeddings(run)
    settings = read_settings(run) or resolve_preset("photos")
    out: dict[str, Any] = {
        "ids": ids,
        "vectors": np.asarray(vectors, dtype=np.float32),
        "parts": None,
        "part_mask": None,
        "colour": None,
        "settings": settings,
    }
    emb = run / "embeddings"
    if (emb / PARTS_NAME).is_file() and (emb / SETTINGS_NAME).is_file():
        parts = np.load(emb / PARTS_NAME)
        if len(parts) != len(ids):
            raise ManifestError(
                f"{emb / PARTS_NAME} has {len(parts)} rows for {len(ids)} vectors; re-run 03"
            )
        out["parts"] = parts
        out["part_mask"] = np.load(emb / PART_MASK_NAME)
        out["colour"] = np.load(emb / COLOUR_NAME)
    return out


def fused_inputs(features: dict[str, Any], *, random_state: int | None = 0) -> dict[str, Any]:
    """Whitened vectors and parts plus colour: ``similarity_matrix(**fused_inputs(f))``.

    The keys are the arguments of :func:`similarity_matrix` and :func:`nearest_neighbors`.

    Parts of a different width than the wholes (another ``part_size`` at a flatten pooling)
    cannot be compared and are dropped.
    """
    s = features["settings"]
    vectors, parts, mask = features["vectors"], features["parts"], features["part_mask"]
    if parts is not None and parts.shape[-1] != vectors.shape[1]:
        parts, mask = None, None
    if parts is not None and not mask.any():
        parts, mask = None, None
    if int(s.get("whiten", 0)) > 0:
        vectors, parts = whiten(
            vectors, parts, mask, n_components=int(s["whiten"]), random_state=random_state
        )
    else:
        vectors = _l2(vectors)
    weight = float(s.get("colour_weight", 0.0))
    colour = features["colour"] if weight > 0 else None
    return {
        "vectors": vectors,
        "parts": parts,
        "part_mask": mask,
        "colour": colour,
        "colour_weight": weight if colour is not None else 0.0,
    }


def write_neighbors(
    run_dir: str | os.PathLike[str],
    inputs: dict[str, Any],
    image_ids: Sequence[str],
    *,
    k: int = 10,
) -> pd.DataFrame:
    """Write ``RUN/neighbors.parquet``: every image's ``k`` most similar images.

    Columns image_id, rank (1 = nearest), neighbor_id, similarity (the fused similarity of
    the run's preset; cosine for ``photos``).
    """
    table = nearest_neighbors(**inputs, image_ids=image_ids, k=k)
    storage.write_table(table, resolve(run_dir) / NEIGHBORS_NAME)
    return table


def read_neighbors(run_dir: str | os.PathLike[str]) -> pd.DataFrame | None:
    """``RUN/neighbors.parquet``, or None when stage 04 has not written it."""
    path = resolve(run_dir) / NEIGHBORS_NAME
    if not path.is_file():
        return None
    return storage.read_table(path, required=NEIGHBORS_COLUMNS, what="neighbours")


# -- similarity ---------------------------------------------------------------------------


def whiten(
    vectors: np.ndarray,
    parts: np.ndarray | None = None,
    part_mask: np.ndarray | None = None,
    *,
    n_components: int = 128,
    random_state: int | None = 0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """PCA-whiten wholes and parts together, then L2-normalise.

    Whitening on the run's own images gives every direction of variation equal weight, so
    features every logo shares (white space, black text strokes) stop dominating the cosine.

    Parameters
    ----------
    vectors : ndarray (n, d)
    parts : ndarray (n, m, d), optional
    part_mask : ndarray (n, m) bool, optional
    n_components : int, default 128
        Clipped to the number of vectors minus one and to ``d``.

    Returns
    -------
    vectors : ndarray (n, k) float32
    parts : ndarray (n, m, k) float32, or None (absent parts stay zero)
    """
    from sklearn.decomposition import PCA

    vectors = np.asarray(vectors, dtype=np.float32)
    fit_on = vectors
    if parts is not None and part_mask is not None and part_mask.any():
        fit_on = np.concatenate([vectors, parts[part_mask]])
    k = int(min(n_components, fit_on.shape[0] - 1, fit_on.shape[1]))
    if k < 2:
        return _l2(vectors), parts
    pca = PCA(n_components=k, random_state=random_state).fit(fit_on)
    scale = 1.0 / np.sqrt(np.maximum(pca.explained_variance_, 1e-12))

    def t(x: np.ndarray) -> np.ndarray:
        return _l2((x - pca.mean_) @ pca.components_.T * scale)

    w_parts = None
    if parts is not None:
        w_parts = np.zeros((*parts.shape[:2], k), dtype=np.float32)
        if part_mask is not None and part_mask.any():
            w_parts[part_mask] = t(parts[part_mask])
    return t(vectors), w_parts


def _block(
    rows: slice,
    vectors: np.ndarray,
    parts: np.ndarray | None,
    part_mask: np.ndarray | None,
    colour: np.ndarray | None,
    colour_weight: float,
) -> np.ndarray:
    """Fused similarity of the images in ``rows`` to every image: (len(rows), n)."""
    w = vectors[rows]
    s = w @ vectors.T
    if parts is not None and part_mask is not None and part_mask.any():
        n, m, d = parts.shape
        r = w.shape[0]
        # whole_i . part_j  and  part_i . whole_j as matrix products (BLAS), absent parts -inf
        wp = (w @ parts.reshape(n * m, d).T).reshape(r, n, m)
        wp = np.where(part_mask[None, :, :], wp, -np.inf).max(axis=2)
        pw = (parts[rows].reshape(r * m, d) @ vectors.T).reshape(r, m, n)
        pw = np.where(part_mask[rows][:, :, None], pw, -np.inf).max(axis=1)
        s = np.maximum(s, np.maximum(wp, pw))
    if colour is not None and colour_weight > 0:
        s = (1.0 - colour_weight) * s + colour_weight * (colour[rows] @ colour.T)
    return s.astype(np.float32)


def _check_inputs(vectors, parts, part_mask, colour):
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise ValueError(f"vectors must be (n, d), got shape {vectors.shape}")
    n = vectors.shape[0]
    if parts is not None:
        parts = np.asarray(parts, dtype=np.float32)
        part_mask = (
            np.ones(parts.shape[:2], bool) if part_mask is None else np.asarray(part_mask, bool)
        )
        if parts.ndim != 3 or parts.shape[0] != n or parts.shape[2] != vectors.shape[1]:
            raise ValueError(
                f"parts must be (n, m, d) = ({n}, m, {vectors.shape[1]}), got {parts.shape}"
            )
        if part_mask.shape != parts.shape[:2]:
            raise ValueError(f"part_mask must be {parts.shape[:2]}, got {part_mask.shape}")
    if colour is not None:
        colour = np.asarray(colour, dtype=np.float32)
        if colour.ndim != 2 or colour.shape[0] != n:
            raise ValueError(f"colour must be (n, bins**3) with n={n}, got {colour.shape}")
    return vectors, parts, part_mask, colour


def _chunk_rows(n: int, m: int, budget: int = 20_000_000) -> int:
    return max(1, min(n, budget // max(1, n * (1 + 2 * m))))


def similarity_matrix(
    vectors: np.ndarray,
    parts: np.ndarray | None = None,
    part_mask: np.ndarray | None = None,
    colour: np.ndarray | None = None,
    *,
    colour_weight: float = 0.3,
) -> np.ndarray:
    """Fused similarity of every pair of images.

    ``S[i, j] = (1 - colour_weight) * cnn[i, j] + colour_weight * colour[i] . colour[j]``,
    where ``cnn[i, j]`` is the largest cosine among (whole_i, whole_j), (whole_i, part of j)
    and (part of i, whole_j).

    Parameters
    ----------
    vectors : ndarray (n, d)
        L2-normalised (and usually :func:`whiten`-ed) whole vectors.
    parts : ndarray (n, m, d), optional
    part_mask : ndarray (n, m) bool, optional
        Default: every part present.
    colour : ndarray (n, c), optional
        :func:`colour_signature` rows. Ignored when ``colour_weight`` is 0.
    colour_weight : float, default 0.3

    Returns
    -------
    ndarray (n, n) float32, symmetric, roughly -1..1 (1 on the diagonal).
    """
    vectors, parts, part_mask, colour = _check_inputs(vectors, parts, part_mask, colour)
    n = vectors.shape[0]
    m = 0 if parts is None else parts.shape[1]
    step = _chunk_rows(n, m)
    out = np.empty((n, n), dtype=np.float32)
    for s in range(0, n, step):
        rows = slice(s, min(n, s + step))
        out[rows] = _block(rows, vectors, parts, part_mask, colour, colour_weight)
    return out


def nearest_neighbors(
    vectors: np.ndarray,
    parts: np.ndarray | None = None,
    part_mask: np.ndarray | None = None,
    colour: np.ndarray | None = None,
    *,
    image_ids: Sequence[str] | None = None,
    k: int = 10,
    colour_weight: float = 0.3,
) -> pd.DataFrame:
    """The ``k`` most similar other images of every image, computed in row blocks.

    Memory stays at a block of rows times n (about 80 MB), never n x n.

    Parameters
    ----------
    vectors, parts, part_mask, colour, colour_weight
        As in :func:`similarity_matrix`.
    image_ids : sequence of str, optional
        Row names (default ``"0"``, ``"1"``, ...).
    k : int, default 10
        Clipped to n - 1.

    Returns
    -------
    DataFrame with columns image_id (str), rank (int, 1 = nearest), neighbor_id (str),
    similarity (float32); n * k rows sorted by image then rank. Ties are broken by row order.
    """
    vectors, parts, part_mask, colour = _check_inputs(vectors, parts, part_mask, colour)
    n = vectors.shape[0]
    ids = np.asarray([str(i) for i in range(n)] if image_ids is None else list(image_ids))
    if len(ids) != n:
        raise ValueError(f"image_ids has {len(ids)} entries for {n} vectors")
    k = int(min(k, n - 1))
    if k < 1:
        return pd.DataFrame(
            {"image_id": [], "rank": [], "neighbor_id": [], "similarity": []}
        ).astype({"image_id": str, "rank": int, "neighbor_id": str, "similarity": np.float32})
    m = 0 if parts is None else parts.shape[1]
    step = _chunk_rows(n, m)
    nbr = np.empty((n, k), dtype=np.int64)
    sim = np.empty((n, k), dtype=np.float32)
    for s in range(0, n, step):
        rows = slice(s, min(n, s + step))
        block = _block(rows, vectors, parts, part_mask, colour, colour_weight)
        r = np.arange(rows.start, rows.stop)
        block[r - s, r] = -np.inf  # not its own neighbour
        # stable sort on -similarity: equal scores keep row order, so results are reproducible
        order = np.argsort(-block, axis=1, kind="stable")[:, :k]
        nbr[rows] = order
        sim[rows] = np.take_along_axis(block, order, axis=1)
    return pd.DataFrame(
        {
            "image_id": np.repeat(ids, k),
            "rank": np.tile(np.arange(1, k + 1), n),
            "neighbor_id": ids[nbr.ravel()],
            "similarity": sim.ravel(),
        }
    )


def similarity_tree(similarity: np.ndarray) -> np.ndarray:
    """Average-linkage merge tree of ``1 - similarity`` (scipy linkage matrix).

    Parameters
    ----------
    similarity : ndarray (n, n)
        From :func:`similarity_matrix`; symmetrised here.

    Returns
    -------
    ndarray (n - 1, 4), see :func:`scipy.cluster.hierarchy.linkage`; cut it with
    :func:`lookalike.cluster.cut_tree`.

    Raises
    ------
    ConfigError
        For more than :data:`MAX_CLUSTER_IMAGES` images: average linkage needs the full
        n x n distance matrix (8 n**2 bytes) and O(n**2) time; use KMeans there.
    """
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    S = np.asarray(similarity, dtype=np.float64)
    if S.ndim != 2 or S.shape[0] != S.shape[1] or S.shape[0] < 2:
        raise ValueError(f"similarity must be a square (n, n) matrix, n >= 2; got {S.shape}")
    n = S.shape[0]
    if n > MAX_CLUSTER_IMAGES:
        raise ConfigError(
            f"similarity clustering of {n} images needs a {n}x{n} matrix; above "
            f"{MAX_CLUSTER_IMAGES} images use cluster_method='kmeans'"
        )
    D = np.clip(1.0 - (S + S.T) / 2.0, 0.0, None)
    np.fill_diagonal(D, 0.0)
    return linkage(squareform(D, checks=False), method="average")


def similarity_clusters(
    similarity: np.ndarray,
    *,
    n_clusters: int | None = None,
    distance_threshold: float | None = None,
) -> np.ndarray:
    """Average-linkage agglomerative clusters on ``1 - similarity`` (deterministic).

    Parameters
    ----------
    similarity : ndarray (n, n)
        From :func:`similarity_matrix`.
    n_clusters : int, optional
        Number of clusters; give this or ``distance_threshold``.
    distance_threshold : float, optional
        Merge while the average distance ``1 - similarity`` between clusters is below this.

    Returns
    -------
    ndarray (n,) int64 cluster labels, 0 = the largest cluster (as
    :func:`lookalike.cluster.cut_tree`), so equal inputs always give equal labels.
    """
    from .cluster import cut_tree

    if (n_clusters is None) == (distance_threshold is None):
        raise ConfigError("give exactly one of n_clusters or distance_threshold")
    n = np.asarray(similarity).shape[0]
    if n_clusters is not None and not 1 <= int(n_clusters) <= n:
        raise ConfigError(f"n_clusters={n_clusters!r} must be within 1..{n} (the image count)")
    if n == 1:
        return np.zeros(1, dtype=np.int64)
    tree = similarity_tree(similarity)
    return cut_tree(tree, n_clusters=n_clusters, distance_threshold=distance_threshold)
