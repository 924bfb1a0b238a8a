"""``lookalike.inspect``, the deprecated alias of stage 05's modules (one release)."""

from __future__ import annotations

import importlib
import sys
import warnings

import numpy as np
import pytest

# Module of every public name the old ``lookalike/inspect.py`` defined (the run-file name
# constants went to :class:`lookalike.paths.RunLayout`).
OLD_NAMES = {
    "elbow": ["KChoice", "choose_k", "default_method", "find_knee", "recommend_k"],
    "plots": ["embedding_2d", "plot_elbow", "plot_map", "plot_pca_variance", "plot_scores"],
    "sheets": [
        "cluster_contact_sheets",
        "contact_sheet",
        "contact_sheet_image",
        "near_duplicates_sheet",
        "overview_sheet",
    ],
    "duplicates": [
        "NEAR_DUPLICATES_COLUMNS",
        "find_near_duplicates",
        "near_duplicate_groups",
        "run_neighbours",
    ],
    "browser": ["ClusterBrowser"],
    "gallery": ["GALLERY_INLINE_MAX", "write_gallery"],
}


def _import_alias():
    sys.modules.pop("lookalike.inspect", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module("lookalike.inspect")
    return module, caught


def test_importing_the_alias_warns():
    _, caught = _import_alias()
    deprecations = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert deprecations and "lookalike.elbow" in str(deprecations[0].message)


@pytest.mark.parametrize("home", sorted(OLD_NAMES))
def test_the_alias_still_exposes_the_old_names(home):
    alias, _ = _import_alias()
    module = importlib.import_module(f"lookalike.{home}")
    for name in OLD_NAMES[home]:
        assert getattr(alias, name) is getattr(module, name), name


def test_the_alias_keeps_the_moved_neighbour_helpers():
    from lookalike import neighbors, reduce

    alias, _ = _import_alias()
    assert alias.load_reduced is reduce.read_reduced
    Z = np.random.default_rng(0).normal(size=(20, 5)).astype(np.float32)
    idx, dist = alias.nearest_neighbours(Z, [0, 3], 4)
    nidx, sim = neighbors.nearest_neighbors(Z, [0, 3], k=4)
    np.testing.assert_array_equal(idx, nidx)
    np.testing.assert_allclose(dist, 1 - sim, atol=1e-6)
