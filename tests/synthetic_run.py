"""A synthetic run for stage 05's tests: logo-like pictures in three colour groups with
embeddings and clusters (no model needed), and small checks the test files share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from lookalike import storage
from lookalike.cluster import cluster_run
from lookalike.paths import RunLayout

# Inertia falls steeply to k=4, then slowly: the knee is at 4.
KNEE_K = list(range(1, 11))
KNEE_INERTIA = [100.0, 70.0, 40.0, 10.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0]


def metrics_table(k, inertia, silhouette=None, method="kmeans"):
    n = len(k)
    return pd.DataFrame(
        {
            "method": method,
            "k": k,
            "inertia": inertia,
            "silhouette": silhouette if silhouette is not None else np.linspace(0.1, 0.5, n),
            "davies_bouldin": np.linspace(2.0, 1.0, n),
            "calinski_harabasz": np.linspace(10.0, 50.0, n),
            "seconds": 0.01,
        }
    )


def assert_png(path, *, min_size=(50, 50)):
    assert path.exists() and path.stat().st_size > 0
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.width >= min_size[0] and im.height >= min_size[1]
        arr = np.asarray(im.convert("RGB"), dtype=float)
    assert arr.std() > 1.0  # something was drawn
    return arr


COLORS = [(220, 30, 30), (30, 160, 30), (30, 30, 220)]


def shape(group: int, i: int, size: int = 48) -> Image.Image:
    """A logo-like picture: group 0 red discs, 1 green squares, 2 blue triangles."""
    rng = np.random.default_rng(100 + i)
    img = Image.new("RGBA", (size, size), (255, 255, 255, 0))
    d = ImageDraw.Draw(img)
    colour = tuple(int(c) for c in np.clip(np.array(COLORS[group]) + rng.integers(-25, 25, 3),
                                           0, 255)) + (255,)  # fmt: skip
    m = int(rng.integers(4, 10))
    box = (m, m, size - m, size - m)
    if group == 0:
        d.ellipse(box, fill=colour)
    elif group == 1:
        d.rectangle(box, fill=colour)
    else:
        d.polygon([(size // 2, m), (size - m, size - m), (m, size - m)], fill=colour)
    return img


def make_run(root: Path, *, n_per: int = 6, k_values=(2, 3, 4, 5)) -> Path:
    """A run of 3 x ``n_per`` + 1 synthetic logos with embeddings and clusters.

    Image 0 and the last image are near-duplicates: the same picture one pixel apart, with
    nearly the same vector. Group g's vectors lie around centre g.
    """
    run = root / "run"
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 3
    rows, vecs = [], []
    n = 3 * n_per
    for i in range(n + 1):
        g = i % 3 if i < n else 0
        img = shape(g, i if i < n else 0)
        if i == n:  # the near-duplicate of image 0
            img = img.transform(img.size, Image.AFFINE, (1, 0, 1, 0, 1, 0))
        p = run / "images" / f"logo {i}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        img.save(p)
        rows.append(
            {
                "image_id": storage.sha256_file(p),
                "path": f"images/logo {i}.png",
                "source": "folder",
                "origin": str(i),
                "width": img.width,
                "height": img.height,
                "status": "ok",
                "error": None,
            }
        )
        v = centres[g] + rng.normal(scale=1.0, size=16)
        # 1e-2, not less: closer than float32 can tell from identical, the pair would
        # reach cosine 1.0 and pass any threshold.
        vecs.append(vecs[0] + rng.normal(scale=1e-2, size=16) if i == n else v)
    manifest = storage.merge_manifest(run, pd.DataFrame(rows))
    vec_path, ids_path = storage.embeddings_paths(run)
    vec_path.parent.mkdir(parents=True)
    np.save(vec_path, np.asarray(vecs, dtype=np.float32))
    storage.write_table(manifest[["image_id", "path"]], ids_path)
    cluster_run(run, pca_components=8, k_values=list(k_values), progress=False)
    return run


def explain_neighbours(run: Path, image_id: str, reasons: list[tuple[str | None, float]]):
    """Give the first neighbours of ``image_id`` in ``RUN/neighbors.parquet`` the reasons
    ``[(match, colour_gain), ...]`` (rank 1 first), as a ``logos`` run would record them;
    returns the table's rows of ``image_id``, by rank."""
    path = RunLayout(run).neighbors
    nb = pd.read_parquet(path)
    for rank, (match, gain) in enumerate(reasons, start=1):
        at = (nb["image_id"] == image_id) & (nb["rank"] == rank)
        assert at.sum() == 1, (image_id, rank)
        nb.loc[at, "match"] = match
        nb.loc[at, "colour_gain"] = gain
    nb["colour_gain"] = nb["colour_gain"].astype(np.float32)
    storage.write_table(nb, path)
    return nb[nb["image_id"] == image_id].sort_values("rank").reset_index(drop=True)
