"""Choosing k: the knee, the silhouette fallback and the k override."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from synthetic_run import KNEE_INERTIA, KNEE_K, metrics_table

from lookalike.cluster import DEFAULT_K_VALUES
from lookalike.elbow import choose_k, find_knee, recommend_k
from lookalike.exceptions import ConfigError


def test_find_knee_on_a_known_curve():
    assert find_knee(KNEE_K, KNEE_INERTIA) == 4
    # Order of the points does not matter, NaNs are ignored.
    order = np.random.default_rng(0).permutation(len(KNEE_K))
    assert find_knee(np.array(KNEE_K)[order], np.array(KNEE_INERTIA)[order]) == 4
    assert find_knee(KNEE_K + [11], KNEE_INERTIA + [float("nan")]) == 4


@pytest.mark.parametrize("knee", [10, 20, 50, 100])
def test_find_knee_on_the_default_sweep_grid(knee):
    # Two straight pieces meeting at a known k: steep before it, nearly flat after.
    k = np.array(DEFAULT_K_VALUES, dtype=float)
    inertia = np.where(k <= knee, 1000 - 900 * (k - 3) / (knee - 3), 100 - 50 * (k - knee) / 1e3)
    assert find_knee(k, inertia) == knee


def test_find_knee_on_kmeans_of_five_blobs():
    rng = np.random.default_rng(1)
    centres = rng.normal(scale=10.0, size=(5, 8))
    X = np.repeat(centres, 40, axis=0) + rng.normal(size=(200, 8))
    ks = list(range(2, 13))  # a sweep starts at 2: one cluster has no scores
    inertia = [KMeans(k, n_init=4, random_state=0).fit(X).inertia_ for k in ks]
    assert find_knee(ks, inertia) == 5


def test_find_knee_none_for_a_straight_line_or_too_few_points():
    assert find_knee([2, 3, 4, 5, 6], [50.0, 40.0, 30.0, 20.0, 10.0]) is None
    assert find_knee([2, 3], [10.0, 5.0]) is None


def test_recommend_k_prefers_the_knee_then_silhouette():
    k, rule = recommend_k(metrics_table(KNEE_K, KNEE_INERTIA))
    assert k == 4 and "knee" in rule and "Kneedle" in rule
    sil = [0.2, 0.3, 0.6, 0.4, 0.1]
    k, rule = recommend_k(metrics_table([2, 3, 4, 5, 6], [50.0, 40.0, 30.0, 20.0, 10.0], sil))
    assert k == 4 and "silhouette" in rule and "no knee" in rule
    with pytest.raises(ConfigError):
        recommend_k(metrics_table([], []))


def test_choose_k_states_the_rule_and_lets_k_override():
    both = pd.concat(
        [
            metrics_table(KNEE_K, KNEE_INERTIA),
            metrics_table([2, 3], [5.0, 4.0], method="agglomerative"),
        ]
    )
    rec = choose_k(both)
    assert (rec.k, rec.recommended, rec.knee, rec.overridden) == (4, 4, 4, False)
    assert str(rec).startswith("kmeans: recommended k = 4 (knee")
    over = choose_k(both, 7)
    assert (over.k, over.recommended, over.overridden) == (7, 4, True)
    assert "inspecting k = 7, set by the k parameter" in str(over)
    with pytest.raises(ConfigError, match=r"k=12 was not clustered with kmeans.*\[1, 2, 3"):
        choose_k(both, 12)
    ag = choose_k(both, method="agglomerative")  # two points: no knee, best silhouette
    assert ag.knee is None and ag.k == 3 and "silhouette" in ag.rule
    with pytest.raises(ConfigError, match="no 'spectral' rows"):
        choose_k(both, method="spectral")
