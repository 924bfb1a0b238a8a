"""End to end on real logos: the seeds' way against ``lookalike run``, same images, same run.

On ``--n`` logos (default 10,000) of the ``many`` set that ``benchmarks/make_labelled_sets.py
--sets many`` builds from npm icon packages (whole label groups drawn in a seeded order, so
the brands with several drawings keep their partners), measured one after the other:

(c) first, whether (a) can finish ``n`` within ``--budget-s`` (default 1,800 s): the seeds'
    ``predict`` is timed on the first ``--probe`` images (100), and the float32 product that
    KMeans spends its time in (256 vectors x 300 centres x 25,088) on their vectors; the
    estimate is model load + n x seconds per image + for every k of the sweep
    ``2 n k d (iterations + 2 + ln k)`` FLOP at that rate (k-means++ tries ``2 + ln k``
    candidates per centre, each Lloyd iteration compares every point with every centre;
    ``--assume-iters`` 15 iterations). One KMeans fit at k = ``--probe-k`` (20) on the probe's
    vectors is timed beside what the formula says for it. If the estimate exceeds the budget,
    n becomes the largest round number that fits, and the reason is printed. The probe's
    images are the first images of (a): their vectors are kept and their time counts in (a).
    After (a), its estimate is printed beside what it took.
(a) the seeds' way: for each image ``convert("RGB").resize((224, 224))``, ``preprocess_input``,
    one ``model.predict``, flatten to 25,088 values (fp32 Keras); then
    ``KMeans(n_clusters=k, random_state=0)`` with scikit-learn's other defaults on those
    vectors for every k of stage 04's default sweep (``lookalike.kmeans.DEFAULT_K_VALUES``,
    clipped to k < n as stage 04 clips it).
(b) our way, as a user runs it: ``python -m lookalike run CONFIG --from NN --to NN`` for 01
    (the folder indexed), 03 (VGG16 vectors, the logo parts and colour of the ``logos``
    preset) and 04 (PCA, the same k sweep with the project's KMeans, the agglomerative and
    the similarity clusterings, ``RUN/neighbors.parquet``), every other parameter at its
    default (so precision is whatever the default is; the run's own record says which), an
    empty vector cache, HTML reports on. Stage 05 (figures, map, gallery) is not part of it.
    ``--precision P`` (repeatable) runs (b) once per value with ``precision: P`` in its
    config instead; when that is int8 (``auto`` on a CPU with VNNI or AMX), the int8 model
    is quantized into the empty cache beforehand, as the weights are converted beforehand (a
    one-time cost per machine; its seconds are printed, not counted).

Printed: n, the CPU's instruction sets, each way's seconds per stage and in total, images/s,
peak memory (resident set of the processes, sampled every 0.2 s: this process for (a), the
runner and its kernels for (b)), the ratio (a) / (b) against the 10x target, and the quality
of both on the labelled images (those whose group has another image among the n):

* ``P@1``: share whose nearest other image (among all n) is of the same group; (a) Euclidean
  on the flattened vectors, (b) rank 1 of ``RUN/neighbors.parquet`` (the preset's similarity);
* ``ARI`` on the labelled images of each clustering of all n images, at one k for both: the
  sweep's k closest to the number of groups among the n images (singletons count as groups:
  the clustering sees them), and the best over the sweep in brackets.

Run: ``.venv/bin/python benchmarks/end_to_end.py [--n 10000] [--budget-s 1800]`` after
``benchmarks/make_labelled_sets.py --sets many``; ``--n 300`` is a smoke run (~10 min).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would interleave with the figures

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import psutil  # noqa: E402
import yaml  # noqa: E402
from _common import (  # noqa: E402
    ROOT,
    SeedsEmbedder,
    nearest_neighbours,
    read_labelled_set,
)
from sklearn.metrics import adjusted_rand_score  # noqa: E402

from lookalike import cpu, model  # noqa: E402
from lookalike.kmeans import DEFAULT_K_VALUES, clip_k_values  # noqa: E402

DEFAULT_SET = ROOT / "benchmarks" / "sets" / "many"
TARGET = 10.0


def pick_images(meta: pd.DataFrame, n: int, *, seed: int = 0) -> pd.DataFrame:
    """``n`` rows of a labelled set, whole groups taken in a seeded random order.

    The groups are shuffled once, so a smaller ``n`` is a prefix of a larger one; the last
    group is cut to fit. Returns the rows, in that order, with a ``labelled`` column (True
    when another row of the same group is among them).
    """
    groups = list(dict.fromkeys(meta["group"]))
    random.Random(seed).shuffle(groups)
    order = {g: i for i, g in enumerate(groups)}
    picked = meta.assign(_o=meta["group"].map(order)).sort_values(["_o", "path"], kind="stable")
    picked = picked.head(n).drop(columns="_o").reset_index(drop=True)
    picked["labelled"] = picked["group"].map(picked["group"].value_counts()) >= 2
    return picked


@contextmanager
def peak_rss(pid: int | None = None, box: dict | None = None, *, every_s: float = 0.2):
    """Sample the resident memory of process ``pid`` (default: this one) and its children.

    Yields ``box``, whose ``"peak_mb"`` holds the largest sum seen (MiB) once the block ends.
    """
    box = {} if box is None else box
    box["peak_mb"] = 0.0
    done = threading.Event()
    root = psutil.Process(pid or os.getpid())

    def sample() -> None:
        while not done.is_set():
            total = 0
            try:
                procs = [root, *root.children(recursive=True)] if pid else [root]
                for p in procs:
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
            except psutil.Error:
                pass
            box["peak_mb"] = max(box["peak_mb"], total / 2**20)
            done.wait(every_s)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        yield box
    finally:
        done.set()
        t.join()


# -- (a) the seeds' way ------------------------------------------------------------------------


def seeds_kmeans(X: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """The seeds' clustering: ``KMeans(n_clusters=k, random_state=0)``, defaults otherwise.

    Returns the labels (n,) and the number of Lloyd iterations it ran.
    """
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, random_state=0).fit(X)
    return km.labels_, int(km.n_iter_)


def gemm_rate(X: np.ndarray, k: int, *, rows: int = 256, repeat: int = 3) -> float:
    """Float32 FLOP/s of the product KMeans spends its time in: ``rows`` vectors x ``k`` centres.

    ``X`` (m, d) are real vectors (the probe's), tiled to ``rows``; the centres are ``k`` of
    them. scikit-learn's Lloyd step and k-means++ both compute such chunks of distances.
    """
    A = np.ascontiguousarray(np.resize(X, (rows, X.shape[1])), dtype=np.float32)
    C = np.ascontiguousarray(np.resize(X[::-1], (k, X.shape[1])), dtype=np.float32)
    A @ C.T  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeat):
        A @ C.T
    return 2.0 * rows * k * X.shape[1] * repeat / (time.perf_counter() - t0)


def kmeans_seconds(n: int, k: int, *, dim: int, flops: float, iters: float) -> float:
    """Estimated seconds of one ``KMeans(n_clusters=k)`` fit on ``n`` x ``dim`` vectors.

    k-means++ evaluates ``2 + ln k`` candidates per centre against every point, each Lloyd
    iteration every point against every centre: ``2 n k dim (iters + 2 + ln k)`` FLOP at
    ``flops`` FLOP/s.
    """
    return 2.0 * n * k * dim * (iters + 2 + np.log(k)) / flops


def estimate_seconds(
    n: int, *, load_s: float, s_per_img: float, dim: int, flops: float, iters: float
) -> float:
    """Estimated seconds of (a) for ``n`` images (see the module docstring, (c))."""
    ks = [k for k in sorted(set(DEFAULT_K_VALUES)) if 2 <= k < n]
    fits = sum(kmeans_seconds(n, k, dim=dim, flops=flops, iters=iters) for k in ks)
    return load_s + n * s_per_img + fits


def fitting_n(n: int, budget_s: float, **rates: float) -> int:
    """The largest round n <= ``n`` whose estimate fits ``budget_s`` (at least 100)."""
    if estimate_seconds(n, **rates) <= budget_s:
        return n
    for step in (1000, 500, 100):
        fits = [m for m in range(step, n, step) if estimate_seconds(m, **rates) <= budget_s]
        if fits and (step == 100 or fits[-1] >= 5 * step):
            return fits[-1]
    return 100


# -- (b) our way -------------------------------------------------------------------------------


def our_way(images: list[Path], work: Path, log: Path, precision: str | None = None) -> dict:
    """``lookalike run`` stages 01, 03, 04 on a folder holding copies of ``images``.

    ``precision`` (None: the project's default) goes into the run's config. When it is or
    resolves to int8, the int8 model is quantized into the run's empty cache beforehand, as
    the VGG16 weights are converted beforehand: a one-time cost per machine, not per run
    (its seconds are returned as ``int8_build_s``, outside the stages).
    """
    folder = work / "images"
    folder.mkdir()
    for i, p in enumerate(images):
        shutil.copyfile(p, folder / f"{i:06d}_{p.name}")
    run_dir = work / "run"
    config = work / "e2e.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "run_dir": str(run_dir),
                "source": "folder",
                "image_dir": str(folder),
                "preset": "logos",
                "cache_dir": str(work / "cache"),  # empty: every vector is computed
                **({"precision": precision} if precision else {}),
            }
        )
    )
    out: dict = {"stages": {}, "peak_mb": 0.0, "run_dir": run_dir, "int8_build_s": 0.0}
    resolved = cpu.auto_precision()[0] if precision == "auto" else precision
    if resolved == "int8":
        from lookalike import similarity

        logos = similarity.resolve_preset("logos")
        t0 = time.perf_counter()
        for size in {logos["image_size"], logos["part_size"]}:
            model.build_int8_model(
                layer=logos["layer"], image_size=size, cache_dir=work / "cache", progress=False
            )
        out["int8_build_s"] = time.perf_counter() - t0
    env = {**os.environ, "PYTHONPATH": str(ROOT / "lib")}
    with log.open("w") as fh:
        for stage in ("01", "03", "04"):
            cmd = [sys.executable, "-m", "lookalike", "run", str(config), "--from", stage]
            cmd += ["--to", stage, "--no-progress"]
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
            with peak_rss(proc.pid) as box:
                rc = proc.wait()
            out["stages"][stage] = time.perf_counter() - t0
            out["peak_mb"] = max(out["peak_mb"], box["peak_mb"])
            if rc:
                raise SystemExit(f"lookalike run --from {stage} failed (exit {rc}); see {log}")
    return out


#: Lines of ``RUN/run.log`` worth repeating: the stages' own summaries and durations.
_LOG_LINE = re.compile(
    r"INFO (?:\[\d\d_\w+\] )?((?:embed: \d+/\d+ images|similarity: \d+ images|cost: |cluster: \d+ "
    r"images|done \d\d_).*)"
)


def run_facts(run_dir: Path) -> dict:
    """Precision, backend, the run's summary lines and 04's breakdown, from the run folder."""
    from lookalike import storage
    from lookalike.paths import RunLayout

    run = RunLayout(run_dir)
    state = storage.read_stamp(run.embed_state) or {}
    facts: dict = {"precision": state.get("key", {}).get("params", {}).get("precision", "?")}
    log = run.root.joinpath("run.log").read_text(errors="replace")
    facts["lines"] = [m.group(1) for m in map(_LOG_LINE.search, log.splitlines()) if m]
    found = re.search(r"dim \d+, (\w+) \((\w+), engine (\w+)\)", log)
    facts["backend"] = f"{found.group(2)}, engine {found.group(3)}" if found else "?"
    metrics = pd.read_csv(run.metrics)
    facts["seconds_by_method"] = metrics.groupby("method")["seconds"].sum().to_dict()
    facts["estimator"] = metrics.loc[metrics["method"] == "kmeans", "estimator"].iloc[0]
    return facts


# -- quality -----------------------------------------------------------------------------------


def ari_at(
    y: np.ndarray, labelled: np.ndarray, labels_by_k: dict[int, np.ndarray], k: int
) -> tuple[float, float, int]:
    """ARI on the labelled rows at ``k``, and the best ARI over every k with its k."""
    scores = {
        kk: adjusted_rand_score(y[labelled], lab[labelled]) for kk, lab in labels_by_k.items()
    }
    best = max(scores, key=scores.get)
    return float(scores[k]), float(scores[best]), int(best)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000, help="number of logos (default 10000)")
    ap.add_argument("--set", type=Path, default=DEFAULT_SET, help="labelled set (default many)")
    ap.add_argument("--budget-s", type=float, default=1800.0, help="time budget of (a), seconds")
    ap.add_argument("--probe", type=int, default=100, help="images timed before choosing n")
    ap.add_argument("--probe-k", type=int, default=20, help="k of the probe's KMeans fit")
    ap.add_argument(
        "--assume-iters", type=int, default=15, help="Lloyd iterations assumed per KMeans fit"
    )
    ap.add_argument("--seed", type=int, default=0, help="seed of the group order")
    ap.add_argument("--keep", type=Path, default=None, help="keep our run folder here")
    ap.add_argument(
        "--precision",
        action="append",
        choices=("fp32", "int8", "bf16", "auto"),
        help="run (b) at this precision (repeatable, one run each; default: the default)",
    )
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", message="dropped k=")

    meta = read_labelled_set(args.set)
    print(f"set {args.set}: {len(meta)} images of {meta['group'].nunique()} groups")
    print(f"CPU: {os.cpu_count()} cores; {cpu.describe()}")
    ks_all = sorted(set(DEFAULT_K_VALUES))
    print(f"stage 04's default k sweep: {len(ks_all)} values {ks_all}")

    # (c) can the seeds' way finish n within the budget?
    args.probe = min(args.probe, args.n)
    picked = pick_images(meta, max(args.n, args.probe), seed=args.seed)
    paths = list(picked["path"])
    seeds = SeedsEmbedder()
    probe_s = seeds.embed(paths[: args.probe])
    s_per_img = probe_s / args.probe
    X = np.stack(seeds.vectors)
    t0 = time.perf_counter()
    _, probe_iters = seeds_kmeans(X, args.probe_k)
    fit_s = time.perf_counter() - t0
    mid_k = ks_all[len(ks_all) // 2]
    rates = {
        "load_s": seeds.load_s,
        "s_per_img": s_per_img,
        "dim": X.shape[1],
        "flops": gemm_rate(X, mid_k),
        "iters": args.assume_iters,
    }
    est = estimate_seconds(args.n, **rates)
    model_fit = kmeans_seconds(
        args.probe, args.probe_k, dim=X.shape[1], flops=rates["flops"], iters=probe_iters
    )
    print(
        f"(c) probe: model load {seeds.load_s:.1f} s, predict {s_per_img:.3f} s/image on "
        f"{args.probe} images; float32 product at KMeans' shape (256 x {mid_k} centres x "
        f"{X.shape[1]}) {rates['flops'] / 1e9:.0f} GFLOP/s; KMeans k={args.probe_k} on the "
        f"{args.probe} vectors {fit_s:.2f} s ({probe_iters} it; the model says "
        f"{model_fit:.2f} s + overhead)"
    )
    print(
        f"(c) estimate for n={args.n}: {est:.0f} s = load + n x s/image + for each k < n of the "
        f"sweep 2 n k d (iterations + 2 + ln k) FLOP (k-means++ then Lloyd, {args.assume_iters} "
        f"iterations assumed) at that rate"
    )
    n = fitting_n(args.n, args.budget_s, **rates)
    if n < args.n:
        print(
            f"(c) the seeds' way would take ~{est:.0f} s > budget {args.budget_s:.0f} s for "
            f"n={args.n}: both ways run on n={n} (estimate {estimate_seconds(n, **rates):.0f} s)"
        )
    picked, paths = picked.head(n).copy(), paths[:n]
    picked["labelled"] = picked["group"].map(picked["group"].value_counts()) >= 2
    y = pd.factorize(picked["group"])[0]
    labelled = picked["labelled"].to_numpy()
    n_groups, n_lab_groups = picked["group"].nunique(), picked.loc[labelled, "group"].nunique()
    ks = clip_k_values(ks_all, n)
    k_eval = min(ks, key=lambda k: (abs(k - n_groups), k))
    print(
        f"n={n} logos: {n_groups} groups; {int(labelled.sum())} labelled images in "
        f"{n_lab_groups} groups of 2 or more, {int((~labelled).sum())} singletons; "
        f"k sweep {ks}; ARI at k={k_eval} (the sweep's k closest to {n_groups} groups)"
    )

    # (a) the seeds' way, the probe's images included
    with peak_rss() as seeds_mem:
        seeds.embed(paths[args.probe :])
        embed_s = seeds.load_s + seeds.seconds
        X = np.stack(seeds.vectors)
        seeds.vectors.clear()
        t0 = time.perf_counter()
        seeds_labels, per_k = {}, []
        for k in ks:
            t1 = time.perf_counter()
            seeds_labels[k], iters = seeds_kmeans(X, k)
            per_k.append(f"k={k} {time.perf_counter() - t1:.1f} s ({iters} it)")
        sweep_s = time.perf_counter() - t0
    seeds_total = embed_s + sweep_s
    nn = nearest_neighbours(X)
    seeds_p1 = float(np.mean(y[nn][labelled] == y[labelled]))
    seeds_ari = ari_at(y, labelled, seeds_labels, k_eval)
    del X, seeds

    # (b) our way, once per precision asked for
    seeds_rows = [
        ("(a) seeds: embed (predict per image, load incl.)", embed_s, None),
        (f"(a) seeds: KMeans on 25,088-d, {len(ks)} k", sweep_s, None),
        ("(a) seeds: total", seeds_total, seeds_mem["peak_mb"]),
    ]
    print_row = _row_printer(n)
    print(
        f"(c) estimate for the seeds' way at n={n} was {estimate_seconds(n, **rates):.0f} s "
        f"(embed {rates['load_s'] + n * rates['s_per_img']:.0f} s); measured "
        f"{seeds_total:.0f} s (embed {embed_s:.0f} s, KMeans {sweep_s:.0f} s)"
    )
    print(f"(a)'s KMeans fits: {', '.join(per_k)}")
    for precision in args.precision or [None]:
        work = Path(tempfile.mkdtemp(prefix="lookalike-e2e-"))
        try:
            ours = our_way(paths, work, work / "lookalike-run.log", precision=precision)
            facts = run_facts(ours["run_dir"])
            ours_quality = our_quality(ours["run_dir"], paths, y, labelled, k_eval)
            if args.keep:
                shutil.copytree(work / "run", args.keep / str(precision), dirs_exist_ok=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        ours_total = sum(ours["stages"].values())
        asked = precision or "the default"
        print(f"\n== (b) precision {asked}: our run's own summary lines:")
        for line in facts["lines"]:
            print(f"  {line}")
        print(
            f"our way: preset logos, precision {facts['precision']} ({facts['backend']}), "
            f"KMeans estimator {facts['estimator']}"
            + (
                f"; int8 model built beforehand in {ours['int8_build_s']:.0f} s (once per "
                "machine, not counted)"
                if ours["int8_build_s"]
                else ""
            )
        )
        by = facts["seconds_by_method"]
        print(
            "  stage 04 inside (metrics.csv seconds): "
            + ", ".join(f"{m} {s:.1f} s" for m, s in sorted(by.items()))
        )
        head = f"{'way':50s} {'seconds':>9s} {'images/s':>9s} {'peak MiB':>9s}"
        print(head)
        print("-" * len(head))
        rows = seeds_rows + [
            ("(b) ours: 01 index the folder", ours["stages"]["01"], None),
            ("(b) ours: 03 embed + parts + colour", ours["stages"]["03"], None),
            ("(b) ours: 04 PCA, sweep, clusterings, nbrs", ours["stages"]["04"], None),
            ("(b) ours: total", ours_total, ours["peak_mb"]),
        ]
        for label, sec, mem in rows:
            print_row(label, sec, mem)
        ratio = seeds_total / ours_total
        print(
            f"end to end, n={n}, precision {facts['precision']}: seeds {seeds_total:.0f} s / "
            f"ours {ours_total:.0f} s = {ratio:.2f}x (target >= {TARGET:.0f}x: "
            f"{'met' if ratio >= TARGET else 'NOT met'}); embedding alone "
            f"{embed_s / ours['stages']['03']:.2f}x, clustering alone "
            f"{sweep_s / ours['stages']['04']:.2f}x"
        )
        print(f"quality on the {int(labelled.sum())} labelled images ({n_lab_groups} groups):")
        print(f"{'way':50s} {'P@1':>6s} {'ARI@' + str(k_eval):>9s} {'best ARI (k)':>16s}")
        qrows = [("(a) seeds: Euclidean NN, KMeans 25,088-d", seeds_p1, seeds_ari)]
        for method, res in ours_quality["ari"].items():
            qrows.append((f"(b) ours: neighbors.parquet, {method}", ours_quality["p1"], res))
        for label, p1, (a, best, kb) in qrows:
            print(f"{label:50s} {p1:6.3f} {a:9.3f} {best:9.3f} ({kb:4d})")
    return 0


def _row_printer(n: int):
    """Prints one row of the timing table: label, seconds, images/s, peak MiB (or blank)."""

    def row(label: str, seconds: float, mem: float | None) -> None:
        mem_txt = f"{mem:9.0f}" if mem else f"{'':9s}"
        print(f"{label:50s} {seconds:9.1f} {n / seconds:9.2f} {mem_txt}")

    return row


def our_quality(run_dir: Path, paths: list[Path], y: np.ndarray, labelled: np.ndarray, k: int):
    """P@1 from ``RUN/neighbors.parquet`` and ARI per method from ``RUN/clusters.parquet``."""
    from lookalike import storage

    row_of_id: dict[str, int] = {}
    for i, p in enumerate(paths):
        row_of_id.setdefault(storage.sha256_bytes(p.read_bytes()), i)
    nb = pd.read_parquet(run_dir / "neighbors.parquet")
    first = nb[nb["rank"] == 1]
    nn = np.full(len(paths), -1)
    for a, b in zip(first["image_id"], first["neighbor_id"], strict=True):
        nn[row_of_id[a]] = row_of_id[b]
    ok = labelled & (nn >= 0)
    p1 = float(np.mean(y[nn[ok]] == y[ok]))
    cl = pd.read_parquet(run_dir / "clusters.parquet")
    ari = {}
    for method, df in cl.groupby("method", sort=False):
        by_k = {}
        for kk, d in df.groupby("k"):
            lab = np.full(len(paths), -1)
            lab[[row_of_id[i] for i in d["image_id"]]] = d["cluster"].to_numpy()
            by_k[int(kk)] = lab
        ari[method] = ari_at(y, labelled, by_k, k)
    return {"p1": p1, "ari": ari}


if __name__ == "__main__":
    raise SystemExit(main())
