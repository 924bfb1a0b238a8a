"""Stage 03's logo extras: part vectors, colour and shape signatures beside the vectors.

An image's parts are up to :data:`SLOTS` more vectors it can be matched by: the two end
squares of a lockup (slots 0 and 1, where its icon sits) and the luminance negative of
light-on-dark artwork (slot :data:`~lookalike.neighbors.NEGATIVE_SLOT`, so a dark-mode logo
meets its usual version; :func:`lookalike.preprocess.negative_input`).

:func:`embed_extras` adds ``RUN/embeddings/parts.npy``, ``part_mask.npy``, ``colour.npy`` and
``shape.npy``,
aligned with the rows of ``vectors.npy``, for the ``logos`` preset of
:mod:`lookalike.similarity` (:func:`lookalike.embed.embed_run` calls it after the whole
images). :func:`embed_parts` computes the same features for a few images held in memory.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from . import storage
from .distributed import RayOptions, check_engine, embed_batches, map_batches, ray_options
from .exceptions import ConfigError, ManifestError
from .images import png_bytes
from .model import (
    default_backend,
    load_extractor,
    load_vgg16,
    output_dim,
    pool_features,
    prepare,
    vector_cache_root,
)
from .neighbors import NEGATIVE_SLOT, l2_normalize
from .paths import RunLayout
from .preprocess import (
    SHAPE_DIM,
    colour_signature,
    load_for_embedding,
    lockup_parts,
    negative_input,
    part_inputs,
    shape_signatures,
    shows_light_on_dark,
    upright_rgba,
)
from .progress import summary as print_summary
from .similarity import EMBED_KEYS
from .vectors import BATCH_SIZE, WORKERS, VectorCache, feature_batches, prefetch

#: Bumped when part or colour preprocessing changes, so cached records are not reused.
#: 2: a third slot, the negative of light-on-dark artwork. 3: shape signatures.
PARTS_VERSION = 3

#: Part slots per image: two end squares, then the negative.
SLOTS = 3

#: Part keys of a preset that decide an image's cached record (with the embedding's own).
PART_KEYS = ("part_size", "part_min_aspect", "colour_bins", "parts", "negatives")


def extras_hash(settings: dict[str, Any], embed_params: dict[str, Any]) -> str:
    """Short hash naming the cache folder of the part and colour records (``parts-<hash>``)."""
    keys = {k: settings[k] for k in PART_KEYS}
    return storage.fingerprint({"embed": embed_params, "parts": keys, "version": PARTS_VERSION})[
        :16
    ]


def _save_npy(path: Path, array: np.ndarray) -> None:
    with storage.atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)


@dataclass
class _Records:
    """The extras of every row, filled from the cache or computed; one cache record per image.

    A record is a float32 vector: mask (SLOTS), the SLOTS part vectors (d each), colour (c),
    the whole's shape signature (SHAPE_DIM), then the end squares' (2 x SHAPE_DIM) when it has
    them (most images have none: their records stay small).
    """

    image_ids: list[str]
    paths: list[Path]
    d: int
    c: int
    cache: VectorCache

    def __post_init__(self) -> None:
        n = len(self.image_ids)
        self.parts = np.zeros((n, SLOTS, self.d), dtype=np.float32)
        self.mask = np.zeros((n, SLOTS), dtype=bool)
        self.colour = np.zeros((n, self.c), dtype=np.float32)
        self.shape = np.zeros((n, 3, SHAPE_DIM), dtype=np.uint8)

    def load_cached(self) -> list[int]:
        """Fill the rows the cache holds; return the others (row numbers)."""
        d, m = self.d, SLOTS
        base = m + m * d + self.c
        misses = []
        for i, image_id in enumerate(self.image_ids):
            rec = self.cache.get(image_id)
            if rec is None or len(rec) not in (base + SHAPE_DIM, base + 3 * SHAPE_DIM):
                misses.append(i)
                continue
            self.mask[i] = rec[:m] > 0.5
            self.parts[i] = rec[m : m + m * d].reshape(m, d)
            self.colour[i] = rec[m + m * d : base]
            shape = rec[base:].reshape(-1, SHAPE_DIM)
            self.shape[i, : len(shape)] = shape.astype(np.uint8)
        return misses

    def store(self, i: int) -> None:
        mask = self.mask[i].astype(np.float32)
        shape = self.shape[i] if self.shape[i, 1:].any() else self.shape[i, :1]
        self.cache.put(
            self.image_ids[i],
            np.concatenate([mask, self.parts[i].ravel(), self.colour[i], shape.ravel()]),
        )

    def drop(self, failed: dict[int, str]) -> None:
        """No parts or colour for failed rows (their whole-image vector stays)."""
        for i in failed:
            self.parts[i] = 0.0
            self.mask[i] = False
            self.colour[i] = 0.0
            self.shape[i] = 0


def _embedded_params(run: RunLayout, settings: dict[str, Any]) -> dict[str, Any]:
    """The parameters ``RUN/embeddings`` was made with; they must match ``settings``."""
    stamp = storage.read_stamp(run.embed_state)
    if stamp is None or "params" not in stamp.get("key", {}):
        raise ManifestError(f"{run.embed_state} is missing or unreadable: run stage 03 first")
    params = stamp["key"]["params"]
    for k in EMBED_KEYS:
        if params.get(k) != settings[k]:
            raise ConfigError(
                f"RUN/embeddings was embedded with {k}={params.get(k)!r}, but the "
                f"similarity settings say {settings[k]!r}; embed with the same settings"
            )
    return params


def _describe(e: BaseException) -> str:
    """The text a failed image gets in the extras' report."""
    return f"{type(e).__name__}: {e}"


def _look(
    data: Any, _key: Any, *, opts: dict[str, Any], bins: int, parts: bool, negatives: bool
) -> np.ndarray:
    """``[end squares, has a negative, colour signature..., shape signatures (3 x SHAPE_DIM)]``
    of one image (path or bytes); the shape rows of absent end squares are zeros."""
    img = upright_rgba(data)
    negative = False
    # the boxes :func:`part_inputs` would cut, without resizing them for nothing
    cut, boxes = lockup_parts(img, part_min_aspect=opts["part_min_aspect"], trim=opts["trim"])
    boxes = boxes if parts else []
    if negatives:
        negative = shows_light_on_dark(img, background=opts["background"])
    head = np.asarray([len(boxes), float(negative)], dtype=np.float32)
    shape = np.zeros((3, SHAPE_DIM), dtype=np.float32)
    found = shape_signatures(cut, boxes, background=opts["background"])
    shape[: len(found)] = found
    return np.concatenate([head, colour_signature(img, bins=bins), shape.ravel()])


def _negative_opts(opts: dict[str, Any]) -> dict[str, Any]:
    return {
        "image_size": opts["part_size"],
        "background": opts["background"],
        "trim": opts["trim"],
    }


def _part_input(data: Any, j: int, *, opts: dict[str, Any]) -> np.ndarray:
    """Part ``j``'s network input of one image (path or bytes)."""
    if int(j) == NEGATIVE_SLOT:
        found = negative_input(data, **_negative_opts(opts))
        if found is None:
            raise ValueError("no negative: the image is not light on dark")
        return found
    return part_inputs(data, **opts)[int(j)]


class _PartsOnce:
    """``load((row, j))`` for :func:`feature_batches`: both parts of a row from one decode.

    :func:`part_boxes` gives a lockup two parts, asked for as ``(row, 0)`` and ``(row, 1)``
    next to each other, so two decoding threads often want them at once: the first to take
    the row's lock decodes and cuts both, the second takes its part. A row is held only
    between its two requests.
    """

    def __init__(self, paths: Sequence[Path], opts: dict[str, Any]):
        self._paths, self._opts = paths, opts
        self._lock = threading.Lock()
        self._rows: dict[int, list[Any]] = {}  # row -> [lock, (parts, error) or None, served]

    def __call__(self, item: tuple[int, int]) -> np.ndarray:
        i, j = int(item[0]), int(item[1])
        if j == NEGATIVE_SLOT:  # one request per row: nothing to share
            return _part_input(self._paths[i], j, opts=self._opts)
        with self._lock:
            row = self._rows.setdefault(i, [threading.Lock(), None, 0])
        with row[0]:
            if row[1] is None:
                try:
                    row[1] = (part_inputs(self._paths[i], **self._opts), None)
                except Exception as e:  # the other part fails the same way
                    row[1] = (None, e)
            row[2] += 1
            if row[2] == 2:
                with self._lock:
                    del self._rows[i]
        parts, error = row[1]
        if error is not None:
            raise error
        return parts[j]


def _part_opts(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: settings[k] for k in ("part_size", "part_min_aspect", "background", "trim")}


def _local_looks(rec: _Records, misses: list[int], look, *, workers: int, progress: bool):
    """``(positions, values, errors)`` of ``look`` on ``misses``, one image at a time."""
    from .progress import bar as progress_bar

    stream = prefetch(
        range(len(misses)), lambda j: look(rec.paths[misses[j]], 0), workers=workers, lookahead=64
    )
    for j, value, err in progress_bar(
        stream, total=len(misses), desc="colour", unit="img", disable=not progress
    ):
        yield ([], None, [(j, _describe(err))]) if err is not None else ([j], value[None], [])


def _colour_pass(
    rec: _Records,
    misses: list[int],
    settings: dict[str, Any],
    *,
    workers: int,
    progress: bool,
    engine: str = "local",
    ray: RayOptions | None = None,
) -> tuple[list[tuple[int, int]], dict[int, str]]:
    """Colour signatures of ``misses``; return the part inputs still to embed and failures.

    Images without parts are complete here and go to the cache.
    """
    if not misses:  # everything came from the cache: no empty bar
        return [], {}
    look = partial(
        _look,
        opts=_part_opts(settings),
        bins=int(settings["colour_bins"]),
        parts=bool(settings["parts"]),
        negatives=bool(settings["negatives"]),
    )
    if engine == "ray":
        paths = [str(rec.paths[i]) for i in misses]
        stream = map_batches(
            paths, [0] * len(misses), look, width=2 + rec.c + 3 * SHAPE_DIM, describe=_describe,
            options=ray or RayOptions(), workers=int(workers), progress=progress, desc="colour",
        )  # fmt: skip
    else:
        stream = _local_looks(rec, misses, look, workers=int(workers), progress=progress)
    todo: list[tuple[int, int]] = []
    failed: dict[int, str] = {}
    for positions, values, errors in stream:
        failed.update((misses[j], text) for j, text in errors)
        for j, value in zip(positions, [] if values is None else values, strict=True):
            i, n_parts, negative = misses[j], int(value[0]), bool(value[1] > 0.5)
            rec.colour[i] = value[2 : 2 + rec.c]
            rec.shape[i] = value[2 + rec.c :].reshape(3, SHAPE_DIM).astype(np.uint8)
            slots = list(range(n_parts)) + ([NEGATIVE_SLOT] if negative else [])
            if slots:
                todo += [(i, p) for p in slots]
            else:
                rec.store(i)
    return sorted(todo), failed


def _part_batches(rec: _Records, todo: list[tuple[int, int]], settings, extractor, **c: Any):
    """``(positions, vectors, errors)`` of the part inputs ``todo``, in this process."""
    batches = feature_batches(
        todo,
        _PartsOnce(rec.paths, _part_opts(settings)),
        extractor,
        batch_size=int(c["batch_size"]),
        workers=int(c["workers"]),
        desc="parts",
        progress=c["progress"],
    )
    for positions, feats, errors in batches:
        vecs = None if feats is None else l2_normalize(pool_features(feats, settings["pooling"]))
        yield positions, vecs, [(p, _describe(err)) for p, err in errors]


def _parts_pass(
    rec: _Records,
    todo: list[tuple[int, int]],
    failed: dict[int, str],
    settings: dict[str, Any],
    *,
    precision: str,
    backend: str | None,
    batch_size: int,
    workers: int,
    cache_root: Path,
    progress: bool,
    engine: str = "local",
    ray: RayOptions | None = None,
) -> int:
    """Embed the part inputs ``todo`` (image row, part); return how many were computed."""
    pending: dict[int, int] = {}
    for i, _ in todo:
        pending[i] = pending.get(i, 0) + 1
    size = int(settings["part_size"])
    model = {
        "layer": settings["layer"],
        "precision": precision,
        "backend": backend or default_backend(precision),
        "image_size": size,
        "cache_dir": cache_root,
    }
    if engine == "ray":
        batches = embed_batches(
            [str(rec.paths[i]) for i, _ in todo], [j for _, j in todo],
            partial(_part_input, opts=_part_opts(settings)), model=model,
            pooling=settings["pooling"], normalize=True, shape=(size, size, 3), dim=rec.d,
            describe=_describe, options=ray or RayOptions(), batch_size=int(batch_size),
            workers=int(workers), progress=progress, desc="parts",
        )  # fmt: skip
    else:
        extractor = load_extractor(**model, progress=progress)
        batches = _part_batches(
            rec, todo, settings, extractor, batch_size=batch_size, workers=workers,
            progress=progress,
        )  # fmt: skip
    computed = 0
    for positions, vecs, errors in batches:
        for p, text in errors:
            failed[todo[p][0]] = text
        if vecs is None:
            continue
        for p, v in zip(positions, vecs, strict=True):
            i, j = todo[p]
            rec.parts[i, j] = v
            rec.mask[i, j] = True
            pending[i] -= 1
            if pending[i] == 0 and i not in failed:
                rec.store(i)
        computed += len(positions)
    return computed


def embed_extras(
    run_dir: str | os.PathLike[str] | RunLayout,
    settings: dict[str, Any],
    *,
    batch_size: int = BATCH_SIZE,
    precision: str = "fp32",
    backend: str | None = None,
    workers: int = WORKERS,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    engine: str = "local",
    ray: RayOptions | dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Part vectors and colour signatures for every row of ``RUN/embeddings/``.

    Run after :func:`lookalike.embed.embed_images` with the same ``settings``
    (:func:`lookalike.similarity.embed_kwargs`); :func:`lookalike.embed.embed_run` does both.
    Records ``settings`` in the stamp ``RUN/embeddings/similarity.json``, which stage 04
    reads. With ``parts`` and ``negatives`` off and ``colour_weight`` and ``shape_weight`` 0
    (the ``photos`` preset) nothing else is computed; with both off but a weight, only the
    signatures.

    Parameters
    ----------
    run_dir : str, Path or RunLayout
    settings : dict
        From :func:`lookalike.similarity.resolve_preset`.
    batch_size, precision, backend, workers, progress
        As in :func:`lookalike.embed.embed_images`; parts run at ``precision`` too.
    cache_dir : str or Path, optional
        Root of the vector cache (default :func:`lookalike.model.vector_cache_root`). Each
        image's record (part mask, part vectors, colour) is cached under a
        ``parts-<hash>`` folder, keyed by its sha256 and every setting that decides it.
    engine : {"local", "ray"}, default "local"
        ``"ray"`` computes the colour signatures as Ray tasks and the parts in the model
        actor pool (:mod:`lookalike.distributed`); only images the cache lacks are sent.
    ray : RayOptions or dict, optional
        The ``ray`` engine's options.

    Returns
    -------
    dict with ``n_images``, ``with_parts`` (images with a part: lockups and light-on-dark
    artwork), ``negatives`` (images with a negative), ``parts_computed``
    (part inputs run through the model now), ``cached`` (images served by the cache),
    ``failed``, ``seconds``, ``reused``.

    Notes
    -----
    Writes, aligned with the rows of ``RUN/embeddings/vectors.npy``: ``parts.npy`` float32
    (n, SLOTS, d), ``part_mask.npy`` bool (n, SLOTS), ``colour.npy`` float32 (n, bins**3)
    and ``shape.npy`` uint8 (n, 3, SHAPE_DIM) (slots: the two end squares of a lockup, then
    the negative of light-on-dark artwork; shape rows: the whole, then the end squares), then
    the stamp. A re-run with the same images and settings reuses them, unless some image failed
    (it is retried; the rest comes from the cache); an interrupted run loses only the records
    not yet cached.
    """
    t0 = time.perf_counter()
    run = RunLayout(run_dir)
    embed_params = _embedded_params(run, settings)
    ids = storage.read_table(run.ids, required=["image_id", "path"], what="embedding ids")
    image_ids = ids["image_id"].astype(str).tolist()
    phash = extras_hash(settings, embed_params)
    key: dict[str, Any] = {"settings": settings, "parts_hash": phash, "precision": precision}
    summary: dict[str, Any] = {
        "n_images": len(ids),
        "with_parts": 0,
        "negatives": 0,
        "parts_computed": 0,
        "cached": 0,
        "failed": 0,
        "seconds": 0.0,
        "reused": False,
    }
    outputs = [run.parts, run.part_mask, run.colour, run.shape]
    negatives = bool(settings["negatives"])
    signatures = (
        float(settings["colour_weight"]) > 0 or float(settings.get("shape_weight", 0.0)) > 0
    )
    if not settings["parts"] and not negatives and not signatures:
        storage.clear_stamp(run.similarity_state)
        for path in outputs:
            path.unlink(missing_ok=True)
        storage.write_stamp(run.similarity_state, key)
        print(f"similarity: preset {settings['preset']}: whole-image vectors only")
        return summary
    key["ids_sha256"] = storage.sha256_bytes("\n".join(image_ids).encode())
    done = (storage.read_stamp(run.similarity_state) or {}).get("n_failed") == 0
    if done and storage.is_current(run.similarity_state, key, outputs=outputs):
        mask = np.load(run.part_mask)
        summary.update(reused=True, cached=len(ids), with_parts=int(mask.any(axis=1).sum()))
        summary["negatives"] = _negatives(mask)
        return _finish(summary, t0)

    storage.clear_stamp(run.similarity_state)
    cache_root = vector_cache_root(cache_dir)
    d = output_dim(settings["layer"], int(settings["part_size"]), settings["pooling"])
    paths = [run.image_path(p) for p in ids["path"].astype(str)]
    cache = VectorCache(cache_root / f"parts-{phash}")
    rec = _Records(image_ids, paths, d, int(settings["colour_bins"]) ** 3, cache)
    misses = rec.load_cached()
    summary["cached"] = len(ids) - len(misses)
    engine_opts = {"engine": check_engine(engine), "ray": ray_options(ray)}
    todo, failed = _colour_pass(
        rec, misses, settings, workers=workers, progress=progress, **engine_opts
    )
    if todo:
        summary["parts_computed"] = _parts_pass(
            rec,
            todo,
            failed,
            settings,
            precision=precision,
            backend=backend,
            batch_size=batch_size,
            workers=workers,
            cache_root=cache_root,
            progress=progress,
            **engine_opts,
        )
    rec.drop(failed)
    summary["failed"] = len(failed)
    for i, reason in list(failed.items())[:3]:
        print(f"similarity: no parts or colour for {ids['path'].iloc[i]}: {reason}")
    summary["with_parts"] = int(rec.mask.any(axis=1).sum())
    summary["negatives"] = _negatives(rec.mask)
    for path, array in zip(outputs, (rec.parts, rec.mask, rec.colour, rec.shape), strict=True):
        _save_npy(path, array)
    # the stamp last; a later run retries the failed images (the rest is cached)
    storage.write_stamp(run.similarity_state, key, n_failed=len(failed))
    return _finish(summary, t0)


def _negatives(mask: np.ndarray) -> int:
    """Images whose negative slot is filled."""
    return int(mask[:, NEGATIVE_SLOT].sum())


def _finish(summary: dict[str, Any], t0: float) -> dict[str, Any]:
    summary["seconds"] = time.perf_counter() - t0
    how = " (reused)" if summary["reused"] else ""
    print_summary(
        f"similarity: {summary['n_images']} images, {summary['with_parts']} with parts "
        f"({summary['negatives']} light-on-dark with a negative); "
        f"{summary['parts_computed']} part inputs computed, {summary['cached']} images from "
        f"the cache, {summary['failed']} failed; {summary['seconds']:.1f} s{how}"
    )
    return summary


# -- a few images in memory (tests, benchmarks) ----------------------------------------------


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
    negatives: bool = True,
    colour_bins: int = 8,
    batch_size: int = BATCH_SIZE,
    **_ignored: Any,
) -> dict[str, np.ndarray]:
    """Whole, part and colour features of a few images held in memory.

    The same preprocessing as stage 03 (:func:`lookalike.preprocess.load_for_embedding` for
    the whole, :func:`lookalike.preprocess.part_inputs` for the parts), without the run
    folder and cache: for tests, benchmarks and notebooks that compare a handful of images.

    Parameters
    ----------
    images : sequence of PIL.Image, paths or bytes, length n
    model : keras.Model, optional
        Default ``lookalike.model.load_vgg16(layer=layer)``.
    layer, pooling, image_size, background, fit, trim, parts, part_size, part_min_aspect,
    negatives, colour_bins
        As in :data:`lookalike.similarity.PRESETS`;
        ``embed_parts(images, **resolve_preset("logos"))`` works.
    batch_size : int, default BATCH_SIZE
    **_ignored
        Other preset keys.

    Returns
    -------
    dict with
        ``vectors`` (n, d) float32, L2-normalised vectors of the wholes;
        ``parts`` (n, SLOTS, d) float32, the end-square vectors and the negative (zeros
        where absent);
        ``part_mask`` (n, SLOTS) bool, which parts exist;
        ``colour`` (n, colour_bins**3) float32 colour signatures;
        ``shape`` (n, 3, SHAPE_DIM) uint8 shape signatures (the whole, then the end squares).

    Raises
    ------
    ImageError
        If an image cannot be decoded.
    """
    model = load_vgg16(layer=layer) if model is None else model
    wholes, part_arrays, owners, colours, shapes = [], [], [], [], []
    for i, img in enumerate(images):
        data = png_bytes(img) if isinstance(img, Image.Image) else img
        cut, boxes = lockup_parts(upright_rgba(data), part_min_aspect=part_min_aspect, trim=trim)
        shape = np.zeros((3, SHAPE_DIM), dtype=np.uint8)
        found = shape_signatures(cut, boxes if parts else [], background=background)
        shape[: len(found)] = found
        shapes.append(shape)
        wholes.append(
            load_for_embedding(
                data, image_size=image_size, background=background, fit=fit, trim=trim
            )
        )
        if parts:
            found = part_inputs(
                data,
                part_size=part_size,
                part_min_aspect=part_min_aspect,
                background=background,
                trim=trim,
            )
            for j, arr in enumerate(found):
                part_arrays.append(arr)
                owners.append((i, j))
        if negatives:
            neg = negative_input(data, image_size=part_size, background=background, trim=trim)
            if neg is not None:
                part_arrays.append(neg)
                owners.append((i, NEGATIVE_SLOT))
        colours.append(colour_signature(data, bins=colour_bins))

    def run(arrays: list[np.ndarray]) -> np.ndarray:
        out = []
        for s in range(0, len(arrays), batch_size):
            x = np.stack([prepare(a) for a in arrays[s : s + batch_size]])
            out.append(l2_normalize(pool_features(np.asarray(model.predict_on_batch(x)), pooling)))
        return np.concatenate(out)

    vectors = run(wholes) if wholes else np.zeros((0, 0), np.float32)
    n, d = len(wholes), vectors.shape[1]
    part_vecs = np.zeros((n, SLOTS, d), dtype=np.float32)
    part_mask = np.zeros((n, SLOTS), dtype=bool)
    if part_arrays:
        for (i, j), v in zip(owners, run(part_arrays), strict=True):
            part_vecs[i, j] = v
            part_mask[i, j] = True
    colour = np.stack(colours) if colours else np.zeros((0, colour_bins**3), np.float32)
    shape = np.stack(shapes) if shapes else np.zeros((0, 3, SHAPE_DIM), np.uint8)
    return {
        "vectors": vectors,
        "parts": part_vecs,
        "part_mask": part_mask,
        "colour": colour,
        "shape": shape,
    }
