"""Which faiss index for the fused search: time and recall@15 against exact, in one run.

Run: ``PYTHONPATH=lib .venv/bin/python benchmarks/index_choice.py 200000 flat:32,fp16:32,flat:16``
(n, then comma-separated ``kind:probe cap``; kinds ``flat``, ``fp16``, ``sq8``, ``sq6`` and
``pqMrF``, PQ with M 4-bit fast-scan codes and an exact refine of F x k). Rows are perturbed
real demo-logo inputs (:func:`scale.perturbed` of ``runs/demo-logos``); recall is against the
exact search on 1,000 seeded queries. docs/benchmarks.md, "Where stage 04's time and memory go".
"""

import sys
import time

import numpy as np
from _common import ROOT
from scale import perturbed, real_inputs, recall

from lookalike import index as ix
from lookalike.cpu import describe
from lookalike.neighbors import nearest_neighbors


def _train_sample(n: int, n_train: int, seed: int):
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=n_train, replace=False)) if n_train < n else slice(None)


def make_builder(kind: str, probe_cap: int):
    """A stand-in for :func:`lookalike.index.build_index` with another index kind."""

    def build(x, *, random_state=ix.SEED):
        faiss = ix._faiss()
        x = np.ascontiguousarray(x, dtype=np.float32)
        n, d = x.shape
        nlist = max(1, min(int(ix.IVF_LISTS_PER_SQRT * np.sqrt(n)), n // 39))
        probe = min(probe_cap, max(ix.IVF_MIN_PROBE, int(round(nlist * ix.IVF_PROBE_SHARE))))
        ip = faiss.METRIC_INNER_PRODUCT
        if kind.startswith("pq"):
            m, factor = kind[2:].split("r")
            index = faiss.index_factory(d, f"IVF{nlist},PQ{m}x4fs,RFlat", ip)
            ivf = faiss.extract_index_ivf(index)
            ivf.cp.seed = int(random_state)
            n_train = min(n, max(nlist * ix.IVF_TRAIN_PER_LIST, 65_536))
            index.train(x[_train_sample(n, n_train, random_state)])
            index.add(x)
            ivf.nprobe = min(nlist, probe)
            index.k_factor = float(factor)
            return index
        quantizer = faiss.IndexFlatIP(d)
        if kind == "flat":
            index = faiss.IndexIVFFlat(quantizer, d, nlist, ip)
        else:
            qt = {"sq8": "QT_8bit", "fp16": "QT_fp16", "sq6": "QT_6bit"}[kind]
            qtype = getattr(faiss.ScalarQuantizer, qt)
            index = faiss.IndexIVFScalarQuantizer(quantizer, d, nlist, qtype, ip)
        index.cp.seed = int(random_state)
        index.train(x[_train_sample(n, min(n, nlist * ix.IVF_TRAIN_PER_LIST), random_state)])
        index.add(x)
        index.nprobe = min(nlist, probe)
        return index

    return build


def main() -> None:
    n, variants = int(sys.argv[1]), sys.argv[2].split(",")
    print(describe())
    x = perturbed(real_inputs(ROOT / "runs" / "demo-logos"), n)
    kw = dict(x, normalize=False, k=15)
    q = np.sort(np.random.default_rng(1).choice(n, size=1000, replace=False))
    want, _ = nearest_neighbors(**kw, queries=q)
    for v in variants:
        kind, cap = v.split(":")
        ix.build_index = make_builder(kind, int(cap))
        t0 = time.perf_counter()
        got, _ = nearest_neighbors(**kw, exact_max=0)
        dt = time.perf_counter() - t0
        print(f"{v:10s} n={n} {dt:7.1f} s  recall@15 {recall(want, got[q]):.4f}", flush=True)


if __name__ == "__main__":
    main()
