"""Build the demo's query images under ``data/demo/queries/`` from the committed demo data.

Notebook 05's "Find look-alikes" section searches a demo run with them (``find_queries:
auto``). Run once by a developer; the output is committed::

    .venv/bin/python scripts/build_demo_queries.py

- ``queries/logos/``: the icon of three demo lockups (an icon on the left of a wordmark),
  cut out as the left square of the trimmed artwork (the square stage 03 embeds as the
  lockup's first part), and one of them recoloured (hue turned half way round);
- ``queries/catalog/``: two demo product photos, one mirrored, one cropped to its centre.

Deterministic: the same inputs give the same bytes (PNG and JPEG without timestamps).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "data" / "demo"

#: Demo lockups whose left square is their icon (checked by eye: bars, a boxed "Ki",
#: a spiral of dots), and the one recoloured.
LOCKUPS = ("iris", "kicad", "scrumalliance")
RECOLOURED = "kicad"
#: Hue turn of the recoloured copy, as a share of the colour wheel.
HUE_TURN = 0.5
#: Demo products with one photo each: (file, how it is changed).
PRODUCTS = (("broom.jpg", "flipped"), ("keyboard.jpg", "cropped"))
#: Share of each side the cropped photo keeps, around the centre.
CROP_KEEP = 0.7


def icon_crop(logo: Image.Image) -> Image.Image:
    """The left square of the artwork trimmed to its opaque pixels (RGBA)."""
    art = logo.convert("RGBA")
    art = art.crop(art.getchannel("A").getbbox())
    side = min(art.width, art.height)
    return art.crop((0, 0, side, side))


def hue_shift(img: Image.Image, turn: float) -> Image.Image:
    """``img`` with every hue turned by ``turn`` (0..1) of the wheel; alpha kept."""
    hsv = np.asarray(img.convert("RGB").convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int64) + int(round(turn * 256))) % 256
    out = Image.fromarray(hsv, "HSV").convert("RGBA")
    out.putalpha(img.getchannel("A"))
    return out


def centre_crop(img: Image.Image, keep: float) -> Image.Image:
    """The centre ``keep`` share of each side, resized back to the original size."""
    w, h = img.size
    dw, dh = round(w * (1 - keep) / 2), round(h * (1 - keep) / 2)
    return img.crop((dw, dh, w - dw, h - dh)).resize((w, h), Image.LANCZOS)


def build(out: Path = DEMO / "queries") -> list[Path]:
    """Write every query image under ``out`` (replacing its two folders); returns them."""
    written = []
    for kind in ("logos", "catalog"):
        shutil.rmtree(out / kind, ignore_errors=True)
        (out / kind).mkdir(parents=True)
    for slug in LOCKUPS:
        icon = icon_crop(Image.open(DEMO / "logos" / f"{slug}.png"))
        written.append(out / "logos" / f"{slug}-icon.png")
        icon.save(written[-1], optimize=True)
        if slug == RECOLOURED:
            written.append(out / "logos" / f"{slug}-icon-recoloured.png")
            hue_shift(icon, HUE_TURN).save(written[-1], optimize=True)
    for name, change in PRODUCTS:
        photo = Image.open(DEMO / "shop" / name).convert("RGB")
        photo = ImageOps.mirror(photo) if change == "flipped" else centre_crop(photo, CROP_KEEP)
        written.append(out / "catalog" / f"{Path(name).stem}-{change}.jpg")
        photo.save(written[-1], quality=90)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEMO / "queries", help="output folder")
    args = ap.parse_args(argv)
    for path in build(args.out):
        with Image.open(path) as im:
            print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {im.size}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
