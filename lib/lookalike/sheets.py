"""Thumbnails and contact sheets, drawn with Pillow.

* :func:`thumbs`: square thumbnails, transparent parts on white, a crossed tile for a file
  that cannot be read;
* :func:`contact_sheet` (:func:`contact_sheet_image` without writing): a titled grid;
* :func:`cluster_contact_sheets` and :func:`overview_sheet`: the clusters of one k, nearest
  the centre first;
* :func:`near_duplicates_sheet`: one row per group of
  :func:`lookalike.duplicates.find_near_duplicates`.

Every function that writes returns the path of the PNG; in a notebook show it with
``IPython.display.Image(filename=path)``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from . import storage
from .cluster import CLUSTERS_COLUMNS
from .exceptions import ConfigError
from .images import png_bytes
from .paths import RunLayout, resolve

__all__ = [
    "MAX_CLUSTER_SHEETS",
    "cluster_assignments",
    "cluster_contact_sheets",
    "contact_sheet",
    "contact_sheet_image",
    "near_duplicates_sheet",
    "overview_sheet",
    "read_clusterings",
    "thumbs",
]

#: :func:`cluster_contact_sheets` writes the sheets of at most this many clusters (the
#: largest) by default: at k=1000 one sheet per cluster would decode 48,000 thumbnails.
MAX_CLUSTER_SHEETS = 100

_SHEET_BG = (245, 245, 245)
_MISSING = (225, 225, 225)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _thumb(path: str | os.PathLike[str] | None, size: int) -> Image.Image:
    """A ``size`` square thumbnail, transparent parts on white; a crossed tile if unreadable."""
    from .preprocess import load_for_embedding

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


def thumbs(paths: Sequence[str | os.PathLike[str] | None], size: int) -> list[Image.Image]:
    """One ``size`` x ``size`` RGB thumbnail per path, in order (see :func:`_thumb`)."""
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
    return storage.atomic_write_bytes(resolve(out_path), png_bytes(img))


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
    lines = max((str(c).count("\n") + 1 for c in captions or ()), default=1)
    caption_h = 13 * lines + 1 if captions is not None else 0
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
    for i, tile in enumerate(thumbs(shown, thumb)):
        r, c = divmod(i, cols)
        x, y = gap + c * (thumb + gap), header + gap + r * cell_h
        sheet.paste(tile, (x, y))
        if captions is not None and i < len(captions):
            _caption(draw, str(captions[i]), (x + 1, y + thumb + 1), small, thumb)
    return sheet


def _caption(draw: ImageDraw.ImageDraw, text: str, xy: tuple[int, int], font, width: int) -> None:
    """Draw ``text`` under a thumbnail, a line per ``\\n``, each cut to ``width`` pixels."""
    for n, line in enumerate(text.split("\n")):
        line = _fit_text(draw, line, font, width)
        draw.text((xy[0], xy[1] + 13 * n), line, fill=(40, 40, 40), font=font)


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
        A short text under each thumbnail (for example a distance and a label); ``"\\n"``
        starts a new line, and each line is cut to the thumbnail's width.
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
    rows: Sequence[tuple[str, Sequence[str | os.PathLike[str] | None], Sequence[str]]],
    *,
    title: str,
    per_row: int,
    thumb: int,
) -> Image.Image:
    """One labelled row of thumbnails per entry of ``rows`` (label, paths, captions: a line
    under each thumbnail, may be empty)."""
    gap, label_w, header = 4, 150, 26
    caption_h = 13 if any(caps for _, _, caps in rows) else 0
    row_h = thumb + caption_h + gap
    width = label_w + per_row * (thumb + gap) + gap
    height = header + max(1, len(rows)) * row_h + gap
    sheet = Image.new("RGB", (width, height), _SHEET_BG)
    draw = ImageDraw.Draw(sheet)
    font, small, tiny = _font(15), _font(12), _font(10)
    draw.text((gap + 2, 4), _fit_text(draw, title, font, width - 8), fill=(20, 20, 20), font=font)
    all_paths = [p for _, paths, _ in rows for p in list(paths)[:per_row]]
    tiles = iter(thumbs(all_paths, thumb))
    for r, (label, paths, caps) in enumerate(rows):
        y = header + gap + r * row_h
        draw.multiline_text((gap + 2, y + 4), label, fill=(40, 40, 40), font=small, spacing=3)
        for j in range(min(per_row, len(paths))):
            x = label_w + j * (thumb + gap)
            sheet.paste(next(tiles), (x, y))
            if j < len(caps):
                _caption(draw, caps[j].split("\n")[0], (x + 1, y + thumb + 1), tiny, thumb)
    return sheet


def read_clusterings(
    run: RunLayout,
    *,
    methods: Sequence[str] | None = None,
    k_values: Sequence[int] | None = None,
    max_rank: int | None = None,
    columns: Sequence[str] | None = None,
    image_ids: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Rows of ``RUN/clusters.parquet``, filtered while reading (never the whole table).

    At 1,000,000 images the table has one row per image and clustering (48 million for the
    default sweep); the filters are pushed down to the parquet reader so only the rows
    asked for are ever decoded.

    Parameters
    ----------
    methods, k_values : optional
        Keep these methods / k values (default all).
    max_rank : int, optional
        Keep the rows with ``rank < max_rank`` (the images nearest each centre).
    columns : sequence of str, optional
        Columns to read (default :data:`lookalike.cluster.CLUSTERS_COLUMNS`).
    image_ids : sequence of str, optional
        Keep the rows of these images (default all).
    """
    path = run.clusters
    if not path.is_file():
        raise ConfigError(f"cluster assignments not found: {path}; run 04_pca_kmeans first")
    filters = []
    if methods is not None:
        filters.append(("method", "in", [str(m) for m in methods]))
    if k_values is not None:
        filters.append(("k", "in", [int(k) for k in k_values]))
    if max_rank is not None:
        filters.append(("rank", "<", int(max_rank)))
    if image_ids is not None:
        filters.append(("image_id", "in", [str(i) for i in image_ids]))
    cols = list(CLUSTERS_COLUMNS if columns is None else columns)
    table = pd.read_parquet(path, columns=cols, filters=filters or None)
    if "method" in table.columns:
        table["method"] = table["method"].astype(str)
    return table


def cluster_assignments(
    run: RunLayout, k: int, method: str, *, max_rank: int | None = None
) -> pd.DataFrame:
    """The rows of one clustering of ``RUN/clusters.parquet``, by cluster and rank.

    Adds ``abspath``, the image's absolute path (None when the manifest lacks it), its
    ``label``, ``n_origins`` and ``caption`` (the label with the count of its other origins:
    :func:`lookalike.storage.image_info`). Raises :class:`ConfigError` naming the available
    k when the run has no such clustering. ``max_rank`` keeps only the images nearest each
    centre (``rank < max_rank``).
    """
    sel = read_clusterings(run, methods=[method], k_values=[k], max_rank=max_rank)
    if sel.empty:
        have = read_clusterings(run, methods=[method], max_rank=1, columns=["k"])
        raise ConfigError(
            f"no {method} clustering with k={k} in {run.clusters}; available k: "
            f"{sorted(have['k'].unique().tolist())} (add k to k_values and re-run 04_pca_kmeans)"
        )
    info = storage.image_info(run)
    known = info.reindex(sel["image_id"])
    sel["abspath"] = [str(run.image_path(p)) if isinstance(p, str) else None for p in known["path"]]
    sel["label"] = known["label"].fillna("").to_numpy()
    sel["n_origins"] = known["n_origins"].fillna(1).to_numpy(np.int64)
    sel["caption"] = known["caption"].fillna("").to_numpy()
    return sel.sort_values(["cluster", "rank"], kind="stable")


def _cluster_stats(run: RunLayout, k: int, method: str) -> pd.DataFrame:
    """Size and cohesion (mean distance to the centre) of every cluster, by cluster."""
    sel = read_clusterings(run, methods=[method], k_values=[k], columns=["cluster", "distance"])
    return sel.groupby("cluster")["distance"].agg(size="size", cohesion="mean")


def _cluster_title(method: str, k: int, c: int, stats: pd.Series) -> str:
    return (
        f"{method} k={k}  cluster {c}:  {int(stats['size'])} images,  cohesion "
        f"{stats['cohesion']:.3f} (mean distance to centre)"
    )


def cluster_contact_sheets(
    run_dir: str | os.PathLike[str],
    k: int,
    *,
    method: str = "kmeans",
    out_dir: str | os.PathLike[str] | None = None,
    max_images: int = 48,
    thumb: int = 96,
    max_sheets: int | None = None,
) -> list[Path]:
    """One contact sheet per cluster of the ``k`` clustering (the ``max_sheets`` largest),
    nearest the centroid first.

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
    max_images : int, default 48
        Images per sheet (nearest the centre first).
    max_sheets : int, optional
        Sheets of at most this many clusters, the largest (clusters are numbered by size);
        None: :data:`MAX_CLUSTER_SHEETS` (100). Only the images shown are read and decoded,
        so the cost is bounded by ``max_sheets * max_images`` whatever the run's size.

    Returns
    -------
    list of Path, one per cluster in cluster order (0 is the largest). The title gives the
    cluster size and its cohesion (mean distance of its images to the centre in PCA space;
    lower is tighter).
    """
    run = RunLayout(run_dir)
    max_sheets = MAX_CLUSTER_SHEETS if max_sheets is None else max(0, int(max_sheets))
    sel = cluster_assignments(run, k, method, max_rank=max_images)
    stats = _cluster_stats(run, k, method)
    out = resolve(out_dir) if out_dir is not None else run.cluster_sheets_dir
    prefix = "" if method == "kmeans" else f"{method}_"
    written = []
    for c, grp in sel.groupby("cluster", sort=True):
        if len(written) >= max_sheets:
            break
        written.append(
            contact_sheet(
                grp["abspath"].tolist(),
                out / f"{prefix}k{int(k)}_cluster{int(c)}.png",
                title=_cluster_title(method, k, int(c), stats.loc[c]),
                captions=grp["caption"].tolist(),
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
    run = RunLayout(run_dir)
    sel = cluster_assignments(run, k, method, max_rank=per_cluster)
    stats = _cluster_stats(run, k, method)
    name = f"overview_k{k}.png" if method == "kmeans" else f"overview_{method}_k{k}.png"
    out = resolve(out_path) if out_path is not None else run.figure(name)
    title = f"{method} k={k}: {int(stats['size'].sum())} images in {len(stats)} clusters"
    if len(stats) > max_clusters:
        title += f" (the {max_clusters} largest shown)"
    top = sel[sel["cluster"].isin(stats.index[:max_clusters])]
    rows = [
        (
            f"cluster {c}\n{int(stats.loc[c, 'size'])} images\n"
            f"cohesion {stats.loc[c, 'cohesion']:.3f}",
            grp["abspath"].tolist()[:per_cluster],
            grp["caption"].tolist()[:per_cluster],
        )
        for c, grp in top.groupby("cluster", sort=True)
    ]
    return _save_image(_rows_sheet(rows, title=title, per_row=per_cluster, thumb=thumb), out)


def near_duplicates_sheet(
    table: pd.DataFrame,
    out_path: str | os.PathLike[str],
    *,
    max_groups: int = 30,
    per_group: int = 8,
    thumb: int = 64,
) -> Path:
    """One row of thumbnails per group of :func:`lookalike.duplicates.find_near_duplicates`:
    the exact duplicates first (the image once per origin, each with its label), then the
    near-duplicate groups (each image with its label and the count of its other origins)."""
    if "kind" not in table.columns:  # a table of an older version: near groups only
        table = table.assign(kind="near", label="", n_origins=1)
    n_groups = int(table["group"].nunique()) if len(table) else 0
    n_exact = int(table.loc[table["kind"] == "exact", "group"].nunique()) if len(table) else 0
    n_images = int(table.loc[table["kind"] == "near", "image_id"].size) if len(table) else 0
    title = (
        f"{n_exact} images with several origins (exact duplicates), "
        f"{n_groups - n_exact} near-duplicate groups of {n_images} images"
    )
    if n_groups > max_groups:
        title += f" (the first {max_groups} shown)"
    if not n_groups:
        title = "no exact or near-duplicates at this threshold"
    # Groups are numbered exact first, then largest first: only the first are ever grouped.
    groups = list(table[table["group"] < max_groups].groupby("group", sort=True))
    rows = []
    for g, grp in groups[:max_groups]:
        grp = grp.head(per_group)
        if grp["kind"].iloc[0] == "exact":
            head = f"group {g}: exact\none image, {int(grp['group_size'].iloc[0])} origins"
            caps = [storage.short_label(lab, width=16) for lab in grp["label"]]
        else:
            head = (
                f"group {g}\n{int(grp['group_size'].iloc[0])} images\n"
                f"min sim {grp['max_similarity'].min():.3f}"
            )
            caps = [
                storage.short_label(lab, n)
                for lab, n in zip(grp["label"].fillna(""), grp["n_origins"], strict=True)
            ]
        rows.append((head, [p or None for p in grp["path"].tolist()], caps))
    return _save_image(_rows_sheet(rows, title=title, per_row=per_group, thumb=thumb), out_path)
