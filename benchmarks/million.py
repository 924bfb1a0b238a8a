"""Stages 04 and 05 at a million images: each step's time and peak RSS (issue 14, part 4).

Run: ``.venv/bin/python benchmarks/million.py`` (n = 1,000,000; ``--n 20000`` for a short
run). The target is the whole of 04 and 05 in under 30 minutes on 2 cores with a peak RSS
under 16 GB; the last lines print the total against that budget.

**The run is not invented clusters.** :func:`build_run` writes a run folder of ``n`` images
whose ``RUN/embeddings/`` is laid out exactly as stage 03 writes it (``vectors.npy``,
``ids.parquet`` and, for the ``logos`` workload, ``parts.npy``, ``part_mask.npy``,
``colour.npy`` and the ``similarity.json`` of the real run, so stage 04 runs the fused
similarity, its kNN graph and the ``similarity`` clustering). Its rows are real stage-03
outputs of the demo runs (``runs/demo-logos`` for ``logos``, ``runs/demo-catalog`` for
``photos``), resampled with seeded Gaussian noise by :func:`scale.perturbed` (norm
:data:`scale.NOISE` on each unit vector and part, a relative 10% on the colour signature),
so the neighbour structure is that of the real images, blurred. Each row of
``images.parquet`` points at the real image file its vector came from (the files are
reused), under a unique ``image_id``.

Then, in this process, it times stage 04 (:func:`lookalike.cluster.cluster_run`, default
parameters) and every step of notebook 05 as the notebook calls it, printing after each step
its seconds and the peak RSS so far (:func:`_common.peak_rss_mb`). The build runs before the
timer and writes in chunks, so it adds little to the peak.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _common import ROOT, peak_rss_mb
from scale import cpu_flags, perturbed

from lookalike import storage
from lookalike.paths import RunLayout

#: The budget of issue 14 for the whole of 04 and 05 at 1,000,000 images.
BUDGET_S = 30 * 60
#: ... and its memory target.
BUDGET_RSS_MB = 16 * 1024
#: Rows generated and written at a time (bounds the build's memory).
CHUNK = 50_000
#: The real runs resampled: this checkout's, else the main checkout's (worktrees have none).
RUNS = next(
    (r for r in (ROOT / "runs", Path("/work/main/runs")) if (r / "demo-logos").is_dir()),
    ROOT / "runs",
)
WORKLOADS = {"logos": RUNS / "demo-logos", "photos": RUNS / "demo-catalog"}


def _real_embeddings(src: RunLayout) -> dict[str, Any]:
    """The stage-03 outputs of a real run: unit vectors, and parts, mask, colour if any."""
    ids, vectors = storage.read_embeddings(src)
    out: dict[str, Any] = {
        "ids": ids["image_id"].astype(str).to_numpy(),
        "vectors": np.asarray(vectors, dtype=np.float32),
        "parts": None,
        "part_mask": None,
        "colour": None,
    }
    if src.parts.is_file() and src.similarity_state.is_file():
        out["parts"] = np.load(src.parts).astype(np.float32)
        out["part_mask"] = np.load(src.part_mask)
        out["colour"] = np.load(src.colour).astype(np.float32)
    return out


def _npy_header(f, shape: tuple[int, ...], dtype) -> None:
    descr = np.lib.format.dtype_to_descr(np.dtype(dtype))
    np.lib.format.write_array_header_1_0(
        f, {"descr": descr, "fortran_order": False, "shape": shape}
    )


def build_run(out: Path, n: int, source: Path, seed: int = 0) -> Path:
    """A run folder of ``n`` perturbed copies of ``source``'s embeddings (module docstring).

    Written chunk by chunk straight to the ``.npy`` files (no memory map, so no resident
    pages): :data:`CHUNK` rows at a time, each chunk from :func:`scale.perturbed` with its own
    seed, whose first draw picks the real row each copy comes from.
    """
    src = RunLayout(source)
    real = _real_embeddings(src)
    manifest = storage.read_manifest(src, ok_only=True).set_index("image_id")
    real_paths = np.array([str(src.image_path(manifest.loc[i, "path"])) for i in real["ids"]])
    run = RunLayout(out)
    shutil.rmtree(run.root, ignore_errors=True)
    run.vectors.parent.mkdir(parents=True, exist_ok=True)
    keys = ["vectors"] + (["parts", "part_mask", "colour"] if real["parts"] is not None else [])
    target = {"vectors": run.vectors, "parts": run.parts, "part_mask": run.part_mask,
              "colour": run.colour}  # fmt: skip
    files = {key: open(target[key], "wb") for key in keys}
    origin = np.empty(n, np.int64)
    try:
        for key, f in files.items():
            dtype = bool if key == "part_mask" else np.float32
            _npy_header(f, (n, *real[key].shape[1:]), dtype)
        for s in range(0, n, CHUNK):
            m, chunk_seed = min(CHUNK, n - s), seed + 1 + s // CHUNK
            block = perturbed(real, m, seed=chunk_seed)
            # the same first draw as perturbed(): which real row each copy comes from
            origin[s : s + m] = np.random.default_rng(chunk_seed).integers(0, len(real["ids"]), m)
            for key, f in files.items():
                dtype = bool if key == "part_mask" else np.float32
                f.write(np.ascontiguousarray(block[key], dtype=dtype).tobytes())
    finally:
        for f in files.values():
            f.close()
    if real["parts"] is not None:
        shutil.copy2(src.similarity_state, run.similarity_state)
    image_ids = [hashlib.sha256(f"million:{seed}:{i}".encode()).hexdigest() for i in range(n)]
    rows = pd.DataFrame(
        {
            "image_id": image_ids,
            "path": real_paths[origin],
            "source": "folder",
            "origin": real_paths[origin],
            "status": "ok",
        }
    )
    storage.merge_manifest(run, rows)
    storage.write_table(rows[["image_id", "path"]], run.ids)
    return run.root


class Steps:
    """Times steps and prints each one's seconds and the peak RSS so far."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, float]] = []

    def __call__(self, label: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        self.rows.append((label, dt, peak_rss_mb()))
        print(f"  {label}: {dt:.1f} s, peak RSS {peak_rss_mb():.0f} MiB", flush=True)
        return out


def stage_05(run_dir: Path, step: Steps, random_state: int = 0) -> None:
    """Every step of notebook 05 with its default parameters, as the notebook calls them."""
    from lookalike import browser, duplicates, elbow, gallery, mapview, plots, sheets

    run = RunLayout(run_dir)
    metrics = pd.read_csv(run.metrics)
    method = elbow.default_method(metrics)
    choice = step("05 choose k (Kneedle)", lambda: elbow.choose_k(metrics, None, method=method))
    k = choice.k
    print(f"    {choice}")
    step("05 elbow + scores figures", lambda: (
        plots.plot_elbow(metrics, run.figure("elbow.png"), knee=choice.knee, chosen=k,
                         method=method),
        plots.plot_scores(metrics, run.figure("scores.png"), chosen=k),
    ))  # fmt: skip
    step("05 PCA variance figure", lambda: plots.plot_pca_variance(run))
    for projection in ("pca", "tsne"):
        step(f"05 map ({projection}, sampled)", lambda p=projection: plots.plot_map(
            run, k, projection=p, method=method, max_thumbnails=120,
            random_state=random_state))  # fmt: skip
    step("05 interactive map (UMAP, sampled)", lambda: mapview.map_html(
        run, k, method=method, random_state=random_state))  # fmt: skip
    step("05 overview sheet", lambda: sheets.overview_sheet(run, k, method=method))
    step("05 cluster contact sheets", lambda: sheets.cluster_contact_sheets(
        run, k, method=method, out_dir=run.figure("clusters")))  # fmt: skip
    dups = step("05 near-duplicates", lambda: duplicates.find_near_duplicates(run))
    step("05 near-duplicates sheet", lambda: sheets.near_duplicates_sheet(
        dups, run.figure("near_duplicates.png")))  # fmt: skip

    def browse():
        b = browser.ClusterBrowser(run, method=method, k=k)
        b.widget()
        return b.save_neighbours(b.image_id, run.figure("neighbours_example.png"))

    step("05 browser + neighbours figure", browse)
    step("05 gallery (paged)", lambda: gallery.write_gallery(run, choice=choice, duplicates=dups))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1_000_000, help="images in the synthetic run")
    p.add_argument("--workload", choices=sorted(WORKLOADS), default="logos")
    p.add_argument("--source", type=Path, help="real run to resample (default by workload)")
    p.add_argument("--out", type=Path, help="run folder (default: a temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the run folder afterwards")
    a = p.parse_args(argv)
    source = a.source or WORKLOADS[a.workload]
    out = a.out or Path(tempfile.mkdtemp(prefix=f"lookalike-million-{a.n}-")) / "run"
    print(f"CPU flags: {cpu_flags()}; python {sys.version.split()[0]}")
    t0 = time.perf_counter()
    build_run(out, a.n, source)
    print(
        f"built {out}: {a.n:,} images resampled from {source} in "
        f"{time.perf_counter() - t0:.1f} s (not timed below), peak RSS {peak_rss_mb():.0f} MiB"
    )
    from lookalike.cluster import cluster_run

    step = Steps()
    try:
        step("04 cluster_run (PCA, sweep, trees, neighbours)", lambda: cluster_run(out))
        stage_05(out, step)
    finally:
        if not a.keep:
            shutil.rmtree(out.parent if a.out is None else out, ignore_errors=True)
    total = sum(dt for _, dt, _ in step.rows)
    peak = max(rss for *_, rss in step.rows)
    top = max(step.rows, key=lambda r: r[1])
    print()
    print(f"| step (n={a.n:,}, {a.workload}) | seconds | share | peak RSS so far (MiB) |")
    print("|---|---:|---:|---:|")
    for label, dt, rss in step.rows:
        print(f"| {label} | {dt:.1f} | {100 * dt / total:.0f}% | {rss:.0f} |")
    print(
        f"total {total:.0f} s = {total / BUDGET_S:.2f}x the {BUDGET_S / 60:.0f}-minute budget; "
        f"peak RSS {peak:.0f} MiB = {peak / BUDGET_RSS_MB:.2f}x the 16 GB target; "
        f"slowest step: {top[0]} ({100 * top[1] / total:.0f}%)"
    )
    print(json.dumps({"n": a.n, "total_s": round(total, 1), "peak_rss_mb": round(peak)}))


if __name__ == "__main__":
    main()
