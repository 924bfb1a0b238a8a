"""Figures of stage 05, drawn with matplotlib: the elbow, the scores, the PCA variance and
2-D maps of the images coloured by cluster with thumbnails at their points.

Figures are drawn on matplotlib ``Figure`` objects with the Agg canvas (no pyplot state, so it
works headless and inside Jupyter alike). Every function writes a PNG and returns its path; in
a notebook show it with ``IPython.display.Image(filename=path)``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from . import storage
from .elbow import method_rows, space_label
from .exceptions import ConfigError
from .paths import RunLayout, resolve
from .reduce import read_reduced
from .sheets import cluster_assignments, thumbs

__all__ = [
    "TSNE_MAX_POINTS",
    "embedding_2d",
    "plot_elbow",
    "plot_map",
    "plot_pca_variance",
    "plot_scores",
]

#: t-SNE maps at most this many images by default (a fixed-seed sample of a larger run).
TSNE_MAX_POINTS = 2000


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
        The clear knee of the curve (:func:`lookalike.elbow.find_knee`); not drawn when None.
    chosen : int, optional
        The k being inspected, when it differs from the knee.
    """
    from matplotlib.figure import Figure

    m = method_rows(metrics, method)
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
    ax.set_title(title + ("" if knee is not None else " (no clear knee)"))
    ax.grid(alpha=0.3, which="both")
    return _save_figure(fig, out_path)


def plot_scores(
    metrics: pd.DataFrame, out_path: str | os.PathLike[str], *, chosen: int | None = None
) -> Path:
    """Silhouette, Davies-Bouldin and Calinski-Harabasz against k, one line per method.

    The silhouette legend names the space each method's silhouette was computed in
    (``silhouette_space`` of the metrics: the PCA space, or ``1 -`` the fused similarity for
    ``similarity``); Davies-Bouldin and Calinski-Harabasz are always in PCA space. Returns
    the PNG path.
    """
    from matplotlib.figure import Figure

    methods = metrics["method"].unique().tolist() if "method" in metrics else ["kmeans"]
    fig = Figure(figsize=(13, 3.8))
    axes = fig.subplots(1, 3)
    specs = [
        ("silhouette", "silhouette (higher is better)"),
        ("davies_bouldin", "Davies-Bouldin (lower is better; PCA space)"),
        ("calinski_harabasz", "Calinski-Harabasz (higher is better; PCA space)"),
    ]
    wide = metrics["k"].max() / max(metrics["k"].min(), 1) > 20
    for ax, (col, title) in zip(axes, specs, strict=True):
        for i, method in enumerate(methods):
            m = method_rows(metrics, method)
            marker = "o" if len(m) > 1 else "s"
            label = _silhouette_label(m, method) if col == "silhouette" else method
            ax.plot(m["k"], m[col], marker=marker, color=f"C{i}", label=label)
        if chosen is not None:
            ax.axvline(chosen, color="C3", linestyle=":", alpha=0.7)
        ax.set_title(title)
        ax.set_xlabel("k")
        if wide:
            ax.set_xscale("log")
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize="small", title="silhouette computed in", title_fontsize="small")
    fig.tight_layout()
    return _save_figure(fig, out_path)


def _silhouette_label(rows: pd.DataFrame, method: str) -> str:
    """``"similarity: 1 - fused similarity"``: a method and the space of its silhouette."""
    if "silhouette_space" not in rows:  # metrics.csv from before the column: all PCA
        return f"{method}: {space_label('pca')}"
    spaces = rows["silhouette_space"].dropna().unique().tolist() or ["pca"]
    return f"{method}: {', '.join(space_label(s) for s in spaces)}"


def plot_pca_variance(
    run_dir: str | os.PathLike[str], out_path: str | os.PathLike[str] | None = None
) -> Path:
    """Cumulative share of variance kept by the PCA components (``RUN/pca.npz``).

    Returns the PNG path (default ``RUN/figures/pca_variance.png``).
    """
    from matplotlib.figure import Figure

    run = RunLayout(run_dir)
    with np.load(run.pca, allow_pickle=False) as f:
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
    out = resolve(out_path) if out_path is not None else run.figure("pca_variance.png")
    return _save_figure(fig, out)


def embedding_2d(
    Z: np.ndarray,
    *,
    projection: str = "pca",
    max_points: int = TSNE_MAX_POINTS,
    random_state: int | None = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """2-D coordinates for a map of ``Z``.

    Parameters
    ----------
    Z : array (n_samples, n_features), PCA output
    projection : {"pca", "tsne"}, default "pca"
        ``pca``: the first two components; ``tsne``: sklearn's t-SNE (perplexity 30, or less
        for small inputs), on a fixed-seed sample of at most ``max_points`` rows.
    max_points : int, default :data:`TSNE_MAX_POINTS` (2000)
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
    max_points: int | None = None,
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
        image nearest each centre first (largest clusters first), then the others. Each has
        its label under it (cut to fit, "(+n more)" when other origins share the image).
    thumb : int, default 36
        Thumbnail side in pixels.
    max_points, random_state :
        See :func:`embedding_2d`; ``max_points=None``: :data:`TSNE_MAX_POINTS` (2000).

    Returns
    -------
    Path of the PNG (default ``RUN/figures/map_{projection}_k{K}.png``).
    """
    from matplotlib.figure import Figure
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage, TextArea, VPacker

    run = RunLayout(run_dir)
    sel = cluster_assignments(run, k, method)
    ids, Z = read_reduced(run)
    max_points = TSNE_MAX_POINTS if max_points is None else max_points
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
    box = ((thumb + 10) / (775 / 1.16), (thumb + 20) / (615 / 1.16))  # a label line below
    picked = _spread_out(xy, order, max(0, int(max_thumbnails)), box)
    tiles = thumbs([info["abspath"].iloc[i] for i in picked], thumb)
    for i, tile in zip(picked, tiles, strict=True):
        label = storage.short_label(
            info["label"].iloc[i], info["n_origins"].iloc[i], width=max(4, thumb // 4)
        )
        box = VPacker(
            children=[
                OffsetImage(np.asarray(tile), zoom=1.0),
                TextArea(label, textprops={"fontsize": 5, "color": "0.2"}),
            ],
            align="center",
            pad=0,
            sep=1,
        )
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
    default = run.figure(f"map_{projection}_k{k}.png")
    return _save_figure(fig, resolve(out_path) if out_path is not None else default, dpi=100)


def _cluster_color(c: int, k: int):
    from matplotlib import colormaps

    if c < 0:
        return (0.6, 0.6, 0.6, 1.0)
    return colormaps["tab10" if k <= 10 else "tab20"](int(c) % (10 if k <= 10 else 20))
