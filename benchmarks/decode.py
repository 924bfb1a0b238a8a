"""Decoding speed: threads against processes, JPEG draft mode, and the logo extras' decodes.

What feeds the model in stage 03, measured without the model (except for the agreement in
(c)), on real images of the repository:

(a) threads or processes: :func:`lookalike.preprocess.load_for_embedding` plus
    :func:`lookalike.model.prepare` (what a decoding worker of
    :func:`lookalike.vectors.feature_batches` runs) over ``data/demo/logos/*.png`` with the
    ``logos`` preset's preprocessing and ``data/demo/shop/*.jpg`` with the ``photos`` one:
    in the calling thread (the baseline), on 2 threads, and on 2 processes (a warm
    ``ProcessPoolExecutor``, the arrays sent back as the model would need them). If threads
    reach the processes' rate, the GIL is not what limits decoding.
(b) draft mode: the same on large JPEGs (the shop photos scaled up to ``--large`` px wide
    and saved at quality 90), with ``draft=True`` (the default) against ``draft=False``,
    with and without ``trim``.
(c) the vectors of (b)'s images with and without draft (fp32 VGG16, the stage's pooling):
    mean and minimum cosine and the share of unchanged nearest neighbours.
(d) the logo extras' decodes on ``data/demo/logos/*.png``: the colour pass and the part
    inputs as stage 03 did them before (part inputs cut in the colour pass only to count
    them, and one decode per part) against now (the boxes counted, one decode per lockup),
    and now with the preset's light-on-dark test and the negatives' inputs; and the shape
    signatures alone (their part of "now"), against the whole images' decode.

Run: ``.venv/bin/python benchmarks/decode.py [--n 200] [--n-large 48] [--no-model]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np  # noqa: E402
from _common import agreement  # noqa: E402
from PIL import Image  # noqa: E402

from lookalike import extras  # noqa: E402
from lookalike.cpu import describe  # noqa: E402
from lookalike.model import prepare  # noqa: E402
from lookalike.paths import DEMO_DIR  # noqa: E402
from lookalike.preprocess import (  # noqa: E402
    load_for_embedding,
    lockup_parts,
    negative_input,
    part_inputs,
    shape_signatures,
)
from lookalike.similarity import embed_kwargs, resolve_preset  # noqa: E402


def _pre(preset: str) -> dict:
    """The preset's keyword arguments of :func:`load_for_embedding`."""
    kw = embed_kwargs(resolve_preset(preset))
    return {k: kw[k] for k in ("image_size", "background", "fit", "trim")}


def _work(path: Path, **pre) -> np.ndarray:
    return prepare(load_for_embedding(path, **pre))


def _rate(fn: Callable[[], object], n: int, repeat: int) -> float:
    """Images per second of ``fn`` (which handles ``n`` images): the best of ``repeat``."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n / best


def _spread(files: Sequence[Path], n: int) -> list[Path]:
    idx = np.linspace(0, len(files) - 1, num=min(n, len(files))).round().astype(int)
    return [files[i] for i in np.unique(idx)]


def threads_or_processes(sets: dict[str, tuple[list[Path], dict]], repeat: int) -> None:
    print("\n(a) decode + prepare, images/s (x the calling thread)")
    with ProcessPoolExecutor(2) as procs, ThreadPoolExecutor(2) as threads:
        list(procs.map(abs, range(4)))  # workers started before timing
        for name, (paths, pre) in sets.items():
            fn = partial(_work, **pre)
            ways = {
                "1 thread (calling)": lambda fn=fn, paths=paths: [fn(p) for p in paths],
                "2 threads": lambda fn=fn, paths=paths: list(threads.map(fn, paths)),
                "2 processes": lambda fn=fn, paths=paths: list(procs.map(fn, paths, chunksize=8)),
            }
            base = None
            for way, run in ways.items():
                r = _rate(run, len(paths), repeat)
                base = base or r
                print(f"  {name:<28} {way:<20} {r:8.1f} images/s  x{r / base:.2f}")


def large_jpegs(paths: Sequence[Path], side: int, folder: Path) -> list[Path]:
    out = []
    for p in paths:
        with Image.open(p) as im:
            big = im.convert("RGB").resize((side, side * 3 // 4), Image.Resampling.BICUBIC)
        q = folder / f"{p.stem}-{side}.jpg"
        big.save(q, "JPEG", quality=90)
        out.append(q)
    return out


def draft_speed(big: list[Path], repeat: int) -> None:
    with Image.open(big[0]) as im:
        size = im.size
    print(f"\n(b) {len(big)} JPEGs of {size[0]}x{size[1]}: decode + prepare at 224, images/s")
    for trim in (False, True):
        rates = {}
        for draft in (False, True):
            fn = partial(_work, image_size=224, trim=trim, draft=draft)
            rates[draft] = _rate(lambda fn=fn: [fn(p) for p in big], len(big), repeat)
        print(
            f"  trim={trim!s:<5}  full decode {rates[False]:7.1f}  draft {rates[True]:7.1f}"
            f"  x{rates[True] / rates[False]:.2f}"
        )


def draft_agreement(big: list[Path]) -> None:
    from lookalike.model import load_extractor, pool_features
    from lookalike.neighbors import l2_normalize

    extractor = load_extractor(layer="block5_pool", precision="fp32", progress=False)

    def vectors(**pre) -> np.ndarray:
        x = np.stack([_work(p, image_size=224, **pre) for p in big])
        out = [extractor(x[s : s + 16]) for s in range(0, len(x), 16)]
        return l2_normalize(pool_features(np.concatenate(out), "max"))

    print(f"\n(c) vectors with draft against without (fp32, block5_pool max), {len(big)} images")
    for trim in (False, True):
        a = agreement(vectors(trim=trim, draft=False), vectors(trim=trim, draft=True))
        print(
            f"  trim={trim!s:<5}  mean cos {a['mean_cos']:.5f}  min cos {a['min_cos']:.5f}"
            f"  nearest neighbour unchanged {100 * a['nn_same']:.1f}%"
        )


def extras_decodes(logos: list[Path], repeat: int) -> None:
    s = resolve_preset("logos")
    opts = extras._part_opts(s)
    look = partial(extras._look, opts=opts, bins=int(s["colour_bins"]), parts=True, negatives=False)
    counts = [int(look(p, 0)[0]) for p in logos]
    look_neg = partial(look, negatives=True)
    dark = [i for i, p in enumerate(logos) if look_neg(p, 0)[1] > 0.5]
    neg_opts = extras._negative_opts({**opts, **s})
    lockups = [i for i, c in enumerate(counts) if c]
    todo = [(i, j) for i in lockups for j in range(counts[i])]

    def before() -> None:
        for p in logos:  # the colour pass cut the part inputs to count them
            img = extras.upright_rgba(p)
            len(part_inputs(img, **opts))
            extras.colour_signature(img, bins=int(s["colour_bins"]))
        for i, j in todo:  # the parts pass decoded the file once per part
            part_inputs(logos[i], **opts)[j]

    def now() -> None:
        for p in logos:
            look(p, 0)
        load = extras._PartsOnce(logos, opts)
        for item in todo:
            load(item)

    def with_negatives() -> None:  # the preset as it is: the test, then each negative's input
        for p in logos:
            look_neg(p, 0)
        load = extras._PartsOnce(logos, opts)
        for item in todo:
            load(item)
        for i in dark:
            negative_input(logos[i], **neg_opts)

    decoded = [extras.upright_rgba(p) for p in logos]

    def shapes() -> None:  # the shape signatures alone, of images already decoded
        for img in decoded:
            cut, boxes = lockup_parts(img, part_min_aspect=opts["part_min_aspect"], trim=True)
            shape_signatures(cut, boxes, background=opts["background"])

    whole = partial(load_for_embedding, **_pre("logos"))
    t_whole = len(logos) / _rate(lambda: [whole(p) for p in logos], len(logos), repeat)
    t_before = len(logos) / _rate(before, len(logos), repeat)
    t_now = len(logos) / _rate(now, len(logos), repeat)
    t_neg = len(logos) / _rate(with_negatives, len(logos), repeat)
    t_shape = len(logos) / _rate(shapes, len(logos), repeat)
    print(
        f"\n(d) logos preset, {len(logos)} logos ({len(lockups)} lockups, {len(todo)} parts), "
        "one thread, seconds"
    )
    print(f"  whole images (for scale)        {t_whole:6.2f} s")
    print(f"  extras' decodes before          {t_before:6.2f} s")
    print(f"  extras' decodes now             {t_now:6.2f} s  x{t_now / t_before:.2f} the time")
    print(
        f"  now, with the negative test     {t_neg:6.2f} s  ({len(dark)} light-on-dark "
        "decoded again for their negative)"
    )
    ms = 1000 * t_shape / len(logos)
    print(
        f"  of which shape signatures       {t_shape:6.2f} s  ({ms:.1f} ms per logo, "
        f"x{t_shape / t_whole:.2f} the whole images' decode + prepare)"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="images per demo set in (a) and (d)")
    ap.add_argument("--n-large", type=int, default=48, help="large JPEGs in (b) and (c)")
    ap.add_argument("--large", type=int, default=2048, help="width of the large JPEGs, px")
    ap.add_argument("--repeat", type=int, default=2, help="timings per figure (the best)")
    ap.add_argument("--no-model", action="store_true", help="skip (c), the only model run")
    args = ap.parse_args(argv)
    print(f"CPU: {describe()}; {os.cpu_count()} CPUs")
    logos = _spread(sorted(DEMO_DIR.glob("logos/*.png")), args.n)
    shop = sorted(DEMO_DIR.glob("shop/*.jpg"))
    logo_pre, photo_pre = _pre("logos"), _pre("photos")
    threads_or_processes(
        {
            f"{len(logos)} logos PNG (logos)": (logos, logo_pre),
            f"{min(args.n, len(shop))} shop JPEG (photos)": (_spread(shop, args.n), photo_pre),
        },
        args.repeat,
    )
    work = Path(tempfile.mkdtemp(prefix="lookalike-bench-decode-"))
    try:
        big = large_jpegs(_spread(shop, args.n_large), args.large, work)
        threads_or_processes(
            {f"{len(big)} JPEG {args.large} px (photos)": (big, photo_pre)}, args.repeat
        )
        draft_speed(big, args.repeat)
        if not args.no_model:
            draft_agreement(big)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    extras_decodes(logos, args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
