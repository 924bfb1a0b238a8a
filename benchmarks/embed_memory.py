"""Embedding memory: peak RSS of ``embed_images`` for 2,000 and then 20,000 images.

Generates ``--sizes`` sets of small distinct images (PNG, 96x96: coloured shapes on varied
backgrounds, a different seed per set), makes a run folder for each, and embeds each set in
its own fresh Python process (``--child``) with the real VGG16 weights at
``--image-size`` (default 64), ``--precision`` (default int8, the fast path, so 20,000
images take minutes, not hours) and ``--pooling`` (default flatten: 2x2x512 = 2,048-d at 64
px, so the 20,000 vectors are 156 MB, several times what the whole process grows by). Each
child reports its peak resident memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) after
the whole stage; the parent prints them side by side with the ratio largest/smallest and
what the vectors alone would take if they were held in memory. Vectors stream to
``vectors.npy`` with plain file writes and no image is kept once its batch has run, so what
remains is the per-row bookkeeping of the manifest (ids and paths: a few kB per image). The
int8 model is quantized once beforehand, in its own process, so that one-time cost is in no
measurement; every child starts with an empty vector cache.

Run: ``.venv/bin/python benchmarks/embed_memory.py`` (about 5-10 min on 2 cores);
``--sizes 2000 20000 --image-size 64 --precision int8`` are the defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np  # noqa: E402
from _common import folder_run, peak_rss_mb  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from lookalike import embed, model  # noqa: E402


def make_images(folder: Path, n: int, *, seed: int, side: int = 96) -> list[Path]:
    """``n`` small distinct PNGs: a random background colour and 1-3 random shapes."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        img = Image.new("RGB", (side, side), tuple(int(c) for c in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(1, 4))):
            x0, y0 = (int(v) for v in rng.integers(0, side - 16, 2))
            x1, y1 = x0 + int(rng.integers(8, side - x0)), y0 + int(rng.integers(8, side - y0))
            fill = tuple(int(c) for c in rng.integers(0, 256, 3))
            if rng.random() < 0.5:
                draw.ellipse((x0, y0, x1, y1), fill=fill)
            else:
                draw.rectangle((x0, y0, x1, y1), fill=fill)
        p = folder / f"img{i:06d}.png"
        img.save(p, "PNG", compress_level=1)
        out.append(p)
    return out


def child(args: argparse.Namespace) -> int:
    """Embed one run and print a JSON line with the figures."""
    s = embed.embed_images(
        args.child,
        image_size=args.image_size,
        precision=args.precision,
        pooling=args.pooling,
        batch_size=args.batch_size,
        cache_dir=args.cache_dir,
        progress=False,
    )
    vec = Path(s["vectors_path"])
    print(
        "RESULT "
        + json.dumps(
            {
                "n": s["n_images"],
                "embedded": s["embedded"],
                "dim": s["dim"],
                "computed": s["computed"],
                "seconds": s["seconds"],
                "images_per_s": s["images_per_s"],
                "peak_rss_mb": peak_rss_mb(),
                "vectors_mb": vec.stat().st_size / 2**20,
            }
        )
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--precision", default="int8", choices=model.PRECISIONS)
    ap.add_argument("--pooling", default="flatten", choices=model.POOLINGS)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workdir", type=Path, default=None, help="keep the generated sets here")
    ap.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--cache-dir", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args)

    work = args.workdir or Path(tempfile.mkdtemp(prefix="lookalike-bench-memory-"))
    try:
        return _parent(args, work)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


def _parent(args: argparse.Namespace, work: Path) -> int:
    models = work / "shared-cache"
    me = [sys.executable, str(Path(__file__).resolve())]
    common = [
        "--image-size", str(args.image_size),
        "--precision", args.precision,
        "--pooling", args.pooling,
        "--batch-size", str(args.batch_size),
    ]  # fmt: skip
    if args.precision == "int8":  # quantize once, outside every measurement
        code = (
            "from lookalike import model; "
            f"model.build_int8_model(image_size={args.image_size}, cache_dir={str(models)!r})"
        )
        subprocess.run([sys.executable, "-c", code], check=True)

    results = []
    for k, n in enumerate(args.sizes):
        t0 = time.perf_counter()
        images = make_images(work / f"set-{n}", n, seed=1000 + k)
        run = folder_run(images, work / f"run-{n}")
        print(
            f"{n} images generated in {time.perf_counter() - t0:.0f} s; embedding ...", flush=True
        )
        cache = work / f"cache-{n}"
        cache.mkdir(exist_ok=True)
        if not (cache / "models").exists():
            (models / "models").mkdir(parents=True, exist_ok=True)
            (cache / "models").symlink_to((models / "models").resolve(), target_is_directory=True)
        proc = subprocess.run(
            [*me, "--child", str(run), "--cache-dir", str(cache), *common],
            capture_output=True,
            text=True,
        )
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        if proc.returncode != 0 or not line:
            print(proc.stdout[-2000:], proc.stderr[-4000:], sep="\n")
            raise SystemExit(f"child for n={n} failed (exit {proc.returncode})")
        for x in proc.stdout.splitlines():
            if x.startswith("embed:"):
                print("  " + x)
        results.append(json.loads(line[0][len("RESULT ") :]))
        shutil.rmtree(work / f"set-{n}", ignore_errors=True)  # disk space, not memory
        shutil.rmtree(cache, ignore_errors=True)

    print()
    print(
        f"precision {args.precision}, image_size {args.image_size}, pooling {args.pooling} "
        f"({results[0]['dim']}-d), batch {args.batch_size}"
    )
    print(f"{'images':>8s} {'embedded':>9s} {'seconds':>8s} {'images/s':>9s} "
          f"{'vectors.npy MB':>15s} {'peak RSS MB':>12s}")  # fmt: skip
    for r in results:
        print(
            f"{r['n']:8d} {r['embedded']:9d} {r['seconds']:8.1f} {r['images_per_s']:9.1f} "
            f"{r['vectors_mb']:15.1f} {r['peak_rss_mb']:12.1f}"
        )
    lo, hi = results[0], results[-1]
    grow = hi["peak_rss_mb"] - lo["peak_rss_mb"]
    print(
        f"peak RSS {hi['n']} vs {lo['n']} images: {hi['peak_rss_mb'] / lo['peak_rss_mb']:.3f}x "
        f"({grow:+.1f} MB, {1024 * grow / (hi['n'] - lo['n']):.1f} kB per extra image) for "
        f"{hi['n'] / lo['n']:.0f}x the images; holding the extra vectors in memory alone would "
        f"take {hi['vectors_mb'] - lo['vectors_mb']:+.1f} MB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
