"""Clustering from the kNN graph (issue 14, part 3): quality against the dense trees, and scale.

Run: ``.venv/bin/python benchmarks/graph_cluster.py`` (sets: logos-dev and the sets of
``benchmarks/make_labelled_sets.py`` that exist; ``--set DIR`` for others; ``--sizes`` for the
build at scale, default 20,000 and 100,000; ``--precision int8`` embeds ~3x faster).

1. **quality**: each labelled set is embedded with the ``logos`` preset as stage 03 does
   (``embed_images`` + ``embed_extras``, cached) and clustered at k = the number of groups by
   the dense trees (``similarity``: average linkage on 1 - the fused similarity;
   ``agglomerative``: cosine on PCA 100) and by the graph trees of :mod:`lookalike.graph` for
   several graph k; it prints ARI against the labels, and between dense and graph labels.
2. **scale**: the real fused inputs of ``runs/demo-logos`` resampled with a seeded
   perturbation (``benchmarks/scale.py`` ``perturbed``) to n rows; the kNN search
   (:func:`lookalike.neighbors.nearest_neighbors`) and the graph tree are timed separately,
   with the peak RSS and the CPU flags.
3. **tree only** (``--tree-sizes 100000 1000000``): :func:`lookalike.graph.graph_tree` (the
   two-level tree above ``TWO_LEVEL_ABOVE``) on tiled synthetic kNN graphs, against Paris
   alone on the same graph (up to ``--paris-max`` rows) as the baseline.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import ROOT, peak_rss_mb, read_labelled_set
from scale import cpu_flags, perturbed, real_inputs
from sklearn.metrics import adjusted_rand_score as ari

from lookalike import cluster, embed, graph, storage
from lookalike import similarity as sim
from lookalike.extras import embed_extras
from lookalike.neighbors import nearest_neighbors
from lookalike.reduce import fit_pca

SETS = [
    ROOT.parent / "shared" / "data" / "logos-dev",
    ROOT / "benchmarks" / "sets" / "devicon",
    ROOT / "benchmarks" / "sets" / "emoji",
]


def set_features(folder: Path, precision: str) -> tuple[dict, np.ndarray]:
    """Stage 03's features of a labelled set under the ``logos`` preset, and its labels."""
    df = read_labelled_set(folder)
    settings = sim.resolve_preset("logos")
    ids = [storage.sha256_bytes(p.read_bytes()) for p in df["path"]]
    paths = [str(p.resolve()) for p in df["path"]]
    rows = pd.DataFrame(
        {"image_id": ids, "path": paths, "source": "folder", "origin": paths, "status": "ok"}
    )
    label_of = dict(zip(ids, df["label"], strict=True))
    with tempfile.TemporaryDirectory(prefix="graph-run-") as run:
        storage.merge_manifest(run, rows)
        embed.embed_images(run, **sim.embed_kwargs(settings), precision=precision)
        embed_extras(run, settings, precision=precision)
        feats = sim.load_features(run)
        feats["vectors"] = np.array(feats["vectors"])
    y = np.array([label_of[i] for i in feats["ids"]["image_id"].astype(str)])
    return feats, y


def quality(folder: Path, precision: str, graph_ks: list[int]) -> None:
    feats, y = set_features(folder, precision)
    k = len(np.unique(y))
    inputs = sim.fused_inputs(feats)
    Z, _ = fit_pca(feats["vectors"], n_components=100)
    dense = {
        "similarity": cluster.similarity_clusters(sim.similarity_matrix(**inputs), n_clusters=k),
        "agglomerative": cluster.agglomerative_labels(Z, n_clusters=k),
    }
    print(f"\n== {folder.name}: {len(y)} images, {k} groups")
    print(
        "| method | graph k | ARI dense | ARI graph | graph - dense | ARI(dense, graph) "
        "| ARI two-level | two-level - dense | communities |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for gk in graph_ks:
        found = {
            "similarity": (nearest_neighbors(**inputs, k=gk, normalize=False), inputs["vectors"]),
            "agglomerative": (nearest_neighbors(Z, k=gk), Z),
        }
        for method, ((index, s), vectors) in found.items():
            g, _ = graph.join_components(graph.knn_graph(index, s), vectors)
            labels = graph.cut_graph_tree(graph._paris(g), n_clusters=k)
            # the two-level tree forced (graph_tree uses it above TWO_LEVEL_ABOVE only)
            m = int(graph.communities(g).max()) + 1
            two = graph.cut_graph_tree(graph.two_level_tree(g), n_clusters=k)
            a, b, c = ari(y, dense[method]), ari(y, labels), ari(y, two)
            print(
                f"| {method} | {gk} | {a:.3f} | {b:.3f} | {b - a:+.3f} | "
                f"{ari(dense[method], labels):.3f} | {c:.3f} | {c - a:+.3f} | {m} |",
                flush=True,
            )


def scale(run: Path, sizes: list[int], gk: int) -> None:
    base = real_inputs(run)
    print(f"\n== scale: {len(base['vectors'])} real logos of {run}, resampled + perturbed")
    print("| n | kNN search (s) | graph tree (s) | components | peak RSS (MiB) |")
    print("|---:|---:|---:|---:|---:|")
    for n in sizes:
        x = perturbed(base, n)
        t0 = time.perf_counter()
        index, s = nearest_neighbors(**x, k=gk, normalize=False)
        t1 = time.perf_counter()
        _, n_comp = graph.knn_tree(index, s, x["vectors"])
        t2 = time.perf_counter()
        print(
            f"| {n:,} | {t1 - t0:.1f} | {t2 - t1:.1f} | {n_comp} | {peak_rss_mb():.0f} |",
            flush=True,
        )


def tiled_graph(n: int, base: int, gk: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """A kNN graph of n rows: ``base`` clustered unit vectors (n / 50 centres in 10-d, exact
    kNN by sklearn), tiled n / base times with 1% of the edges sent to the next tile."""
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(seed)
    c = rng.normal(size=(max(base // 50, 2), 10))
    x = c[rng.integers(0, len(c), base)] + rng.normal(0, 0.35, (base, 10))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    dist, idx = NearestNeighbors(n_neighbors=gk + 1).fit(x).kneighbors(x)
    reps = -(-n // base)
    index = np.concatenate([idx[:, 1:] + r * base for r in range(reps)])[:n]
    index[rng.random(index.shape) < 0.01] += base
    sim = np.tile(1.0 - dist[:, 1:] ** 2 / 2, (reps, 1))[:n]
    return index % n, sim, np.tile(x, (reps, 1))[:n]


def tree_scale(sizes: list[int], base: int, gk: int, paris_max: int) -> None:
    """Time graph_tree (two-level above TWO_LEVEL_ABOVE) against Paris alone (baseline, up to
    ``paris_max`` rows) on :func:`tiled_graph`."""
    print(f"\n== tree only: tiled kNN graphs (base {base:,} rows, k = {gk})")
    print("| n | edges | communities | graph_tree (s) | Paris alone (s) | ratio | peak RSS (MiB) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        index, s, x = tiled_graph(n, min(base, n), gk)
        g, _ = graph.join_components(graph.knn_graph(index, s), x)
        t0 = time.perf_counter()
        tree = graph.graph_tree(g)
        t1 = time.perf_counter() - t0
        assert len(np.unique(graph.cut_graph_tree(tree, n_clusters=1000))) == 1000
        m = int(graph.communities(g).max()) + 1 if n > graph.TWO_LEVEL_ABOVE else 0
        rss = peak_rss_mb()
        paris = ratio = "-"
        if n <= paris_max:
            t0 = time.perf_counter()
            graph._paris(g)
            p = time.perf_counter() - t0
            paris, ratio = f"{p:.1f}", f"{p / t1:.1f}x"
        print(f"| {n:,} | {g.nnz // 2:,} | {m:,} | {t1:.1f} | {paris} | {ratio} | {rss:.0f} |")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", action="append", type=Path)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--graph-k", type=int, nargs="+", default=[10, graph.GRAPH_K, 30])
    ap.add_argument("--sizes", type=int, nargs="*", default=[20_000, 100_000])
    ap.add_argument("--run", type=Path, default=ROOT / "runs" / "demo-logos")
    ap.add_argument("--no-quality", action="store_true", help="only the scale part")
    ap.add_argument("--tree-sizes", type=int, nargs="*", default=[], help="tree-only sizes")
    ap.add_argument("--tree-base", type=int, default=100_000)
    ap.add_argument("--paris-max", type=int, default=200_000)
    a = ap.parse_args(argv)
    print(f"CPU flags: {cpu_flags()}")
    sets = [] if a.no_quality else a.set or [s for s in SETS if (s / "labels.csv").is_file()]
    for folder in sets:
        quality(folder, a.precision, a.graph_k)
    if a.sizes:
        scale(a.run, a.sizes, graph.GRAPH_K)
    if a.tree_sizes:
        tree_scale(a.tree_sizes, a.tree_base, graph.GRAPH_K, a.paris_max)


if __name__ == "__main__":
    main()
