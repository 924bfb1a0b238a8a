"""Logo-aware similarity: the presets, and the fused similarity of wholes, parts and colour.

Global CNN features fail on logos: the favicon of a brand (the icon alone) and its full lockup
(icon plus wordmark) share almost no pixels at the same place. The ``logos`` preset compares
images the way a logo researcher would, in four plain steps:

1. **Whole and parts.** Stage 03 embeds every image cropped to its artwork (``trim``) with
   VGG16 cut at ``block4_pool`` and GeM pooling (:func:`lookalike.embed.embed_run`). For a
   wide or tall lockup (aspect >= ``part_min_aspect``) it also embeds the square at each end
   of the crop, at ``part_size`` px: that is where the icon of a lockup sits
   (:func:`lookalike.preprocess.part_inputs`, :func:`lookalike.extras.embed_extras`).
2. **Colour signature** (:func:`lookalike.preprocess.colour_signature`): the colour histogram
   of the chromatic artwork pixels, because brand colours are the other half of a logo's
   identity.
3. **Fused similarity** (:func:`similarity_matrix`, :func:`lookalike.neighbors.nearest_neighbors`).
   Vectors are PCA-whitened on the run's own images (:func:`whiten`); two images are as
   similar as their best-matching pair of (whole, whole), (whole, part) or (part, whole), so
   an icon finds the lockup that contains it. Each slot's vector carries its shape signature
   too (:func:`lookalike.preprocess.shape_signatures`, HOG, whitened on its own), so a slot
   pair's cosine is ``(1 - shape_weight) * cnn + shape_weight * shape``: the same symbol
   filled or outlined, in another colour or polarity, still meets itself. That cosine is
   blended with the colour signatures' overlap.
4. **Clustering** (:func:`lookalike.cluster.similarity_clusters`): average-linkage
   agglomerative clustering on ``1 - similarity``, beside KMeans on PCA.

The ``photos`` preset is the plain default embedding (block5_pool, max pooling, on white),
compared by cosine and clustered with KMeans: no logo-specific step touches product photos.
:data:`PRESETS` names both; :func:`resolve_preset` applies a user's overrides to one of them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from . import storage
from .exceptions import ConfigError, ImageError, ManifestError
from .neighbors import (
    block_rows,
    check_features,
    l2_normalize,
    similarity_rows,
)
from .paths import RunLayout
from .reduce import TRANSFORM_ROWS, fit_rows

#: Measured defaults per kind of image (see the README, "How well does it work").
#:
#: Embedding keys (passed to :func:`lookalike.embed.embed_images`): ``layer``, ``pooling``,
#: ``image_size`` (px), ``background``, ``fit``, ``trim`` (crop to the artwork first).
#: Part keys: ``parts`` (embed the end squares of lockups), ``part_size`` (px),
#: ``part_min_aspect`` (long/short side ratio from which an image has parts), ``negatives``
#: (embed the luminance negative of light-on-dark artwork as one more part, at ``part_size``).
#: Similarity keys: ``whiten`` (PCA-whitening dimensions, 0 = off), ``colour_weight`` (share
#: of the colour signature in the fused similarity, 0 = CNN only), ``shape_weight`` (share of
#: the shape signature, HOG, in each compared pair of whole and parts), ``colour_bins`` (levels per
#: RGB channel of the colour histogram), ``cluster_method`` (``"similarity"`` = also cluster
#: with average linkage on the fused similarity; ``"kmeans"`` = KMeans and agglomerative on
#: PCA only).
PRESETS: dict[str, dict[str, Any]] = {
    "logos": {
        "layer": "block4_pool",
        "pooling": "gem",
        # Most logos are 16-256 px: 160 groups them as well as 224 on every labelled set
        # (within 0.01; 128 is not) for half the convolutions (docs/benchmarks.md).
        "image_size": 160,
        "background": "auto",
        "fit": "pad",
        "trim": True,
        "parts": True,
        "part_size": 160,
        "part_min_aspect": 1.5,
        # White-on-black artwork also embedded as its negative: +0.05 P@1 on the dark-mode
        # set, no set worse (docs/benchmarks.md, "Dark-mode variants and drawing styles").
        "negatives": True,
        "whiten": 128,
        "colour_weight": 0.1,
        # Gradient orientations beside the CNN, slot by slot: the same symbol drawn filled or
        # outlined, in another colour or polarity, meets itself. +0.075 P@1 on emoji, no set
        # worse (docs/benchmarks.md, "The shape signature, slot by slot").
        "shape_weight": 0.3,
        "colour_bins": 8,
        "cluster_method": "similarity",
    },
    "photos": {
        "layer": "block5_pool",
        "pooling": "max",
        "image_size": 224,
        "background": "white",
        "fit": "pad",
        "trim": False,
        "parts": False,
        "part_size": 160,
        "part_min_aspect": 1.5,
        "negatives": False,
        "whiten": 0,
        "colour_weight": 0.0,
        "shape_weight": 0.0,
        "colour_bins": 8,
        "cluster_method": "kmeans",
    },
}

#: Keys of a preset that are parameters of :func:`lookalike.embed.embed_images`.
EMBED_KEYS = ("layer", "pooling", "image_size", "background", "fit", "trim")


def resolve_preset(
    name: str = "logos",
    *,
    run_dir: str | os.PathLike[str] | RunLayout | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """The settings of preset ``name`` with ``overrides`` applied.

    Parameters
    ----------
    name : {"logos", "photos", "auto"}, default "logos"
        ``"auto"``: :func:`choose_preset` on ``run_dir``.
    run_dir : str or Path, optional
        Needed for ``"auto"``.
    **overrides
        Any key of the preset (see :data:`PRESETS`); ``None`` values are ignored, so a notebook
        can pass its parameters straight through.

    Returns
    -------
    dict
        A new dict with every key of :data:`PRESETS` plus ``preset`` (the resolved name).

    Raises
    ------
    ConfigError
        For an unknown preset or key, or an out-of-range value.
    """
    if name == "auto":
        if run_dir is None:
            raise ConfigError("preset='auto' needs the run folder to look at its images")
        name, _ = choose_preset(run_dir)
    if name not in PRESETS:
        raise ConfigError(f"preset={name!r} is not known; use one of {sorted(PRESETS)} or auto")
    params = dict(PRESETS[name])
    for key, value in overrides.items():
        if key not in params:
            raise ConfigError(
                f"{key!r} is not a parameter of preset {name!r}; use one of {sorted(params)}"
            )
        if value is not None:
            params[key] = value
    for key in ("colour_weight", "shape_weight"):
        if not 0.0 <= float(params[key]) <= 1.0:
            raise ConfigError(f"{key}={params[key]!r} must be within 0..1")
    if int(params["whiten"]) < 0:
        raise ConfigError(f"whiten={params['whiten']!r} must be >= 0 (0 turns it off)")
    if float(params["part_min_aspect"]) < 1.0:
        raise ConfigError(f"part_min_aspect={params['part_min_aspect']!r} must be >= 1")
    if params["cluster_method"] not in ("similarity", "kmeans"):
        raise ConfigError(
            f"cluster_method={params['cluster_method']!r} must be 'similarity' or 'kmeans'"
        )
    params["preset"] = name
    return params


#: ``auto``: images of a run's manifest that :func:`choose_preset` looks at (a seeded sample).
AUTO_SAMPLE = 100


def choose_preset(
    run_dir: str | os.PathLike[str] | RunLayout, *, sample: int = AUTO_SAMPLE, seed: int = 0
) -> tuple[str, str]:
    """The preset ``auto`` means for a run, and why.

    ``logos`` when most images came from stage 02 (``source == "logos"``); otherwise when
    most of a seeded sample of ``sample`` readable images look like logos
    (:func:`lookalike.preprocess.logo_traits`: transparency, or a flat ground with few
    colours); else ``photos``. Images that cannot be read are left out of the count.

    Returns
    -------
    (name, reason): e.g. ``("logos", "93 of 100 sampled images look like logos ...")``.
    """
    from .preprocess import logo_traits

    run = RunLayout(run_dir)
    manifest = storage.read_manifest(run, ok_only=True)
    if manifest.empty:
        return "photos", "the run has no images yet"
    from_02 = float((manifest["source"].astype(str) == "logos").mean())
    if from_02 > 0.5:
        return "logos", f"{from_02:.0%} of the images came from notebook 02 (logos)"
    rows = manifest.sample(n=min(sample, len(manifest)), random_state=seed)
    traits = []
    for path in rows["path"].astype(str):
        try:
            traits.append(logo_traits(run.image_path(path)))
        except (ImageError, OSError):  # a bad image says nothing about the folder
            continue
    if not traits:
        return "photos", "none of the sampled images could be read"
    logos = sum(t["logo"] for t in traits)
    clear = sum(t["transparent"] for t in traits)
    flat = logos - clear  # transparent images count as logos
    name = "logos" if logos > len(traits) / 2 else "photos"
    reason = (
        f"{logos} of {len(traits)} sampled images look like logos ({clear} with transparency, "
        f"{flat} with a flat ground and few colours)"
    )
    return name, reason


def embed_kwargs(settings: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of :func:`lookalike.embed.embed_images` that ``settings`` sets."""
    return {k: settings[k] for k in EMBED_KEYS}


def read_settings(run_dir: str | os.PathLike[str] | RunLayout) -> dict[str, Any] | None:
    """The similarity settings stage 03 recorded (``RUN/embeddings/similarity.json``), or None."""
    stamp = storage.read_stamp(RunLayout(run_dir).similarity_state)
    if stamp is None:
        return None
    settings = stamp.get("key", stamp).get("settings")  # a stamp, or the older plain record
    return settings if isinstance(settings, dict) else None


def load_features(run_dir: str | os.PathLike[str] | RunLayout) -> dict[str, Any]:
    """Everything the fused similarity of a run needs, as stage 03 left it.

    Returns
    -------
    dict with ``ids`` (DataFrame of ``RUN/embeddings/ids.parquet``), ``vectors`` (n, d),
    ``parts`` (n, 3, d') or None, ``part_mask`` (n, 3) or None, ``colour`` (n, c) or None,
    ``shape`` (n, 3, SHAPE_DIM) uint8 or None, and ``settings`` (the recorded settings; the
    ``photos`` preset's when none were recorded).
    ``vectors``, ``parts``, ``colour`` and ``shape`` are read-only memory maps of the files.
    """
    run = RunLayout(run_dir)
    ids, vectors = storage.read_embeddings(run)
    settings = read_settings(run) or resolve_preset("photos")
    out: dict[str, Any] = {
        "ids": ids,
        "vectors": np.asarray(vectors, dtype=np.float32),
        "parts": None,
        "part_mask": None,
        "colour": None,
        "shape": None,
        "settings": settings,
    }
    if run.parts.is_file() and run.similarity_state.is_file():
        parts = np.load(run.parts, mmap_mode="r")  # read where needed: 4 GB at 1,000,000
        if len(parts) != len(ids):
            raise ManifestError(
                f"{run.parts} has {len(parts)} rows for {len(ids)} vectors; re-run 03"
            )
        out["parts"] = parts
        out["part_mask"] = np.load(run.part_mask)
        out["colour"] = np.load(run.colour, mmap_mode="r")
        if run.shape.is_file():  # runs embedded before shape signatures have none
            out["shape"] = np.load(run.shape, mmap_mode="r")
    return out


def fused_inputs(
    features: dict[str, Any],
    *,
    random_state: int | None = 0,
    whitener: Whitener | None = None,
) -> dict[str, Any]:
    """Whitened vectors and parts plus colour: ``similarity_matrix(**fused_inputs(f))``.

    The keys are the arguments of :func:`similarity_matrix` and
    :func:`lookalike.neighbors.nearest_neighbors` (with ``normalize=False``).

    Parts of a different width than the wholes (another ``part_size`` at a flatten pooling)
    cannot be compared and are dropped. ``whitener`` (from :func:`fit_whitener` on a run's
    own features) puts other images, such as the queries of :mod:`lookalike.find`, in that
    run's space; by default the whitening is fitted on ``features``.
    """
    s = features["settings"]
    vectors, parts, mask = _comparable(features)
    if int(s.get("whiten", 0)) > 0:
        if whitener is None:
            whitener = fused_whitener(features, random_state=random_state)
        vectors, parts = whitener.transform(vectors, parts, mask)
    else:
        vectors = l2_normalize(vectors)
    shape_weight = float(s.get("shape_weight", 0.0))
    shape = features.get("shape") if shape_weight > 0 else None
    if shape is not None:
        shaper = whitener.shape if whitener is not None else None
        vectors, parts = _with_shape(
            vectors, parts, mask, shape, shaper or _UNIT_ROWS, shape_weight
        )
    weight = float(s.get("colour_weight", 0.0))
    colour = features["colour"] if weight > 0 else None
    return {
        "vectors": vectors,
        "parts": parts,
        "part_mask": mask,
        "colour": colour,
        "colour_weight": weight if colour is not None else 0.0,
    }


def _with_shape(
    vectors: np.ndarray,
    parts: np.ndarray | None,
    mask: np.ndarray | None,
    shape: np.ndarray,
    shaper: Whitener,
    weight: float,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Each slot's unit vector followed by its shape signature's, scaled so that the cosine
    of two slots is ``(1 - weight) * cnn + weight * shape``.

    ``shape`` (n, 3, SHAPE_DIM): the whole, then the end squares. The negative slot takes the
    whole's signature: gradient orientation ignores polarity.
    """
    ends = None if mask is None else mask[:, :2]
    hw, hp = shaper.transform(shape[:, 0], None if parts is None else shape[:, 1:], ends)
    a, b = np.float32(np.sqrt(1.0 - weight)), np.float32(np.sqrt(weight))
    wholes = np.concatenate([a * vectors, b * hw], axis=1)
    if parts is None:
        return wholes, None
    slots = np.concatenate([hp, hw[:, None, :]], axis=1)[:, : parts.shape[1]]
    return wholes, np.concatenate([a * parts, b * slots], axis=2)


def _comparable(features: dict[str, Any]) -> tuple[np.ndarray, Any, Any]:
    """Wholes, and the parts with their mask (None when absent or of another width)."""
    vectors, parts, mask = features["vectors"], features["parts"], features["part_mask"]
    if parts is not None and (parts.shape[-1] != vectors.shape[1] or not mask.any()):
        parts, mask = None, None
    return vectors, parts, mask


def fused_whitener(features: dict[str, Any], *, random_state: int | None = 0) -> Whitener | None:
    """The whitening :func:`fused_inputs` fits on ``features`` (with the shape signatures' own,
    :attr:`Whitener.shape`, when the settings weigh them), or None when the run's settings
    turn whitening off."""
    s = features["settings"]
    if int(s.get("whiten", 0)) <= 0:
        return None
    n_components = int(s["whiten"])
    vectors, parts, mask = _comparable(features)
    w = fit_whitener(vectors, parts, mask, n_components=n_components, random_state=random_state)
    shape = features.get("shape")
    if shape is None or not float(s.get("shape_weight", 0.0)) > 0:
        return w
    shaper = fit_whitener(
        shape[:, 0],
        None if parts is None else shape[:, 1:],
        None if mask is None else mask[:, :2],
        n_components=n_components,
        random_state=random_state,
        unit_rows=True,
    )
    return replace(w, shape=shaper)


# -- similarity ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Whitener:
    """A fitted PCA whitening: ``unit((x - mean) @ components.T * scale)``.

    Attributes
    ----------
    mean : ndarray (d,)
    components : ndarray (k, d)
    scale : ndarray (k,), one over the square root of each component's variance.
        All three are None for fewer than 2 components: then it only L2-normalises.
    unit_rows : bool, default False
        L2-normalise each input row first (the uint8 shape signatures; CNN vectors are
        stored unit already).
    shape : Whitener, optional
        The shape signatures' own whitening (:func:`fused_whitener`).
    """

    mean: np.ndarray | None
    components: np.ndarray | None
    scale: np.ndarray | None
    unit_rows: bool = False
    shape: Whitener | None = None

    def transform(
        self,
        vectors: np.ndarray,
        parts: np.ndarray | None = None,
        part_mask: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Whitened unit wholes (n, k) and parts (n, m, k) (absent parts stay zero).

        Reads ``TRANSFORM_ROWS`` rows at a time, so a memory map (the uint8 shape signatures
        of a million images, say) is never copied whole as float32.
        """

        def unit(x: np.ndarray) -> np.ndarray:
            x = np.asarray(x, dtype=np.float32)
            return l2_normalize(x) if self.unit_rows else x

        if self.components is None:
            if not self.unit_rows or parts is None or part_mask is None:
                return l2_normalize(unit(vectors)), parts
            unit_parts = np.zeros(parts.shape, dtype=np.float32)
            unit_parts[part_mask] = unit(np.asarray(parts)[part_mask])
            return unit(vectors), unit_parts

        def t(x: np.ndarray) -> np.ndarray:
            return l2_normalize((unit(x) - self.mean) @ self.components.T * self.scale)

        k, step = self.components.shape[0], TRANSFORM_ROWS  # blocks: bounded temporaries
        wholes = np.empty((len(vectors), k), dtype=np.float32)
        w_parts = None if parts is None else np.zeros((*parts.shape[:2], k), dtype=np.float32)
        has_parts = parts is not None and part_mask is not None and part_mask.any()
        for s in range(0, len(vectors), step):
            wholes[s : s + step] = t(vectors[s : s + step])
            if has_parts and part_mask[s : s + step].any():
                w_parts[s : s + step][part_mask[s : s + step]] = t(
                    np.asarray(parts[s : s + step])[part_mask[s : s + step]]
                )
        storage.drop_pages(vectors)  # memory maps of stage 03's files: one pass, not kept
        storage.drop_pages(parts)
        return wholes, w_parts

    def _arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        out = {} if self.components is None else {
            "mean": self.mean, "components": self.components, "scale": self.scale
        }  # fmt: skip
        if self.unit_rows:
            out["unit_rows"] = np.asarray(True)
        if self.shape is not None:
            out.update(self.shape._arrays("shape_"))
        return {prefix + k: v for k, v in out.items()}

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the whitening to ``path`` (``.npz``), atomically."""
        with storage.atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **self._arrays())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Whitener:
        """The whitening :meth:`save` wrote."""
        with np.load(path) as z:
            return cls._from({k: z[k] for k in z.files})

    @classmethod
    def _from(cls, z: dict[str, np.ndarray], prefix: str = "") -> Whitener:
        shape = None
        if any(k.startswith(prefix + "shape_") for k in z):
            shape = cls._from(z, prefix + "shape_")
        unit_rows = bool(z.get(prefix + "unit_rows", False))
        if prefix + "components" not in z:
            return cls(None, None, None, unit_rows, shape)
        arrays = (z[prefix + k] for k in ("mean", "components", "scale"))
        return cls(*arrays, unit_rows, shape)


#: No whitening, only unit rows: the shape signatures of a run that does not whiten.
_UNIT_ROWS = Whitener(None, None, None, unit_rows=True)


def fit_whitener(
    vectors: np.ndarray,
    parts: np.ndarray | None = None,
    part_mask: np.ndarray | None = None,
    *,
    n_components: int = 128,
    random_state: int | None = 0,
    unit_rows: bool = False,
) -> Whitener:
    """Fit the PCA whitening of :func:`whiten` on wholes and present parts together.

    Parameters
    ----------
    vectors : ndarray (n, d)
    parts : ndarray (n, m, d), optional
    part_mask : ndarray (n, m) bool, optional
    n_components : int, default 128
        Clipped to the number of vectors minus one and to ``d``.
    random_state : int or None, default 0
        Seed of the PCA and, above :data:`lookalike.reduce.FIT_ROWS` images, of the sample of
        images (with their parts) it is fitted on.
    unit_rows : bool, default False
        L2-normalise the rows first, here and in the :class:`Whitener`'s transform.
    """
    from sklearn.decomposition import PCA

    rows = fit_rows(len(vectors), random_state=random_state)
    if rows is not None:  # a seeded sample of the images, with their parts
        vectors = vectors[rows]
        parts, part_mask = (None, None) if parts is None else (parts[rows], part_mask[rows])
    fit_on = np.asarray(vectors, dtype=np.float32)
    if parts is not None and part_mask is not None and part_mask.any():
        fit_on = np.concatenate([fit_on, np.asarray(parts[part_mask], dtype=np.float32)])
    if unit_rows:
        fit_on = l2_normalize(fit_on)
    k = int(min(n_components, fit_on.shape[0] - 1, fit_on.shape[1]))
    if k < 2:
        return Whitener(None, None, None, unit_rows)
    pca = PCA(n_components=k, random_state=random_state).fit(fit_on)
    scale = 1.0 / np.sqrt(np.maximum(pca.explained_variance_, 1e-12))
    return Whitener(pca.mean_, pca.components_, scale, unit_rows)  # sklearn's dtypes


def whiten(
    vectors: np.ndarray,
    parts: np.ndarray | None = None,
    part_mask: np.ndarray | None = None,
    *,
    n_components: int = 128,
    random_state: int | None = 0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """PCA-whiten wholes and parts together, then L2-normalise.

    Whitening on the run's own images gives every direction of variation equal weight, so
    features every logo shares (white space, black text strokes) stop dominating the cosine.
    :func:`fit_whitener`, then :meth:`Whitener.transform`.

    Parameters
    ----------
    vectors : ndarray (n, d)
    parts : ndarray (n, m, d), optional
    part_mask : ndarray (n, m) bool, optional
    n_components : int, default 128
        Clipped to the number of vectors minus one and to ``d``.

    Returns
    -------
    vectors : ndarray (n, k) float32
    parts : ndarray (n, m, k) float32, or None (absent parts stay zero)
    """
    w = fit_whitener(
        vectors, parts, part_mask, n_components=n_components, random_state=random_state
    )
    return w.transform(vectors, parts, part_mask)


def similarity_matrix(
    vectors: np.ndarray,
    parts: np.ndarray | None = None,
    part_mask: np.ndarray | None = None,
    colour: np.ndarray | None = None,
    *,
    colour_weight: float = 0.3,
) -> np.ndarray:
    """Fused similarity of every pair of images.

    ``S[i, j] = (1 - colour_weight) * cnn[i, j] + colour_weight * colour[i] . colour[j]``,
    where ``cnn[i, j]`` is the largest cosine among (whole_i, whole_j), (whole_i, part of j)
    and (part of i, whole_j).

    Parameters
    ----------
    vectors : ndarray (n, d)
        L2-normalised (and usually :func:`whiten`-ed) whole vectors.
    parts : ndarray (n, m, d), optional
    part_mask : ndarray (n, m) bool, optional
        Default: every part present.
    colour : ndarray (n, c), optional
        :func:`lookalike.preprocess.colour_signature` rows. Ignored when ``colour_weight`` is 0.
    colour_weight : float, default 0.3

    Returns
    -------
    ndarray (n, n) float32, symmetric, roughly -1..1 (1 on the diagonal).
    """
    vectors, parts, part_mask, colour = check_features(vectors, parts, part_mask, colour)
    n = vectors.shape[0]
    m = 0 if parts is None else parts.shape[1]
    step = block_rows(n, m)
    out = np.empty((n, n), dtype=np.float32)
    for s in range(0, n, step):
        rows = slice(s, min(n, s + step))
        out[rows] = similarity_rows(rows, vectors, parts, part_mask, colour, colour_weight)
    return out


#: ``silhouette_space`` of a silhouette computed on :func:`sample_distances`.
FUSED_SPACE = "fused similarity"


def sample_distances(
    inputs: dict[str, Any], rows: np.ndarray, *, similarity: np.ndarray | None = None
) -> np.ndarray:
    """``1 - `` the fused similarity between the images ``rows``, clipped at 0.

    The distance of the ``similarity`` clustering, for its silhouette
    (:func:`lookalike.kmeans.cluster_scores` with ``silhouette_distances``).

    Parameters
    ----------
    inputs : dict
        :func:`fused_inputs` of every image of the run.
    rows : int ndarray (m,)
        The images to compare, e.g. :func:`lookalike.kmeans.silhouette_rows`; memory is
        4 m^2 bytes (400 MB at m = 10,000), so keep m bounded.
    similarity : ndarray (n, n), optional
        :func:`similarity_matrix` of ``inputs`` when it is already computed: its ``rows``
        are taken instead of computing them again.

    Returns
    -------
    ndarray (m, m) float32, 0..2, 0 on the diagonal.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if similarity is not None:
        D = np.asarray(similarity, dtype=np.float32)[np.ix_(rows, rows)]
    else:
        sub = {k: v[rows] if isinstance(v, np.ndarray) else v for k, v in inputs.items()}
        D = similarity_matrix(**sub)
    np.subtract(1.0, D, out=D)  # in place: the matrix is the largest array here
    np.clip(D, 0.0, None, out=D)  # rounding leaves tiny negatives; silhouette needs >= 0
    np.fill_diagonal(D, 0.0)  # sklearn's precomputed silhouette rejects a non-zero diagonal
    return D
