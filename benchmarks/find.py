"""``lookalike find`` and adding images to a run (issue 15): recall, query time, cost of growth.

Run: ``.venv/bin/python benchmarks/find.py`` (all three parts; ``--parts recall speed grow``
for some; ``--precision fp32`` for the default precision: int8 is the default here because the
labelled sets' int8 vectors are in the cache).

1. **recall** on each labelled set (logos-dev and the sets of ``make_labelled_sets.py`` that
   exist): one image of every group with at least two is held out as the query (seeded), the
   run holds all the others (a folder run, ``logos`` preset, through stages 03 and 04 as the
   library runs them). Each query goes through :func:`lookalike.find.find` as a file. recall@k
   is the share of queries with an image of their group among the first k hits. Beside it,
   the P@1 of the run's own neighbours (``RUN/neighbors.parquet``: the share of the run's
   images, among those whose group has another image in the run, whose nearest neighbour is of
   their group), for the run without the queries and for a run of every image of the set:
   the same similarity, so recall@1 should reach it.
2. **speed**: a run of ``--n-speed`` (100,000) images built from the real stage-03 features of
   ``runs/demo-logos``, resampled with the seeded perturbation of ``benchmarks/scale.py``
   (written as the run's embeddings, with the run's ``logos`` settings). Times: building the
   space (whitening, faiss indexes, calibration: once per run), opening it again from
   ``RUN/index/``, and the search of ``--queries`` real demo logos (their own stage-03
   features), per query; and one whole ``find`` of an image file (embedding included).
3. **grow**: a folder run of ``--n-grow`` images of the labelled sets is given 10% more.
   Fresh: stages 03 and 04 on all 1.1 n images from an empty vector cache. Grown: the same on
   the first n, then on all of them (only that second call is compared: 03 embeds the new
   images, 04 places them). Each run has its own empty cache. The ratio grown / fresh is the
   issue's target (at most 15%).

Prints the CPU flags; every time is measured in this run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import ROOT, peak_rss_mb, read_labelled_set
from scale import cpu_flags, perturbed, real_inputs

from lookalike import cluster, embed, find, space, storage
from lookalike.folder import index_file
from lookalike.paths import RunLayout
from lookalike.similarity import resolve_preset

SETS = [
    ROOT.parent / "shared" / "data" / "logos-dev",
    ROOT / "benchmarks" / "sets" / "devicon",
    ROOT / "benchmarks" / "sets" / "emoji",
]
K_VALUES = [10, 50]


def _folder_run(run: RunLayout, paths: list[Path], precision: str) -> None:
    """Stages 03 and 04 of a folder run over ``paths`` (as the notebooks call them)."""
    rows = [index_file(p.resolve(), min_side=2, max_bytes=50_000_000) for p in paths]
    storage.merge_manifest(run, pd.DataFrame(rows))
    embed.embed_run(run, preset="logos", precision=precision, progress=False)
    cluster.cluster_run(run, k_values=K_VALUES, progress=False)


def recall(folder: Path, precision: str, tmp: Path) -> dict:
    df = read_labelled_set(folder)
    rng = np.random.default_rng(0)
    multi = df.groupby("group").filter(lambda g: len(g) >= 2)
    held = multi.groupby("group").sample(n=1, random_state=rng.integers(1 << 31))
    kept = df.drop(held.index)
    run = RunLayout(tmp / f"recall-{folder.name}")
    _folder_run(run, list(kept["path"]), precision)
    group_of = {str(p.resolve()): g for p, g in zip(df["path"], df["group"], strict=True)}
    queries = [str(p.resolve()) for p in held["path"]]
    t0 = time.perf_counter()
    hits = find.find(run, queries, name="bench", top=10, sheets=False, progress=False)
    dt = time.perf_counter() - t0
    hits["qgroup"] = hits["query"].map(group_of)
    hits["hgroup"] = hits["origin"].map(group_of)
    hits["same"] = hits["qgroup"] == hits["hgroup"]
    out = {"set": folder.name, "images in run": len(kept), "queries": len(held)}
    for k in (1, 5, 10):
        top = hits[hits["rank"] <= k].groupby("query")["same"].any()
        out[f"recall@{k}"] = float(top.reindex(queries, fill_value=False).mean())
    out["run P@1"] = _p_at_1(run, group_of, kept["group"])
    whole = RunLayout(tmp / f"all-{folder.name}")
    _folder_run(whole, list(df["path"]), precision)
    out["all-images P@1"] = _p_at_1(whole, group_of, df["group"])
    out["find s/query"] = dt / len(held)
    return out


def _p_at_1(run: RunLayout, group_of: dict, groups: pd.Series) -> float:
    """P@1 of ``RUN/neighbors.parquet`` over the images whose group has another image."""
    nb = pd.read_parquet(run.neighbors)
    nb = nb[nb["rank"] == 1]
    origin = storage.read_manifest(run, ok_only=True).set_index("image_id")["origin"]
    g_img = nb["image_id"].map(origin).map(group_of)
    g_nb = nb["neighbor_id"].map(origin).map(group_of)
    has_mate = g_img.map(groups.value_counts()) >= 2
    return float((g_img == g_nb)[has_mate].mean())


def _synthetic_run(run: RunLayout, n: int) -> None:
    """A run of ``n`` perturbed copies of the demo logos' features (see the docstring)."""
    base = real_inputs(ROOT / "runs/demo-logos")
    x = perturbed(base, n)
    run.embeddings_dir.mkdir(parents=True, exist_ok=True)
    np.save(run.vectors, x["vectors"])
    storage.write_table(pd.DataFrame({"image_id": [f"{i:064x}" for i in range(n)]}), run.ids)
    np.save(run.parts, x["parts"])
    np.save(run.part_mask, x["part_mask"])
    np.save(run.colour, x["colour"])
    storage.write_stamp(run.similarity_state, {"settings": resolve_preset("logos")})


def speed(n: int, n_queries: int, tmp: Path) -> None:
    run = RunLayout(tmp / "speed")
    _synthetic_run(run, n)
    t0 = time.perf_counter()
    sp = space.open_space(run)
    t_build = time.perf_counter() - t0
    space._OPEN.clear()  # as a new process would
    t0 = time.perf_counter()
    sp = space.open_space(run)
    t_open = time.perf_counter() - t0
    base = real_inputs(ROOT / "runs/demo-logos")  # the real logos, in the run's raw space
    pick = np.arange(min(n_queries, len(base["vectors"])))
    q = {k: base[k][pick] for k in ("vectors", "parts", "part_mask", "colour")}
    t0 = time.perf_counter()
    found = find.search(sp, sp.transform(dict(q, settings=sp.settings)), 10)
    t_search = (time.perf_counter() - t0) / len(pick)
    assert len(found) == len(pick)
    print(
        f"\n== speed: {n:,} images (demo logos resampled + perturbed), "
        f"index={'faiss IVF' if sp.wholes is not None else 'exact'}\n"
        f"space built in {t_build:.1f} s (whitening, indexes, calibration; once per run), "
        f"opened again in {t_open:.2f} s; search {t_search * 1000:.1f} ms per query "
        f"({len(pick)} real demo logos as queries); peak RSS {peak_rss_mb():.0f} MiB"
    )
    demo = tmp / "demo-logos"  # a copy: the benchmark leaves the demo run as it was
    if (ROOT / "runs/demo-logos/embeddings").is_dir():
        shutil.copytree(ROOT / "runs/demo-logos", demo, symlinks=True)
        logo = sorted((ROOT / "data/demo/logos").glob("*.png"))[0]
        t0 = time.perf_counter()
        find.find(demo, [str(logo)], name="bench-one", sheets=False, progress=False)
        print(
            f"one whole find of an image file against runs/demo-logos (embedding it included): "
            f"{time.perf_counter() - t0:.2f} s"
        )


def _timed_run(run: RunLayout, paths: list[Path], precision: str, cache: Path) -> float:
    os.environ["LOOKALIKE_CACHE"] = str(cache)
    t0 = time.perf_counter()
    _folder_run(run, paths, precision)
    return time.perf_counter() - t0


def grow(n: int, precision: str, tmp: Path) -> None:
    files = []
    for folder in SETS:
        if (folder / "labels.csv").is_file():
            files += list(read_labelled_set(folder)["path"])
    total = int(round(1.1 * n))  # a run of n, then 10% more
    files = files[:total]
    if len(files) < total:
        print(f"grow: only {len(files)} labelled images found (asked for {total})")
    cut = int(round(len(files) / 1.1))
    saved = os.environ.get("LOOKALIKE_CACHE")
    try:
        t_fresh = _timed_run(RunLayout(tmp / "fresh"), files, precision, tmp / "cache-fresh")
        run = RunLayout(tmp / "grown")
        t_first = _timed_run(run, files[:cut], precision, tmp / "cache-grown")
        before = pd.read_parquet(run.clusters)
        t_add = _timed_run(run, files, precision, tmp / "cache-grown")
        after = pd.read_parquet(run.clusters)
    finally:
        if saved is None:
            os.environ.pop("LOOKALIKE_CACHE", None)
        else:
            os.environ["LOOKALIKE_CACHE"] = saved
    kept = before.merge(after, on=["image_id", "method", "k"], suffixes=("", "_after"))
    same = float((kept["cluster"] == kept["cluster_after"]).mean())
    print(
        f"\n== grow: {len(files)} images ({precision}): fresh run (03 + 04, empty cache) "
        f"{t_fresh:.1f} s; first {cut} images {t_first:.1f} s; adding the last "
        f"{len(files) - cut} ({100 * (len(files) - cut) / cut:.0f}%) {t_add:.1f} s = "
        f"{t_add / t_fresh:.2f}x the fresh run (target <= 0.15); old images keeping their "
        f"cluster: {100 * same:.1f}%"
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", nargs="+", default=["recall", "speed", "grow"])
    p.add_argument("--precision", default="int8", choices=["fp32", "int8"])
    p.add_argument("--set", action="append", type=Path, help="labelled set folder(s)")
    p.add_argument("--n-speed", type=int, default=100_000)
    p.add_argument("--queries", type=int, default=50)
    p.add_argument("--n-grow", type=int, default=2000, help="images before the 10%% added")
    a = p.parse_args(argv)
    print(f"CPU flags: {cpu_flags()}")
    tmp = Path(tempfile.mkdtemp(prefix="find-bench-"))
    try:
        if "recall" in a.parts:
            rows = []
            for s in a.set or SETS:
                if s.is_dir():
                    rows.append(recall(s, a.precision, tmp))
                    print(rows[-1], flush=True)
            print("\n| " + " | ".join(rows[0]) + " |\n|" + "---|" * len(rows[0]))
            for r in rows:
                cells = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in r.values()]
                print("| " + " | ".join(cells) + " |", flush=True)
        if "speed" in a.parts:
            speed(a.n_speed, a.queries, tmp)
        if "grow" in a.parts:  # fp32: int8 would build its quantized model in each empty cache
            grow(a.n_grow, "fp32", tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
