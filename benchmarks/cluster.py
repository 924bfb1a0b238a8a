"""Stage 04 at scale: the k sweep on 20,000 and 100,000 vectors, and the seed's way.

Run: ``.venv/bin/python benchmarks/cluster.py`` (about 10-15 minutes on 2 cores; ``--quick``
for a one-minute smoke run on small sizes). Every figure is measured in this run:

1. **auto threshold**: exact KMeans against MiniBatchKMeans (both as
   :func:`lookalike.cluster.kmeans_sweep` runs them) on n x 100 vectors for growing n; the
   smallest n from which MiniBatchKMeans is at least 2x faster with inertia within 2% is where
   ``algorithm="auto"`` should switch. The script prints that size beside the library's
   :data:`~lookalike.cluster.MINIBATCH_ABOVE`.
2. **full sweep**: the 16 default k values on 20,000 x 100 and 100,000 x 100 float32 vectors
   (synthetic, seeded, 300 clusters of uneven size), with ``algorithm="auto"`` and the scores,
   then agglomerative on the 20,000 (its cap): seconds and peak memory, each in its own
   process.
3. **the seed's way**: KMeans with sklearn's default parameters on raw 25,088-d vectors (VGG16
   ``flatten`` size) for the same k values (clipped below n), on the largest n that fits in
   2 minutes (n doubles until a run would not fit); then lookalike's way (PCA to 100 + the
   sweep with scores) on the same vectors, and the ratios.

Synthetic vectors: cluster centres drawn from a normal law, uneven cluster sizes (Dirichlet),
Gaussian noise of a per-cluster spread; for the 25,088-d vectors the values are clipped at 0,
like VGG16's ReLU features.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import peak_rss_mb  # noqa: E402  (also puts lib/ on sys.path)

from lookalike import cluster  # noqa: E402

SEED = 0
RAW_DIM = 25_088  # VGG16 block5_pool flattened at 224 x 224, what the seed clustered
SEED_BUDGET_S = 120.0


def clustered(n: int, d: int, *, centers: int = 300, seed: int = SEED, relu: bool = False):
    """``n`` x ``d`` float32 vectors around ``centers`` centres of uneven size and spread."""
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centers, d)).astype(np.float32)
    p = rng.dirichlet(np.full(centers, 2.0))
    labels = rng.choice(centers, size=n, p=p)
    spread = rng.uniform(0.3, 1.0, size=centers).astype(np.float32)
    X = c[labels]
    X += rng.standard_normal(size=(n, d), dtype=np.float32) * spread[labels, None]
    if relu:
        np.maximum(X, 0.0, out=X)
    return X


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


# -- work done in child processes (each reports its own peak memory) ------------------------


def _measure(work) -> dict:
    """Run ``work()`` (returns a dict of extra fields) and time it; peak RSS of this process."""
    base = _rss_mb()
    t0 = time.perf_counter()
    extra = work()
    return {
        "seconds": time.perf_counter() - t0,
        "peak_mb": peak_rss_mb(),
        "base_mb": base,
        **extra,
    }


def _job_sweep(n: int, d: int, algorithm: str) -> dict:
    X = clustered(n, d)

    def work():
        metrics, _ = cluster.kmeans_sweep(X, cluster.DEFAULT_K_VALUES, algorithm=algorithm)
        scores = metrics[["inertia", "silhouette"]].to_numpy()
        return {
            "estimator": metrics["estimator"].iloc[0],
            "ks": len(metrics),
            "finite": bool(np.isfinite(scores).all()),
            "silhouette_n": int(metrics["silhouette_n"].iloc[0]),
        }

    return _measure(work)


def _job_agglomerative(n: int, d: int) -> dict:
    X = clustered(n, d)

    def work():
        metrics, _ = cluster.agglomerative_sweep(X, cluster.DEFAULT_K_VALUES, max_samples=n)
        return {"ks": len(metrics)}

    return _measure(work)


def _job_seed(n: int) -> dict:
    """The seed notebooks' way: KMeans(n_clusters=k) with sklearn's defaults on raw vectors."""
    from sklearn.cluster import KMeans

    X = clustered(n, RAW_DIM, relu=True)
    ks = [k for k in cluster.DEFAULT_K_VALUES if k < n]

    def work():
        for k in ks:
            KMeans(n_clusters=k).fit(X)
        return {"ks": len(ks)}

    return _measure(work)


def _job_ours_raw(n: int) -> dict:
    """lookalike's way on the same raw vectors: PCA to 100, then the sweep with scores."""
    X = clustered(n, RAW_DIM, relu=True)

    def work():
        Z, _ = cluster.fit_pca(X, n_components=100)
        metrics, _ = cluster.kmeans_sweep(Z, cluster.DEFAULT_K_VALUES, progress=False)
        return {"ks": len(metrics)}

    return _measure(work)


def _child(queue, fn, args):
    try:
        queue.put(("ok", fn(*args)))
    except BaseException as exc:  # report, don't hang the parent
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def in_child(fn, *args, timeout: float | None = None) -> dict | None:
    """Run ``fn(*args)`` in a fresh process; None if it ran past ``timeout`` seconds."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, fn, args))
    t0 = time.perf_counter()
    proc.start()
    try:
        status, value = queue.get(timeout=timeout)
    except Exception:  # queue.Empty: over time
        proc.kill()
        proc.join()
        return None
    proc.join()
    if status != "ok":
        raise SystemExit(f"{fn.__name__}{args} failed: {value}")
    value["wall"] = time.perf_counter() - t0
    return value


# -- the three parts ------------------------------------------------------------------------


def auto_threshold(sizes: list[int], ks: list[int]) -> int | None:
    print(
        f"\n== 1. auto threshold: KMeans (n_init=4) vs MiniBatchKMeans (1 start), n x 100, "
        f"k in {ks}, as kmeans_sweep runs them (silhouette on 1,000)"
    )
    print(f"{'n':>8} {'KMeans s':>9} {'MiniBatch s':>12} {'speed-up':>9} {'inertia +%':>11}  rule")
    holds = {}
    for n in sizes:
        X = clustered(n, 100)
        res = {}
        for algo in ("kmeans", "minibatch"):
            t0 = time.perf_counter()
            m, _ = cluster.kmeans_sweep(
                X, ks, algorithm=algo, silhouette_sample=1000, progress=False
            )
            res[algo] = (time.perf_counter() - t0, float(m["inertia"].sum()))
        speed = res["kmeans"][0] / res["minibatch"][0]
        worse = 100 * (res["minibatch"][1] / res["kmeans"][1] - 1)
        holds[n] = speed >= 2.0 and worse <= 2.0
        print(
            f"{n:>8} {res['kmeans'][0]:>9.2f} {res['minibatch'][0]:>12.2f} {speed:>8.2f}x "
            f"{worse:>10.2f}%  {'yes' if holds[n] else 'no'}",
            flush=True,
        )
        if len(holds) >= 2 and all(list(holds.values())[-2:]):
            break  # holds at two sizes in a row: larger sizes only cost time
    # The switch point: the smallest n from which the rule holds at every larger measured n.
    switch = None
    for n in sorted(holds, reverse=True):
        if not holds[n]:
            break
        switch = n
    below = [n for n in holds if switch is not None and n < switch]
    suggested = max(below) if below else (None if switch is None else switch - 1)
    print(f"rule: MiniBatchKMeans >= 2x faster and inertia within 2%; holds from n={switch}")
    print(
        f"suggested MINIBATCH_ABOVE: {suggested}; library: {cluster.MINIBATCH_ABOVE} "
        f"({'matches' if suggested == cluster.MINIBATCH_ABOVE else 'differs'})"
    )
    return suggested


def full_sweeps(sizes: list[int], agglo_n: int) -> dict[int, dict]:
    print(
        f"\n== 2. full sweep: {len(cluster.DEFAULT_K_VALUES)} default k values "
        f"{list(cluster.DEFAULT_K_VALUES)}, algorithm=auto, n_init=4, with scores"
    )
    out = {}
    for n in sizes:
        print(f"   sweeping {n:,} x 100 ...", flush=True)
        r = in_child(_job_sweep, n, 100, "auto")
        out[n] = r
        print(
            f"{n:>8,} x 100: {r['seconds']:7.1f} s, peak {r['peak_mb']:7.0f} MiB "
            f"(+{r['peak_mb'] - r['base_mb']:.0f} over the data), {r['estimator']}, "
            f"{r['ks']} k, silhouette on {r['silhouette_n']:,}, all finite: {r['finite']}",
            flush=True,
        )
    print(
        f"   agglomerative {agglo_n:,} x 100 (its cap is {cluster.AGGLOMERATIVE_MAX:,}) ...",
        flush=True,
    )
    r = in_child(_job_agglomerative, agglo_n, 100)
    print(
        f"{agglo_n:>8,} x 100 agglomerative (one tree, {r['ks']} cuts + scores): "
        f"{r['seconds']:7.1f} s, peak {r['peak_mb']:7.0f} MiB "
        f"(+{r['peak_mb'] - r['base_mb']:.0f} over the data)",
        flush=True,
    )
    return out


def seed_comparison(start: int, budget: float, sweeps: dict[int, dict]) -> None:
    print(
        f"\n== 3. the seed's way: KMeans(n_clusters=k), sklearn defaults, on raw {RAW_DIM:,}-d "
        f"vectors, k in the default list below n; largest n within {budget:.0f} s"
    )
    n, best, last = start, None, None
    fits: list[tuple[int, float]] = []
    failed = None  # the smallest n that did not fit
    while True:
        print(f"   seed's way on n={n:,} ...", flush=True)
        r = in_child(_job_seed, n, timeout=budget + 30)  # + data generation and start-up
        if r is None or r["seconds"] > budget:
            took = "over the time limit" if r is None else f"{r['seconds']:.1f} s"
            print(f"{n:>8,}: {took}: does not fit", flush=True)
            failed = n
            break
        print(
            f"{n:>8,}: {r['seconds']:7.1f} s for {r['ks']} k, peak {r['peak_mb']:.0f} MiB",
            flush=True,
        )
        best, last = (n, r), r
        fits.append((n, r["seconds"]))
        # Don't start a run that is already predicted to miss the budget (time grows faster
        # than n: more k values fit below a larger n).
        if last["seconds"] * 2.5 > budget:
            grow = 1.5 if last["seconds"] * 1.5**2 < budget * 0.9 else None
            if grow is None:
                break
            n = int(n * grow)
        else:
            n *= 2
    if best is None:
        print(f"no n from {start} fits in {budget:.0f} s")
        return
    # Refine between the last n that fit and the next doubling: time grows as n^a, with a
    # taken from the last two runs; try the n predicted to take 90% of the budget.
    if len(fits) >= 2:
        (n1, t1), (n2, t2) = fits[-2], fits[-1]
        a = np.log(t2 / t1) / np.log(n2 / n1)
        guess = int(n2 * (0.9 * budget / t2) ** (1 / a)) // 25 * 25
        if guess > n2 and (failed is None or guess < failed):
            print(
                f"   seed's way on n={guess:,} (predicted to fit: time ~ n^{a:.2f}) ...", flush=True
            )
            r = in_child(_job_seed, guess, timeout=budget + 30)
            if r is not None and r["seconds"] <= budget:
                best = (guess, r)
            took = "over the time limit" if r is None else f"{r['seconds']:.1f} s"
            print(f"{guess:>8,}: {took}{'' if best[0] == guess else ': does not fit'}", flush=True)
    n, seed = best
    print(
        f"   lookalike's way on the same {n:,} raw vectors (PCA to 100 + sweep + scores) ...",
        flush=True,
    )
    ours = in_child(_job_ours_raw, n)
    print(
        f"seed's way  n={n:,}: {seed['seconds']:8.1f} s  ({seed['ks']} k, no scores), "
        f"peak {seed['peak_mb']:.0f} MiB"
    )
    print(
        f"lookalike   n={n:,}: {ours['seconds']:8.1f} s  ({ours['ks']} k + 4 scores each), "
        f"peak {ours['peak_mb']:.0f} MiB"
    )
    print(f"ratio, like for like (same n, same k): {seed['seconds'] / ours['seconds']:.1f}x faster")
    for m, r in sweeps.items():
        per_seed = seed["seconds"] / n
        per_ours = r["seconds"] / m
        print(
            f"ratio per image: seed {1000 * per_seed:.2f} ms/image at n={n:,} vs lookalike "
            f"{1000 * per_ours:.3f} ms/image at n={m:,} (all 16 k): "
            f"{per_seed / per_ours:.0f}x"
        )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    print(
        f"benchmarks/cluster.py: {os.cpu_count()} CPUs, load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; sklearn defaults for the seed"
    )
    if args.quick:
        auto_threshold([500, 2000], [10, 50])
        sweeps = full_sweeps([3000], agglo_n=2000)
        seed_comparison(100, 10.0, sweeps)
    else:
        auto_threshold([1000, 2000, 5000, 10000, 20000, 50000], [10, 100, 300])
        sweeps = full_sweeps([20_000, 100_000], agglo_n=cluster.AGGLOMERATIVE_MAX)
        seed_comparison(250, SEED_BUDGET_S, sweeps)
    print(
        f"\ntotal {time.perf_counter() - t0:.0f} s; load average now "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )


if __name__ == "__main__":
    main()
