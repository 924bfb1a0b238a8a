"""lookalike.icons: icon markup and manifests parsed, blank images rejected."""

from __future__ import annotations

import json

import simweb
from PIL import Image

from lookalike import icons


def test_is_blank():
    assert icons.is_blank(Image.new("RGBA", (20, 20), (0, 0, 0, 0)))
    assert icons.is_blank(Image.new("RGBA", (20, 20), (255, 0, 0, 255)))
    white_on_clear = Image.new("RGBA", (20, 20), (255, 255, 255, 0))
    white_on_clear.paste((255, 255, 255, 255), (5, 5, 15, 15))
    assert not icons.is_blank(white_on_clear)  # a white logo on a transparent background
    assert not icons.is_blank(simweb.logo_image((20, 20), 1))


def test_parse_icon_links_and_manifest():
    html = (
        '<base href="https://cdn.test/a/"><link rel="ICON" sizes="16x16 48x48" href="f.png">'
        '<link rel="apple-touch-icon-precomposed" href="//x.test/t.png">'
        '<link rel="mask-icon" href="m.svg"><link rel="stylesheet" href="s.css">'
        '<link rel="manifest" href="/site.webmanifest">'
        '<link rel="icon" href="data:image/png;base64,AA">'
        '<meta name="twitter:image" content="tw.png">'
    )
    cands, manifest = icons.parse_icon_links(html, "https://shop.test/")
    got = [(c.url, c.kind, c.declared, c.svg, c.tier) for c in cands]
    assert got == [
        ("https://cdn.test/a/f.png", "icon", 48, False, 0),
        ("https://x.test/t.png", "apple-touch-icon-precomposed", 180, False, 0),
        ("https://cdn.test/a/m.svg", "mask-icon", 0, True, 0),
        ("https://cdn.test/a/tw.png", "twitter:image", 0, False, 1),
    ]
    assert manifest == "https://cdn.test/site.webmanifest"
    data = json.dumps(
        {"icons": [{"src": "a.svg", "sizes": "any", "type": "image/svg+xml"}, {"x": 1}]}
    )
    (icon,) = icons.parse_manifest_icons(data.encode(), "https://shop.test/m/site.json")
    assert (icon.url, icon.declared, icon.svg) == ("https://shop.test/m/a.svg", 10_000, True)
    assert icons.parse_manifest_icons(b"not json", "https://shop.test/") == []
