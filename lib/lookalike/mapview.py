"""The interactive 2-D map of a run: UMAP of the PCA vectors, kept in ``RUN/map2d.parquet``.

:func:`map_coords` places a seeded sample of the run's images (every cluster of the
clustering inspected in it) on a plane with UMAP (``umap-learn``; sklearn's t-SNE when it is
not installed) from the PCA vectors of stage 04 (:func:`lookalike.reduce.read_reduced`),
and keeps the coordinates in the run folder, so that notebook 05's map and the HTML gallery
(:func:`lookalike.gallery.write_gallery`) show the same picture without computing it twice.
:func:`map_html` draws it with plotly: a point per image coloured by cluster with a legend,
and on hover the image's thumbnail and label. The page loads nothing from the network:
plotly.js is inlined, the thumbnails are JPEG data URIs.
"""

from __future__ import annotations

import base64
import html
import importlib.util
import json
import os
import sys
import time
import warnings
from collections.abc import Sequence
from io import BytesIO

import numpy as np
import pandas as pd

from . import storage
from .exceptions import ConfigError
from .paths import RunLayout
from .reduce import read_reduced
from .sheets import cluster_assignments, read_clusterings, thumbs

__all__ = [
    "MAP_MAX_POINTS",
    "MAP_THUMB",
    "PROJECTIONS",
    "cluster_colours",
    "embed_2d",
    "map_coords",
    "map_figure",
    "map_html",
    "map_points",
    "plotly_js",
    "projection_available",
    "sample_rows",
]

#: The map shows at most this many images: above it a seeded sample (every cluster of the
#: clustering inspected has at least one image in it). UMAP of 5,000 points takes about
#: 45 s on 2 cores (plus about 15 s the first time in a process: importing umap-learn and
#: compiling its numba code), and 5,000 hover thumbnails of 48 px are about 8 MB of page.
MAP_MAX_POINTS = 5000
#: Side of the hover thumbnails of :func:`map_html`, in pixels.
MAP_THUMB = 48
#: ``auto``: UMAP when ``umap-learn`` is importable, else t-SNE.
PROJECTIONS = ("auto", "umap", "tsne")
#: UMAP's settings: its defaults, on the cosine of the PCA vectors (the run's neighbours
#: are cosine neighbours of the same vectors). Part of the cache's key.
UMAP_NEIGHBOURS = 15
UMAP_MIN_DIST = 0.1
#: Bumped when the coordinates computed for the same inputs change.
_VERSION = 1


def cluster_colours(n: int) -> list[str]:
    """``n`` distinct colours as ``#rrggbb``, one per cluster in cluster order; above 24
    clusters no two share a colour.

    Up to 10: D3's category10 (matplotlib's tab10); up to 24: plotly's Dark24; above, hues a
    golden angle (137.5 degrees) apart, alternating two lightnesses.
    """
    import colorsys

    from plotly.colors import qualitative

    for palette in (qualitative.D3, qualitative.Dark24):  # well separated, as plotly ships them
        if n <= len(palette):
            return [c.lower() for c in palette[:n]]

    out = []
    for i in range(n):
        r, g, b = colorsys.hls_to_rgb((i * 0.381966) % 1.0, 0.42 if i % 2 else 0.58, 0.75)
        out.append(f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}")
    return out


def sample_rows(
    clusters: np.ndarray, max_points: int, *, random_state: int | None = 0
) -> np.ndarray:
    """The rows a map shows: all of them up to ``max_points``, else a seeded sample.

    The sample takes one random member of every cluster first (so each is on the map; at
    random among the clusters when there are more than ``max_points``), then a uniform
    sample of the other rows.

    Parameters
    ----------
    clusters : array of shape (n_samples,)
        Each row's cluster (any labels; all equal for no clustering).
    max_points : int
        At least 1.
    random_state : int or None, default 0

    Returns
    -------
    rows : int64 array of shape (min(n_samples, max_points),), sorted
    """
    clusters = np.asarray(clusters)
    n, max_points = len(clusters), int(max_points)
    if max_points < 1:
        raise ConfigError(f"map_max={max_points} must be >= 1")
    if n <= max_points:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(random_state)
    perm = rng.permutation(n)
    _, first = np.unique(clusters[perm], return_index=True)
    must = perm[first]  # a random member of each cluster
    if len(must) >= max_points:
        return np.sort(rng.choice(must, max_points, replace=False)).astype(np.int64)
    taken = np.zeros(n, dtype=bool)
    taken[must] = True
    extra = rng.choice(np.flatnonzero(~taken), max_points - len(must), replace=False)
    return np.sort(np.concatenate([must, extra])).astype(np.int64)


def projection_available(projection: str = "auto") -> str:
    """The projection that ``projection`` means here: ``umap`` or ``tsne``.

    ``auto`` is ``umap`` when ``umap-learn`` is importable, else ``tsne``; ``umap`` without
    it warns and falls back to ``tsne``.
    """
    if projection not in PROJECTIONS:
        raise ConfigError(f"map projection={projection!r} must be one of {list(PROJECTIONS)}")
    if projection == "tsne":
        return "tsne"
    if importlib.util.find_spec("umap") is not None:
        return "umap"
    if projection == "umap":
        warnings.warn(
            "umap-learn is not installed: the map uses t-SNE instead "
            "(pip install -c constraints.txt umap-learn)",
            RuntimeWarning,
            stacklevel=2,
        )
    return "tsne"


def _umap_class():
    """``umap.UMAP``, imported without TensorFlow.

    umap-learn's ``__init__`` imports its ParametricUMAP, which imports TensorFlow (6 s and
    hundreds of MB here) unless that import fails: it is made to fail while umap is first
    imported, and only then (an explicit ``import umap.parametric_umap`` later works).
    """
    name = "umap.parametric_umap"
    block = "umap" not in sys.modules and name not in sys.modules
    if block:
        sys.modules[name] = None  # type: ignore[assignment]  # import fails: ImportError
    try:
        from umap import UMAP
    finally:
        if block:
            sys.modules.pop(name, None)
    return UMAP


def embed_2d(
    Z: np.ndarray, *, projection: str = "auto", random_state: int | None = 0
) -> tuple[np.ndarray, str]:
    """2-D coordinates of the rows of ``Z`` by UMAP (or t-SNE).

    Parameters
    ----------
    Z : array of shape (n_samples, n_features)
        PCA vectors.
    projection : {"auto", "umap", "tsne"}, default "auto"
        See :func:`projection_available`. UMAP: cosine metric, :data:`UMAP_NEIGHBOURS`
        neighbours (fewer for a tiny input), ``min_dist`` :data:`UMAP_MIN_DIST`, one thread
        (a seeded UMAP is deterministic only so). t-SNE: as
        :func:`lookalike.plots.embedding_2d`.
    random_state : int or None, default 0

    Returns
    -------
    xy : float32 array of shape (n_samples, 2)
    used : str
        ``umap`` or ``tsne``; ``pca`` (the first two components) below 4 rows.
    """
    Z = np.asarray(Z, dtype=np.float32)
    used = projection_available(projection)
    if len(Z) < 4:  # nothing to lay out: the first two components
        xy = np.zeros((len(Z), 2), np.float32)
        xy[:, : min(2, Z.shape[1])] = Z[:, :2]
        return xy, "pca"
    if used == "tsne":
        from .plots import embedding_2d

        _, xy = embedding_2d(Z, projection="tsne", max_points=len(Z), random_state=random_state)
        return xy, "tsne"
    with warnings.catch_warnings():
        # its spectral start warns on tiny graphs before it falls back to a random one
        warnings.simplefilter("ignore")
        UMAP = _umap_class()
        reducer = UMAP(
            n_components=2,
            n_neighbors=max(2, min(UMAP_NEIGHBOURS, len(Z) - 1)),
            min_dist=UMAP_MIN_DIST,
            metric="cosine",
            random_state=random_state,
            n_jobs=1,
        )
        xy = reducer.fit_transform(Z)
    return np.asarray(xy, dtype=np.float32), "umap"


def _inputs_key(run: RunLayout) -> str:
    """What ``RUN/pca.npz`` was made from: stage 04's stamp (its parameters and the
    embeddings' hashes), or the file's size and time when there is no stamp."""
    stamp = storage.read_stamp(run.cluster_state)
    if stamp is not None and "key" in stamp:
        return storage.fingerprint(stamp["key"])
    st = run.pca.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def _strata(run: RunLayout, ids: np.ndarray, method: str | None, k: int | None) -> np.ndarray:
    """Each row's cluster in clustering (method, k), -1 where it has none; zeros for none."""
    if method is None or k is None:
        return np.zeros(len(ids), dtype=np.int64)
    sel = read_clusterings(run, methods=[method], k_values=[k], columns=["image_id", "cluster"])
    if sel.empty:
        raise ConfigError(f"no {method} clustering with k={k} in {run.clusters}")
    of = pd.Series(sel["cluster"].to_numpy(), index=sel["image_id"].astype(str))
    return of.reindex(ids).fillna(-1).to_numpy(np.int64)


def map_coords(
    run_dir: str | os.PathLike[str] | RunLayout,
    *,
    method: str | None = None,
    k: int | None = None,
    max_points: int | None = None,
    projection: str = "auto",
    random_state: int | None = 0,
    refresh: bool = False,
) -> pd.DataFrame:
    """The 2-D map of a run's images, from ``RUN/map2d.parquet`` when it is current.

    Computed (:func:`embed_2d`) on the PCA vectors of ``RUN/pca.npz`` of the images
    :func:`sample_rows` picks, then kept in ``RUN/map2d.parquet`` with its stamp
    ``RUN/map2d.json`` (:attr:`lookalike.paths.RunLayout.map2d`): the same call again, or
    the gallery's, reads it back. The stamp's key is stage 04's inputs and parameters, the
    projection, ``max_points``, ``random_state`` and, when the run is sampled, the
    clustering sampled by.

    Parameters
    ----------
    run_dir : str or Path
        Needs ``RUN/pca.npz`` (stage 04), and ``RUN/clusters.parquet`` for ``method``/``k``.
    method, k : optional
        The clustering whose every cluster is in the sample (the one the map is coloured by).
    max_points : int, optional
        At most this many images (None: :data:`MAP_MAX_POINTS`, 5,000).
    projection : {"auto", "umap", "tsne"}, default "auto"
    random_state : int or None, default 0
        Seed of the sample and of the projection.
    refresh : bool, default False
        Compute again even when the kept map is current.

    Returns
    -------
    DataFrame with columns ``image_id`` (str), ``x``, ``y`` (float32), one row per image
    shown, in the order of ``RUN/pca.npz``; ``attrs`` has ``projection`` (``umap``,
    ``tsne`` or ``pca``), ``n_images`` (all the run's) and ``cached`` (read back or not).
    """
    t0 = time.perf_counter()
    run = RunLayout(run_dir)
    max_points = MAP_MAX_POINTS if max_points is None else int(max_points)
    ids, Z = read_reduced(run)
    sampled = len(ids) > max_points
    key = {
        "inputs": _inputs_key(run),
        "projection": projection_available(projection),
        "max_points": max_points,
        "random_state": random_state,
        "sampled_by": [method, k] if sampled else None,
        "umap": [UMAP_NEIGHBOURS, UMAP_MIN_DIST, "cosine"],
        "version": _VERSION,
    }
    if not refresh and storage.is_current(run.map2d_state, key, outputs=[run.map2d]):
        coords = pd.read_parquet(run.map2d)
        stamp = storage.read_stamp(run.map2d_state) or {}
        coords.attrs.update(projection=stamp.get("used"), n_images=len(ids), cached=True)
        return coords
    storage.clear_stamp(run.map2d_state)
    rows = sample_rows(_strata(run, ids, method, k), max_points, random_state=random_state)
    xy, used = embed_2d(Z[rows], projection=key["projection"], random_state=random_state)
    coords = pd.DataFrame({"image_id": ids[rows], "x": xy[:, 0], "y": xy[:, 1]})
    storage.write_table(coords, run.map2d)
    storage.write_stamp(run.map2d_state, key, used=used, n_points=len(rows))
    coords.attrs.update(projection=used, n_images=len(ids), cached=False)
    print(
        f"map: {len(rows)} of {len(ids)} images by {used} in "
        f"{time.perf_counter() - t0:.1f} s, kept in {run.shown(run.map2d)}"
    )
    return coords


def map_points(
    run_dir: str | os.PathLike[str] | RunLayout,
    k: int,
    *,
    method: str = "kmeans",
    max_points: int | None = None,
    projection: str = "auto",
    random_state: int | None = 0,
) -> pd.DataFrame:
    """The points of the map of clustering (``method``, ``k``): :func:`map_coords` with
    each image's cluster and label.

    Returns
    -------
    DataFrame with columns ``image_id``, ``x``, ``y``, ``cluster`` (int64, -1 for an image
    the clustering lacks), ``label``, ``caption`` (the label and its count of other
    origins) and ``abspath`` (the image file, None when unknown); ``attrs`` as
    :func:`map_coords`'s.
    """
    run = RunLayout(run_dir)
    coords = map_coords(
        run,
        method=method,
        k=k,
        max_points=max_points,
        projection=projection,
        random_state=random_state,
    )
    sel = cluster_assignments(run, k, method).set_index("image_id")
    known = sel.reindex(coords["image_id"])
    points = coords.assign(
        cluster=known["cluster"].fillna(-1).to_numpy(np.int64),
        label=known["label"].fillna("").astype(str).to_numpy(),
        caption=known["caption"].fillna("").astype(str).to_numpy(),
        abspath=known["abspath"].to_numpy(),
    )
    # every cluster of the clustering, for colours that do not depend on the sample
    every = sorted(sel["cluster"].unique().tolist())
    points.attrs.update(coords.attrs, method=method, k=int(k), clusters=every)
    return points


def _data_uris(paths: Sequence[str | None], size: int) -> list[str]:
    """A ``size`` px JPEG data URI of each image (a crossed tile when unreadable)."""
    out = []
    for s in range(0, len(paths), 256):  # bounded memory: thumbnails in chunks
        for tile in thumbs(list(paths[s : s + 256]), size):
            buf = BytesIO()
            tile.save(buf, format="JPEG", quality=80, optimize=True)
            out.append("data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode())
    return out


def map_figure(points: pd.DataFrame, *, thumbnails: Sequence[str] | None = None, title: str = ""):
    """A plotly figure of ``points`` (:func:`map_points`): one trace per cluster, its
    legend entry ``cluster C (n)``, in :func:`cluster_colours` (of every cluster in
    ``points.attrs["clusters"]``, so the colours are those of the gallery).

    Each point's ``customdata`` is ``[image_id, label, thumbnail, cluster]`` (thumbnail:
    ``thumbnails[i]`` or ""); plotly's own hover shows the label and cluster.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    import plotly.graph_objects as go

    thumbnails = list(thumbnails) if thumbnails is not None else [""] * len(points)
    clusters = points["cluster"].to_numpy()
    names = sorted(set(clusters.tolist()))
    every = [int(c) for c in points.attrs.get("clusters", [c for c in names if c >= 0])]
    colours = dict(zip(every, cluster_colours(len(every)), strict=True))
    colours[-1] = "#9e9e9e"  # an image the clustering lacks
    fig = go.Figure()
    for c in names:
        at = np.flatnonzero(clusters == c)
        custom = [
            [str(points["image_id"].iat[i]), str(points["label"].iat[i]), thumbnails[i], int(c)]
            for i in at
        ]
        fig.add_trace(
            go.Scatter(
                x=np.round(points["x"].to_numpy()[at], 4),
                y=np.round(points["y"].to_numpy()[at], 4),
                mode="markers",
                name=f"cluster {c} ({len(at)})" if c >= 0 else f"no cluster ({len(at)})",
                marker={"color": colours.get(c, "#9e9e9e"), "size": 7, "opacity": 0.8},
                customdata=custom,
                hovertemplate="%{customdata[1]}<br>cluster %{customdata[3]}<extra></extra>",
            )
        )
    fig.update_layout(
        title={"text": title, "font": {"size": 13}},
        hovermode="closest",
        dragmode="lasso",
        template="plotly_white",
        height=620,
        margin={"l": 20, "r": 20, "t": 50, "b": 20},
        xaxis={"visible": False},
        yaxis={"visible": False, "scaleanchor": "x"},
        legend={"title": {"text": "cluster (images)"}, "itemsizing": "constant"},
    )
    return fig


#: After the figure is drawn: a box beside the hovered point with its thumbnail and label.
_HOVER_JS = """
var gd = document.getElementById('{plot_id}');
var box = gd.parentNode;
box.style.position = 'relative';
var tip = document.createElement('div');
tip.className = 'lookalike-map-tip';
tip.style.cssText = 'position:absolute;display:none;pointer-events:none;z-index:10;' +
  'background:#fff;border:1px solid #bbb;border-radius:4px;padding:4px;' +
  'font:12px system-ui,sans-serif;color:#222;max-width:220px;text-align:center';
box.appendChild(tip);
gd.on('plotly_hover', function (ev) {
  var p = ev.points[0], d = p.customdata;
  tip.replaceChildren();
  if (d[2]) {
    var im = document.createElement('img');
    im.src = d[2]; im.width = __THUMB__; im.height = __THUMB__; im.alt = d[1];
    im.style.display = 'block'; im.style.margin = '0 auto 2px';
    tip.appendChild(im);
  }
  var t = document.createElement('div');
  t.className = 'lookalike-map-label'; t.textContent = d[1];
  var c = document.createElement('div');
  c.style.color = '#666'; c.textContent = d[3] < 0 ? 'no cluster' : 'cluster ' + d[3];
  tip.appendChild(t); tip.appendChild(c);
  var bb = p.bbox || {x1: 0, y0: 0};
  var left = bb.x1 + 10, top = Math.max(0, bb.y0 - 20);
  if (left + 230 > gd.offsetWidth) left = Math.max(0, bb.x0 - 240);
  tip.style.left = left + 'px'; tip.style.top = top + 'px'; tip.style.display = 'block';
});
gd.on('plotly_unhover', function () { tip.style.display = 'none'; });
"""


def plotly_js() -> str:
    """plotly.js itself (minified, about 4.8 MB), as the ``plotly`` package ships it: for
    pages that must load nothing from the network."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def map_html(
    run_dir: str | os.PathLike[str] | RunLayout,
    k: int,
    *,
    method: str = "kmeans",
    max_points: int | None = None,
    projection: str = "auto",
    random_state: int | None = 0,
    thumb: int = MAP_THUMB,
    full_html: bool = False,
    include_plotlyjs: bool = True,
) -> str:
    """The interactive map of clustering (``method``, ``k``) as HTML, for a notebook
    (``IPython.display.HTML``) or a file.

    A plotly scatter of :func:`map_points` (UMAP, cached in ``RUN/map2d.parquet``):
    coloured by cluster with a legend (click an entry to hide a cluster), lasso and box
    selection, zoom; hovering a point shows its thumbnail (a ``thumb`` px JPEG data URI)
    and its label. It works offline, in JupyterLab and in a saved HTML report alike:
    plotly.js is inlined (``include_plotlyjs``, once per notebook: about 4.8 MB).

    Parameters
    ----------
    run_dir, k, method, max_points, projection, random_state :
        See :func:`map_points`.
    thumb : int, default :data:`MAP_THUMB` (48)
    full_html : bool, default False
        A whole page (for a file) rather than a ``<div>``.
    include_plotlyjs : bool, default True
        False when the page already has plotly.js.

    Returns
    -------
    str
    """
    import plotly.io as pio

    points = map_points(
        run_dir,
        k,
        method=method,
        max_points=max_points,
        projection=projection,
        random_state=random_state,
    )
    uris = _data_uris(points["abspath"].tolist(), int(thumb))
    a = points.attrs
    sampled = (
        f", a seeded sample of {len(points)} of {a['n_images']} images"
        if len(points) < a["n_images"]
        else f", {len(points)} images"
    )
    title = f"{method} k={k} on a {a['projection'].upper()} map of the PCA vectors{sampled}"
    fig = map_figure(points, thumbnails=uris, title=html.escape(title))
    fig.update_traces(hoverinfo="none", hovertemplate=None)  # the box of _HOVER_JS instead
    config = {"displaylogo": False, "scrollZoom": True, "responsive": True}
    return pio.to_html(
        fig,
        config=config,
        include_plotlyjs=bool(include_plotlyjs),  # True: inline, never the CDN
        include_mathjax=False,
        full_html=full_html,
        post_script=_HOVER_JS.replace("__THUMB__", json.dumps(int(thumb))),
        default_height="640px",
    )
