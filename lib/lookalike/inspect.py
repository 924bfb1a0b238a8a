"""Stage 05: choose k and look at the clusters.

* choosing k: :func:`find_knee` (Kneedle), :func:`recommend_k`, :func:`choose_k`;
* plots: :func:`plot_elbow`, :func:`plot_scores`, :func:`plot_pca_variance`, :func:`plot_map`
  (PCA or t-SNE, with thumbnails at their points);
* contact sheets: :func:`contact_sheet`, :func:`cluster_contact_sheets`, :func:`overview_sheet`;
* neighbours and near-duplicates: :func:`nearest_neighbours`, :func:`find_near_duplicates`,
  :func:`near_duplicates_sheet`;
* :class:`ClusterBrowser`, the notebook's ipywidgets browser, whose callbacks are plain
  methods;
* :func:`write_gallery`, a self-contained HTML gallery for people without Jupyter.

Figures are drawn on matplotlib ``Figure`` objects with the Agg canvas (no pyplot state, so it
works headless and inside Jupyter alike) and contact sheets are assembled with Pillow. Every
plotting function writes a PNG and returns its path; in a notebook show it with
``IPython.display.Image(filename=path)``. Similarities between images are cosine similarities
of their PCA-reduced vectors (``RUN/pca.npz``), the space the clusters were found in.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from . import storage
from .cluster import CLUSTERS_COLUMNS, CLUSTERS_NAME, PCA_NAME, image_paths
from .exceptions import ConfigError
from .paths import resolve

FIGURES_DIR = "figures"
REPORT_DIR = "report"
NEAR_DUPLICATES_NAME = "near_duplicates.csv"
NEAR_DUPLICATES_COLUMNS = ["group", "image_id", "path", "group_size", "max_similarity"]
GALLERY_NAME = "gallery.html"
GALLERY_FILES = "gallery_files"

#: ``write_gallery(inline=None)`` inlines thumbnails as data URIs up to this many images.
GALLERY_INLINE_MAX = 1000

_TILE_BG = (255, 255, 255)
_SHEET_BG = (245, 245, 245)
_MISSING = (225, 225, 225)


# -- choosing k ---------------------------------------------------------------------------


def find_knee(k_values: Sequence[int], inertia: Sequence[float]) -> int | None:
    """The elbow of a decreasing, convex inertia curve, or None if there is none.

    Uses ``kneed.KneeLocator(curve="convex", direction="decreasing")`` on the points sorted by
    k (NaN points are dropped); fewer than 3 points never have a knee.
    """
    from kneed import KneeLocator

    k = np.asarray(k_values, dtype=float)
    y = np.asarray(inertia, dtype=float)
    if k.shape != y.shape:
        raise ValueError(f"k_values {k.shape} and inertia {y.shape} differ in length")
    keep = np.isfinite(k) & np.isfinite(y)
    k, y = k[keep], y[keep]
    order = np.argsort(k)
    k, y = k[order], y[order]
    if len(np.unique(k)) < 3:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kneed warns when there is no knee; None says it
        knee = KneeLocator(k, y, curve="convex", direction="decreasing").knee
    return None if knee is None else int(round(float(knee)))


def _method_rows(metrics: pd.DataFrame, method: str = "kmeans") -> pd.DataFrame:
    if "method" in metrics.columns:
        have = sorted(metrics["method"].dropna().unique().tolist())
        if method not in have:
            raise ConfigError(
                f"metrics has no {method!r} rows (methods: {have}); run 04_pca_kmeans "
                f"(cluster_run) first, with agglomerative on for method 'agglomerative'"
            )
        metrics = metrics[metrics["method"] == method]
    if metrics.empty:
        raise ConfigError("metrics has no rows; run 04_pca_kmeans (cluster_run) first")
    return metrics.sort_values("k")


def recommend_k(metrics: pd.DataFrame, *, method: str = "kmeans") -> tuple[int, str]:
    """Suggest a k from a metrics table (:func:`lookalike.cluster.kmeans_sweep`).

    Returns
    -------
    k : int
    rule : str
        Which rule chose it: the knee of the inertia curve when there is one, else the
        highest silhouette, else the smallest k.
    """
    m = _method_rows(metrics, method)
    knee = find_knee(m["k"].tolist(), m["inertia"].tolist())
    if knee is not None:
        return knee, f"knee of the {method} inertia curve at k={knee}, found by Kneedle (kneed)"
    if m["silhouette"].notna().any():
        best = m.loc[m["silhouette"].idxmax()]
        k = int(best["k"])
        return k, (
            f"highest {method} silhouette ({best['silhouette']:.3f}) at k={k}; "
            f"the inertia curve has no knee"
        )
    k = int(m["k"].min())
    return k, f"smallest k={k}: no knee and no silhouette scores"


def default_method(metrics: pd.DataFrame) -> str:
    """The clustering to inspect by default: ``similarity`` when the run has it (the
    ``logos`` preset, measured best on logo sets), else ``kmeans``."""
    have = set(metrics["method"].unique()) if "method" in metrics.columns else {"kmeans"}
    return "similarity" if "similarity" in have else "kmeans"


@dataclass(frozen=True)
class KChoice:
    """The k to inspect and why (see :func:`choose_k`)."""

    k: int
    recommended: int
    rule: str
    knee: int | None
    method: str
    overridden: bool

    def __str__(self) -> str:
        txt = f"{self.method}: recommended k = {self.recommended} ({self.rule})"
        if self.overridden:
            return txt + f"; inspecting k = {self.k}, set by the k parameter"
        return txt + f"; inspecting k = {self.k}"


def choose_k(metrics: pd.DataFrame, k: int | None = None, *, method: str = "kmeans") -> KChoice:
    """The recommended k (:func:`recommend_k`), unless ``k`` overrides it.

    Raises :class:`ConfigError` if ``k`` is not among the k values of ``method``.
    """
    m = _method_rows(metrics, method)
    rec, rule = recommend_k(metrics, method=method)
    knee = find_knee(m["k"].tolist(), m["inertia"].tolist())
    have = sorted(int(x) for x in m["k"])
    if k is None:
        return KChoice(rec, rec, rule, knee, method, overridden=False)
    if int(k) not in have:
        raise ConfigError(
            f"k={k} was not clustered with {method}; available k: {have} "
            f"(add it to k_values and re-run 04_pca_kmeans)"
        )
    return KChoice(int(k), rec, rule, knee, method, overridden=int(k) != rec)


# -- plots --------------------------------------------------------------------------------


def _save_figure(fig, out_path: str | os.PathLike[str], *, dpi: int = 120) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    out = resolve(out_path)
    FigureCanvasAgg(fig)
    with storage.atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    return out


def plot_elbow(
    metrics: pd.DataFrame,
    out_path: str | os.PathLike[str],
    *,
    knee: int | None = None,
    chosen: int | None = None,
    method: str = "kmeans",
) -> Path:
    """Inertia against k (log k axis), the knee and the chosen k marked. Returns the PNG path.

    Parameters
    ----------
    knee : int, optional
        The knee of the curve (:func:`find_knee`); not drawn when None.
    chosen : int, optional
        The k being inspected, when it differs from the knee.
    """
    from matplotlib.figure import Figure

    m = _method_rows(metrics, method)
    fig = Figure(figsize=(6.5, 4))
    ax = fig.subplots()
    ax.plot(m["k"], m["inertia"], marker="o", color="C0")
    if knee is not None:
        ax.axvline(knee, color="C3", linestyle="--", label=f"knee k={knee}")
    if chosen is not None and chosen != knee:
        ax.axvline(chosen, color="C2", linestyle=":", label=f"inspected k={chosen}")
    if knee is not None or chosen is not None:
        ax.legend()
    if m["k"].max() / max(m["k"].min(), 1) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("k (number of clusters)")
    ax.set_ylabel("inertia (sum of squared distances)")
    title = f"Elbow: {method} inertia"
    ax.set_title(title + ("" if knee is not None else " (no knee found)"))
    ax.grid(alpha=0.3, which="both")
    return _save_figure(fig, out_path)


def plot_scores(
    metrics: pd.DataFrame, out_path: str | os.PathLike[str], *, chosen: int | None = None
) -> Path:
    """Silhouette, Davies-Bouldin and Calinski-Harabasz against k, one line per method.

    Returns the PNG path.
    """
    from matplotlib.figure import Figure

    methods = metrics["method"].unique().tolist() if "method" in metrics else ["kmeans"]
    fig = Figure(figsize=(13, 3.8))
    axes = fig.subplots(1, 3)
    specs = [
        ("silhouette", "silhouette (higher is better)"),
        ("davies_bouldin", "Davies-Bouldin (lower is better)"),
        ("calinski_harabasz", "Calinski-Harabasz (higher is better)"),
    ]
    wide = metrics["k"].max() / max(metrics["k"].min(), 1) > 20
    for ax, (col, title) in zip(axes, specs, strict=True):
        for i, method in enumerate(methods):
            m = _method_rows(metrics, method)
            marker = "o" if len(m) > 1 else "s"
            ax.plot(m["k"], m[col], marker=marker, color=f"C{i}", label=method)
        if chosen is not None:
            ax.axvline(chosen, color="C3", linestyle=":", alpha=0.7)
        ax.set_title(title)
        ax.set_xlabel("k")
        if wide:
            ax.set_xscale("log")
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize="small")
    fig.tight_layout()
    return _save_figure(fig, out_path)


def plot_pca_variance(
    run_dir: str | os.PathLike[str], out_path: str | os.PathLike[str] | None = None
) -> Path:
    """Cumulative share of variance kept by the PCA components (``RUN/pca.npz``).

    Returns the PNG path (default ``RUN/figures/pca_variance.png``).
    """
    from matplotlib.figure import Figure

    run = resolve(run_dir)
    with np.load(run / PCA_NAME, allow_pickle=False) as f:
        evr = np.asarray(f["explained_variance_ratio"], dtype=float)
    cum = np.cumsum(evr)
    x = np.arange(1, len(evr) + 1)
    fig = Figure(figsize=(6.5, 4))
    ax = fig.subplots()
    ax.plot(x, 100 * cum, color="C0", label="cumulative")
    ax.bar(x, 100 * evr, color="C1", alpha=0.6, label="per component")
    for share in (0.5, 0.8, 0.9):
        if cum[-1] >= share:
            n = int(np.searchsorted(cum, share) + 1)
            ax.axhline(100 * share, color="grey", linestyle=":", linewidth=0.8)
            ax.plot([n], [100 * share], marker="o", color="C0", markersize=4)
            ax.annotate(
                f"{n} for {100 * share:.0f}%",
                (n, 100 * share),
                xytext=(6, -12),
                textcoords="offset points",
                fontsize=8,
            )
    ax.set_xlabel("principal components kept")
    ax.set_ylabel("% of variance")
    ax.set_ylim(0, 100)
    ax.set_title(f"PCA: {len(evr)} components keep {100 * cum[-1]:.1f}% of the variance")
    ax.legend(loc="center right")
    ax.grid(alpha=0.3)
    out = resolve(out_path) if out_path is not None else run / FIGURES_DIR / "pca_variance.png"
    return _save_figure(fig, out)


# -- thumbnails and contact sheets --------------------------------------------------------


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _thumb(path: str | os.PathLike[str] | None, size: int) -> Image.Image:
    """A ``size`` square thumbnail, transparent parts on white; a crossed tile if unreadable."""
    from .embed import load_for_embedding

    try:
        if path is None:
            raise FileNotFoundError("no path")
        arr = load_for_embedding(path, image_size=size, background="white", fit="pad")
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="RGB")
    except Exception:  # a missing or broken file must not lose the whole sheet
        tile = Image.new("RGB", (size, size), _MISSING)
        d = ImageDraw.Draw(tile)
        d.line([(4, 4), (size - 5, size - 5)], fill=(190, 60, 60), width=2)
        d.line([(4, size - 5), (size - 5, 4)], fill=(190, 60, 60), width=2)
        return tile


def _thumbs(paths: Sequence[str | os.PathLike[str] | None], size: int) -> list[Image.Image]:
    if len(paths) < 4:
        return [_thumb(p, size) for p in paths]
    with ThreadPoolExecutor(max_workers=2) as ex:  # decoding releases the GIL
        return list(ex.map(lambda p: _thumb(p, size), paths))


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def _png_bytes(img: Image.Image) -> bytes:
    buf = BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _save_image(img: Image.Image, out_path: str | os.PathLike[str]) -> Path:
    return storage.atomic_write_bytes(resolve(out_path), _png_bytes(img))


def contact_sheet_image(
    paths: Sequence[str | os.PathLike[str] | None],
    *,
    title: str,
    captions: Sequence[str] | None = None,
    max_images: int = 48,
    thumb: int = 96,
    columns: int = 8,
) -> Image.Image:
    """The contact sheet of :func:`contact_sheet` as a Pillow image (nothing written)."""
    shown = list(paths)[: max(0, int(max_images))]
    cols = max(1, min(columns, len(shown) or 1))
    rows = max(1, math.ceil(len(shown) / cols))
    gap, header = 4, max(22, thumb // 4)
    caption_h = 14 if captions is not None else 0
    cell_h = thumb + caption_h + gap
    width = max(cols * (thumb + gap) + gap, 360)
    height = header + rows * cell_h + gap
    sheet = Image.new("RGB", (width, height), _SHEET_BG)
    draw = ImageDraw.Draw(sheet)
    font = _font(max(11, header - 10))
    small = _font(10)
    draw.text(
        (gap + 2, 4), _fit_text(draw, title, font, width - 2 * gap), fill=(20, 20, 20), font=font
    )
    if not shown:
        draw.text((gap + 2, header + 4), "(no images)", fill=(120, 120, 120), font=font)
    for i, tile in enumerate(_thumbs(shown, thumb)):
        r, c = divmod(i, cols)
        x, y = gap + c * (thumb + gap), header + gap + r * cell_h
        sheet.paste(tile, (x, y))
        if captions is not None and i < len(captions):
            text = _fit_text(draw, str(captions[i]), small, thumb)
            draw.text((x + 1, y + thumb + 1), text, fill=(40, 40, 40), font=small)
    return sheet


def contact_sheet(
    paths: Sequence[str | os.PathLike[str] | None],
    out_path: str | os.PathLike[str],
    *,
    title: str,
    captions: Sequence[str] | None = None,
    max_images: int = 48,
    thumb: int = 96,
    columns: int = 8,
) -> Path:
    """A grid of thumbnails with a title line, in the order given (nearest-first for clusters).

    Parameters
    ----------
    paths : sequence of image paths
        Unreadable or missing files become crossed grey tiles.
    out_path : path of the PNG to write
    title : str
        Drawn above the grid (shortened with "..." if too long).
    captions : sequence of str, optional
        One short line under each thumbnail (for example a distance).
    max_images : int, default 48
        Only the first ``max_images`` paths are shown.
    thumb : int, default 96
        Side of each thumbnail, in pixels; transparent images are shown on white.
    columns : int, default 8

    Returns
    -------
    Path of the written PNG.
    """
    img = contact_sheet_image(
        paths, title=title, captions=captions, max_images=max_images, thumb=thumb, columns=columns
    )
    return _save_image(img, out_path)


def _rows_sheet(
    rows: Sequence[tuple[str, Sequence[str | os.PathLike[str] | None]]],
    *,
    title: str,
    per_row: int,
    thumb: int,
) -> Image.Image:
    """One labelled row of thumbnails per entry of ``rows`` (label, paths)."""
    gap, label_w, header = 4, 150, 26
    width = label_w + per_row * (thumb + gap) + gap
    height = header + max(1, len(rows)) * (thumb + gap) + gap
    sheet = Image.new("RGB", (width, height), _SHEET_BG)
    draw = ImageDraw.Draw(sheet)
    font, small = _font(15), _font(12)
    draw.text((gap + 2, 4), _fit_text(draw, title, font, width - 8), fill=(20, 20, 20), font=font)
    all_paths = [p for _, paths in rows for p in list(paths)[:per_row]]
    tiles = iter(_thumbs(all_paths, thumb))
    for r, (label, paths) in enumerate(rows):
        y = header + gap + r * (thumb + gap)
        draw.multiline_text((gap + 2, y + 4), label, fill=(40, 40, 40), font=small, spacing=3)
        for j in range(min(per_row, len(paths))):
            sheet.paste(next(tiles), (label_w + j * (thumb + gap), y))
    return sheet


def _assignments(run_dir: Path, k: int, method: str) -> pd.DataFrame:
    table = storage.read_table(
        run_dir / CLUSTERS_NAME, required=CLUSTERS_COLUMNS, what="cluster assignments"
    )
    sel = table[(table["method"] == method) & (table["k"] == int(k))]
    if sel.empty:
        have = sorted(table.loc[table["method"] == method, "k"].unique().tolist())
        raise ConfigError(
            f"no {method} clustering with k={k} in {run_dir / CLUSTERS_NAME}; "
            f"available k: {have} (add k to k_values and re-run 04_pca_kmeans)"
        )
    paths = image_paths(run_dir)
    sel = sel.copy()
    sel["abspath"] = [str(paths[i]) if i in paths else None for i in sel["image_id"]]
    return sel.sort_values(["cluster", "rank"], kind="stable")


def _cluster_title(method: str, k: int, c: int, grp: pd.DataFrame) -> str:
    return (
        f"{method} k={k}  cluster {c}:  {len(grp)} images,  cohesion "
        f"{grp['distance'].mean():.3f} (mean distance to centre)"
    )


def cluster_contact_sheets(
    run_dir: str | os.PathLike[str],
    k: int,
    *,
    method: str = "kmeans",
    out_dir: str | os.PathLike[str] | None = None,
    max_images: int = 48,
    thumb: int = 96,
) -> list[Path]:
    """One contact sheet per cluster of the ``k`` clustering, nearest the centroid first.

    Parameters
    ----------
    run_dir : str or Path
        Needs ``RUN/clusters.parquet`` and ``RUN/images.parquet``.
    k : int
        Which clustering of the sweep.
    method : {"kmeans", "agglomerative"}, default "kmeans"
    out_dir : path, optional
        Default ``RUN/figures/clusters``; files are ``k{K}_cluster{C}.png`` for kmeans and
        ``{method}_k{K}_cluster{C}.png`` otherwise.

    Returns
    -------
    list of Path, one per cluster in cluster order (0 is the largest). The title gives the
    cluster size and its cohesion (mean distance of its images to the centre in PCA space;
    lower is tighter).
    """
    run = resolve(run_dir)
    sel = _assignments(run, k, method)
    out = resolve(out_dir) if out_dir is not None else run / FIGURES_DIR / "clusters"
    prefix = "" if method == "kmeans" else f"{method}_"
    written = []
    for c, grp in sel.groupby("cluster", sort=True):
        written.append(
            contact_sheet(
                grp["abspath"].tolist(),
                out / f"{prefix}k{int(k)}_cluster{int(c)}.png",
                title=_cluster_title(method, k, int(c), grp),
                max_images=max_images,
                thumb=thumb,
            )
        )
    return written


def overview_sheet(
    run_dir: str | os.PathLike[str],
    k: int,
    out_path: str | os.PathLike[str] | None = None,
    *,
    method: str = "kmeans",
    per_cluster: int = 8,
    thumb: int = 64,
    max_clusters: int = 100,
) -> Path:
    """One page with the ``per_cluster`` images nearest each centre, one row per cluster.

    At most ``max_clusters`` rows (the largest clusters) keep the page readable. Returns the
    PNG path (default ``RUN/figures/overview_k{K}.png``, ``overview_{method}_k{K}.png`` for
    other methods than kmeans).
    """
    run = resolve(run_dir)
    sel = _assignments(run, k, method)
    name = f"overview_k{k}.png" if method == "kmeans" else f"overview_{method}_k{k}.png"
    out = resolve(out_path) if out_path is not None else run / FIGURES_DIR / name
    groups = list(sel.groupby("cluster", sort=True))
    title = f"{method} k={k}: {len(sel)} images in {len(groups)} clusters"
    if len(groups) > max_clusters:
        title += f" (the {max_clusters} largest shown)"
    rows = [
        (
            f"cluster {c}\n{len(grp)} images\ncohesion {grp['distance'].mean():.3f}",
            grp["abspath"].tolist()[:per_cluster],
        )
        for c, grp in groups[:max_clusters]
    ]
    return _save_image(_rows_sheet(rows, title=title, per_row=per_cluster, thumb=thumb), out)


# -- vectors, neighbours and near-duplicates ------------------------------------------------


def load_reduced(run_dir: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(image_ids, Z)`` from ``RUN/pca.npz``: ids (n,) str and PCA vectors (n, m) float32."""
    run = resolve(run_dir)
    if not (run / PCA_NAME).exists():
        raise ConfigError(f"{run / PCA_NAME} not found; run 04_pca_kmeans (cluster_run) first")
    with np.load(run / PCA_NAME, allow_pickle=False) as f:
        return f["image_id"].astype(str), np.asarray(f["Z"], dtype=np.float32)


def _unit(Z: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(Z, axis=1, keepdims=True)
    return Z / np.maximum(norms, 1e-12)


def nearest_neighbours(
    Z: np.ndarray, queries: Sequence[int] | np.ndarray, n_neighbours: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """The ``n_neighbours`` nearest rows of ``Z`` to each query row, by cosine distance.

    Parameters
    ----------
    Z : array of shape (n_samples, n_features)
    queries : int indices into Z, shape (m,)
    n_neighbours : int, default 8
        Clipped to ``n_samples - 1``; a row is never its own neighbour.

    Returns
    -------
    index : int64 array (m, n_neighbours), nearest first
    distance : float32 array (m, n_neighbours), cosine distance 1 - cos in 0..2
    """
    from sklearn.neighbors import NearestNeighbors

    U = _unit(np.asarray(Z, dtype=np.float32))
    q = np.asarray(queries, dtype=np.int64)
    nn = max(0, min(int(n_neighbours), len(U) - 1))
    if nn == 0 or len(q) == 0:
        return np.zeros((len(q), 0), np.int64), np.zeros((len(q), 0), np.float32)
    # Euclidean distance between unit vectors orders exactly like cosine and uses BLAS.
    model = NearestNeighbors(n_neighbors=nn + 1, algorithm="brute").fit(U)
    d, idx = model.kneighbors(U[q])
    out_i = np.empty((len(q), nn), np.int64)
    out_d = np.empty((len(q), nn), np.float32)
    for r, (row_i, row_d) in enumerate(zip(idx, d, strict=True)):
        keep = row_i != q[r]
        out_i[r] = row_i[keep][:nn]
        out_d[r] = np.clip(row_d[keep][:nn] ** 2 / 2.0, 0.0, 2.0)  # |a-b|^2 = 2 - 2 cos
    return out_i, out_d


def run_neighbours(
    run_dir: str | os.PathLike[str],
    ids: Sequence[str] | np.ndarray,
    Z: np.ndarray,
    queries: Sequence[int] | np.ndarray,
    n_neighbours: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """'More like this': each query's nearest images under the run's own similarity.

    Reads ``RUN/neighbors.parquet`` (stage 04; the fused similarity of the ``logos`` preset,
    cosine for ``photos``) and falls back to :func:`nearest_neighbours` on ``Z`` for queries
    it does not cover (an older run, or more neighbours than it stores).

    Returns
    -------
    index : int64 array (m, n), rows of ``ids``, nearest first
    distance : float32 array (m, n), ``1 - similarity``
    """
    from .similarity import read_neighbors

    q = np.asarray(queries, dtype=np.int64)
    nn = max(0, min(int(n_neighbours), len(ids) - 1))
    idx, dist = nearest_neighbours(Z, q, nn)
    table = read_neighbors(run_dir)
    if table is None or nn == 0 or int(table["rank"].max()) < nn:
        return idx, dist
    row_of = {str(i): r for r, i in enumerate(ids)}
    table = table[table["rank"] <= nn].sort_values(["image_id", "rank"])
    by_id = {
        image_id: (g["neighbor_id"].astype(str).tolist(), g["similarity"].to_numpy())
        for image_id, g in table.groupby("image_id", sort=False)
    }
    for r, row in enumerate(q):
        got = by_id.get(str(ids[row]))
        if got is None or len(got[0]) < nn or any(n not in row_of for n in got[0]):
            continue
        idx[r] = [row_of[n] for n in got[0]]
        dist[r] = 1.0 - got[1].astype(np.float32)
    return idx, dist


def near_duplicate_groups(Z: np.ndarray, threshold: float = 0.97) -> list[np.ndarray]:
    """Groups of rows linked by cosine similarity above ``threshold``.

    Two rows are linked when their cosine similarity is at least ``threshold``; a group is a
    connected set of links (so a chain a~b~c is one group even if a and c are further apart).
    Returns the groups of 2 or more rows, largest first, each sorted by row index.
    """
    from scipy.sparse.csgraph import connected_components
    from sklearn.neighbors import radius_neighbors_graph

    if not 0.0 < float(threshold) <= 1.0:
        raise ConfigError(f"dup_threshold={threshold!r} must be a cosine similarity in (0, 1]")
    U = _unit(np.asarray(Z, dtype=np.float32))
    if len(U) < 2:
        return []
    # cos >= t  <=>  |a-b| <= sqrt(2 - 2t) for unit vectors; the small slack absorbs rounding.
    radius = math.sqrt(max(2.0 - 2.0 * float(threshold), 0.0)) + 1e-6
    graph = radius_neighbors_graph(U, radius, mode="connectivity", include_self=False)
    _, comp = connected_components(graph, directed=False)
    sizes = np.bincount(comp)
    groups = [np.flatnonzero(comp == c) for c in np.flatnonzero(sizes >= 2)]
    return sorted(groups, key=lambda g: (-len(g), g[0]))


def find_near_duplicates(
    run_dir: str | os.PathLike[str],
    *,
    threshold: float = 0.97,
    out_path: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """List groups of near-duplicate images and write them to ``RUN/near_duplicates.csv``.

    Parameters
    ----------
    threshold : float, default 0.97
        Cosine similarity (of the PCA vectors) at or above which two images are linked.
    out_path : path, optional
        Default ``RUN/near_duplicates.csv``.

    Returns
    -------
    DataFrame with :data:`NEAR_DUPLICATES_COLUMNS`: ``group`` (0 = largest), ``image_id``,
    ``path`` (absolute), ``group_size`` and ``max_similarity`` (the image's highest cosine
    similarity to another member of its group). Empty (with the columns) when none.
    """
    t0 = time.perf_counter()
    run = resolve(run_dir)
    ids, Z = load_reduced(run)
    paths = image_paths(run)
    U = _unit(Z)
    rows = []
    groups = near_duplicate_groups(Z, threshold)
    for g, members in enumerate(groups):
        sim = U[members] @ U[members].T
        np.fill_diagonal(sim, -np.inf)
        for i, m in enumerate(members):
            rows.append(
                {
                    "group": g,
                    "image_id": ids[m],
                    "path": str(paths.get(ids[m], "")),
                    "group_size": len(members),
                    "max_similarity": float(sim[i].max()),
                }
            )
    table = pd.DataFrame(rows, columns=NEAR_DUPLICATES_COLUMNS)
    table = table.astype({"group": "int64", "group_size": "int64", "max_similarity": "float64"})
    storage.write_table(table, resolve(out_path) if out_path else run / NEAR_DUPLICATES_NAME)
    print(
        f"near-duplicates: {len(groups)} groups, {len(table)} of {len(ids)} images at cosine "
        f">= {threshold}; {time.perf_counter() - t0:.1f} s"
    )
    return table


def near_duplicates_sheet(
    table: pd.DataFrame,
    out_path: str | os.PathLike[str],
    *,
    max_groups: int = 30,
    per_group: int = 8,
    thumb: int = 64,
) -> Path:
    """One row of thumbnails per near-duplicate group (:func:`find_near_duplicates`)."""
    groups = list(table.groupby("group", sort=True))
    title = f"{len(groups)} near-duplicate groups, {len(table)} images"
    if len(groups) > max_groups:
        title += f" (the {max_groups} largest shown)"
    if not groups:
        title = "no near-duplicates at this threshold"
    rows = [
        (
            f"group {g}\n{len(grp)} images\nmin sim {grp['max_similarity'].min():.3f}",
            [p or None for p in grp["path"].tolist()[:per_group]],
        )
        for g, grp in groups[:max_groups]
    ]
    return _save_image(_rows_sheet(rows, title=title, per_row=per_group, thumb=thumb), out_path)


# -- 2-D maps -------------------------------------------------------------------------------


def embedding_2d(
    Z: np.ndarray,
    *,
    projection: str = "pca",
    max_points: int = 2000,
    random_state: int | None = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """2-D coordinates for a map of ``Z``.

    Parameters
    ----------
    Z : array (n_samples, n_features), PCA output
    projection : {"pca", "tsne"}, default "pca"
        ``pca``: the first two components; ``tsne``: sklearn's t-SNE (perplexity 30, or less
        for small inputs), on a fixed-seed sample of at most ``max_points`` rows.
    max_points : int, default 2000
        t-SNE costs about 30 s per 1,000 points on 2 busy cores.
    random_state : int or None, default 0

    Returns
    -------
    rows : int64 array (m,), the rows of Z that are mapped
    xy : float32 array (m, 2)
    """
    Z = np.asarray(Z, dtype=np.float32)
    rows = np.arange(len(Z))
    if len(Z) > max_points:
        rows = np.sort(np.random.default_rng(random_state).choice(len(Z), max_points, False))
    if projection == "pca":
        xy = np.zeros((len(rows), 2), np.float32)
        xy[:, : min(2, Z.shape[1])] = Z[rows, :2]
        return rows, xy
    if projection != "tsne":
        raise ConfigError(f"projection={projection!r} must be 'pca' or 'tsne'")
    if len(rows) < 3:
        raise ConfigError(f"t-SNE needs at least 3 images, got {len(rows)}")
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    perplexity = float(min(30.0, max(1.0, (len(rows) - 1) / 3.0)))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=random_state)
    # One thread: on a busy 2-core machine threaded t-SNE took 40 s for 12 points (spinning
    # threads), 0.2 s with one; at 3,000 points one thread was within 10%.
    with threadpool_limits(limits=1):
        return rows, tsne.fit_transform(Z[rows]).astype(np.float32)


def _spread_out(
    xy: np.ndarray, order: np.ndarray, limit: int, box: tuple[float, float]
) -> list[int]:
    """Greedily take points in ``order`` whose ``box`` (w, h as fractions of the data span)
    does not overlap the boxes of the points already taken."""
    span = np.maximum(xy.max(axis=0) - xy.min(axis=0), 1e-9)
    p = (xy - xy.min(axis=0)) / span
    w, h = box
    taken: list[int] = []
    for i in order:
        if len(taken) >= limit:
            break
        d = np.abs(p[taken] - p[i])
        if not taken or np.all((d[:, 0] >= w) | (d[:, 1] >= h)):
            taken.append(int(i))
    return taken


def plot_map(
    run_dir: str | os.PathLike[str],
    k: int,
    out_path: str | os.PathLike[str] | None = None,
    *,
    projection: str = "pca",
    method: str = "kmeans",
    max_thumbnails: int = 150,
    thumb: int = 36,
    max_points: int = 2000,
    random_state: int | None = 0,
) -> Path:
    """A 2-D map of the images coloured by cluster, with thumbnails at their points.

    Parameters
    ----------
    run_dir, k, method :
        The clustering to colour by.
    projection : {"pca", "tsne"}, default "pca"
        See :func:`embedding_2d`.
    max_thumbnails : int, default 150
        At most this many thumbnails, placed only where they do not overlap another: the
        image nearest each centre first (largest clusters first), then the others.
    thumb : int, default 36
        Thumbnail side in pixels.
    max_points, random_state :
        See :func:`embedding_2d`.

    Returns
    -------
    Path of the PNG (default ``RUN/figures/map_{projection}_k{K}.png``).
    """
    from matplotlib.figure import Figure
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    run = resolve(run_dir)
    sel = _assignments(run, k, method)
    ids, Z = load_reduced(run)
    rows, xy = embedding_2d(
        Z, projection=projection, max_points=max_points, random_state=random_state
    )
    info = sel.set_index("image_id").reindex(ids[rows])
    labels = info["cluster"].fillna(-1).to_numpy(dtype=np.int64)
    fig = Figure(figsize=(10, 8))
    ax = fig.subplots()
    colors = [_cluster_color(c, k) for c in labels]
    ax.scatter(xy[:, 0], xy[:, 1], s=10, c=colors, alpha=0.7, linewidths=0)
    # Central images first (rank 0 of every cluster, largest clusters first), then the rest.
    order = np.lexsort((labels, info["rank"].fillna(np.inf).to_numpy()))
    # Axes of a 10 x 8 inch figure at 100 dpi are about 775 x 615 pixels (less the margins).
    box = ((thumb + 10) / (775 / 1.16), (thumb + 10) / (615 / 1.16))
    picked = _spread_out(xy, order, max(0, int(max_thumbnails)), box)
    tiles = _thumbs([info["abspath"].iloc[i] for i in picked], thumb)
    for i, tile in zip(picked, tiles, strict=True):
        box = OffsetImage(np.asarray(tile), zoom=1.0)
        ab = AnnotationBbox(
            box,
            (xy[i, 0], xy[i, 1]),
            frameon=True,
            pad=0.1,
            bboxprops={"edgecolor": colors[i], "linewidth": 1.5},
        )
        ax.add_artist(ab)
    name = {"pca": "first two principal components", "tsne": "t-SNE of the PCA vectors"}
    sampled = f", {len(rows)} of {len(ids)} images" if len(rows) < len(ids) else ""
    ax.set_title(
        f"{method} k={k} on the {name[projection]}{sampled}; {len(picked)} thumbnails",
        fontsize=10,
    )
    ax.margins(0.08)
    ax.set_xticks([])
    ax.set_yticks([])
    default = run / FIGURES_DIR / f"map_{projection}_k{k}.png"
    return _save_figure(fig, resolve(out_path) if out_path is not None else default, dpi=100)


def _cluster_color(c: int, k: int):
    from matplotlib import colormaps

    if c < 0:
        return (0.6, 0.6, 0.6, 1.0)
    return colormaps["tab10" if k <= 10 else "tab20"](int(c) % (10 if k <= 10 else 20))


# -- the notebook browser -------------------------------------------------------------------


class ClusterBrowser:
    """Browse clusters and neighbours of a run; the notebook's ipywidgets front end.

    Every callback is a plain method that updates the state (``k``, ``cluster``,
    ``image_id``) and re-renders ``grid_png`` (the cluster's contact sheet),
    ``neighbours_png`` and ``neighbours_table``, so it works and tests without a browser;
    :meth:`widget` wires the same methods to ipywidgets.

    Parameters
    ----------
    run_dir : str or Path
        Needs ``RUN/clusters.parquet``, ``RUN/pca.npz`` and ``RUN/images.parquet``.
    method : {"kmeans", "agglomerative"}, default "kmeans"
    k : int, optional
        The k shown first (default the smallest in the sweep).
    n_neighbours : int, default 8
    thumb : int, default 96
        Thumbnail side in pixels.
    max_images : int, default 48
        Thumbnails in a cluster's grid (nearest the centre first).
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        *,
        method: str = "kmeans",
        k: int | None = None,
        n_neighbours: int = 8,
        thumb: int = 96,
        max_images: int = 48,
    ):
        self.run = resolve(run_dir)
        table = storage.read_table(
            self.run / CLUSTERS_NAME, required=CLUSTERS_COLUMNS, what="cluster assignments"
        )
        self.table = table[table["method"] == method]
        if self.table.empty:
            raise ConfigError(f"no {method} clusterings in {self.run / CLUSTERS_NAME}")
        self.method = method
        self.paths = image_paths(self.run)
        self.ids, self.Z = load_reduced(self.run)
        self._row = {i: r for r, i in enumerate(self.ids)}
        self.n_neighbours = int(n_neighbours)
        self.thumb = int(thumb)
        self.max_images = int(max_images)
        self.k = int(k) if k is not None else self.k_options()[0]
        if self.k not in self.k_options():
            raise ConfigError(f"k={k} not in the {method} sweep; available k: {self.k_options()}")
        self.cluster = 0
        self.image_id: str | None = None
        self.grid_png = b""
        self.neighbours_png = b""
        self.neighbours_table = pd.DataFrame()
        self._w: dict[str, Any] = {}
        self._busy = False
        self.on_k({"new": self.k})

    # -- queries --
    def k_options(self) -> list[int]:
        """The k values of this method in the run, ascending."""
        return sorted(int(k) for k in self.table["k"].unique())

    def cluster_options(self, k: int | None = None) -> list[tuple[str, int]]:
        """``(label, cluster)`` pairs for a dropdown: size and cohesion in the label."""
        sel = self.table[self.table["k"] == (self.k if k is None else int(k))]
        stats = sel.groupby("cluster")["distance"].agg(["size", "mean"])
        return [
            (f"cluster {c}: {int(r['size'])} images, cohesion {r['mean']:.3f}", int(c))
            for c, r in stats.iterrows()
        ]

    def members(self, k: int, cluster: int) -> pd.DataFrame:
        """The images of one cluster, nearest the centre first: image_id, path, distance, rank."""
        sel = self.table[(self.table["k"] == int(k)) & (self.table["cluster"] == int(cluster))]
        sel = sel.sort_values("rank")[["image_id", "distance", "rank"]].reset_index(drop=True)
        sel.insert(1, "path", [str(self.paths.get(i, "")) for i in sel["image_id"]])
        return sel

    def neighbours(self, image_id: str, n: int | None = None) -> pd.DataFrame:
        """Nearest images to ``image_id`` under the run's similarity (:func:`run_neighbours`):
        image_id, path, distance, similarity, and its cluster at the current k."""
        if image_id not in self._row:
            raise ConfigError(f"image_id {image_id!r} is not in {self.run / PCA_NAME}")
        n = self.n_neighbours if n is None else int(n)
        idx, dist = run_neighbours(self.run, self.ids, self.Z, [self._row[image_id]], n)
        nid = self.ids[idx[0]]
        at_k = self.table[self.table["k"] == self.k].set_index("image_id")["cluster"]
        return pd.DataFrame(
            {
                "image_id": nid,
                "path": [str(self.paths.get(i, "")) for i in nid],
                "distance": dist[0],
                "similarity": 1.0 - dist[0],
                "cluster": at_k.reindex(nid).to_numpy(),
            }
        )

    # -- renderings --
    def cluster_grid_png(self, k: int, cluster: int) -> bytes:
        """PNG bytes of a cluster's contact sheet."""
        m = self.members(k, cluster)
        title = (
            f"{self.method} k={k}  cluster {cluster}:  {len(m)} images,  cohesion "
            f"{m['distance'].mean():.3f}"
        )
        paths = [p or None for p in m["path"]]
        img = contact_sheet_image(paths, title=title, max_images=self.max_images, thumb=self.thumb)
        return _png_bytes(img)

    def neighbours_png_for(self, image_id: str) -> tuple[bytes, pd.DataFrame]:
        """PNG bytes of the image followed by its neighbours, distances as captions."""
        nb = self.neighbours(image_id)
        paths = [self.paths.get(image_id)] + [p or None for p in nb["path"]]
        captions = ["query"] + [
            f"d {d:.3f} (c{c})" for d, c in zip(nb["distance"], nb["cluster"], strict=True)
        ]
        name = Path(str(self.paths.get(image_id, image_id))).name
        img = contact_sheet_image(
            paths,
            title=f"{name} and its {len(nb)} nearest neighbours (1 - similarity, cluster)",
            captions=captions,
            max_images=len(paths),
            thumb=self.thumb,
            columns=min(len(paths), 9),
        )
        return _png_bytes(img), nb

    def save_neighbours(self, image_id: str, out_path: str | os.PathLike[str]) -> Path:
        """Write the neighbours sheet of ``image_id`` to a PNG (a static figure for reports)."""
        png, _ = self.neighbours_png_for(image_id)
        return storage.atomic_write_bytes(resolve(out_path), png)

    # -- callbacks (ipywidgets ``observe`` handlers; ``change`` is a dict with "new") --
    def on_k(self, change: dict[str, Any]) -> None:
        """A k was picked: show its first cluster."""
        self.k = int(change["new"])
        options = self.cluster_options()
        self._set_widget("cluster", "options", options)
        self.on_cluster({"new": options[0][1] if options else 0})

    def on_cluster(self, change: dict[str, Any]) -> None:
        """A cluster was picked: render its grid and select its central image."""
        self.cluster = int(change["new"])
        self._set_widget("cluster", "value", self.cluster)
        self.grid_png = self.cluster_grid_png(self.k, self.cluster)
        self._set_widget("grid", "value", self.grid_png)
        m = self.members(self.k, self.cluster)
        opts = [
            (f"rank {r}: {Path(p).name}  (d {d:.3f})", i)
            for i, p, d, r in m.head(200)[["image_id", "path", "distance", "rank"]].itertuples(
                index=False
            )
        ]
        self._set_widget("image", "options", opts)
        if len(m):
            self.on_image({"new": m["image_id"].iloc[0]})

    def on_image(self, change: dict[str, Any]) -> None:
        """An image was picked: render it with its nearest neighbours and their distances."""
        if change["new"] is None:
            return
        self.image_id = str(change["new"])
        self._set_widget("image", "value", self.image_id)
        self.neighbours_png, self.neighbours_table = self.neighbours_png_for(self.image_id)
        self._set_widget("neighbours", "value", self.neighbours_png)
        if "table" in self._w:
            t = self.neighbours_table[["path", "distance", "similarity", "cluster"]].copy()
            t["path"] = [Path(p).name for p in t["path"]]
            self._w["table"].value = t.to_html(index=False, float_format="%.3f")

    def _set_widget(self, name: str, attr: str, value: Any) -> None:
        w = self._w.get(name)
        if w is None or getattr(w, attr) == value:
            return
        self._busy = True  # setting a value fires its observer: don't recurse
        try:
            setattr(w, attr, value)
        finally:
            self._busy = False

    def _observer(self, callback):
        def handler(change: dict[str, Any]) -> None:
            if not self._busy:
                callback(change)

        return handler

    def widget(self):
        """The ipywidgets UI: k and cluster pickers, the grid, an image picker, neighbours."""
        import ipywidgets as w

        self._w = {
            "k": w.Dropdown(options=self.k_options(), value=self.k, description="k"),
            "cluster": w.Dropdown(
                options=self.cluster_options(),
                value=self.cluster,
                description="cluster",
                layout=w.Layout(width="420px"),
            ),
            "grid": w.Image(value=self.grid_png, format="png"),
            "image": w.Dropdown(options=[], description="image", layout=w.Layout(width="520px")),
            "neighbours": w.Image(value=self.neighbours_png, format="png"),
            "table": w.HTML(),
        }
        self._w["k"].observe(self._observer(self.on_k), names="value")
        self._w["cluster"].observe(self._observer(self.on_cluster), names="value")
        self._w["image"].observe(self._observer(self.on_image), names="value")
        self.on_cluster({"new": self.cluster})  # fills the image picker and the table
        return w.VBox(
            [
                w.HBox([self._w["k"], self._w["cluster"]]),
                self._w["grid"],
                self._w["image"],
                self._w["neighbours"],
                self._w["table"],
            ]
        )


# -- the HTML gallery -----------------------------------------------------------------------

_GALLERY_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
:root { --t: __THUMB__px; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       background: #f4f4f5; color: #18181b; }
header { position: sticky; top: 0; z-index: 2; background: #fff; border-bottom: 1px solid #ddd;
         padding: 10px 18px; }
header h1 { font-size: 18px; margin: 0 0 4px; }
header p { margin: 2px 0; font-size: 13px; color: #52525b; }
.controls { display: flex; gap: 16px; align-items: center; flex-wrap: wrap; margin-top: 6px;
            font-size: 14px; }
select { font-size: 14px; padding: 2px 4px; }
main { display: flex; gap: 16px; padding: 14px 18px; align-items: flex-start; }
#clusters { flex: 1; min-width: 0; }
.card { background: #fff; border: 1px solid #e4e4e7; border-radius: 8px; margin: 0 0 12px;
        padding: 8px 10px; }
.card h2 { font-size: 14px; margin: 0 0 6px; font-weight: 600; }
.card h2 small { font-weight: 400; color: #52525b; }
.grid { display: flex; flex-wrap: wrap; gap: 4px; }
img.t { width: var(--t); height: var(--t); border: 1px solid #e4e4e7; border-radius: 4px;
        background: #fff; cursor: pointer; object-fit: contain; }
img.t:hover { outline: 2px solid #2563eb; }
img.sel { outline: 3px solid #dc2626; }
button.more { margin-top: 6px; font-size: 12px; }
#panel { width: calc(var(--t) * 3 + 44px); flex: none; position: sticky; top: 120px;
         background: #fff; border: 1px solid #e4e4e7; border-radius: 8px; padding: 10px;
         font-size: 13px; max-height: calc(100vh - 150px); overflow-y: auto; }
#panel h3 { font-size: 14px; margin: 0 0 6px; word-break: break-all; }
#panel figure { margin: 0 4px 6px 0; display: inline-block; text-align: center; font-size: 11px;
                color: #3f3f46; width: var(--t); vertical-align: top; }
#panel figure.query { display: block; width: auto; }
#panel figure.query img { width: calc(var(--t) * 2); height: calc(var(--t) * 2); }
#dups { padding: 0 18px 18px; }
#dups h2.section { font-size: 16px; }
</style>
</head>
<body>
<header>
  <h1 id="title"></h1>
  <p id="summary"></p>
  <p id="rule"></p>
  <div class="controls">
    <label>clustering <select id="clustering"></select></label>
    <label>order clusters by <select id="order">
      <option value="size">size</option>
      <option value="cohesion">cohesion (tightest first)</option>
    </select></label>
    <span id="stats"></span>
  </div>
</header>
<main>
  <div id="clusters"></div>
  <aside id="panel"><p>Click an image to see its nearest neighbours.</p></aside>
</main>
<section id="dups"></section>
<script type="application/json" id="gallery-data">__DATA__</script>
<script>
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("gallery-data").textContent);
  const $ = (id) => document.getElementById(id);
  const SHOW = 24;
  let current = 0;
  let clusterOf = {};

  function el(tag, attrs, children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") e.textContent = v; else e.setAttribute(k, v);
    }
    for (const c of children || []) e.appendChild(c);
    return e;
  }

  function thumb(i, note) {
    const im = D.images[i];
    const t = el("img", {src: im.src, alt: im.name, class: "t", "data-i": String(i),
                         width: String(D.thumb), height: String(D.thumb),
                         title: im.name + (note ? " | " + note : "")});
    t.addEventListener("click", () => showNeighbours(i));
    return t;
  }

  function card(cl, expand) {
    const n = expand ? cl.m.length : Math.min(SHOW, cl.m.length);
    const grid = el("div", {class: "grid"});
    for (let j = 0; j < n; j++) grid.appendChild(thumb(cl.m[j], "distance " + cl.d[j]));
    const head = el("h2", {text: "cluster " + cl.c + " "},
      [el("small", {text: cl.size + " images, cohesion " + cl.cohesion.toFixed(3)})]);
    const box = el("section", {class: "card", id: "cluster-" + cl.c}, [head, grid]);
    if (cl.m.length > n || cl.size > cl.m.length) {
      const left = cl.m.length - n;
      const label = left > 0 ? "show " + left + " more" :
        "the gallery keeps the " + cl.m.length + " images nearest the centre";
      const b = el("button", {class: "more", text: label});
      if (left > 0) b.addEventListener("click", () => box.replaceWith(card(cl, true)));
      else b.disabled = true;
      box.appendChild(b);
    }
    return box;
  }

  function render(index, opts) {
    current = index;
    const g = D.clusterings[index];
    $("clustering").value = String(index);
    clusterOf = {};
    for (const cl of g.clusters) for (const i of cl.m) clusterOf[i] = cl.c;
    const list = g.clusters.slice();
    if ($("order").value === "cohesion") list.sort((a, b) => a.cohesion - b.cohesion);
    const root = $("clusters");
    root.replaceChildren(...list.map((cl) => card(cl, opts && opts.expand)));
    $("stats").textContent = g.clusters.length + " clusters" +
      (g.silhouette === null ? "" : ", silhouette " + g.silhouette.toFixed(3));
    if (history.replaceState) history.replaceState(null, "", "#" + g.method + "-" + g.k);
  }

  function showNeighbours(i) {
    for (const e of document.querySelectorAll("img.sel")) e.classList.remove("sel");
    for (const e of document.querySelectorAll('img.t[data-i="' + i + '"]')) e.classList.add("sel");
    const im = D.images[i];
    const panel = $("panel");
    const c = clusterOf[i];
    const q = el("figure", {class: "query"}, [thumb(i),
      el("figcaption", {text: c === undefined ? "" : "cluster " + c})]);
    panel.replaceChildren(el("h3", {text: im.name}), q);
    const nb = D.neighbours[i];
    if (!nb) {
      panel.appendChild(el("p", {text: "Neighbours were not computed for this image."}));
      return;
    }
    panel.appendChild(el("p", {text: nb.length + " nearest (1 - similarity, cluster):"}));
    for (const [j, d] of nb) {
      const cj = clusterOf[j];
      panel.appendChild(el("figure", {}, [thumb(j, "distance " + d),
        el("figcaption", {text: d.toFixed(3) + (cj === undefined ? "" : "  c" + cj)})]));
    }
  }

  function renderDups() {
    const box = $("dups");
    if (!D.duplicates) return;
    box.appendChild(el("h2", {class: "section", text: "Near-duplicates (cosine similarity >= " +
      D.duplicates.threshold + "): " + D.duplicates.groups.length + " groups shown"}));
    D.duplicates.groups.forEach((g, n) => {
      const grid = el("div", {class: "grid"}, g.m.map((i) => thumb(i, "group " + n)));
      box.appendChild(el("section", {class: "card"}, [
        el("h2", {text: "group " + n + " "}, [el("small", {text: g.size + " images"})]), grid]));
    });
  }

  $("title").textContent = D.title;
  $("summary").textContent = D.summary;
  $("rule").textContent = D.rule || "";
  D.clusterings.forEach((g, index) => {
    $("clustering").appendChild(el("option", {value: String(index), text: g.label}));
  });
  $("clustering").addEventListener("change", (e) => render(Number(e.target.value)));
  $("order").addEventListener("change", () => render(current));
  let start = D.start;
  const want = decodeURIComponent(location.hash.slice(1));
  D.clusterings.forEach((g, index) => { if (g.method + "-" + g.k === want) start = index; });
  render(start);
  const first = D.clusterings[start].clusters[0];
  if (first && first.m.length) showNeighbours(first.m[0]);
  renderDups();
  window.gallery = {render: render, showNeighbours: showNeighbours, data: D};
})();
</script>
</body>
</html>
"""


def _readable(path: Path) -> Path:
    """Give a file made by ``atomic_write_bytes`` (0600) the usual 0644: it is for sharing."""
    os.chmod(path, 0o644)
    return path


def _jpeg_bytes(img: Image.Image) -> bytes:
    buf = BytesIO()
    img.save(buf, format="JPEG", quality=85, optimize=True)
    return buf.getvalue()


def write_gallery(
    run_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str] | None = None,
    *,
    k_values: Sequence[int] | None = None,
    methods: Sequence[str] = ("kmeans", "agglomerative", "similarity"),
    choice: KChoice | None = None,
    duplicates: pd.DataFrame | None = None,
    dup_threshold: float | None = None,
    max_per_cluster: int = 60,
    max_images: int = 20_000,
    n_neighbours: int = 8,
    thumb: int = 104,
    inline: bool | None = None,
    title: str | None = None,
) -> Path:
    """A self-contained HTML gallery of the clusters, to open in any browser and share.

    A page with a clustering picker (every method and k chosen), one card per cluster (its
    images nearest the centre first, size and cohesion in the heading) and, on a click, an
    image's nearest neighbours with their cosine distances; near-duplicate groups at the end.
    It needs no Jupyter and no network: thumbnails are JPEG data URIs inside the page, or files
    in ``gallery_files/`` beside it (then share the folder).

    Parameters
    ----------
    run_dir : str or Path
        Needs ``RUN/clusters.parquet``, ``RUN/pca.npz`` and ``RUN/images.parquet``.
    out_path : path, optional
        Default ``RUN/report/gallery.html``.
    k_values : sequence of int, optional
        Clusterings to include (default: every k of ``methods`` in the run).
    methods : sequence of str, default ("kmeans", "agglomerative", "similarity")
    choice : KChoice, optional
        The page opens on this clustering and states its rule (:func:`choose_k`).
    duplicates : DataFrame, optional
        :func:`find_near_duplicates` output; at most 50 groups of 12 are shown.
    dup_threshold : float, optional
        The threshold ``duplicates`` was found with, for the heading.
    max_per_cluster : int, default 60
        Images kept per cluster (nearest the centre); the page says when a cluster has more.
    max_images : int, default 20,000
        Bound on the images shown in clusters (each costs a thumbnail and a neighbour search):
        clusterings that would go past it are left out (the chosen one never is), and the page
        and the summary line name them.
    n_neighbours : int, default 8
        Neighbours listed for each image shown in a cluster (searched among all images).
    thumb : int, default 104
        Thumbnail side in pixels.
    inline : bool, optional
        Data URIs (True) or files beside the page (False); default: inline up to
        :data:`GALLERY_INLINE_MAX` images.
    title : str, optional

    Returns
    -------
    Path of the HTML file.
    """
    t0 = time.perf_counter()
    run = resolve(run_dir)
    out = resolve(out_path) if out_path is not None else run / REPORT_DIR / GALLERY_NAME
    table = storage.read_table(run / CLUSTERS_NAME, required=CLUSTERS_COLUMNS, what="clusters")
    table = table[table["method"].isin(list(methods))]
    if k_values is not None:
        table = table[table["k"].isin([int(k) for k in k_values])]
    if table.empty:
        raise ConfigError(
            f"no clusterings of methods {list(methods)} with k in {k_values} in "
            f"{run / CLUSTERS_NAME}; run 04_pca_kmeans or pick k values it computed"
        )
    metrics = None
    if (run / "metrics.csv").exists():
        metrics = pd.read_csv(run / "metrics.csv").set_index(["method", "k"])
    paths = image_paths(run)
    ids, Z = load_reduced(run)
    row_of = {i: r for r, i in enumerate(ids)}

    order: list[str] = []  # image ids in the page, by index
    index: dict[str, int] = {}

    def idx(image_id: str) -> int:
        if image_id not in index:
            index[image_id] = len(order)
            order.append(image_id)
        return index[image_id]

    keys = sorted(table.groupby(["method", "k"]).groups, key=lambda t: (t[0] != "kmeans", t))
    chosen_key = (choice.method, choice.k) if choice is not None else None
    built: dict[tuple[str, int], dict[str, Any]] = {}
    skipped: list[str] = []
    for method, k in sorted(keys, key=lambda t: t != chosen_key):  # the chosen one first
        sel = table[(table["method"] == method) & (table["k"] == k)]
        groups = list(sel.sort_values(["cluster", "rank"], kind="stable").groupby("cluster"))
        tops = [(int(c), grp, grp.head(max_per_cluster)) for c, grp in groups]
        new = {i for _, _, top in tops for i in top["image_id"]} - index.keys()
        if built and len(order) + len(new) > max_images:
            skipped.append(f"{method} k={k}")
            continue
        clusters = [
            {
                "c": c,
                "size": len(grp),
                "cohesion": round(float(grp["distance"].mean()), 3),
                "m": [idx(i) for i in top["image_id"]],
                "d": [round(float(d), 3) for d in top["distance"]],
            }
            for c, grp, top in tops
        ]
        sil = None
        if metrics is not None and (method, k) in metrics.index:
            s = metrics.loc[(method, k), "silhouette"]
            s = float(s.iloc[0] if isinstance(s, pd.Series) else s)
            sil = None if not np.isfinite(s) else round(s, 3)
        label = f"{method} k={k}" + (f" (silhouette {sil:.3f})" if sil is not None else "")
        if (method, k) == chosen_key:
            label += " (chosen)"
        built[(method, k)] = {
            "method": str(method),
            "k": int(k),
            "label": label,
            "silhouette": sil,
            "clusters": clusters,
        }
    kept = [key for key in keys if key in built]
    clusterings = [built[key] for key in kept]
    start = kept.index(chosen_key) if chosen_key in built else 0

    shown = [i for i in order if i in row_of]
    nb_idx, nb_dist = run_neighbours(run, ids, Z, [row_of[i] for i in shown], n_neighbours)
    neighbours: dict[int, list[list[float]]] = {}
    for i, row_i, row_d in zip(shown, nb_idx, nb_dist, strict=True):
        neighbours[index[i]] = [
            [idx(ids[j]), round(float(d), 3)] for j, d in zip(row_i, row_d, strict=True)
        ]
    dups = None
    if duplicates is not None and len(duplicates):
        groups = [
            {"size": len(g), "m": [idx(i) for i in g["image_id"].head(12)]}
            for _, g in list(duplicates.groupby("group", sort=True))[:50]
        ]
        dups = {"threshold": dup_threshold, "groups": groups}

    inline = len(order) <= GALLERY_INLINE_MAX if inline is None else bool(inline)
    files_dir = out.parent / GALLERY_FILES
    images = []
    for s in range(0, len(order), 256):  # bounded memory: thumbnails in chunks
        chunk = order[s : s + 256]
        tiles = _thumbs([paths.get(i) for i in chunk], thumb)
        for image_id, tile in zip(chunk, tiles, strict=True):
            data = _jpeg_bytes(tile)
            if inline:
                src = "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")
            else:
                name = f"{image_id[:24]}.jpg"
                _readable(storage.atomic_write_bytes(files_dir / name, data))
                src = f"{GALLERY_FILES}/{name}"
            p = paths.get(image_id)
            images.append({"src": src, "name": Path(p).name if p else image_id[:12]})
    page_data = {
        "title": title or f"lookalike gallery: {run.name}",
        "summary": (
            f"{len(ids)} images, {len(clusterings)} clusterings; up to {max_per_cluster} images "
            f"per cluster, nearest the centre first; cohesion is the mean distance to the "
            f"centre in PCA space (lower is tighter)."
            + (
                f" Left out to stay under {max_images} images: {', '.join(skipped)}."
                if skipped
                else ""
            )
        ),
        "rule": str(choice) if choice is not None else "",
        "thumb": int(thumb),
        "start": start,
        "images": images,
        "clusterings": clusterings,
        "neighbours": [neighbours.get(i) for i in range(len(order))],
        "duplicates": dups,
    }
    blob = json.dumps(page_data, separators=(",", ":")).replace("<", "\\u003c")
    page = (
        _GALLERY_TEMPLATE.replace("__TITLE__", html.escape(page_data["title"]))
        .replace("__THUMB__", str(int(thumb)))
        .replace("__DATA__", blob)
    )
    _readable(storage.atomic_write_bytes(out, page.encode("utf-8")))
    size = out.stat().st_size / 2**20
    where = "inlined" if inline else f"in {files_dir}"
    left = f"; left out {len(skipped)} clusterings (max_images={max_images})" if skipped else ""
    print(
        f"gallery: {out} ({size:.1f} MiB), {len(clusterings)} clusterings, {len(order)} "
        f"thumbnails {where}{left}; {time.perf_counter() - t0:.1f} s"
    )
    return out
