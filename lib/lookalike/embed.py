"""Stage 03: turn every image of a run into one VGG16 feature vector.

Three layers:

* :func:`load_for_embedding` decodes one image safely and makes it a square RGB array the
  network can take: EXIF orientation, first frame of animations, largest ICO frame, every
  Pillow mode (palette with transparency, LA, 16-bit, float, CMYK, ...), alpha composited on a
  chosen background, optional trimming of uniform borders, and the aspect ratio kept by padding
  (or stretched, like the original notebooks).
* :func:`load_extractor` gives VGG16 with the real ImageNet weights, cut at ``layer``, at a
  ``precision``: ``"fp32"`` (Keras/TensorFlow, the reference), ``"bf16"`` (Keras mixed
  bfloat16 through oneDNN) or ``"int8"`` (ONNX Runtime, statically quantized, VNNI kernels).
  :func:`feature_batches` streams feature maps for a list of images: decoding runs ahead on a
  small thread pool while the model works on the previous batch.
* :func:`embed_images` runs all that on the ``ok`` images of ``RUN/images.parquet`` and streams
  the vectors into ``RUN/embeddings/vectors.npy`` (a memory map, so memory does not grow with
  the number of images). Vectors are cached per image (the image id is the sha256 of its bytes)
  under the shared cache, keyed by the weights digest and every parameter that changes a
  vector, so a re-run, or a run that shares images with an earlier one, computes only what is
  new. Images that cannot be embedded are recorded in ``failed.parquet`` and marked ``failed``
  in the manifest; they never stop the run.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.lib.format import open_memmap
from PIL import Image, ImageOps

from . import storage
from .exceptions import ConfigError, ImageError, ManifestError
from .paths import default_cache_dir, resolve

BACKGROUNDS = ("white", "black", "auto", "none")
FITS = ("pad", "stretch")
POOLINGS = ("avg", "max", "gem", "flatten")
PRECISIONS = ("fp32", "bf16", "int8")

#: Exponent of generalized-mean pooling (Radenovic et al. 2018 use p=3 for retrieval).
GEM_P = 3.0

#: Mean luma (0..255, Rec. 601) of the opaque artwork above which ``background="auto"`` picks
#: black: light artwork (a white logo on transparency) would vanish on white.
AUTO_LIGHT_LUMA = 186.0

#: ``trim``: a border pixel belongs to the margin when every channel is within this many
#: levels (0..255) of the margin colour, or its alpha is at most this (JPEG noise, soft edges).
TRIM_TOLERANCE = 12

#: Bump when the preprocessing changes in a way that changes vectors: invalidates the cache.
PREPROCESS_VERSION = 2

#: Prefix of the manifest ``error`` this stage writes, so a later run can retry its own
#: failures (a file that was missing may be back) without touching other stages' rows.
EMBED_ERROR_PREFIX = "embed: "

_ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}
_COLOR = {"white": (255.0, 255.0, 255.0), "black": (0.0, 0.0, 0.0)}


# -- one image ----------------------------------------------------------------------------


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not supported; use one of {list(choices)}")


def _decode(path_or_bytes: str | os.PathLike[str] | bytes) -> Image.Image:
    # Imported here so this module imports even where images.py is not installed yet.
    from .images import decode_image

    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data = bytes(path_or_bytes)
    else:
        data = Path(path_or_bytes).read_bytes()
    return decode_image(data)


def _first_frame_upright(img: Image.Image) -> Image.Image:
    try:
        img.seek(0)  # animated GIF/WebP/APNG: the first frame is the "poster" image
    except (EOFError, AttributeError, ValueError):
        pass
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # a corrupt EXIF block must not lose an otherwise fine image
        return img


def _rescale_to_uint8(a: np.ndarray, mode: str) -> np.ndarray:
    """Map a single-channel 16-bit, int32 or float array to 0..255."""
    a = a.astype(np.float64)
    finite = np.isfinite(a)
    if not finite.all():
        a = np.where(finite, a, 0.0)
    hi = float(a.max()) if a.size else 0.0
    lo = float(a.min()) if a.size else 0.0
    if mode.startswith("I;16"):
        a = a / 257.0  # 65535 -> 255
    elif mode == "F" and lo >= 0.0 and hi <= 1.0:
        a = a * 255.0  # float images are usually 0..1
    elif lo >= 0.0 and hi <= 255.0:
        pass  # already 8-bit range (a PNG "I" that holds 8-bit values)
    elif lo >= 0.0 and hi <= 65535.0:
        a = a / 257.0  # 16-bit data stored in a 32-bit mode
    else:
        a = (a - lo) / (hi - lo) * 255.0  # anything else: stretch its range
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _cmyk_to_rgb(img: Image.Image) -> Image.Image:
    icc = img.info.get("icc_profile")
    if icc:
        try:  # the embedded profile gives far truer colours than the naive formula
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            dst = ImageCms.createProfile("sRGB")
            return ImageCms.profileToProfile(img, src, dst, outputMode="RGB")
        except Exception:
            pass
    return img.convert("RGB")


def to_rgba(img: Image.Image) -> Image.Image:
    """Convert any Pillow image to ``RGB`` (opaque) or ``RGBA`` (has transparency).

    Handles palette and grey images with a transparent colour, ``LA``/``PA`` and
    premultiplied modes, CMYK (through the embedded ICC profile when there is one), 16-bit
    (``I;16*``), 32-bit integer (``I``) and float (``F``) images.
    """
    mode = img.mode
    if mode in ("RGB", "RGBA"):
        if mode == "RGB" and "transparency" in img.info:
            return img.convert("RGBA")
        return img
    if mode.startswith("I;16") or mode in ("I", "F"):
        grey = _rescale_to_uint8(np.asarray(img), mode)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode == "CMYK":
        return _cmyk_to_rgb(img)
    if mode in _ALPHA_MODES or "transparency" in img.info:
        return img.convert("RGBA")
    return img.convert("RGB")


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def pick_background(img: Image.Image) -> str:
    """``"black"`` if the opaque part of ``img`` is light (mean luma > 186), else ``"white"``.

    Parameters
    ----------
    img : PIL.Image in mode ``RGB`` or ``RGBA``
        An opaque image always gets ``"white"``.
    """
    if img.mode != "RGBA":
        return "white"
    a = np.asarray(img, dtype=np.float32)
    alpha = a[..., 3] / 255.0
    weight = float(alpha.sum())
    if weight < 1e-6 or float(alpha.min()) >= 1.0:
        return "white"
    mean_luma = float((_luma(a[..., :3]) * alpha).sum() / weight)
    return "black" if mean_luma > AUTO_LIGHT_LUMA else "white"


def trim_borders(img: Image.Image, *, tolerance: int = TRIM_TOLERANCE) -> Image.Image:
    """Crop away uniform margins: transparent ones, then ones of a single flat colour.

    The flat colour is the colour of the four corners; when the corners disagree (a photo, or
    artwork touching a corner) there is no uniform margin and nothing is cropped on that
    account. An image that is all margin is returned unchanged.

    Parameters
    ----------
    img : PIL.Image in mode ``RGB`` or ``RGBA``
    tolerance : int, default TRIM_TOLERANCE
        Levels (0..255) within which a pixel still counts as margin.

    Returns
    -------
    PIL.Image, same mode, cropped to the content's bounding box.
    """
    a = np.asarray(img)
    keep = np.ones(a.shape[:2], dtype=bool)
    if img.mode == "RGBA":
        keep = a[..., 3] > tolerance
    rgb = a[..., :3].astype(np.int16)
    corners = rgb[[0, 0, -1, -1], [0, -1, 0, -1]]  # (4, 3)
    corner_alpha = keep[[0, 0, -1, -1], [0, -1, 0, -1]]
    if corner_alpha.all() and int(np.ptp(corners, axis=0).max()) <= tolerance:
        flat = np.median(corners, axis=0)
        keep &= np.abs(rgb - flat).max(axis=2) > tolerance
    rows, cols = np.flatnonzero(keep.any(axis=1)), np.flatnonzero(keep.any(axis=0))
    if rows.size == 0:
        return img
    box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
    return img if box == (0, 0, img.width, img.height) else img.crop(box)


def _composite(img: Image.Image, bg: tuple[float, float, float]) -> np.ndarray:
    """RGB float32 array of ``img`` laid over a solid ``bg`` colour."""
    a = np.asarray(img, dtype=np.float32)
    if img.mode != "RGBA":
        return a[..., :3]
    alpha = a[..., 3:4] / 255.0
    return a[..., :3] * alpha + np.asarray(bg, dtype=np.float32) * (1.0 - alpha)


def _check_preprocessing(image_size: int, background: str, fit: str) -> int:
    _check_choice("background", background, BACKGROUNDS)
    _check_choice("fit", fit, FITS)
    if isinstance(image_size, bool) or int(image_size) < 1:
        raise ConfigError(f"image_size={image_size!r} must be a positive number of pixels")
    return int(image_size)


def load_for_embedding(
    path_or_bytes: str | os.PathLike[str] | bytes,
    *,
    image_size: int = 224,
    background: str = "white",
    fit: str = "pad",
    trim: bool = False,
) -> np.ndarray:
    """Decode one image and make it the square RGB input VGG16 expects.

    Parameters
    ----------
    path_or_bytes : path or bytes
        The image file, or its bytes. Decoded by :func:`lookalike.images.decode_image`, which
        refuses corrupt files, HTML pages and decompression bombs.
    image_size : int, default 224
        Side of the output square, in pixels.
    background : {"white", "black", "auto", "none"}, default "white"
        Colour that transparent pixels and the padding become. ``"auto"`` picks black for light
        artwork on transparency (a white logo stays visible) and white otherwise. ``"none"``
        reproduces the seed notebooks' plain ``convert("RGB")``: alpha is dropped and
        transparent pixels keep whatever colour they store (often black); padding is white.
    fit : {"pad", "stretch"}, default "pad"
        ``"pad"`` keeps the aspect ratio and pads to a square with the background colour;
        ``"stretch"`` resizes straight to the square, like the original notebooks.
    trim : bool, default False
        Crop uniform margins (transparent, or one flat colour) first, see :func:`trim_borders`,
        so the artwork fills the square whatever padding its file came with.

    Returns
    -------
    ndarray of shape (image_size, image_size, 3), float32, RGB, values 0..255

    Raises
    ------
    ImageError
        If the bytes are not a decodable image.
    ConfigError
        If an option has an unsupported value.
    """
    size = _check_preprocessing(image_size, background, fit)
    img = _decode(path_or_bytes)
    try:
        img = to_rgba(_first_frame_upright(img))
        if img.width < 1 or img.height < 1:
            raise ImageError(f"empty image ({img.width}x{img.height} pixels)")
        if background == "none" and img.mode == "RGBA":
            img = img.convert("RGB")  # the seeds' way: the stored colours under alpha show
        if trim:
            img = trim_borders(img)
        if fit == "stretch":
            target = (size, size)
        else:
            scale = size / max(img.width, img.height)
            target = (
                max(1, min(size, round(img.width * scale))),
                max(1, min(size, round(img.height * scale))),
            )
        # Pillow premultiplies alpha while resampling RGBA, so edges do not get dark fringes.
        img = img.resize(target, Image.Resampling.BICUBIC, reducing_gap=3.0)
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError) as e:  # truncated data surfaces on first load
        raise ImageError(f"cannot decode image: {type(e).__name__}: {e}") from e

    if background == "auto":
        bg = _COLOR[pick_background(img)]
    else:
        bg = _COLOR.get(background, _COLOR["white"])
    rgb = _composite(img, bg)
    if rgb.shape[:2] == (size, size):
        return np.ascontiguousarray(rgb, dtype=np.float32)
    out = np.empty((size, size, 3), dtype=np.float32)
    out[...] = np.asarray(bg, dtype=np.float32)
    top = (size - rgb.shape[0]) // 2
    left = (size - rgb.shape[1]) // 2
    out[top : top + rgb.shape[0], left : left + rgb.shape[1]] = rgb
    return out


# -- pooling ------------------------------------------------------------------------------


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
    _check_choice("pooling", pooling, POOLINGS)
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


def l2_normalize(v: np.ndarray) -> np.ndarray:
    """Rows of ``v`` scaled to unit L2 norm (all-zero rows stay zero)."""
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return (v / np.maximum(norms, 1e-12)).astype(np.float32)


def nearest_neighbours(
    vectors: np.ndarray, queries: Sequence[int], *, k: int = 5, chunk: int = 4096
) -> np.ndarray:
    """The ``k`` rows most similar (cosine) to each query row, the query itself left out.

    Parameters
    ----------
    vectors : ndarray of shape (n, d)
        E.g. the memory map of :func:`lookalike.storage.read_embeddings`; read ``chunk`` rows at a
        time, so it need not fit in memory.
    queries : sequence of int
        Row numbers.
    k : int, default 5
        Neighbours per query (at most n - 1).

    Returns
    -------
    ndarray of shape (len(queries), k), int: row numbers, most similar first.
    """
    n = len(vectors)
    k = min(int(k), n - 1)
    q = np.asarray(queries, dtype=np.int64)
    unit = l2_normalize(np.asarray(vectors[q], dtype=np.float32))
    sims = np.concatenate(
        [unit @ l2_normalize(np.asarray(vectors[s : s + chunk])).T for s in range(0, n, chunk)],
        axis=1,
    )
    sims[np.arange(len(q)), q] = -np.inf
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


# -- cache keys ---------------------------------------------------------------------------


def weights_id() -> str:
    """Id of the VGG16 weights in use: ``WEIGHTS_ID`` plus a digest of the 26 weight arrays.

    Makes sure the verified weights are there (see :func:`lookalike.weights.ensure_vgg16_weights`)
    without importing TensorFlow.
    """
    return _weights_info().weights_id


def _weights_info():
    """:func:`~lookalike.weights.ensure_vgg16_weights`, verified once per weights file."""
    from .weights import weights_path

    path = weights_path()
    try:
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size)
    except OSError:
        key = (str(path), None, None)
    return _weights_info_for(key)


@functools.lru_cache(maxsize=4)
def _weights_info_for(key: tuple[str, int | None, int | None]):
    from .weights import ensure_vgg16_weights

    return ensure_vgg16_weights()


def embedding_params(
    *,
    layer: str = "block5_pool",
    pooling: str = "max",
    image_size: int = 224,
    background: str = "white",
    fit: str = "pad",
    trim: bool = False,
    normalize: bool = True,
    precision: str = "fp32",
    weights: str | None = None,
) -> dict[str, Any]:
    """Everything besides the image bytes that decides a vector: the cache key parameters.

    Parameters
    ----------
    layer, pooling, image_size, background, fit, trim, normalize, precision
        As in :func:`embed_images`.
    weights : str, optional
        The weights id; default :func:`weights_id` (the digest of the weights actually used,
        so vectors from different weights never mix in the cache).

    Returns
    -------
    dict, JSON-serialisable; ``precision`` ``"int8"`` adds ``quantization`` (the quantization
    recipe and the digest of its calibration images).
    """
    params: dict[str, Any] = {
        "weights_id": weights or weights_id(),
        "layer": layer,
        "pooling": pooling,
        "image_size": int(image_size),
        "background": background,
        "fit": fit,
        "trim": bool(trim),
        "normalize": bool(normalize),
        "precision": precision,
        "preprocess_version": PREPROCESS_VERSION,
    }
    if precision == "int8":
        params["quantization"] = _quantization_id()
    return params


def params_hash(params: dict[str, Any]) -> str:
    """Short stable hash of ``params`` (names the cache folder)."""
    blob = json.dumps(params, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class VectorCache:
    """One ``.npy`` file per image id under ``root/<id[:2]>/<id>.npy``.

    Writes go to a temporary file in the same folder and are renamed into place, so two runs
    sharing the cache never see a half-written vector; a damaged file reads as a miss.
    """

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def _path(self, image_id: str) -> Path:
        return self.root / image_id[:2] / f"{image_id}.npy"

    def has(self, image_id: str) -> bool:
        """True when a vector file exists for ``image_id`` (it may still be unreadable)."""
        return self._path(image_id).is_file()

    def get(self, image_id: str, dim: int | None = None) -> np.ndarray | None:
        """The cached vector (float32, 1-D), or None if missing or unreadable."""
        p = self._path(image_id)
        try:
            v = np.load(p, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        if v.ndim != 1 or v.dtype != np.float32 or (dim is not None and v.shape[0] != dim):
            return None
        if not np.isfinite(v).all():
            return None
        return v

    def put(self, image_id: str, vector: np.ndarray) -> None:
        """Store ``vector`` for ``image_id`` atomically."""
        buf = io.BytesIO()
        np.save(buf, np.asarray(vector, dtype=np.float32).ravel(), allow_pickle=False)
        # no fsync: a vector lost in a crash is only recomputed
        storage.atomic_write_bytes(self._path(image_id), buf.getvalue(), fsync=False)


# -- the network ----------------------------------------------------------------------------


def feature_map_shape(layer: str, image_size: int) -> tuple[int, int, int]:
    """Shape ``(h, w, c)`` of VGG16's ``layer`` output for a square input of ``image_size``.

    Raises
    ------
    ConfigError
        If ``layer`` is unknown, or ``image_size`` is too small for it (empty feature map).
    """
    from .weights import CONV_LAYERS, VGG16_LAYERS

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


def output_dim(layer: str, image_size: int, pooling: str) -> int:
    """Length of the vector for this ``layer``, ``image_size`` and ``pooling``."""
    _check_choice("pooling", pooling, POOLINGS)
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
    from .paths import DEMO_DIR

    out: list[Path] = []
    for pattern in ("logos/*.png", "shop/*.jpg"):
        files = sorted(DEMO_DIR.glob(pattern))
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
def _quantization_id() -> str:
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
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "embeddings"
    name = f"vgg16-{weights_id()}-{layer}-{int(image_size)}px-{_quantization_id()}.onnx"
    return root / "models" / name


def build_int8_model(
    *,
    layer: str = "block5_pool",
    image_size: int = 224,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> Path:
    """Statically quantize VGG16 to int8 with ONNX Runtime; return the cached model's path.

    The float graph is :func:`lookalike.weights.vgg16_onnx` (the same verified weights).
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

    from .weights import vgg16_onnx

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
    from .weights import VGG16_LAYERS

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
        Default ``"keras"`` for fp32 and bf16, ``"onnxruntime"`` for int8 (the only choice for
        it). ``"onnxruntime"`` with fp32 runs :func:`lookalike.weights.vgg16_onnx`.
    cache_dir : path, optional
        Where the int8 model is kept (``cache_dir/models``); as in :func:`embed_images`.
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
    _check_choice("precision", precision, PRECISIONS)
    feature_map_shape(layer, max(int(image_size), 32))  # validates the layer name
    default = "onnxruntime" if precision == "int8" else "keras"
    backend = backend or default
    _check_choice("backend", backend, ("keras", "onnxruntime"))
    if (precision == "int8") != (backend == "onnxruntime") and precision != "fp32":
        raise ConfigError(
            f"precision={precision!r} runs on backend {default!r}, not {backend!r}; "
            "leave backend unset"
        )
    if backend == "keras":
        from .weights import load_vgg16

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
        from .weights import vgg16_onnx

        model = vgg16_onnx(layer=layer, info=_weights_info())
        session = _ort_session(model.SerializeToString(), threads=threads)
    return FeatureExtractor(
        lambda x: session.run(["features"], {"input": x})[0],
        layer=layer,
        precision=precision,
        backend=backend,
    )


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


# -- streaming feature maps -------------------------------------------------------------------


def _lower_priority() -> None:
    """Nice the calling decode thread so it never preempts the model's own threads.

    On a small CPU a decode thread that steals a core from a running convolution stalls all
    of that op's threads; niced, decoding fills the gaps between batches instead. Linux only
    (there ``setpriority`` on a thread id affects just that thread); elsewhere a no-op.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):
        pass


def _prefetch(
    items: Iterable[Any], fn: Callable[[Any], Any], *, workers: int, lookahead: int
) -> Iterator[tuple[Any, Any, BaseException | None]]:
    """Yield ``(item, fn(item), None)`` or ``(item, None, error)`` in input order.

    Up to ``lookahead`` items are decoded ahead on ``workers`` threads while the caller
    (the model) works, so inference never waits on a Python decode loop.
    """
    it = iter(items)
    if workers <= 0:
        for item in it:
            try:
                yield item, fn(item), None
            except Exception as e:
                yield item, None, e
        return
    with ThreadPoolExecutor(
        max_workers=workers, thread_name_prefix="embed-decode", initializer=_lower_priority
    ) as ex:
        pending = deque((item, ex.submit(fn, item)) for item in islice(it, max(1, lookahead)))
        try:
            while pending:
                item, fut = pending.popleft()
                for nxt in islice(it, 1):
                    pending.append((nxt, ex.submit(fn, nxt)))
                try:
                    yield item, fut.result(), None
                except Exception as e:
                    yield item, None, e
        finally:
            for _, fut in pending:
                fut.cancel()


def feature_batches(
    items: Sequence[Any],
    load: Callable[[Any], np.ndarray],
    extractor: Callable[[np.ndarray], np.ndarray],
    *,
    batch_size: int = 32,
    workers: int = 2,
    progress: bool = True,
    desc: str = "embed",
) -> Iterator[tuple[list[int], np.ndarray | None, list[tuple[int, BaseException]]]]:
    """Run ``extractor`` over ``items`` in batches, decoding ahead on worker threads.

    Parameters
    ----------
    items : sequence
        Anything ``load`` takes (paths, bytes, row numbers).
    load : callable
        ``load(item)`` returns one image of shape (h, w, 3), RGB 0..255 (e.g.
        :func:`load_for_embedding`), or raises for a bad item; every image has the same shape.
        It runs on the worker threads, as does :func:`prepare`.
    extractor : callable
        A :class:`FeatureExtractor` (or any batch function of the prepared images).
    batch_size : int, default 32
    workers : int, default 2
        Decoding threads, niced below the model's (0: decode in the calling thread).
    progress : bool, default True
        A tqdm bar in images per second.

    Yields
    ------
    positions : list of int
        Positions in ``items`` of the rows of ``features``.
    features : ndarray of shape (len(positions), h', w', c), or None when a batch held only
        failures
    errors : list of (position, exception)
        Items whose ``load`` raised since the previous batch; they are counted on the bar.
    """
    from tqdm.auto import tqdm

    def work(i: int) -> np.ndarray:
        return prepare(load(items[i]))

    batch: np.ndarray | None = None
    positions: list[int] = []
    errors: list[tuple[int, BaseException]] = []
    with tqdm(total=len(items), unit="img", desc=desc, disable=not progress) as bar:
        stream = _prefetch(range(len(items)), work, workers=workers, lookahead=2 * batch_size)
        for i, arr, err in stream:
            if err is not None:
                errors.append((i, err))
                bar.update(1)
            else:
                if batch is None or batch.shape[1:] != arr.shape:
                    if positions:  # a different shape: finish the batch so far first
                        yield positions, extractor(batch[: len(positions)]), errors
                        bar.update(len(positions))
                        positions, errors = [], []
                    batch = np.empty((batch_size, *arr.shape), dtype=np.float32)
                batch[len(positions)] = arr
                positions.append(i)
            if len(positions) == batch_size:
                yield positions, extractor(batch), errors
                bar.update(len(positions))
                positions, errors = [], []
        if positions or errors:
            feats = extractor(batch[: len(positions)]) if positions else None
            yield positions, feats, errors
            bar.update(len(positions))


# -- the stage ----------------------------------------------------------------------------


def _error_text(e: BaseException) -> str:
    if isinstance(e, ImageError):
        return str(e) or "ImageError"
    return f"{type(e).__name__}: {e}"


def _manifest_fingerprint(rows: pd.DataFrame) -> str:
    h = hashlib.sha256()
    for image_id, path in zip(rows["image_id"], rows["path"], strict=True):
        h.update(f"{image_id}\t{path}\n".encode())
    return h.hexdigest()


def _candidate_rows(run_dir: Path) -> pd.DataFrame:
    """Manifest rows to embed: ``ok`` ones, and ones this stage failed before (retried).

    One row per image id, in manifest order.
    """
    df = storage.read_manifest(run_dir)
    ours = df["error"].fillna("").str.startswith(EMBED_ERROR_PREFIX)
    keep = (df["status"] == "ok") | ((df["status"] == "failed") & ours)
    keep &= df["image_id"].notna() & (df["image_id"].fillna("") != "")
    return df[keep].drop_duplicates("image_id").reset_index(drop=True)


def _mark_manifest(run_dir: Path, failed: dict[str, str]) -> int:
    """Record this run's failures in ``RUN/images.parquet``; return the rows changed.

    Rows of images that failed here get ``status="failed"`` and ``error="embed: <reason>"``;
    rows this stage failed in an earlier run that worked now go back to ``ok``.
    """
    df = storage.read_manifest(run_dir)
    ids = df["image_id"].fillna("")
    ours = (df["status"] == "failed") & df["error"].fillna("").str.startswith(EMBED_ERROR_PREFIX)
    errors = ids.map(failed).astype("string")
    fail = ((df["status"] == "ok") | ours) & errors.notna()
    recovered = ours & errors.isna() & (ids != "")
    status = df["status"].mask(fail, "failed").mask(recovered, "ok")
    error = df["error"].mask(fail, EMBED_ERROR_PREFIX + errors).mask(recovered, pd.NA)
    changed = (status != df["status"]) | (error.fillna("") != df["error"].fillna(""))
    if not changed.any():
        return 0
    df["status"], df["error"] = status, error
    storage.write_table(df, storage.manifest_path(run_dir))
    return int(changed.sum())


def _read_state(state_path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(state_path.read_text())
    except (OSError, ValueError):
        return None


def _load_row(run_dir: Path, path: str, image_id: str, **preprocessing: Any) -> np.ndarray:
    """Read a manifest row's file, check it is still the image of ``image_id``, load it."""
    data = storage.image_abspath(run_dir, path).read_bytes()
    if storage.sha256_bytes(data) != image_id:
        raise ImageError(
            "changed: the file's sha256 differs from its image_id (it changed after it was "
            "added to the manifest); re-run the stage that produced it"
        )
    return load_for_embedding(data, **preprocessing)


def _existing_is_current(
    emb_dir: Path, run_dir: Path, state: dict[str, Any], preprocessing: dict[str, Any]
) -> bool:
    """True when ``RUN/embeddings`` was made from the same rows and parameters, and every
    image that failed then still fails (a fixed file is picked up, never a stale failure)."""
    old = _read_state(emb_dir / "state.json")
    if old is None or any(old.get(k) != state[k] for k in ("params", "manifest")):
        return False
    try:
        ids, vectors = storage.read_embeddings(run_dir)
        failed = storage.read_table(emb_dir / "failed.parquet", required=["image_id", "path"])
    except Exception:
        return False
    current = vectors.shape == (old.get("n_vectors"), old.get("dim"))
    del vectors  # release the memory map before the folder may be replaced
    if not current or len(ids) != old.get("n_vectors") or len(failed) != old.get("n_failed"):
        return False
    for image_id, path in zip(failed["image_id"], failed["path"], strict=True):
        try:
            _load_row(run_dir, path, image_id, **preprocessing)
        except Exception:
            continue
        return False  # it works now: rebuild (every other vector comes from the cache)
    return True


_TMP_PREFIX = ".embeddings-tmp-"
_OLD_PREFIX = ".embeddings.old-"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but is not ours
        return True
    return True


def _remove_stale_temp_dirs(parent: Path) -> int:
    """Delete ``.embeddings-*`` folders left by a run that crashed (its process is gone)."""
    removed = 0
    for d in parent.glob(".embeddings*"):
        name = d.name
        if name.startswith(_TMP_PREFIX):
            pid = name[len(_TMP_PREFIX) :].split("-", 1)[0]
        elif name.startswith(_OLD_PREFIX):
            pid = name[len(_OLD_PREFIX) :].split("-", 1)[0]
        elif name.startswith(".embeddings-"):
            pid = ""  # named by an earlier version, without the owner's pid
        else:
            continue
        if not d.is_dir() or (pid.isdigit() and _pid_alive(int(pid))):
            continue  # a live run (this one or another) is writing it
        shutil.rmtree(d, ignore_errors=True)
        removed += 1
    return removed


class _NpyRows:
    """A float32 ``(n, d)`` ``.npy`` file filled row by row with plain file writes.

    Not a memory map on purpose: pages written through a map stay mapped into the process and
    count in its resident memory, which would then grow with the number of images; written
    with ``write``, they are only the kernel's page cache. Readers open it with
    ``np.load(..., mmap_mode="r")``.
    """

    def __init__(self, path: Path, n: int, d: int):
        header = open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))  # sparse file
        self._offset, self._row = header.offset, d * 4
        del header
        self._f = open(path, "r+b")  # noqa: SIM115 (closed by close())

    def write(self, i: int, v: np.ndarray) -> None:
        self.write_block(i, np.asarray(v)[None])

    def write_block(self, i: int, block: np.ndarray) -> None:
        """Write rows ``i, i+1, ...`` from ``block`` of shape (m, d)."""
        self._f.seek(self._offset + i * self._row)
        self._f.write(np.ascontiguousarray(block, dtype="<f4").tobytes())

    def chunks(self, keep: np.ndarray, rows: int = 4096) -> Iterator[np.ndarray]:
        """The rows where ``keep`` is True, in order, ``rows`` rows read at a time."""
        self._f.flush()
        d = self._row // 4
        for start in range(0, len(keep), rows):
            stop = min(start + rows, len(keep))
            self._f.seek(self._offset + start * self._row)
            buf = np.frombuffer(self._f.read((stop - start) * self._row), dtype="<f4")
            yield buf.reshape(-1, d)[keep[start:stop]]

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()


def _swap_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Replace ``final_dir`` by ``tmp_dir`` (two renames; a crash leaves no mixed folder)."""
    old = None
    if final_dir.exists():
        old = final_dir.with_name(f"{_OLD_PREFIX}{os.getpid()}-{time.time_ns()}")
        os.replace(final_dir, old)
    os.replace(tmp_dir, final_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def embed_images(
    run_dir: str | os.PathLike[str],
    *,
    batch_size: int = 32,
    image_size: int = 224,
    pooling: str = "max",
    layer: str = "block5_pool",
    normalize: bool = True,
    background: str = "white",
    fit: str = "pad",
    trim: bool = False,
    precision: str = "fp32",
    cache_dir: str | os.PathLike[str] | None = None,
    workers: int = 2,
    force: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Embed the images of ``RUN/images.parquet`` with VGG16 and write ``RUN/embeddings/``.

    Parameters
    ----------
    run_dir : str or Path
        The run folder.
    batch_size : int, default 32
        Images per forward pass.
    image_size : int, default 224
        Side of the square network input, in pixels. Smaller is much faster (the work grows
        with its square) and is fine for small logos; at least 32 for ``block5_pool``.
    pooling : {"max", "avg", "gem", "flatten"}, default "max"
        How the ``layer`` feature map (7x7x512 for ``block5_pool`` at 224) becomes a vector:
        512-d for max/avg/gem, h*w*512 (25,088 at 224) for flatten. Max pooling is the default
        because it scored best of the 512-d options on three labelled sets in
        ``benchmarks/quality.py`` (see notebook 03); flatten is 49 times larger.
    layer : str, default "block5_pool"
        VGG16 layer whose output is pooled (``block4_pool``, ``block5_conv3``, ...).
    normalize : bool, default True
        Scale every vector to unit L2 norm.
    background, fit, trim
        See :func:`load_for_embedding`.
    precision : {"fp32", "bf16", "int8"}, default "fp32"
        See :func:`load_extractor`. int8 is the fast path (several times faster on CPUs with
        VNNI; ``benchmarks/embed.py`` measures speed and agreement with fp32).
    cache_dir : str or Path, optional
        Root of the vector cache; vectors go under ``cache_dir/<params hash>/``, int8 models
        under ``cache_dir/models/``. Default ``default_cache_dir() / "embeddings"``.
    workers : int, default 2
        Decoding threads (0 decodes in the calling thread).
    force : bool, default False
        Rebuild ``RUN/embeddings/`` even when it matches the manifest (the cache still serves).
    progress : bool, default True
        Show a progress bar.

    Returns
    -------
    dict with ``n_images`` (images considered: ``ok`` rows plus rows this stage failed
    before, which are retried), ``embedded`` (rows of ``vectors.npy``), ``computed`` (run
    through the model now), ``cached`` (served without computing), ``failed``, so that
    ``embedded == computed + cached`` and ``n_images == embedded + failed``; ``reused`` (True
    when the existing output was current and was kept as is), ``dim``, ``precision``,
    ``backend``, ``seconds`` (wall), ``images_per_s`` (computed images per second of the
    inference phase, model loading excluded), ``manifest_updated`` (rows whose status this
    run changed), ``param_hash``, ``cache_dir``, ``vectors_path``.

    Notes
    -----
    Outputs, written into a temporary folder and swapped in at the end:
    ``vectors.npy`` float32 (n_ok, dim), filled chunk by chunk through a memory map;
    ``ids.parquet`` (image_id, path, source), row i describing vector i, in manifest order;
    ``failed.parquet`` (image_id, path, error); ``state.json`` (parameters and manifest
    fingerprint, for resume). Images that fail get ``status="failed"`` and
    ``error="embed: <reason>"`` in ``RUN/images.parquet``. Temporary folders left by a crashed
    run are removed.
    """
    t0 = time.perf_counter()
    _check_choice("pooling", pooling, POOLINGS)
    _check_choice("precision", precision, PRECISIONS)
    size = _check_preprocessing(image_size, background, fit)
    if isinstance(batch_size, bool) or int(batch_size) < 1:
        raise ConfigError(f"batch_size={batch_size!r} must be >= 1")
    dim = output_dim(layer, size, pooling)  # also rejects a bad layer or too small a size

    run_dir = resolve(run_dir)
    rows = _candidate_rows(run_dir)
    if rows.empty:
        raise ManifestError(
            f"no images to embed: {storage.manifest_path(run_dir)} has no rows with status 'ok'; "
            "run stage 01, 02 or the folder import first"
        )
    params = embedding_params(
        layer=layer,
        pooling=pooling,
        image_size=size,
        background=background,
        fit=fit,
        trim=trim,
        normalize=normalize,
        precision=precision,
    )
    phash = params_hash(params)
    cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "embeddings"
    cache = VectorCache(cache_root / phash)
    vec_path, ids_path = storage.embeddings_paths(run_dir)
    emb_dir = vec_path.parent
    state = {"params": params, "manifest": _manifest_fingerprint(rows)}

    summary: dict[str, Any] = {
        "n_images": len(rows),
        "embedded": 0,
        "computed": 0,
        "cached": 0,
        "failed": 0,
        "reused": False,
        "dim": dim,
        "precision": precision,
        "backend": "onnxruntime" if precision == "int8" else "keras",
        "seconds": 0.0,
        "images_per_s": 0.0,
        "manifest_updated": 0,
        "param_hash": phash,
        "cache_dir": str(cache.root),
        "vectors_path": str(vec_path),
    }

    emb_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temp_dirs(emb_dir.parent)
    preprocessing = {"image_size": size, "background": background, "fit": fit, "trim": trim}
    if not force and _existing_is_current(emb_dir, run_dir, state, preprocessing):
        old = _read_state(emb_dir / "state.json") or {}
        summary.update(
            reused=True,
            embedded=int(old.get("n_vectors", 0)),
            cached=int(old.get("n_vectors", 0)),
            failed=int(old.get("n_failed", 0)),
            seconds=time.perf_counter() - t0,
        )
        _print_summary(summary)
        return summary

    n = len(rows)
    ids = rows["image_id"].tolist()
    paths = rows["path"].tolist()
    tmp_dir = Path(tempfile.mkdtemp(dir=emb_dir.parent, prefix=f"{_TMP_PREFIX}{os.getpid()}-"))
    out = None
    try:
        ok = np.zeros(n, dtype=bool)
        tmp_vec = tmp_dir / "all.npy"
        out = _NpyRows(tmp_vec, n, dim)
        # Cached vectors go straight to disk: nothing is held per image.
        misses = []
        for i, image_id in enumerate(ids):
            v = cache.get(image_id, dim)
            if v is None:
                misses.append(i)
            else:
                out.write(i, v)
                ok[i] = True
        summary["cached"] = int(ok.sum())

        failures: dict[int, str] = {}
        if misses:
            extractor = load_extractor(
                layer=layer,
                precision=precision,
                image_size=size,
                cache_dir=cache_root,
                progress=progress,
            )

            def load(i: int) -> np.ndarray:
                return _load_row(run_dir, paths[i], ids[i], **preprocessing)

            t_embed = time.perf_counter()
            stream = feature_batches(
                misses,
                load,
                extractor,
                batch_size=int(batch_size),
                workers=int(workers),
                progress=progress,
            )
            for positions, feats, errors in stream:
                for j, err in errors:
                    failures[misses[j]] = _error_text(err)
                if feats is None:
                    continue
                vecs = pool_features(feats, pooling)
                if normalize:
                    vecs = l2_normalize(vecs)
                for j, v in zip(positions, vecs, strict=True):
                    i = misses[j]
                    out.write(i, v)
                    ok[i] = True
                    cache.put(ids[i], v)
                summary["computed"] += len(positions)
            dt = time.perf_counter() - t_embed
            summary["images_per_s"] = summary["computed"] / dt if dt > 0 else 0.0
        n_ok = int(ok.sum())
        final_tmp = tmp_dir / vec_path.name
        if n_ok == n:
            out.close()
            os.replace(tmp_vec, final_tmp)
        else:  # drop the failed rows, chunk by chunk
            dst = _NpyRows(final_tmp, n_ok, dim)
            done = 0
            for chunk in out.chunks(ok):
                dst.write_block(done, chunk)
                done += len(chunk)
            dst.close()
            out.close()
            tmp_vec.unlink()

        kept = rows.loc[ok, ["image_id", "path", "source"]].reset_index(drop=True)
        storage.write_table(kept, tmp_dir / ids_path.name)
        failed_df = pd.DataFrame(
            [
                {"image_id": ids[i], "path": paths[i], "error": e}
                for i, e in sorted(failures.items())
            ],
            columns=["image_id", "path", "error"],
        ).astype("string")
        storage.write_table(failed_df, tmp_dir / "failed.parquet")
        summary["failed"] = len(failures)
        summary["embedded"] = n_ok
        state.update(n_vectors=n_ok, n_failed=len(failures), dim=int(dim))
        (tmp_dir / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True))
        _swap_dir(tmp_dir, emb_dir)
    except BaseException:
        if out is not None:
            out.close()
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    summary["manifest_updated"] = _mark_manifest(run_dir, {ids[i]: e for i, e in failures.items()})

    summary["seconds"] = time.perf_counter() - t0
    _print_summary(summary)
    return summary


def _print_summary(s: dict[str, Any]) -> None:
    n = s["n_images"]
    rate = 100.0 * s["embedded"] / n if n else 0.0
    how = " (reused existing embeddings)" if s["reused"] else ""
    print(
        f"embed: {s['embedded']}/{n} images embedded ({rate:.1f}%): computed {s['computed']}, "
        f"cached {s['cached']}, failed {s['failed']}; dim {s['dim']}, {s['precision']} "
        f"({s['backend']}); {s['seconds']:.1f} s, {s['images_per_s']:.1f} images/s{how}"
    )
