"""lookalike: group images by how they look (VGG16 embeddings, PCA, KMeans).

The notebooks import the stage modules directly (``from lookalike import scrape``); nothing
heavy (TensorFlow) is imported until a stage needs it.
"""

import os as _os

# TensorFlow's C++ INFO/WARNING lines (oneDNN notes, CPU feature hints) drown the stage
# summaries; errors still show. Users can set TF_CPP_MIN_LOG_LEVEL themselves.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

__all__ = [
    "browser",
    "catalog",
    "cluster",
    "demo",
    "domains",
    "duplicates",
    "elbow",
    "embed",
    "folder",
    "gallery",
    "images",
    "logos",
    "net",
    "params",
    "paths",
    "plots",
    "progress",
    "providers",
    "scrape",
    "sheets",
    "similarity",
    "storage",
    "weights",
]
