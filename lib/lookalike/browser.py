"""The notebook's ipywidgets browser of a run's clusters and neighbours.

:class:`ClusterBrowser` keeps its state in plain attributes and its callbacks are plain
methods, so it works (and is tested) without a browser; :meth:`ClusterBrowser.widget` wires
the same methods to ipywidgets.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from . import storage
from .cluster import CLUSTERS_COLUMNS, image_paths
from .duplicates import N_NEIGHBOURS, run_neighbours
from .exceptions import ConfigError
from .images import png_bytes
from .neighbors import match_text, read_matches
from .paths import RunLayout, resolve
from .reduce import read_reduced
from .sheets import contact_sheet_image

__all__ = ["ClusterBrowser"]


def _origins_text(row) -> str:
    """Every origin of an image of :func:`lookalike.storage.image_info`, joined; a folder's
    files by their names (the table is shown in reports: no path of this machine)."""
    if not isinstance(row.origins, list):
        return ""
    return " | ".join(row.labels if row.source == "folder" else row.origins)


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
    method : {"kmeans", "agglomerative", "similarity"}, default "kmeans"
    k : int, optional
        The k shown first (default the smallest in the sweep).
    n_neighbours : int, optional
        Neighbours shown per image; None: :data:`lookalike.duplicates.N_NEIGHBOURS` (8).
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
        n_neighbours: int | None = None,
        thumb: int = 96,
        max_images: int = 48,
    ):
        self.layout = RunLayout(run_dir)
        self.run = self.layout.root
        table = storage.read_table(
            self.layout.clusters, required=CLUSTERS_COLUMNS, what="cluster assignments"
        )
        self.table = table[table["method"] == method]
        if self.table.empty:
            raise ConfigError(f"no {method} clusterings in {self.layout.clusters}")
        self.method = method
        self.paths = image_paths(self.layout)
        self.info = storage.image_info(self.layout)  # label, origins... by image_id
        self.ids, self.Z = read_reduced(self.layout)
        self._row = {i: r for r, i in enumerate(self.ids)}
        self.n_neighbours = N_NEIGHBOURS if n_neighbours is None else int(n_neighbours)
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
        """The images of one cluster, nearest the centre first: image_id, path, caption
        (label and other origins), distance, rank."""
        sel = self.table[(self.table["k"] == int(k)) & (self.table["cluster"] == int(cluster))]
        sel = sel.sort_values("rank")[["image_id", "distance", "rank"]].reset_index(drop=True)
        sel.insert(1, "path", [str(self.paths.get(i, "")) for i in sel["image_id"]])
        sel.insert(2, "caption", self.info["caption"].reindex(sel["image_id"]).fillna("").values)
        return sel

    def caption(self, image_id: str) -> str:
        """The image's label and the count of its other origins ("Melon (+1 more)")."""
        return str(self.info["caption"].get(image_id, image_id[:12]))

    def neighbours(self, image_id: str, n: int | None = None) -> pd.DataFrame:
        """Nearest images to ``image_id`` under the run's similarity
        (:func:`lookalike.duplicates.run_neighbours`): image_id, path, label, n_origins,
        origins (all of them, joined by " | "; file names for a folder), distance,
        similarity, its cluster at the current k, and why it matched as
        ``RUN/neighbors.parquet`` records it (:func:`lookalike.neighbors.read_matches`):
        match (of :data:`lookalike.neighbors.MATCHES`, None when unknown), colour_gain
        (NaN when unknown) and why, both in words ("icon of this ↔ whole of that, +0.03
        colour"; "" when unknown)."""
        if image_id not in self._row:
            raise ConfigError(f"image_id {image_id!r} is not in {self.layout.pca}")
        n = self.n_neighbours if n is None else int(n)
        idx, dist = run_neighbours(self.layout, self.ids, self.Z, [self._row[image_id]], n)
        nid = self.ids[idx[0]]
        at_k = self.table[self.table["k"] == self.k].set_index("image_id")["cluster"]
        meta = self.info.reindex(nid)
        match, gain = read_matches(self.layout, [image_id], nid[None, :])
        return pd.DataFrame(
            {
                "image_id": nid,
                "path": [str(self.paths.get(i, "")) for i in nid],
                "label": meta["label"].fillna("").to_numpy(),
                "n_origins": meta["n_origins"].fillna(1).astype("int64").to_numpy(),
                "origins": [_origins_text(r) for r in meta.itertuples()],
                "distance": dist[0],
                "similarity": 1.0 - dist[0],
                "cluster": at_k.reindex(nid).to_numpy(),
                "match": match[0],
                "colour_gain": gain[0],
                "why": [match_text(m, g) for m, g in zip(match[0], gain[0], strict=True)],
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
        img = contact_sheet_image(
            paths,
            title=title,
            captions=m["caption"].tolist(),
            max_images=self.max_images,
            thumb=self.thumb,
        )
        return png_bytes(img)

    def neighbours_png_for(self, image_id: str) -> tuple[bytes, pd.DataFrame]:
        """PNG bytes of the image followed by its neighbours, distances as captions."""
        nb = self.neighbours(image_id)
        paths = [self.paths.get(image_id)] + [p or None for p in nb["path"]]
        captions = [f"query\n{self.caption(image_id)}"] + [
            f"d {d:.3f} (c{c})\n{self.caption(i)}"
            for i, d, c in zip(nb["image_id"], nb["distance"], nb["cluster"], strict=True)
        ]
        name = self.caption(image_id)
        img = contact_sheet_image(
            paths,
            title=f"{name} and its {len(nb)} nearest neighbours (1 - similarity, cluster)",
            captions=captions,
            max_images=len(paths),
            thumb=self.thumb,
            columns=min(len(paths), 9),
        )
        return png_bytes(img), nb

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
            (f"rank {r}: {cap}  (d {d:.3f})", i)
            for i, cap, d, r in m.head(200)[["image_id", "caption", "distance", "rank"]].itertuples(
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
            cols = ["label", "n_origins", "origins", "distance", "similarity", "cluster", "why"]
            t = self.neighbours_table[cols]
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
