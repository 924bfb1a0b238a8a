"""Synthetic logos for the tests: icons, lockups (icon plus wordmark) and small runs of them."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from lookalike import storage


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size only
        return ImageFont.load_default()


def _icon(kind: str, colour: tuple[int, int, int], size: int = 120) -> Image.Image:
    """An RGBA icon: a coloured shape with a white detail, on transparency."""
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    s = size
    if kind == "circle":
        d.ellipse((4, 4, s - 4, s - 4), fill=colour)
        d.polygon([(s * 0.35, s * 0.25), (s * 0.35, s * 0.75), (s * 0.78, s * 0.5)], fill="white")
    elif kind == "square":
        d.rounded_rectangle((6, 6, s - 6, s - 6), radius=s // 6, fill=colour)
        d.rectangle((s * 0.3, s * 0.3, s * 0.7, s * 0.45), fill="white")
        d.rectangle((s * 0.3, s * 0.55, s * 0.7, s * 0.7), fill="white")
    elif kind == "diamond":
        d.polygon([(s / 2, 4), (s - 4, s / 2), (s / 2, s - 4), (4, s / 2)], fill=colour)
        d.ellipse((s * 0.38, s * 0.38, s * 0.62, s * 0.62), fill="white")
    elif kind == "star":
        pts = []
        for k in range(10):
            r = s * (0.47 if k % 2 == 0 else 0.2)
            a = np.pi / 2 + k * np.pi / 5
            pts.append((s / 2 + r * np.cos(a), s / 2 - r * np.sin(a)))
        d.polygon(pts, fill=colour)
    else:
        d.pieslice((4, 4, s - 4, s - 4), 30, 330, fill=colour)
    return img


def _lockup(icon: Image.Image, word: str, *, pad: int = 40) -> Image.Image:
    """Icon on the left, a dark wordmark on the right, transparent background."""
    font = _font(80)
    probe = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
    x0, y0, x1, y1 = probe.textbbox((0, 0), word, font=font)
    w = icon.width + 30 + (x1 - x0) + 2 * pad
    h = max(icon.height, y1 - y0) + 2 * pad
    img = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    img.alpha_composite(icon, (pad, (h - icon.height) // 2))
    d = ImageDraw.Draw(img)
    d.text(
        (pad + icon.width + 30 - x0, (h - (y1 - y0)) // 2 - y0),
        word,
        fill=(30, 30, 30, 255),
        font=font,
    )
    return img


def _logo_run(tmp_path, images: list[Image.Image], source: str = "logos"):
    run = tmp_path / "run"
    (run / "logos").mkdir(parents=True)
    rows = []
    for i, img in enumerate(images):
        path = run / "logos" / f"logo{i}.png"
        img.save(path)
        rows.append(
            {
                "image_id": storage.sha256_bytes(path.read_bytes()),
                "path": f"logos/logo{i}.png",
                "source": source,
                "origin": f"brand{i}.test",
                "status": "ok",
            }
        )
    storage.merge_manifest(run, pd.DataFrame(rows))
    return run, [r["image_id"] for r in rows]


def _on_white(img: Image.Image) -> Image.Image:
    """An opaque RGB copy, as a JPEG logo would be."""
    base = Image.new("RGBA", img.size, (255, 255, 255, 255))
    return Image.alpha_composite(base, img).convert("RGB")


def _brand_images() -> list[Image.Image]:
    return [
        _on_white(_lockup(_icon("circle", (220, 40, 40)), "Redcorp")),
        _icon("circle", (220, 40, 40)).resize((200, 200)),
        _lockup(_icon("square", (20, 110, 220)), "Bluebox"),
        _icon("square", (20, 110, 220)).resize((90, 90)),
        _lockup(_icon("diamond", (30, 160, 60)), "Greenly"),
        _icon("diamond", (30, 160, 60)),
        _icon("star", (120, 60, 200)),
        _icon("pie", (0, 170, 170)),
    ]
