"""Choosing k: the clear knee of the inertia curve (Kneedle), else the best silhouette.

:func:`choose_k` gives the k to inspect with the rule that chose it, and lets a ``k``
parameter override it. A knee counts only when it is clear: its Kneedle strength
(:func:`knee_strength`) is at least :data:`KNEE_MIN_STRENGTH`; a straight or gently bent
curve has none, and :attr:`KChoice.knee_note` says so. The metrics table is
``RUN/metrics.csv``, written by stage 04 (:func:`lookalike.cluster.kmeans_sweep`): one row
per method and k.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .exceptions import ConfigError

__all__ = [
    "KNEE_MIN_STRENGTH",
    "KChoice",
    "choose_k",
    "default_method",
    "find_knee",
    "knee_strength",
    "method_rows",
    "recommend_k",
    "space_label",
]

#: Smallest Kneedle strength (:func:`knee_strength`, 0..1) of a clear knee. Measured
#: (k sweeps of 2..12 and the default sweep, kneed 0.9.0): curves with a real knee scored
#: 0.60 (tests' KNEE curve) to 0.94 (two straight pieces on the default sweep), KMeans
#: inertia of 5, 20 and 100 separated blobs 0.69-0.86; curves without one scored 0.00
#: (straight line), 0.01 (noisy line), 0.16-0.50 (KMeans of Gaussian noise, 8-50 dims),
#: and the demo runs 0.25-0.36 (their knees moved with the sweep). 0.55 is half way
#: between the highest without a knee and the lowest with one.
KNEE_MIN_STRENGTH = 0.55


def knee_strength(
    k_values: Sequence[int], inertia: Sequence[float]
) -> tuple[int | None, float | None]:
    """Kneedle's knee of a decreasing, convex inertia curve and how strong it is.

    Uses ``kneed.KneeLocator(curve="convex", direction="decreasing")`` on the points sorted by
    k (NaN points are dropped); fewer than 3 points never have a knee.

    Returns
    -------
    knee : int or None
        Kneedle's knee (None: none at all, e.g. a straight line).
    strength : float or None
        Kneedle's difference curve at the knee, 0..1: with k and inertia each scaled to
        0..1, how far the curve bends below the straight line from its first to its last
        point (0: straight, 1: a right angle). None when there is no knee.
    """
    from kneed import KneeLocator

    k = np.asarray(k_values, dtype=float)
    y = np.asarray(inertia, dtype=float)
    if k.shape != y.shape:
        raise ValueError(f"k_values {k.shape} and inertia {y.shape} differ in length")
    keep = np.isfinite(k) & np.isfinite(y)
    k, y = k[keep], y[keep]
    order = np.argsort(k)
    k, y = k[order], y[order]
    if len(np.unique(k)) < 3:
        return None, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kneed warns when there is no knee; None says it
        kl = KneeLocator(k, y, curve="convex", direction="decreasing")
    if kl.knee is None:
        return None, None
    at = int(np.argmin(np.abs(np.asarray(kl.x, dtype=float) - float(kl.knee))))
    return int(round(float(kl.knee))), float(kl.y_difference[at])


def find_knee(
    k_values: Sequence[int],
    inertia: Sequence[float],
    *,
    min_strength: float = KNEE_MIN_STRENGTH,
) -> int | None:
    """The clear elbow of a decreasing, convex inertia curve, or None if there is none.

    Parameters
    ----------
    k_values, inertia : sequences of the same length
        See :func:`knee_strength`.
    min_strength : float, default :data:`KNEE_MIN_STRENGTH`
        A knee weaker than this is no knee (0 keeps every knee Kneedle finds).
    """
    knee, strength = knee_strength(k_values, inertia)
    if knee is None or strength < min_strength:
        return None
    return knee


#: How the spaces of ``silhouette_space`` (RUN/metrics.csv) are named in 05's text and plots.
SPACE_LABELS = {"pca": "PCA space", "fused similarity": "1 - fused similarity"}


def space_label(space: str) -> str:
    """``"PCA space"`` for ``"pca"``, ``"1 - fused similarity"`` for ``"fused similarity"``."""
    return SPACE_LABELS.get(space, space)


def method_rows(metrics: pd.DataFrame, method: str = "kmeans") -> pd.DataFrame:
    """The rows of ``method`` in a metrics table, sorted by k.

    Raises :class:`ConfigError` naming the methods the table has when ``method`` is not
    among them, or when the table is empty.
    """
    if "method" in metrics.columns:
        have = sorted(metrics["method"].dropna().unique().tolist())
        if method not in have:
            raise ConfigError(
                f"metrics has no {method!r} rows (methods: {have}); run 04_pca_kmeans "
                f"(cluster_run) first, with agglomerative on for method 'agglomerative'"
            )
        metrics = metrics[metrics["method"] == method]
    if metrics.empty:
        raise ConfigError("metrics has no rows; run 04_pca_kmeans (cluster_run) first")
    return metrics.sort_values("k")


def recommend_k(
    metrics: pd.DataFrame, *, method: str = "kmeans", min_strength: float = KNEE_MIN_STRENGTH
) -> tuple[int, str]:
    """Suggest a k from a metrics table (:func:`lookalike.cluster.kmeans_sweep`).

    Parameters
    ----------
    metrics : DataFrame, ``RUN/metrics.csv``
    method : str, default "kmeans"
    min_strength : float, default :data:`KNEE_MIN_STRENGTH`
        See :func:`find_knee`.

    Returns
    -------
    k : int
    rule : str
        Which rule chose it: the clear knee of the inertia curve when there is one, else
        the highest silhouette (naming the space it was computed in), else the smallest k.
    """
    m = method_rows(metrics, method)
    knee = find_knee(m["k"].tolist(), m["inertia"].tolist(), min_strength=min_strength)
    if knee is not None:
        return knee, f"knee of the {method} inertia curve at k={knee}, found by Kneedle (kneed)"
    if m["silhouette"].notna().any():
        best = m.loc[m["silhouette"].idxmax()]
        k = int(best["k"])
        space = best.get("silhouette_space")
        where = f", in {space_label(space)}" if isinstance(space, str) else ""
        return k, (
            f"highest {method} silhouette ({best['silhouette']:.3f}{where}) at k={k}; "
            f"the inertia curve has no clear knee"
        )
    k = int(m["k"].min())
    return k, f"smallest k={k}: no clear knee and no silhouette scores"


def default_method(metrics: pd.DataFrame) -> str:
    """The clustering to inspect by default: ``similarity`` when the run has it (the
    ``logos`` preset, measured best on logo sets), else ``kmeans``."""
    have = set(metrics["method"].unique()) if "method" in metrics.columns else {"kmeans"}
    return "similarity" if "similarity" in have else "kmeans"


@dataclass(frozen=True)
class KChoice:
    """The k to inspect and why (see :func:`choose_k`)."""

    k: int
    recommended: int
    rule: str
    knee: int | None
    method: str
    overridden: bool
    #: Kneedle's knee, clear or weak, and its strength (:func:`knee_strength`)
    kneedle_k: int | None = None
    knee_strength: float | None = None
    min_strength: float = KNEE_MIN_STRENGTH

    @property
    def weak_knee(self) -> bool:
        """True when the inertia curve has no clear knee (so k came from another rule)."""
        return self.knee is None

    @property
    def knee_note(self) -> str | None:
        """One line on a missing or weak knee and the rule used instead; None for a clear one."""
        if not self.weak_knee:
            return None
        if self.kneedle_k is None:
            why = "Kneedle finds no knee at all"
        else:
            why = (
                f"Kneedle's best knee, k={self.kneedle_k}, has strength "
                f"{self.knee_strength:.2f} < {self.min_strength:.2f}"
            )
        rule = self.rule.split(";")[0]
        return f"no clear knee in the {self.method} inertia curve ({why}); instead: {rule}"

    def __str__(self) -> str:
        txt = f"{self.method}: recommended k = {self.recommended} ({self.rule})"
        if self.overridden:
            return txt + f"; inspecting k = {self.k}, set by the k parameter"
        return txt + f"; inspecting k = {self.k}"


def choose_k(
    metrics: pd.DataFrame,
    k: int | None = None,
    *,
    method: str = "kmeans",
    min_strength: float = KNEE_MIN_STRENGTH,
) -> KChoice:
    """The recommended k (:func:`recommend_k`), unless ``k`` overrides it.

    ``knee`` of the result is the clear knee or None; ``kneedle_k`` and ``knee_strength``
    the knee Kneedle found, however weak, and ``knee_note`` the line to print when it is
    not clear (``min_strength``: see :func:`find_knee`).

    Raises :class:`ConfigError` if ``k`` is not among the k values of ``method``.
    """
    m = method_rows(metrics, method)
    rec, rule = recommend_k(metrics, method=method, min_strength=min_strength)
    raw, strength = knee_strength(m["k"].tolist(), m["inertia"].tolist())
    knee = raw if raw is not None and strength >= min_strength else None
    have = sorted(int(x) for x in m["k"])
    found = {"kneedle_k": raw, "knee_strength": strength, "min_strength": min_strength}
    if k is None:
        return KChoice(rec, rec, rule, knee, method, overridden=False, **found)
    if int(k) not in have:
        raise ConfigError(
            f"k={k} was not clustered with {method}; available k: {have} "
            f"(add it to k_values and re-run 04_pca_kmeans)"
        )
    return KChoice(int(k), rec, rule, knee, method, overridden=int(k) != rec, **found)
