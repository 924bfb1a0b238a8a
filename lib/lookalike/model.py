"""The VGG16 network: Keras (fp32, bf16), ONNX and int8 ONNX Runtime, and its outputs.

The weights themselves (finding, fetching, verifying) are :mod:`lookalike.weights`; this
module builds the network from them:

* :func:`load_vgg16`: the Keras model cut at a layer, float32 or mixed bfloat16.
* :func:`vgg16_onnx`: the same network as an ONNX graph; :func:`build_int8_model` quantizes
  it statically to int8 (calibrated on :func:`calibration_images`).
* :func:`load_extractor`: a :class:`FeatureExtractor` at a ``precision`` (fp32, bf16, int8),
  which takes :func:`prepare`-d images and gives feature maps; :func:`pool_features` turns
  them into vectors of :func:`output_dim` values.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .cpu import instruction_sets, precision_warning
from .exceptions import ConfigError, WeightsError
from .paths import DEMO_DIR, vector_cache_dir
from .preprocess import check_choice, load_for_embedding
from .weights import (
    BLOCK1_CONV1_BIAS0,
    CONV_LAYERS,
    VGG16_LAYERS,
    WEIGHTS_ID,
    WeightsInfo,
    ensure_vgg16_weights,
    read_conv_weights,
    weights_path,
)

POOLINGS = ("avg", "max", "gem", "flatten")
PRECISIONS = ("fp32", "bf16", "int8")

#: Exponent of generalized-mean pooling (Radenovic et al. 2018 use p=3 for retrieval).
GEM_P = 3.0


# -- Keras -----------------------------------------------------------------------------------


def _check_layer(layer: str) -> None:
    if layer not in VGG16_LAYERS:
        raise ConfigError(f"layer={layer!r} is not a VGG16 notop layer; use one of {VGG16_LAYERS}")


#: Keras dtype policies :func:`load_vgg16` accepts: full float32, or bfloat16 compute with
#: float32 variables (oneDNN's bf16 kernels on CPUs with AVX512-BF16 or AMX).
DTYPE_POLICIES = ("float32", "mixed_bfloat16")


@functools.lru_cache(maxsize=len(DTYPE_POLICIES))
def _full_model(dtype_policy: str = "float32"):
    import keras

    info = ensure_vgg16_weights()
    model = keras.applications.VGG16(weights=None, include_top=False, input_shape=(None, None, 3))
    if dtype_policy != "float32":
        # Rebuild with every layer under the policy; the architecture is the same.
        config = model.get_config()
        for spec in config["layers"]:
            if spec["class_name"] != "InputLayer":
                spec["config"]["dtype"] = dtype_policy
        model = keras.Model.from_config(config)
    # A ".h5" name makes Keras 3 read the legacy layout, matching layers by position.
    model.load_weights(str(info.path))
    bias0 = float(np.asarray(model.get_layer("block1_conv1").bias)[0])
    if abs(bias0 - BLOCK1_CONV1_BIAS0) > 1e-6:  # belt and braces: loading really happened
        raise WeightsError(f"loaded block1_conv1 bias[0] is {bias0}, expected ImageNet weights")
    return model


@functools.cache
def _truncated(layer: str, dtype_policy: str = "float32"):
    import keras

    base = _full_model(dtype_policy)
    if layer == base.layers[-1].name:
        return base
    return keras.Model(base.inputs, base.get_layer(layer).output, name=f"vgg16_{layer}")


def load_vgg16(*, layer: str = "block5_pool", dtype_policy: str = "float32"):
    """VGG16 (include_top=False) with the real ImageNet weights, cut at ``layer``.

    Parameters
    ----------
    layer : str, default "block5_pool"
        Output layer, one of ``VGG16_LAYERS``.
    dtype_policy : {"float32", "mixed_bfloat16"}, default "float32"
        Keras dtype policy of every layer. ``"mixed_bfloat16"`` keeps the weights in float32
        and computes in bfloat16 (the output is then bfloat16 too).

    Returns
    -------
    keras.Model
        Input ``(batch, height, width, 3)`` of any size, already passed through
        ``keras.applications.vgg16.preprocess_input`` (BGR, ImageNet mean subtracted);
        output the feature map of ``layer``, e.g. ``(batch, 7, 7, 512)`` for ``block5_pool``
        at 224x224. Cached per layer and policy within the process (shared weights); do not
        modify it.

    Raises
    ------
    ConfigError
        If ``layer`` is not a VGG16 notop layer or ``dtype_policy`` is unknown.
    WeightsError
        If no real weights can be had (see :func:`ensure_vgg16_weights`).
    """
    _check_layer(layer)
    if dtype_policy not in DTYPE_POLICIES:
        raise ConfigError(
            f"dtype_policy={dtype_policy!r} is not supported; use one of {DTYPE_POLICIES}"
        )
    return _truncated(layer, dtype_policy)


# -- ONNX --------------------------------------------------------------------------------------

#: ONNX opset and IR version of :func:`vgg16_onnx`: plain Conv/Relu/MaxPool, which every
#: onnxruntime since 1.10 reads (newer IR versions are refused by older runtimes).
ONNX_OPSET = 17
ONNX_IR_VERSION = 8


def vgg16_onnx(*, layer: str = "block5_pool", info: WeightsInfo | None = None):
    """The same network as :func:`load_vgg16` as an ONNX graph, built from the verified weights.

    VGG16 is 13 ``Conv`` (3x3, stride 1, pad 1) + ``Relu`` and 5 ``MaxPool`` (2x2, stride 2);
    the graph is written node by node with ``onnx.helper`` (no converter needed) and has the
    same interface as the Keras model, so either can serve :func:`load_extractor`.

    Parameters
    ----------
    layer : str, default "block5_pool"
        Last layer of the graph, one of ``VGG16_LAYERS``.
    info : WeightsInfo, optional
        Which weights file to read; default :func:`ensure_vgg16_weights`.

    Returns
    -------
    onnx.ModelProto
        Input ``"input"``: float32 ``(n, h, w, 3)`` after ``preprocess_input``; output
        ``"features"``: float32 ``(n, h', w', c)``, the feature map of ``layer`` (NHWC, like
        Keras). ``metadata_props`` records ``weights_id`` and ``layer``.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    _check_layer(layer)
    info = info or ensure_vgg16_weights()
    layers, digest = read_conv_weights(info.path)
    nodes = [
        helper.make_node("Transpose", ["input"], ["input_nchw"], perm=[0, 3, 1, 2], name="nchw")
    ]
    inits = []
    cur = "input_nchw"
    for name in VGG16_LAYERS:
        if name.endswith("_pool"):
            nodes.append(
                helper.make_node(
                    "MaxPool", [cur], [name], kernel_shape=[2, 2], strides=[2, 2], name=name
                )
            )
        else:
            kernel, bias = layers[name]
            # Keras HWIO -> ONNX OIHW.
            w = np.ascontiguousarray(kernel.transpose(3, 2, 0, 1), dtype=np.float32)
            inits += [
                numpy_helper.from_array(w, f"{name}/kernel"),
                numpy_helper.from_array(np.asarray(bias, dtype=np.float32), f"{name}/bias"),
            ]
            nodes += [
                helper.make_node(
                    "Conv",
                    [cur, f"{name}/kernel", f"{name}/bias"],
                    [f"{name}/conv"],
                    kernel_shape=[3, 3],
                    pads=[1, 1, 1, 1],
                    name=name,
                ),
                helper.make_node("Relu", [f"{name}/conv"], [name], name=f"{name}/relu"),
            ]
        cur = name
        if name == layer:
            break
    nodes.append(helper.make_node("Transpose", [cur], ["features"], perm=[0, 2, 3, 1], name="nhwc"))
    graph = helper.make_graph(
        nodes,
        f"vgg16_{layer}",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", "h", "w", 3])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", "fh", "fw", "c"])],
        inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
        producer_name="lookalike",
    )
    model.ir_version = ONNX_IR_VERSION
    helper.set_model_props(model, {"weights_id": f"{WEIGHTS_ID}-{digest[:12]}", "layer": layer})
    onnx.checker.check_model(model)
    return model


def vector_cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Root of the vector cache: ``cache_dir``, default :func:`lookalike.paths.vector_cache_dir`.

    Vectors go under ``<root>/<params hash>/``, int8 models under ``<root>/models/``.
    """
    return Path(cache_dir) if cache_dir is not None else vector_cache_dir()


# -- vectors -----------------------------------------------------------------------------------


def pool_features(fmap: np.ndarray, pooling: str = "max") -> np.ndarray:
    """Pool a batch of feature maps to vectors.

    Parameters
    ----------
    fmap : ndarray of shape (n, h, w, c), or (n, d) (returned unchanged)
    pooling : {"max", "avg", "gem", "flatten"}, default "max"
        ``"gem"`` is generalized-mean pooling with p=3 (between avg and max).

    Returns
    -------
    ndarray of shape (n, c), or (n, h*w*c) for ``"flatten"``, float32
    """
    check_choice("pooling", pooling, POOLINGS)
    fmap = np.asarray(fmap, dtype=np.float32)
    if fmap.ndim == 2:
        return fmap
    if fmap.ndim != 4:
        raise ValueError(f"expected feature maps of shape (n, h, w, c), got {fmap.shape}")
    if pooling == "avg":
        return fmap.mean(axis=(1, 2))
    if pooling == "max":
        return fmap.max(axis=(1, 2))
    if pooling == "gem":
        x = np.clip(fmap, 1e-6, None).astype(np.float64)
        return (np.mean(x**GEM_P, axis=(1, 2)) ** (1.0 / GEM_P)).astype(np.float32)
    return fmap.reshape(fmap.shape[0], -1)


# -- ids for cache keys -----------------------------------------------------------------------


def weights_id() -> str:
    """Id of the VGG16 weights in use: ``WEIGHTS_ID`` plus a digest of the 26 weight arrays.

    Makes sure the verified weights are there (see :func:`lookalike.weights.ensure_vgg16_weights`)
    without importing TensorFlow.
    """
    return _weights_info().weights_id


def _weights_info():
    """:func:`~lookalike.weights.ensure_vgg16_weights`, verified once per weights file."""
    path = weights_path()
    try:
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size)
    except OSError:
        key = (str(path), None, None)
    return _weights_info_for(key)


@functools.lru_cache(maxsize=4)
def _weights_info_for(key: tuple[str, int | None, int | None]):
    return ensure_vgg16_weights()


# -- extractors -----------------------------------------------------------------------------


def feature_map_shape(layer: str, image_size: int) -> tuple[int, int, int]:
    """Shape ``(h, w, c)`` of VGG16's ``layer`` output for a square input of ``image_size``.

    Raises
    ------
    ConfigError
        If ``layer`` is unknown, or ``image_size`` is too small for it (empty feature map).
    """
    if layer not in VGG16_LAYERS:
        raise ConfigError(f"layer={layer!r} is not a VGG16 notop layer; use one of {VGG16_LAYERS}")
    upto = VGG16_LAYERS[: VGG16_LAYERS.index(layer) + 1]
    side = int(image_size)
    for name in upto:
        if name.endswith("_pool"):
            side //= 2  # 2x2 max pooling, stride 2, no padding (floor)
    if side < 1:
        raise ConfigError(
            f"image_size={image_size} is too small for layer={layer!r} (its feature map would be "
            "empty); use image_size >= 32, 224 being VGG16's own"
        )
    channels = CONV_LAYERS[[n for n in upto if n in CONV_LAYERS][-1]][1]
    return side, side, channels


def conv_macs(layer: str = "block5_pool", image_size: int = 224) -> int:
    """Multiply-accumulates of VGG16's convolutions up to ``layer``, per image.

    Each 3x3 "same" convolution costs ``h * w * 9 * c_in * c_out`` at its input side
    ``h = w`` (pooling and the bias are left out: under 0.1% of the work). At 224 px up to
    ``block5_pool`` that is 15.35 G, i.e. 30.7 GFLOP per image; the benchmarks divide a
    machine's measured GFLOP/s by ``2 * conv_macs`` to get its images/s limit.
    """
    feature_map_shape(layer, image_size)  # validates
    side, total = int(image_size), 0
    for name in VGG16_LAYERS[: VGG16_LAYERS.index(layer) + 1]:
        if name.endswith("_pool"):
            side //= 2
        else:
            c_in, c_out = CONV_LAYERS[name]
            total += side * side * 9 * c_in * c_out
    return total


def output_dim(layer: str, image_size: int, pooling: str) -> int:
    """Length of the vector for this ``layer``, ``image_size`` and ``pooling``."""
    check_choice("pooling", pooling, POOLINGS)
    h, w, c = feature_map_shape(layer, image_size)
    return h * w * c if pooling == "flatten" else c


#: Identifies the int8 recipe in cache keys; bump when the quantization settings change.
QUANT_RECIPE = "ort-qdq-u8s8-perchannel-minmax-fp32ends-v3"

#: Convolutions int8 quantization leaves in fp32: the first sees raw pixels on 3 channels
#: (int8 gains nothing there and rounding the input costs the most), the last feeds the
#: pooled vector. On the 200 images of ``benchmarks/embed.py`` this kept the nearest
#: neighbour of 96% of images (93% quantizing all 13) at 93% of the all-int8 speed.
INT8_FP32_LAYERS = ("block1_conv1", "block5_conv3")
#: Calibration images per source folder (logos, shop photos) for int8 quantization.
CALIBRATION_PER_SOURCE = 24


def calibration_images() -> list[Path]:
    """The fixed real images int8 quantization is calibrated on.

    Every k-th of the project's bundled sample images (``data/demo/logos/*.png`` and
    ``data/demo/shop/*.jpg``, brand logos and product photos), ``CALIBRATION_PER_SOURCE`` of
    each. Fixed rather than drawn from the run, so that the int8 model, and the cache key of
    its vectors, do not depend on which images a run holds.

    Raises
    ------
    ConfigError
        If the images are not there (a copy of lookalike without its ``data/`` folder).
    """
    out: list[Path] = []
    for folder, pattern in (("logos", "*.png"), ("shop", "*.jpg")):
        files = sorted((DEMO_DIR / folder).glob(pattern))
        step = max(1, len(files) // CALIBRATION_PER_SOURCE)
        out += files[::step][:CALIBRATION_PER_SOURCE]
    if len(out) < 8:
        raise ConfigError(
            f"precision='int8' needs the calibration images under {DEMO_DIR} (logos/*.png, "
            f"shop/*.jpg), found {len(out)}; restore data/demo from the repository or use "
            "precision='fp32'"
        )
    return out


@functools.lru_cache(maxsize=1)
def quantization_id() -> str:
    """Id of the int8 recipe: :data:`QUANT_RECIPE` plus a digest of the calibration images."""
    h = hashlib.sha256()
    for p in calibration_images():
        h.update(p.read_bytes())
    return f"{QUANT_RECIPE}-calib{h.hexdigest()[:12]}"


def _cpu_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _ort_session(model: str | bytes, *, threads: int | None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or _cpu_threads()
    so.inter_op_num_threads = 1
    # Threads that spin while waiting steal the cores the decode workers need between ops.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def quantized_model_path(
    *, layer: str = "block5_pool", image_size: int = 224, cache_dir: str | os.PathLike[str] | None
) -> Path:
    """Where the int8 ONNX model for ``layer`` and ``image_size`` is kept (built on first use)."""
    root = vector_cache_root(cache_dir)
    name = f"vgg16-{weights_id()}-{layer}-{int(image_size)}px-{quantization_id()}.onnx"
    return root / "models" / name


def build_int8_model(
    *,
    layer: str = "block5_pool",
    image_size: int = 224,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> Path:
    """Statically quantize VGG16 to int8 with ONNX Runtime; return the cached model's path.

    The float graph is :func:`vgg16_onnx` (the same verified weights).
    Every convolution but those of :data:`INT8_FP32_LAYERS` is quantized: weights per output
    channel to int8, activations per tensor to uint8 with
    ranges measured (min/max) on :func:`calibration_images` preprocessed like the default
    (white background, padded) at ``image_size``. The result runs on ONNX Runtime's int8
    kernels (AVX512-VNNI where the CPU has it). Built once per weights, layer, image size and
    calibration set, written atomically, then reused.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    size = int(image_size)
    feature_map_shape(layer, size)  # validates layer and size before any work
    target = quantized_model_path(layer=layer, image_size=size, cache_dir=cache_dir)
    if target.is_file():
        return target
    t0 = time.perf_counter()
    images = calibration_images()
    batch = np.stack([prepare(load_for_embedding(p, image_size=size)) for p in images])

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(batch[i : i + 8] for i in range(0, len(batch), 8))

        def get_next(self):
            x = next(self._batches, None)
            return None if x is None else {"input": x}

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".quantize-") as tmp:
        raw, src, out = (Path(tmp) / f"{n}.onnx" for n in ("raw", "fp32", "int8"))
        raw.write_bytes(vgg16_onnx(layer=layer, info=_weights_info()).SerializeToString())
        # ONNX Runtime's recommended step before quantizing: shape inference and graph cleanup.
        quant_pre_process(raw, src, skip_symbolic_shape=True)
        quantize_static(
            src,
            out,
            _Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=[
                n for n in INT8_FP32_LAYERS if _layer_index(n) <= _layer_index(layer)
            ],
            extra_options=_calibration_options(-(-len(batch) // 8)),
        )
        os.replace(out, target)
    if progress:
        print(
            f"int8 model for {layer} at {size}px quantized in {time.perf_counter() - t0:.0f} s "
            f"({len(images)} calibration images): {target}"
        )
    return target


def _layer_index(name: str) -> int:
    return list(VGG16_LAYERS).index(name)


def _calibration_options(n_batches: int) -> dict[str, Any]:
    """Merge the recorded activations every few batches, so memory stays bounded.

    ONNX Runtime clears its buffer after each merge and fails ("No data is collected") when
    the last batch lands exactly on one, so the interval must not divide ``n_batches``.
    """
    for every in range(2, n_batches):
        if n_batches % every:
            return {"CalibMaxIntermediateOutputs": every}
    return {}


class FeatureExtractor:
    """VGG16 cut at a layer, at a precision: ``extractor(x)`` gives the feature maps.

    Build with :func:`load_extractor`.

    Attributes
    ----------
    layer : str
    precision : {"fp32", "bf16", "int8"}
    backend : str
        ``"keras"`` (TensorFlow with oneDNN) or ``"onnxruntime"``.
    """

    def __init__(
        self, run: Callable[[np.ndarray], Any], *, layer: str, precision: str, backend: str
    ):
        self._run = run
        self.layer = layer
        self.precision = precision
        self.backend = backend

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Feature maps of a batch.

        Parameters
        ----------
        x : ndarray of shape (n, h, w, 3), float32
            Images after ``keras.applications.vgg16.preprocess_input`` (see :func:`prepare`).

        Returns
        -------
        ndarray of shape (n, h', w', c), float32 (see :func:`feature_map_shape`)
        """
        return np.asarray(self._run(np.ascontiguousarray(x, dtype=np.float32)), dtype=np.float32)

    def __repr__(self) -> str:
        return (
            f"FeatureExtractor(layer={self.layer!r}, precision={self.precision!r}, "
            f"backend={self.backend!r})"
        )


#: Backends :func:`load_extractor` runs on.
BACKENDS = ("keras", "onnxruntime")


def _cuda_tensorflow() -> bool:
    """True when TensorFlow was installed with CUDA (the ``gpu`` extra), read from package
    metadata so that choosing a backend never imports TensorFlow."""
    from importlib import metadata

    try:
        metadata.version("tensorflow-cpu")
        return False
    except metadata.PackageNotFoundError:
        pass
    try:
        metadata.version("nvidia-cudnn-cu12")
        return True
    except metadata.PackageNotFoundError:
        return False


def default_backend(precision: str = "fp32", cpuinfo: str | None = None) -> str:
    """The backend :func:`load_extractor` takes for ``precision`` when none is given.

    int8 exists only on ONNX Runtime and bf16 only on Keras. fp32 runs on both with the same
    vectors (cosine above 0.99999 for every image), and the faster one depends on the CPU
    (``benchmarks/embed.py``, model only, 2 cores): with AVX-512, TensorFlow's oneDNN kernels
    ran 10.6 images/s against ONNX Runtime's 8.1; with AVX2 only, ONNX Runtime ran 3.89
    against 3.08. So fp32 takes Keras where the CPU has AVX-512 (or TensorFlow was
    installed with CUDA, the ``gpu`` extra, which uses a visible GPU by itself) and ONNX
    Runtime elsewhere, which also spares loading TensorFlow (about 3 s and 300 MB).

    Parameters
    ----------
    precision : {"fp32", "bf16", "int8"}
    cpuinfo : str, optional
        The text of ``/proc/cpuinfo`` (default: this machine's), as in
        :func:`lookalike.cpu.instruction_sets`.
    """
    check_choice("precision", precision, PRECISIONS)
    if precision == "int8":
        return "onnxruntime"
    if precision == "bf16" or _cuda_tensorflow() or instruction_sets(cpuinfo)["avx512f"]:
        return "keras"
    return "onnxruntime"


def load_extractor(
    *,
    layer: str = "block5_pool",
    precision: str = "fp32",
    image_size: int = 224,
    backend: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    threads: int | None = None,
    progress: bool = True,
) -> FeatureExtractor:
    """VGG16 with the real ImageNet weights, cut at ``layer``, ready to run at ``precision``.

    Parameters
    ----------
    layer : str, default "block5_pool"
        Output layer (see :data:`lookalike.weights.VGG16_LAYERS`).
    precision : {"fp32", "bf16", "int8"}, default "fp32"
        ``"fp32"``: the reference. ``"bf16"``: Keras mixed bfloat16 (float32 weights, bfloat16
        compute via oneDNN; fast only on CPUs with AMX, slower than fp32 without). ``"int8"``:
        ONNX Runtime with the statically quantized model of :func:`build_int8_model`.
    image_size : int, default 224
        Input side; only int8 needs it (it is calibrated at that size).
    backend : {"keras", "onnxruntime"}, optional
        Default :func:`default_backend` of ``precision``. int8 runs only on
        ``"onnxruntime"``, bf16 only on ``"keras"``; fp32 on either (``"onnxruntime"`` runs
        :func:`vgg16_onnx`).
    cache_dir : path, optional
        Where the int8 model is kept (``cache_dir/models``); as in
        :func:`lookalike.embed.embed_images`.
    threads : int, optional
        ONNX Runtime threads; default the CPUs this process may use.
    progress : bool, default True
        Say when an int8 model is being built.

    Raises
    ------
    ConfigError
        For an unknown layer, precision or backend, or a combination that does not exist.
    WeightsError
        If no real weights can be had.
    """
    check_choice("precision", precision, PRECISIONS)
    feature_map_shape(layer, max(int(image_size), 32))  # validates the layer name
    unfit = precision_warning(precision)
    if unfit:
        warnings.warn(unfit, RuntimeWarning, stacklevel=2)
    default = default_backend(precision)
    backend = backend or default
    check_choice("backend", backend, BACKENDS)
    if (precision == "int8") != (backend == "onnxruntime") and precision != "fp32":
        raise ConfigError(
            f"precision={precision!r} runs on backend {default!r}, not {backend!r}; "
            "leave backend unset"
        )
    if backend == "keras":
        policy = "mixed_bfloat16" if precision == "bf16" else "float32"
        model = load_vgg16(layer=layer, dtype_policy=policy)
        return FeatureExtractor(
            model.predict_on_batch, layer=layer, precision=precision, backend=backend
        )
    if precision == "int8":
        path = build_int8_model(
            layer=layer, image_size=image_size, cache_dir=cache_dir, progress=progress
        )
        session = _ort_session(str(path), threads=threads)
    else:
        model = vgg16_onnx(layer=layer, info=_weights_info())
        session = _ort_session(model.SerializeToString(), threads=threads)
    return FeatureExtractor(
        lambda x: session.run(["features"], {"input": x})[0],
        layer=layer,
        precision=precision,
        backend=backend,
    )


def compute_device(backend: str = "keras") -> str:
    """Where a :class:`FeatureExtractor` of ``backend`` runs, in words, for the stage's log.

    TensorFlow uses a visible GPU by itself when it is a CUDA build (the ``gpu`` extra);
    nothing in lookalike hides one (``CUDA_VISIBLE_DEVICES`` is left as it is).

    Returns
    -------
    str, e.g. ``"GPU (/physical_device:GPU:0)"``, ``"CPU (no GPU visible to TensorFlow)"``
    or ``"CPU (onnxruntime)"``.
    """
    if backend != "keras":
        return "CPU (onnxruntime)"
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "CPU (no GPU visible to TensorFlow)"
    return "GPU (" + ", ".join(g.name for g in gpus) + ")"


#: ImageNet channel means in BGR order, as ``keras.applications.vgg16.preprocess_input``
#: ("caffe" mode) subtracts them.
_IMAGENET_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)


def prepare(image: np.ndarray) -> np.ndarray:
    """``keras.applications.vgg16.preprocess_input`` of a (..., h, w, 3) RGB 0..255 array.

    RGB to BGR and the ImageNet mean subtracted: what every :class:`FeatureExtractor` takes.
    The same arithmetic as Keras's function (a test checks they agree), in numpy, so that the
    int8 path never imports TensorFlow (about 5 s and 0.5 GB for this one subtraction).

    Returns
    -------
    ndarray, float32, same shape, a new array.
    """
    x = np.asarray(image, dtype=np.float32)[..., ::-1]
    return np.ascontiguousarray(x - _IMAGENET_MEAN_BGR)
