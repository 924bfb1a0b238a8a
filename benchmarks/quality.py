"""Embedding quality on labelled image sets: which settings put look-alikes together.

For every labelled set (``--set DIR``, where ``DIR/labels.csv`` has the columns ``path,group``,
e.g. ``../shared/data/logos-dev`` or the sets ``benchmarks/make_labelled_sets.py`` builds) and
every named recipe of :data:`RECIPES` (embedding parameters on top of
``lookalike.embed.embed_images``' defaults), all in the same run, it prints:

* ``P@1``: share of images whose nearest neighbour (Euclidean on the vectors as produced;
  cosine for unit vectors) is in the same group;
* for every clustering of :data:`CLUSTERINGS` (KMeans for now), ``ARI`` and ``NMI`` of its
  labels at k = the number of groups, on PCA to 100 components like stage 04.

Then each preset of :mod:`lookalike.similarity` (``photos``, ``logos``), run exactly as the
pipeline runs it (``embed_images`` + ``embed_extras`` in a temporary run folder, then the
fused similarity and its clustering as stage 04 does): ``P@1`` under the preset's similarity,
``ARI``/``NMI`` of KMeans on PCA 100, of agglomerative on PCA 100 and, for ``logos``, of the
similarity clustering, and the embedding seconds per image with the ratio to the ``photos``
preset (the plain default). ``--fresh-cache`` embeds each preset into an empty cache so the
seconds are real (the recipes too); otherwise cached vectors make them small.

``--variant image_size=160`` (repeatable; ``KEY=VALUE[,KEY=VALUE]`` of any preset key) adds
a row per preset with those settings changed, and the change of ``P@1`` and of the ARI of the
preset's own clustering against the preset as it is: the way the ``logos`` preset's input
sizes were chosen (docs/benchmarks.md, "Input size for logos"). ``--skip-recipes`` scores
the presets alone.

Then the peers: published tools run on the same images in the same run, each with its own
documented workflow and in a virtualenv of its own (``make peers`` builds them; they are
measured, never depended on): clustimage with ``method="hog"`` and ``"pca"``, imagededup's
PHash and, when it installs, fastdup (``benchmarks/peers/run_peer.py`` says exactly how each
is called). Their ``P@1`` (nearest other image under the tool's own comparison) and ``ARI``
(the tool's clusters, with k forced to the number of groups where the tool allows it) are
printed beside the presets', then each preset's margin over the best peer against the
targets (P@1 at least +0.05, ARI at least 2x). ``--peers`` chooses them (none: skip).

Then the default against the seeds' recipe (stretch, plain RGB convert, flatten, no
normalisation), metric by metric. The seeds' recipe is not tuned on, and neither is anything
else here: the rows are fixed settings, compared on every set given.

Add a row by adding an entry to :data:`RECIPES`, a clustering by adding one to
:data:`CLUSTERINGS`. Images are decoded and run through VGG16 once per group of recipes that
differ only in pooling/normalisation; vectors are cached per recipe in the same cache as
stage 03 (``--cache-dir``, default ``~/.cache/lookalike/embeddings``), so a second run, or a
new row, only computes what is missing.

Run: ``.venv/bin/python benchmarks/quality.py --set ../shared/data/logos-dev``
(repeat ``--set`` for more sets; without it, every set of :data:`DEFAULT_SETS` that
exists). About 2-3 min per 1,000 images and model pass at fp32 on 2 cores;
``--precision int8`` is ~3x faster and agrees with fp32 to a cosine of ~0.999.
"""

from __future__ import annotations

import argparse
import inspect
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from _common import ROOT, nearest_neighbours, read_labelled_set
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from lookalike import embed, model, preprocess, storage, vectors
from lookalike import similarity as sim
from lookalike.cluster import agglomerative_labels, similarity_clusters
from lookalike.exceptions import LookalikeError
from lookalike.extras import embed_extras
from lookalike.neighbors import l2_normalize
from lookalike.paths import RunLayout
from lookalike.reduce import fit_pca

#: Named embedding settings: overrides of ``embed_images``' defaults. ``default`` is the
#: library's own defaults (so it follows them), ``seeds`` reproduces the seed notebooks.
RECIPES: dict[str, dict[str, Any]] = {
    "seeds": {"fit": "stretch", "background": "none", "pooling": "flatten", "normalize": False},
    "default": {},
    "avg": {"pooling": "avg"},
    "max": {"pooling": "max"},
    "gem": {"pooling": "gem"},
    "flatten+l2": {"pooling": "flatten"},
    "max, unnormalised": {"pooling": "max", "normalize": False},
    "max, block4_pool": {"pooling": "max", "layer": "block4_pool"},
    "max, trim": {"pooling": "max", "trim": True},
    "max, background auto": {"pooling": "max", "background": "auto"},
    "max, plain RGB convert": {"pooling": "max", "background": "none"},
    "max, stretch": {"pooling": "max", "fit": "stretch"},
}

#: Sets used when no ``--set`` is given (those present): the shared logos-dev set and the
#: sets ``benchmarks/make_labelled_sets.py`` builds.
DEFAULT_SETS = [
    ROOT.parent / "shared" / "data" / "logos-dev",
    ROOT / "benchmarks" / "sets" / "devicon",
    ROOT / "benchmarks" / "sets" / "emoji",
    ROOT / "benchmarks" / "sets" / "dark",
]

#: Published tools run beside the recipes (``benchmarks/peers/run_peer.py``), each in the
#: virtualenv ``make peers`` builds for it: tool -> virtualenv folder under ``benchmarks/``.
PEERS: dict[str, str] = {
    "clustimage-hog": ".peers-venv",
    "clustimage-pca": ".peers-venv",
    "imagededup-phash": ".peers-venv",
    "fastdup": ".fastdup-venv",
}

#: Clusterings scored at k = number of groups: ``fn(Z, k, random_state) -> labels``.
CLUSTERINGS: dict[str, Callable[[np.ndarray, int, int], np.ndarray]] = {
    "kmeans": lambda Z, k, rs: KMeans(n_clusters=k, n_init=4, random_state=rs).fit_predict(Z),
    "agglo": lambda Z, k, rs: agglomerative_labels(Z, n_clusters=k),
}

#: Parameters that change the network's input or the network: recipes that agree on these
#: share one model pass.
_PASS_KEYS = ("layer", "image_size", "background", "fit", "trim", "precision")
_POOL_KEYS = ("pooling", "normalize")


def embed_defaults() -> dict[str, Any]:
    """The embedding parameters of ``embed_images`` and their defaults."""
    sig = inspect.signature(embed.embed_images)
    keys = _PASS_KEYS + _POOL_KEYS
    return {k: sig.parameters[k].default for k in keys}


def recipe_params(overrides: dict[str, Any], **common: Any) -> dict[str, Any]:
    """Full parameters of a recipe: defaults, then ``common`` (e.g. precision), then its own."""
    unknown = set(overrides) - set(_PASS_KEYS + _POOL_KEYS)
    if unknown:
        raise SystemExit(f"recipe uses unknown parameter(s) {sorted(unknown)}")
    return {**embed_defaults(), **common, **overrides}


def embed_set(
    paths: list[Path],
    recipes: dict[str, dict[str, Any]],
    *,
    cache_dir: Path | None,
    batch_size: int,
    workers: int,
) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, float]]:
    """Vectors of ``paths`` for every recipe, from the cache or one model pass per group.

    Returns
    -------
    vectors : {recipe: ndarray (n_ok, dim)}, rows of the images that decoded
    ok : bool ndarray (len(paths),), which images decoded
    seconds : {recipe: seconds of its model pass, shared by the recipes of a pass}
    """
    ids = [storage.sha256_bytes(p.read_bytes()) for p in paths]
    cache_root = model.vector_cache_root(cache_dir or None)
    wid = model.weights_id()
    groups: dict[tuple, list[str]] = {}
    for name, params in recipes.items():
        groups.setdefault(tuple(params[k] for k in _PASS_KEYS), []).append(name)

    n = len(paths)
    out: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    bad = np.zeros(n, dtype=bool)
    for key, names in groups.items():
        pre = dict(zip(_PASS_KEYS, key, strict=True))
        caches, dims = {}, {}
        for name in names:
            p = recipes[name]
            cache_params = embed.embedding_params(
                **{k: p[k] for k in _PASS_KEYS + _POOL_KEYS}, weights=wid
            )
            caches[name] = vectors.VectorCache(cache_root / embed.params_hash(cache_params))
            dims[name] = model.output_dim(p["layer"], p["image_size"], p["pooling"])
            out[name] = np.zeros((n, dims[name]), dtype=np.float32)
        todo = []
        for i in range(n):
            hit = True
            for name in names:
                v = caches[name].get(ids[i], dims[name])
                if v is None:
                    hit = False
                    break
                out[name][i] = v
            if not hit:
                todo.append(i)
        t0 = time.perf_counter()
        if todo:
            extractor = model.load_extractor(
                layer=pre["layer"],
                precision=pre["precision"],
                image_size=pre["image_size"],
                cache_dir=cache_root,
            )

            def load(i: int, pre: dict[str, Any] = pre) -> np.ndarray:
                return preprocess.load_for_embedding(
                    paths[i],
                    image_size=pre["image_size"],
                    background=pre["background"],
                    fit=pre["fit"],
                    trim=pre["trim"],
                )

            label = ", ".join(names)
            stream = vectors.feature_batches(
                todo, load, extractor, batch_size=batch_size, workers=workers, desc=label
            )
            for positions, feats, errors in stream:
                for j, _ in errors:
                    bad[todo[j]] = True
                if feats is None:
                    continue
                rows = [todo[j] for j in positions]
                for name in names:
                    p = recipes[name]
                    v = model.pool_features(feats, p["pooling"])
                    if p["normalize"]:
                        v = l2_normalize(v)
                    out[name][rows] = v
                    for r, vec in zip(rows, v, strict=True):
                        caches[name].put(ids[r], vec)
        for name in names:
            seconds[name] = time.perf_counter() - t0
    ok = ~bad
    return {name: v[ok] for name, v in out.items()}, ok, seconds


def score(
    vectors: np.ndarray, labels: np.ndarray, *, pca_components: int = 100, random_state: int = 0
) -> dict[str, float]:
    """``P@1`` and, for every clustering, ``<name> ARI`` and ``<name> NMI`` at k = #groups."""
    k = len(np.unique(labels))
    res = {"P@1": float(np.mean(labels[nearest_neighbours(vectors)] == labels))}
    Z, _ = fit_pca(vectors, n_components=pca_components, random_state=random_state)
    for name, cluster in CLUSTERINGS.items():
        pred = cluster(Z, k, random_state)
        res[f"{name} ARI"] = float(adjusted_rand_score(labels, pred))
        res[f"{name} NMI"] = float(normalized_mutual_info_score(labels, pred))
    return res


def evaluate_preset(
    paths: list[Path],
    labels: np.ndarray,
    preset: str,
    *,
    cache_dir: Path | None,
    batch_size: int,
    workers: int,
    precision: str,
    random_state: int = 0,
    overrides: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Scores of ``preset`` on a labelled set, through the pipeline's own functions.

    The images go into a temporary run folder (a ``folder`` manifest pointing at them), are
    embedded with :func:`lookalike.embed.embed_images` and
    :func:`lookalike.extras.embed_extras` at the preset's settings, and compared with
    the preset's fused similarity, as stages 03 and 04 do.

    Returns
    -------
    dict with ``P@1``, ``kmeans ARI``/``NMI``, ``agglo ARI``/``NMI``, ``similarity ARI``/``NMI``
    (NaN for presets that do not cluster on the similarity), ``s/img`` (embedding seconds,
    whole images plus parts and colour, per image) and ``n``. ``overrides`` change preset
    keys, as in :func:`lookalike.similarity.resolve_preset`.
    """
    settings = sim.resolve_preset(preset, **(overrides or {}))
    ids = [storage.sha256_bytes(p.read_bytes()) for p in paths]
    label_of: dict[str, int] = {}
    for i, lab in zip(ids, labels, strict=True):
        label_of.setdefault(i, int(lab))
    rows = pd.DataFrame(
        {
            "image_id": ids,
            "path": [str(p.resolve()) for p in paths],
            "source": "folder",
            "origin": [str(p.resolve()) for p in paths],
            "status": "ok",
        }
    )
    with tempfile.TemporaryDirectory(prefix="quality-run-") as tmp:
        run = Path(tmp)
        storage.merge_manifest(run, rows)
        whole = embed.embed_images(
            run,
            **sim.embed_kwargs(settings),
            batch_size=batch_size,
            precision=precision,
            workers=workers,
            cache_dir=cache_dir,
        )
        if whole["failed"]:
            failed = pd.read_parquet(RunLayout(run).embed_failed)
            print(f"{whole['failed']} images failed, e.g. {failed['error'].iloc[0]}")
        if not whole["embedded"]:
            raise SystemExit("no image of the set could be embedded")
        extras = embed_extras(
            run,
            settings,
            batch_size=batch_size,
            precision=precision,
            workers=workers,
            cache_dir=cache_dir,
        )
        feats = sim.load_features(run)
        feats["vectors"] = np.array(feats["vectors"])  # off the memory map before cleanup
    y = np.asarray([label_of[i] for i in feats["ids"]["image_id"].astype(str)])
    k = len(np.unique(y))
    inputs = sim.fused_inputs(feats, random_state=random_state)
    S = sim.similarity_matrix(**inputs)
    np.fill_diagonal(S, -np.inf)
    res: dict[str, float] = {"P@1": float(np.mean(y[S.argmax(axis=1)] == y))}
    np.fill_diagonal(S, 1.0)
    Z, _ = fit_pca(feats["vectors"], n_components=100, random_state=random_state)
    for name, cluster in CLUSTERINGS.items():
        pred = cluster(Z, k, random_state)
        res[f"{name} ARI"] = float(adjusted_rand_score(y, pred))
        res[f"{name} NMI"] = float(normalized_mutual_info_score(y, pred))
    res["similarity ARI"] = res["similarity NMI"] = float("nan")
    if settings["cluster_method"] == "similarity":
        pred = similarity_clusters(S, n_clusters=k)
        res["similarity ARI"] = float(adjusted_rand_score(y, pred))
        res["similarity NMI"] = float(normalized_mutual_info_score(y, pred))
    res["s/img"] = (whole["seconds"] + extras["seconds"]) / max(1, len(y))
    res["n"] = float(len(y))
    return res


def available_peers() -> list[str]:
    """The tools of :data:`PEERS` whose virtualenv exists (``make peers`` builds them)."""
    return [t for t, venv in PEERS.items() if (ROOT / "benchmarks" / venv / "bin/python").exists()]


def score_peers(paths: list[Path], labels: np.ndarray, tools: list[str]) -> dict[str, dict]:
    """``P@1``, ``ARI`` (NaN without clustering), ``s/img`` of each peer tool on one set.

    The images are copied into a temporary folder as ``000000.png`` ... (so every tool sees
    the same files in the same order) and each tool runs in its own virtualenv through
    ``benchmarks/peers/run_peer.py`` with k = the number of groups. A tool that fails gets a
    row of NaN and its error is printed: a peer must never stop the benchmark.
    """
    k = len(np.unique(labels))
    out: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="quality-peers-") as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        for i, p in enumerate(paths):
            shutil.copyfile(p, folder / f"{i:06d}{Path(p).suffix.lower()}")
        for tool in tools:
            python = ROOT / "benchmarks" / PEERS[tool] / "bin" / "python"
            result = Path(tmp) / f"{tool}.json"
            cmd = [str(python), str(ROOT / "benchmarks" / "peers" / "run_peer.py")]
            cmd += ["--tool", tool, "--images", str(folder), "--k", str(k), "--out", str(result)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode or not result.is_file():
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
                print(f"peer {tool} failed (exit {proc.returncode}): {tail[0]}")
                out[tool] = {"P@1": float("nan"), "ARI": float("nan"), "s/img": float("nan")}
                continue
            res = json.loads(result.read_text())
            order = [int(Path(f).stem) for f in res["files"]]
            y = labels[order]
            nn = np.asarray(res["nn"])
            hit = (nn >= 0) & (y[np.clip(nn, 0, None)] == y)
            ari = float("nan")
            if res["labels"] is not None:
                ari = float(adjusted_rand_score(y, np.asarray(res["labels"])))
            out[tool] = {
                "P@1": float(hit.mean()),
                "ARI": ari,
                "s/img": res["seconds"] / len(y),
                "version": res.get("version", "?"),
            }
    return out


def print_peers(peers: dict[str, dict], presets: dict[str, dict]) -> None:
    """The peers' rows, then each preset's margin over the best peer against the targets
    (P@1 >= best + 0.05; ARI of the preset's own clustering >= 2x the best peer's)."""
    if not peers:
        return
    print(f"{'peer':44s} {'P@1':>8s} {'ARI':>8s}   s/img  version")
    for tool, row in peers.items():
        print(
            f"{'peer ' + tool:44s} {row['P@1']:8.3f} {row['ARI']:8.3f}  {row['s/img']:6.3f}  "
            f"{row.get('version', '-')}"
        )
    p1s = {t: r["P@1"] for t, r in peers.items() if np.isfinite(r["P@1"])}
    aris = {t: r["ARI"] for t, r in peers.items() if np.isfinite(r["ARI"])}
    for name, row in presets.items():
        ari_col = own_ari(row["preset"])
        parts = []
        if p1s:
            best = max(p1s, key=p1s.get)
            margin = row["P@1"] - p1s[best]
            ok = "met" if margin >= 0.05 else "NOT met"
            parts.append(f"P@1 {margin:+.3f} over {best} (target +0.05: {ok})")
        if aris:
            best = max(aris, key=aris.get)
            if aris[best] > 0:
                ratio = row[ari_col] / aris[best]
                ok = "met" if ratio >= 2 else "NOT met"
                parts.append(f"{ari_col} {ratio:.2f}x {best}'s (target 2x: {ok})")
            else:  # no ratio to a chance-level ARI: only whether ours is above it
                ok = "met" if row[ari_col] > 0 else "NOT met"
                parts.append(
                    f"{ari_col} {row[ari_col]:.3f}, best peer {aris[best]:.3f} ({best}, at "
                    f"chance: target {ok})"
                )
        print(f"preset {name} vs the best peer: " + "; ".join(parts))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--set",
        action="append",
        help="labelled set folder (repeatable); default: those of DEFAULT_SETS that exist",
    )
    ap.add_argument("--recipes", nargs="*", help=f"subset of {list(RECIPES)}")
    ap.add_argument("--precision", default="fp32", choices=model.PRECISIONS)
    ap.add_argument("--image-size", type=int, default=None, help="override for every recipe")
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--random-state", type=int, default=0)
    ap.add_argument(
        "--presets", nargs="*", default=list(sim.PRESETS), help="presets to score (none: skip)"
    )
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        help="KEY=VALUE[,KEY=VALUE]: one more row per preset with those keys changed",
    )
    ap.add_argument("--skip-recipes", action="store_true", help="score the presets only")
    ap.add_argument(
        "--peers",
        nargs="*",
        default=None,
        help=f"peer tools to run (default: those of {list(PEERS)} that `make peers` installed; "
        "none: skip)",
    )
    ap.add_argument(
        "--fresh-cache",
        action="store_true",
        help="embed into empty temporary caches, so the seconds are real",
    )
    args = ap.parse_args(argv)

    sets = args.set or [str(d) for d in DEFAULT_SETS if (d / "labels.csv").is_file()]
    args.peers = available_peers() if args.peers is None else args.peers
    unknown = set(args.peers) - set(PEERS)
    if unknown:
        raise SystemExit(f"unknown peer(s) {sorted(unknown)}; known: {list(PEERS)}")
    print(f"peers: {args.peers or 'none (make peers installs them)'}")
    if not sets:
        print(f"no labelled set found (looked for {[str(d) for d in DEFAULT_SETS]}); pass --set")
        return 0
    names = args.recipes or list(RECIPES)
    for must in ("seeds", "default"):
        if must not in names:
            names.insert(0 if must == "seeds" else 1, must)
    common: dict[str, Any] = {"precision": args.precision}
    if args.image_size:
        common["image_size"] = args.image_size
    try:
        recipes = {
            name: recipe_params(RECIPES[name], **(common if name != "seeds" else {}))
            for name in names
        }
    except KeyError as e:
        raise SystemExit(f"unknown recipe {e}; known: {list(RECIPES)}") from None
    print(f"default parameters: {embed_defaults()}; precision {args.precision}")
    for name in names:
        print(f"  {name:24s} {RECIPES[name] or '(the defaults)'}")

    for folder in sets:
        df = read_labelled_set(folder)
        if args.skip_recipes:
            print(f"\n== {folder}: {len(df)} images in {df['label'].nunique()} groups")
            ok = np.ones(len(df), dtype=bool)
            presets = print_presets(df, ok, args) if args.presets else {}
            print_peers(run_peers(df, ok, args), presets)
            continue
        try:
            with tempfile.TemporaryDirectory(prefix="quality-cache-") as fresh:
                vectors, ok, seconds = embed_set(
                    list(df["path"]),
                    recipes,
                    cache_dir=Path(fresh) if args.fresh_cache else args.cache_dir,
                    batch_size=args.batch_size,
                    workers=args.workers,
                )
        except LookalikeError as e:
            raise SystemExit(f"error: {e}") from None
        labels = df["label"].to_numpy()[ok]
        n_groups = len(np.unique(labels))
        print(
            f"\n== {folder}: {int(ok.sum())} images in {n_groups} groups "
            f"({int((~ok).sum())} unreadable, left out)"
        )
        table = {
            name: score(v, labels, random_state=args.random_state) for name, v in vectors.items()
        }
        cols = list(next(iter(table.values())))
        print(
            f"{'recipe':26s} {'dim':>6s} "
            + " ".join(f"{c:>11s}" for c in cols)
            + "  pass s   s/img"
        )
        for name in names:
            row = table[name]
            print(
                f"{name:26s} {vectors[name].shape[1]:6d} "
                + " ".join(f"{row[c]:11.3f}" for c in cols)
                + f"  {seconds[name]:6.0f}  {seconds[name] / max(1, len(labels)):6.3f}"
            )
        base, ours = table["seeds"], table["default"]
        wins = [c for c in cols if ours[c] > base[c]]
        print(
            "default vs seeds: "
            + ", ".join(
                f"{c} {ours[c]:.3f} vs {base[c]:.3f} ({ours[c] / base[c]:.2f}x)"
                if base[c] > 0
                else f"{c} {ours[c]:.3f} vs {base[c]:.3f}"
                for c in cols
            )
            + f"; default better on {len(wins)}/{len(cols)}"
        )
        presets = print_presets(df, ok, args) if args.presets else {}
        print_peers(run_peers(df, ok, args), presets)
    return 0


def run_peers(df: pd.DataFrame, ok: np.ndarray, args: argparse.Namespace) -> dict[str, dict]:
    """:func:`score_peers` on the readable images of one set, for ``args.peers``."""
    if not args.peers:
        return {}
    paths = [Path(p) for p, keep in zip(df["path"], ok, strict=True) if keep]
    return score_peers(paths, df["label"].to_numpy()[ok], args.peers)


def print_presets(
    df: pd.DataFrame, ok: np.ndarray, args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    """Score every preset of ``args.presets`` (and its ``--variant`` rows) on one set, print a
    table and return the rows by name, each with its ``preset``."""
    results, base_of = {}, {}
    for preset in args.presets:
        for variant in [None, *args.variant]:
            overrides = parse_variant(variant) if variant else {}
            name = preset if not variant else f"{preset}, {variant}"
            base_of[name] = preset
            with tempfile.TemporaryDirectory(prefix="quality-cache-") as fresh:
                cache = Path(fresh) if args.fresh_cache else args.cache_dir
                results[name] = evaluate_preset(
                    [p for p, keep in zip(df["path"], ok, strict=True) if keep],
                    df["label"].to_numpy()[ok],
                    preset,
                    cache_dir=cache,
                    batch_size=args.batch_size,
                    workers=args.workers,
                    precision=args.precision,
                    random_state=args.random_state,
                    overrides=overrides,
                )
    cols = [c for c in next(iter(results.values())) if c not in ("s/img", "n")]
    print(f"{'preset':44s} " + " ".join(f"{c:>14s}" for c in cols) + "   s/img  x photos")
    base = results.get("photos", {}).get("s/img")
    for preset, row in results.items():
        ratio = f"{row['s/img'] / base:8.2f}" if base else "       -"
        print(
            f"{'preset ' + preset:44s} "
            + " ".join(f"{row[c]:14.3f}" for c in cols)
            + f"  {row['s/img']:6.3f}  {ratio}"
        )
    for name, preset in base_of.items():
        if name == preset:
            continue
        ari = own_ari(preset)
        row, ref = results[name], results[preset]
        d_p1, d_ari = row["P@1"] - ref["P@1"], row[ari] - ref[ari]
        verdict = "within" if min(d_p1, d_ari) >= -0.01 else "NOT within"
        print(f"{name}: P@1 {d_p1:+.3f}, {ari} {d_ari:+.3f} against {preset} ({verdict} 0.01)")
    if not args.fresh_cache:
        print("(seconds include cached vectors; pass --fresh-cache for real embedding times)")
    return {name: {**row, "preset": base_of[name]} for name, row in results.items()}


def own_ari(preset: str) -> str:
    """The ARI column of a preset's own clustering: the similarity's, else KMeans'."""
    own = sim.PRESETS[preset]["cluster_method"] == "similarity"
    return "similarity ARI" if own else "kmeans ARI"


def parse_variant(text: str) -> dict[str, Any]:
    """``"image_size=160,trim=false"`` -> ``{"image_size": 160, "trim": False}`` (YAML values)."""
    out: dict[str, Any] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--variant {text!r}: expected KEY=VALUE[,KEY=VALUE]")
        out[key.strip()] = yaml.safe_load(value)
    return out


if __name__ == "__main__":
    raise SystemExit(main())
