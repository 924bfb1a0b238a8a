"""Deprecated alias of stage 05's modules (it shadowed the standard library's ``inspect``).

``from lookalike import inspect`` keeps working for one release, with a ``DeprecationWarning``.
Import the module of each concern instead:

* :mod:`lookalike.elbow`: choosing k (``find_knee``, ``recommend_k``, ``choose_k``, ...);
* :mod:`lookalike.plots`: the elbow, scores, PCA variance and 2-D map figures;
* :mod:`lookalike.sheets`: thumbnails and contact sheets;
* :mod:`lookalike.duplicates`: neighbours and near-duplicate groups;
* :mod:`lookalike.browser`: the notebook's ``ClusterBrowser``;
* :mod:`lookalike.gallery`: ``write_gallery``, the HTML gallery.
"""

import warnings

import numpy as np

from .browser import *  # noqa: F403
from .duplicates import *  # noqa: F403
from .elbow import *  # noqa: F403
from .gallery import *  # noqa: F403
from .neighbors import nearest_neighbors as _nearest_neighbors
from .plots import *  # noqa: F403
from .reduce import read_reduced as load_reduced  # noqa: F401 (the old name)
from .sheets import *  # noqa: F403


def nearest_neighbours(Z, queries, n_neighbours=8):
    """Deprecated: use :func:`lookalike.neighbors.nearest_neighbors` (it returns similarity).

    Returns ``(index, distance)``, with the cosine distance ``1 - cos`` in 0..2.
    """
    idx, sim = _nearest_neighbors(Z, queries, k=n_neighbours)
    return idx, np.clip(1.0 - sim, 0.0, 2.0)


warnings.warn(
    "lookalike.inspect is deprecated; use lookalike.elbow, plots, sheets, duplicates, browser "
    "and gallery",
    DeprecationWarning,
    stacklevel=2,
)
