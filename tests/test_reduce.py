"""lookalike.reduce: PCA of the embeddings."""

from __future__ import annotations

import numpy as np
import pytest
from blobs import blobs as _blobs

from lookalike.exceptions import ConfigError
from lookalike.reduce import fit_pca


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
    with pytest.raises(ConfigError, match=r"pca_components=.* \(PCA n_components\)"):
        fit_pca(X, n_components=bad)


def test_pca_above_fit_rows_is_fitted_on_a_sample_and_projects_every_row(monkeypatch):
    from lookalike import reduce

    X = _blobs(n_per=500, centers=4, dim=12)[0]
    monkeypatch.setattr(reduce, "FIT_ROWS", 600)
    monkeypatch.setattr(reduce, "TRANSFORM_ROWS", 256)  # several blocks
    Z, pca = fit_pca(X, n_components=5, random_state=3)
    rows = reduce.fit_rows(len(X), random_state=3)
    assert len(rows) == 600 and np.all(np.diff(rows) > 0)
    assert np.allclose(pca.mean_, X[rows].mean(axis=0), atol=1e-6)  # fitted on the sample
    assert Z.shape == (2000, 5) and np.allclose(Z, pca.transform(X), atol=1e-5)
    Z_all, _ = fit_pca(X[:600], n_components=5, random_state=3)  # at the limit: all rows
    assert reduce.fit_rows(600) is None and Z_all.shape == (600, 5)
