"""Synthetic embeddings for the clustering tests: unit vectors around random directions."""

from __future__ import annotations

import numpy as np


def blobs(n_per=20, centers=4, dim=64, seed=0, spread=0.05):
    """Unit-norm vectors around ``centers`` random directions, like pooled VGG16 features.

    ``n_per`` may be a list (uneven cluster sizes).
    """
    rng = np.random.default_rng(seed)
    sizes = [n_per] * centers if np.isscalar(n_per) else list(n_per)
    c = rng.normal(size=(len(sizes), dim))
    truth = np.repeat(np.arange(len(sizes)), sizes)
    X = c[truth] + rng.normal(scale=spread * np.sqrt(dim), size=(len(truth), dim))
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32), truth
