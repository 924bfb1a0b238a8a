"""Choosing k: the knee of the inertia curve (Kneedle), else the best silhouette.

:func:`choose_k` gives the k to inspect with the rule that chose it, and lets a ``k``
parameter override it. The metrics table is ``RUN/metrics.csv``, written by stage 04
(:func:`lookalike.cluster.kmeans_sweep`): one row per method and k.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .exceptions import ConfigError

__all__ = ["KChoice", "choose_k", "default_method", "find_knee", "method_rows", "recommend_k"]


def find_knee(k_values: Sequence[int], inertia: Sequence[float]) -> int | None:
    """The elbow of a decreasing, convex inertia curve, or None if there is none.

    Uses ``kneed.KneeLocator(curve="convex", direction="decreasing")`` on the points sorted by
    k (NaN points are dropped); fewer than 3 points never have a knee.
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
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kneed warns when there is no knee; None says it
        knee = KneeLocator(k, y, curve="convex", direction="decreasing").knee
    return None if knee is None else int(round(float(knee)))


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


def recommend_k(metrics: pd.DataFrame, *, method: str = "kmeans") -> tuple[int, str]:
    """Suggest a k from a metrics table (:func:`lookalike.cluster.kmeans_sweep`).

    Returns
    -------
    k : int
    rule : str
        Which rule chose it: the knee of the inertia curve when there is one, else the
        highest silhouette, else the smallest k.
    """
    m = method_rows(metrics, method)
    knee = find_knee(m["k"].tolist(), m["inertia"].tolist())
    if knee is not None:
        return knee, f"knee of the {method} inertia curve at k={knee}, found by Kneedle (kneed)"
    if m["silhouette"].notna().any():
        best = m.loc[m["silhouette"].idxmax()]
        k = int(best["k"])
        return k, (
            f"highest {method} silhouette ({best['silhouette']:.3f}) at k={k}; "
            f"the inertia curve has no knee"
        )
    k = int(m["k"].min())
    return k, f"smallest k={k}: no knee and no silhouette scores"


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

    def __str__(self) -> str:
        txt = f"{self.method}: recommended k = {self.recommended} ({self.rule})"
        if self.overridden:
            return txt + f"; inspecting k = {self.k}, set by the k parameter"
        return txt + f"; inspecting k = {self.k}"


def choose_k(metrics: pd.DataFrame, k: int | None = None, *, method: str = "kmeans") -> KChoice:
    """The recommended k (:func:`recommend_k`), unless ``k`` overrides it.

    Raises :class:`ConfigError` if ``k`` is not among the k values of ``method``.
    """
    m = method_rows(metrics, method)
    rec, rule = recommend_k(metrics, method=method)
    knee = find_knee(m["k"].tolist(), m["inertia"].tolist())
    have = sorted(int(x) for x in m["k"])
    if k is None:
        return KChoice(rec, rec, rule, knee, method, overridden=False)
    if int(k) not in have:
        raise ConfigError(
            f"k={k} was not clustered with {method}; available k: {have} "
            f"(add it to k_values and re-run 04_pca_kmeans)"
        )
    return KChoice(int(k), rec, rule, knee, method, overridden=int(k) != rec)
