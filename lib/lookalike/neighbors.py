"""Nearest neighbours: the one L2 normaliser, the one neighbour search, ``neighbors.parquet``.

:func:`nearest_neighbors` answers "which images are most like this one?" for every use in
the package: plain cosine on raw vectors (stage 03's check, 05's "more like this"), or the
fused similarity of :mod:`lookalike.similarity` (wholes, lockup parts and colour), computed
in row blocks so memory never holds an n x n matrix. :func:`write_neighbors` and
:func:`read_neighbors` keep stage 04's table of every image's neighbours, with why each pair
matched (:func:`pair_matches`: whole or icon, and what colour added).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from . import index as _index
from . import storage
from .paths import RunLayout

NEIGHBORS_COLUMNS = ["image_id", "rank", "neighbor_id", "similarity"]
#: Columns :func:`write_neighbors` adds after :data:`NEIGHBORS_COLUMNS`: which pair of a
#: neighbour's fused score matched (:data:`MATCHES`) and what colour added to it
#: (:func:`pair_matches`). Older files lack them: :func:`read_neighbors` gives None and NaN.
MATCH_COLUMNS = ["match", "colour_gain"]
#: ``match`` of a pair ``(i, j)``: whole of i to whole of j, whole of i to a part (an end
#: square of a lockup, where its icon sits) of j, a part of i to the whole of j, or the same
#: two with the negative of light-on-dark artwork (part slot :data:`NEGATIVE_SLOT`).
MATCHES = ("whole-whole", "whole-part", "part-whole", "whole-negative", "negative-whole")
#: The part slot of an image's luminance negative (slots 0 and 1 are a lockup's end squares).
NEGATIVE_SLOT = 2
#: The pair's match in words, "this" being image i and "that" its neighbour j.
MATCH_WORDS = {
    "whole-whole": "whole ↔ whole",
    "whole-part": "whole of this ↔ icon of that",
    "part-whole": "icon of this ↔ whole of that",
    "whole-negative": "whole of this ↔ negative of that (dark-mode artwork)",
    "negative-whole": "negative of this (dark-mode artwork) ↔ whole of that",
}

#: Rows of the (possibly memory-mapped) vectors normalised at a time by a cosine search.
COSINE_CHUNK = 4096
#: Up to this many queries are answered exactly even above the index size (building an index
#: costs more than a few thousand exact rows).
EXACT_QUERIES = 2000
#: Candidates each kind of pair gives per query, as a multiple of k, when colour is blended
#: in (colour can lift a pair from below a kind's top k).
COLOUR_CANDIDATES = 4
#: Query rows per batch of index searches (each holds up to about 200 candidates).
QUERY_ROWS = 1 << 14


def l2_normalize(v: np.ndarray) -> np.ndarray:
    """``v`` scaled to unit L2 norm along its last axis (all-zero rows stay zero).

    Parameters
    ----------
    v : ndarray of shape (..., d)

    Returns
    -------
    ndarray of the same shape, float32
    """
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    return (v / np.maximum(norms, 1e-12)).astype(np.float32)


def check_features(
    vectors: np.ndarray,
    parts: np.ndarray | None = None,
    part_mask: np.ndarray | None = None,
    colour: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """The fused-similarity inputs as float32/bool arrays, their shapes checked.

    Returns
    -------
    vectors (n, d), parts (n, m, d) or None, part_mask (n, m) or None (all True when parts
    are given without a mask), colour (n, c) or None.

    Raises
    ------
    ValueError
        If a shape does not fit ``vectors``.
    """
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


def block_rows(n: int, m: int, budget: int = 20_000_000) -> int:
    """Rows per block of a fused similarity over ``n`` images with ``m`` parts each.

    A block of r rows holds about ``r * n * (1 + 2 m)`` float32 values; ``budget`` caps that
    (20 million: 80 MB).
    """
    return max(1, min(n, budget // max(1, n * (1 + 2 * m))))


def similarity_rows(
    rows: slice | np.ndarray,
    vectors: np.ndarray,
    parts: np.ndarray | None,
    part_mask: np.ndarray | None,
    colour: np.ndarray | None,
    colour_weight: float,
) -> np.ndarray:
    """Fused similarity of the images ``rows`` to every image: (len(rows), n), float32.

    The inputs are those of :func:`check_features`, already checked; see
    :func:`lookalike.similarity.similarity_matrix` for the formula.
    """
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


def _cosine_rows(vectors: np.ndarray, q: np.ndarray, chunk: int) -> np.ndarray:
    """Cosine of rows ``q`` to every row, reading ``chunk`` rows of ``vectors`` at a time."""
    unit = l2_normalize(np.asarray(vectors[q], dtype=np.float32))
    n = len(vectors)
    return np.concatenate(
        [unit @ l2_normalize(np.asarray(vectors[s : s + chunk])).T for s in range(0, n, chunk)],
        axis=1,
    )


def nearest_neighbors(
    vectors: np.ndarray,
    queries: Sequence[int] | np.ndarray | None = None,
    *,
    k: int = 10,
    parts: np.ndarray | None = None,
    part_mask: np.ndarray | None = None,
    colour: np.ndarray | None = None,
    colour_weight: float = 0.0,
    normalize: bool = True,
    chunk: int = COSINE_CHUNK,
    exact_max: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most similar other rows of each query row, most similar first.

    Two similarities: plain **cosine** (``normalize=True``, the default: the rows of
    ``vectors`` are scaled to unit length, ``chunk`` rows at a time, so a memory map of
    :func:`lookalike.storage.read_embeddings` need not fit in memory), or the **fused**
    similarity of :func:`lookalike.similarity.similarity_matrix` (``normalize=False``, on
    unit vectors such as :func:`lookalike.similarity.fused_inputs` gives, with ``parts``
    and ``colour``). A row is never its own neighbour; ties are broken by row order, so
    results are reproducible.

    Up to ``exact_max`` rows, or for at most ``min(EXACT_QUERIES, exact_max)`` queries, the
    search is exact: scores are computed a block of query rows at a time (:func:`block_rows`),
    never as an n x n matrix. Above it, candidates come from faiss indexes of the wholes and of the
    parts (:mod:`lookalike.index`), the top k of each kind of pair, merged by their best
    score (:func:`_index_neighbors`).

    Parameters
    ----------
    vectors : ndarray (n, d)
    queries : sequence of int, optional
        Row numbers; default every row.
    k : int, default 10
        Clipped to n - 1 (no neighbours at all for a single row).
    parts, part_mask, colour, colour_weight
        As in :func:`lookalike.similarity.similarity_matrix`; only with ``normalize=False``.
    normalize : bool, default True
        Cosine of raw vectors; False when ``vectors`` already have unit length.
    chunk : int, default COSINE_CHUNK
        Rows normalised at a time by the cosine search.
    exact_max : int, optional
        Most rows searched exactly; default :data:`lookalike.index.EXACT_MAX`.

    Returns
    -------
    index : int64 ndarray (m, k), row numbers, nearest first
    similarity : float32 ndarray (m, k), their similarity to the query (cosine: -1..1)
    """
    fused = not normalize
    if fused:
        vectors, parts, part_mask, colour = check_features(vectors, parts, part_mask, colour)
    n = len(vectors)
    q = np.arange(n) if queries is None else np.asarray(queries, dtype=np.int64)
    k = int(max(0, min(int(k), n - 1)))
    if k == 0:
        return np.empty((len(q), 0), np.int64), np.empty((len(q), 0), np.float32)
    exact_max = _index.EXACT_MAX if exact_max is None else int(exact_max)
    if n > exact_max and len(q) > min(EXACT_QUERIES, exact_max):
        if not fused:
            vectors = np.concatenate(
                [l2_normalize(np.asarray(vectors[s : s + chunk])) for s in range(0, n, chunk)]
            )
            parts = part_mask = colour = None
        feats = (vectors, parts, part_mask, colour, float(colour_weight))
        return _index_neighbors(feats, q, k)
    return _exact_neighbors(
        vectors, q, k, queries is None, fused, parts, part_mask, colour, colour_weight, chunk
    )


def _exact_neighbors(
    vectors: np.ndarray,
    q: np.ndarray,
    k: int,
    every_row: bool,
    fused: bool,
    parts: np.ndarray | None,
    part_mask: np.ndarray | None,
    colour: np.ndarray | None,
    colour_weight: float,
    chunk: int,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`nearest_neighbors` by brute force over row blocks (arguments already checked)."""
    n = len(vectors)
    index = np.empty((len(q), k), dtype=np.int64)
    similarity = np.empty((len(q), k), dtype=np.float32)
    m = 0 if parts is None else parts.shape[1]
    step = block_rows(n, m)
    for s in range(0, len(q), step):
        if every_row:  # a slice: the same blocks as a full similarity matrix
            rows: slice | np.ndarray = slice(s, min(n, s + step))
            r = np.arange(rows.start, rows.stop)
        else:
            rows = r = q[s : s + step]
        if fused:
            block = similarity_rows(rows, vectors, parts, part_mask, colour, colour_weight)
        else:
            block = _cosine_rows(vectors, r, int(chunk))
        block[np.arange(len(r)), r] = -np.inf  # not its own neighbour
        order = top_k(block, k)
        index[s : s + len(r)] = order
        similarity[s : s + len(r)] = np.take_along_axis(block, order, axis=1)
    return index, similarity


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Columns of the ``k`` largest scores of each row, largest first, ties by column.

    The same as ``np.argsort(-scores, axis=1, kind="stable")[:, :k]`` (today's order), but
    selects before it sorts: O(n) per row instead of O(n log n).

    Parameters
    ----------
    scores : float ndarray (r, n), no NaN
    k : int, 1 <= k <= n

    Returns
    -------
    int64 ndarray (r, k)
    """
    if 4 * k >= scores.shape[1]:
        return np.argsort(-scores, axis=1, kind="stable")[:, :k]
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(scores, part, axis=1)
    # lexsort: last key first, so by score descending, then by column
    order = np.take_along_axis(part, np.lexsort((part, -vals), axis=1), axis=1)
    # a tie across the k-th place: argpartition picked any of the tied columns, not the first
    tied = (scores >= vals.min(axis=1, keepdims=True)).sum(axis=1) > k
    if tied.any():
        order[tied] = np.argsort(-scores[tied], axis=1, kind="stable")[:, :k]
    return order.astype(np.int64)


def pair_similarity(
    i: np.ndarray,
    j: np.ndarray,
    vectors: np.ndarray,
    parts: np.ndarray | None,
    part_mask: np.ndarray | None,
    colour: np.ndarray | None,
    colour_weight: float,
) -> np.ndarray:
    """Fused similarity of the pairs of rows ``(i[p], j[p])``: float32 (p,).

    The formula of :func:`similarity_rows`, one pair at a time instead of one row against
    all; inputs as :func:`check_features` returns them.
    """
    s = np.einsum("pd,pd->p", vectors[i], vectors[j])
    if parts is not None and part_mask is not None and part_mask.any():
        wp = np.einsum("pd,pmd->pm", vectors[i], parts[j])
        pw = np.einsum("pmd,pd->pm", parts[i], vectors[j])
        wp = np.where(part_mask[j], wp, -np.inf).max(axis=1)
        pw = np.where(part_mask[i], pw, -np.inf).max(axis=1)
        s = np.maximum(s, np.maximum(wp, pw))
    if colour is not None and colour_weight > 0:
        s = (1.0 - colour_weight) * s + colour_weight * np.einsum("pc,pc->p", colour[i], colour[j])
    return s.astype(np.float32)


def pair_matches(
    i: np.ndarray,
    j: np.ndarray,
    vectors: np.ndarray,
    parts: np.ndarray | None = None,
    part_mask: np.ndarray | None = None,
    colour: np.ndarray | None = None,
    colour_weight: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Why the pairs of rows ``(i[p], j[p])`` are as similar as they are.

    The fused score of a pair is the best of three inner products (whole . whole,
    whole of i . a part of j, a part of i . whole of j), blended with colour
    (:func:`pair_similarity`): this says which of the three it was, which part, and how
    much colour added. O(p (1 + 2 m) d) plus the colour overlaps (sparse rows), computed
    :data:`QUERY_ROWS` pairs at a time: cheap for the pairs a table lists, never n x n.

    Parameters
    ----------
    i, j : int ndarray (p,)
        Row numbers.
    vectors, parts, part_mask, colour, colour_weight
        As in :func:`lookalike.similarity.similarity_matrix` (unit vectors, e.g.
        :func:`lookalike.similarity.fused_inputs`).

    Returns
    -------
    kind : int8 ndarray (p,)
        Index into :data:`MATCHES`; a tie goes to whole-whole, then whole-part.
    slot : int8 ndarray (p,)
        The part that matched: of j for whole-part/negative, of i for part/negative-whole
        (0: the left or top end square, 1: the right or bottom one, :data:`NEGATIVE_SLOT`: the
        negative); -1 for whole-whole.
    colour_gain : float32 ndarray (p,)
        The fused similarity minus the score without colour,
        ``colour_weight * (colour_i . colour_j - best)``; may be negative, 0 without colour.
    """
    vectors, parts, part_mask, colour = check_features(vectors, parts, part_mask, colour)
    i, j = np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64)
    if i.shape != j.shape or i.ndim != 1:
        raise ValueError(f"i and j must be 1-d of one length, got {i.shape} and {j.shape}")
    kind = np.zeros(len(i), np.int8)
    slot = np.full(len(i), -1, np.int8)
    best = np.empty(len(i), np.float32)
    has_parts = parts is not None and part_mask is not None and part_mask.any()
    for s in range(0, len(i), QUERY_ROWS):  # bounded temporaries: (b, m, d) gathers
        a, b = i[s : s + QUERY_ROWS], j[s : s + QUERY_ROWS]
        wa, wb = vectors[a], vectors[b]
        score = np.einsum("pd,pd->p", wa, wb)
        if has_parts:
            wp = np.where(part_mask[b], np.einsum("pd,pmd->pm", wa, parts[b]), -np.inf)
            pw = np.where(part_mask[a], np.einsum("pmd,pd->pm", parts[a], wb), -np.inf)
            kb, sb = kind[s : s + QUERY_ROWS], slot[s : s + QUERY_ROWS]  # views
            for code, x in ((1, wp), (2, pw)):  # strictly better only: ties stay earlier
                top = x.max(axis=1)
                up = top > score
                kb[up], sb[up] = code, x.argmax(axis=1)[up]
                score = np.maximum(score, top)
        best[s : s + QUERY_ROWS] = score
    negative = (slot == NEGATIVE_SLOT) & (kind > 0)
    kind[negative] += 2  # whole-part -> whole-negative, part-whole -> negative-whole
    gain = np.zeros(len(i), np.float32)
    if colour is not None and colour_weight > 0 and len(i):
        tint = _pair_colour(colour, i, j)
        fused = (1.0 - colour_weight) * best + colour_weight * tint  # pair_similarity's formula
        gain = (fused.astype(np.float32) - best).astype(np.float32)
    return kind, slot, gain


def _pair_colour(colour: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """``colour[i[p]] . colour[j[p]]``: float32 (p,), from sparse rows of only the images
    the pairs name (histograms with few filled bins; see :func:`_colour_dot`)."""
    rows, pos = np.unique(np.concatenate([i, j]), return_inverse=True)
    return _colour_dot(_sparse_rows(colour, rows), pos[: len(i)], pos[len(i) :])


def match_text(match: Any, colour_gain: Any = 0.0) -> str:
    """A neighbour's match in words, e.g. ``"icon of this ↔ whole of that, +0.03 colour"``.

    Parameters
    ----------
    match : str or None
        One of :data:`MATCHES` (``lookalike find``'s ``whole~part`` spelling too); None or
        anything else: unknown (a table written before the column existed).
    colour_gain : float
        Added as ``"+0.03 colour"`` when it is a number other than 0.

    Returns
    -------
    str, "" when both are unknown.
    """
    words = MATCH_WORDS.get(str(match).replace("~", "-"), "") if isinstance(match, str) else ""
    try:
        gain = float(colour_gain)
    except (TypeError, ValueError):
        gain = float("nan")
    if np.isfinite(gain) and gain != 0.0:
        words += (", " if words else "") + f"{gain:+.2f} colour"
    return words


def _present_parts(
    parts: np.ndarray | None, part_mask: np.ndarray | None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The present parts in row order, and the row of ``parts`` of each image's part.

    Returns
    -------
    present : float32 (p, d), or None when no image has a part
    part_row : int64 (n, m), row of ``present`` of each slot (-1: absent), or None
    """
    if parts is None or part_mask is None or not part_mask.any():
        return None, None
    owner, slot = np.nonzero(part_mask)
    part_row = np.full(part_mask.shape, -1, dtype=np.int64)
    part_row[owner, slot] = np.arange(len(owner))
    return np.ascontiguousarray(parts[owner, slot], np.float32), part_row


def _index_neighbors(feats: tuple, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`nearest_neighbors` through faiss indexes, for ``feats`` = (vectors, parts,
    part_mask, colour, colour_weight) already checked and unit length.

    Before colour, the fused score of a pair is the best of three kinds of inner product
    (whole-whole, whole-part, part-whole), so each query asks each kind for its top
    candidates: its whole among the wholes, its whole among the parts (an icon finding the
    lockup that holds it; ``m`` times as many, as an image owns up to ``m`` parts) and each of
    its parts among the wholes. A pair in the top k is in the top k of the kind that gives
    its score, so without colour the best score found per candidate ranks them exactly as
    the fused similarity does. Colour can lift a pair from further down, so with colour each
    kind gives :data:`COLOUR_CANDIDATES` x k and the candidates are ranked by their best
    score blended with their exact colour score. The chosen k are re-scored exactly
    (:func:`pair_similarity`). Ties: lower row first, as the exact search.
    """
    vectors, parts, part_mask, colour, weight = feats
    blend = colour is not None and weight > 0
    kk = (COLOUR_CANDIDATES if blend else 1) * k + 1  # + 1: the query itself
    present, part_row = _present_parts(parts, part_mask)
    whole_index = _index.build_index(vectors)
    part_index = None if present is None else _index.build_index(present)
    owner = None if part_row is None else np.nonzero(part_mask)[0]
    tints = _sparse_rows(colour) if blend else None  # once: a scan of n x c floats
    index = np.empty((len(q), k), dtype=np.int64)
    similarity = np.empty((len(q), k), dtype=np.float32)
    order = _index.search_order(whole_index, vectors, q)
    for s in range(0, len(q), QUERY_ROWS):
        at = order[s : s + QUERY_ROWS]
        qb = q[at]
        found = [_index.search(whole_index, vectors[qb], kk)]
        if part_index is not None:
            sc, ids = _index.search(part_index, vectors[qb], part_row.shape[1] * kk)
            found.append((sc, np.where(ids >= 0, owner[np.maximum(ids, 0)], -1)))
            found.append(_part_searches(whole_index, present, part_row[qb], kk))
        scores = np.concatenate([f[0] for f in found], axis=1)
        cand = np.concatenate([f[1] for f in found], axis=1)
        index[at], similarity[at] = _best_found(cand, scores, qb, k, feats, tints)
    return index, similarity


def _part_searches(
    whole_index, present: np.ndarray, rows: np.ndarray, kk: int
) -> tuple[np.ndarray, np.ndarray]:
    """Scores and ids (b, m kk) of the ``kk`` wholes nearest each part of ``rows`` (b, m)."""
    has = rows >= 0
    sc = np.full((*rows.shape, min(kk, whole_index.ntotal)), -np.inf, dtype=np.float32)
    ids = np.full(sc.shape, -1, dtype=np.int64)
    if has.any():
        sc[has], ids[has] = _index.search(whole_index, present[rows[has]], kk)
    return sc.reshape(len(rows), -1), ids.reshape(len(rows), -1)


def _sparse_rows(
    x: np.ndarray, rows: np.ndarray | None = None, block: int = QUERY_ROWS
) -> sparse.csr_matrix:
    """``x[rows]`` (default all of ``x``; (m, c)) as a float32 CSR matrix, converted a block
    of rows at a time (bounded memory)."""
    m = len(x) if rows is None else len(rows)
    blocks = [
        sparse.csr_matrix(
            np.asarray(x[s : s + block] if rows is None else x[rows[s : s + block]], np.float32)
        )
        for s in range(0, m, block)
    ]
    storage.drop_pages(x)  # a memory map of colour.npy: the CSR copy is what is used
    if not blocks:
        return sparse.csr_matrix((0, x.shape[1]), dtype=np.float32)
    return sparse.vstack(blocks, format="csr")


def _colour_dot(sparse, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """``colour[i[p]] . colour[j[p]]`` for every pair p: float32 (p,), from ``sparse``, the
    colour signatures as a scipy CSR matrix.

    Colour signatures are histograms with few filled bins, so the pairs are scored as sparse
    rows, :data:`QUERY_ROWS` pairs at a time (dense rows would move c floats per pair).
    """
    out = np.empty(len(i), dtype=np.float32)
    for s in range(0, len(i), QUERY_ROWS):
        a, b = sparse[i[s : s + QUERY_ROWS]], sparse[j[s : s + QUERY_ROWS]]
        out[s : s + QUERY_ROWS] = np.asarray(a.multiply(b).sum(axis=1)).ravel()
    return out


def _best_found(
    cand: np.ndarray, scores: np.ndarray, qb: np.ndarray, k: int, feats: tuple, tints
) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` candidate rows ``cand`` (b, L; -1 = none) of queries ``qb``, from their
    best found ``scores`` (blended with colour from ``tints``, the CSR colour signatures, if
    not None); a query with fewer than k candidates is answered exactly."""
    vectors, parts, part_mask, colour, weight = feats
    cand = np.where(cand == qb[:, None], -1, cand)  # not its own neighbour
    scores = np.where(cand >= 0, scores, -np.inf).astype(np.float32)
    by_row = np.lexsort((-scores, cand), axis=1)  # each candidate's best score first
    cand = np.take_along_axis(cand, by_row, axis=1)
    scores = np.take_along_axis(scores, by_row, axis=1)
    again = np.zeros(cand.shape, dtype=bool)
    again[:, 1:] = cand[:, 1:] == cand[:, :-1]
    cand[again], scores[again] = -1, -np.inf
    if tints is not None:
        valid = cand >= 0
        pairs_i = np.broadcast_to(qb[:, None], cand.shape)[valid]
        tint = _colour_dot(tints, pairs_i, cand[valid])
        scores[valid] = (1.0 - weight) * scores[valid] + weight * tint
    order = np.lexsort((cand, -scores), axis=1)[:, :k]  # by score, ties: lower row first
    index = np.take_along_axis(cand, order, axis=1)
    short = (index < 0).any(axis=1)
    i = np.broadcast_to(qb[:, None], index.shape)
    similarity = np.full(index.shape, -np.inf, dtype=np.float32)
    pi, pj = i[~short].ravel(), index[~short].ravel()
    if tints is None:
        exact = pair_similarity(pi, pj, *feats)
    else:  # colour from the CSR copy: the dense memory map is not read again
        exact = pair_similarity(pi, pj, vectors, parts, part_mask, None, 0.0)
        exact = ((1.0 - weight) * exact + weight * _colour_dot(tints, pi, pj)).astype(np.float32)
    similarity[~short] = exact.reshape(-1, k)
    order = np.lexsort((index, -similarity), axis=1)
    index = np.take_along_axis(index, order, axis=1)
    similarity = np.take_along_axis(similarity, order, axis=1)
    at = np.flatnonzero(short)
    step = block_rows(len(vectors), 0 if parts is None else parts.shape[1])
    for s in range(0, len(at), step):  # exactly, a bounded block of rows at a time
        pos, rows = at[s : s + step], qb[at[s : s + step]]
        block = similarity_rows(rows, vectors, parts, part_mask, colour, weight)
        block[np.arange(len(rows)), rows] = -np.inf
        index[pos] = top_k(block, k)
        similarity[pos] = np.take_along_axis(block, index[pos], axis=1)
    return index, similarity


def neighbors_table(
    index: np.ndarray,
    similarity: np.ndarray,
    image_ids: Sequence[str] | None = None,
    *,
    matches: tuple[np.ndarray, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Long table of every row's neighbours from :func:`nearest_neighbors` (all rows queried).

    Parameters
    ----------
    index, similarity : ndarray (n, k)
    image_ids : sequence of str, optional
        Row names (default ``"0"``, ``"1"``, ...).
    matches : (kind, colour_gain), optional
        :func:`pair_matches` of the pairs ``(row, index[row, r])`` in row-major order, each
        (n * k,) (or (n, k)): adds the :data:`MATCH_COLUMNS`.

    Returns
    -------
    DataFrame with columns :data:`NEIGHBORS_COLUMNS`: image_id (str), rank (int, 1 =
    nearest), neighbor_id (str), similarity (float32); n * k rows sorted by image then rank.
    With ``matches``, then match (str, one of :data:`MATCHES`) and colour_gain (float32).
    """
    n, k = index.shape
    ids = np.asarray([str(i) for i in range(n)] if image_ids is None else list(image_ids))
    if len(ids) != n:
        raise ValueError(f"image_ids has {len(ids)} entries for {n} vectors")
    if k < 1:
        table = pd.DataFrame({c: [] for c in NEIGHBORS_COLUMNS}).astype(
            {"image_id": str, "rank": int, "neighbor_id": str, "similarity": np.float32}
        )
    else:
        table = pd.DataFrame(
            {
                "image_id": np.repeat(ids, k),
                "rank": np.tile(np.arange(1, k + 1), n),
                "neighbor_id": ids[index.ravel()],
                "similarity": similarity.ravel(),
            }
        )
    if matches is not None:  # after the four columns: readers rely on their order
        kind, gain = (np.asarray(x).ravel() for x in matches)
        if len(kind) != len(table) or len(gain) != len(table):
            raise ValueError(f"matches has {len(kind)} pairs for {len(table)} neighbours")
        table["match"] = np.asarray(MATCHES)[kind.astype(np.int64)]  # str, as image_id
        table["colour_gain"] = gain.astype(np.float32)
    return table


def write_neighbors(
    run_dir: str | os.PathLike[str] | RunLayout,
    inputs: dict[str, Any],
    image_ids: Sequence[str],
    *,
    k: int = 10,
    neighbors: tuple[np.ndarray, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Write ``RUN/neighbors.parquet``: every image's ``k`` most similar images.

    Parameters
    ----------
    run_dir : str, Path or RunLayout
    inputs : dict
        :func:`lookalike.similarity.fused_inputs` (unit vectors, parts, colour).
    image_ids : sequence of str, one per row of ``inputs["vectors"]``
    k : int, default 10
    neighbors : (index, similarity), optional
        :func:`nearest_neighbors` of ``inputs`` over every row, already computed with at
        least ``k`` columns (e.g. for a kNN graph); its first ``k`` columns are written.
        Default: searched here.

    Returns
    -------
    The table written (see :func:`neighbors_table`); ``similarity`` is the fused similarity
    of the run's preset (cosine for ``photos``), then ``match`` and ``colour_gain``
    (:func:`pair_matches` of the pairs written: which pair of wholes and parts gave the
    score, and what colour added; "whole-whole" and 0 for ``photos``).
    """
    if neighbors is None:
        neighbors = nearest_neighbors(**inputs, k=k, normalize=False)
    index, similarity = neighbors
    k = int(max(0, min(int(k), len(inputs["vectors"]) - 1)))
    if index.shape[1] < k:
        raise ValueError(f"neighbors has {index.shape[1]} columns, fewer than k={k}")
    index, similarity = index[:, :k], similarity[:, :k]
    rows = np.repeat(np.arange(len(index), dtype=np.int64), k)
    kind, _, gain = pair_matches(rows, index.ravel(), **inputs)  # the n k pairs written only
    table = neighbors_table(index, similarity, image_ids, matches=(kind, gain))
    storage.write_table(table, RunLayout(run_dir).neighbors)
    return table


def read_neighbors(run_dir: str | os.PathLike[str] | RunLayout) -> pd.DataFrame | None:
    """``RUN/neighbors.parquet``, or None when stage 04 has not written it.

    The columns are :data:`NEIGHBORS_COLUMNS` then :data:`MATCH_COLUMNS`; a table written
    before those existed gets them as unknown: ``match`` None, ``colour_gain`` NaN.
    """
    path = RunLayout(run_dir).neighbors
    if not path.is_file():
        return None
    table = storage.read_table(path, required=NEIGHBORS_COLUMNS, what="neighbours")
    if "match" not in table.columns:
        table["match"] = pd.Series([None] * len(table), index=table.index, dtype=object)
    if "colour_gain" not in table.columns:
        table["colour_gain"] = np.full(len(table), np.nan, dtype=np.float32)
    return table


def read_matches(
    run_dir: str | os.PathLike[str] | RunLayout,
    image_ids: Sequence[str] | np.ndarray,
    neighbor_ids: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """``match`` and ``colour_gain`` of the pairs ``(image_ids[a], neighbor_ids[a, b])`` as
    ``RUN/neighbors.parquet`` records them, for showing why two images are neighbours.

    Only the rows of ``image_ids`` are read (a filter on the file). A pair the file does not
    list (a neighbour found another way, e.g. in PCA space), or a file written before the
    columns existed, is unknown.

    Parameters
    ----------
    image_ids : sequence of str (m,)
    neighbor_ids : str ndarray (m, n)

    Returns
    -------
    match : object ndarray (m, n), str of :data:`MATCHES` or None (unknown)
    colour_gain : float32 ndarray (m, n), NaN when unknown
    """
    import pyarrow.parquet as pq

    image_ids = np.asarray(image_ids).astype(str)
    neighbor_ids = np.asarray(neighbor_ids).astype(str)
    if neighbor_ids.ndim != 2 or len(neighbor_ids) != len(image_ids):
        raise ValueError(
            f"neighbor_ids must be ({len(image_ids)}, n), a row per image, "
            f"got shape {neighbor_ids.shape}"
        )
    match = np.full(neighbor_ids.shape, None, dtype=object)
    gain = np.full(neighbor_ids.shape, np.nan, dtype=np.float32)
    path = RunLayout(run_dir).neighbors
    if not neighbor_ids.size or not path.is_file():
        return match, gain
    if not set(MATCH_COLUMNS) <= set(pq.read_schema(path).names):
        return match, gain  # an older table
    table = pd.read_parquet(
        path,
        columns=["image_id", "neighbor_id", *MATCH_COLUMNS],
        filters=[("image_id", "in", sorted(set(image_ids.tolist())))],
    ).drop_duplicates(["image_id", "neighbor_id"])
    keys = pd.MultiIndex.from_arrays(
        [table["image_id"].astype(str), table["neighbor_id"].astype(str)]
    )
    want = pd.MultiIndex.from_arrays(
        [np.repeat(image_ids, neighbor_ids.shape[1]), neighbor_ids.ravel()]
    )
    at = keys.get_indexer(want).reshape(neighbor_ids.shape)
    found = at >= 0
    match[found] = table["match"].to_numpy(dtype=object)[at[found]]
    gain[found] = table["colour_gain"].to_numpy(dtype=np.float32)[at[found]]
    return match, gain
