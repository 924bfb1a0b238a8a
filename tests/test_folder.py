"""The folder source: indexing a folder of images in place."""

from __future__ import annotations

import os

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


def _png(path, size=(40, 30), colour="red"):
    Image.new("RGB", size, colour).save(path)


def test_a_file_name_that_is_not_utf8_is_recorded_and_the_others_indexed(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    _png(root / "good.png")
    bad = os.fsencode(root) + b"/\xff\xfe.png"
    with open(bad, "wb") as f:
        Image.new("RGB", (40, 30), "blue").save(f, format="PNG")
    rows = folder_source.index_folder(root, progress=False)
    storage.merge_manifest(tmp_path / "run", rows)  # parquet must accept every row
    by_status = rows.set_index("status")
    assert by_status.loc["ok", "path"].endswith("good.png")
    assert by_status.loc["ok", "label"] == "good.png"  # a file is named by its file name
    assert by_status.loc["skipped", "error"].startswith("file_name_not_utf8")
    assert "\\xff\\xfe" in by_status.loc["skipped", "path"]


def test_every_unused_input_leaves_a_row_with_a_reason(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    _png(root / "ok.png")
    (root / "logo.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    (root / "dangling.png").symlink_to(root / "missing.png")
    (root / "loop1.png").symlink_to(root / "loop2.png")
    (root / "loop2.png").symlink_to(root / "loop1.png")
    _png(root / "pixel.png", size=(1, 1))
    (root / "sub").mkdir()
    (root / "sub" / "back").symlink_to(root)  # a folder loop must not recurse forever
    rows = folder_source.index_folder(root, progress=False, min_side=8)
    got = {p.rsplit("/", 1)[-1]: (s, e) for p, s, e in rows[["path", "status", "error"]].values}
    assert got["ok.png"][0] == "ok"
    assert got["logo.svg"][0] == "skipped" and got["logo.svg"][1].startswith("unsupported_format")
    assert got["dangling.png"][1].startswith("broken_link")
    assert got["loop1.png"][1].startswith("broken_link")
    assert got["loop2.png"][1].startswith("broken_link")
    assert got["pixel.png"][0] == "skipped" and got["pixel.png"][1].startswith("too_small")
    assert len(rows) == 6


def test_min_side_applies_to_folders_and_the_summary_counts_reasons(tmp_path, capsys):
    root = tmp_path / "imgs"
    root.mkdir()
    _png(root / "big.png", size=(64, 64))
    _png(root / "tiny.png", size=(1, 1))
    rows = folder_source.index_folder(root, progress=False)
    assert dict(zip(rows["path"].str.rsplit("/", n=1).str[-1], rows["status"], strict=True)) == {
        "big.png": "ok",
        "tiny.png": "skipped",
    }
    out = capsys.readouterr().out
    assert "folder: 1/2 images usable (50.0%)" in out and "skipped too_small 1" in out


def test_a_huge_file_is_refused_without_being_read(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    big = root / "huge.jpg"
    with open(big, "wb") as f:
        f.truncate(1 << 30)  # sparse: 1 GiB of zeros, no disk used
    row = folder_source.index_file(big, min_side=2, max_bytes=20_000_000)
    assert row["status"] == "failed" and row["error"].startswith("too_large")


def test_a_non_image_is_refused_after_one_chunk(tmp_path, monkeypatch):
    root = tmp_path / "imgs"
    root.mkdir()
    fake = root / "log.jpg"
    fake.write_bytes(b"2026-12-01 INFO started\n" * 200_000)  # ~5 MB of text
    reads = []
    real_open = open

    def counting_open(path, mode="r", *a, **k):
        f = real_open(path, mode, *a, **k)
        if "b" in mode:
            orig = f.read

            def read(n=-1):
                data = orig(n)
                reads.append(len(data))
                return data

            f.read = read
        return f

    monkeypatch.setattr("builtins.open", counting_open)
    row = folder_source.index_file(fake, min_side=2, max_bytes=1 << 30)
    assert row["status"] == "failed" and row["error"].startswith("not_an_image")
    assert sum(reads) <= 1 << 20
