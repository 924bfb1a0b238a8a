"""Neighbours at scale: today's all-pairs search against the faiss index (issue 14, part 2).

Run: ``.venv/bin/python benchmarks/scale.py`` (n = 20,000 and 100,000; ``--million`` adds
1,000,000; ``--sizes 5000 10000`` for others). Arguments name the runs whose real embeddings
are used (default ``runs/demo-logos`` and ``runs/demo-catalog``).

**The vectors are not invented clusters.** Each run's stage-03 features are turned into the
inputs of stage 04's neighbour search exactly as stage 04 does
(:func:`lookalike.similarity.load_features`, :func:`lookalike.similarity.fused_inputs`: the
``logos`` run PCA-whitened with its wholes, lockup parts and colour; the ``photos`` run as
unit vectors). To reach n rows, real rows are resampled (seeded) and each copy gets a
Gaussian perturbation of norm about :data:`NOISE` on its whole and part vectors (and a
relative 10% on its colour signature), then is renormalised; so the neighbour structure is
that of the real images, blurred.

For each n and each workload, in one process:

1. **all-pairs**: the search as it was before the index (:func:`all_pairs`, a copy of the old
   ``nearest_neighbors``: blockwise scores and a full stable ``argsort`` of every row). At
   n <= ``--full-old`` (default 20,000) it is run on every row; above, on the 2,000 sampled
   query rows and scaled by n / 2,000 (each row's cost is independent of the others; the
   output says "scaled").
2. **exact** (n <= 20,000): :func:`lookalike.neighbors.nearest_neighbors` forced exact.
3. **index**: :func:`lookalike.neighbors.nearest_neighbors` forced through the faiss index.
4. **recall@10** of the index against the all-pairs neighbours on 2,000 sampled queries,
   and the speed ratio all-pairs / index.

It prints the CPU's instruction-set flags and the peak RSS after each step.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from _common import peak_rss_mb

from lookalike.cpu import describe
from lookalike.neighbors import (
    _cosine_rows,
    block_rows,
    check_features,
    l2_normalize,
    nearest_neighbors,
    similarity_rows,
)
from lookalike.similarity import fused_inputs, load_features

ROOT = Path(__file__).resolve().parents[1]
#: Norm of the Gaussian perturbation added to each resampled unit vector.
NOISE = 0.3
QUERIES = 2000
K = 10


def all_pairs(vectors, queries=None, *, k=10, parts=None, part_mask=None, colour=None,
              colour_weight=0.0, normalize=True, chunk=4096):  # fmt: skip
    """The old ``lookalike.neighbors.nearest_neighbors``, kept verbatim as the baseline."""
    fused = not normalize
    if fused:
        vectors, parts, part_mask, colour = check_features(vectors, parts, part_mask, colour)
    n = len(vectors)
    q = np.arange(n) if queries is None else np.asarray(queries, dtype=np.int64)
    k = int(max(0, min(int(k), n - 1)))
    index = np.empty((len(q), k), dtype=np.int64)
    similarity = np.empty((len(q), k), dtype=np.float32)
    m = 0 if parts is None else parts.shape[1]
    step = block_rows(n, m)
    for s in range(0, len(q), step):
        if queries is None:
            rows = slice(s, min(n, s + step))
            r = np.arange(rows.start, rows.stop)
        else:
            rows = r = q[s : s + step]
        if fused:
            block = similarity_rows(rows, vectors, parts, part_mask, colour, colour_weight)
        else:
            block = _cosine_rows(vectors, r, int(chunk))
        block[np.arange(len(r)), r] = -np.inf
        order = np.argsort(-block, axis=1, kind="stable")[:, :k]
        index[s : s + len(r)] = order
        similarity[s : s + len(r)] = np.take_along_axis(block, order, axis=1)
    return index, similarity


def cpu_flags() -> str:
    """The instruction-set flags of this CPU (:func:`lookalike.cpu.describe`)."""
    return describe()


def real_inputs(run_dir: Path) -> dict:
    """Stage 04's neighbour-search inputs of a real run (see the module docstring)."""
    return fused_inputs(load_features(run_dir))


def perturbed(inputs: dict, n: int, seed: int = 0) -> dict:
    """``n`` rows resampled from ``inputs`` with seeded Gaussian noise, renormalised."""
    rng = np.random.default_rng(seed)
    src = rng.integers(0, len(inputs["vectors"]), size=n)
    d = inputs["vectors"].shape[1]
    sigma = NOISE / np.sqrt(d)
    out = dict(inputs)
    out["vectors"] = l2_normalize(inputs["vectors"][src] + rng.normal(0, sigma, (n, d)))
    if inputs["parts"] is not None:
        mask = inputs["part_mask"][src]
        parts = l2_normalize(
            inputs["parts"][src] + rng.normal(0, sigma, (n, *inputs["parts"].shape[1:]))
        )
        out["parts"], out["part_mask"] = (
            np.where(mask[..., None], parts, 0).astype(np.float32),
            mask,
        )
    if inputs["colour"] is not None:
        c = inputs["colour"][src] * rng.normal(1.0, 0.1, (n, inputs["colour"].shape[1]))
        out["colour"] = l2_normalize(np.clip(c, 0, None))
    return out


def timed(label: str, fn):
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    print(f"    {label}: {dt:.1f} s, peak RSS {peak_rss_mb():.0f} MiB", flush=True)
    return out, dt


def recall(want: np.ndarray, got: np.ndarray) -> float:
    """Mean share of each row of ``want`` found in the same row of ``got``."""
    return float(np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(want, got, strict=True)]))


def measure(name: str, base: dict, n: int, full_old: int) -> dict:
    """One row of the table: see the module docstring."""
    x = perturbed(base, n)
    kw = dict(x, normalize=False, k=K)
    q = np.sort(np.random.default_rng(1).choice(n, size=min(QUERIES, n), replace=False))
    print(f"  {name}, n={n:,}, d={x['vectors'].shape[1]}, parts={x['parts'] is not None}:")
    (want, _), t_sample = timed(
        f"all-pairs on {len(q)} query rows", lambda: all_pairs(**kw, queries=q)
    )
    if n <= full_old:
        _, t_old = timed("all-pairs, every row", lambda: all_pairs(**kw))
        how = "measured"
    else:
        t_old, how = t_sample * n / len(q), "scaled"
    t_exact = None
    if n <= 20_000:
        _, t_exact = timed("exact (new), every row", lambda: nearest_neighbors(**kw, exact_max=n))
    (got, _), t_index = timed("index, every row", lambda: nearest_neighbors(**kw, exact_max=0))
    return {
        "workload": name,
        "n": n,
        "all_pairs_s": t_old,
        "how": how,
        "exact_s": t_exact,
        "index_s": t_index,
        "recall": recall(want, got[q]),
        "speedup": t_old / t_index,
        "rss": peak_rss_mb(),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("logos_run", nargs="?", default=ROOT / "runs/demo-logos", type=Path)
    p.add_argument("catalog_run", nargs="?", default=ROOT / "runs/demo-catalog", type=Path)
    p.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000])
    p.add_argument("--million", action="store_true", help="also n = 1,000,000 (hours)")
    p.add_argument(
        "--full-old", type=int, default=20_000, help="largest n for a full all-pairs run"
    )
    p.add_argument("--only", choices=["logos", "photos"], help="one workload")
    a = p.parse_args(argv)
    sizes = a.sizes + ([1_000_000] if a.million else [])
    print(f"CPU flags: {cpu_flags()}; python {sys.version.split()[0]}")
    workloads = {"logos": a.logos_run, "photos": a.catalog_run}
    rows = []
    for name, run in workloads.items():
        if a.only and name != a.only:
            continue
        base = real_inputs(run)
        print(f"{name}: {len(base['vectors'])} real images from {run}")
        for n in sizes:
            rows.append(measure(name, base, n, a.full_old))
    print()
    print(
        "| workload | n | all-pairs (s) | exact, new (s) | index (s) | recall@10 | speed-up "
        "| peak RSS (MiB) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        exact = "" if r["exact_s"] is None else f"{r['exact_s']:.1f}"
        print(
            f"| {r['workload']} | {r['n']:,} | {r['all_pairs_s']:.1f} ({r['how']}) | {exact} | "
            f"{r['index_s']:.1f} | {r['recall']:.4f} | {r['speedup']:.1f}x | {r['rss']:.0f} |"
        )


if __name__ == "__main__":
    main()
