"""Stage 03's machinery: the per-image vector cache and feature maps streamed in batches.

* :class:`VectorCache`: one ``.npy`` per image id under a folder named by the parameters'
  hash, shared by every run, so an image is embedded once per set of parameters.
* :func:`feature_batches`: runs a :class:`~lookalike.model.FeatureExtractor` over a list of
  images in batches while :func:`prefetch` decodes the next ones on a small thread pool.
* :class:`NpyRows`, :func:`swap_dir`, :func:`remove_stale_temp_dirs`: writing ``RUN/embeddings``
  row by row into a temporary folder that replaces the old one in one rename.

:mod:`lookalike.embed` (whole images) and :mod:`lookalike.extras` (lockup parts and colour)
build on them; :mod:`lookalike.distributed` runs the same batches on Ray.
"""

from __future__ import annotations

import io
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.format import open_memmap

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


# -- the writer of RUN/embeddings ----------------------------------------------------------


def tmp_prefix(emb_dir: Path) -> str:
    return f".{emb_dir.name}-tmp-"


def _old_prefix(emb_dir: Path) -> str:
    return f".{emb_dir.name}.old-"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but is not ours
        return True
    return True


def remove_stale_temp_dirs(emb_dir: Path) -> int:
    """Delete temporary copies of ``emb_dir`` left by a run that crashed (its process is gone)."""
    removed = 0
    tmp, old, legacy = tmp_prefix(emb_dir), _old_prefix(emb_dir), f".{emb_dir.name}-"
    for d in emb_dir.parent.glob(f".{emb_dir.name}*"):
        name = d.name
        if name.startswith(tmp):
            pid = name[len(tmp) :].split("-", 1)[0]
        elif name.startswith(old):
            pid = name[len(old) :].split("-", 1)[0]
        elif name.startswith(legacy):
            pid = ""  # named by an earlier version, without the owner's pid
        else:
            continue
        if not d.is_dir() or (pid.isdigit() and _pid_alive(int(pid))):
            continue  # a live run (this one or another) is writing it
        shutil.rmtree(d, ignore_errors=True)
        removed += 1
    return removed


class NpyRows:
    """A float32 ``(n, d)`` ``.npy`` file filled row by row with plain file writes.

    Not a memory map on purpose: pages written through a map stay mapped into the process and
    count in its resident memory, which would then grow with the number of images; written
    with ``write``, they are only the kernel's page cache. Readers open it with
    ``np.load(..., mmap_mode="r")``.
    """

    def __init__(self, path: Path, n: int, d: int):
        header = open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))  # sparse file
        self._offset, self._row = header.offset, d * 4
        del header
        self._f = open(path, "r+b")  # noqa: SIM115 (closed by close())

    def write(self, i: int, v: np.ndarray) -> None:
        self.write_block(i, np.asarray(v)[None])

    def write_block(self, i: int, block: np.ndarray) -> None:
        """Write rows ``i, i+1, ...`` from ``block`` of shape (m, d)."""
        self._f.seek(self._offset + i * self._row)
        self._f.write(np.ascontiguousarray(block, dtype="<f4").tobytes())

    def chunks(self, keep: np.ndarray, rows: int = 4096) -> Iterator[np.ndarray]:
        """The rows where ``keep`` is True, in order, ``rows`` rows read at a time."""
        self._f.flush()
        d = self._row // 4
        for start in range(0, len(keep), rows):
            stop = min(start + rows, len(keep))
            self._f.seek(self._offset + start * self._row)
            buf = np.frombuffer(self._f.read((stop - start) * self._row), dtype="<f4")
            yield buf.reshape(-1, d)[keep[start:stop]]

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()


def swap_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Replace ``final_dir`` by ``tmp_dir`` (two renames; a crash leaves no mixed folder)."""
    old = None
    if final_dir.exists():
        old = final_dir.with_name(f"{_old_prefix(final_dir)}{os.getpid()}-{time.time_ns()}")
        os.replace(final_dir, old)
    os.replace(tmp_dir, final_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
