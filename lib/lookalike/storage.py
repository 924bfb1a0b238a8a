"""Reading and writing run files: the image manifest, tables, embeddings and stamps.

Every write is atomic (a temporary file in the same folder, then ``os.replace``), so an
interrupted run never leaves a half-written file behind. Where each file lives is
:class:`~lookalike.paths.RunLayout`'s business; this module only reads and writes them.

A *stamp* is a small JSON file that records what a stage's outputs were made from (its
parameters and a fingerprint of its inputs). :func:`is_current` is the one answer to "is
this output still current?", used by every stage that resumes. A :class:`Journal` is a
keyed table that grows row by row and survives a kill at any point (stages 01 and 02).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .exceptions import ManifestError
from .paths import RunLayout

#: Columns of ``RUN/images.parquet``, the one manifest that stages 03 to 05 read. It holds
#: one row per origin: two domains (or two product URLs) that serve the same bytes are two
#: rows with one ``image_id``.
MANIFEST_COLUMNS: dict[str, str] = {
    "image_id": "string",  # sha256 of the image bytes (hex); empty when the item failed
    "path": "string",  # where the bytes are: relative to the run dir, or absolute
    "source": "string",  # catalog | logos | folder
    "origin": "string",  # page/image URL, domain, or original file path
    "width": "Int64",  # decoded width in pixels
    "height": "Int64",  # decoded height in pixels
    "status": "string",  # ok | failed | skipped
    "error": "string",  # short reason when status != ok
    "added": "datetime64[ns, UTC]",  # when the row first entered the manifest (UTC)
    "label": "string",  # a name for people: domain, alt text or product title, file name
}
#: Columns a manifest written before they existed may lack (``added`` is then missing,
#: ``label`` is worked out when it is read: :func:`read_manifest`).
OPTIONAL_MANIFEST_COLUMNS = ("added", "label")
#: Characters of a label shown under a thumbnail; longer ones end with an ellipsis.
LABEL_CHARS = 24


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``: the image id used everywhere."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str], *, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks of ``chunk_size`` bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Read once at import (os.umask can only be read by setting it, which is not thread-safe).
_UMASK = _read_umask()


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it becomes ``path`` in one rename.

    Parent folders are created. The file gets the usual permissions (0666 minus the umask,
    where a bare temp file would be private). On an exception the temporary file is removed
    and ``path`` is untouched, so an interrupted write never leaves half a file behind.

    Examples
    --------
    >>> with atomic_path("runs/x/table.csv") as tmp:  # doctest: +SKIP
    ...     df.to_csv(tmp, index=False)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`atomic_path`); ``fsync`` flushes to disk."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    return path


def write_table(df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``df`` atomically as parquet (``.parquet``) or CSV (``.csv``) at ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)
    return path


def read_table(
    path: str | os.PathLike[str], *, required: Iterable[str] = (), what: str = "table"
) -> pd.DataFrame:
    """Read a parquet or CSV file and check that it has the ``required`` columns.

    Raises
    ------
    ManifestError
        If the file is missing or lacks a required column; the message names both.
    """
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"{what} not found: {path}")
    df = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ManifestError(f"{what} {path} lacks column(s) {missing}; it has {list(df.columns)}")
    return df


def empty_manifest() -> pd.DataFrame:
    """A manifest with no rows and the documented columns and dtypes."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in MANIFEST_COLUMNS.items()})


def coerce_manifest(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with exactly the manifest's columns, in order and with their dtypes.

    Runs of white space in ``label`` become one space; a missing or empty one gets the
    origin's own name (:func:`origin_labels`).
    """
    out = df.copy()
    for col, dtype in MANIFEST_COLUMNS.items():
        if col not in out.columns:
            out[col] = pd.NA
        out[col] = out[col].astype(dtype)
    label = out["label"].str.replace(r"\s+", " ", regex=True).str.strip()
    out["label"] = label.where(label.fillna("") != "", origin_labels(out))
    return out[list(MANIFEST_COLUMNS)]


def manifest_path(run_dir: str | os.PathLike[str] | RunLayout) -> Path:
    """Path of ``RUN/images.parquet``."""
    return RunLayout(run_dir).manifest


def read_manifest(
    run_dir: str | os.PathLike[str] | RunLayout, *, ok_only: bool = False
) -> pd.DataFrame:
    """Read ``RUN/images.parquet``.

    Parameters
    ----------
    run_dir : str or Path
        The run folder (relative paths are taken from the project root).
    ok_only : bool, default False
        Keep only rows with ``status == "ok"``, one per ``image_id``.

    Returns
    -------
    DataFrame with the columns of :data:`MANIFEST_COLUMNS`.
    """
    required = [c for c in MANIFEST_COLUMNS if c not in OPTIONAL_MANIFEST_COLUMNS]
    df = read_table(manifest_path(run_dir), required=required, what="image manifest")
    if "label" not in df.columns:  # written before labels: the alt texts of stage 01
        df["label"] = _scrape_alts(RunLayout(run_dir), df)
    df = coerce_manifest(df)
    if ok_only:
        df = df[df["status"] == "ok"].drop_duplicates("image_id").reset_index(drop=True)
    return df


def merge_manifest(run_dir: str | os.PathLike[str] | RunLayout, rows: pd.DataFrame) -> pd.DataFrame:
    """Upsert ``rows`` into ``RUN/images.parquet`` and return the whole manifest.

    A row is identified by ``(source, origin)``: a newer row for the same origin replaces
    the older one, so re-running a stage never duplicates rows. ``added`` keeps the time the
    origin first entered the manifest; rows new to it get the current time.
    """
    new = coerce_manifest(rows)
    path = manifest_path(run_dir)
    old = read_manifest(run_dir) if path.exists() else empty_manifest()
    key = ["source", "origin"]
    since = old.dropna(subset=["added"]).drop_duplicates(key).set_index(key)["added"]
    first = pd.MultiIndex.from_frame(new[key].astype(object)).map(since.to_dict().get)
    new["added"] = pd.Series(first, index=new.index, dtype="datetime64[ns, UTC]").fillna(
        new["added"].fillna(pd.Timestamp.now(tz="UTC"))
    )
    merged = pd.concat([old, new], ignore_index=True) if len(old) else new
    merged = merged.drop_duplicates(key, keep="last").reset_index(drop=True)
    write_table(merged, path)
    return merged


# -- labels: a name for people, per row and per image -------------------------------------


def origin_labels(manifest: pd.DataFrame) -> pd.Series:
    """The name of each row's origin: the domain for logos, else the file name of the URL
    or path (the whole origin when it has none). Strings, index of ``manifest``."""
    origin = manifest["origin"].astype("string").fillna("")
    url = origin.str.match(r"^[A-Za-z][A-Za-z0-9+.-]*://")
    path = origin.mask(url, origin.str.replace(r"[?#].*$", "", regex=True)).str.rstrip("/\\")
    name = path.str.replace(r"^.*[/\\]", "", regex=True)
    name = name.where((name != "") & ~path.str.endswith(":"), origin)
    return name.where(manifest["source"].astype("string") != "logos", origin).astype("string")


def _scrape_alts(run: RunLayout, manifest: pd.DataFrame) -> pd.Series:
    """The alt text of each catalog row from ``RUN/scrape.parquet`` (missing elsewhere)."""
    none = pd.Series(pd.NA, index=manifest.index, dtype="string")
    if not run.scrape.is_file() or not (manifest["source"] == "catalog").any():
        return none
    alt = pd.read_parquet(run.scrape, columns=["url", "alt"]).dropna().drop_duplicates("url")
    named = manifest["origin"].map(alt.set_index("url")["alt"]).astype("string")
    return named.where(manifest["source"] == "catalog", none)


def short_label(label: object, n_origins: int = 1, width: int = LABEL_CHARS) -> str:
    """``label`` cut to ``width`` characters (an ellipsis ends a cut one), with the number
    of other origins of the same bytes: ``"Melon, pack of 3 (+1 more)"``."""
    text = " ".join(str("" if label is None or label is pd.NA else label).split())
    if len(text) > width:
        text = text[: max(1, width - 1)].rstrip() + "\u2026"
    extra = int(n_origins) - 1 if n_origins is not None and not pd.isna(n_origins) else 0
    return f"{text} (+{extra} more)" if extra > 0 else text


def image_info(run_dir: str | os.PathLike[str] | RunLayout) -> pd.DataFrame:
    """One row per ``ok`` image of the run, indexed by ``image_id``.

    Columns: ``label``, ``origin``, ``source`` and ``path`` of its first manifest row,
    ``n_origins`` (how many origins share these bytes: domains, URLs, files), ``origins``
    and ``labels`` (all of them and their labels, lists of str in manifest order).
    ``caption`` is :func:`short_label` of the label and the count, for figures.
    """
    m = read_manifest(run_dir)
    m = m[m["status"] == "ok"].drop_duplicates(["image_id", "origin"])
    first = m.drop_duplicates("image_id").set_index("image_id")
    n = m.groupby("image_id", sort=False).size()
    info = pd.DataFrame(
        {
            "label": first["label"].astype(str),
            "origin": first["origin"].astype(str),
            "source": first["source"].astype(str),
            "path": first["path"].astype(str),
            "n_origins": n.reindex(first.index).astype("int64"),
        }
    )
    many = m[m["image_id"].isin(n.index[n > 1])]  # only shared bytes need a list built
    for col, first_col in (("origins", "origin"), ("labels", "label")):
        lists = many.groupby("image_id", sort=False)[first_col].agg(list).to_dict()
        info[col] = [
            [str(o) for o in lists[i]] if i in lists else [o]
            for i, o in zip(info.index, info[first_col], strict=True)
        ]
    info["caption"] = [
        short_label(lab, k) for lab, k in zip(info["label"], info["n_origins"], strict=True)
    ]
    return info


def image_abspath(run_dir: str | os.PathLike[str] | RunLayout, path: str) -> Path:
    """Absolute path of a manifest ``path`` entry (relative entries are inside the run)."""
    return RunLayout(run_dir).image_path(path)


# -- embeddings ---------------------------------------------------------------------------


def embeddings_paths(run_dir: str | os.PathLike[str] | RunLayout) -> tuple[Path, Path]:
    """``(vectors.npy, ids.parquet)`` inside ``RUN/embeddings/``."""
    run = RunLayout(run_dir)
    return run.vectors, run.ids


def read_embeddings(run_dir: str | os.PathLike[str] | RunLayout) -> tuple[pd.DataFrame, np.ndarray]:
    """Load ``RUN/embeddings/``.

    Returns
    -------
    ids : DataFrame with column ``image_id`` (row i describes vector i)
    vectors : ndarray of shape (n_images, n_features), float32, memory-mapped read-only
    """
    vec_path, ids_path = embeddings_paths(run_dir)
    ids = read_table(ids_path, required=["image_id"], what="embedding ids")
    if not vec_path.exists():
        raise ManifestError(f"embeddings not found: {vec_path}; run 03_embed_vgg16 first")
    vectors = np.load(vec_path, mmap_mode="r")
    if vectors.shape[0] != len(ids):
        raise ManifestError(
            f"{vec_path} has {vectors.shape[0]} rows but {ids_path} has {len(ids)} ids; "
            "re-run 03_embed_vgg16"
        )
    return ids, vectors


def drop_pages(array: Any) -> None:
    """Let the OS take back the pages of a memory-mapped file that ``array`` has read.

    Pages of a file mapped with ``np.load(mmap_mode="r")`` stay in the process's resident
    memory once touched (a 1,000,000-image run maps 8 GB of features), though only a pass
    over them needed them. After such a pass this hands them back (``MADV_DONTNEED``: the
    file is unchanged and a later read simply maps them again). Does nothing for an array
    that is not a view of a memory map, or where the OS has no ``madvise``.
    """
    import mmap

    base = array
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
    if base is not None and hasattr(base, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        try:
            base.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):  # a closed map, or a platform that refuses it
            pass


# -- stamps: "is this output current?" -----------------------------------------------------


def fingerprint(value: Any) -> str:
    """Hex sha256 of ``value`` written as canonical JSON (sorted keys, no spaces).

    ``value`` is any JSON-able structure (parameters, a list of image ids); tuples count as
    lists, so a fingerprint survives a round trip through a JSON file.
    """
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_stamp(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The stamp at ``path`` as a dict, or ``None`` when it is missing or unreadable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_stamp(path: str | os.PathLike[str], key: Mapping[str, Any], **info: Any) -> Path:
    """Record that the outputs beside ``path`` were made from ``key``.

    Parameters
    ----------
    path : str or Path
        The stamp file (JSON), written atomically.
    key : mapping
        Everything the outputs depend on: parameters and input fingerprints. Two runs with
        equal keys produce the same outputs.
    **info
        Extra facts for later checks or for people (counts, dimensions); not part of the key.
    """
    record = {**info, "key": json.loads(json.dumps(dict(key), default=str))}
    return atomic_write_bytes(path, json.dumps(record, indent=2, sort_keys=True).encode())


def clear_stamp(path: str | os.PathLike[str]) -> None:
    """Remove a stage's stamp before it rewrites any of its outputs.

    Otherwise a kill half-way through a run with other parameters would leave the old stamp
    beside a mix of old and new outputs, and a re-run with the old parameters would take
    them as current.
    """
    Path(path).unlink(missing_ok=True)


def is_current(
    path: str | os.PathLike[str],
    key: Mapping[str, Any],
    *,
    outputs: Iterable[str | os.PathLike[str]] = (),
) -> bool:
    """True when the stamp at ``path`` records exactly ``key`` and every output exists.

    The stamp is cleared (:func:`clear_stamp`) before the outputs are rewritten and written
    last, after them, so a kill at any point leaves either no stamp or a complete set of
    outputs that match it.
    """
    stamp = read_stamp(path)
    if stamp is None:
        return False
    want = json.loads(json.dumps(dict(key), default=str))
    return stamp.get("key") == want and all(Path(p).exists() for p in outputs)


# -- journals: tables that grow row by row -------------------------------------------------


def _is_missing(value) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def _plain(value):
    """A parquet/pandas value as plain JSON-able Python (None, list, ISO time string)."""
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if hasattr(value, "tolist") and not isinstance(value, str):
        return value.tolist()  # numpy scalars and arrays (list columns)
    return None if _is_missing(value) else value


def rows_to_table(rows: Iterable[Mapping], columns: Mapping[str, str]) -> pd.DataFrame:
    """A DataFrame with exactly ``columns`` (name -> pandas dtype), in order.

    Missing columns are filled with missing values; ``"object"`` columns hold lists (an
    empty list when missing); ``datetime64`` columns are parsed from ISO strings.
    """
    df = pd.DataFrame([dict(r) for r in rows])
    if df.empty:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})
    for col, dtype in columns.items():
        if col not in df.columns:
            df[col] = None
        if dtype.startswith("datetime"):
            df[col] = pd.to_datetime(df[col], utc=True, format="ISO8601")
        elif dtype == "object":
            df[col] = [[] if _is_missing(v) else list(v) for v in df[col]]
        else:
            df[col] = df[col].astype(dtype)
    return df[list(columns)]


class Journal:
    """A keyed table that survives a kill at any point.

    Each row is appended at once to the journal beside the table (one JSON line,
    :meth:`~lookalike.paths.RunLayout.journal`). The table (parquet) is rewritten atomically
    every ``every`` rows or ``seconds`` seconds and by :meth:`flush`, which then empties the
    journal. Opening replays the journal over the table (a line cut short by a kill is
    dropped) and folds it in.

    Parameters
    ----------
    path : Path
        The table (parquet).
    columns : mapping of str to str
        Its columns and pandas dtypes (see :func:`rows_to_table`).
    key : str or callable, default "url"
        The column that identifies a row, or a function of the row (a dict) returning a
        hashable key; a newer row with the same key replaces the older one.
    what : str
        What the table is, for error messages.
    every, seconds : int, float, default 25, 10.0
        Fold the journal into the table after this many rows or seconds.
    """

    def __init__(
        self,
        path: Path,
        columns: Mapping[str, str],
        *,
        key: str | Callable[[Mapping], Hashable] = "url",
        what: str = "table",
        every: int = 25,
        seconds: float = 10.0,
    ):
        self.path, self.columns = Path(path), dict(columns)
        self.journal = RunLayout.journal(self.path)
        self.key = (lambda row: row.get(key)) if isinstance(key, str) else key
        self.every, self.seconds = every, seconds
        self.rows: dict[Hashable, dict] = {}
        self._lock = threading.Lock()
        self._pending = 0
        self._last = time.monotonic()
        if self.path.exists():
            df = read_table(self.path, required=list(columns), what=what)
            for rec in df.to_dict("records"):
                row = {k: _plain(v) for k, v in rec.items() if k in self.columns}
                self.rows[self.key(row)] = row
        if self.journal.exists():
            self._replay()
            self.flush()

    def _replay(self) -> None:
        with self.journal.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue  # the last line of a killed run
                if isinstance(row, dict) and self.key(row) is not None:
                    self.rows[self.key(row)] = row

    def get(self, key: Hashable) -> dict | None:
        """The row with this key, or None."""
        with self._lock:
            return self.rows.get(key)

    def put(self, row: Mapping) -> None:
        """Record ``row`` (a dict of JSON-able or pandas values) durably, at once."""
        row = {k: _plain(v) for k, v in row.items()}
        line = json.dumps(row, default=str, ensure_ascii=False)
        with self._lock:
            self.rows[self.key(row)] = row
            with self.journal.open("a", encoding="utf-8") as f:
                f.write(line + "\n")
            self._pending += 1
            if self._pending >= self.every or time.monotonic() - self._last > self.seconds:
                self._write()

    def _write(self, order: Iterable[Hashable] = ()) -> pd.DataFrame:
        keys = [k for k in dict.fromkeys(order) if k in self.rows]
        keys += [k for k in self.rows if k not in set(keys)]
        return self._replace([self.rows[k] for k in keys])

    def _replace(self, rows: list[dict]) -> pd.DataFrame:
        table = rows_to_table(rows, self.columns)
        write_table(table, self.path)
        self.journal.unlink(missing_ok=True)  # after the write: a kill in between loses nothing
        self._pending, self._last = 0, time.monotonic()
        return table

    def flush(self, order: Iterable[Hashable] = ()) -> pd.DataFrame:
        """Write the table (rows with the keys in ``order`` first) and empty the journal."""
        with self._lock:
            return self._write(order)

    def write(self, rows: Iterable[Mapping]) -> pd.DataFrame:
        """Make the table exactly ``rows``, in this order (other rows are dropped)."""
        with self._lock:
            clean = [{k: _plain(v) for k, v in row.items()} for row in rows]
            self.rows = {self.key(row): row for row in clean}
            return self._replace(clean)
