"""Stage 03's machinery: the per-image vector cache and feature maps streamed in batches.

* :class:`VectorCache`: one ``.npy`` per image id under a folder named by the parameters'
  hash, shared by every run, so an image is embedded once per set of parameters.
* :func:`feature_batches`: runs a :class:`~lookalike.model.FeatureExtractor` over a list of
  images in batches while :func:`prefetch` decodes the next ones on a small thread pool.

:mod:`lookalike.embed` (whole images) and :mod:`lookalike.extras` (lockup parts and colour)
build on both.
"""

from __future__ import annotations

import io
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from . import storage
from .model import prepare

#: Images per forward pass, unless a stage is told otherwise.
BATCH_SIZE = 32
#: Decoding threads that run ahead of the model (0 decodes in the calling thread).
WORKERS = 2


class VectorCache:
    """One ``.npy`` file per image id under ``root/<id[:2]>/<id>.npy``.

    Writes go to a temporary file in the same folder and are renamed into place, so two runs
    sharing the cache never see a half-written vector; a damaged file reads as a miss.
    """

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def _path(self, image_id: str) -> Path:
        return self.root / image_id[:2] / f"{image_id}.npy"

    def has(self, image_id: str) -> bool:
        """True when a vector file exists for ``image_id`` (it may still be unreadable)."""
        return self._path(image_id).is_file()

    def get(self, image_id: str, dim: int | None = None) -> np.ndarray | None:
        """The cached vector (float32, 1-D), or None if missing or unreadable."""
        p = self._path(image_id)
        try:
            v = np.load(p, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        if v.ndim != 1 or v.dtype != np.float32 or (dim is not None and v.shape[0] != dim):
            return None
        if not np.isfinite(v).all():
            return None
        return v

    def put(self, image_id: str, vector: np.ndarray) -> None:
        """Store ``vector`` for ``image_id`` atomically."""
        buf = io.BytesIO()
        np.save(buf, np.asarray(vector, dtype=np.float32).ravel(), allow_pickle=False)
        # no fsync: a vector lost in a crash is only recomputed
        storage.atomic_write_bytes(self._path(image_id), buf.getvalue(), fsync=False)


def _lower_priority() -> None:
    """Nice the calling decode thread so it never preempts the model's own threads.

    On a small CPU a decode thread that steals a core from a running convolution stalls all
    of that op's threads; niced, decoding fills the gaps between batches instead. Linux only
    (there ``setpriority`` on a thread id affects just that thread); elsewhere a no-op.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):
        pass


def prefetch(
    items: Iterable[Any], fn: Callable[[Any], Any], *, workers: int, lookahead: int
) -> Iterator[tuple[Any, Any, BaseException | None]]:
    """Yield ``(item, fn(item), None)`` or ``(item, None, error)`` in input order.

    Up to ``lookahead`` items are decoded ahead on ``workers`` threads while the caller
    (the model) works, so inference never waits on a Python decode loop.
    """
    it = iter(items)
    if workers <= 0:
        for item in it:
            try:
                yield item, fn(item), None
            except Exception as e:
                yield item, None, e
        return
    with ThreadPoolExecutor(
        max_workers=workers, thread_name_prefix="embed-decode", initializer=_lower_priority
    ) as ex:
        pending = deque((item, ex.submit(fn, item)) for item in islice(it, max(1, lookahead)))
        try:
            while pending:
                item, fut = pending.popleft()
                for nxt in islice(it, 1):
                    pending.append((nxt, ex.submit(fn, nxt)))
                try:
                    yield item, fut.result(), None
                except Exception as e:
                    yield item, None, e
        finally:
            for _, fut in pending:
                fut.cancel()


def feature_batches(
    items: Sequence[Any],
    load: Callable[[Any], np.ndarray],
    extractor: Callable[[np.ndarray], np.ndarray],
    *,
    batch_size: int = BATCH_SIZE,
    workers: int = WORKERS,
    progress: bool = True,
    desc: str = "embed",
) -> Iterator[tuple[list[int], np.ndarray | None, list[tuple[int, BaseException]]]]:
    """Run ``extractor`` over ``items`` in batches, decoding ahead on worker threads.

    Parameters
    ----------
    items : sequence
        Anything ``load`` takes (paths, bytes, row numbers).
    load : callable
        ``load(item)`` returns one image of shape (h, w, 3), RGB 0..255 (e.g.
        :func:`lookalike.preprocess.load_for_embedding`), or raises for a bad item; every
        image has the same shape. It runs on the worker threads, as does
        :func:`lookalike.model.prepare`.
    extractor : callable
        A :class:`~lookalike.model.FeatureExtractor` (or any batch function of the prepared images).
    batch_size : int, default 32
    workers : int, default 2
        Decoding threads, niced below the model's (0: decode in the calling thread).
    progress : bool, default True
        A tqdm bar in images per second.

    Yields
    ------
    positions : list of int
        Positions in ``items`` of the rows of ``features``.
    features : ndarray of shape (len(positions), h', w', c), or None when a batch held only
        failures
    errors : list of (position, exception)
        Items whose ``load`` raised since the previous batch; they are counted on the bar.
    """
    from .progress import bar as progress_bar

    def work(i: int) -> np.ndarray:
        return prepare(load(items[i]))

    batch: np.ndarray | None = None
    positions: list[int] = []
    errors: list[tuple[int, BaseException]] = []
    with progress_bar(total=len(items), unit="img", desc=desc, disable=not progress) as bar:
        stream = prefetch(range(len(items)), work, workers=workers, lookahead=2 * batch_size)
        for i, arr, err in stream:
            if err is not None:
                errors.append((i, err))
                bar.update(1)
            else:
                if batch is None or batch.shape[1:] != arr.shape:
                    if positions:  # a different shape: finish the batch so far first
                        yield positions, extractor(batch[: len(positions)]), errors
                        bar.update(len(positions))
                        positions, errors = [], []
                    batch = np.empty((batch_size, *arr.shape), dtype=np.float32)
                batch[len(positions)] = arr
                positions.append(i)
            if len(positions) == batch_size:
                yield positions, extractor(batch), errors
                bar.update(len(positions))
                positions, errors = [], []
        if positions or errors:
            feats = extractor(batch[: len(positions)]) if positions else None
            yield positions, feats, errors
            bar.update(len(positions))
