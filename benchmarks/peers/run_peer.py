"""Run one published image-grouping tool on a folder of images, with its own workflow.

Runs inside the peers' own virtualenv (``make peers``), not the project's: the tools pin
packages the project's stack does not agree with, and they are measured, never depended on.
``benchmarks/quality.py --peers`` calls it once per tool and set and scores what it writes.

Input: ``--images DIR`` (the images, one file each, named so that sorting gives the order the
caller wants), ``--k`` (the number of groups, forced where the tool lets a user choose it).
Output (``--out FILE``, JSON): ``files`` (sorted names), ``nn`` (for each file, the index of
its nearest other file under the tool's own comparison), ``labels`` (the tool's clusters, or
null when it has no clustering), ``seconds`` and ``version``.

Tools
-----
``clustimage-hog``, ``clustimage-pca``
    ``Clustimage(method=...).fit_transform(DIR, min_clust=k, max_clust=k)``: its own reading
    (OpenCV, 128 x 128, grayscale for HOG), features, t-SNE embedding and agglomerative
    clustering (Ward, euclidean, silhouette over k..k+1: the closest it comes to a forced k).
    Nearest neighbour: euclidean on its features (``results["feat"]``), the metric it
    clusters with.
``imagededup-phash``
    ``PHash().encode_images(DIR)`` then ``find_duplicates(encoding_map, scores=True,
    max_distance_threshold=64)`` (every pair): nearest = smallest Hamming distance, ties
    broken by file order. imagededup has no clustering: ``labels`` is null.
``fastdup``
    ``fastdup.create(work_dir, DIR).run(threshold=0)`` with its bundled default model (the
    threshold lets ``similarity()`` list every image's nearest neighbours; the default 0.9
    lists only near-duplicates), nearest = highest similarity, and
    ``connected_components()`` at its default threshold for the clusters (it has no k;
    images in no component are clusters of their own). Its model has a non-commercial
    licence: measured only, in a virtualenv of its own (``make peers``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np


def _nearest(feat: np.ndarray) -> list[int]:
    """Index of each row's nearest other row, euclidean."""
    X = np.asarray(feat, dtype=np.float64)
    sq = (X * X).sum(axis=1)
    D = sq[:, None] + sq[None, :] - 2.0 * (X @ X.T)
    np.fill_diagonal(D, np.inf)
    return D.argmin(axis=1).tolist()


def clustimage(folder: Path, files: list[str], k: int, method: str) -> dict:
    from clustimage import Clustimage

    with tempfile.TemporaryDirectory(prefix="clustimage-") as tmp:
        cl = Clustimage(method=method, dirpath=tmp, tempdir=tmp, verbose="error")
        res = cl.fit_transform(str(folder), min_clust=k, max_clust=k)
    order = [Path(p).name for p in res["pathnames"]]
    pos = {f: i for i, f in enumerate(order)}
    idx = [pos[f] for f in files]  # the tool's rows in our order
    feat = np.asarray(res["feat"])[idx]
    labels = np.asarray(res["labels"])[idx]
    return {
        "nn": _nearest(feat),
        "labels": labels.tolist(),
        "version": metadata.version("clustimage"),
    }


def _import_phash() -> type:
    """imagededup's ``PHash``, without its CNN half.

    ``imagededup.methods`` and ``imagededup.utils`` import the CNN models (torch, torchvision)
    on import; the hashing module needs neither, so both packages are entered without running
    their ``__init__`` and torch is not installed.
    """
    import importlib.util
    import types

    spec = importlib.util.find_spec("imagededup")
    if spec is None or spec.origin is None:
        raise ImportError("imagededup is not installed (make peers)")
    root = Path(spec.origin).parent
    for sub in ("methods", "utils"):
        pkg = types.ModuleType(f"imagededup.{sub}")
        pkg.__path__ = [str(root / sub)]
        sys.modules[pkg.__name__] = pkg
    from imagededup.methods.hashing import PHash

    return PHash


def imagededup_phash(folder: Path, files: list[str], k: int) -> dict:
    PHash = _import_phash()  # noqa: N806

    ph = PHash(verbose=False)
    enc = ph.encode_images(image_dir=str(folder))
    dup = ph.find_duplicates(encoding_map=enc, max_distance_threshold=64, scores=True)
    pos = {f: i for i, f in enumerate(files)}
    nn = []
    for f in files:
        cands = [(d, pos[g]) for g, d in dup.get(f, []) if g in pos and g != f]
        nn.append(min(cands)[1] if cands else -1)
    return {"nn": nn, "labels": None, "version": metadata.version("imagededup")}


def fastdup_default(folder: Path, files: list[str], k: int) -> dict:
    os.environ.setdefault("SENTRY_OPT_OUT", "1")  # no telemetry: this machine is offline
    import fastdup

    with tempfile.TemporaryDirectory(prefix="fastdup-") as tmp:
        fd = fastdup.create(work_dir=tmp, input_dir=str(folder))
        # threshold 0: every image's nearest neighbours are listed (default 0.9 drops most)
        fd.run(overwrite=True, verbose=False, threshold=0.0)
        sim = fd.similarity()
        cc = fd.connected_components()
        cc = cc[0] if isinstance(cc, tuple) else cc
    pos = {f: i for i, f in enumerate(files)}
    name_of = {}  # fastdup's index -> our row
    for idx, fname in zip(sim["from"], sim["filename_from"], strict=True):
        if Path(str(fname)).name in pos:
            name_of[int(idx)] = pos[Path(str(fname)).name]
    nn, best = [-1] * len(files), [-np.inf] * len(files)
    for a, b, d in zip(sim["from"], sim["to"], sim["distance"], strict=True):
        i, j = name_of.get(int(a)), name_of.get(int(b))
        if i is not None and j is not None and i != j and d > best[i]:
            best[i], nn[i] = d, j  # fastdup's "distance" is a cosine similarity
    labels = [-1 - i for i in range(len(files))]  # not in a component: a cluster of its own
    id_col = next(c for c in ("__id", "fd_index", "index") if c in cc.columns)  # by version
    for idx, comp in zip(cc[id_col], cc["component_id"], strict=True):
        if int(idx) in name_of:
            labels[name_of[int(idx)]] = int(comp)
    return {"nn": nn, "labels": labels, "version": metadata.version("fastdup")}


TOOLS = {
    "clustimage-hog": lambda d, f, k: clustimage(d, f, k, "hog"),
    "clustimage-pca": lambda d, f, k: clustimage(d, f, k, "pca"),
    "imagededup-phash": imagededup_phash,
    "fastdup": fastdup_default,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tool", required=True, choices=sorted(TOOLS))
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--k", type=int, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    files = sorted(p.name for p in args.images.iterdir() if p.is_file())
    t0 = time.perf_counter()
    out = TOOLS[args.tool](args.images, files, args.k)
    out.update(files=files, seconds=time.perf_counter() - t0, tool=args.tool)
    args.out.write_text(json.dumps(out))
    print(f"{args.tool}: {len(files)} images, {out['seconds']:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
