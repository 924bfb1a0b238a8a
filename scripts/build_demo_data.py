"""Build the offline demo data under ``data/demo/`` from two npm packages.

Run once by a developer (not in CI); the output is committed::

    .venv/bin/python scripts/build_demo_data.py            # fetches the packages with `npm pack`
    .venv/bin/python scripts/build_demo_data.py --src-dir /tmp/demo_src   # reuse unpacked copies

Sources (registry packages only, pinned below):

- ``simple-icons`` (CC0 1.0): brand SVGs + their brand colour -> ``logos/<slug>.svg|.png``.
- ``@iconify-json/noto`` (Noto Emoji, Apache 2.0): product emoji -> ``shop/<file>.jpg``.

Everything is deterministic (sorted inputs, fixed seeds), so a rebuild gives the same files.
SVGs are rendered with ``resvg_py`` only after checking they reference nothing outside
themselves, and with an empty ``resources_dir``, so the renderer never loads anything else.
"""

from __future__ import annotations

import argparse
import colorsys
import csv
import hashlib
import io
import json
import random
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import resvg_py
from PIL import Image, ImageDraw, ImageFilter, ImageOps

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "data" / "demo"

SIMPLE_ICONS = ("simple-icons", "16.37.0")
NOTO = ("@iconify-json/noto", "1.2.9")

N_LOGOS = 300
LOGO_SIDE = 192
SHOP_SIDE = 256
SEED = 20240601

# Product emoji per shop category: visually distinct groups with many items each, so the
# clustering has real structure to find. ``variants`` says how each emoji becomes products.
CATEGORIES: dict[str, dict] = {
    "Clothing": {
        "variants": "colour3",
        "items": [
            "t-shirt", "jeans", "dress", "coat", "scarf", "gloves", "socks", "kimono", "sari",
            "bikini", "briefs", "shorts", "necktie", "lab-coat", "safety-vest", "womans-clothes",
            "one-piece-swimsuit", "running-shirt", "billed-cap", "top-hat", "womans-hat",
        ],
    },
    "Shoes": {
        "variants": "colour3",
        "items": [
            "running-shoe", "mans-shoe", "high-heeled-shoe", "womans-sandal", "womans-boot",
            "ballet-shoes", "flat-shoe", "hiking-boot", "thong-sandal", "ice-skate",
        ],
    },
    "Bags & accessories": {
        "variants": "colour3",
        "items": [
            "purse", "handbag", "clutch-bag", "backpack", "shopping-bags", "briefcase", "luggage",
            "glasses", "sunglasses", "goggles", "ring", "folding-hand-fan",
        ],
    },
    "Fruit": {
        "variants": "pack2",
        "items": [
            "banana", "cherries", "grapes", "green-apple", "red-apple", "kiwi-fruit", "lemon",
            "lime", "mango", "melon", "peach", "pear", "pineapple", "strawberry", "tangerine",
            "watermelon", "blueberries", "coconut", "tomato", "avocado",
        ],
    },
    "Vegetables": {
        "variants": "pack2",
        "items": [
            "bell-pepper", "broccoli", "carrot", "cucumber", "ear-of-corn", "eggplant", "garlic",
            "ginger-root", "hot-pepper", "leafy-green", "onion", "pea-pod", "potato",
            "root-vegetable", "brown-mushroom", "olive", "beans",
        ],
    },
    "Tools": {
        "variants": "pose2",
        "items": [
            "axe", "carpentry-saw", "clamp", "hammer", "hammer-and-wrench", "wrench", "screwdriver",
            "nut-and-bolt", "toolbox", "ladder", "shovel", "pick", "magnet", "gear", "hook",
            "straight-ruler", "triangular-ruler", "scissors", "flashlight", "broom", "bucket",
            "plunger", "paintbrush", "hammer-and-pick",
        ],
    },
    "Electronics": {
        "variants": "pose2",
        "items": [
            "laptop", "desktop-computer", "keyboard", "computer-mouse", "mobile-phone", "headphone",
            "camera", "video-camera", "television", "radio", "printer", "battery", "light-bulb",
            "telephone", "joystick", "video-game", "movie-camera", "fax-machine", "trackball",
            "studio-microphone",
        ],
    },
}  # fmt: skip

# Hue shifts (degrees) for colour variants; 0 keeps the original emoji colours. The variant is
# named after the dominant colour of the result (see ``colour_name``).
HUE_SHIFTS = [0, 150, 90, 240]
HUE_NAMES = [
    (15, "red"), (40, "orange"), (65, "yellow"), (160, "green"), (195, "teal"), (255, "blue"),
    (290, "purple"), (335, "pink"), (360, "red"),
]  # fmt: skip

_HEX_ATTR = re.compile(r'((?:fill|stroke|stop-color)=")#([0-9a-fA-F]{6}|[0-9a-fA-F]{3})(")')
_EXTERNAL_REF = re.compile(r"<image\b|<use\b[^>]*href=\"(?!#)|href=\"(?!#)|url\((?!#)|@import")


# --------------------------------------------------------------------------------------------
# helpers


def npm_fetch(src_dir: Path) -> dict[str, Path]:
    """``npm pack`` both packages into ``src_dir`` and unpack them; return package roots."""
    roots = {}
    src_dir.mkdir(parents=True, exist_ok=True)
    for name, version in (SIMPLE_ICONS, NOTO):
        dest = src_dir / name.replace("/", "__").lstrip("@")
        if not (dest / "package" / "package.json").exists():
            out = (
                subprocess.run(
                    ["npm", "pack", f"{name}@{version}", "--pack-destination", str(src_dir)],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            dest.mkdir(parents=True, exist_ok=True)
            with tarfile.open(src_dir / out) as tar:
                tar.extractall(dest, filter="data")
        meta = json.loads((dest / "package" / "package.json").read_text())
        if meta["version"] != version:
            sys.exit(f"{name}: found version {meta['version']!r} in {dest}, expected {version!r}")
        roots[name] = dest / "package"
    return roots


def dns_label(text: str) -> str:
    """Map a slug to a DNS-safe label ([a-z0-9-], no leading/trailing hyphen)."""
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return re.sub(r"-{2,}", "-", label)[:63]


def luminance(hex6: str) -> float:
    r, g, b = (int(hex6[i : i + 2], 16) / 255 for i in (0, 2, 4))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def render_svg(svg: str, side: int, empty_dir: str) -> Image.Image:
    """Render self-contained SVG markup to an RGBA image of ``side`` x ``side`` pixels."""
    if _EXTERNAL_REF.search(svg):
        raise ValueError("SVG references an external resource; refusing to render it")
    png = resvg_py.svg_to_bytes(
        svg_string=svg, width=side, height=side, skip_system_fonts=True, resources_dir=empty_dir
    )
    return Image.open(io.BytesIO(bytes(png))).convert("RGBA")


def shift_hue(body: str, degrees: float) -> str:
    """Rotate the hue of every literal colour in an SVG body (keeps lightness/saturation)."""
    if not degrees:
        return body

    def repl(m: re.Match) -> str:
        h = m.group(2)
        if len(h) == 3:
            h = "".join(c * 2 for c in h)
        r, g, b = (int(h[i : i + 2], 16) / 255 for i in (0, 2, 4))
        hh, ll, ss = colorsys.rgb_to_hls(r, g, b)
        if ss < 0.12:  # greys, black and white stay as they are (soles, laces, buckles)
            return m.group(0)
        r, g, b = colorsys.hls_to_rgb((hh + degrees / 360) % 1.0, ll, ss)
        return f'{m.group(1)}#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"'

    return _HEX_ATTR.sub(repl, body)


def colour_name(img: Image.Image) -> str:
    """Name the dominant hue of the opaque, saturated pixels of an RGBA image."""
    small = img.resize((64, 64))
    hsv = np.asarray(small.convert("RGB").convert("HSV")).reshape(-1, 3).astype(int)
    alpha = np.asarray(small.getchannel("A")).reshape(-1)
    keep = (alpha > 128) & (hsv[:, 1] > 80) & (hsv[:, 2] > 60)
    if keep.sum() < 200:
        return "grey"
    hist = np.bincount(hsv[keep, 0] * 36 // 256, minlength=36)
    hue = (int(hist.argmax()) + 0.5) * 10
    return next(name for limit, name in HUE_NAMES if hue <= limit)


def stable_int(*parts: object) -> int:
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:12], 16)


def save_jpeg(img: Image.Image, path: Path) -> None:
    img.convert("RGB").save(path, "JPEG", quality=82, optimize=True, progressive=False)


# --------------------------------------------------------------------------------------------
# logos


def build_logos(si_root: Path, out: Path, empty_dir: str) -> list[dict]:
    data = json.loads((si_root / "data" / "simple-icons.json").read_text())
    rows = []
    for icon in sorted(data, key=lambda x: x["slug"]):
        label = dns_label(icon["slug"])
        # Very light brand colours would be invisible on the white page the figures use.
        if not label or luminance(icon["hex"]) > 0.88:
            continue
        if not (si_root / "icons" / f"{icon['slug']}.svg").exists():
            continue
        rows.append({**icon, "slug": label, "si_slug": icon["slug"]})
    # de-duplicate labels (two slugs could map to the same label), then a fixed-seed sample
    seen: dict[str, dict] = {}
    for r in rows:
        seen.setdefault(r["slug"], r)
    pool = sorted(seen)
    chosen = sorted(random.Random(SEED).sample(pool, N_LOGOS))

    logo_dir = out / "logos"
    logo_dir.mkdir(parents=True, exist_ok=True)
    result = []
    for label in chosen:
        icon = seen[label]
        svg = (si_root / "icons" / f"{icon['si_slug']}.svg").read_text()
        svg = svg.replace("<svg ", f'<svg fill="#{icon["hex"]}" ', 1)
        (logo_dir / f"{label}.svg").write_text(svg)
        img = render_svg(svg, LOGO_SIDE, empty_dir)
        img.save(logo_dir / f"{label}.png", optimize=True)
        result.append({"slug": label, "title": icon["title"], "hex": icon["hex"]})
    return result


# --------------------------------------------------------------------------------------------
# shop


def product_photo(
    emoji: Image.Image, *, tint: tuple[int, int, int], scale: float, angle: float, count: int
) -> Image.Image:
    """Place the rendered emoji (RGBA) on a lightly tinted background with a soft shadow."""
    canvas = Image.new("RGB", (SHOP_SIDE, SHOP_SIDE), tint)
    side = int(SHOP_SIDE * scale)
    obj = emoji.resize((side, side), Image.LANCZOS)
    if angle:
        obj = obj.rotate(angle, resample=Image.BICUBIC, expand=False)
    if count == 1:
        spots = [((SHOP_SIDE - side) // 2, (SHOP_SIDE - side) // 2 - 6)]
    else:  # a "pack of three": overlapping copies, smaller
        side = int(SHOP_SIDE * 0.48)
        obj = emoji.resize((side, side), Image.LANCZOS)
        c = (SHOP_SIDE - side) // 2
        spots = [(c - 52, c + 18), (c + 52, c + 18), (c, c - 38)]
    shadow = Image.new("L", (SHOP_SIDE, SHOP_SIDE), 0)
    draw = ImageDraw.Draw(shadow)
    for x, y in spots:
        draw.ellipse((x + side * 0.15, y + side * 0.86, x + side * 0.85, y + side * 1.0), fill=70)
    shadow = shadow.filter(ImageFilter.GaussianBlur(7))
    canvas.paste((0, 0, 0), mask=shadow)
    for x, y in spots:
        canvas.paste(obj, (x, y), obj)
    return canvas


def build_shop(noto_root: Path, out: Path, empty_dir: str) -> list[dict]:
    icons = json.loads((noto_root / "icons.json").read_text())
    size = icons.get("width", 128)
    shop_dir = out / "shop"
    shop_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)

    products: list[dict] = []
    taken: set[str] = set()
    for category, spec in CATEGORIES.items():
        for name in spec["items"]:
            body = icons["icons"][name]["body"]
            nice = name.replace("-", " ").replace("mans ", "men's ").replace("womans ", "women's ")
            nice = nice[:1].upper() + nice[1:]
            kind = spec["variants"]
            if kind.startswith("colour"):
                variants = [{"hue": h} for h in HUE_SHIFTS[: int(kind[-1])]]
            elif kind == "pack2":
                variants = [
                    {"suffix": "", "title": nice, "count": 1},
                    {"suffix": "pack", "title": f"{nice}, pack of 3", "count": 3},
                ]
            else:  # pose2: same item, shot at another angle/zoom
                variants = [
                    {"suffix": "", "title": nice},
                    {"suffix": "pro", "title": f"{nice} pro", "angle": -14.0, "scale": 0.84},
                ]
            for v in variants:
                svg = (
                    f'<svg xmlns="http://www.w3.org/2000/svg" '
                    f'xmlns:xlink="http://www.w3.org/1999/xlink" viewBox="0 0 {size} {size}">'
                    f"{shift_hue(body, v.get('hue', 0))}</svg>"
                )
                emoji = render_svg(svg, 512, empty_dir)
                if "hue" in v:
                    colour = colour_name(emoji)
                    v["suffix"], v["title"] = colour, f"{nice}, {colour}"
                slug = dns_label(f"{name}-{v['suffix']}" if v["suffix"] else name)
                if slug in taken:  # the hue shift changed nothing visible (a grey item)
                    continue
                taken.add(slug)
                products.append(
                    {
                        "slug": slug,
                        "title": v["title"],
                        "category": category,
                        "emoji": name,
                        "emoji_img": emoji,
                        "count": v.get("count", 1),
                        "angle": v.get("angle", 0.0),
                        "scale": v.get("scale", 0.72),
                    }
                )

    rng.shuffle(products)  # the listing mixes categories, like an "all products" page
    rows = []
    for p in products:
        h = stable_int(p["slug"])
        base = 236 + h % 16
        tint = (base, base - (h >> 4) % 8, base - (h >> 8) % 10)
        main = product_photo(
            p["emoji_img"], tint=tint, scale=p["scale"], angle=p["angle"], count=p["count"]
        )
        files = [f"{p['slug']}.jpg"]
        save_jpeg(main, shop_dir / files[0])
        n_extra = (0, 0, 0, 0, 0, 0, 0, 1, 1, 2)[h % 10]  # 1-3 gallery images per product
        if n_extra >= 1:
            files.append(f"{p['slug']}-2.jpg")
            save_jpeg(ImageOps.mirror(main), shop_dir / files[-1])
        if n_extra >= 2:
            m = SHOP_SIDE // 6
            zoom = main.crop((m, m, SHOP_SIDE - m, SHOP_SIDE - m)).resize(
                (SHOP_SIDE, SHOP_SIDE), Image.LANCZOS
            )
            files.append(f"{p['slug']}-3.jpg")
            save_jpeg(zoom, shop_dir / files[-1])
        price = 5 + h % 120 + 0.99
        rows.append(
            {
                "slug": p["slug"],
                "title": p["title"],
                "category": p["category"],
                "price": f"{price:.2f}",
                "emoji": p["emoji"],
                "files": ";".join(files),
            }
        )

    # One product re-listed under a second slug with a byte-identical image (other URL).
    first = rows[0]
    dup_file = f"{first['slug']}-sale.jpg"
    shutil.copyfile(shop_dir / first["files"].split(";")[0], shop_dir / dup_file)
    rows.append(
        {
            **first,
            "slug": f"{first['slug']}-sale",
            "title": f"{first['title']} (sale)",
            "files": dup_file,
        }
    )
    with (shop_dir / "catalog.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return rows


# --------------------------------------------------------------------------------------------
# domains


def build_domains(logos: list[dict], out: Path) -> None:
    rows = [{"domain": f"{lg['slug']}.test", "company": lg["title"]} for lg in logos]
    rng = random.Random(SEED + 1)
    picks = rng.sample(range(len(rows)), 6)
    # Messy spellings of real rows: the domain must be normalised before it can be fetched.
    s = [logos[i]["slug"] for i in picks]
    rows[picks[0]]["domain"] = f"https://www.{s[0].capitalize()}.test/about"
    rows[picks[1]]["domain"] = f"{s[1].upper()}.TEST"
    rows[picks[2]]["domain"] = f"{s[2]}.test."
    rows[picks[3]]["domain"] = f"  http://{s[3]}.test/  "
    # Duplicates of rows already present, spelled differently.
    rows.append({"domain": f"WWW.{s[4]}.test", "company": logos[picks[4]]["title"]})
    rows.append({"domain": f"http://{s[5]}.test/contact?ref=list", "company": ""})
    # A well-formed domain nobody serves (fetch fails like an unreachable site).
    rows.append({"domain": "no-such-brand.test", "company": "No Such Brand"})
    # Invalid entries.
    rows += [
        {"domain": "", "company": "Missing Domain Ltd"},
        {"domain": "not a domain", "company": "Typo Inc"},
        {"domain": "has space.test", "company": "Spacey"},
        {"domain": "-bad-.test", "company": "Hyphen Co"},
    ]
    with (out / "domains.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["domain", "company"])
        w.writeheader()
        w.writerows(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--src-dir", type=Path, help="where to npm-pack/unpack the packages")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as empty:
        roots = npm_fetch(args.src_dir or Path(tmp))
        out: Path = args.out
        for sub in ("logos", "shop"):
            if (out / sub).exists():
                shutil.rmtree(out / sub)
        out.mkdir(parents=True, exist_ok=True)
        logos = build_logos(roots[SIMPLE_ICONS[0]], out, empty)
        shop = build_shop(roots[NOTO[0]], out, empty)
        build_domains(logos, out)
    n_img = sum(len(r["files"].split(";")) for r in shop)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"demo data: {len(logos)} logos, {len(shop)} products / {n_img} shop images, "
          f"{size / 1e6:.1f} MB in {out}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
