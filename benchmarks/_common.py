"""Helpers shared by the benchmarks (``embed.py``, ``embed_memory.py``, ``quality.py`` and others).

Not a test module and not part of the library: image sets, agreement figures and the
"seeds' way" of embedding, each measured by the scripts next to this file.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))  # run from a checkout without installing

from lookalike.paths import DEMO_DIR  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up banner hides figures


def demo_images(n: int) -> list[Path]:
    """``n`` real images from the repository: half brand logos (PNG), half product photos (JPEG).

    Evenly spread over the sorted ``data/demo/logos/*.png`` and ``data/demo/shop/*.jpg``,
    leaving out the images int8 quantization is calibrated on (so agreement figures are
    measured on images the quantizer never saw).
    """
    from lookalike.model import calibration_images

    seen = set(calibration_images())
    out: list[Path] = []
    for pattern, m in (("logos/*.png", n // 2), ("shop/*.jpg", n - n // 2)):
        files = [p for p in sorted(DEMO_DIR.glob(pattern)) if p not in seen]
        if m and files:
            idx = np.linspace(0, len(files) - 1, num=min(m, len(files))).round().astype(int)
            out += [files[i] for i in idx]
    return out


def folder_images(folder: str | os.PathLike[str], n: int) -> list[Path]:
    """``n`` images of ``folder`` (recursively; evenly spread over the sorted list)."""
    from lookalike.folder import IMAGE_EXTENSIONS

    files = sorted(
        p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not files:
        raise SystemExit(f"no images under {folder}")
    idx = np.linspace(0, len(files) - 1, num=min(n, len(files))).round().astype(int)
    return [files[i] for i in np.unique(idx)]


def read_labelled_set(folder: str | os.PathLike[str]) -> pd.DataFrame:
    """``labels.csv`` (columns ``path,group``) of a labelled set, with absolute paths.

    Returns
    -------
    DataFrame with ``path`` (absolute Path), ``group`` (str) and ``label`` (int code of group),
    in file order.
    """
    folder = Path(folder)
    labels = folder / "labels.csv"
    if not labels.is_file():
        raise SystemExit(f"{labels} not found: a labelled set needs labels.csv with path,group")
    df = pd.read_csv(labels)
    missing = {"path", "group"} - set(df.columns)
    if missing:
        raise SystemExit(f"{labels} lacks column(s) {sorted(missing)}; it has {list(df.columns)}")
    df["path"] = [folder / p for p in df["path"]]
    df["group"] = df["group"].astype(str)
    df["label"] = pd.factorize(df["group"])[0]
    return df


def nearest_neighbours(v: np.ndarray, *, chunk: int = 2048) -> np.ndarray:
    """Index of every row's nearest other row (Euclidean; cosine for unit rows).

    Parameters
    ----------
    v : ndarray of shape (n, d)

    Returns
    -------
    ndarray of shape (n,), int
    """
    v = np.asarray(v, dtype=np.float32)
    sq = np.einsum("ij,ij->i", v, v)
    out = np.empty(len(v), dtype=np.int64)
    for s in range(0, len(v), chunk):
        d = sq[s : s + chunk, None] + sq[None, :] - 2.0 * (v[s : s + chunk] @ v.T)
        d[np.arange(d.shape[0]), np.arange(s, s + d.shape[0])] = np.inf  # not itself
        out[s : s + chunk] = d.argmin(axis=1)
    return out


def agreement(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """How well ``other`` vectors agree with ``reference`` vectors of the same images.

    Returns
    -------
    dict with ``mean_cos`` and ``min_cos`` (cosine between the two vectors of each image),
    ``nn_same`` (share of images whose nearest neighbour, by cosine, is the same image in both),
    and for the images whose neighbour changed: ``flips``, ``flip_top3`` (share whose new
    neighbour is among the reference's 3 nearest) and ``flip_gap`` (median reference cosine
    of the old neighbour minus that of the new one: how close a tie it was).
    """
    a = reference / np.maximum(np.linalg.norm(reference, axis=1, keepdims=True), 1e-12)
    b = other / np.maximum(np.linalg.norm(other, axis=1, keepdims=True), 1e-12)
    cos = np.einsum("ij,ij->i", a, b)
    na, nb = nearest_neighbours(a), nearest_neighbours(b)
    flips = np.flatnonzero(na != nb)
    sa = a[flips] @ a.T
    sa[np.arange(len(flips)), flips] = -np.inf
    new = sa[np.arange(len(flips)), nb[flips]]
    return {
        "mean_cos": float(cos.mean()),
        "min_cos": float(cos.min()),
        "nn_same": float(np.mean(na == nb)),
        "flips": int(len(flips)),
        "flip_top3": float(np.mean((sa > new[:, None]).sum(axis=1) < 3)) if len(flips) else 1.0,
        "flip_gap": float(np.median(sa.max(axis=1) - new)) if len(flips) else 0.0,
    }


def seeds_load(path: str | os.PathLike[str], image_size: int = 224) -> np.ndarray:
    """The seed notebooks' preprocessing: ``convert("RGB")`` (no compositing), stretch.

    Returns ndarray (image_size, image_size, 3), float32 RGB 0..255.
    """
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB").resize((image_size, image_size)), dtype=np.float32)


class SeedsEmbedder:
    """The seed notebooks' embedding loop: :func:`seeds_load`, ``preprocess_input``, one
    ``model.predict`` per image, flattened (fp32 Keras VGG16 without its top: 25,088 values
    at 224 px). Resumable: :meth:`embed` appends, so a timed probe can count in a longer run.

    Attributes
    ----------
    load_s : float, seconds to load the model
    vectors : list of ndarray (25088,), float32, one per image embedded so far
    seconds : float, seconds spent in :meth:`embed` so far
    """

    def __init__(self) -> None:
        t0 = time.perf_counter()
        from keras.applications.vgg16 import preprocess_input

        from lookalike.model import load_vgg16

        self._pre = preprocess_input
        self.model = load_vgg16()
        self.load_s = time.perf_counter() - t0
        self.vectors: list[np.ndarray] = []
        self.seconds = 0.0

    def embed(self, paths: list[Path]) -> float:
        """Embed ``paths`` one ``predict`` each, appending; returns the seconds taken."""
        t0 = time.perf_counter()
        for p in paths:
            x = self._pre(seeds_load(p)[None])
            self.vectors.append(np.asarray(self.model.predict(x, verbose=0)).reshape(-1))
        dt = time.perf_counter() - t0
        self.seconds += dt
        return dt


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux ``ru_maxrss`` is KiB)."""
    import resource

    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024.0 if sys.platform != "darwin" else kib / 2**20


def folder_run(images: list[Path], run_dir: Path) -> Path:
    """A run folder whose manifest lists ``images`` in place (source ``folder``), like 01 does."""
    from lookalike import storage

    rows = []
    for p in images:
        data = p.read_bytes()
        rows.append(
            {
                "image_id": storage.sha256_bytes(data),
                "path": str(p),
                "source": "folder",
                "origin": str(p),
                "status": "ok",
            }
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    storage.merge_manifest(run_dir, pd.DataFrame(rows))
    return run_dir
