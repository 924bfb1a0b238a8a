"""A self-contained HTML gallery of a run's clusters, to open in any browser and share.

:func:`write_gallery` fills the page ``lookalike/templates/gallery.html`` (package data) with
the run's clusterings, each shown image's neighbours, the near-duplicate groups and the
searches of ``lookalike find`` (:func:`lookalike.find.read_find`), as one JSON blob;
thumbnails are JPEG data URIs inside the page or files beside it.
"""

from __future__ import annotations

import base64
import html
import json
import os
import time
import urllib.parse
from collections.abc import Sequence
from importlib import resources
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from . import storage
from .cluster import image_paths
from .duplicates import N_NEIGHBOURS, run_neighbours
from .elbow import KChoice
from .exceptions import ConfigError
from .find import read_find
from .mapview import cluster_colours, map_coords, plotly_js
from .neighbors import match_text, read_matches
from .paths import RunLayout, resolve
from .reduce import read_reduced
from .sheets import read_clusterings, thumbs

__all__ = ["GALLERY_FIND_MAX", "GALLERY_INLINE_MAX", "GALLERY_PAGE_SIZE", "write_gallery"]

#: ``write_gallery(inline=None)`` inlines thumbnails as data URIs up to this many images.
GALLERY_INLINE_MAX = 1000
#: Images per cluster inside the page itself by default; the others a cluster keeps (up to
#: ``max_per_cluster``) are in one page file per clustering, loaded on "show more". So the
#: HTML holds at most (clusters shown) x this many images, whatever the run's size, and the
#: map's (at most :data:`lookalike.mapview.MAP_MAX_POINTS`).
GALLERY_PAGE_SIZE = 24
#: Query images of ``lookalike find`` shown in the page's Find section, all searches together
#: (the first of each search's table, searches in name order); each brings its hits.
GALLERY_FIND_MAX = 50


def _template() -> str:
    """The page, with ``__TITLE__``, ``__THUMB__``, ``__DATA__`` and ``__PLOTLYJS__`` to
    fill in.

    It is package data named after this module: ``lookalike/templates/gallery.html``.
    """
    page = resources.files(__package__) / "templates" / f"{Path(__file__).stem}.html"
    return page.read_text(encoding="utf-8")


def _readable(path: Path) -> Path:
    """Give a file made by ``atomic_write_bytes`` (0600) the usual 0644: it is for sharing."""
    os.chmod(path, 0o644)
    return path


def _jpeg_bytes(img: Image.Image) -> bytes:
    buf = BytesIO()
    img.save(buf, format="JPEG", quality=85, optimize=True)
    return buf.getvalue()


class _PageImages:
    """The images of the page, numbered in the order they are first used."""

    def __init__(self) -> None:
        self.order: list[str] = []  # image ids, by number
        self.index: dict[str, int] = {}

    def __call__(self, image_id: str) -> int:
        """The number of ``image_id``, adding it to the page if it is new."""
        if image_id not in self.index:
            self.index[image_id] = len(self.order)
            self.order.append(image_id)
        return self.index[image_id]


def _read_clusterings(
    run: RunLayout, methods: Sequence[str], k_values: Sequence[int] | None, max_rank: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows of ``RUN/clusters.parquet`` of ``methods`` and ``k_values`` with
    ``rank < max_rank``, and every cluster's ``size`` and ``cohesion`` (indexed by method, k,
    cluster). Never the whole table: at 1,000,000 images it has 48 million rows."""
    table = read_clusterings(run, methods=methods, k_values=k_values, max_rank=max_rank)
    if table.empty:
        raise ConfigError(
            f"no clusterings of methods {list(methods)} with k in {k_values} in "
            f"{run.clusters}; run 04_pca_kmeans or pick k values it computed"
        )
    stats = []
    for method in table["method"].unique():  # one method at a time: numeric columns only
        sel = read_clusterings(
            run, methods=[method], k_values=k_values, columns=["k", "cluster", "distance"]
        )
        agg = sel.groupby(["k", "cluster"])["distance"].agg(size="size", cohesion="mean")
        stats.append(pd.concat({str(method): agg}, names=["method"]))
    return table, pd.concat(stats)


def _silhouette(metrics: pd.DataFrame | None, method: str, k: int) -> float | None:
    """The silhouette of one clustering, rounded to 3 places; None when unknown or NaN."""
    if metrics is None or (method, k) not in metrics.index:
        return None
    s = metrics.loc[(method, k), "silhouette"]
    s = float(s.iloc[0] if isinstance(s, pd.Series) else s)
    return None if not np.isfinite(s) else round(s, 3)


def _build_clusterings(
    table: pd.DataFrame,
    stats: pd.DataFrame,
    metrics: pd.DataFrame | None,
    chosen_key: tuple[str, int] | None,
    page: _PageImages,
    *,
    max_per_cluster: int,
    max_images: int,
    page_size: int,
) -> tuple[list[dict[str, Any]], int, list[str]]:
    """The page's clusterings (kmeans first), the one it opens on, and those left out.

    The chosen clustering is built first so that ``max_images`` never leaves it out. Each
    cluster's first ``page_size`` images are in ``m`` and ``d``; the others it keeps (up to
    ``max_per_cluster``) in ``more_m`` and ``more_d``, for the clustering's page file.
    """
    keys = sorted(table.groupby(["method", "k"]).groups, key=lambda t: (t[0] != "kmeans", t))
    built: dict[tuple[str, int], dict[str, Any]] = {}
    skipped: list[str] = []
    for method, k in sorted(keys, key=lambda t: t != chosen_key):  # the chosen one first
        sel = table[(table["method"] == method) & (table["k"] == k)]
        groups = list(sel.sort_values(["cluster", "rank"], kind="stable").groupby("cluster"))
        tops = [(int(c), grp, grp.head(max_per_cluster)) for c, grp in groups]
        new = {i for _, _, top in tops for i in top["image_id"]} - page.index.keys()
        if built and len(page.order) + len(new) > max_images:
            skipped.append(f"{method} k={k}")
            continue
        clusters = []
        for c, _, top in tops:
            size, cohesion = stats.loc[(method, k, c)]
            m = [page(i) for i in top["image_id"]]
            d = [round(float(x), 3) for x in top["distance"]]
            clusters.append(
                {
                    "c": c,
                    "size": int(size),
                    "cohesion": round(float(cohesion), 3),
                    "kept": len(m),
                    "m": m[:page_size],
                    "d": d[:page_size],
                    "more_m": m[page_size:],
                    "more_d": d[page_size:],
                }
            )
        sil = _silhouette(metrics, method, k)
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
    start = kept.index(chosen_key) if chosen_key in built else 0
    return [built[key] for key in kept], start, skipped


def _neighbour_lists(
    run: RunLayout,
    ids: np.ndarray,
    Z: np.ndarray,
    page: _PageImages,
    n_neighbours: int,
    whys: dict[str, int],
) -> dict[int, list[list[float]]]:
    """``[number, distance, why]`` of the neighbours of every image on the page so far, by
    number (:func:`lookalike.duplicates.run_neighbours`: ``RUN/neighbors.parquet`` where it
    has them); neighbours join the page. ``why`` numbers :func:`_why` of the pair in
    ``whys`` (text: number, ``""`` first; new texts are added): a page of 20,000 images
    holds each of the few texts once."""
    row_of = {i: r for r, i in enumerate(ids)}
    shown = [i for i in page.order if i in row_of]
    nb_idx, nb_dist = run_neighbours(run, ids, Z, [row_of[i] for i in shown], n_neighbours)
    match, gain = read_matches(run, shown, np.asarray(ids)[nb_idx])
    neighbours: dict[int, list[list[float]]] = {}
    for n, (i, row_i, row_d) in enumerate(zip(shown, nb_idx, nb_dist, strict=True)):
        neighbours[page.index[i]] = [
            [page(ids[j]), round(float(d), 3), whys.setdefault(_why(m, g), len(whys))]
            for j, d, m, g in zip(row_i, row_d, match[n], gain[n], strict=True)
        ]
    return neighbours


def _why(match: str | None, colour_gain: float) -> str:
    """Why a neighbour is near, for the page: ``"icon of this ↔ whole of that, +0.03
    colour"`` (:func:`lookalike.neighbors.match_text`); "" when unknown, and for two wholes
    without colour (every pair of a ``photos`` run: nothing to explain)."""
    if match == "whole-whole" and not colour_gain:
        return ""
    return match_text(match, colour_gain)


def _duplicate_groups(
    duplicates: pd.DataFrame | None, threshold: float | None, page: _PageImages
) -> dict[str, Any] | None:
    """The page's last section: at most 50 exact duplicates (one image, its origins are in
    its own entry), then at most 50 near-duplicate groups of 12 images."""
    if duplicates is None or not len(duplicates):
        return None
    if "kind" not in duplicates.columns:  # a table of an older version: near groups only
        duplicates = duplicates.assign(kind="near")
    groups = []
    for kind in ("exact", "near"):
        sel = duplicates[duplicates["kind"] == kind]
        first = sel["group"].drop_duplicates().head(50)  # numbered exact first, then largest
        for _, g in sel[sel["group"].isin(first)].groupby("group", sort=True):
            m = [page(i) for i in g["image_id"].drop_duplicates().head(12)]
            groups.append({"kind": kind, "size": int(g["group_size"].iloc[0]), "m": m})
    if threshold is None:
        threshold = duplicates.attrs.get("threshold")
    return {"threshold": threshold, "groups": groups}


def _number(x: Any, places: int) -> float | None:
    """``x`` rounded for the page; None for NaN (JSON has no NaN)."""
    x = float(x)
    return round(x, places) if np.isfinite(x) else None


def _query_paths(run: RunLayout, name: str) -> dict[str, Path]:
    """Each query image of search ``name`` by id, from its own run folder (RUN/find/<name>/)."""
    qrun = RunLayout(run.find_queries(name))
    if not qrun.manifest.is_file():
        return {}
    qm = storage.read_manifest(qrun, ok_only=True)
    return {
        str(i): qrun.image_path(p)
        for i, p in zip(qm["image_id"], qm["path"], strict=True)
        if isinstance(p, str)
    }


def _find_searches(
    run: RunLayout, page: _PageImages, paths: dict[str, Path]
) -> list[dict[str, Any]] | None:
    """The page's Find section: for each search of ``RUN/find/`` (at most
    :data:`GALLERY_FIND_MAX` query images in all) each query's number and its hits' numbers,
    labels, similarity and share. The query images join ``paths`` under their own keys;
    hits no longer in the run are left out. None when the run has no searches."""
    table = read_find(run)
    if table is None or not len(table):
        return None
    searches, left = [], GALLERY_FIND_MAX
    for name, rows in table.groupby("search", sort=True):
        qpaths, queries = _query_paths(run, str(name)), []
        for qid, hits in rows.groupby("query_id", sort=False):
            if len(queries) >= left:
                break
            key = f"find:{name}:{qid}"  # a query image is not an image of the run
            paths[key] = qpaths.get(str(qid))
            hits = hits[hits["image_id"].isin(paths.keys())].sort_values("rank")
            queries.append(
                {
                    # a query file as the page shows it: no path of this machine
                    "query": run.shown(hits["query"].iloc[0]) if len(hits) else str(qid),
                    "q": page(key),
                    "hits": [
                        {
                            "i": page(str(h["image_id"])),
                            "label": str(h["label"]),
                            "similarity": _number(h["similarity"], 3),
                            "share": _number(h["share"], 6),
                            "precision": _number(h["precision"], 3),
                            "match": str(h["match"]),
                        }
                        for _, h in hits.iterrows()
                    ],
                }
            )
        left -= len(queries)
        n = int(rows["query_id"].nunique())
        searches.append({"search": str(name), "n_queries": n, "queries": queries})
    return searches


def _hit_numbers(query: dict[str, Any]) -> list[int]:
    """The page numbers of one query's hits."""
    return [h["i"] for h in query["hits"]]


_WEB = ("http://", "https://")


def _origin_links(run: RunLayout, row: Any, out_dir: Path) -> list[list[str | None]]:
    """``[text, href]`` of each origin of an image (a row of
    :func:`lookalike.storage.image_info`): a catalog image's URL, a logo's homepage
    (``https://<domain>``), a folder's file by its name and its path relative to the page
    (never an absolute path of this machine). ``href`` is None when there is no link."""
    links: list[list[str | None]] = []
    for origin, label in zip(row.origins, row.labels, strict=True):
        origin = str(origin)
        if row.source == "logos":
            links.append([origin, f"https://{origin}"])
        elif row.source == "folder":
            file = Path(origin) if Path(origin).is_absolute() else run.image_path(row.path)
            try:
                rel = os.path.relpath(file, out_dir)
            except ValueError:  # another drive (Windows): no relative path
                rel = None
            links.append([str(label), urllib.parse.quote(Path(rel).as_posix()) if rel else None])
        else:
            links.append([origin, origin if origin.lower().startswith(_WEB) else None])
    return links


def _image_meta(run: RunLayout, info: pd.DataFrame, order: list[str], out_dir: Path):
    """The label, origin count and origin links of each image in ``order`` (by position);
    a query image of ``lookalike find`` (not in ``info``) has none."""
    known = info.reindex([i for i in order if i in info.index])
    meta = {
        image_id: {
            "label": str(row.label),
            "n": int(row.n_origins),
            "origins": _origin_links(run, row, out_dir),
        }
        for image_id, row in zip(known.index, known.itertuples(), strict=True)
    }
    return [meta.get(i, {}) for i in order]


def _thumbnails(
    order: list[str],
    paths: dict[str, Path],
    thumb: int,
    inline: bool,
    files_dir: Path,
    meta: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """``{"id", "src", "name"}`` and ``meta`` (label, origins) of each image in ``order``
    (by position); ``id`` is its image id (the page's CSV export), ``src`` a data URI or a
    JPEG in ``files_dir``."""
    images = []
    for s in range(0, len(order), 256):  # bounded memory: thumbnails in chunks
        chunk = order[s : s + 256]
        tiles = thumbs([paths.get(i) for i in chunk], thumb)
        for image_id, tile in zip(chunk, tiles, strict=True):
            data = _jpeg_bytes(tile)
            if inline:
                src = "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")
            else:
                name = f"{image_id[:24]}.jpg"
                # no fsync: tens of thousands of files that are made again at will
                _readable(storage.atomic_write_bytes(files_dir / name, data, fsync=False))
                src = f"{files_dir.name}/{name}"
            p = paths.get(image_id)
            name = Path(p).name if p else image_id[:12]
            images.append({"id": image_id, "src": src, "name": name, **meta[len(images)]})
    return images


def _split_pages(
    clusterings: list[dict[str, Any]],
    images: list[dict[str, str]],
    neighbours: dict[int, list[list[float]]],
    dups: dict[str, Any] | None,
    pages_dir: Path,
    found: set[int] | None = None,
) -> tuple[list[dict[str, str] | None], list[list[list[float]] | None]]:
    """Move each cluster's images past the first page into its clustering's page file.

    Writes ``pages_dir/{method}-k{k}.js`` (``window.galleryPage(key, data)``: the extra
    members of every cluster, their thumbnails and neighbours) for each clustering with
    more, records its path in the clustering's ``page``, and returns the page's own
    ``images`` and ``neighbours`` lists: None for the images only page files show.
    ``found`` (the Find section's images and the map's) stay in the page with their
    neighbours.
    """
    inline = {i for g in clusterings for cl in g["clusters"] for i in cl["m"]} | set(found or ())
    main = inline | {j for i in inline for j, *_ in neighbours.get(i, [])}
    main |= {i for grp in (dups or {}).get("groups", []) for i in grp["m"]}
    if pages_dir.is_dir():
        for old in pages_dir.glob("*.js"):
            old.unlink()
    for g in clusterings:
        more = {cl["c"]: (cl.pop("more_m"), cl.pop("more_d")) for cl in g["clusters"]}
        more = {c: md for c, md in more.items() if md[0]}
        if not more:
            continue
        members = {i for m, _ in more.values() for i in m}
        own = members | {j for i in members for j, *_ in neighbours.get(i, [])}
        key = f"{g['method']}-k{g['k']}"
        data = {
            "clusters": {str(c): {"m": m, "d": d} for c, (m, d) in more.items()},
            "images": {str(i): images[i] for i in sorted(own - main)},
            "neighbours": {str(i): neighbours.get(i) for i in sorted(members - inline)},
        }
        script = f"window.galleryPage({json.dumps(key)}, {json.dumps(data)});\n"
        _readable(storage.atomic_write_bytes(pages_dir / f"{key}.js", script.encode("utf-8")))
        g["page"] = f"{pages_dir.name}/{key}.js"
    return (
        [im if i in main else None for i, im in enumerate(images)],
        [neighbours.get(i) if i in inline else None for i in range(len(images))],
    )


def _summary(
    n_images: int, n_clusterings: int, max_per_cluster: int, max_images: int, skipped: list[str]
) -> str:
    """The line under the page's title."""
    return (
        f"{n_images} images, {n_clusterings} clusterings; up to {max_per_cluster} images "
        f"per cluster, nearest the centre first; cohesion is the mean distance to the "
        f"centre in PCA space (lower is tighter)."
        + (f" Left out to stay under {max_images} images: {', '.join(skipped)}." if skipped else "")
    )


def _choice_data(choice: KChoice | None) -> dict[str, Any] | None:
    """The recommendation for the page's header, which names the clustering shown (picked
    in the page) after it, so that it never says "inspecting k=70" of another one."""
    if choice is None:
        return None
    return {
        "method": choice.method,
        "k": int(choice.k),
        "recommended": int(choice.recommended),
        "rule": choice.rule,
        "overridden": bool(choice.overridden),
    }


def _render(page_data: dict[str, Any], plotly_tag: str = "") -> str:
    """The template filled with the page's title, thumbnail size and data, and
    ``plotly_tag`` (the script element of plotly.js, or "" for a page without a map)."""
    blob = json.dumps(page_data, separators=(",", ":")).replace("<", "\\u003c")
    # split first: nothing in plotly.js or the data is taken for a placeholder
    head, _, tail = _template().partition("__PLOTLYJS__")
    head, tail = (
        part.replace("__TITLE__", html.escape(page_data["title"]))
        .replace("__THUMB__", str(page_data["thumb"]))
        .replace("__DATA__", blob)
        for part in (head, tail)
    )
    return head + plotly_tag + tail


def _map_data(
    run: RunLayout,
    coords: pd.DataFrame,
    clusterings: list[dict[str, Any]],
    page: _PageImages,
) -> dict[str, Any]:
    """The page's map: each point's position and page number (its image joins the page),
    and its cluster in every clustering of the page (``{"method-kK": [cluster, ...]}``, -1
    for none). Each cluster of ``clusterings`` gets its ``colour``
    (:func:`lookalike.mapview.cluster_colours`, as in notebook 05's map)."""
    ids = coords["image_id"].astype(str).tolist()
    per: dict[str, list[int]] = {}
    for method in sorted({g["method"] for g in clusterings}):
        ks = [g["k"] for g in clusterings if g["method"] == method]
        cols = ["k", "image_id", "cluster"]
        sel = read_clusterings(run, methods=[method], k_values=ks, columns=cols, image_ids=ids)
        for k, rows in sel.groupby("k"):
            of = pd.Series(rows["cluster"].to_numpy(), index=rows["image_id"].astype(str))
            per[f"{method}-k{k}"] = of.reindex(ids).fillna(-1).astype(int).tolist()
    for g in clusterings:
        for cl, colour in zip(g["clusters"], cluster_colours(len(g["clusters"])), strict=True):
            cl["colour"] = colour
    return {
        "x": [round(float(v), 4) for v in coords["x"]],
        "y": [round(float(v), 4) for v in coords["y"]],
        "m": [page(i) for i in ids],
        "c": per,
        "projection": coords.attrs.get("projection"),
        "n_images": int(coords.attrs.get("n_images", len(coords))),
    }


def _plotly_tag(inline: bool, files_dir: Path, plotlyjs_name: str) -> str:
    """plotly.js for the page's map: inlined, or written beside the page in ``files_dir``
    (the folder of the thumbnail files) and loaded from there; never from the network."""
    code = plotly_js()
    if inline:
        return f"<script>{code}</script>"
    files_dir.mkdir(parents=True, exist_ok=True)
    path = files_dir / plotlyjs_name
    if not path.is_file() or path.stat().st_size != len(code.encode("utf-8")):
        _readable(storage.atomic_write_bytes(path, code.encode("utf-8"), fsync=False))
    src = urllib.parse.quote(f"{files_dir.name}/{plotlyjs_name}")
    return f'<script src="{src}" charset="utf-8"></script>'


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
    page_size: int | None = None,
    n_neighbours: int | None = None,
    thumb: int = 104,
    inline: bool | None = None,
    title: str | None = None,
    show_map: bool = True,
    map_max: int | None = None,
    random_state: int | None = 0,
) -> Path:
    """A self-contained HTML gallery of the clusters, to open in any browser and share.

    A page with a clustering picker (every method and k chosen), one card per cluster (its
    images nearest the centre first, each with its label linked to its source, size and
    cohesion in the heading) and, on a click, an image's every origin and its nearest
    neighbours with their distances (1 - the run's similarity) and, from
    ``RUN/neighbors.parquet``, why they matched ("icon of this ↔ whole of that, +0.03
    colour"); exact duplicates (one image, several origins)
    and near-duplicate groups at the end, and the searches of ``lookalike find`` in
    ``RUN/find/`` when there are any (a Find section: each query image and its hits with
    their label, similarity and share; at most
    :data:`GALLERY_FIND_MAX` queries). A search box keeps the images whose label has the
    text (any case), and "export CSV" saves ``image_id,label,cluster`` of the images shown
    (the whole clustering, or the search's matches; made in the page, a ``blob:`` URL).
    Thumbnails are buttons for the keyboard too (Tab, then Enter or Space), and the header
    names the clustering picked. It needs no Jupyter and no network: thumbnails are
    JPEG data URIs inside the page, or files in ``gallery_files/`` beside it (then share the
    folder).

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
        The page opens on this clustering and states its rule
        (:func:`lookalike.elbow.choose_k`).
    duplicates : DataFrame, optional
        :func:`lookalike.duplicates.find_near_duplicates` output; at most 50 groups of 12 are shown.
    dup_threshold : float, optional
        The threshold ``duplicates`` was found with, for the heading; default the one
        :func:`~lookalike.duplicates.find_near_duplicates` recorded in ``duplicates.attrs``.
    max_per_cluster : int, default 60
        Images kept per cluster (nearest the centre); the page says when a cluster has more.
    max_images : int, default 20,000
        Bound on the images shown in clusters (each costs a thumbnail and a neighbour search):
        clusterings that would go past it are left out (the chosen one never is), and the page
        and the summary line name them.
    page_size : int, optional
        Images per cluster inside the HTML (None: :data:`GALLERY_PAGE_SIZE`, 24); the rest
        of the ``max_per_cluster`` are in ``gallery_pages/{method}-k{k}.js`` beside it
        (:attr:`lookalike.paths.RunLayout.gallery_pages`), loaded by the page's "show more"
        button (from file:// too: they are plain scripts). Share the folder when there are
        page files.
    n_neighbours : int, optional
        Neighbours listed for each image shown in a cluster (searched among all images);
        None: :data:`lookalike.duplicates.N_NEIGHBOURS` (8).
    thumb : int, default 104
        Thumbnail side in pixels.
    inline : bool, optional
        Data URIs (True) or files beside the page (False); default: inline up to
        :data:`GALLERY_INLINE_MAX` images.
    title : str, optional
    show_map : bool, default True
        Show the 2-D map of the images above the clusters (:func:`lookalike.mapview.map_coords`,
        kept in ``RUN/map2d.parquet``, so notebook 05's map is the same): a point per image
        coloured by its cluster in the clustering picked, its thumbnail and label on hover;
        a click shows its neighbours in the panel, and a lasso or box selection is exported
        as CSV (``image_id,label,cluster``). plotly.js is inlined with inlined thumbnails,
        else ``gallery_files/plotly.min.js`` beside the page.
    map_max : int, optional
        Images on the map: a seeded sample above it, every cluster of the opening
        clustering in it (None: :data:`lookalike.mapview.MAP_MAX_POINTS`, 5,000). Each has
        its thumbnail and neighbours in the page.
    random_state : int or None, default 0
        Seed of the map's sample and projection.

    Returns
    -------
    Path of the HTML file.
    """

    t0 = time.perf_counter()
    run = RunLayout(run_dir)
    out = resolve(out_path) if out_path is not None else run.gallery
    page_size = GALLERY_PAGE_SIZE if page_size is None else max(1, int(page_size))
    table, stats = _read_clusterings(run, methods, k_values, max_per_cluster)
    metrics = pd.read_csv(run.metrics).set_index(["method", "k"]) if run.metrics.exists() else None
    paths = image_paths(run)
    info = storage.image_info(run)
    ids, Z = read_reduced(run)
    page = _PageImages()
    chosen_key = (choice.method, choice.k) if choice is not None else None
    clusterings, start, skipped = _build_clusterings(
        table,
        stats,
        metrics,
        chosen_key,
        page,
        max_per_cluster=max_per_cluster,
        max_images=max_images,
        page_size=page_size,
    )
    finds = _find_searches(run, page, paths)  # before the neighbours: hits get theirs
    map_data = None
    if show_map and clusterings:
        shown = clusterings[start]  # the sample has every cluster of the one the page opens on
        coords = map_coords(
            run, method=shown["method"], k=shown["k"], max_points=map_max, random_state=random_state
        )
        map_data = _map_data(run, coords, clusterings, page)  # before the neighbours too
    n_neighbours = N_NEIGHBOURS if n_neighbours is None else n_neighbours
    whys = {"": 0}  # the neighbours' reasons in words, numbered
    neighbours = _neighbour_lists(run, ids, Z, page, n_neighbours, whys)
    dups = _duplicate_groups(duplicates, dup_threshold, page)
    inline = len(page.order) <= GALLERY_INLINE_MAX if inline is None else bool(inline)
    files_dir = out.parent / run.gallery_files.name
    meta = _image_meta(run, info, page.order, out.parent)
    images = _thumbnails(page.order, paths, thumb, inline, files_dir, meta)
    pages_dir = out.parent / run.gallery_pages.name
    found = {n for s in finds or [] for q in s["queries"] for n in [q["q"], *_hit_numbers(q)]}
    found |= set(map_data["m"]) if map_data else set()
    images, neighbour_lists = _split_pages(clusterings, images, neighbours, dups, pages_dir, found)
    page_data = {
        "title": title or f"lookalike gallery: {run.root.name}",
        "summary": _summary(len(ids), len(clusterings), max_per_cluster, max_images, skipped),
        "rule": str(choice) if choice is not None else "",
        "choice": _choice_data(choice),
        "thumb": int(thumb),
        "page_size": page_size,
        "start": start,
        "images": images,
        "clusterings": clusterings,
        "neighbours": neighbour_lists,
        "why": list(whys),
        "duplicates": dups,
        "finds": finds,
        "map": map_data,
    }
    plotly_tag = _plotly_tag(inline, files_dir, run.gallery_plotlyjs.name) if map_data else ""
    _readable(storage.atomic_write_bytes(out, _render(page_data, plotly_tag).encode("utf-8")))
    size = out.stat().st_size / 2**20
    where = "inlined" if inline else f"in {run.shown(files_dir)}"
    left = f"; left out {len(skipped)} clusterings (max_images={max_images})" if skipped else ""
    n_pages = sum("page" in g for g in clusterings)
    left += f"; {n_pages} page files in {run.shown(pages_dir)}" if n_pages else ""
    n_found = sum(len(s["queries"]) for s in finds or [])
    left += f"; {n_found} find queries" if n_found else ""
    left += f"; a map of {len(map_data['m'])} images" if map_data else ""
    print(
        f"gallery: {run.shown(out)} ({size:.1f} MiB), {len(clusterings)} clusterings, "
        f"{len(page.order)} thumbnails {where}{left}; {time.perf_counter() - t0:.1f} s"
    )
    return out
