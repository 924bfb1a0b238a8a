"""Stage 03: turn every image of a run into one VGG16 feature vector.

Two layers:

* :func:`load_for_embedding` decodes one image safely and makes it a square RGB array the
  network can take: EXIF orientation, first frame of animations, every Pillow mode (palette
  with transparency, 16-bit, float, CMYK, ...), alpha composited on a chosen background, and
  the aspect ratio kept by padding (or stretched, like the original notebooks).
* :func:`embed_images` runs VGG16 on the ``ok`` images of ``RUN/images.parquet`` in batches,
  with decoding overlapped on a small thread pool, and writes ``RUN/embeddings/``. Vectors are
  cached per image (the image id is the sha256 of its bytes) under the shared cache, so a
  re-run, or a run that shares images with an earlier one, computes only what is new.
"""

from __future__ import annotations

import hashlib
import io as _stdio
import json
import os
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.lib.format import open_memmap
from PIL import Image, ImageOps

from . import io
from .exceptions import ConfigError, ImageError, ManifestError
from .paths import default_cache_dir, resolve

BACKGROUNDS = ("white", "black", "auto")
FITS = ("pad", "stretch")
POOLINGS = ("avg", "max", "gem", "flatten")

#: Exponent of generalized-mean pooling (Radenovic et al. 2018 use p=3 for retrieval).
GEM_P = 3.0

#: Mean luma (0..255, Rec. 601) of the opaque artwork above which ``background="auto"`` picks
#: black: light artwork (a white logo on transparency) would vanish on white.
AUTO_LIGHT_LUMA = 186.0

#: Bump when the preprocessing changes in a way that changes vectors: invalidates the cache.
PREPROCESS_VERSION = 1

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

            src = ImageCms.ImageCmsProfile(_stdio.BytesIO(icc))
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


def _composite(img: Image.Image, bg: tuple[float, float, float]) -> np.ndarray:
    """RGB float32 array of ``img`` laid over a solid ``bg`` colour."""
    a = np.asarray(img, dtype=np.float32)
    if img.mode != "RGBA":
        return a[..., :3]
    alpha = a[..., 3:4] / 255.0
    return a[..., :3] * alpha + np.asarray(bg, dtype=np.float32) * (1.0 - alpha)


def load_for_embedding(
    path_or_bytes: str | os.PathLike[str] | bytes,
    *,
    image_size: int = 224,
    background: str = "white",
    fit: str = "pad",
) -> np.ndarray:
    """Decode one image and make it the square RGB input VGG16 expects.

    Parameters
    ----------
    path_or_bytes : path or bytes
        The image file, or its bytes. Decoded by :func:`lookalike.images.decode_image`, which
        refuses corrupt files, HTML pages and decompression bombs.
    image_size : int, default 224
        Side of the output square, in pixels.
    background : {"white", "black", "auto"}, default "white"
        Colour that transparent pixels and the padding become. ``"auto"`` picks black for light
        artwork on transparency (a white logo stays visible) and white otherwise.
    fit : {"pad", "stretch"}, default "pad"
        ``"pad"`` keeps the aspect ratio and pads to a square with the background colour;
        ``"stretch"`` resizes straight to the square, like the original notebooks.

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
    _check_choice("background", background, BACKGROUNDS)
    _check_choice("fit", fit, FITS)
    if int(image_size) < 1:
        raise ConfigError(f"image_size={image_size!r} must be a positive number of pixels")
    size = int(image_size)

    img = _decode(path_or_bytes)
    try:
        img = to_rgba(_first_frame_upright(img))
        if img.width < 1 or img.height < 1:
            raise ImageError(f"empty image ({img.width}x{img.height} pixels)")
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

    bg_name = pick_background(img) if background == "auto" else background
    bg = _COLOR[bg_name]
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


def pool_features(fmap: np.ndarray, pooling: str = "avg") -> np.ndarray:
    """Pool a batch of feature maps to vectors.

    Parameters
    ----------
    fmap : ndarray of shape (n, h, w, c), or (n, d) (returned unchanged)
    pooling : {"avg", "max", "gem", "flatten"}
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


# -- per-image vector cache ---------------------------------------------------------------


def embedding_params(
    *,
    layer: str = "block5_pool",
    pooling: str = "avg",
    image_size: int = 224,
    background: str = "white",
    fit: str = "pad",
    normalize: bool = True,
) -> dict[str, Any]:
    """Everything besides the image bytes that decides a vector: the cache key parameters."""
    from .weights import WEIGHTS_ID

    return {
        "weights_id": WEIGHTS_ID,
        "layer": layer,
        "pooling": pooling,
        "image_size": int(image_size),
        "background": background,
        "fit": fit,
        "normalize": bool(normalize),
        "preprocess_version": PREPROCESS_VERSION,
    }


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
        p = self._path(image_id)
        p.parent.mkdir(parents=True, exist_ok=True)
        buf = _stdio.BytesIO()
        np.save(buf, np.asarray(vector, dtype=np.float32).ravel(), allow_pickle=False)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(buf.getvalue())
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


# -- the stage ----------------------------------------------------------------------------


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


def _error_text(e: BaseException) -> str:
    if isinstance(e, ImageError):
        return str(e) or "ImageError"
    return f"{type(e).__name__}: {e}"


def _manifest_fingerprint(rows: pd.DataFrame) -> str:
    h = hashlib.sha256()
    for image_id, path in zip(rows["image_id"], rows["path"], strict=True):
        h.update(f"{image_id}\t{path}\n".encode())
    return h.hexdigest()


def _read_state(state_path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(state_path.read_text())
    except (OSError, ValueError):
        return None


def _existing_is_current(emb_dir: Path, run_dir: Path, state: dict[str, Any]) -> bool:
    old = _read_state(emb_dir / "state.json")
    if old is None or any(old.get(k) != state[k] for k in ("params", "manifest")):
        return False
    try:
        ids, vectors = io.read_embeddings(run_dir)
    except Exception:
        return False
    current = vectors.shape == (old.get("n_vectors"), old.get("dim"))
    del vectors  # release the memory map before the folder may be replaced
    return current and len(ids) == old.get("n_vectors") and (emb_dir / "failed.parquet").exists()


def _swap_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Replace ``final_dir`` by ``tmp_dir`` (two renames; a crash leaves no mixed folder)."""
    old = None
    if final_dir.exists():
        old = final_dir.with_name(f".{final_dir.name}.old-{os.getpid()}-{time.time_ns()}")
        os.replace(final_dir, old)
    os.replace(tmp_dir, final_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _output_dim(model: Any, *, layer: str, image_size: int, pooling: str) -> int:
    """Vector length for this model, input size and pooling, without running the model."""
    too_small = ConfigError(
        f"image_size={image_size} is too small for layer={layer!r} (its feature map would be "
        "empty); use image_size >= 32, 224 being VGG16's own"
    )
    try:
        shape = tuple(model.compute_output_shape((1, image_size, image_size, 3)))
    except ValueError as e:  # Keras: "Computed output size would be zero or negative"
        raise too_small from e
    if len(shape) == 4 and min(shape[1:3]) < 1:
        raise too_small
    return int(pool_features(np.zeros(shape, dtype=np.float32), pooling).shape[1])


def embed_images(
    run_dir: str | os.PathLike[str],
    *,
    batch_size: int = 32,
    image_size: int = 224,
    pooling: str = "avg",
    layer: str = "block5_pool",
    normalize: bool = True,
    background: str = "white",
    fit: str = "pad",
    cache_dir: str | os.PathLike[str] | None = None,
    workers: int = 2,
    force: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Embed the ``ok`` images of ``RUN/images.parquet`` with VGG16 and write ``RUN/embeddings/``.

    Parameters
    ----------
    run_dir : str or Path
        The run folder.
    batch_size : int, default 32
        Images per forward pass.
    image_size : int, default 224
        Side of the square network input, in pixels.
    pooling : {"avg", "max", "gem", "flatten"}, default "avg"
        How the ``layer`` feature map (7x7x512 for ``block5_pool`` at 224) becomes a vector:
        512-d for avg/max/gem, h*w*512 for flatten.
    layer : str, default "block5_pool"
        VGG16 layer whose output is pooled.
    normalize : bool, default True
        Scale every vector to unit L2 norm.
    background, fit : str
        See :func:`load_for_embedding`.
    cache_dir : str or Path, optional
        Root of the vector cache; vectors go under ``cache_dir/<params hash>/``. Default
        ``default_cache_dir() / "embeddings"``.
    workers : int, default 2
        Decoding threads (0 decodes in the calling thread).
    force : bool, default False
        Rebuild ``RUN/embeddings/`` even when it matches the manifest (the cache still serves).
    progress : bool, default True
        Show a progress bar.

    Returns
    -------
    dict with ``n_images`` (ok rows in the manifest), ``embedded`` (rows of ``vectors.npy``),
    ``computed`` (run through the model now), ``cached`` (served without computing),
    ``failed``, so that ``embedded == computed + cached`` and ``n_images == embedded +
    failed``; ``reused`` (True when the existing output was current and was kept as is),
    ``dim``, ``seconds`` (wall), ``images_per_s`` (computed images per second of the inference
    phase, model loading excluded), ``param_hash``, ``cache_dir``, ``vectors_path``.

    Notes
    -----
    Outputs, written into a temporary folder and swapped in at the end:
    ``vectors.npy`` float32 (n_ok, dim); ``ids.parquet`` (image_id, path, source), row i
    describing vector i, in manifest order; ``failed.parquet`` (image_id, path, error);
    ``state.json`` (parameters and manifest fingerprint, for resume).
    """
    t0 = time.perf_counter()
    _check_choice("pooling", pooling, POOLINGS)
    _check_choice("background", background, BACKGROUNDS)
    _check_choice("fit", fit, FITS)
    if int(batch_size) < 1:
        raise ConfigError(f"batch_size={batch_size!r} must be >= 1")

    run_dir = resolve(run_dir)
    rows = io.read_manifest(run_dir, ok_only=True)
    rows = rows[rows["image_id"].notna() & (rows["image_id"] != "")].reset_index(drop=True)
    params = embedding_params(
        layer=layer,
        pooling=pooling,
        image_size=image_size,
        background=background,
        fit=fit,
        normalize=normalize,
    )
    phash = params_hash(params)
    cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "embeddings"
    cache = VectorCache(cache_root / phash)
    vec_path, ids_path = io.embeddings_paths(run_dir)
    emb_dir = vec_path.parent
    state = {"params": params, "manifest": _manifest_fingerprint(rows)}

    summary: dict[str, Any] = {
        "n_images": len(rows),
        "embedded": 0,
        "computed": 0,
        "cached": 0,
        "failed": 0,
        "reused": False,
        "dim": None,
        "seconds": 0.0,
        "images_per_s": 0.0,
        "param_hash": phash,
        "cache_dir": str(cache.root),
        "vectors_path": str(vec_path),
    }

    if not force and _existing_is_current(emb_dir, run_dir, state):
        old = _read_state(emb_dir / "state.json") or {}
        summary.update(
            reused=True,
            embedded=int(old.get("n_vectors", 0)),
            cached=int(old.get("n_vectors", 0)),
            failed=int(old.get("n_failed", 0)),
            dim=old.get("dim"),
            seconds=time.perf_counter() - t0,
        )
        _print_summary(summary)
        return summary

    # Cache look-up first: if everything is cached the model is never even loaded.
    n = len(rows)
    ids_list = rows["image_id"].tolist()
    hits: dict[int, np.ndarray] = {}
    dim: int | None = None
    for i, image_id in enumerate(ids_list):
        v = cache.get(image_id, dim)
        if v is not None:
            hits[i] = v
            dim = dim or v.shape[0]
    misses = [i for i in range(n) if i not in hits]

    model = None
    if misses:
        from .weights import load_vgg16

        model = load_vgg16(layer=layer)
        model_dim = _output_dim(model, layer=layer, image_size=int(image_size), pooling=pooling)
        if dim is not None and dim != model_dim:  # stale cache entries of another shape
            misses = sorted(misses + list(hits))
            hits = {}
        dim = model_dim
    if dim is None:
        raise ManifestError(
            f"no images to embed: {io.manifest_path(run_dir)} has no rows with status 'ok'; "
            "run stage 01, 02 or the folder import first"
        )
    summary["dim"] = int(dim)

    emb_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(dir=emb_dir.parent, prefix=".embeddings-"))
    try:
        ok = np.zeros(n, dtype=bool)
        failures: list[dict[str, str]] = []
        tmp_vec = tmp_dir / "all.npy"
        mm = open_memmap(tmp_vec, mode="w+", dtype=np.float32, shape=(n, dim))
        for i, v in hits.items():
            mm[i] = v
            ok[i] = True
        summary["cached"] = len(hits)

        t_embed = time.perf_counter()
        if misses:
            computed, failures = _run_model(
                model,
                rows,
                misses,
                run_dir=run_dir,
                out=mm,
                ok=ok,
                cache=cache,
                batch_size=int(batch_size),
                image_size=int(image_size),
                background=background,
                fit=fit,
                pooling=pooling,
                normalize=normalize,
                workers=int(workers),
                progress=progress,
            )
            summary["computed"] = computed
            dt = time.perf_counter() - t_embed
            summary["images_per_s"] = computed / dt if dt > 0 else 0.0
        mm.flush()
        del mm

        n_ok = int(ok.sum())
        final_tmp = tmp_dir / vec_path.name
        if n_ok == n:
            os.replace(tmp_vec, final_tmp)
        else:  # drop failed rows, copying in chunks so memory stays flat
            src = np.load(tmp_vec, mmap_mode="r")
            dst = open_memmap(final_tmp, mode="w+", dtype=np.float32, shape=(n_ok, dim))
            keep = np.flatnonzero(ok)
            for s in range(0, n_ok, 4096):
                dst[s : s + 4096] = src[keep[s : s + 4096]]
            dst.flush()
            del dst, src
            tmp_vec.unlink()

        kept = rows.loc[ok, ["image_id", "path", "source"]].reset_index(drop=True)
        io.write_table(kept, tmp_dir / ids_path.name)
        failed_df = pd.DataFrame(failures, columns=["image_id", "path", "error"]).astype("string")
        io.write_table(failed_df, tmp_dir / "failed.parquet")
        summary["failed"] = len(failures)
        summary["embedded"] = n_ok
        state.update(n_vectors=n_ok, n_failed=len(failures), dim=int(dim))
        (tmp_dir / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True))
        _swap_dir(tmp_dir, emb_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise

    summary["seconds"] = time.perf_counter() - t0
    _print_summary(summary)
    return summary


def _run_model(
    model: Any,
    rows: pd.DataFrame,
    misses: list[int],
    *,
    run_dir: Path,
    out: np.ndarray,
    ok: np.ndarray,
    cache: VectorCache,
    batch_size: int,
    image_size: int,
    background: str,
    fit: str,
    pooling: str,
    normalize: bool,
    workers: int,
    progress: bool,
) -> tuple[int, list[dict[str, str]]]:
    """Decode ``misses`` on worker threads, run ``model`` batch by batch, fill ``out``."""
    from keras.applications.vgg16 import preprocess_input
    from tqdm.auto import tqdm

    ids = rows["image_id"].tolist()
    paths = rows["path"].tolist()

    def load(i: int) -> np.ndarray:
        data = io.image_abspath(run_dir, paths[i]).read_bytes()
        if io.sha256_bytes(data) != ids[i]:
            raise ImageError(
                "file changed since it was added to the manifest (sha256 differs from "
                "image_id); re-run the stage that produced it"
            )
        return load_for_embedding(data, image_size=image_size, background=background, fit=fit)

    failures: list[dict[str, str]] = []
    computed = 0
    batch_idx: list[int] = []
    batch = np.empty((batch_size, image_size, image_size, 3), dtype=np.float32)

    def flush() -> None:
        nonlocal computed
        if not batch_idx:
            return
        x = preprocess_input(batch[: len(batch_idx)].copy())
        vecs = pool_features(np.asarray(model.predict_on_batch(x)), pooling)
        if normalize:
            vecs = l2_normalize(vecs)
        for j, i in enumerate(batch_idx):
            out[i] = vecs[j]
            ok[i] = True
            cache.put(ids[i], vecs[j])
        computed += len(batch_idx)
        bar.update(len(batch_idx))
        batch_idx.clear()

    with tqdm(total=len(misses), unit="img", desc="embed", disable=not progress) as bar:
        for i, arr, err in _prefetch(misses, load, workers=workers, lookahead=2 * batch_size):
            if err is not None:
                failures.append({"image_id": ids[i], "path": paths[i], "error": _error_text(err)})
                bar.update(1)
                continue
            batch[len(batch_idx)] = arr
            batch_idx.append(i)
            if len(batch_idx) == batch_size:
                flush()
        flush()
    return computed, failures


def _print_summary(s: dict[str, Any]) -> None:
    n = s["n_images"]
    rate = 100.0 * s["embedded"] / n if n else 0.0
    how = " (reused existing embeddings)" if s["reused"] else ""
    print(
        f"embed: {s['embedded']}/{n} images embedded ({rate:.1f}%): computed {s['computed']}, "
        f"cached {s['cached']}, failed {s['failed']}; dim {s['dim']}; "
        f"{s['seconds']:.1f} s, {s['images_per_s']:.1f} images/s{how}"
    )
