"""Run files: atomic writes, the manifest upsert, embeddings, folder indexing."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lookalike import io
from lookalike.exceptions import ConfigError, ManifestError


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
    p = io.atomic_write_bytes(tmp_path / "sub" / "x.bin", b"abc")
    assert p.read_bytes() == b"abc"
    assert [f.name for f in p.parent.iterdir()] == ["x.bin"]


def test_merge_manifest_upserts_on_source_and_origin(tmp_path):
    io.merge_manifest(tmp_path, pd.DataFrame([_row("u1"), _row("u2", status="failed")]))
    merged = io.merge_manifest(tmp_path, pd.DataFrame([_row("u2", "b" * 64), _row("u3")]))
    assert list(merged["origin"]) == ["u1", "u2", "u3"]
    assert merged.set_index("origin").loc["u2", "status"] == "ok"
    again = io.read_manifest(tmp_path)
    pd.testing.assert_frame_equal(again, merged)
    assert list(again.columns) == list(io.MANIFEST_COLUMNS)


def test_read_manifest_ok_only_dedupes_images(tmp_path):
    rows = [_row("u1"), _row("u2"), _row("u3", "c" * 64, status="failed")]
    io.merge_manifest(tmp_path, pd.DataFrame(rows))
    ok = io.read_manifest(tmp_path, ok_only=True)
    assert list(ok["origin"]) == ["u1"]  # u2 has the same bytes as u1


def test_missing_manifest_and_missing_column_are_clear(tmp_path):
    with pytest.raises(ManifestError, match="image manifest not found"):
        io.read_manifest(tmp_path)
    pd.DataFrame({"image_id": ["x"]}).to_parquet(tmp_path / "images.parquet")
    with pytest.raises(ManifestError, match=r"lacks column\(s\) \['path'"):
        io.read_manifest(tmp_path)


def test_read_embeddings_checks_row_count(tmp_path):
    vec_path, ids_path = io.embeddings_paths(tmp_path)
    vec_path.parent.mkdir(parents=True)
    np.save(vec_path, np.ones((3, 4), dtype=np.float32))
    io.write_table(pd.DataFrame({"image_id": ["a", "b", "c"]}), ids_path)
    ids, vectors = io.read_embeddings(tmp_path)
    assert vectors.shape == (3, 4) and isinstance(vectors, np.memmap)
    io.write_table(pd.DataFrame({"image_id": ["a", "b"]}), ids_path)
    with pytest.raises(ManifestError, match="3 rows but"):
        io.read_embeddings(tmp_path)


def test_index_folder_reads_images_in_place(tmp_path):
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    Image.new("RGB", (20, 10), "red").save(folder / "a.png")
    Image.new("RGB", (8, 8), "blue").save(folder / "sub" / "b.jpg")
    (folder / "broken.jpg").write_bytes(b"<html>not an image</html>")
    (folder / "notes.txt").write_text("ignored")
    rows = io.index_folder(folder)
    assert len(rows) == 3
    by_name = {
        p.rsplit("/", 1)[-1]: r for p, r in zip(rows["path"], rows.to_dict("records"), strict=True)
    }
    assert by_name["a.png"]["status"] == "ok" and by_name["a.png"]["width"] == 20
    assert by_name["a.png"]["image_id"] == io.sha256_file(folder / "a.png")
    assert by_name["broken.jpg"]["status"] == "failed" and by_name["broken.jpg"]["error"]
    assert sorted(p.name for p in folder.rglob("*")) == [
        "a.png",
        "b.jpg",
        "broken.jpg",
        "notes.txt",
        "sub",
    ]


def test_index_folder_rejects_a_missing_folder(tmp_path):
    with pytest.raises(ConfigError, match="is not a folder"):
        io.index_folder(tmp_path / "nope")


def test_atomic_writes_get_normal_permissions_and_leave_nothing_on_error(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    path = io.atomic_write_bytes(tmp_path / "a" / "f.bin", b"data")
    assert path.read_bytes() == b"data"
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not the private 0600 of a temp file
    with pytest.raises(RuntimeError), io.atomic_path(tmp_path / "a" / "g.bin") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["f.bin"]
