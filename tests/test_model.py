"""lookalike.model: VGG16 at every precision, with the real ImageNet weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from h5_weights import read_conv as _read_conv

from lookalike import model
from lookalike import weights as W
from lookalike.exceptions import ConfigError, WeightsError
from lookalike.model import pool_features
from lookalike.neighbors import l2_normalize
from lookalike.paths import DEMO_DIR
from lookalike.preprocess import load_for_embedding


def test_pooling_shapes_and_values():
    rng = np.random.default_rng(0)
    fmap = rng.random((3, 7, 7, 512)).astype(np.float32)
    avg, mx, gem = (pool_features(fmap, p) for p in ("avg", "max", "gem"))
    assert avg.shape == mx.shape == gem.shape == (3, 512)
    assert pool_features(fmap, "flatten").shape == (3, 7 * 7 * 512)
    assert np.all(avg <= gem + 1e-6) and np.all(gem <= mx + 1e-6)  # power-mean inequality
    np.testing.assert_allclose(avg, fmap.mean(axis=(1, 2)), rtol=1e-6)
    with pytest.raises(ConfigError):
        pool_features(fmap, "median")


@pytest.mark.parametrize(
    ("layer", "size", "shape"),
    [
        ("block5_pool", 224, (7, 7, 512)),
        ("block4_pool", 64, (4, 4, 512)),
        ("block3_conv3", 50, (12, 12, 256)),
        ("block1_pool", 33, (16, 16, 64)),
    ],
)
def test_feature_map_shape_matches_the_network(layer, size, shape):
    assert model.feature_map_shape(layer, size) == shape
    out = model.load_vgg16(layer=layer).compute_output_shape((1, size, size, 3))
    assert tuple(out[1:]) == shape
    assert model.output_dim(layer, size, "flatten") == int(np.prod(shape))


@pytest.mark.parametrize(("layer", "size"), [("block5_pool", 224), ("block4_pool", 160)])
def test_conv_macs_counts_the_network(layer, size):
    import keras

    net = model.load_vgg16(layer=layer)
    convs = [lay for lay in net.layers if isinstance(lay, keras.layers.Conv2D)]
    shapes = keras.Model(net.input, [c.output for c in convs]).compute_output_shape(
        (1, size, size, 3)
    )
    counted = sum(
        h * w * int(np.prod(c.kernel.shape)) for c, (_, h, w, _) in zip(convs, shapes, strict=True)
    )
    assert model.conv_macs(layer, size) == counted
    if (layer, size) == ("block5_pool", 224):
        assert counted == 15_346_630_656  # VGG16's 15.35 GMACs, 30.7 GFLOP per image


def _real_images(n: int) -> list[Path]:
    """``n`` real images bundled with the repository: logos and product photos."""
    logos = sorted((DEMO_DIR / "logos").glob("*.png"))
    shop = sorted((DEMO_DIR / "shop").glob("*.jpg"))
    return (
        logos[7 :: len(logos) // (n // 2)][: n // 2]
        + shop[5 :: len(shop) // (n - n // 2)][: n - n // 2]
    )


@pytest.fixture(scope="module")
def real_batch():
    files = _real_images(16)
    assert len(files) == 16
    x = np.stack([model.prepare(load_for_embedding(p, image_size=64)) for p in files])
    ref = l2_normalize(pool_features(model.load_extractor(image_size=64)(x), "avg"))
    return x, ref


def _agreement(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, float]:
    cos = np.einsum("ij,ij->i", a, b)
    sa, sb = a @ a.T, b @ b.T
    np.fill_diagonal(sa, -2)
    np.fill_diagonal(sb, -2)
    return cos, float(np.mean(sa.argmax(1) == sb.argmax(1)))


@pytest.mark.parametrize(
    ("layer", "pooling", "size"), [("block5_pool", "max", 224), ("block4_pool", "gem", 160)]
)
def test_onnx_fp32_gives_keras_vectors(layer, pooling, size):
    """The exact backends agree on every image, at the presets' layers, poolings and sizes."""
    files = _real_images(12)
    x = np.stack([model.prepare(load_for_embedding(p, image_size=size)) for p in files])
    keras = model.load_extractor(layer=layer, backend="keras")
    ort = model.load_extractor(layer=layer, backend="onnxruntime")
    a, b = (l2_normalize(pool_features(ex(x), pooling)) for ex in (keras, ort))
    cos, nn_same = _agreement(a, b)
    assert cos.min() >= 0.99999 and nn_same == 1.0


def test_default_backend_follows_precision_and_cpu():
    avx2 = "flags\t: fpu sse2 avx avx2 fma\n"
    avx512 = "flags\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_vnni\n"
    assert model.default_backend("int8", avx2) == model.default_backend("int8", avx512)
    assert model.default_backend("int8") == "onnxruntime"
    assert model.default_backend("bf16", avx2) == "keras"
    # tensorflow-cpu is what this environment has, so the CPU decides fp32.
    assert model.default_backend("fp32", avx2) == "onnxruntime"
    assert model.default_backend("fp32", avx512) == "keras"
    assert model.load_extractor(image_size=64).backend == model.default_backend("fp32")
    with pytest.raises(ConfigError, match="precision"):
        model.default_backend("fp16")


@pytest.mark.parametrize(("precision", "min_mean_cos"), [("bf16", 0.999), ("int8", 0.98)])
def test_fast_path_agrees_with_fp32(real_batch, tmp_path_factory, precision, min_mean_cos):
    """Loose bounds on 16 real images at 64 px; benchmarks/embed.py measures the real figures."""
    x, ref = real_batch
    cache = tmp_path_factory.mktemp("int8-models")
    ex = model.load_extractor(image_size=64, precision=precision, cache_dir=cache, progress=False)
    assert ex.precision == precision
    cos, nn_same = _agreement(ref, l2_normalize(pool_features(ex(x), "avg")))
    assert cos.mean() > min_mean_cos and cos.min() > 0.9
    assert nn_same >= 0.75
    if precision == "int8":
        assert len(list(cache.glob("models/*.onnx"))) == 1  # built once, then reused


def test_bad_precision_and_backend_raise_config_error():
    with pytest.raises(ConfigError, match="precision"):
        model.load_extractor(precision="fp16")
    with pytest.raises(ConfigError, match="backend"):
        model.load_extractor(precision="int8", backend="keras")


def test_prepare_is_keras_preprocess_input():
    from keras.applications.vgg16 import preprocess_input

    x = np.random.default_rng(0).random((2, 5, 4, 3)).astype(np.float32) * 255
    np.testing.assert_allclose(model.prepare(x), preprocess_input(x.copy()), atol=1e-4)
    assert model.prepare(x[0]).shape == (5, 4, 3)


# -- the Keras model, with the real weights ---------------------------------------------------


@pytest.fixture(scope="module")
def real_weights() -> W.WeightsInfo:
    """The real weights from the user's Keras cache (no network: tests stay offline)."""
    try:
        return W.ensure_vgg16_weights(allow_download=False)
    except WeightsError as e:
        pytest.fail(f"real VGG16 weights unavailable; run `lookalike weights` first.\n{e}")


SIZE = 224


def _photos() -> dict[str, np.ndarray]:
    """Two real photos and two edits of the first: a central crop and a mirror, 224x224."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images
    h, w, _ = china.shape
    crop = china[h // 10 : h - h // 10, w // 10 : w - w // 10]

    def fit(a):
        return np.asarray(Image.fromarray(a).resize((SIZE, SIZE), Image.BILINEAR), "float32")

    edits = {"crop": fit(crop), "mirror": fit(china[:, ::-1])}
    return {**edits, "china": fit(china), "flower": fit(flower)}


def _cosines(model, photos) -> dict[str, float]:
    from keras.applications.vgg16 import preprocess_input

    batch = preprocess_input(np.stack(list(photos.values())))
    feats = np.asarray(model.predict(batch, verbose=0)).mean(axis=(1, 2))  # avg-pool block5_pool
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    e = dict(zip(photos, feats, strict=True))
    return {"same": float(e["crop"] @ e["mirror"]), "cross": float(e["china"] @ e["flower"])}


def _looks_like_imagenet(c: dict[str, float]) -> bool:
    # Measured with the real weights: same ~0.93, cross ~0.19; random init: both ~0.99.
    return c["same"] > 0.8 and c["cross"] < 0.5 and c["same"] - c["cross"] > 0.3


@pytest.fixture(scope="module")
def photos():
    return _photos()


@pytest.fixture(scope="module")
def keras_model(real_weights):
    return model.load_vgg16()


def test_load_vgg16_has_the_converted_weights(keras_model, real_weights):
    assert keras_model.output_shape == (None, None, None, 512)
    conv = _read_conv(real_weights.path)
    for name in ("block1_conv1", "block5_conv3"):
        layer = keras_model.get_layer(name)
        np.testing.assert_array_equal(layer.kernel.numpy(), conv[name][0])
        np.testing.assert_array_equal(layer.bias.numpy(), conv[name][1])
    assert model.load_vgg16() is keras_model  # cached per process


def test_real_weights_tell_photos_apart(keras_model, photos):
    c = _cosines(keras_model, photos)
    assert _looks_like_imagenet(c), c


def test_random_init_fails_the_same_check(photos):
    import keras

    keras.utils.set_random_seed(0)
    random_model = keras.applications.VGG16(
        weights=None, include_top=False, input_shape=(None, None, 3)
    )
    c = _cosines(random_model, photos)
    assert not _looks_like_imagenet(c), c


def test_load_vgg16_layers(keras_model):
    m = model.load_vgg16(layer="block3_pool")
    assert m.output_shape == (None, None, None, 256)
    assert m.get_layer("block1_conv1") is keras_model.get_layer("block1_conv1")  # shared weights
    out = m.predict(np.zeros((1, 64, 96, 3), "float32"), verbose=0)
    assert out.shape == (1, 8, 12, 256)
    with pytest.raises(ConfigError, match="block5_pool"):
        model.load_vgg16(layer="fc1")
