"""An independent reader of Keras weight files, for the weights and model tests."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np


def read_conv(path: Path) -> dict[str, list[np.ndarray]]:
    """Independent reader: layer -> arrays, following the legacy attributes Keras reads."""
    out = {}
    with h5py.File(path, "r") as f:
        for name in [n.decode() for n in f.attrs["layer_names"]]:
            wnames = [w.decode() for w in f[name].attrs["weight_names"]]
            if wnames:
                out[name] = [np.asarray(f[name][w]) for w in wnames]
    return out
