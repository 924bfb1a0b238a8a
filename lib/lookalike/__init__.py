"""lookalike: group images by how they look (VGG16 embeddings, PCA, KMeans).

The notebooks import the stage modules directly (``from lookalike import scrape``); nothing
heavy (TensorFlow) is imported until a stage needs it.
"""

__version__ = "0.1.0"

__all__ = ["cluster", "demo", "embed", "images", "inspect", "io", "logos", "scrape", "weights"]
