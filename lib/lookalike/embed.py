"""Stage 03: turn every image of a run into one VGG16 feature vector.

:func:`embed_run` is the stage in one call: the vectors of every image
(:func:`embed_images`) and, for the ``logos`` preset, the lockup parts and colour signatures
beside them (:func:`lookalike.extras.embed_extras`).

:func:`embed_images` runs :func:`lookalike.preprocess.load_for_embedding` and a
:func:`lookalike.model.load_extractor` network on the ``ok`` images of ``RUN/images.parquet``
and streams the vectors into ``RUN/embeddings/vectors.npy`` (written row by row, so memory
does not grow with the number of images). Vectors are cached per image (the image id is the
sha256 of its bytes) under the shared cache (:class:`lookalike.vectors.VectorCache`), keyed by
the weights digest and every parameter that changes a vector (:func:`embedding_params`), so a
re-run, or a run that shares images with an earlier one, computes only what is new. Images
that cannot be embedded are recorded in ``failed.parquet`` and marked ``failed`` in the
manifest; they never stop the run.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import storage
from .cpu import auto_precision
from .distributed import RayOptions, check_engine, embed_batches, import_ray, ray_options
from .exceptions import ConfigError, ImageError, ManifestError
from .extras import embed_extras
from .images import image_error
from .model import (
    BACKENDS,
    POOLINGS,
    PRECISIONS,
    compute_device,
    default_backend,
    load_extractor,
    output_dim,
    pool_features,
    quantization_id,
    vector_cache_root,
    weights_id,
)
from .neighbors import l2_normalize
from .paths import RunLayout
from .preprocess import (
    PREPROCESS_VERSION,
    check_choice,
    check_preprocessing,
    load_for_embedding,
)
from .similarity import choose_preset, embed_kwargs, resolve_preset
from .vectors import (
    BATCH_SIZE,
    WORKERS,
    NpyRows,
    VectorCache,
    feature_batches,
    remove_stale_temp_dirs,
    swap_dir,
    tmp_prefix,
)

#: Prefix of the manifest ``error`` this stage writes, so a later run can retry its own
#: failures (a file that was missing may be back) without touching other stages' rows.
EMBED_ERROR_PREFIX = "embed: "

#: The preset :func:`embed_run` uses when given none: ``logos`` when most images came from
#: stage 02 or look like logos, else ``photos`` (:func:`lookalike.similarity.choose_preset`).
DEFAULT_PRESET = "auto"


# -- cache keys ---------------------------------------------------------------------------


def embedding_params(
    *,
    layer: str = "block5_pool",
    pooling: str = "max",
    image_size: int = 224,
    background: str = "white",
    fit: str = "pad",
    trim: bool = False,
    normalize: bool = True,
    precision: str = "fp32",
    weights: str | None = None,
) -> dict[str, Any]:
    """Everything besides the image bytes that decides a vector: the cache key parameters.

    Parameters
    ----------
    layer, pooling, image_size, background, fit, trim, normalize, precision
        As in :func:`embed_images`.
    weights : str, optional
        The weights id; default :func:`lookalike.model.weights_id` (the digest of the weights
        actually used, so vectors from different weights never mix in the cache).

    Returns
    -------
    dict, JSON-serialisable; ``precision`` ``"int8"`` adds ``quantization`` (the quantization
    recipe and the digest of its calibration images).
    """
    params: dict[str, Any] = {
        "weights_id": weights or weights_id(),
        "layer": layer,
        "pooling": pooling,
        "image_size": int(image_size),
        "background": background,
        "fit": fit,
        "trim": bool(trim),
        "normalize": bool(normalize),
        "precision": precision,
        "preprocess_version": PREPROCESS_VERSION,
    }
    if precision == "int8":
        params["quantization"] = quantization_id()
    return params


def params_hash(params: dict[str, Any]) -> str:
    """Short stable hash of ``params`` (names the cache folder)."""
    return storage.fingerprint(params)[:16]


# -- the stage ----------------------------------------------------------------------------


def _error_text(e: BaseException) -> str:
    if isinstance(e, ImageError):
        return str(e) or "ImageError"
    return f"{type(e).__name__}: {e}"


def _manifest_fingerprint(rows: pd.DataFrame) -> str:
    h = hashlib.sha256()
    for image_id, path in zip(rows["image_id"], rows["path"], strict=True):
        h.update(f"{image_id}\t{path}\n".encode())
    return h.hexdigest()


def _candidate_rows(run: RunLayout) -> pd.DataFrame:
    """Manifest rows to embed: ``ok`` ones, and ones this stage failed before (retried).

    One row per image id, in manifest order.
    """
    df = storage.read_manifest(run)
    ours = df["error"].fillna("").str.startswith(EMBED_ERROR_PREFIX)
    keep = (df["status"] == "ok") | ((df["status"] == "failed") & ours)
    keep &= df["image_id"].notna() & (df["image_id"].fillna("") != "")
    return df[keep].drop_duplicates("image_id").reset_index(drop=True)


def _mark_manifest(run: RunLayout, failed: dict[str, str]) -> int:
    """Record this run's failures in ``RUN/images.parquet``; return the rows changed.

    Rows of images that failed here get ``status="failed"`` and ``error="embed: <reason>"``;
    rows this stage failed in an earlier run that worked now go back to ``ok``.
    """
    df = storage.read_manifest(run)
    ids = df["image_id"].fillna("")
    ours = (df["status"] == "failed") & df["error"].fillna("").str.startswith(EMBED_ERROR_PREFIX)
    errors = ids.map(failed).astype("string")
    fail = ((df["status"] == "ok") | ours) & errors.notna()
    recovered = ours & errors.isna() & (ids != "")
    status = df["status"].mask(fail, "failed").mask(recovered, "ok")
    error = df["error"].mask(fail, EMBED_ERROR_PREFIX + errors).mask(recovered, pd.NA)
    changed = (status != df["status"]) | (error.fillna("") != df["error"].fillna(""))
    if not changed.any():
        return 0
    df["status"], df["error"] = status, error
    storage.write_table(df, run.manifest)
    return int(changed.sum())


def decode_row(data: bytes, image_id: str, **preprocessing: Any) -> np.ndarray:
    """Check that ``data`` is still the image of ``image_id`` and load it for the network.

    What both engines run on a manifest row's bytes (the ``ray`` one on its workers).
    """
    if storage.sha256_bytes(data) != image_id:
        raise image_error(
            "changed",
            "the file's sha256 differs from its image_id (it changed after it was "
            "added to the manifest); re-run the stage that produced it",
        )
    return load_for_embedding(data, **preprocessing)


def _load_row(run: RunLayout, path: str, image_id: str, **preprocessing: Any) -> np.ndarray:
    """Read a manifest row's file, check it is still the image of ``image_id``, load it."""
    return decode_row(run.image_path(path).read_bytes(), image_id, **preprocessing)


def _existing_is_current(
    run: RunLayout, key: dict[str, Any], preprocessing: dict[str, Any]
) -> bool:
    """True when ``RUN/embeddings`` was made from the same rows and parameters, its files
    have the recorded shapes, and every image that failed then still fails (a fixed file is
    picked up, never a stale failure)."""
    outputs = [run.vectors, run.ids, run.embed_failed]
    if not storage.is_current(run.embed_state, key, outputs=outputs):
        return False
    old = storage.read_stamp(run.embed_state) or {}
    try:
        ids, vectors = storage.read_embeddings(run)
        failed = storage.read_table(run.embed_failed, required=["image_id", "path"])
    except Exception:
        return False
    current = vectors.shape == (old.get("n_vectors"), old.get("dim"))
    del vectors  # release the memory map before the folder may be replaced
    if not current or len(ids) != old.get("n_vectors") or len(failed) != old.get("n_failed"):
        return False
    for image_id, path in zip(failed["image_id"], failed["path"], strict=True):
        try:
            _load_row(run, path, image_id, **preprocessing)
        except Exception:
            continue
        return False  # it works now: rebuild (every other vector comes from the cache)
    return True


def _from_cache(cache: VectorCache, ids: list[str], dim: int, out: NpyRows, ok: np.ndarray):
    """Write the cached vectors straight to ``out`` (nothing is held per image); the misses."""
    misses = []
    for i, image_id in enumerate(ids):
        v = cache.get(image_id, dim)
        if v is None:
            misses.append(i)
        else:
            out.write(i, v)
            ok[i] = True
    return misses


def _local_batches(run: RunLayout, rows: pd.DataFrame, misses: list[int], **c: Any):
    """``(positions, vectors, errors)`` of the rows ``misses`` computed in this process.

    The model is loaded before the first batch is asked for (not timed as inference).
    """
    ids, paths = rows["image_id"].tolist(), rows["path"].tolist()
    extractor = load_extractor(**c["model"], progress=c["progress"])
    print(f"embed: engine local, model on {compute_device(extractor.backend)}")
    return _pooled(run, ids, paths, misses, extractor, **c)


def _pooled(run: RunLayout, ids: list, paths: list, misses: list[int], extractor, **c: Any):
    """The vectors of :func:`_local_batches`, batch by batch, with the error texts."""

    def load(j: int) -> np.ndarray:
        i = misses[j]
        return _load_row(run, paths[i], ids[i], **c["preprocessing"])

    stream = feature_batches(
        range(len(misses)),
        load,
        extractor,
        batch_size=c["batch_size"],
        workers=c["workers"],
        progress=c["progress"],
    )
    for positions, feats, errors in stream:
        vecs = None
        if feats is not None:
            vecs = pool_features(feats, c["pooling"])
            vecs = l2_normalize(vecs) if c["normalize"] else vecs
        yield positions, vecs, [(j, _error_text(err)) for j, err in errors]


def _ray_batches(run: RunLayout, rows: pd.DataFrame, misses: list[int], **c: Any):
    """The same as :func:`_local_batches`, computed on Ray (:mod:`lookalike.distributed`)."""
    pre = c["preprocessing"]
    size = int(pre["image_size"])
    return embed_batches(
        [str(run.image_path(p)) for p in rows["path"].iloc[misses]],
        rows["image_id"].iloc[misses].tolist(),
        partial(decode_row, **pre),
        model=c["model"],
        pooling=c["pooling"],
        normalize=c["normalize"],
        shape=(size, size, 3),
        dim=output_dim(c["model"]["layer"], size, c["pooling"]),
        describe=_error_text,
        options=c["ray"],
        batch_size=c["batch_size"],
        workers=c["workers"],
        progress=c["progress"],
    )


def _compute(
    run: RunLayout,
    rows: pd.DataFrame,
    misses: list[int],
    out: NpyRows,
    ok: np.ndarray,
    cache: VectorCache,
    summary: dict[str, Any],
    **compute: Any,
) -> dict[int, str]:
    """Run the rows ``misses`` through the network into ``out`` and the cache; the failures.

    ``compute`` holds ``engine`` (``"local"`` or ``"ray"``) and the options of both.
    """
    ids = rows["image_id"].tolist()
    failures: dict[int, str] = {}
    engine = compute.pop("engine")
    batches = (_ray_batches if engine == "ray" else _local_batches)(run, rows, misses, **compute)
    t_embed = time.perf_counter()  # the ray engine's actors start inside the stream: counted
    summary["sent"] = len(misses) if engine == "ray" else 0
    for positions, vecs, errors in batches:
        for j, text in errors:
            failures[misses[j]] = text
        if vecs is None:
            continue
        for j, v in zip(positions, vecs, strict=True):
            i = misses[j]
            out.write(i, v)
            ok[i] = True
            cache.put(ids[i], v)  # as it arrives: an interrupted run keeps what it got
        summary["computed"] += len(positions)
    dt = time.perf_counter() - t_embed
    summary["images_per_s"] = summary["computed"] / dt if dt > 0 else 0.0
    return failures


def _keep_rows(out: NpyRows, tmp_vec: Path, ok: np.ndarray, final: Path, dim: int) -> None:
    """Make ``final`` hold the rows of ``out`` where ``ok``, chunk by chunk; drop ``out``."""
    if ok.all():
        out.close()
        os.replace(tmp_vec, final)
        return
    dst = NpyRows(final, int(ok.sum()), dim)
    done = 0
    for chunk in out.chunks(ok):
        dst.write_block(done, chunk)
        done += len(chunk)
    dst.close()
    out.close()
    tmp_vec.unlink()


def _write_tables(
    tmp_dir: Path, rows: pd.DataFrame, ok: np.ndarray, failures: dict[int, str]
) -> None:
    """``ids.parquet`` (row i names vector i) and ``failed.parquet`` inside ``tmp_dir``."""
    kept = rows.loc[ok, ["image_id", "path", "source"]].reset_index(drop=True)
    storage.write_table(kept, tmp_dir / RunLayout.IDS)
    ids, paths = rows["image_id"].tolist(), rows["path"].tolist()
    failed_df = pd.DataFrame(
        [{"image_id": ids[i], "path": paths[i], "error": e} for i, e in sorted(failures.items())],
        columns=["image_id", "path", "error"],
    ).astype("string")
    storage.write_table(failed_df, tmp_dir / RunLayout.EMBED_FAILED)


def _build(
    run: RunLayout,
    rows: pd.DataFrame,
    cache: VectorCache,
    key: dict[str, Any],
    summary: dict[str, Any],
    **compute: Any,
) -> dict[int, str]:
    """Write a new ``RUN/embeddings`` into a temporary folder and swap it in; the failures.

    The stamp is written last inside the temporary folder, so the swapped-in folder is
    always complete.
    """
    n, dim = len(rows), int(summary["dim"])
    emb_dir = run.embeddings_dir
    tmp_dir = Path(tempfile.mkdtemp(dir=run.root, prefix=f"{tmp_prefix(emb_dir)}{os.getpid()}-"))
    out = None
    try:
        ok = np.zeros(n, dtype=bool)
        final = tmp_dir / RunLayout.VECTORS
        tmp_vec = final.with_suffix(".all.npy")  # every candidate row, failures included
        out = NpyRows(tmp_vec, n, dim)
        misses = _from_cache(cache, rows["image_id"].tolist(), dim, out, ok)
        summary["cached"] = int(ok.sum())
        failures: dict[int, str] = {}
        if misses:
            failures = _compute(run, rows, misses, out, ok, cache, summary, **compute)
        _keep_rows(out, tmp_vec, ok, final, dim)
        _write_tables(tmp_dir, rows, ok, failures)
        summary["failed"], summary["embedded"] = len(failures), int(ok.sum())
        storage.write_stamp(
            tmp_dir / RunLayout.EMBED_STATE,
            key,
            n_vectors=int(ok.sum()),
            n_failed=len(failures),
            dim=dim,
        )
        swap_dir(tmp_dir, emb_dir)
    except BaseException:
        if out is not None:
            out.close()
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return failures


def _new_summary(
    n: int,
    dim: int,
    model: dict[str, Any],
    phash: str,
    cache_root: Path,
    vectors: Path,
    engine: str,
) -> dict[str, Any]:
    """The summary :func:`embed_images` returns, before any work (see its docstring)."""
    return {
        "engine": engine,
        "sent": 0,
        "n_images": n,
        "embedded": 0,
        "computed": 0,
        "cached": 0,
        "failed": 0,
        "reused": False,
        "dim": dim,
        "precision": model["precision"],
        "backend": model["backend"],
        "seconds": 0.0,
        "images_per_s": 0.0,
        "manifest_updated": 0,
        "param_hash": phash,
        "cache_dir": str(cache_root),
        "vectors_path": str(vectors),
    }


def _check_options(
    *, batch_size: int, image_size: int, pooling: str, layer: str, **preprocessing: Any
) -> tuple[int, int]:
    """Validate the options of :func:`embed_images`; return ``(image_size, dim)``."""
    check_choice("pooling", pooling, POOLINGS)
    check_choice("precision", preprocessing.pop("precision"), PRECISIONS)
    backend = preprocessing.pop("backend")
    if backend is not None:
        check_choice("backend", backend, BACKENDS)
    size = check_preprocessing(image_size, **preprocessing)
    if isinstance(batch_size, bool) or int(batch_size) < 1:
        raise ConfigError(f"batch_size={batch_size!r} must be >= 1")
    return size, output_dim(layer, size, pooling)  # also rejects a bad layer or too small a size


def embed_images(
    run_dir: str | os.PathLike[str] | RunLayout,
    *,
    batch_size: int = BATCH_SIZE,
    image_size: int = 224,
    pooling: str = "max",
    layer: str = "block5_pool",
    normalize: bool = True,
    background: str = "white",
    fit: str = "pad",
    trim: bool = False,
    precision: str = "fp32",
    backend: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    workers: int = WORKERS,
    force: bool = False,
    progress: bool = True,
    engine: str = "local",
    ray: RayOptions | dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Embed the images of ``RUN/images.parquet`` with VGG16 and write ``RUN/embeddings/``.

    Parameters
    ----------
    run_dir : str, Path or RunLayout
        The run folder.
    batch_size : int, default BATCH_SIZE (32)
        Images per forward pass.
    image_size : int, default 224
        Side of the square network input, in pixels. Smaller is much faster (the work grows
        with its square) and is fine for small logos; at least 32 for ``block5_pool``.
    pooling : {"max", "avg", "gem", "flatten"}, default "max"
        How the ``layer`` feature map (7x7x512 for ``block5_pool`` at 224) becomes a vector:
        512-d for max/avg/gem, h*w*512 (25,088 at 224) for flatten. Max pooling is the default
        because it scored best of the 512-d options on three labelled sets in
        ``benchmarks/quality.py`` (see notebook 03); flatten is 49 times larger.
    layer : str, default "block5_pool"
        VGG16 layer whose output is pooled (``block4_pool``, ``block5_conv3``, ...).
    normalize : bool, default True
        Scale every vector to unit L2 norm.
    background, fit, trim
        See :func:`lookalike.preprocess.load_for_embedding`.
    precision : {"fp32", "bf16", "int8"}, default "fp32"
        See :func:`lookalike.model.load_extractor`. int8 is the fast path (several times
        faster on CPUs with VNNI; ``benchmarks/embed.py`` measures speed and agreement with fp32).
    backend : {"keras", "onnxruntime"}, optional
        Where the network runs; default :func:`lookalike.model.default_backend` of
        ``precision`` (fp32: ONNX Runtime, or Keras where TensorFlow has CUDA). The fp32
        backends give the same vectors (cosine > 0.99999), so the cache does not tell them
        apart.
    cache_dir : str or Path, optional
        Root of the vector cache; vectors go under ``cache_dir/<params hash>/``, int8 models
        under ``cache_dir/models/``. Default :func:`lookalike.model.vector_cache_root`.
    workers : int, default WORKERS (2)
        Decoding threads (0 decodes in the calling thread); with ``engine="ray"``, decoding
        tasks in flight per model actor.
    force : bool, default False
        Rebuild ``RUN/embeddings/`` even when it matches the manifest (the cache still serves).
    progress : bool, default True
        Show a progress bar.
    engine : {"local", "ray"}, default "local"
        ``"ray"`` computes the images the cache lacks on Ray Data
        (:func:`lookalike.distributed.embed_batches`); the outputs and the cache are the same.
    ray : RayOptions or dict, optional
        Address and actor pool of the ``ray`` engine (:class:`lookalike.distributed.RayOptions`).

    Returns
    -------
    dict with ``engine``, ``sent`` (images sent to Ray: 0 for ``local`` or when the cache
    held everything), ``n_images`` (images considered: ``ok`` rows plus rows this stage failed
    before, which are retried), ``embedded`` (rows of ``vectors.npy``), ``computed`` (run
    through the model now), ``cached`` (served without computing), ``failed``, so that
    ``embedded == computed + cached`` and ``n_images == embedded + failed``; ``reused`` (True
    when the existing output was current and was kept as is), ``dim``, ``precision``,
    ``backend``, ``seconds`` (wall), ``images_per_s`` (computed images per second of the
    inference phase, model loading excluded; for ``ray`` the actors' start is included),
    ``manifest_updated`` (rows whose status this
    run changed), ``param_hash``, ``cache_dir``, ``vectors_path``.

    Notes
    -----
    Outputs, written into a temporary folder and swapped in at the end:
    ``vectors.npy`` float32 (n_ok, dim), written row by row;
    ``ids.parquet`` (image_id, path, source), row i describing vector i, in manifest order;
    ``failed.parquet`` (image_id, path, error); last the stamp ``state.json``
    (:func:`lookalike.storage.write_stamp` of the parameters and the manifest's fingerprint,
    with the counts and dimension, for resume). Images that fail get ``status="failed"`` and
    ``error="embed: <reason>"`` in ``RUN/images.parquet``. Temporary folders left by a crashed
    run are removed.
    """
    t0 = time.perf_counter()
    size, dim = _check_options(
        batch_size=batch_size,
        image_size=image_size,
        pooling=pooling,
        layer=layer,
        precision=precision,
        backend=backend,
        background=background,
        fit=fit,
    )
    options = ray_options(ray)  # checked before any work, used only by engine "ray"
    if check_engine(engine) == "ray":
        import_ray()  # without the extra: one line saying how to install it, before any work
    run = RunLayout(run_dir)
    rows = _candidate_rows(run)
    if rows.empty:
        raise ManifestError(
            f"no images to embed: {run.manifest} has no rows with status 'ok'; "
            "run stage 01, 02 or the folder import first"
        )
    params = embedding_params(
        layer=layer,
        pooling=pooling,
        image_size=size,
        background=background,
        fit=fit,
        trim=trim,
        normalize=normalize,
        precision=precision,
    )
    phash = params_hash(params)
    cache_root = vector_cache_root(cache_dir)
    cache = VectorCache(cache_root / phash)
    key = {"params": params, "manifest": _manifest_fingerprint(rows)}
    model = {
        "layer": layer,
        "precision": precision,
        "backend": backend or default_backend(precision),
        "image_size": size,
        "cache_dir": cache_root,
    }
    summary = _new_summary(len(rows), dim, model, phash, cache.root, run.vectors, engine)
    run.root.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_dirs(run.embeddings_dir)
    preprocessing = {"image_size": size, "background": background, "fit": fit, "trim": trim}
    if not force and _existing_is_current(run, key, preprocessing):
        stamp = storage.read_stamp(run.embed_state) or {}
        n_vectors = int(stamp.get("n_vectors", 0))
        summary.update(reused=True, embedded=n_vectors, cached=n_vectors)
        summary["failed"] = int(stamp.get("n_failed", 0))
        # A kill between the swap and the manifest write left the marks out: put them back.
        failed = storage.read_table(run.embed_failed, required=["image_id", "error"])
        marks = dict(zip(failed["image_id"], failed["error"], strict=True))
        summary["manifest_updated"] = _mark_manifest(run, marks)
    else:
        failures = _build(
            run,
            rows,
            cache,
            key,
            summary,
            preprocessing=preprocessing,
            model=model,
            pooling=pooling,
            normalize=normalize,
            batch_size=int(batch_size),
            workers=int(workers),
            progress=progress,
            engine=engine,
            ray=options,
        )
        ids = rows["image_id"].tolist()
        summary["manifest_updated"] = _mark_manifest(run, {ids[i]: e for i, e in failures.items()})
    summary["seconds"] = time.perf_counter() - t0
    _print_summary(summary)
    return summary


def _print_summary(s: dict[str, Any]) -> None:
    from .progress import summary

    n = s["n_images"]
    rate = 100.0 * s["embedded"] / n if n else 0.0
    how = " (reused existing embeddings)" if s["reused"] else ""
    speed = f"{s['images_per_s']:.1f} images/s" if s["computed"] else "all from the cache"
    summary(
        f"embed: {s['embedded']}/{n} images embedded ({rate:.1f}%): computed {s['computed']}, "
        f"cached {s['cached']}, failed {s['failed']}; dim {s['dim']}, {s['precision']} "
        f"({s['backend']}, engine {s['engine']}); {s['seconds']:.1f} s, {speed}{how}"
    )


# -- the stage in one call ----------------------------------------------------------------


def _given(**options: Any) -> dict[str, Any]:
    """The options that are not None: None means "the library's default"."""
    return {k: v for k, v in options.items() if v is not None}


def embed_run(
    run_dir: str | os.PathLike[str] | RunLayout,
    *,
    preset: str | None = DEFAULT_PRESET,
    batch_size: int | None = None,
    normalize: bool | None = None,
    precision: str | None = None,
    backend: str | None = None,
    workers: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    force: bool | None = None,
    progress: bool = True,
    engine: str | None = None,
    ray: RayOptions | dict[str, Any] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Stage 03 in one call: the vectors of every image, then the extras of its preset.

    Resolves ``preset`` (:func:`lookalike.similarity.resolve_preset`), embeds with
    :func:`embed_images` and adds the lockup parts and colour signatures with
    :func:`lookalike.extras.embed_extras` (nothing for the ``photos`` preset); both reuse
    what is current and serve the rest from the cache.

    Parameters
    ----------
    run_dir : str, Path or RunLayout
        The run folder.
    preset : {"auto", "logos", "photos"}, default DEFAULT_PRESET
        ``None`` means :data:`DEFAULT_PRESET` (``"auto"``).
    batch_size, normalize, precision, backend, workers, force
        As in :func:`embed_images`; ``None`` means its default. ``precision="auto"`` is
        resolved here by :func:`lookalike.cpu.auto_precision` (int8 on CPUs with VNNI or
        AMX, else fp32) and the choice is printed.
    cache_dir : str or Path, optional
        Root of the vector cache (default :func:`lookalike.model.vector_cache_root`).
    progress : bool, default True
        Show progress bars.
    engine : {"local", "ray"}, optional
        Where the network runs, for the vectors and the extras alike; ``None`` means
        ``"local"``.
    ray : RayOptions or dict, optional
        The ``ray`` engine's options (:class:`lookalike.distributed.RayOptions`); ``None``
        values in a dict mean the defaults.
    **overrides
        Keys of the preset (``layer``, ``pooling``, ``image_size``, ``background``, ``fit``,
        ``trim``, ``parts``, ``colour_weight``, ...; see
        :data:`lookalike.similarity.PRESETS`); ``None`` means the preset's value.

    Returns
    -------
    dict with ``settings`` (the resolved preset), ``vectors`` (the summary of
    :func:`embed_images`) and ``extras`` (that of :func:`lookalike.extras.embed_extras`).
    """
    run = RunLayout(run_dir)
    if precision == "auto":
        precision, why = auto_precision()
        print(f"embed: precision auto -> {precision}: {why}")
    name = DEFAULT_PRESET if preset is None else preset
    if name == "auto":
        name, why = choose_preset(run)
        print(f"embed: preset auto -> {name}: {why}")
    settings = resolve_preset(name, run_dir=run, **overrides)
    common = _given(
        batch_size=batch_size, precision=precision, backend=backend, workers=workers, engine=engine
    )
    common["ray"] = ray_options(ray)
    vectors = embed_images(
        run,
        **embed_kwargs(settings),
        **common,
        **_given(normalize=normalize, force=force),
        cache_dir=cache_dir,
        progress=progress,
    )
    extras = embed_extras(run, settings, **common, cache_dir=cache_dir, progress=progress)
    return {"settings": settings, "vectors": vectors, "extras": extras}
