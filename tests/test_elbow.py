"""Choosing k: the knee, the silhouette fallback and the k override."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from synthetic_run import KNEE_INERTIA, KNEE_K, metrics_table

from lookalike.cluster import DEFAULT_K_VALUES
from lookalike.elbow import KNEE_MIN_STRENGTH, choose_k, find_knee, knee_strength, recommend_k
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
    assert k == 4 and "silhouette" in rule and "no clear knee" in rule
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


# A parabola: Kneedle still finds a knee (k=7), but a weak one (strength 0.18).
GENTLE_K = list(range(2, 13))
GENTLE_INERTIA = [(14.0 - k) ** 2 for k in GENTLE_K]


def test_knee_strength_of_a_straight_line_a_gentle_bend_and_a_clear_elbow():
    assert knee_strength([2, 3, 4, 5, 6], [50.0, 40.0, 30.0, 20.0, 10.0]) == (None, None)
    knee, strength = knee_strength(GENTLE_K, GENTLE_INERTIA)
    assert knee == 7 and 0.1 < strength < 0.3
    knee, strength = knee_strength(KNEE_K, KNEE_INERTIA)
    assert knee == 4 and strength == pytest.approx(0.604, abs=1e-3)  # kneed's difference curve
    assert find_knee(GENTLE_K, GENTLE_INERTIA) is None  # weak: no knee
    assert (
        find_knee(GENTLE_K, GENTLE_INERTIA, min_strength=0)
        == knee_strength(GENTLE_K, GENTLE_INERTIA)[0]
    )
    assert 0.2 < KNEE_MIN_STRENGTH < 0.6


def test_choose_k_says_when_the_knee_is_weak_and_which_rule_chose_k():
    sil = np.linspace(0.1, 0.5, len(GENTLE_K))
    sil[3] = 0.9  # the best silhouette, at k=5
    m = metrics_table(GENTLE_K, GENTLE_INERTIA, sil, method="similarity")
    m["silhouette_space"] = "fused similarity"
    weak = choose_k(m, method="similarity")
    assert weak.weak_knee and weak.knee is None and weak.k == 5
    assert weak.kneedle_k is not None and weak.knee_strength < KNEE_MIN_STRENGTH
    assert weak.knee_note == (
        f"no clear knee in the similarity inertia curve (Kneedle's best knee, "
        f"k={weak.kneedle_k}, has strength {weak.knee_strength:.2f} < "
        f"{KNEE_MIN_STRENGTH:.2f}); instead: highest similarity silhouette (0.900, in 1 - "
        f"fused similarity) at k=5"
    )
    line = choose_k(metrics_table([2, 3, 4, 5, 6], [50.0, 40.0, 30.0, 20.0, 10.0]))
    assert line.weak_knee and "Kneedle finds no knee at all" in line.knee_note
    assert "instead: highest kmeans silhouette (0.500) at k=6" in line.knee_note
    clear = choose_k(metrics_table(KNEE_K, KNEE_INERTIA))
    assert not clear.weak_knee and clear.knee_note is None and clear.k == 4
    assert clear.knee_strength == pytest.approx(0.604, abs=1e-3)
    # the threshold is a parameter: at 0 the gentle bend's knee is taken
    lax = choose_k(m, method="similarity", min_strength=0.0)
    assert lax.knee == lax.k == weak.kneedle_k and lax.knee_note is None
