"""Logo candidates of stage 02: icon markup and web app manifests parsed, images judged.

:func:`parse_icon_links` and :func:`parse_manifest_icons` list a site's icon URLs as
:class:`Candidate` objects; :func:`decode_logo` turns downloaded bytes into an RGBA image or
rejects them (blank, too small, not an image); :class:`Decoded` ranks the survivors.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from bs4 import BeautifulSoup
from PIL import Image

from . import images
from .net import absolute_url, base_url

#: Size SVG logos are rendered at (pixels, longest side).
SVG_RENDER_SIZE = 256
_ICON_RELS = frozenset(
    {"icon", "shortcut", "apple-touch-icon", "apple-touch-icon-precomposed", "mask-icon"}
)
#: Icon kinds that are single-colour silhouettes: ranked below every colour icon.
MONO_KINDS = frozenset({"mask-icon", "manifest-monochrome"})
#: Image formats by preference when two candidates have the same size.
_FORMAT_PREFERENCE = {"SVG": 3, "PNG": 2, "WEBP": 2, "ICO": 0}


@dataclass
class Candidate:
    """An icon URL found for a domain."""

    url: str
    kind: str  # link rel, "manifest", "well-known", "og:image", "twitter:image", or a provider
    declared: int = 0  # largest size from sizes= (0 unknown; 10_000 for "any")
    svg: bool = False
    tier: int = 0  # 0 icons, 1 social images (only if no icon works)


def _declared_size(sizes: str | None) -> int:
    best = 0
    for token in (sizes or "").lower().split():
        if token == "any":
            return 10_000
        m = re.fullmatch(r"(\d+)x(\d+)", token)
        if m:
            best = max(best, min(int(m.group(1)), int(m.group(2))))
    return best


def _is_svg(url: str, mime: str | None) -> bool:
    return "svg" in (mime or "").lower() or urlsplit(url).path.lower().endswith((".svg", ".svgz"))


def parse_icon_links(html: bytes | str, page_url: str) -> tuple[list[Candidate], str | None]:
    """Icon candidates declared by a homepage, and its web app manifest URL if any.

    Returns
    -------
    candidates : list of Candidate
        ``<link rel>`` icons (tier 0) and ``og:image``/``twitter:image`` (tier 1), with
        absolute URLs (``<base href>`` honoured), without duplicates.
    manifest_url : str or None
    """
    soup = BeautifulSoup(html, "lxml")
    base = base_url(soup, page_url)
    out: list[Candidate] = []
    manifest = None
    for link in soup.find_all("link", href=True):
        rels = link.get("rel") or []
        rels = {r.lower() for r in (rels.split() if isinstance(rels, str) else rels)}
        url = absolute_url(link["href"], base)
        if not url:
            continue
        if "manifest" in rels and manifest is None:
            manifest = url
        icon_rels = rels & _ICON_RELS
        if not icon_rels or (icon_rels == {"shortcut"} and "icon" not in rels):
            continue
        kind = "mask-icon" if "mask-icon" in rels else sorted(icon_rels - {"shortcut"})[0]
        declared = _declared_size(link.get("sizes"))
        if not declared and kind.startswith("apple-touch-icon"):
            declared = 180  # Apple's documented default
        out.append(Candidate(url, kind, declared, _is_svg(url, link.get("type"))))
    for attr, name in (
        ("property", "og:image"),
        ("name", "twitter:image"),
        ("property", "twitter:image"),
    ):
        for meta in soup.find_all("meta", attrs={attr: name}):
            url = absolute_url(meta.get("content"), base)
            if url:
                out.append(Candidate(url, name, 0, _is_svg(url, None), tier=1))
    return dedupe(out), manifest


def parse_manifest_icons(data: bytes, manifest_url: str) -> list[Candidate]:
    """Icons of a web app manifest (JSON), URLs resolved against the manifest's URL."""
    try:
        doc = json.loads(data)
    except ValueError:
        return []
    icons = doc.get("icons") if isinstance(doc, dict) else None
    out = []
    for icon in icons if isinstance(icons, list) else []:
        if not isinstance(icon, dict) or not isinstance(icon.get("src"), str):
            continue
        url = absolute_url(icon["src"], manifest_url)
        if not url:
            continue
        purpose = str(icon.get("purpose") or "any")
        kind = "manifest-monochrome" if purpose.strip() == "monochrome" else "manifest"
        out.append(
            Candidate(url, kind, _declared_size(icon.get("sizes")), _is_svg(url, icon.get("type")))
        )
    return out


def dedupe(cands: list[Candidate]) -> list[Candidate]:
    """``cands`` without repeated URLs (the first of each is kept)."""
    seen, out = set(), []
    for c in cands:
        if c.url not in seen:
            seen.add(c.url)
            out.append(c)
    return out


# -- decoding and judging -----------------------------------------------------------------------


@dataclass
class Decoded:
    """A candidate that downloaded and decoded to an acceptable image."""

    candidate: Candidate
    image: Image.Image  # RGBA
    data: bytes
    fmt: str  # PNG, ICO, SVG...
    http_status: int | None
    final_url: str = ""  # after redirects

    @property
    def side(self) -> float:
        """Shorter side in pixels; ``inf`` for SVG, which renders at any size."""
        return math.inf if self.fmt == "SVG" else min(self.image.size)

    def rank(self) -> tuple:
        """Sort key, larger is better: icons before social images, colour before
        monochrome, then the real size, then the format (SVG, PNG, ..., ICO) on ties."""
        mono = self.candidate.kind in MONO_KINDS
        pref = _FORMAT_PREFERENCE.get(self.fmt, 1)
        return (self.candidate.tier == 0, not mono, self.side, pref)


def decode_logo(data: bytes, *, min_side: int = 16) -> tuple[Image.Image, str]:
    """Decode icon bytes to RGBA and reject junk.

    Returns
    -------
    (image, format)
        RGBA image (SVG rendered at :data:`SVG_RENDER_SIZE`; ICO's largest frame) and the
        original format name.

    Raises
    ------
    ImageError
        Decoding failed (see :mod:`lookalike.images`), or ``too_small`` (shorter side below
        ``min_side``) or ``blank`` (fully transparent or a single colour).
    """
    kind = images.sniff_format(data)
    if kind in ("svg", "svgz"):
        im, fmt = images.render_svg(data, size=SVG_RENDER_SIZE), "SVG"
    else:
        im = images.decode_image(data)
        fmt = im.format or "?"
        if min(im.size) < min_side:
            size = f"{im.size[0]}x{im.size[1]}"
            raise images.image_error("too_small", f"{size} < min_side={min_side}")
        im = im.convert("RGBA")
    if is_blank(im):
        raise images.image_error("blank", "fully transparent or a single colour")
    return im, fmt


def is_blank(im: Image.Image, *, tolerance: int = 6) -> bool:
    """True if an RGBA image shows nothing: fully transparent, or one flat colour.

    The image is composited over white and over black; it is blank when both results are
    flat (each channel varies by at most ``tolerance``), so a white logo on a transparent
    background is kept.
    """
    small = im.convert("RGBA")
    small.thumbnail((64, 64), Image.Resampling.BOX)
    if small.getchannel("A").getextrema()[1] == 0:
        return True
    for bg in ((255, 255, 255, 255), (0, 0, 0, 255)):
        flat = Image.alpha_composite(Image.new("RGBA", small.size, bg), small).convert("RGB")
        if any(hi - lo > tolerance for lo, hi in flat.getextrema()):
            return False
    return True
