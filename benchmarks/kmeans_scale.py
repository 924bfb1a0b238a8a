"""KMeans at large n: faiss's KMeans against MiniBatchKMeans (issue 14, part 3).

Run: ``.venv/bin/python benchmarks/kmeans_scale.py`` (n = 100,000 at k = 10, 100, 500, 1000
and n = 1,000,000 at k = 10, 100, 1000; about 15 minutes on 2 cores). ``--sizes`` and ``--k``
pick others, ``--million-k`` the k at 1,000,000 (``--million-k`` with nothing skips it).
Arguments name the runs whose real embeddings are used (default ``runs/demo-logos`` and
``runs/demo-catalog``).

**The vectors are not invented clusters.** The stage-03 vectors of both runs (unit rows of the
same width) are pooled; n rows are resampled from them (seeded) and each copy gets the
Gaussian perturbation of ``benchmarks/scale.py`` (norm about :data:`scale.NOISE`), then is
renormalised: perturbed *before* PCA. The PCA (:func:`lookalike.reduce.fit_pca`, 100
components, as stage 04) is fitted on the real rows and applied to the perturbed ones: the
noise is isotropic, so it leaves the principal directions where the real images put them.

Candidates, for each (n, k), run one after the other in the same process (interleaved, so a
busy machine slows all of them alike):

- ``minibatch``: MiniBatchKMeans exactly as :func:`lookalike.kmeans.kmeans_sweep` runs it
  (the baseline);
- ``faiss++``: :func:`lookalike.kmeans.fit_faiss_kmeans` as the library runs it (k-means++
  start on a sample, :data:`~lookalike.kmeans.FAISS_NITER` iterations, at most
  :data:`~lookalike.kmeans.FAISS_MAX_POINTS_PER_CENTROID` training rows per centroid);
- ``faiss++ fast``: the same with 10 iterations and 64 rows per centroid;
- ``faiss``: faiss's own defaults (random start, 20 iterations, 256 rows per centroid).

Seconds are fit + the label of every row. Inertia is computed the same way for every
candidate: each row's nearest centre by exact search over the centres, squared Euclidean
distance summed in float64 over all rows. "Equal inertia" is within 1% of the baseline's
(or lower). It prints the CPU flags, the ratio baseline seconds / candidate seconds (above 1:
the candidate is faster) and candidate inertia / baseline inertia, and checks that faiss gives
the same labels twice and on 1 thread as on all threads.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from _common import peak_rss_mb
from scale import NOISE, cpu_flags
from threadpoolctl import threadpool_limits

from lookalike import kmeans
from lookalike.neighbors import l2_normalize
from lookalike.reduce import fit_pca
from lookalike.similarity import load_features

ROOT = Path(__file__).resolve().parents[1]
#: Rows perturbed and projected at a time (bounds the float64 noise to ~400 MiB).
CHUNK = 100_000
#: Within this share of the baseline's inertia counts as equal.
EQUAL = 0.01

CANDIDATES = {
    "faiss++": {},
    "faiss++ fast": {"niter": 10, "max_points_per_centroid": 64},
    "faiss": {"init": "random"},
}


def pca_vectors(runs: list[Path], n: int, seed: int = 0) -> np.ndarray:
    """``n`` perturbed real rows projected on 100 principal components (module docstring).

    Returns float32 array of shape (n, 100).
    """
    real = np.concatenate([load_features(r)["vectors"] for r in runs]).astype(np.float32)
    _, pca = fit_pca(real, n_components=100)
    rng = np.random.default_rng(seed)
    d = real.shape[1]
    out = np.empty((n, pca.n_components_), dtype=np.float32)
    for s in range(0, n, CHUNK):
        m = min(CHUNK, n - s)
        src = rng.integers(0, len(real), size=m)
        x = l2_normalize(real[src] + rng.normal(0, NOISE / np.sqrt(d), (m, d)))
        out[s : s + m] = pca.transform(x)
    return out


def inertia(Z: np.ndarray, centers: np.ndarray) -> float:
    """Sum over all rows of the squared Euclidean distance to the nearest centre (float64)."""
    import faiss

    index = faiss.IndexFlatL2(Z.shape[1])
    index.add(np.ascontiguousarray(centers, dtype=np.float32))
    total = 0.0
    for s in range(0, len(Z), CHUNK):
        z = Z[s : s + CHUNK]
        _, nearest = index.search(z, 1)
        diff = z.astype(np.float64) - centers[nearest[:, 0]].astype(np.float64)
        total += float(np.einsum("ij,ij->", diff, diff))
    return total


def run_minibatch(Z: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """MiniBatchKMeans as :func:`lookalike.kmeans.kmeans_sweep` runs it (BLAS on 1 thread)."""
    with threadpool_limits(limits=1, user_api="blas"):
        return kmeans._fit_kmeans(Z, k, estimator="minibatch", n_init=1, random_state=0)


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def measure(Z: np.ndarray, k: int) -> list[dict]:
    """One row per candidate at this (n, k), the baseline first."""
    (_, c), t = timed(lambda: run_minibatch(Z, k))
    base = {"n": len(Z), "k": k, "name": "minibatch", "s": t, "inertia": inertia(Z, c)}
    rows = [base]
    print(f"  n={len(Z):,} k={k}: minibatch {t:.1f} s", end="", flush=True)
    for name, kw in CANDIDATES.items():
        (_, c), t = timed(lambda kw=kw: kmeans.fit_faiss_kmeans(Z, k, **kw))
        rows.append({"n": len(Z), "k": k, "name": name, "s": t, "inertia": inertia(Z, c)})
        print(f", {name} {t:.1f} s", end="", flush=True)
    print(f"; peak RSS {peak_rss_mb():.0f} MiB", flush=True)
    for r in rows:
        r["speedup"] = base["s"] / r["s"]
        r["inertia_ratio"] = r["inertia"] / base["inertia"]
    return rows


def determinism(Z: np.ndarray, k: int) -> str:
    """Whether faiss gives identical labels twice, and on 1 thread as on all of them."""
    a, _ = kmeans.fit_faiss_kmeans(Z, k)
    b, _ = kmeans.fit_faiss_kmeans(Z, k)
    one, _ = kmeans.fit_faiss_kmeans(Z, k, threads=1)
    return (
        f"faiss++ labels at n={len(Z):,}, k={k}: rerun identical={np.array_equal(a, b)}, "
        f"1 thread vs all identical={np.array_equal(a, one)}"
    )


def table(rows: list[dict]) -> None:
    print("| n | k | estimator | seconds | inertia | speed-up vs minibatch | inertia / minibatch |")
    print("|---:|---:|---|---:|---:|---:|---:|")
    for r in rows:
        flag = "" if r["inertia_ratio"] <= 1 + EQUAL else " (higher)"
        print(
            f"| {r['n']:,} | {r['k']} | {r['name']} | {r['s']:.1f} | {r['inertia']:.4g} | "
            f"{r['speedup']:.2f}x | {r['inertia_ratio']:.4f}{flag} |"
        )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="*", type=Path,
                   default=[ROOT / "runs/demo-logos", ROOT / "runs/demo-catalog"])  # fmt: skip
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    p.add_argument("--k", type=int, nargs="+", default=[10, 100, 500, 1000])
    p.add_argument("--million-k", type=int, nargs="*", default=[10, 100, 1000])
    a = p.parse_args(argv)
    print(f"CPU flags: {cpu_flags()}; python {sys.version.split()[0]}; {time.strftime('%F')}")
    plan = [(n, a.k) for n in a.sizes] + ([(1_000_000, a.million_k)] if a.million_k else [])
    rows, checks = [], []
    for i, (n, ks) in enumerate(plan):
        Z, t = timed(lambda n=n: pca_vectors(a.runs, n))
        print(f"n={n:,}: {Z.shape[1]}-d PCA vectors in {t:.1f} s", flush=True)
        if i == 0:
            checks.append(determinism(Z, 100))
        for k in ks:
            rows += measure(Z, k)
        del Z
    print()
    print("\n".join(checks))
    table(rows)
    wins = [r for r in rows if r["name"] != "minibatch" and r["inertia_ratio"] <= 1 + EQUAL]
    for n, _ in plan:
        for k in sorted({r["k"] for r in rows if r["n"] == n}):
            fast = [r for r in wins if r["n"] == n and r["k"] == k and r["speedup"] > 1]
            best = max(fast, key=lambda r: r["speedup"], default=None)
            who = "minibatch" if best is None else f"{best['name']} ({best['speedup']:.2f}x)"
            print(f"n={n:,} k={k}: fastest at equal inertia (within {EQUAL:.0%}): {who}")


if __name__ == "__main__":
    main()
