"""What this machine's cores can do on VGG16's convolutions: the limit embedding is measured
against.

A probe runs single 3x3 convolutions of VGG16's own shapes (``block2_conv2``, ``block3_conv2``,
``block4_conv2``: 3.7 GFLOP per image each) on the backends the embedding stage uses, with the
same thread settings: ONNX Runtime ``Conv`` and TensorFlow ``conv2d`` in fp32, TensorFlow in
bf16, and ONNX Runtime ``QLinearConv`` (uint8 activations, int8 per-channel weights, the int8
model's own kernels) in int8. A precision's limit is the best GFLOP/s (GOP/s for int8) any
backend reached on any shape, and its images/s limit at ``image_size`` is that divided by the
network's FLOP per image, ``2 * lookalike.model.conv_macs``. A whole network can only come
close to it: its first layer has 3 input channels, and pooling and copies cost time too.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from lookalike import model as vgg
from lookalike.weights import CONV_LAYERS

#: (layer, input side): the conv layers probed, at their 224 px sides.
PROBE_SHAPES = (("block2_conv2", 112), ("block3_conv2", 56), ("block4_conv2", 28))
PROBE_BATCH = 4


def _best_rate(fn: Callable[[], object], flop: float, *, reps: int = 3, calls: int = 4) -> float:
    """Best of ``reps`` timings of ``calls`` calls of ``fn``, in GFLOP/s (after a warm-up)."""
    fn()
    best = 0.0
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        best = max(best, calls * flop / (time.perf_counter() - t0) / 1e9)
    return best


def _shape(layer: str, side: int) -> tuple[int, int, float]:
    """(in channels, out channels, FLOP of one probe call)."""
    c_in, c_out = CONV_LAYERS[layer]
    return c_in, c_out, 2.0 * PROBE_BATCH * side * side * 9 * c_in * c_out


def _ort_conv(layer: str, side: int, *, int8: bool, threads: int | None) -> float:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    c_in, c_out, flop = _shape(layer, side)
    rng = np.random.default_rng(0)
    attrs = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}
    w = rng.normal(size=(c_out, c_in, 3, 3))
    if int8:
        inits = [
            numpy_helper.from_array(np.array(0.02, np.float32), "xs"),
            numpy_helper.from_array(np.array(128, np.uint8), "xz"),
            numpy_helper.from_array(np.clip(w * 40, -127, 127).astype(np.int8), "w"),
            numpy_helper.from_array(np.full(c_out, 0.001, np.float32), "ws"),
            numpy_helper.from_array(np.zeros(c_out, np.int8), "wz"),
            numpy_helper.from_array(np.array(0.05, np.float32), "ys"),
            numpy_helper.from_array(np.array(0, np.uint8), "yz"),
            numpy_helper.from_array(np.zeros(c_out, np.int32), "b"),
        ]
        node = helper.make_node(
            "QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"], **attrs
        )
        dtype, x = TensorProto.UINT8, rng.integers(0, 255, (PROBE_BATCH, c_in, side, side))
        x = x.astype(np.uint8)
    else:
        inits = [
            numpy_helper.from_array(w.astype(np.float32), "w"),
            numpy_helper.from_array(np.zeros(c_out, np.float32), "b"),
        ]
        node = helper.make_node("Conv", ["x", "w", "b"], ["y"], **attrs)
        dtype, x = TensorProto.FLOAT, rng.random((PROBE_BATCH, c_in, side, side), np.float32)
    graph = helper.make_graph(
        [node],
        "probe",
        [helper.make_tensor_value_info("x", dtype, list(x.shape))],
        [helper.make_tensor_value_info("y", dtype, [PROBE_BATCH, c_out, side, side])],
        initializer=inits,
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", vgg.ONNX_OPSET)])
    m.ir_version = vgg.ONNX_IR_VERSION
    onnx.checker.check_model(m)
    session = vgg._ort_session(m.SerializeToString(), threads=threads)
    return _best_rate(lambda: session.run(["y"], {"x": x}), flop)


def _tf_conv(layer: str, side: int, *, bf16: bool) -> float:
    import tensorflow as tf

    c_in, c_out, flop = _shape(layer, side)
    dt = tf.bfloat16 if bf16 else tf.float32
    rng = np.random.default_rng(0)
    x = tf.cast(rng.random((PROBE_BATCH, side, side, c_in), np.float32), dt)
    w = tf.cast(rng.normal(size=(3, 3, c_in, c_out)).astype(np.float32), dt)
    b = tf.zeros((c_out,), dt)
    conv = tf.function(lambda x: tf.nn.bias_add(tf.nn.conv2d(x, w, 1, "SAME"), b))
    return _best_rate(lambda: conv(x).numpy(), flop)


def probe(*, threads: int | None = None, bf16: bool = True) -> dict[str, dict[str, float]]:
    """GFLOP/s of each probe: ``{"fp32": {"onnxruntime": ..., "keras": ...}, "int8": {...}}``,
    each the best over :data:`PROBE_SHAPES` (int8 in GOP/s, an op being a multiply or an add).
    """
    out: dict[str, dict[str, float]] = {"fp32": {}, "int8": {}, "bf16": {}}
    for layer, side in PROBE_SHAPES:
        cells = {
            ("fp32", "onnxruntime"): _ort_conv(layer, side, int8=False, threads=threads),
            ("fp32", "keras"): _tf_conv(layer, side, bf16=False),
            ("int8", "onnxruntime"): _ort_conv(layer, side, int8=True, threads=threads),
        }
        if bf16:
            cells["bf16", "keras"] = _tf_conv(layer, side, bf16=True)
        for (precision, backend), rate in cells.items():
            out[precision][backend] = max(out[precision].get(backend, 0.0), rate)
    return {p: v for p, v in out.items() if v}


def images_per_s_limit(gflops: float, image_size: int = 224, layer: str = "block5_pool") -> float:
    """Images/s a network would reach if every convolution ran at ``gflops``."""
    return gflops * 1e9 / (2 * vgg.conv_macs(layer, image_size))
