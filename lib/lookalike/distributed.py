"""Stage 03 on Ray Data: decoding as CPU tasks, VGG16 in an actor pool (``engine: ray``).

:func:`embed_batches` is the Ray twin of :func:`lookalike.vectors.feature_batches` followed
by pooling: the images to embed (only those the vector cache does not hold; the caller
decides) become a Ray dataset of ``(position, path, key)`` rows, and

1. ``read``: the file's bytes are read by a task pinned to the driver's node (the run folder
   stays on the driver; only bytes travel, through the object store);
2. ``decode``: CPU tasks run the caller's ``decode(bytes, key)`` (the same function the local
   engine uses, e.g. :func:`lookalike.preprocess.load_for_embedding`) and
   :func:`lookalike.model.prepare`;
3. ``model``: an actor pool (:class:`_Embedder`, ``map_batches`` with a callable class) loads
   the network once per actor with :func:`lookalike.model.load_extractor` and pools with
   :func:`lookalike.model.pool_features` (and :func:`lookalike.neighbors.l2_normalize`).

Results stream back to the driver (``iter_batches``) in whatever order they finish, each row
with its position, so the caller writes them in manifest order and fills the cache as they
arrive (an interrupted run keeps everything the driver received). A row whose read or decode
fails carries its error text to the driver instead of an image; a model error fails that
batch's rows, never the actor. :func:`map_batches` runs a CPU-only function the same way (the
logo preset's colour signatures).

The weights travel through the object store: the driver ``ray.put``-s the verified ``.h5``
(and, for int8, the quantized ONNX model) and an actor writes them into its own Keras cache
when that lacks them. Workers need the package installed (``pip install -e '.[ray]'``).
Ray itself is optional: without it, ``engine: ray`` stops with :data:`INSTALL_HINT`.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from .exceptions import ConfigError
from .model import (
    build_int8_model,
    compute_device,
    default_backend,
    load_extractor,
    pool_features,
    prepare,
    quantized_model_path,
    weights_id,
)
from .neighbors import l2_normalize
from .storage import atomic_write_bytes
from .weights import weights_path

#: The engines of stage 03: ``local`` (this process) and ``ray`` (this module).
ENGINES = ("local", "ray")

#: What to run when Ray is missing.
INSTALL_HINT = "pip install -e '.[ray]'"

#: Rows per read task (bytes of this many files per object-store block).
READ_BATCH = 16

#: An error-free row's ``error``.
_OK = ""


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide ``engine: ray`` runs.

    Attributes
    ----------
    address : str, optional
        ``None`` starts a local Ray on this machine (or uses the one this process already
        started), ``"auto"`` joins the running cluster this machine belongs to (``ray start``),
        ``"ray://host:10001"`` reaches a remote one through the Ray client.
    concurrency : int, default 1
        Model actors (each loads VGG16 once).
    num_cpus : float, default 2
        CPUs per actor; also the actor's TensorFlow (or ONNX Runtime) intra-op threads.
    num_gpus : float, default 0
        GPUs per actor (a CUDA build of TensorFlow, the ``gpu`` extra, uses it).
    decode_tasks : int, optional
        Decoding tasks in flight at once; default the stage's ``workers`` (decoding threads
        per model, 2) times ``concurrency``. They ask Ray for no CPU of their own, like the
        local engine's decode threads beside the model, so the actors can hold every CPU of
        a node.
    """

    address: str | None = None
    concurrency: int = 1
    num_cpus: float = 2.0
    num_gpus: float = 0.0
    decode_tasks: int | None = None

    def __post_init__(self) -> None:
        if int(self.concurrency) < 1 or int(self.decode_tasks or 1) < 1:
            raise ConfigError(
                f"ray concurrency={self.concurrency!r} and decode tasks={self.decode_tasks!r} "
                "must be >= 1"
            )
        if float(self.num_cpus) <= 0 or float(self.num_gpus) < 0:
            raise ConfigError(
                f"ray num_cpus={self.num_cpus!r} must be > 0 and num_gpus={self.num_gpus!r} >= 0"
            )

    def decoders(self, workers: int = 2) -> int:
        """Decoding tasks in flight: ``decode_tasks``, else ``workers`` per model actor."""
        return int(self.decode_tasks or max(1, int(workers)) * int(self.concurrency))


def ray_options(options: RayOptions | dict[str, Any] | None = None, **given: Any) -> RayOptions:
    """A :class:`RayOptions` from another, a dict or keywords; ``None`` values are defaults."""
    if isinstance(options, RayOptions):
        base = {f.name: getattr(options, f.name) for f in fields(RayOptions)}
    else:
        base = dict(options or {})
    base.update(given)
    names = {f.name for f in fields(RayOptions)}
    unknown = sorted(set(base) - names)
    if unknown:
        raise ConfigError(f"unknown Ray option(s) {unknown}; use {sorted(names)}")
    return RayOptions(**{k: v for k, v in base.items() if v is not None})


def check_engine(engine: str) -> str:
    """``engine`` if it is one of :data:`ENGINES`, else a ConfigError."""
    if engine not in ENGINES:
        raise ConfigError(f"engine={engine!r} is not supported; use one of {ENGINES}")
    return engine


def import_ray():
    """The ``ray`` module with Ray Data, or one clear ConfigError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401 (the extra, not only the core)
    except ImportError as e:
        raise ConfigError(
            f"engine='ray' needs Ray, which is not installed ({e}): {INSTALL_HINT}"
        ) from None
    return ray


def start_local(ray, *, attempts: int = 3, **init: Any) -> None:
    """Start a Ray on this machine (``ray.init(**init)``, no dashboard), tried ``attempts``
    times: Ray gives its raylet a fixed 30 s to register, which a busy machine can miss."""
    kwargs: dict[str, Any] = {"include_dashboard": False, "configure_logging": False, **init}
    for attempt in range(1, attempts + 1):
        try:
            ray.init(**kwargs)
            return
        except Exception as e:
            ray.shutdown()
            if attempt == attempts:
                raise
            print(f"ray: start failed ({e}); trying again ({attempt + 1} of {attempts})")


def connect(options: RayOptions):
    """Join or start Ray as ``options.address`` says; return the ``ray`` module.

    A Ray this process already started (a notebook's, a test's) is used as it is.
    """
    ray = import_ray()
    if not ray.is_initialized():
        if options.address is None:
            start_local(ray)
        else:
            ray.init(address=options.address, include_dashboard=False, configure_logging=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # ours counts images; Ray's would interleave with it
    ctx.print_on_execution_start = False
    return ray


# -- what workers need -----------------------------------------------------------------------


def _shipped_files(ray, model: dict[str, Any]) -> list[tuple[str, Any]]:
    """``[(kind, ObjectRef of the bytes)]``: the weights, and the int8 model if needed.

    Built (int8) and verified here on the driver; an actor writes them where it lacks them.
    """
    weights_id()  # verifies the weights on the driver (and fetches them if missing)
    files = [("weights", ray.put(weights_path().read_bytes()))]
    if model.get("precision") == "int8":
        path = build_int8_model(
            layer=model["layer"],
            image_size=model["image_size"],
            cache_dir=model.get("cache_dir"),
            progress=True,
        )
        files.append(("int8", ray.put(path.read_bytes())))
    return files


def _install_files(ray, files: list[tuple[str, Any]], model: dict[str, Any]) -> dict[str, Any]:
    """Write the shipped files this worker lacks; return ``model`` for this worker."""
    model = dict(model)
    cache = model.get("cache_dir")
    if cache is not None and not Path(cache).is_dir():
        model["cache_dir"] = None  # the driver's folder is not on this machine: use its own
    for kind, ref in files:
        if kind == "weights":
            target = weights_path()
        else:
            target = quantized_model_path(
                layer=model["layer"], image_size=model["image_size"], cache_dir=model["cache_dir"]
            )
        if not target.is_file():
            atomic_write_bytes(target, ray.get(ref))
    return model


def _set_threads(backend: str, threads: int) -> None:
    """TensorFlow's intra-op threads = the actor's CPUs (before TensorFlow starts)."""
    if backend != "keras":
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # already initialised in this worker: keep its setting
        pass


class _Embedder:
    """The model stage: one network per actor, batches of prepared images in, vectors out."""

    def __init__(
        self,
        *,
        model: dict[str, Any],
        files: list[list[tuple[str, Any]]],
        pooling: str,
        normalize: bool,
        dim: int,
        threads: int,
        describe: Callable[[BaseException], str],
    ):
        import ray

        model = _install_files(ray, files[0], model)
        model.setdefault("backend", default_backend(model.get("precision", "fp32")))
        _set_threads(model["backend"], threads)
        self.extractor = load_extractor(**model, threads=threads, progress=False)
        self.pooling, self.normalize, self.dim, self.describe = pooling, normalize, dim, describe
        print(f"embed actor on {platform.node()}: {compute_device(self.extractor.backend)}")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        errors = np.asarray(batch["error"], dtype=object).copy()
        good = errors == _OK
        out = np.zeros((len(errors), self.dim), dtype=np.float32)
        if good.any():
            try:
                feats = self.extractor(np.asarray(batch["image"])[good])
                vecs = pool_features(feats, self.pooling)
                out[good] = l2_normalize(vecs) if self.normalize else vecs
            except Exception as e:  # a bad batch is recorded, the actor lives on
                errors[good] = self.describe(e)
        return {"pos": batch["pos"], "error": errors, "value": out}


# -- the stages ------------------------------------------------------------------------------


def _read_rows(batch: dict[str, np.ndarray], describe: Callable) -> dict[str, np.ndarray]:
    """Stage 1, on the driver's node: the bytes of each file (or why they could not be read)."""
    data, errors = [], []
    for path in batch["path"]:
        try:
            data.append(Path(path).read_bytes())
            errors.append(_OK)
        except Exception as e:
            data.append(b"")
            errors.append(describe(e))
    return {
        "pos": batch["pos"],
        "key": batch["key"],
        "data": np.array(data, dtype=object),
        "error": np.array(errors, dtype=object),
    }


def _apply(
    batch: dict[str, np.ndarray],
    fn: Callable[[bytes, Any], np.ndarray],
    describe: Callable,
    shape: tuple[int, ...],
    model_input: bool,
) -> dict[str, np.ndarray]:
    """Stage 2, anywhere: ``fn(bytes, key)`` per row (then :func:`prepare` for the model)."""
    n = len(batch["pos"])
    out = np.zeros((n, *shape), dtype=np.float32)
    errors = np.asarray(batch["error"], dtype=object).copy()
    for i in range(n):
        if errors[i] != _OK:
            continue
        try:
            value = fn(batch["data"][i], batch["key"][i])
            out[i] = prepare(value) if model_input else value
        except Exception as e:
            errors[i] = describe(e)
    name = "image" if model_input else "value"
    return {"pos": batch["pos"], name: out, "error": errors}


def _dataset(ray, paths: Sequence[str], keys: Sequence[Any], describe: Callable):
    """Rows ``(pos, key, data, error)``: the bytes read on the driver's node, streamed.

    One block per :data:`READ_BATCH` rows, so that reading, decoding and the model overlap
    (a single block would be decoded by one task before the model saw anything).
    """
    items = [
        {"pos": i, "path": str(p), "key": k}
        for i, (p, k) in enumerate(zip(paths, keys, strict=True))
    ]
    ds = ray.data.from_items(items, override_num_blocks=max(1, -(-len(items) // READ_BATCH)))
    driver = ray.get_runtime_context().get_node_id()
    return ds.map_batches(
        _read_rows,
        fn_kwargs={"describe": describe},
        batch_size=READ_BATCH,
        num_cpus=0,
        compute=ray.data.TaskPoolStrategy(size=2),
        label_selector={"ray.io/node-id": driver},  # where the run folder is
    )


def _stream(
    ds, total: int, *, progress: bool, desc: str
) -> Iterator[tuple[list[int], np.ndarray | None, list[tuple[int, str]]]]:
    """The driver's side: batches as they finish, split into values and errors, on a bar."""
    from .progress import bar as progress_bar

    with progress_bar(total=total, unit="img", desc=desc, disable=not progress) as bar:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            pos = np.asarray(batch["pos"], dtype=np.int64)
            errors = np.asarray(batch["error"], dtype=object)
            good = errors == _OK
            values = np.asarray(batch["value"])[good] if good.any() else None
            failed = [(int(p), str(e)) for p, e in zip(pos[~good], errors[~good], strict=True)]
            yield pos[good].tolist(), values, failed
            bar.update(len(pos))


def embed_batches(
    paths: Sequence[str | os.PathLike[str]],
    keys: Sequence[Any],
    decode: Callable[[bytes, Any], np.ndarray],
    *,
    model: dict[str, Any],
    pooling: str,
    normalize: bool,
    shape: tuple[int, int, int],
    dim: int,
    describe: Callable[[BaseException], str],
    options: RayOptions,
    batch_size: int = 32,
    workers: int = 2,
    progress: bool = True,
    desc: str = "embed",
) -> Iterator[tuple[list[int], np.ndarray | None, list[tuple[int, str]]]]:
    """Embed the files ``paths`` on Ray; yield results as they come back to the driver.

    Parameters
    ----------
    paths : sequence of path, length n
        Files readable on the driver's machine.
    keys : sequence, length n
        Passed to ``decode`` with the bytes (an image id to check, a part number).
    decode : callable
        ``decode(data, key)`` gives one image of shape ``shape`` (RGB 0..255) or raises. It must
        be a module-level function (or a ``functools.partial`` of one): Ray pickles it by name.
    model : dict
        Keywords of :func:`lookalike.model.load_extractor` (``layer``, ``precision``,
        ``image_size``, ``cache_dir``).
    pooling, normalize
        As in :func:`lookalike.embed.embed_images`.
    shape : tuple (h, w, 3)
        The decoded image's shape.
    dim : int
        The vector's length (:func:`lookalike.model.output_dim`).
    describe : callable
        ``describe(exception)`` is the text recorded for a failed row.
    options : RayOptions
    batch_size : int, default 32
        Images per forward pass on an actor.
    workers : int, default 2
        Decoding tasks per model actor (unless ``options.decode_tasks`` says otherwise).
    progress : bool, default True
    desc : str
        The bar's label.

    Yields
    ------
    positions : list of int
        Rows of ``paths`` whose vectors are in ``vectors``.
    vectors : ndarray of shape (len(positions), dim), float32, or None
    errors : list of (position, text)
    """
    ray = connect(options)
    files = _shipped_files(ray, model)
    print(
        f"embed: engine ray ({options.address or 'local Ray'}): {options.concurrency} model "
        f"actor(s) x {options.num_cpus:g} CPU, {options.num_gpus:g} GPU; "
        f"{len(paths)} images to send"
    )
    ds = _dataset(ray, paths, keys, describe)
    ds = ds.map_batches(
        _apply,
        fn_kwargs={"fn": decode, "describe": describe, "shape": shape, "model_input": True},
        batch_size=batch_size,
        num_cpus=0,
        compute=ray.data.TaskPoolStrategy(size=options.decoders(workers)),
    )
    ds = ds.map_batches(
        _Embedder,
        fn_constructor_kwargs={
            "model": model,
            "files": [files],  # nested: Ray resolves only top-level refs; actors fetch if needed
            "pooling": pooling,
            "normalize": normalize,
            "dim": int(dim),
            "threads": max(1, int(options.num_cpus)),
            "describe": describe,
        },
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=int(options.concurrency)),
        num_cpus=float(options.num_cpus),
        num_gpus=float(options.num_gpus) or None,
    )
    yield from _stream(ds, len(paths), progress=progress, desc=desc)


def map_batches(
    paths: Sequence[str | os.PathLike[str]],
    keys: Sequence[Any],
    fn: Callable[[bytes, Any], np.ndarray],
    *,
    width: int,
    describe: Callable[[BaseException], str],
    options: RayOptions,
    workers: int = 2,
    progress: bool = True,
    desc: str = "map",
) -> Iterator[tuple[list[int], np.ndarray | None, list[tuple[int, str]]]]:
    """Run a CPU-only ``fn(bytes, key)`` giving a float32 vector of ``width`` on Ray tasks.

    The read and decode stages of :func:`embed_batches` without the model; yields the same
    ``(positions, values, errors)``; ``workers`` tasks per model actor run at once.
    """
    ray = connect(options)
    ds = _dataset(ray, paths, keys, describe)
    ds = ds.map_batches(
        _apply,
        fn_kwargs={"fn": fn, "describe": describe, "shape": (int(width),), "model_input": False},
        batch_size=READ_BATCH,
        num_cpus=0,
        compute=ray.data.TaskPoolStrategy(size=options.decoders(workers)),
    )
    yield from _stream(ds, len(paths), progress=progress, desc=desc)
