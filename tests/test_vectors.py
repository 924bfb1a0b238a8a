"""lookalike.vectors: the per-image vector cache."""

from __future__ import annotations

import numpy as np

from lookalike.vectors import VectorCache


def test_vector_cache_roundtrip_and_damaged_file(tmp_path):
    cache = VectorCache(tmp_path)
    image_id = "ab" + "0" * 62
    assert cache.get(image_id) is None
    cache.put(image_id, np.arange(4, dtype=np.float32))
    np.testing.assert_array_equal(cache.get(image_id, 4), np.arange(4))
    assert cache.get(image_id, 8) is None  # wrong dimension reads as a miss
    (tmp_path / "ab" / f"{image_id}.npy").write_bytes(b"\x93NUMPY garbage")
    assert cache.get(image_id) is None
    assert not list(tmp_path.rglob("*.tmp"))
