"""A run's similarity space, kept in ``RUN/index/``: whitening, faiss indexes, calibration.

Stage 04 compares a run's images in the space of its preset (:mod:`lookalike.similarity`:
PCA-whitened wholes and parts plus colour for ``logos``, cosine for ``photos``). Two things
need that space again after stage 04 is done: the queries of :mod:`lookalike.find`, whose
scores must be on the run's own scale, and images added to a run later, which must not move
the old ones. :func:`open_space` gives it back, built once and kept on disk:

- ``whitening.npz``: the fitted whitening (:class:`lookalike.similarity.Whitener`), written
  by stage 04 (:func:`run_whitener`) and kept when images are added to the run;
- ``wholes.faiss`` and ``parts.faiss``: the indexes of :func:`lookalike.index.build_index`
  over the whitened wholes and the present parts (only above
  :data:`lookalike.index.EXACT_MAX` images; below it every search is exact);
- ``calibration.npy``: the fused similarity of :data:`CALIBRATION_PAIRS` random pairs of the
  run's images, sorted, which turns a similarity into the share of the run's pairs that are at
  least that similar (:meth:`Space.share`);
- ``state.json``: a stamp of the embeddings and settings they were made from.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import index as _index
from . import storage
from .neighbors import _present_parts, pair_similarity
from .paths import RunLayout
from .similarity import Whitener, fused_inputs, fused_whitener, load_features

#: Random pairs of the run's images whose similarity calibrates :meth:`Space.share` (every
#: pair when the run has fewer). 200,000 pairs resolve shares down to 5e-6.
CALIBRATION_PAIRS = 200_000
#: Seed of the calibration pairs.
SEED = 0

_OPEN: dict[str, Space] = {}  # open spaces of this process, by stamp fingerprint


@dataclass
class Space:
    """The similarity space of one run (see the module docstring).

    Attributes
    ----------
    image_ids : list of str, row i names row i of ``inputs``
    settings : dict, the run's similarity settings (``RUN/embeddings/similarity.json``)
    inputs : dict, :func:`lookalike.similarity.fused_inputs` of the run's images
    whitener : Whitener or None (the preset does not whiten)
    calibration : float32 ndarray (p,), sorted similarities of random pairs
    wholes, parts : faiss indexes, or None at or below ``index.EXACT_MAX`` images (and
        ``parts`` when no image has a part)
    part_owner : int64 ndarray (p,), the image row of each indexed part, or None
    """

    image_ids: list[str]
    settings: dict[str, Any]
    inputs: dict[str, Any]
    whitener: Whitener | None
    calibration: np.ndarray
    wholes: Any = None
    parts: Any = None
    part_owner: np.ndarray | None = None

    @property
    def n(self) -> int:
        """Number of images in the run."""
        return len(self.image_ids)

    def transform(self, features: dict[str, Any]) -> dict[str, Any]:
        """Other images' stage-03 features (:func:`lookalike.similarity.load_features`) as
        fused inputs in this run's space (its whitening, its colour weight)."""
        return fused_inputs(
            dict(features, settings=self.settings), whitener=self.whitener or _NO_WHITENING
        )

    def share(self, similarity: np.ndarray) -> np.ndarray:
        """Share of the run's pairs of images that are at least this similar: float64, 0..1.

        Estimated from :data:`CALIBRATION_PAIRS` random pairs; 0 means none of them was.
        """
        s = np.asarray(similarity, dtype=np.float32)
        c = self.calibration
        if not len(c):
            return np.full(s.shape, np.nan)
        return (len(c) - np.searchsorted(c, s, side="left")) / len(c)


_NO_WHITENING = Whitener(None, None, None)


def _key(run: RunLayout, random_state: int | None) -> dict[str, Any]:
    extras = [run.parts, run.part_mask, run.colour, run.shape]
    return {
        "vectors_sha256": storage.sha256_file(run.vectors),
        "ids_sha256": storage.sha256_file(run.ids),
        "extras_sha256": [storage.sha256_file(p) for p in extras if p.is_file()],
        "settings": storage.read_stamp(run.similarity_state),
        "whitening": storage.read_stamp(run.whitening_state),
        "random_state": random_state,
        "exact_max": _index.EXACT_MAX,
        "calibration_pairs": CALIBRATION_PAIRS,
    }


def calibration_sample(inputs: dict[str, Any], *, pairs: int = CALIBRATION_PAIRS) -> np.ndarray:
    """Sorted fused similarities of ``pairs`` random pairs of different rows (seeded), or of
    every pair when there are fewer: float32 (p,)."""
    n = len(inputs["vectors"])
    if n < 2:
        return np.empty(0, np.float32)
    if n * (n - 1) // 2 <= pairs:
        i, j = np.triu_indices(n, 1)
    else:
        rng = np.random.default_rng(SEED)
        i = rng.integers(0, n, size=pairs)
        j = (i + rng.integers(1, n, size=pairs)) % n  # never i itself
    feats = (inputs["vectors"], inputs["parts"], inputs["part_mask"], inputs["colour"])
    out = np.concatenate(
        [
            pair_similarity(i[s : s + 65536], j[s : s + 65536], *feats, inputs["colour_weight"])
            for s in range(0, len(i), 65536)
        ]
    )
    return np.sort(out.astype(np.float32))


def _build(run: RunLayout, space: Space) -> None:
    """Fill ``space``'s indexes (above EXACT_MAX) and write ``RUN/index/``."""
    with storage.atomic_path(run.calibration) as tmp, open(tmp, "wb") as fh:
        np.save(fh, space.calibration)
    if space.n > _index.EXACT_MAX:
        import faiss

        present, _ = _present_parts(space.inputs["parts"], space.inputs["part_mask"])
        space.wholes = _index.build_index(space.inputs["vectors"])
        faiss.write_index(space.wholes, os.fspath(run.index_file("wholes")))
        if present is not None:
            space.part_owner = np.nonzero(space.inputs["part_mask"])[0]
            space.parts = _index.build_index(present)
            faiss.write_index(space.parts, os.fspath(run.index_file("parts")))


def _load(run: RunLayout, space: Space) -> None:
    """Read the indexes of ``RUN/index/`` into ``space``."""
    if space.n <= _index.EXACT_MAX:
        return
    faiss = _index._faiss()
    space.wholes = faiss.read_index(os.fspath(run.index_file("wholes")))
    if run.index_file("parts").is_file():
        space.parts = faiss.read_index(os.fspath(run.index_file("parts")))
        space.part_owner = np.nonzero(space.inputs["part_mask"])[0]


def _random_state(run: RunLayout) -> int | None:
    """The ``random_state`` stage 04 used (its whitening is fitted with it), default 0."""
    stamp = storage.read_stamp(run.cluster_state) or {}
    return stamp.get("key", stamp).get("random_state", 0)


def run_whitener(
    run_dir: str | os.PathLike[str] | RunLayout,
    features: dict[str, Any],
    *,
    random_state: int | None = 0,
    keep: bool = True,
) -> Whitener | None:
    """The run's whitening: kept in ``RUN/index/whitening.npz`` by stage 04.

    With ``keep`` and a stored whitening fitted with the same settings and seed, that one
    (images added to the run later do not move it); otherwise it is fitted on ``features``
    (:func:`lookalike.similarity.fused_whitener`) and stored. None when the preset does not
    whiten.
    """
    run = RunLayout(run_dir)
    if int(features["settings"].get("whiten", 0)) <= 0:
        return None
    key = {"settings": features["settings"], "random_state": random_state}
    if keep and storage.is_current(run.whitening_state, key, outputs=[run.whitening]):
        return Whitener.load(run.whitening)
    storage.clear_stamp(run.whitening_state)
    whitener = fused_whitener(features, random_state=random_state)
    whitener.save(run.whitening)
    storage.write_stamp(run.whitening_state, key)
    return whitener


def _whitener(run: RunLayout, features: dict[str, Any], seed: int | None) -> Whitener | None:
    """Stage 04's whitening when 04 is current with these embeddings, else a fresh fit."""
    stamp = storage.read_stamp(run.cluster_state) or {}
    done = stamp.get("key", {}).get("vectors_sha256") == storage.sha256_file(run.vectors)
    if done:
        return run_whitener(run, features, random_state=seed, keep=True)
    return fused_whitener(features, random_state=seed)


def open_space(run_dir: str | os.PathLike[str] | RunLayout, *, verbose: bool = True) -> Space:
    """The similarity space of a run, from ``RUN/index/`` when it is current, else built
    (and written there) from ``RUN/embeddings/``.

    The whitening is fitted exactly as stage 04 fits it (same inputs, same ``random_state``),
    so similarities here equal those of ``RUN/neighbors.parquet``. A space opened once is
    kept for the life of the process (a notebook's second query costs no reading).
    """
    run = RunLayout(run_dir)
    t0 = time.perf_counter()
    seed = _random_state(run)
    key = _key(run, seed)
    memo = storage.fingerprint([str(run.root), key])
    if memo in _OPEN:
        return _OPEN[memo]
    features = load_features(run)
    ids = features["ids"]["image_id"].astype(str).tolist()
    files = [run.calibration] + ([run.index_file("wholes")] if len(ids) > _index.EXACT_MAX else [])
    current = storage.is_current(run.index_state, key, outputs=files)
    whiten_on = int(features["settings"].get("whiten", 0)) > 0
    whitener = _whitener(run, features, seed) if whiten_on else None
    if not current:
        storage.clear_stamp(run.index_state)
    inputs = fused_inputs(features, whitener=whitener or _NO_WHITENING)
    calibration = np.load(run.calibration) if current else calibration_sample(inputs)
    space = Space(ids, features["settings"], inputs, whitener, calibration)
    if current:
        _load(run, space)
    else:
        _build(run, space)
        storage.write_stamp(run.index_state, key)
    _OPEN[memo] = space
    if verbose:
        how = "read" if current else "built"
        print(f"space: {space.n} images, {how} in {time.perf_counter() - t0:.1f} s")
    return space
