"""Davies-Bouldin and Calinski-Harabasz: sklearn's against lookalike's from the cluster means.

Run: ``PYTHONPATH=lib .venv/bin/python benchmarks/scores.py [--n 200000]``. Prints, in one
run on this machine, both times, their ratio and both values (they must agree).
"""

import argparse
import time

import numpy as np
from scale import cpu_flags
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score

from lookalike.kmeans import _distances_to, cluster_means, dispersion_scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--d", type=int, default=100)
    args = ap.parse_args()
    print(cpu_flags())
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(args.n, args.d)).astype(np.float32)
    for k in (100, 1000):
        lab = rng.integers(0, k, args.n)
        t = time.perf_counter()
        a = davies_bouldin_score(Z, lab), calinski_harabasz_score(Z, lab)
        ts = time.perf_counter() - t
        t = time.perf_counter()
        m, c = cluster_means(Z, lab)
        b = dispersion_scores(Z, lab, m, c, _distances_to(Z, m, lab))
        tn = time.perf_counter() - t
        print(
            f"n={args.n} k={k}: sklearn {ts:.2f} s, from the means {tn:.2f} s "
            f"({ts / tn:.1f}x); DB {a[0]:.6f} vs {b[0]:.6f}, CH {a[1]:.4f} vs {b[1]:.4f}"
        )


if __name__ == "__main__":
    main()
