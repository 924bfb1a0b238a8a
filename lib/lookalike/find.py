"""Find the look-alikes of given images in a run: ``lookalike find RUN QUERY...``.

A query is any mix of image files, folders of images, image URLs (fetched with the same safe
HTTP code as stage 01: size cap, deadline, private addresses refused) and domains (their logo
fetched through stage 02's provider chain). The query images get a run folder of their own,
``RUN/find/<name>/``, and are embedded there exactly as the run's images were (its preset,
layer, pooling, size, parts, colour, precision; :func:`embed_queries`), through the same
vector cache. They are then put in the run's similarity space (its whitening:
:func:`lookalike.space.open_space`) and searched in the run's index, so a query's scores are
on the scale of ``RUN/neighbors.parquet``.

The hits are written to ``RUN/find/<name>.parquet`` (:data:`FIND_COLUMNS`), optionally as CSV
too, with a contact sheet per query in ``RUN/figures/find/<name>/``.

**What ``share`` means.** ``share`` is the fraction of pairs of the run's own images that are
at least as similar as this hit: 0.001 means that one pair in a thousand of the run looks as
much alike as the query and this image. With labels (``labels=`` or known ``pairs=``),
``precision`` is the share of the run's neighbour pairs at least this similar whose two images
carry the same label.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import storage
from .domains import normalize_domain
from .exceptions import ConfigError
from .folder import IMAGE_EXTENSIONS, index_file, index_folder
from .neighbors import COLOUR_CANDIDATES, NEGATIVE_SLOT, read_neighbors
from .paths import RunLayout, resolve
from .progress import summary as print_summary
from .similarity import PRESETS, load_features
from .space import Space, open_space

#: Columns of ``RUN/find/<name>.parquet``: one row per query image and hit.
FIND_COLUMNS: dict[str, str] = {
    "query": "string",  # the query as given: a file path, URL or domain (one per image)
    "query_id": "string",  # sha256 of the query image
    "rank": "int64",  # 1 = most similar
    "image_id": "string",  # the hit, an image of the run
    "label": "string",  # the hit's name: domain, product alt text or file name
    "origin": "string",  # where the hit came from (its first origin)
    "n_origins": "int64",  # how many origins (domains, URLs, files) share these bytes
    "similarity": "float32",  # the run's own similarity (fused for logos, cosine for photos)
    "share": "float64",  # share of the run's pairs at least this similar (see the docstring)
    "precision": "float64",  # with labels: precision of the run's pairs at this similarity
    "match": "string",  # which pair matched: whole~whole, whole~part, part~whole, or a negative
    "colour": "float32",  # what the colour signature added to the similarity (may be < 0)
}
#: Hits per query by default.
DEFAULT_TOP = 10
#: Default search name (``RUN/find/<name>.parquet``).
DEFAULT_NAME = "find"
MATCHES = ("whole~whole", "whole~part", "part~whole", "whole~negative", "negative~whole")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


# -- queries --------------------------------------------------------------------------------


def query_kind(query: str) -> str:
    """``"folder"``, ``"file"``, ``"url"`` or ``"domain"``: what the text ``query`` names.

    Raises
    ------
    ConfigError
        If it is none of them (not an existing path, not an http(s) URL, not a domain).
    """
    text = str(query).strip()
    path = resolve(text)
    if path.is_dir():
        return "folder"
    if path.is_file():
        return "file"
    if re.match(r"^https?://", text, re.I):
        return "url"
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        raise ConfigError(f"query {text!r}: no such image file ({path})")
    try:
        normalize_domain(text)
    except ValueError as exc:
        raise ConfigError(
            f"query {text!r} is not an image file, a folder, an http(s) URL or a domain ({exc})"
        ) from None
    return "domain"


def _url_rows(qrun: RunLayout, urls: list[str], http: Mapping[str, Any]) -> list[dict]:
    """Manifest rows of image URLs, fetched with :func:`lookalike.net.fetch` and saved as PNG."""
    from .exceptions import ImageError
    from .icons import decode_logo
    from .images import error_reason, png_bytes
    from .net import ACCEPT_IMAGES, HttpOptions, build_session, fetch

    opts = HttpOptions(**{k: v for k, v in http.items() if k in HttpOptions.__dataclass_fields__})
    rows = []
    with build_session(opts) as session:
        for url in urls:
            row = {"source": "catalog", "origin": url, "path": None, "image_id": None}
            got = fetch(session, url, accept=ACCEPT_IMAGES, **opts.fetch_args())
            if not got.ok:
                rows.append(dict(row, status="failed", error=f"{got.error}: {got.detail}"))
                continue
            try:
                im, _ = decode_logo(got.content, min_side=1)
            except ImageError as exc:
                rows.append(dict(row, status="failed", error=f"{error_reason(exc)}: {exc}"))
                continue
            data = png_bytes(im)
            sha = storage.sha256_bytes(data)
            path = qrun.images_dir / f"{sha}.png"
            storage.atomic_write_bytes(path, data)
            w, h = im.size
            rows.append(
                dict(row, image_id=sha, path=qrun.relative(path), width=w, height=h, status="ok")
            )
    return rows


def _domain_rows(qrun: RunLayout, domains: list[str], fetch_options: Mapping[str, Any]):
    """Manifest rows of the logos of ``domains``, through stage 02 (:func:`fetch_logos`)."""
    from .logos import fetch_logos, to_image_manifest

    table = fetch_logos(domains, qrun, **dict(fetch_options))
    return to_image_manifest(table)


def query_manifest(
    qrun: RunLayout,
    queries: Sequence[str],
    *,
    fetch_options: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Write the query folder's ``images.parquet``: one row per query image.

    ``origin`` is the query as given (a file of a folder is named by its own path); failed
    queries are rows with ``status`` "failed" and the reason in ``error``.
    """
    fetch_options = dict(fetch_options or {})
    kinds = {q: query_kind(q) for q in queries}
    rows: list[Any] = []
    for q, kind in kinds.items():
        if kind == "folder":
            rows.append(index_folder(q, progress=progress))
        elif kind == "file":
            if resolve(q).suffix.lower() not in IMAGE_EXTENSIONS:
                raise ConfigError(f"query {q!r} is not an image file ({sorted(IMAGE_EXTENSIONS)})")
            rows.append(pd.DataFrame([index_file(resolve(q), min_side=1, max_bytes=50_000_000)]))
    urls = [q for q, kind in kinds.items() if kind == "url"]
    if urls:
        rows.append(pd.DataFrame(_url_rows(qrun, urls, fetch_options)))
    domains = [q for q, kind in kinds.items() if kind == "domain"]
    if domains:
        rows.append(_domain_rows(qrun, domains, fetch_options))
    manifest = storage.coerce_manifest(pd.concat(rows, ignore_index=True))
    storage.write_table(manifest, qrun.manifest)
    return manifest


def embed_queries(run: RunLayout, qrun: RunLayout, *, progress: bool = True) -> dict[str, Any]:
    """Embed the query folder's images with the run's own stage-03 settings.

    Returns the query images' :func:`lookalike.similarity.load_features`.
    """
    from .embed import embed_run

    settings = load_features(run)["settings"]
    state = storage.read_stamp(run.embed_state) or {}
    params = state.get("key", {}).get("params", {})
    overrides = {k: settings[k] for k in PRESETS["logos"] if k in settings}
    embed_run(
        qrun,
        preset=settings.get("preset", "photos"),
        normalize=params.get("normalize"),
        precision=params.get("precision"),
        progress=progress,
        **overrides,
    )
    return load_features(qrun)


# -- search ---------------------------------------------------------------------------------


def _cross(q: dict, r: dict, qi: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, ...]:
    """Fused similarity of query rows ``qi`` to run rows ``j`` (pairwise), which kind of
    pair gave it (codes of :data:`MATCHES`) and what colour added."""
    best = np.einsum("pd,pd->p", q["vectors"][qi], r["vectors"][j])
    kind = np.zeros(len(best), np.int8)
    if r["parts"] is not None and r["part_mask"] is not None:
        wp = np.einsum("pd,pmd->pm", q["vectors"][qi], r["parts"][j])
        best = _better(np.where(r["part_mask"][j], wp, -np.inf), best, kind, 1)
    if q["parts"] is not None and q["part_mask"] is not None:
        pw = np.einsum("pmd,pd->pm", q["parts"][qi], r["vectors"][j])
        best = _better(np.where(q["part_mask"][qi], pw, -np.inf), best, kind, 2)
    w = float(r["colour_weight"])
    colour = np.zeros(len(best), np.float32)
    if w > 0 and q["colour"] is not None and r["colour"] is not None:
        c = np.einsum("pc,pc->p", q["colour"][qi], r["colour"][j])
        colour = (w * (c - best)).astype(np.float32)
    return (best + colour).astype(np.float32), kind, colour


def _better(x: np.ndarray, best: np.ndarray, kind: np.ndarray, code: int) -> np.ndarray:
    """``max(best, x.max(axis=1))``; where ``x`` is strictly better, ``kind`` becomes ``code``
    (``code + 2`` when the negative slot gave it)."""
    top = x.max(axis=1)
    up = top > best
    kind[up] = np.where(x.argmax(axis=1)[up] == NEGATIVE_SLOT, code + 2, code)
    return np.maximum(best, top)


def _candidates(space: Space, q: dict, k: int) -> list[np.ndarray]:
    """Per query, the run rows the index proposes (every row at or below EXACT_MAX)."""
    from . import index as _index

    m = len(q["vectors"])
    if space.wholes is None:
        return [np.arange(space.n)] * m
    kk = (COLOUR_CANDIDATES if space.inputs["colour_weight"] > 0 else 1) * k
    found = [_index.search(space.wholes, q["vectors"], kk)[1]]
    if space.parts is not None:
        ids = _index.search(space.parts, q["vectors"], 2 * kk)[1]
        found.append(np.where(ids >= 0, space.part_owner[np.maximum(ids, 0)], -1))
    per_query = [np.concatenate([f[i] for f in found]) for i in range(m)]
    if q["parts"] is not None and q["part_mask"] is not None and q["part_mask"].any():
        owner, slot = np.nonzero(q["part_mask"])
        ids = _index.search(space.wholes, q["parts"][owner, slot], kk)[1]
        for row, hits in zip(owner, ids, strict=True):
            per_query[row] = np.concatenate([per_query[row], hits])
    return [np.unique(c[c >= 0]) for c in per_query]


def search(space: Space, q: dict[str, Any], k: int = DEFAULT_TOP) -> list[dict[str, np.ndarray]]:
    """The ``k`` images of the run most similar to each query.

    Parameters
    ----------
    space : Space
        :func:`lookalike.space.open_space` of the run.
    q : dict
        The queries' fused inputs in the run's space (:meth:`Space.transform`).
    k : int
        Hits per query (fewer when the run is smaller).

    Returns
    -------
    list, one dict per query with ``rows`` (int64, run rows, best first), ``similarity``
    (float32), ``match`` (int8 codes of :data:`MATCHES`) and ``colour`` (float32); ties go to
    the lower row. Exact at or below ``index.EXACT_MAX`` run images; above, the candidates
    come from the run's faiss indexes (whole to whole, whole to parts, parts to whole) and are
    scored exactly.
    """
    out = []
    for i, cand in enumerate(_candidates(space, q, int(k))):
        score, kind, colour = _cross(q, space.inputs, np.full(len(cand), i), cand)
        order = np.lexsort((cand, -score))[: int(k)]
        out.append(
            {
                "rows": cand[order],
                "similarity": score[order],
                "match": kind[order],
                "colour": colour[order],
            }  # fmt: skip
        )
    return out


# -- labels and calibration ------------------------------------------------------------


def read_labels(
    run: RunLayout, labels: str | os.PathLike[str] | pd.DataFrame | None = None,
    pairs: str | os.PathLike[str] | pd.DataFrame | None = None,
) -> pd.Series | None:  # fmt: skip
    """A group per image id from a labels table or from known look-alike pairs, or None.

    ``labels``: CSV/DataFrame with a reference column (``image_id``, ``origin``, ``path`` or
    ``file``: an origin, a domain or a file name) and a ``group`` (or ``label``) column.
    ``pairs``: CSV/DataFrame whose first two columns name two images that look alike; each
    connected set of pairs becomes one group. References that match no image are ignored.
    """
    if labels is None and pairs is None:
        return None
    info = storage.image_info(run)
    ref = {}
    for image_id, row in info.iterrows():
        for key in (image_id, row["origin"], Path(row["origin"]).name, Path(row["path"]).name):
            ref.setdefault(str(key), image_id)
    groups: dict[str, str] = {}
    if labels is not None:
        t = labels if isinstance(labels, pd.DataFrame) else pd.read_csv(labels)
        col = next((c for c in ("image_id", "origin", "path", "file") if c in t.columns), None)
        gcol = next((c for c in ("group", "label") if c in t.columns), None)
        if col is None or gcol is None:
            raise ConfigError(
                f"labels need a column image_id/origin/path/file and group, got {list(t.columns)}"
            )
        for r, g in zip(t[col].astype(str), t[gcol].astype(str), strict=True):
            key = ref.get(r) or ref.get(Path(r).name)
            if key is not None:
                groups[key] = g
    if pairs is not None:
        groups.update(_pair_groups(pairs, ref))
    print(f"find: labels for {len(groups)} of the run's {len(info)} images")
    return pd.Series(groups, dtype="string") if groups else None


def _pair_groups(pairs, ref: Mapping[str, str]) -> dict[str, str]:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    t = pairs if isinstance(pairs, pd.DataFrame) else pd.read_csv(pairs)
    if t.shape[1] < 2:
        raise ConfigError("pairs need two columns: two images that look alike per row")
    a = [ref.get(str(x)) or ref.get(Path(str(x)).name) for x in t.iloc[:, 0]]
    b = [ref.get(str(x)) or ref.get(Path(str(x)).name) for x in t.iloc[:, 1]]
    known = [(x, y) for x, y in zip(a, b, strict=True) if x and y]
    names = sorted({x for p in known for x in p})
    pos = {n: i for i, n in enumerate(names)}
    if not known:
        return {}
    rows, cols = zip(*[(pos[x], pos[y]) for x, y in known], strict=True)
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(names), len(names)))
    _, comp = connected_components(graph, directed=False)
    return {n: f"pair-group-{c}" for n, c in zip(names, comp, strict=True)}


def precision_at(run: RunLayout, groups: pd.Series | None, similarity: np.ndarray) -> np.ndarray:
    """Precision of the run's neighbour pairs (``RUN/neighbors.parquet``) at least as similar
    as each value: the share whose two images have the same group. NaN without labels, and
    for a value above every labelled pair of the run (nothing to measure it on)."""
    s = np.asarray(similarity, dtype=np.float64)
    nb = read_neighbors(run) if groups is not None else None
    if nb is None:
        return np.full(s.shape, np.nan)
    a = nb["image_id"].astype(str).map(groups)
    b = nb["neighbor_id"].astype(str).map(groups)
    both = a.notna() & b.notna()
    sims = nb["similarity"].to_numpy(np.float64)[both.to_numpy()]
    same = (a[both] == b[both]).to_numpy(np.float64)
    order = np.argsort(-sims, kind="stable")
    sims, cum = sims[order], np.cumsum(same[order])
    count = np.searchsorted(-sims, -s, side="right")  # pairs with similarity >= s
    return np.where(count > 0, cum[np.maximum(count - 1, 0)] / np.maximum(count, 1), np.nan)


# -- the whole search --------------------------------------------------------------------------


def _table(run, space, qfeats, hits, groups, min_similarity, info) -> pd.DataFrame:
    qids = qfeats["ids"]["image_id"].astype(str).tolist()
    qm = storage.read_manifest(qfeats["run"], ok_only=False)
    query_of = qm[qm["status"] == "ok"].drop_duplicates("image_id").set_index("image_id")
    frames = []
    for qid, h in zip(qids, hits, strict=True):
        ids = [space.image_ids[r] for r in h["rows"]]
        meta = info.reindex(ids)
        frames.append(
            pd.DataFrame(
                {
                    "query": str(query_of.loc[qid, "origin"]),
                    "query_id": qid,
                    "rank": np.arange(1, len(ids) + 1),
                    "image_id": ids,
                    "label": meta["label"].to_numpy(),
                    "origin": meta["origin"].to_numpy(),
                    "n_origins": meta["n_origins"].fillna(1).to_numpy(),
                    "similarity": h["similarity"],
                    "share": space.share(h["similarity"]),
                    "precision": np.nan,  # below, for every row at once
                    "match": [MATCHES[c] for c in h["match"]],
                    "colour": h["colour"],
                }
            )
        )
    t = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(FIND_COLUMNS))
    if len(t):
        t["precision"] = precision_at(run, groups, t["similarity"].to_numpy())
    if min_similarity is not None:
        t = t[t["similarity"] >= float(min_similarity)].reset_index(drop=True)
    return t.astype(FIND_COLUMNS)[list(FIND_COLUMNS)]


def find(
    run_dir: str | os.PathLike[str] | RunLayout,
    queries: str | Iterable[str],
    *,
    name: str = DEFAULT_NAME,
    top: int = DEFAULT_TOP,
    min_similarity: float | None = None,
    csv: bool = False,
    labels: str | os.PathLike[str] | pd.DataFrame | None = None,
    pairs: str | os.PathLike[str] | pd.DataFrame | None = None,
    sheets: bool = True,
    fetch_options: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """The look-alikes in a run of each query image; writes ``RUN/find/<name>.parquet``.

    Parameters
    ----------
    run_dir : str, Path or RunLayout
        A run that has been through stage 03 (``RUN/embeddings/``); with stage 04 done,
        ``share`` and ``precision`` use its neighbours too.
    queries : str or iterable of str
        Image files, folders, http(s) image URLs and domains, in any mix (:func:`query_kind`).
    name : str, default "find"
        Names the results (``RUN/find/<name>.parquet``) and the query folder; a new search
        with the same name replaces them.
    top : int, default 10
        Hits per query image.
    min_similarity : float, optional
        Drop hits below this similarity.
    csv : bool, default False
        Also write ``RUN/find/<name>.csv``.
    labels, pairs : optional
        See :func:`read_labels`; they add ``precision``.
    sheets : bool, default True
        Draw a contact sheet per query (``RUN/figures/find/<name>/``).
    fetch_options : mapping, optional
        For URL and domain queries: keyword arguments of
        :func:`lookalike.logos.fetch_logos` (``providers``, ``proxy``, ``site_url_template``,
        ``allow_private_hosts``, ``timeout_s``...), URLs take those of
        :class:`lookalike.net.HttpOptions`.
    progress : bool, default True

    Returns
    -------
    DataFrame with the columns of :data:`FIND_COLUMNS`, sorted by query then rank.
    """
    t0 = time.perf_counter()
    run = RunLayout(run_dir)
    if not _NAME.match(str(name)):
        raise ConfigError(f"name={name!r}: use letters, digits, '.', '_' or '-' (64 at most)")
    if isinstance(top, bool) or int(top) < 1:
        raise ConfigError(f"top={top!r} must be >= 1")
    queries = [queries] if isinstance(queries, str | os.PathLike) else [str(q) for q in queries]
    if not queries:
        raise ConfigError("no queries: give image files, folders, URLs or domains")
    if not run.root.is_dir():
        raise ConfigError(f"no such run folder: {run.root}")
    if not run.vectors.is_file():
        raise ConfigError(f"{run.root} has no embeddings: run stage 03 on it first")
    for what, path in (("labels", labels), ("pairs", pairs)):
        if path is not None and not isinstance(path, pd.DataFrame) and not Path(path).is_file():
            raise ConfigError(f"{what}={str(path)!r}: no such file")
    qrun = RunLayout(run.find_queries(name))
    manifest = query_manifest(qrun, queries, fetch_options=fetch_options, progress=progress)
    groups = read_labels(run, labels, pairs)
    space = open_space(run)
    n_ok = int((manifest["status"] == "ok").sum())
    if n_ok:
        qfeats = dict(embed_queries(run, qrun, progress=progress), run=qrun)
        hits = search(space, space.transform(qfeats), int(top))
    else:
        qfeats, hits = {"ids": pd.DataFrame({"image_id": []}), "run": qrun}, []
    info = storage.image_info(run)  # once: the table and the sheets both name the hits
    table = _table(run, space, qfeats, hits, groups, min_similarity, info)
    storage.write_table(table, run.find_results(name))
    if csv:
        with storage.atomic_path(run.find_csv(name)) as tmp:
            table.to_csv(tmp, index=False)
    if sheets:
        find_sheets(run, name, table, info=info)
    failed = manifest[manifest["status"] != "ok"]
    for _, row in failed.iterrows():
        print(f"find: query {row['origin']}: {row['status']} ({row['error']})")
    dt = time.perf_counter() - t0
    print_summary(
        f"find: {n_ok}/{len(manifest)} query images against {space.n} images, "
        f"{len(table)} hits -> {run.relative(run.find_results(name))}; {dt:.1f} s"
    )
    return table


def read_find(run_dir: str | os.PathLike[str] | RunLayout, name: str | None = None):
    """The results of one search (``name``), or of every search with a ``search`` column."""
    run = RunLayout(run_dir)
    if name is not None:
        return storage.read_table(run.find_results(name), required=FIND_COLUMNS, what="find")
    paths = sorted(run.find_dir.glob("*.parquet")) if run.find_dir.is_dir() else []
    frames = [storage.read_table(p).assign(search=p.stem) for p in paths]
    return pd.concat(frames, ignore_index=True) if frames else None


def find_sheets(
    run: RunLayout, name: str, table: pd.DataFrame, *, info: pd.DataFrame | None = None
) -> list[Path]:
    """One contact sheet per query image: the query first, then its hits with their
    similarity and label. Returns the PNG paths (``RUN/figures/find/<name>/``)."""
    from .sheets import contact_sheet

    qrun = RunLayout(run.find_queries(name))
    qm = storage.read_manifest(qrun)
    qpath = qm[qm["status"] == "ok"].drop_duplicates("image_id").set_index("image_id")["path"]
    info = storage.image_info(run) if info is None else info
    out = []
    folder = run.find_sheets_dir(name)
    for stale in folder.glob("*.png") if folder.is_dir() else []:
        stale.unlink()  # an earlier search of this name
    for i, (qid, hits) in enumerate(table.groupby("query_id", sort=False)):
        paths = [qrun.image_path(qpath[qid])] + [
            run.image_path(info.loc[h, "path"]) for h in hits["image_id"]
        ]
        caps = ["query"] + [
            f"{s:.2f}\n{info.loc[h, 'caption']}"
            for s, h in zip(hits["similarity"], hits["image_id"], strict=True)
        ]
        q = Path(str(hits["query"].iloc[0]))
        stem = q.stem if q.suffix.lower() in IMAGE_EXTENSIONS else q.name
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", stem)[:40]
        path = run.find_sheets_dir(name) / f"{i + 1:03d}-{slug}.png"
        title = f"{hits['query'].iloc[0]}: top {len(hits)} (search {name!r})"
        out.append(contact_sheet(paths, path, title=title, captions=caps, thumb=112))
    return out
