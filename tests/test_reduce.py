"""lookalike.reduce: PCA of the embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.exceptions import ConfigError
from lookalike.reduce import fit_pca


def _blobs(n_per=20, centers=4, dim=64, seed=0, spread=0.05):
    """Unit-norm vectors around ``centers`` random directions, like pooled VGG16 features.

    ``n_per`` may be a list (uneven cluster sizes).
    """
    rng = np.random.default_rng(seed)
    sizes = [n_per] * centers if np.isscalar(n_per) else list(n_per)
    c = rng.normal(size=(len(sizes), dim))
    truth = np.repeat(np.arange(len(sizes)), sizes)
    X = c[truth] + rng.normal(scale=spread * np.sqrt(dim), size=(len(truth), dim))
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32), truth


def test_pca_clips_int_components():
    X, _ = _blobs(n_per=5, centers=3)  # 15 samples, 64 features
    Z, pca = fit_pca(X, n_components=100)
    assert Z.shape == (15, 15) and pca.n_components_ == 15
    assert Z.dtype == np.float32


def test_pca_float_is_variance_fraction():
    X, _ = _blobs()
    Z, pca = fit_pca(X, n_components=0.9)
    assert pca.explained_variance_ratio_.sum() >= 0.9
    assert Z.shape[1] == pca.n_components_ < X.shape[1]


def test_pca_whiten_gives_unit_variance():
    X, _ = _blobs()
    Z, _ = fit_pca(X, n_components=5, whiten=True)
    np.testing.assert_allclose(Z.var(axis=0, ddof=1), 1.0, rtol=1e-3)


@pytest.mark.parametrize("bad", [0, -3, 1.5, 0.0])
def test_pca_bad_components(bad):
    X, _ = _blobs()
    with pytest.raises(ConfigError, match="n_components"):
        fit_pca(X, n_components=bad)
