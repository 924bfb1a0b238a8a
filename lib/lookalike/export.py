"""Stage 04's optional folders: one per cluster, of links to (or copies of) its images."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from . import storage
from .exceptions import ConfigError
from .paths import RunLayout

EXPORT_MODES = ("none", "symlink", "copy")

#: Columns of ``RUN/clusters.parquet`` (written by :func:`lookalike.cluster.cluster_run`).
CLUSTERS_COLUMNS = ["image_id", "method", "k", "cluster", "distance", "rank"]


def assignments_table(
    image_ids: Iterable[str],
    labels: dict[int, tuple[np.ndarray, np.ndarray]],
    *,
    method: str = "kmeans",
) -> pd.DataFrame:
    """Long table of cluster assignments: one row per (image, k).

    Returns
    -------
    DataFrame with columns :data:`CLUSTERS_COLUMNS`: ``image_id``, ``method``, ``k``,
    ``cluster``, ``distance`` (to the cluster centre, in PCA space) and ``rank`` (0 = nearest
    the centre within its cluster; ties by row order).
    """
    ids = np.asarray(list(image_ids), dtype=object)
    parts = []
    for k, (lab, dist) in sorted(labels.items()):
        df = pd.DataFrame(
            {
                "image_id": ids,
                "method": method,
                "k": np.int64(k),
                "cluster": lab.astype(np.int64),
                "distance": dist.astype(np.float32),
            }
        )
        df["rank"] = (
            df.sort_values(["cluster", "distance"], kind="stable")
            .groupby("cluster")
            .cumcount()
            .reindex(df.index)
            .astype(np.int64)
        )
        parts.append(df)
    if not parts:
        return pd.DataFrame(
            {
                "image_id": pd.Series(dtype="string"),
                "method": pd.Series(dtype="string"),
                "k": pd.Series(dtype="int64"),
                "cluster": pd.Series(dtype="int64"),
                "distance": pd.Series(dtype="float32"),
                "rank": pd.Series(dtype="int64"),
            }
        )
    out = pd.concat(parts, ignore_index=True)
    out["image_id"] = out["image_id"].astype("string")
    out["method"] = out["method"].astype("string")
    return out[CLUSTERS_COLUMNS]


def cluster_ranks(labels: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Rank of each row within its cluster by ``distance``: int64 (n,), 0 = nearest the
    centre; ties by row order (as a stable sort by cluster, then distance)."""
    order = np.lexsort((np.arange(len(labels)), distance, labels))
    lab = labels[order]
    first = np.ones(len(lab), dtype=bool)
    first[1:] = lab[1:] != lab[:-1]
    starts = np.flatnonzero(first)
    pos = np.arange(len(lab)) - np.repeat(starts, np.diff(np.append(starts, len(lab))))
    rank = np.empty(len(lab), dtype=np.int64)
    rank[order] = pos
    return rank


def write_assignments(
    path: str | os.PathLike[str],
    image_ids: Iterable[str],
    sweeps: Iterable[tuple[str, dict[int, tuple[np.ndarray, np.ndarray]]]],
) -> Path:
    """Write ``RUN/clusters.parquet`` one (method, k) row group at a time, atomically.

    The rows of :func:`assignments_table` (methods in the order given, k ascending), without
    ever holding the whole long table: at 1,000,000 images and 48 clusterings it would be
    48 million rows of Python strings. The image ids are converted to Arrow once and shared
    by every row group, and each group can be read on its own (readers filter by method, k).

    Parameters
    ----------
    image_ids : iterable of str, n of them
    sweeps : iterable of (method, labels)
        ``labels`` maps k to (cluster labels (n,), distances to the centre (n,)), as
        :func:`lookalike.kmeans.kmeans_sweep` returns them.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.Table.from_pandas(assignments_table([], {}), preserve_index=False).schema
    text = schema.field("image_id").type
    ids = pa.array(list(image_ids), type=text)
    with storage.atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for method, labels in sweeps:
            name = pa.array([method] * len(ids), type=text)
            for k, (lab, dist) in sorted(labels.items()):
                lab, dist = np.asarray(lab, np.int64), np.asarray(dist, np.float32)
                columns = [
                    ids,
                    name,
                    pa.array(np.full(len(lab), k, dtype=np.int64)),
                    pa.array(lab),
                    pa.array(dist),
                    pa.array(cluster_ranks(lab, dist)),
                ]
                writer.write_table(pa.Table.from_arrays(columns, schema=schema))
    return Path(path)


def image_paths(run_dir: str | os.PathLike[str] | RunLayout) -> dict[str, Path]:
    """Absolute path of every ok image of ``RUN/images.parquet``, by ``image_id``."""
    run = RunLayout(run_dir)
    manifest = storage.read_manifest(run, ok_only=True)
    return {
        str(i): run.image_path(p)
        for i, p in zip(manifest["image_id"], manifest["path"], strict=True)
        if isinstance(p, str)
    }


def export_folder(run_dir: str | os.PathLike[str] | RunLayout, method: str, k: int) -> Path:
    """``RUN/clusters/k_{k}`` for kmeans, ``RUN/clusters/{method}/k_{k}`` for other methods."""
    base = RunLayout(run_dir).export_dir
    return base / f"k_{int(k)}" if method == "kmeans" else base / method / f"k_{int(k)}"


def export_cluster_folders(
    run_dir: str | os.PathLike[str] | RunLayout,
    *,
    mode: str = "symlink",
    k_values: Iterable[int] | None = None,
    methods: Iterable[str] = ("kmeans", "agglomerative", "similarity"),
) -> Path | None:
    """Write one folder per cluster, filled with links to (or copies of) its images.

    The user's images are never moved or changed: ``symlink`` makes symbolic links (relative
    for images inside the run folder, so the run can be moved; absolute for a user's folder),
    ``copy`` copies the bytes (``shutil.copy2``), ``none`` does nothing.

    Parameters
    ----------
    run_dir : str or Path
        Needs ``RUN/clusters.parquet`` and ``RUN/images.parquet``.
    mode : {"none", "symlink", "copy"}, default "symlink"
    k_values : iterable of int, optional
        Only these k (default: every k in ``clusters.parquet``).
    methods : iterable of str, default ("kmeans", "agglomerative", "similarity")

    Returns
    -------
    ``RUN/clusters`` (None for mode "none"). Layout: ``k_{k}/cluster_{c}/{rank:05d}_{name}``
    for kmeans and ``{method}/k_{k}/cluster_{c}/...`` otherwise, ``rank`` 0 nearest the
    centre. Each exported ``k_{k}`` folder is rebuilt from scratch; images whose file is
    missing are counted and skipped.
    """
    if mode not in EXPORT_MODES:
        raise ConfigError(f"export_folders={mode!r} is not one of {list(EXPORT_MODES)}")
    if mode == "none":
        return None
    t0 = time.perf_counter()
    run = RunLayout(run_dir)
    table = storage.read_table(run.clusters, required=CLUSTERS_COLUMNS, what="clusters")
    where = image_paths(run)
    table = table[table["method"].isin(list(methods))]
    if k_values is not None:
        table = table[table["k"].isin([int(k) for k in k_values])]
    written = missing = 0
    for (method, k), grp in table.groupby(["method", "k"], sort=True):
        folder = export_folder(run, str(method), int(k))
        if folder.is_symlink() or folder.is_file():
            folder.unlink()
        elif folder.exists():
            shutil.rmtree(folder)  # removes our links, never what they point to
        for row in grp.itertuples(index=False):
            src = where.get(row.image_id)
            if src is None or not src.is_file():
                missing += 1
                continue
            dst = folder / f"cluster_{int(row.cluster)}" / f"{int(row.rank):05d}_{src.name}"
            dst.parent.mkdir(parents=True, exist_ok=True)
            if mode == "copy":
                shutil.copy2(src, dst)
            else:
                inside = src.resolve().is_relative_to(run.root.resolve())
                os.symlink(os.path.relpath(src, dst.parent) if inside else src, dst)
            written += 1
    groups = table.groupby(["method", "k"]).ngroups
    print(
        f"export: {groups} clusterings, {written} {'links' if mode == 'symlink' else 'copies'} "
        f"in {run.export_dir} ({missing} images missing); {time.perf_counter() - t0:.1f} s"
    )
    return run.export_dir
