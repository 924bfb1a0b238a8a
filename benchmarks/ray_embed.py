"""engine ray against engine local: the same images, the same run, a local Ray with 2 CPUs.

On ``--n`` real images (default 200: half ``data/demo/logos/*.png``, half
``data/demo/shop/*.jpg``, as ``benchmarks/embed.py``), each into a fresh run folder and an
empty vector cache, one after the other in this process:

(a) ``engine: local``: :func:`lookalike.embed.embed_images` with its defaults (fp32 Keras,
    224 px, batches of 32, 2 decoding threads). Its images/s is the inference phase (model
    loading excluded). The baseline, measured before and after (b) (on a shared machine the
    load changes); the ratios are against the mean of the two.
(b) ``engine: ray`` on ``ray.init(num_cpus=2)``, for each actor layout of ``--layouts``
    (``concurrency x num_cpus``). Two rates: ``steady`` counts the images after the first
    batch came back over the time since (the actors are up: comparable with (a)), ``wall``
    all images over the whole call (actor start, TensorFlow import and model load included).

Printed: the CPU flags, images/s of each, the ratio ray/local (steady; target >= 0.8x),
max |1 - cosine| of every ray vector against the local vector of the same image, and the
per-actor throughput that docs/scaling.md scales up. Also the decoding rate of one core
alone (decode + preprocess, no model), which bounds what a GPU node can be fed.

Run: ``.venv/bin/python benchmarks/ray_embed.py [--n 200] [--layouts 1x2 2x1]``
(about 5 minutes at n=200 on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would interleave with the figures

import numpy as np  # noqa: E402
from _common import demo_images, folder_run  # noqa: E402
from scale import cpu_flags  # noqa: E402

from lookalike import distributed, embed, storage  # noqa: E402
from lookalike.model import prepare  # noqa: E402
from lookalike.preprocess import load_for_embedding  # noqa: E402


def _timed_stream(marks: list[tuple[float, int]]):
    """Wrap :func:`lookalike.distributed._stream` to note when each batch reaches the driver."""
    real = distributed._stream

    def stream(*args, **kwargs):
        for positions, values, errors in real(*args, **kwargs):
            marks.append((time.perf_counter(), len(positions) + len(errors)))
            yield positions, values, errors

    return stream


def run_engine(paths: list[Path], root: Path, engine: str, ray: dict | None = None) -> dict:
    """Embed ``paths`` in a fresh run and cache; the summary, vectors and batch arrivals."""
    run = folder_run(paths, root / f"run-{engine}-{len(os.listdir(root))}")
    cache = Path(tempfile.mkdtemp(dir=root, prefix="cache-"))
    marks: list[tuple[float, int]] = []
    real = distributed._stream
    distributed._stream = _timed_stream(marks)
    try:
        t0 = time.perf_counter()
        summary = embed.embed_images(run, cache_dir=cache, engine=engine, ray=ray, progress=False)
        wall = time.perf_counter() - t0
    finally:
        distributed._stream = real
    ids, vectors = storage.read_embeddings(run)
    out = {"summary": summary, "ids": ids["image_id"].tolist(), "vectors": np.array(vectors)}
    if marks:
        first_t = marks[0][0]
        after = sum(n for _, n in marks[1:])
        steady = after / (marks[-1][0] - first_t) if len(marks) > 1 else float("nan")
        out.update(steady=steady, wall=len(paths) / wall)
    return out


def decode_rate(paths: list[Path]) -> float:
    """Images/s that one thread decodes and preprocesses (224 px, white, pad)."""
    t0 = time.perf_counter()
    for p in paths:
        prepare(load_for_embedding(p.read_bytes()))
    return len(paths) / (time.perf_counter() - t0)


def start_ray(ray) -> None:
    """A local Ray with 2 CPUs (:func:`lookalike.distributed.start_local`)."""
    distributed.start_local(ray, num_cpus=2, object_store_memory=300 * 2**20, log_to_driver=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--layouts", nargs="+", default=["1x2", "2x1"], help="actors x CPUs")
    a = parser.parse_args()
    import ray

    paths = demo_images(a.n)
    print(f"CPU flags: {cpu_flags()}; {os.cpu_count()} CPUs; {len(paths)} demo images")
    root = Path(tempfile.mkdtemp(prefix="ray-embed-"))
    try:
        local = run_engine(paths, root, "local")
        before = local["summary"]["images_per_s"]
        print(f"(a) local, before: {before:.2f} images/s (inference phase)")
        start_ray(ray)
        rows = []
        for layout in a.layouts:
            actors, cpus = (float(x) for x in layout.split("x"))
            opts = {"concurrency": int(actors), "num_cpus": cpus}
            res = run_engine(paths, root, "ray", opts)
            assert res["ids"] == local["ids"], "ray wrote another order"
            v, w = res["vectors"].astype(np.float64), local["vectors"].astype(np.float64)
            cos = (v * w).sum(1) / (np.linalg.norm(v, axis=1) * np.linalg.norm(w, axis=1))
            per_actor = res["steady"] / int(actors)
            rows.append(
                (layout, res["steady"], res["wall"], float(np.abs(1 - cos).max()), per_actor)
            )
            print(
                f"(b) ray {layout}: steady {res['steady']:.2f} images/s, wall "
                f"{res['wall']:.2f} images/s, max |1 - cos| {rows[-1][3]:.2e}, "
                f"per actor {per_actor:.2f} images/s ({per_actor / cpus:.2f} per CPU)"
            )
        ray.shutdown()
        after = run_engine(paths, root, "local")["summary"]["images_per_s"]
        rate_l = (before + after) / 2  # the machine's load may change: local on both sides
        print(f"(a) local, after: {after:.2f} images/s; the ratios are against the mean")
        one_core = decode_rate(paths[: min(60, len(paths))])
        print(f"decoding alone, one thread: {one_core:.1f} images/s")
        print()
        print("| engine | layout | images/s (steady) | ratio to local | images/s (wall) | "
              "max abs(1 - cos) | per actor |")  # fmt: skip
        print("|---|---|---|---|---|---|---|")
        print(
            f"| local | TF on 2 cores + 2 decode threads | {rate_l:.2f} (mean of {before:.2f} "
            f"before, {after:.2f} after) | 1.00x | | | |"
        )
        for layout, steady, wall, dcos, per in rows:
            print(
                f"| ray | {layout} | {steady:.2f} | {steady / rate_l:.2f}x | {wall:.2f} | "
                f"{dcos:.1e} | {per:.2f} |"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
