"""Run files: atomic writes, the manifest upsert, embeddings, stamps."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from lookalike import storage
from lookalike.exceptions import ManifestError


def _row(origin: str, image_id: str = "a" * 64, status: str = "ok") -> dict:
    return {
        "image_id": image_id,
        "path": f"images/{origin}.png",
        "source": "catalog",
        "origin": origin,
        "width": 10,
        "height": 12,
        "status": status,
        "error": None,
    }


def test_atomic_write_leaves_no_temp_files(tmp_path):
    p = storage.atomic_write_bytes(tmp_path / "sub" / "x.bin", b"abc")
    assert p.read_bytes() == b"abc"
    assert [f.name for f in p.parent.iterdir()] == ["x.bin"]


def test_merge_manifest_upserts_on_source_and_origin(tmp_path):
    storage.merge_manifest(tmp_path, pd.DataFrame([_row("u1"), _row("u2", status="failed")]))
    merged = storage.merge_manifest(tmp_path, pd.DataFrame([_row("u2", "b" * 64), _row("u3")]))
    assert list(merged["origin"]) == ["u1", "u2", "u3"]
    assert merged.set_index("origin").loc["u2", "status"] == "ok"
    again = storage.read_manifest(tmp_path)
    pd.testing.assert_frame_equal(again, merged)
    assert list(again.columns) == list(storage.MANIFEST_COLUMNS)


def test_read_manifest_ok_only_dedupes_images(tmp_path):
    rows = [_row("u1"), _row("u2"), _row("u3", "c" * 64, status="failed")]
    storage.merge_manifest(tmp_path, pd.DataFrame(rows))
    ok = storage.read_manifest(tmp_path, ok_only=True)
    assert list(ok["origin"]) == ["u1"]  # u2 has the same bytes as u1


def test_missing_manifest_and_missing_column_are_clear(tmp_path):
    with pytest.raises(ManifestError, match="image manifest not found"):
        storage.read_manifest(tmp_path)
    pd.DataFrame({"image_id": ["x"]}).to_parquet(tmp_path / "images.parquet")
    with pytest.raises(ManifestError, match=r"lacks column\(s\) \['path'"):
        storage.read_manifest(tmp_path)


def test_labels_by_source_and_their_fallbacks():
    rows = pd.DataFrame(
        {
            "source": ["catalog", "catalog", "catalog", "logos", "folder", "folder"],
            "origin": [
                "https://shop.example/img/red-shoe.jpg?w=200#x",
                "https://shop.example/p/42/",
                "https://shop.example/img/alt.png",
                "github.test",
                "/photos/2024/a#1.jpg",
                r"C:\photos\b.png",
            ],
            "label": [None, "", "  Melon,   pack of 3 ", None, None, None],
        }
    )
    got = storage.coerce_manifest(rows)["label"].tolist()
    assert got == ["red-shoe.jpg", "42", "Melon, pack of 3", "github.test", "a#1.jpg", "b.png"]


def test_short_label_cuts_and_counts_the_other_origins():
    assert storage.short_label("Melon, pack of 3", 2) == "Melon, pack of 3 (+1 more)"
    assert storage.short_label("Melon, pack of 3", 1) == "Melon, pack of 3"
    long = storage.short_label("a very long product title indeed", width=10)
    assert long == "a very lo\u2026" and len(long) == 10
    assert storage.short_label(None) == "" and storage.short_label(pd.NA, 3) == " (+2 more)"


def test_image_info_knows_every_origin_of_the_same_bytes(tmp_path):
    rows = [_row("u1"), _row("u2", "b" * 64), _row("u3"), _row("u4", "c" * 64, status="failed")]
    rows[0]["label"], rows[2]["label"] = "Melon, pack of 3", "Melon, pack of 3 (sale)"
    storage.merge_manifest(tmp_path, pd.DataFrame(rows))
    info = storage.image_info(tmp_path)
    assert info.index.tolist() == ["a" * 64, "b" * 64]  # ok images only, once each
    a = info.loc["a" * 64]
    assert a["origins"] == ["u1", "u3"] and a["n_origins"] == 2 and a["origin"] == "u1"
    assert a["labels"] == ["Melon, pack of 3", "Melon, pack of 3 (sale)"]
    assert a["caption"] == "Melon, pack of 3 (+1 more)" and a["path"] == "images/u1.png"
    b = info.loc["b" * 64]
    assert b["origins"] == ["u2"] and b["labels"] == ["u2"] and b["caption"] == "u2"


def test_a_manifest_without_labels_gets_them_from_the_scrape_table(tmp_path):
    """Written before the label column: catalog rows get their alt text, the others the
    name of their origin."""
    old = pd.DataFrame([_row("https://s.example/img/a.jpg"), _row("https://s.example/b.jpg")])
    old["source"] = ["catalog", "catalog"]
    old.to_parquet(tmp_path / "images.parquet")
    scrape = pd.DataFrame({"url": ["https://s.example/img/a.jpg"], "alt": ["Red shoe"]})
    scrape.to_parquet(tmp_path / "scrape.parquet")
    assert storage.read_manifest(tmp_path)["label"].tolist() == ["Red shoe", "b.jpg"]


def test_read_embeddings_checks_row_count(tmp_path):
    vec_path, ids_path = storage.embeddings_paths(tmp_path)
    vec_path.parent.mkdir(parents=True)
    np.save(vec_path, np.ones((3, 4), dtype=np.float32))
    storage.write_table(pd.DataFrame({"image_id": ["a", "b", "c"]}), ids_path)
    ids, vectors = storage.read_embeddings(tmp_path)
    assert vectors.shape == (3, 4) and isinstance(vectors, np.memmap)
    storage.write_table(pd.DataFrame({"image_id": ["a", "b"]}), ids_path)
    with pytest.raises(ManifestError, match="3 rows but"):
        storage.read_embeddings(tmp_path)


def test_atomic_writes_get_normal_permissions_and_leave_nothing_on_error(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    path = storage.atomic_write_bytes(tmp_path / "a" / "f.bin", b"data")
    assert path.read_bytes() == b"data"
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not the private 0600 of a temp file
    with pytest.raises(RuntimeError), storage.atomic_path(tmp_path / "a" / "g.bin") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["f.bin"]


def test_stamp_is_current_only_for_the_same_key_and_existing_outputs(tmp_path):
    out = tmp_path / "out.parquet"
    stamp = tmp_path / "stamp.json"
    key = {"params": {"k": [2, 3]}, "inputs": storage.fingerprint(["a", "b"])}
    assert not storage.is_current(stamp, key, outputs=[out])  # no stamp yet
    out.write_bytes(b"x")
    storage.write_stamp(stamp, key, n=2)
    assert storage.is_current(stamp, key, outputs=[out])
    assert storage.read_stamp(stamp)["n"] == 2
    assert not storage.is_current(stamp, {**key, "inputs": storage.fingerprint(["a"])})
    out.unlink()
    assert not storage.is_current(stamp, key, outputs=[out])  # an output went missing
    stamp.write_text("{not json")
    assert storage.read_stamp(stamp) is None and not storage.is_current(stamp, key)


def test_fingerprint_is_canonical():
    assert storage.fingerprint({"a": 1, "b": (1, 2)}) == storage.fingerprint({"b": [1, 2], "a": 1})
    assert storage.fingerprint({"a": 1}) != storage.fingerprint({"a": 2})


def _rss_file_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssFile"))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_drop_pages_gives_back_a_memory_maps_pages_and_keeps_its_data(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.arange(10_000 * 1024, dtype=np.float32).reshape(10_000, 1024))  # 40 MB
    x = np.load(path, mmap_mode="r")
    view = np.asarray(x, dtype=np.float32)[100:]  # views keep the map as their base
    before = _rss_file_kib()
    total = float(view.sum(dtype=np.float64))
    touched = _rss_file_kib()
    storage.drop_pages(view)
    assert touched - before > 30_000 and touched - _rss_file_kib() > 30_000
    assert float(view.sum(dtype=np.float64)) == total  # read again from the file
    storage.drop_pages(np.zeros(3))  # not a memory map: nothing happens
