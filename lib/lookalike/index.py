"""Inner-product search with faiss: the index behind neighbours and near-duplicates.

Up to :data:`EXACT_MAX` vectors every search is exact, by brute force over row blocks (the
arithmetic of a flat index, done with numpy so that results stay bit for bit what they were
before the index existed). Above it, :func:`build_index` builds a faiss inverted-file index
(``IndexIVFFlat``, inner product) trained with a fixed seed, so the same vectors always give
the same index and the same answers; :func:`search` and :func:`range_pairs` query it.

The constants were measured with ``benchmarks/scale.py`` (real demo embeddings, resampled and
perturbed; see docs/benchmarks.md, "Neighbours at scale") on 2 cores with AVX2.
"""

from __future__ import annotations

import os

import numpy as np

#: Largest number of vectors searched exactly. Measured (docs/benchmarks.md): for cosine on
#: 512-d vectors the exact search and the index cross near 20,000 (7.6 s against 6.6 s; at
#: 5,000 exact is 2.4x faster); the fused logo search gains from the index earlier (5,000:
#: 3.7 s exact, 3.3 s index), but below 20,000 the exact rows are kept bit for bit.
EXACT_MAX = 20_000
#: Inverted lists per square root of n (``nlist = IVF_LISTS_PER_SQRT * sqrt(n)``).
IVF_LISTS_PER_SQRT = 4
#: Lists probed per query, as a share of ``nlist`` (at least :data:`IVF_MIN_PROBE`).
IVF_PROBE_SHARE = 1 / 64
#: Fewest lists probed per query.
IVF_MIN_PROBE = 16
#: Most lists probed per query: past about 65,000 rows a fixed share would make the search
#: quadratic. At 1,000,000 demo-logo vectors (nlist 4,000) 32 lists gave recall@11 1.0000 in
#: 0.32 ms a query, 16 gave 0.9995, and the 1/64 share (62) 1.0000 in 0.67 ms; at 200,000
#: the fused kNN took 74 s with 32 and 50 s with 16, recall@15 1.0000 both
#: (benchmarks/index_choice.py).
IVF_MAX_PROBE = 16
#: Training vectors per list (faiss wants at least 39); a seeded sample of the rows.
IVF_TRAIN_PER_LIST = 39
#: Seed of the training sample and of faiss's k-means.
SEED = 1234


def _faiss():
    """faiss, with its OpenMP threads set to this process's CPUs."""
    import faiss

    faiss.omp_set_num_threads(len(os.sched_getaffinity(0)) or 1)
    return faiss


def build_index(x: np.ndarray, *, random_state: int = SEED):
    """An IVF inner-product faiss index over the rows of ``x``, trained with a fixed seed.

    Parameters
    ----------
    x : ndarray (n, d) float32
        Usually unit vectors; any vectors work (inner product, not cosine).

    Returns
    -------
    faiss.IndexIVFFlat with ``nprobe`` set (see :data:`IVF_PROBE_SHARE` and
    :data:`IVF_MAX_PROBE`); row i has id i.
    """
    faiss = _faiss()
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    nlist = max(1, min(int(IVF_LISTS_PER_SQRT * np.sqrt(n)), n // 39))
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = int(random_state)
    n_train = min(n, nlist * IVF_TRAIN_PER_LIST)
    rng = np.random.default_rng(random_state)
    sample = np.sort(rng.choice(n, size=n_train, replace=False)) if n_train < n else slice(None)
    index.train(x[sample])
    index.add(x)
    probe = min(IVF_MAX_PROBE, max(IVF_MIN_PROBE, int(round(nlist * IVF_PROBE_SHARE))))
    index.nprobe = min(nlist, probe)
    return index


def search_order(
    index, x: np.ndarray, rows: np.ndarray | None = None, *, block: int = 1 << 16
) -> np.ndarray:
    """An order of the queries ``x[rows]`` (default all of ``x``) that makes searching
    ``index`` faster: positions into ``rows``, int64 (m,).

    By each query's nearest inverted list (stable), so consecutive queries probe mostly the
    same lists and find them in the CPU cache: the scan is bound by memory bandwidth, and this
    ordering made a search of 1,000,000 vectors 1.6x faster with identical results (each
    query's answer does not depend on the others). The identity for an index without lists.
    """
    faiss = _faiss()
    try:
        quantizer = faiss.extract_index_ivf(index).quantizer
    except RuntimeError:  # not an inverted-file index
        return np.arange(len(x) if rows is None else len(rows), dtype=np.int64)
    m = len(x) if rows is None else len(rows)
    lists = np.empty(m, dtype=np.int64)
    for s in range(0, m, block):  # a block at a time: x may be a memory map
        q = x[s : s + block] if rows is None else x[rows[s : s + block]]
        lists[s : s + block] = quantizer.search(np.ascontiguousarray(q, np.float32), 1)[1][:, 0]
    return np.argsort(lists, kind="stable")


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``index`` with the largest inner product with each query.

    Returns
    -------
    scores : float32 ndarray (m, k), largest first
    ids : int64 ndarray (m, k), row numbers; -1 where fewer than k rows were found
    """
    _faiss()
    k = int(min(k, index.ntotal))
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)


def range_pairs(
    x: np.ndarray, min_score: float, *, exact_max: int = EXACT_MAX, block: int = 2048
) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of different rows of ``x`` whose inner product is at least ``min_score``.

    Exact (blockwise products) up to ``exact_max`` rows, a range search of
    :func:`build_index` above it. Never holds more than ``block`` x n scores.

    Returns
    -------
    rows, cols : int64 ndarrays, one entry per ordered pair (i, j), i != j
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    rows, cols = [], []
    if n > exact_max:
        index = build_index(x)
        _faiss()
        for s in range(0, n, block):
            lims, _, ids = index.range_search(x[s : s + block], float(min_score))
            counts = np.diff(lims.astype(np.int64))
            rows.append(s + np.repeat(np.arange(len(counts)), counts))
            cols.append(ids)
    else:
        for s in range(0, n, block):
            r, c = np.nonzero(x[s : s + block] @ x.T >= min_score)
            rows.append(s + r)
            cols.append(c)
    r, c = np.concatenate(rows).astype(np.int64), np.concatenate(cols).astype(np.int64)
    keep = r != c
    return r[keep], c[keep]
