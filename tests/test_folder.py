"""The folder source: indexing a folder of images in place."""

from __future__ import annotations

import pytest
from PIL import Image

from lookalike import folder as folder_source
from lookalike import storage
from lookalike.exceptions import ConfigError


def test_index_folder_reads_images_in_place(tmp_path):
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    Image.new("RGB", (20, 10), "red").save(folder / "a.png")
    Image.new("RGB", (8, 8), "blue").save(folder / "sub" / "b.jpg")
    (folder / "broken.jpg").write_bytes(b"<html>not an image</html>")
    (folder / "notes.txt").write_text("ignored")
    rows = folder_source.index_folder(folder)
    assert len(rows) == 3
    by_name = {
        p.rsplit("/", 1)[-1]: r for p, r in zip(rows["path"], rows.to_dict("records"), strict=True)
    }
    assert by_name["a.png"]["status"] == "ok" and by_name["a.png"]["width"] == 20
    assert by_name["a.png"]["image_id"] == storage.sha256_file(folder / "a.png")
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
        folder_source.index_folder(tmp_path / "nope")
