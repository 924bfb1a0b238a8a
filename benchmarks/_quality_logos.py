"""Quality of the similarity presets on a labelled set (helper for benchmarks/quality.py).

:func:`evaluate_similarity` embeds a labelled set with a preset of
:mod:`lookalike.similarity` and returns P@1 (is an image's nearest neighbour in the same
group), ARI and NMI at k = number of groups for KMeans on PCA-100 and for the similarity
clustering, and seconds per image. :func:`evaluate_plain` does the same for the plain default
embedding (the baseline the time ratio is taken against, measured in the same run).

Usage (standalone)::

    .venv/bin/python benchmarks/_quality_logos.py --set ../shared/data/logos-dev
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _common import read_labelled_set
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from lookalike import similarity as sim


def _scores(S: np.ndarray, vectors: np.ndarray, groups: np.ndarray, seed: int) -> dict:
    k = len(set(groups))
    S = np.array(S, dtype=np.float32)
    np.fill_diagonal(S, -np.inf)
    p1 = float((groups[S.argmax(axis=1)] == groups).mean())
    np.fill_diagonal(S, 1.0)
    z = PCA(n_components=min(100, *vectors.shape) - 1, random_state=seed).fit_transform(vectors)
    km = KMeans(k, n_init=1, random_state=seed).fit_predict(z)
    ag = sim.similarity_clusters(S, n_clusters=k)
    return {
        "p_at_1": p1,
        "ari": adjusted_rand_score(groups, ag),
        "nmi": normalized_mutual_info_score(groups, ag),
        "ari_kmeans": adjusted_rand_score(groups, km),
        "nmi_kmeans": normalized_mutual_info_score(groups, km),
    }


def evaluate_plain(paths, groups, *, batch_size: int = 32, seed: int = 0) -> dict[str, Any]:
    """The plain default embedding (pad on white, 224 px, block5_pool, avg, L2), cosine P@1."""
    from keras.applications.vgg16 import preprocess_input

    from lookalike.embed import l2_normalize, load_for_embedding, pool_features
    from lookalike.weights import load_vgg16

    model = load_vgg16(layer="block5_pool")
    t0 = time.perf_counter()
    out = []
    for s in range(0, len(paths), batch_size):
        x = np.stack([load_for_embedding(p) for p in paths[s : s + batch_size]])
        out.append(pool_features(np.asarray(model.predict_on_batch(preprocess_input(x))), "avg"))
    vectors = l2_normalize(np.concatenate(out))
    seconds = time.perf_counter() - t0
    res = _scores(vectors @ vectors.T, vectors, np.asarray(groups), seed)
    return {"recipe": "plain default", **res, "seconds_per_image": seconds / len(paths)}


def evaluate_similarity(
    paths, groups, *, preset: str = "logos", seed: int = 0, **overrides: Any
) -> dict[str, Any]:
    """Embed ``paths`` with ``preset`` and score the fused similarity against ``groups``.

    Parameters
    ----------
    paths : sequence of paths, length n
    groups : sequence of labels, length n
    preset : {"logos", "photos"}
    seed : int
        ``random_state`` of PCA and KMeans.
    **overrides
        Preset keys to change (see :data:`lookalike.similarity.PRESETS`).

    Returns
    -------
    dict with recipe, p_at_1, ari, nmi (similarity clustering at k = number of groups),
    ari_kmeans, nmi_kmeans (KMeans on PCA-100 of the whole vectors), seconds_per_image
    (embedding: decode, crop, parts, colour signature, network), n_images, n_parts.
    """
    params = sim.resolve_preset(preset, **overrides)
    groups = np.asarray(groups)
    from lookalike.weights import load_vgg16

    load_vgg16(layer=params["layer"])  # model loading is not embedding time
    t0 = time.perf_counter()
    emb = sim.embed_parts(paths, **params)
    colour = None
    if params["colour_weight"] > 0:
        colour = np.stack([sim.colour_signature(p, bins=params["colour_bins"]) for p in paths])
    seconds = time.perf_counter() - t0
    vectors, parts = emb["vectors"], emb["parts"] if params["parts"] else None
    if params["whiten"]:
        vectors, parts = sim.whiten(
            vectors, parts, emb["part_mask"], n_components=params["whiten"], random_state=seed
        )
    S = sim.similarity_matrix(
        vectors, parts, emb["part_mask"], colour, colour_weight=params["colour_weight"]
    )
    res = _scores(S, emb["vectors"], groups, seed)
    return {
        "recipe": f"preset {preset}" + "".join(f" {k}={v}" for k, v in overrides.items()),
        **res,
        "seconds_per_image": seconds / len(paths),
        "n_images": len(paths),
        "n_parts": int(emb["part_mask"].sum()),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", required=True, type=Path, help="folder with labels.csv + images/")
    ap.add_argument("--presets", nargs="+", default=["logos", "photos"])
    args = ap.parse_args(argv)
    labels = read_labelled_set(args.set)
    paths, groups = list(labels["path"]), labels["group"].to_numpy()
    print(f"{args.set}: {len(paths)} images, {len(set(groups))} groups")
    rows = [evaluate_plain(paths, groups)]
    rows += [evaluate_similarity(paths, groups, preset=p) for p in args.presets]
    table = pd.DataFrame(rows)
    base = table.loc[0, "seconds_per_image"]
    table["time_vs_plain"] = table["seconds_per_image"] / base
    cols = [
        "recipe",
        "p_at_1",
        "ari",
        "nmi",
        "ari_kmeans",
        "nmi_kmeans",
        "seconds_per_image",
        "time_vs_plain",
    ]
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
