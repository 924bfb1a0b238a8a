"""Stage 03: embed_images and embed_run on real files, with the real VGG16.

The embedding tests use the real ImageNet weights (lookalike.weights); they never fall back to
a randomly initialised network.
"""

from __future__ import annotations

import io as stdio
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lookalike import embed, model, storage
from lookalike.embed import embed_images
from lookalike.exceptions import ConfigError


def _logo(fg: tuple[int, int, int], size=(60, 40)) -> Image.Image:
    """A filled rectangle of colour ``fg`` on a fully transparent canvas."""
    img = Image.new("RGBA", size, (0, 0, 0, 0))
    img.paste((*fg, 255), (size[0] // 4, size[1] // 4, 3 * size[0] // 4, 3 * size[1] // 4))
    return img


# -- embed_images with the real VGG16 ------------------------------------------------------


def _photo(seed: int, size=(96, 72)) -> Image.Image:
    """A small synthetic picture: a coloured gradient with a shape, distinct per seed."""
    rng = np.random.default_rng(seed)
    w, h = size
    base = np.linspace(0, 1, w)[None, :, None] * rng.random(3)[None, None, :] * 255
    arr = np.broadcast_to(base, (h, w, 3)).copy()
    x0, y0 = rng.integers(0, w // 2), rng.integers(0, h // 2)
    arr[y0 : y0 + h // 3, x0 : x0 + w // 3] = rng.random(3) * 255
    return Image.fromarray(arr.astype(np.uint8))


def _add_rows(run: Path, items: list[tuple[str, bytes]], *, status: str = "ok") -> None:
    rows = []
    for name, data in items:
        p = run / "images" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        rows.append(
            {
                "image_id": storage.sha256_bytes(data),
                "path": f"images/{name}",
                "source": "folder",
                "origin": name,
                "width": 1,
                "height": 1,
                "status": status,
                "error": None,
            }
        )
    storage.merge_manifest(run, pd.DataFrame(rows))


def _png(img: Image.Image) -> bytes:
    buf = stdio.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


EMBED_KW = {"image_size": 64, "batch_size": 4, "workers": 2, "progress": False}


def _bomb_png() -> bytes:
    """A few kB of PNG that claims 9000x5000 pixels (45 MP, over the 40 MP budget)."""
    return _png(Image.new("1", (9000, 5000), 0))


@pytest.fixture(scope="module")
def embedded_run(tmp_path_factory):
    """A run with 8 good images and 4 bad ones, embedded once with the real weights."""
    run = tmp_path_factory.mktemp("embed-run")
    cache = tmp_path_factory.mktemp("embed-cache")
    good = [(f"p{i}.png", _png(_photo(i))) for i in range(7)]
    good.append(("logo.png", _png(_logo((0, 90, 200)))))
    rng = np.random.default_rng(1)
    jpg = stdio.BytesIO()
    Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(jpg, "JPEG")
    bad = [
        ("truncated.jpg", jpg.getvalue()[: len(jpg.getvalue()) // 2]),
        ("empty.png", b""),
        ("page.jpg", b"<!doctype html><html><head><title>Not found</title></head></html>"),
        ("bomb.png", _bomb_png()),
    ]
    _add_rows(run, good[:4] + bad + good[4:])
    _add_rows(run, [("failed_upstream.png", _png(_photo(99)))], status="failed")
    summary = embed_images(run, cache_dir=cache, **EMBED_KW)
    return run, cache, summary, good, bad


def test_embed_writes_unit_vectors(embedded_run):
    run, _, summary, good, _ = embedded_run
    assert summary["computed"] == 8 and summary["cached"] == 0 and summary["failed"] == 4
    assert summary["embedded"] == 8 and summary["n_images"] == 12
    ids, vectors = storage.read_embeddings(run)
    assert vectors.shape == (8, 512) and vectors.dtype == np.float32
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Rows follow the manifest order, minus the failures and the upstream-failed row.
    expected = [storage.sha256_bytes(data) for _, data in good]
    assert ids["image_id"].tolist() == expected
    assert ids["path"].tolist() == [f"images/{name}" for name, _ in good]


def test_embed_records_failures_without_stopping(embedded_run):
    run, _, _, _, bad = embedded_run
    failed = pd.read_parquet(run / "embeddings" / "failed.parquet")
    assert list(failed.columns) == ["image_id", "path", "error"]
    by_path = dict(zip(failed["path"], failed["error"], strict=True))
    assert set(by_path) == {f"images/{name}" for name, _ in bad}
    assert by_path["images/page.jpg"].startswith("html")
    assert by_path["images/empty.png"].startswith("empty")
    assert by_path["images/truncated.jpg"].startswith("corrupt")
    assert by_path["images/bomb.png"].startswith("decompression_bomb")


def test_embed_marks_failures_in_the_manifest(embedded_run):
    run, _, _, good, bad = embedded_run
    m = storage.read_manifest(run).set_index("path")
    for name, _ in bad:
        row = m.loc[f"images/{name}"]
        assert row["status"] == "failed" and row["error"].startswith("embed: "), row
    assert m.loc["images/page.jpg", "error"].startswith("embed: html")
    assert (m.loc[[f"images/{name}" for name, _ in good], "status"] == "ok").all()
    # A row an earlier stage failed keeps its own status and reason.
    assert m.loc["images/failed_upstream.png", "status"] == "failed"
    assert pd.isna(m.loc["images/failed_upstream.png", "error"])


def test_embed_vectors_discriminate(embedded_run, tmp_path):
    """Real ImageNet features: an image re-encoded as JPEG stays close, others are further."""
    run, cache, _, good, _ = embedded_run
    _, vectors = storage.read_embeddings(run)
    twin = tmp_path / "twin-run"
    buf = stdio.BytesIO()
    Image.open(stdio.BytesIO(good[0][1])).save(buf, "JPEG", quality=92)
    _add_rows(twin, [("twin.jpg", buf.getvalue())])
    embed_images(twin, cache_dir=cache, **EMBED_KW)
    _, v_twin = storage.read_embeddings(twin)
    sims = np.asarray(vectors) @ v_twin[0]
    assert sims[0] > 0.95
    assert sims[0] > np.max(sims[1:])


def test_second_run_reuses_everything(embedded_run, capsys):
    run, cache, _, _, _ = embedded_run
    before = np.load(run / "embeddings" / "vectors.npy")
    again = embed_images(run, cache_dir=cache, **EMBED_KW)
    assert again["reused"] and again["computed"] == 0 and again["embedded"] == 8
    assert "computed 0" in capsys.readouterr().out
    np.testing.assert_array_equal(np.load(run / "embeddings" / "vectors.npy"), before)
    # Forced rebuild: every vector comes from the cache, nothing is computed.
    forced = embed_images(run, cache_dir=cache, force=True, **EMBED_KW)
    assert not forced["reused"] and forced["computed"] == 0 and forced["cached"] == 8
    np.testing.assert_array_equal(np.load(run / "embeddings" / "vectors.npy"), before)


def test_new_images_are_the_only_ones_computed(embedded_run):
    run, cache, _, _, _ = embedded_run
    before_ids, before = storage.read_embeddings(run)
    before = np.array(before)
    _add_rows(run, [("new1.png", _png(_photo(50))), ("new2.png", _png(_photo(51)))])
    summary = embed_images(run, cache_dir=cache, **EMBED_KW)
    assert summary["computed"] == 2 and summary["cached"] == 8 and summary["failed"] == 4
    ids, vectors = storage.read_embeddings(run)
    assert vectors.shape == (10, 512)
    np.testing.assert_array_equal(vectors[:8], before)
    assert ids["image_id"].tolist()[:8] == before_ids["image_id"].tolist()


def test_changed_parameters_get_their_own_cache(embedded_run):
    run, cache, first, _, _ = embedded_run
    other = embed_images(run, cache_dir=cache, pooling="gem", normalize=False, **EMBED_KW)
    assert other["computed"] == other["n_images"] - 4  # nothing shared with the avg vectors
    assert other["cache_dir"] != first["cache_dir"]
    _, v = storage.read_embeddings(run)
    assert v.shape[1] == 512 and not np.allclose(np.linalg.norm(v, axis=1), 1.0)
    # Restore the default embeddings for the tests that follow (served from the cache).
    assert embed_images(run, cache_dir=cache, **EMBED_KW)["computed"] == 0


def test_modified_or_missing_files_are_recorded_not_embedded(tmp_path):
    run = tmp_path / "run"
    items = [(f"{c}.png", _png(_photo(i))) for i, c in enumerate("abc")]
    _add_rows(run, items)
    (run / "images" / "b.png").write_bytes(_png(_photo(5)))  # changed after the manifest
    (run / "images" / "c.png").unlink()
    summary = embed_images(run, cache_dir=tmp_path / "cache", **EMBED_KW)
    assert summary["computed"] == 1 and summary["failed"] == 2
    failed = pd.read_parquet(run / "embeddings" / "failed.parquet").set_index("path")
    assert "sha256" in failed.loc["images/b.png", "error"]
    assert failed.loc["images/c.png", "error"].startswith("FileNotFoundError")
    assert storage.read_embeddings(run)[0]["path"].tolist() == ["images/a.png"]


def test_no_ok_images_is_an_error(tmp_path):
    run = tmp_path / "run"
    _add_rows(run, [("a.png", b"")], status="failed")
    with pytest.raises(Exception, match="no images to embed"):
        embed_images(run, cache_dir=tmp_path / "cache", **EMBED_KW)


def test_image_size_too_small_for_the_layer(embedded_run):
    run, cache, _, _, _ = embedded_run
    with pytest.raises(ConfigError, match="too small"):
        embed_images(run, cache_dir=cache, **{**EMBED_KW, "image_size": 16})


def test_all_images_failing_gives_empty_embeddings(tmp_path):
    run = tmp_path / "run"
    _add_rows(run, [("a.png", b"not an image"), ("b.jpg", b"<html><body>x</body></html>")])
    summary = embed_images(run, cache_dir=tmp_path / "cache", **EMBED_KW)
    assert summary["embedded"] == 0 and summary["failed"] == 2
    ids, vectors = storage.read_embeddings(run)
    assert len(ids) == 0 and vectors.shape == (0, 512)


def test_failures_are_retried_and_cleared_when_the_file_is_fixed(tmp_path):
    """A failure is not stale: the next run retries it and un-marks the row once it works."""
    run, cache = tmp_path / "run", tmp_path / "cache"
    items = [("a.png", _png(_photo(1))), ("b.png", _png(_photo(2)))]
    _add_rows(run, items)
    (run / "images" / "b.png").unlink()  # e.g. a disk that was not mounted yet
    first = embed_images(run, cache_dir=cache, **EMBED_KW)
    assert first["failed"] == 1 and first["manifest_updated"] == 1
    m = storage.read_manifest(run).set_index("path")
    assert m.loc["images/b.png", "status"] == "failed"
    assert m.loc["images/b.png", "error"].startswith("embed: FileNotFoundError")
    (run / "images" / "b.png").write_bytes(items[1][1])
    second = embed_images(run, cache_dir=cache, **EMBED_KW)
    assert second["computed"] == 1 and second["cached"] == 1 and second["failed"] == 0
    assert second["manifest_updated"] == 1
    m = storage.read_manifest(run).set_index("path")
    assert m.loc["images/b.png", "status"] == "ok" and pd.isna(m.loc["images/b.png", "error"])
    assert len(storage.read_embeddings(run)[0]) == 2
    assert pd.read_parquet(run / "embeddings" / "failed.parquet").empty


def test_temp_folders_of_a_crashed_run_are_removed(tmp_path):
    run = tmp_path / "run"
    _add_rows(run, [("a.png", _png(_photo(1)))])
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    stale = [
        run / f".embeddings-tmp-{dead.stdout.strip()}-abc",  # its process is gone
        run / ".embeddings-k2j3h4",  # the first version's name, without a pid
        run / f".embeddings.old-{dead.stdout.strip()}-123",
    ]
    live = run / f".embeddings-tmp-{os.getppid()}-xyz"  # a process that is still running
    for d in [*stale, live]:
        d.mkdir()
        (d / "all.npy").write_bytes(b"partial")
    embed_images(run, cache_dir=tmp_path / "cache", **EMBED_KW)
    assert not any(d.exists() for d in stale)
    assert live.exists()
    left = sorted(p.name for p in run.iterdir() if p.name.startswith(".embeddings"))
    assert left == [live.name]


def test_cache_key_holds_the_weights_digest_and_every_parameter():
    from lookalike.weights import WEIGHTS_ID, ensure_vgg16_weights

    params = embed.embedding_params()
    digest_id = ensure_vgg16_weights(allow_download=False).weights_id
    assert params["weights_id"] == digest_id and digest_id != WEIGHTS_ID
    assert params["weights_id"].startswith(WEIGHTS_ID + "-")
    base = embed.params_hash(params)
    assert embed.params_hash(embed.embedding_params(weights="other-weights")) != base
    for change in (
        {"trim": True},
        {"precision": "bf16"},
        {"background": "auto"},
        {"layer": "block4_pool"},
        {"image_size": 128},
    ):
        assert embed.params_hash(embed.embedding_params(**change)) != base, change
    assert "calib" in embed.embedding_params(precision="int8")["quantization"]


def test_embed_images_int8_has_its_own_cache(embedded_run):
    run, cache, first, _, _ = embedded_run
    fast = embed_images(run, cache_dir=cache, precision="int8", **EMBED_KW)
    assert fast["precision"] == "int8" and fast["backend"] == "onnxruntime"
    assert fast["cache_dir"] != first["cache_dir"] and fast["cached"] == 0
    _, v = storage.read_embeddings(run)
    v = np.array(v)
    assert embed_images(run, cache_dir=cache, **EMBED_KW)["computed"] == 0  # fp32 back
    _, ref = storage.read_embeddings(run)
    assert np.einsum("ij,ij->i", v, ref).mean() > 0.98


def test_embed_run_writes_the_vectors_and_the_logo_extras_in_one_call(tmp_path, capsys):
    from logo_images import _brand_images, _logo_run

    from lookalike import similarity
    from lookalike.paths import RunLayout

    run, _ = _logo_run(tmp_path, _brand_images())
    cache = tmp_path / "cache"
    # None means the default: the auto preset (logos here), batch size, workers, precision
    first = embed.embed_run(run, preset=None, batch_size=None, whiten=0, cache_dir=cache)
    assert first["settings"]["preset"] == "logos" and first["settings"]["whiten"] == 0
    assert first["vectors"]["embedded"] == 8 and first["vectors"]["precision"] == "fp32"
    assert first["extras"]["with_parts"] == 3
    layout = RunLayout(run)
    assert np.load(layout.parts).shape == (8, 3, 512)
    assert similarity.read_settings(run)["preset"] == "logos"
    again = embed.embed_run(layout, whiten=0, cache_dir=cache, progress=False)
    assert again["vectors"]["reused"] and again["extras"]["reused"]
    photos = embed.embed_run(run, preset="photos", cache_dir=cache, progress=False)
    assert photos["vectors"]["dim"] == 512 and not layout.parts.exists()
    assert "whole-image vectors only" in capsys.readouterr().out


def test_a_kill_between_the_embeddings_and_the_manifest_is_repaired(tmp_path, monkeypatch):
    """Killed after RUN/embeddings is swapped in but before images.parquet is marked: the
    re-run reuses the vectors and still marks the failures, like an uninterrupted run."""
    from lookalike import embed

    def build(run):
        items = [(f"{c}.png", _png(_photo(i))) for i, c in enumerate("abc")]
        _add_rows(run, items)
        (run / "images" / "b.png").write_bytes(_png(_photo(7)))  # changed after the manifest
        (run / "images" / "c.png").unlink()

    clean, killed, cache = tmp_path / "clean", tmp_path / "killed", tmp_path / "cache"
    build(clean)
    build(killed)
    embed_images(clean, cache_dir=cache, **EMBED_KW)
    real = embed._mark_manifest

    def die(*args, **kwargs):
        raise SystemExit("killed")

    monkeypatch.setattr(embed, "_mark_manifest", die)
    with pytest.raises(SystemExit):
        embed_images(killed, cache_dir=cache, **EMBED_KW)
    assert (storage.read_manifest(killed)["status"] == "ok").all()  # the kill left it wrong
    monkeypatch.setattr(embed, "_mark_manifest", real)
    again = embed_images(killed, cache_dir=cache, **EMBED_KW)
    assert again["reused"] and again["manifest_updated"] == 2

    def table(run, frame):  # the two runs were built at different times: not "added"
        frame = frame.drop(columns=["added"], errors="ignore")
        return frame.assign(error=frame["error"].str.replace(str(run), "RUN", regex=False))

    want = table(clean, storage.read_manifest(clean))
    pd.testing.assert_frame_equal(table(killed, storage.read_manifest(killed)), want)
    failed = [
        table(r, pd.read_parquet(r / "embeddings" / "failed.parquet")) for r in (clean, killed)
    ]
    pd.testing.assert_frame_equal(*failed)
    for name in ("vectors.npy", "ids.parquet"):
        assert (clean / "embeddings" / name).read_bytes() == (
            killed / "embeddings" / name
        ).read_bytes()


def test_the_local_engine_says_where_its_model_runs(tmp_path, capsys):
    import tensorflow as tf

    from lookalike.model import compute_device

    gpus = tf.config.list_physical_devices("GPU")
    where = compute_device("keras")
    assert where.startswith("GPU (") if gpus else where == "CPU (no GPU visible to TensorFlow)"
    assert compute_device("onnxruntime") == "CPU (onnxruntime)"
    run = tmp_path / "run"
    _add_rows(run, [("a.png", _png(_photo(3)))])
    embed_images(run, cache_dir=tmp_path / "cache", backend="keras", **EMBED_KW)
    assert f"embed: engine local, model on {where}" in capsys.readouterr().out
    embed_images(run, cache_dir=tmp_path / "cache2", backend="onnxruntime", force=True, **EMBED_KW)
    assert "embed: engine local, model on CPU (onnxruntime)" in capsys.readouterr().out


def test_exact_backends_share_the_cache(embedded_run):
    """fp32 on Keras or ONNX Runtime is one embedding: switching recomputes nothing."""
    run, cache, first, _, _ = embedded_run
    assert first["backend"] == model.default_backend("fp32")
    other = "keras" if first["backend"] == "onnxruntime" else "onnxruntime"
    again = embed_images(run, cache_dir=cache, backend=other, force=True, **EMBED_KW)
    assert again["backend"] == other and again["computed"] == 0
    assert again["cache_dir"] == first["cache_dir"]
    with pytest.raises(ConfigError, match="backend"):
        embed_images(run, cache_dir=cache, backend="tflite", **EMBED_KW)
