"""Stage 05: choose k and look at the clusters.

Figures are drawn on matplotlib ``Figure`` objects with the Agg canvas (no pyplot state, so it
works headless and inside Jupyter alike) and contact sheets are assembled with Pillow. Every
function writes a PNG and returns its path; in a notebook show it with
``IPython.display.Image(path)``.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from . import io
from .cluster import CLUSTERS_COLUMNS, CLUSTERS_NAME, PCA_NAME
from .exceptions import ConfigError
from .paths import resolve

FIGURES_DIR = "figures"

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


def _kmeans_rows(metrics: pd.DataFrame) -> pd.DataFrame:
    if "method" in metrics.columns and (metrics["method"] == "kmeans").any():
        metrics = metrics[metrics["method"] == "kmeans"]
    if metrics.empty:
        raise ConfigError("metrics has no rows; run 04_cluster (cluster_run) first")
    return metrics.sort_values("k")


def recommend_k(metrics: pd.DataFrame) -> tuple[int, str]:
    """Suggest a k from a metrics table (:func:`lookalike.cluster.kmeans_sweep`).

    Returns
    -------
    k : int
    rule : str
        Which rule chose it: the knee of the inertia curve when there is one, else the
        highest silhouette.
    """
    m = _kmeans_rows(metrics)
    knee = find_knee(m["k"].tolist(), m["inertia"].tolist())
    if knee is not None:
        return knee, f"knee of the inertia curve at k={knee} (kneed, convex, decreasing)"
    if m["silhouette"].notna().any():
        best = m.loc[m["silhouette"].idxmax()]
        k = int(best["k"])
        return k, (
            f"highest silhouette ({best['silhouette']:.3f}) at k={k}; the inertia curve has no knee"
        )
    k = int(m["k"].min())
    return k, f"smallest k={k}: no knee and no silhouette scores"


# -- plots --------------------------------------------------------------------------------


def _save_figure(fig, out_path: str | os.PathLike[str], *, dpi: int = 120) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    out = resolve(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def plot_elbow(
    metrics: pd.DataFrame, out_path: str | os.PathLike[str], *, knee: int | None = None
) -> Path:
    """Inertia against k, with the knee (if given) marked. Returns the PNG path."""
    from matplotlib.figure import Figure

    m = _kmeans_rows(metrics)
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.plot(m["k"], m["inertia"], marker="o", color="C0")
    if knee is not None:
        ax.axvline(knee, color="C3", linestyle="--", label=f"knee k={knee}")
        ax.legend()
    ax.set_xlabel("k (number of clusters)")
    ax.set_ylabel("inertia (sum of squared distances)")
    ax.set_title("Elbow: KMeans inertia")
    ax.grid(alpha=0.3)
    return _save_figure(fig, out_path)


def plot_scores(metrics: pd.DataFrame, out_path: str | os.PathLike[str]) -> Path:
    """Silhouette, Davies-Bouldin and Calinski-Harabasz against k. Returns the PNG path."""
    from matplotlib.figure import Figure

    m = _kmeans_rows(metrics)
    fig = Figure(figsize=(12, 3.6))
    axes = fig.subplots(1, 3)
    specs = [
        ("silhouette", "silhouette (higher is better)", "C0"),
        ("davies_bouldin", "Davies-Bouldin (lower is better)", "C1"),
        ("calinski_harabasz", "Calinski-Harabasz (higher is better)", "C2"),
    ]
    for ax, (col, title, color) in zip(axes, specs, strict=True):
        ax.plot(m["k"], m[col], marker="o", color=color)
        ax.set_title(title)
        ax.set_xlabel("k")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save_figure(fig, out_path)


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


def _save_image(img: Image.Image, out_path: str | os.PathLike[str]) -> Path:
    buf = BytesIO()
    img.save(buf, format="PNG")
    return io.atomic_write_bytes(resolve(out_path), buf.getvalue())


def contact_sheet(
    paths: Sequence[str | os.PathLike[str] | None],
    out_path: str | os.PathLike[str],
    *,
    title: str,
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
    max_images : int, default 48
        Only the first ``max_images`` paths are shown.
    thumb : int, default 96
        Side of each thumbnail, in pixels; transparent images are shown on white.
    columns : int, default 8

    Returns
    -------
    Path of the written PNG.
    """
    shown = list(paths)[: max(0, int(max_images))]
    cols = max(1, min(columns, len(shown) or 1))
    rows = max(1, math.ceil(len(shown) / cols))
    gap, header = 4, max(22, thumb // 4)
    width = max(cols * (thumb + gap) + gap, 360)
    height = header + rows * (thumb + gap) + gap
    sheet = Image.new("RGB", (width, height), _SHEET_BG)
    draw = ImageDraw.Draw(sheet)
    font = _font(max(11, header - 10))
    draw.text(
        (gap + 2, 4), _fit_text(draw, title, font, width - 2 * gap), fill=(20, 20, 20), font=font
    )
    if not shown:
        draw.text((gap + 2, header + 4), "(no images)", fill=(120, 120, 120), font=font)
    for i, tile in enumerate(_thumbs(shown, thumb)):
        r, c = divmod(i, cols)
        sheet.paste(tile, (gap + c * (thumb + gap), header + gap + r * (thumb + gap)))
    return _save_image(sheet, out_path)


def _assignments(run_dir: Path, k: int, method: str) -> pd.DataFrame:
    table = io.read_table(
        run_dir / CLUSTERS_NAME, required=CLUSTERS_COLUMNS, what="cluster assignments"
    )
    sel = table[(table["method"] == method) & (table["k"] == int(k))]
    if sel.empty:
        have = sorted(table.loc[table["method"] == method, "k"].unique().tolist())
        raise ConfigError(
            f"no {method} clustering with k={k} in {run_dir / CLUSTERS_NAME}; "
            f"available k: {have} (add k to k_values and re-run 04_cluster)"
        )
    manifest = io.read_manifest(run_dir, ok_only=True)
    paths = dict(zip(manifest["image_id"], manifest["path"], strict=True))
    sel = sel.copy()
    sel["abspath"] = [
        str(io.image_abspath(run_dir, paths[i])) if isinstance(paths.get(i), str) else None
        for i in sel["image_id"]
    ]
    return sel.sort_values(["cluster", "rank"], kind="stable")


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
    out_dir : path, optional
        Default ``RUN/figures/clusters``; files are ``k{K}_cluster{C}.png``.

    Returns
    -------
    list of Path, one per cluster in cluster order. The title gives the cluster size and its
    cohesion (mean distance of its images to the centroid in PCA space; lower is tighter).
    """
    run = resolve(run_dir)
    sel = _assignments(run, k, method)
    out = resolve(out_dir) if out_dir is not None else run / FIGURES_DIR / "clusters"
    written = []
    for c, grp in sel.groupby("cluster", sort=True):
        title = (
            f"k={k}  cluster {c}:  {len(grp)} images,  cohesion {grp['distance'].mean():.3f} "
            f"(mean distance to centroid)"
        )
        written.append(
            contact_sheet(
                grp["abspath"].tolist(),
                out / f"k{int(k)}_cluster{int(c)}.png",
                title=title,
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
) -> Path:
    """One page with the ``per_cluster`` images nearest each centroid, one row per cluster.

    Returns the PNG path (default ``RUN/figures/overview_k{K}.png``).
    """
    run = resolve(run_dir)
    sel = _assignments(run, k, method)
    out = resolve(out_path) if out_path is not None else run / FIGURES_DIR / f"overview_k{k}.png"
    groups = list(sel.groupby("cluster", sort=True))
    gap, label_w, header = 4, 150, 26
    width = label_w + per_cluster * (thumb + gap) + gap
    height = header + len(groups) * (thumb + gap) + gap
    sheet = Image.new("RGB", (width, height), _SHEET_BG)
    draw = ImageDraw.Draw(sheet)
    font, small = _font(15), _font(12)
    draw.text((gap + 2, 4), f"{method} k={k}: {len(sel)} images", fill=(20, 20, 20), font=font)
    all_paths = [p for _, g in groups for p in g["abspath"].tolist()[:per_cluster]]
    tiles = iter(_thumbs(all_paths, thumb))
    for r, (c, grp) in enumerate(groups):
        y = header + gap + r * (thumb + gap)
        label = f"cluster {c}\n{len(grp)} images\ncohesion {grp['distance'].mean():.3f}"
        draw.multiline_text((gap + 2, y + 4), label, fill=(40, 40, 40), font=small, spacing=3)
        for j in range(min(per_cluster, len(grp))):
            sheet.paste(next(tiles), (label_w + j * (thumb + gap), y))
    return _save_image(sheet, out)


def _tab20(c: int):
    from matplotlib import colormaps

    return colormaps["tab20"](int(c) % 20)


def plot_pca(
    run_dir: str | os.PathLike[str],
    k: int,
    out_path: str | os.PathLike[str] | None = None,
    *,
    method: str = "kmeans",
) -> Path:
    """Scatter of the first two PCA components coloured by cluster (``RUN/pca.npz``).

    Returns the PNG path (default ``RUN/figures/pca_k{K}.png``).
    """
    from matplotlib.figure import Figure

    run = resolve(run_dir)
    sel = _assignments(run, k, method)
    with np.load(run / PCA_NAME, allow_pickle=False) as f:
        ids, xy, evr = f["image_id"], f["coords2d"], f["explained_variance_ratio"]
    pos = pd.Series(np.arange(len(ids)), index=pd.Index(ids.astype(str)))
    idx = pos.reindex(sel["image_id"].astype(str)).to_numpy()
    fig = Figure(figsize=(6.5, 5))
    ax = fig.subplots()
    labels = sel["cluster"].to_numpy()
    for c in np.unique(labels):
        m = labels == c
        color = f"C{c % 10}" if k <= 10 else _tab20(c)
        ax.scatter(xy[idx[m], 0], xy[idx[m], 1], s=12, alpha=0.8, color=color, label=str(c))
    if k <= 20:
        ax.legend(title="cluster", fontsize="small", loc="best", markerscale=1.5)
    ev = list(evr[:2]) + [0.0, 0.0]
    ax.set_xlabel(f"PC1 ({100 * ev[0]:.1f}% variance)")
    ax.set_ylabel(f"PC2 ({100 * ev[1]:.1f}% variance)")
    ax.set_title(f"{method} k={k} on the first two principal components")
    out = resolve(out_path) if out_path is not None else run / FIGURES_DIR / f"pca_k{k}.png"
    return _save_figure(fig, out)
