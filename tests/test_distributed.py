"""engine ray (lookalike.distributed) on a real local Ray with 2 CPUs, against engine local.

One Ray session for the module (small object store, no dashboard). The vectors come from
the real VGG16 weights on both engines.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from lookalike import distributed, embed, storage
from lookalike.exceptions import ConfigError
from lookalike.paths import DEMO_DIR, RunLayout

ray = pytest.importorskip("ray", reason="the ray extra: pip install -e '.[ray]'")

#: Small and quick: the comparison holds at any size.
KW = {"image_size": 128, "batch_size": 8, "progress": False}
#: One actor holding both CPUs (the default), decoding beside it.
RAY = {"concurrency": 1, "num_cpus": 2}


@pytest.fixture(scope="module")
def ray_session():
    distributed.start_local(ray, num_cpus=2, object_store_memory=300 * 2**20, log_to_driver=False)
    yield ray
    ray.shutdown()


def _demo_run(root, corrupt: bytes | None) -> tuple:
    """A run listing 40 demo images in place (20 logos, 20 photos) and one corrupt file
    (none when ``corrupt`` is None)."""
    logos = sorted((DEMO_DIR / "logos").glob("*.png"))[::15][:20]
    photos = sorted((DEMO_DIR / "shop").glob("*.jpg"))[::20][:20]
    assert len(logos) == len(photos) == 20
    files = logos + photos
    if corrupt is not None:
        bad = root / "corrupt.jpg"
        bad.parent.mkdir(parents=True, exist_ok=True)
        bad.write_bytes(corrupt)
        files.insert(10, bad)
    rows = [
        {
            "image_id": storage.sha256_bytes(p.read_bytes()),
            "path": str(p),
            "source": "folder",
            "origin": p.name,
            "status": "ok",
        }
        for p in files
    ]
    run = root / "run"
    run.mkdir(parents=True)
    storage.merge_manifest(run, pd.DataFrame(rows))
    return run, files


@pytest.fixture(scope="module")
def both_engines(ray_session, tmp_path_factory):
    """The same 41 rows embedded by engine local and engine ray (separate caches)."""
    jpg = (sorted((DEMO_DIR / "shop").glob("*.jpg"))[0]).read_bytes()
    corrupt = jpg[: len(jpg) // 3]
    out = {}
    for engine in ("local", "ray"):
        root = tmp_path_factory.mktemp(f"engine-{engine}")
        run, files = _demo_run(root, corrupt)
        summary = embed.embed_images(run, cache_dir=root / "cache", engine=engine, ray=RAY, **KW)
        out[engine] = (run, root / "cache", summary, files)
    return out


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_ray_gives_the_vectors_of_local_in_the_same_order(both_engines):
    (run_l, _, s_l, _), (run_r, _, s_r, _) = both_engines["local"], both_engines["ray"]
    ids_l, v_l = storage.read_embeddings(run_l)
    ids_r, v_r = storage.read_embeddings(run_r)
    assert len(ids_r) == 40 and v_r.shape == v_l.shape == (40, 512)
    assert ids_r["image_id"].tolist() == ids_l["image_id"].tolist()
    assert ids_r["path"].tolist() == ids_l["path"].tolist()
    cos = _cosines(v_l, v_r)
    assert cos.min() >= 0.99999, cos.min()
    assert s_r["engine"] == "ray" and s_r["sent"] == 41 and s_r["computed"] == 40
    assert s_l["engine"] == "local" and s_l["sent"] == 0


def test_a_corrupt_image_is_recorded_not_fatal(both_engines):
    failed = {}
    for engine, (run, _, summary, files) in both_engines.items():
        assert summary["failed"] == 1
        table = pd.read_parquet(RunLayout(run).embed_failed)
        assert table["path"].tolist() == [str(files[10])]
        failed[engine] = table["error"].tolist()
        manifest = storage.read_manifest(run)
        assert (manifest["status"] == "failed").sum() == 1
    assert failed["ray"] == failed["local"]  # the same text, from the same decoder


def test_a_rerun_sends_nothing_to_ray(both_engines, tmp_path, monkeypatch):
    run, cache, _, files = both_engines["ray"]
    sent: list[list[str]] = []
    real = distributed._dataset

    def spy(ray_module, paths, keys, describe):
        sent.append([str(p) for p in paths])
        return real(ray_module, paths, keys, describe)

    monkeypatch.setattr(distributed, "_dataset", spy)
    again = embed.embed_images(run, cache_dir=cache, engine="ray", ray=RAY, **KW)
    assert again["reused"] and again["sent"] == 0 and sent == []
    # Another run of the same 40 good images, rebuilt from the shared cache: nothing is sent.
    other, _ = _demo_run(tmp_path, None)
    fresh = embed.embed_images(other, cache_dir=cache, engine="ray", ray=RAY, **KW)
    assert not fresh["reused"] and fresh["cached"] == 40 and fresh["computed"] == 0
    assert fresh["sent"] == 0 and sent == []
    ids, v = storage.read_embeddings(other)
    ids_r, v_r = storage.read_embeddings(run)
    assert ids["image_id"].tolist() == ids_r["image_id"].tolist()
    np.testing.assert_array_equal(v, v_r)


def test_the_logo_extras_are_the_same_on_both_engines(ray_session, tmp_path):
    from logo_images import _brand_images, _logo_run

    results = {}
    for engine in ("local", "ray"):
        run, _ = _logo_run(tmp_path / engine, _brand_images())
        out = embed.embed_run(
            run, preset="logos", engine=engine, ray=RAY, cache_dir=tmp_path / engine / "c",
            progress=False,
        )  # fmt: skip
        layout = RunLayout(run)
        assert out["extras"]["with_parts"] == 3 and out["extras"]["failed"] == 0
        results[engine] = {
            "vectors": np.array(storage.read_embeddings(run)[1]),
            "parts": np.load(layout.parts),
            "part_mask": np.load(layout.part_mask),
            "colour": np.load(layout.colour),
        }
    local, remote = results["local"], results["ray"]
    assert _cosines(local["vectors"], remote["vectors"]).min() >= 0.99999
    np.testing.assert_array_equal(local["part_mask"], remote["part_mask"])
    m = local["part_mask"]
    assert _cosines(local["parts"][m], remote["parts"][m]).min() >= 0.99999
    np.testing.assert_array_equal(local["parts"][~m], remote["parts"][~m])  # zeros
    np.testing.assert_allclose(local["colour"], remote["colour"], atol=1e-6)


def test_without_ray_engine_ray_says_how_to_install_it(tmp_path, monkeypatch):
    run, _ = _demo_run(tmp_path, b"")
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(ConfigError) as err:
        embed.embed_images(run, cache_dir=tmp_path / "cache", engine="ray", **KW)
    text = str(err.value)
    assert "\n" not in text and distributed.INSTALL_HINT in text
    assert not RunLayout(run).embeddings_dir.exists()  # stopped before any work


def test_options_are_checked_before_any_work(tmp_path):
    run, _ = _demo_run(tmp_path, b"")
    with pytest.raises(ConfigError, match="engine='spark'"):
        embed.embed_images(run, engine="spark", **KW)
    with pytest.raises(ConfigError, match="unknown Ray option"):
        embed.embed_images(run, engine="ray", ray={"actors": 3}, **KW)
    with pytest.raises(ConfigError, match="num_cpus"):
        distributed.ray_options(num_cpus=0)
    opts = distributed.ray_options({"address": "auto", "concurrency": None}, num_gpus=1)
    assert (opts.address, opts.concurrency, opts.num_gpus) == ("auto", 1, 1)


def test_an_actor_without_the_weights_gets_them_from_the_object_store(tmp_path, monkeypatch):
    from lookalike.weights import weights_path

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))  # this "worker" has none
    payload = b"the driver's verified .h5 bytes"
    got: list[str] = []

    class FakeRay:  # stands for the object store: ray.get of the driver's ObjectRef
        @staticmethod
        def get(ref):
            got.append(ref)
            return payload

    model = {"layer": "block5_pool", "precision": "fp32", "image_size": 224,
             "cache_dir": str(tmp_path / "not-on-this-machine")}  # fmt: skip
    out = distributed._install_files(FakeRay, [("weights", "ref-1")], model)
    assert weights_path().read_bytes() == payload and got == ["ref-1"]
    assert out["cache_dir"] is None and model["cache_dir"] is not None  # the worker's own
    distributed._install_files(FakeRay, [("weights", "ref-2")], model)
    assert got == ["ref-1"]  # already there: not fetched again


def test_a_model_error_fails_its_rows_not_the_actor():
    actor = object.__new__(distributed._Embedder)  # the stage without loading VGG16

    def broken(x):
        raise MemoryError("out of memory on this batch")

    actor.extractor, actor.pooling, actor.normalize, actor.dim = broken, "max", True, 4
    actor.describe = embed._error_text
    batch = {
        "pos": np.array([3, 4, 5]),
        "error": np.array(["", "ImageError: corrupt", ""], dtype=object),
        "image": np.zeros((3, 8, 8, 3), np.float32),
    }
    out = actor(batch)
    assert out["error"].tolist() == [
        "MemoryError: out of memory on this batch",
        "ImageError: corrupt",
        "MemoryError: out of memory on this batch",
    ]
    actor.extractor = lambda x: np.ones((len(x), 2, 2, 4), np.float32)  # the next batch works
    out = actor(batch)
    assert out["error"].tolist() == ["", "ImageError: corrupt", ""]
    np.testing.assert_allclose(out["value"][[0, 2]], 0.5)  # unit vectors of four ones
