"""Build labelled real image sets for the quality benchmarks from npm icon packages.

Each set is written in the layout of ``shared/data/logos-dev``::

    OUT/<set>/images/<group>__<source>__<variant>.png   RGBA PNG, longest side --size px
    OUT/<set>/labels.csv                                path,group
    OUT/<set>/meta.csv                                  path,group,source,variant,package,license

Sets
----
``devicon``
    Technology logos from the Devicon project, a different logo collection from logos-dev
    (which comes from "SVG Logos"), with the same lockup-against-icon structure: for each
    technology the colour icon (``original``), the colour lockup (``wordmark``, icon plus
    name) and, where they exist, the one-colour ``plain`` and ``plain-wordmark`` drawings.
    Group = the technology. Packages: ``@iconify-json/devicon`` 1.2.68 (MIT) and
    ``@iconify-json/devicon-plain`` 1.2.57 (MIT), artwork by the Devicon contributors
    (konpa et al.).
``emoji``
    The same emoji drawn by four vendors: a look-alike set that is not logos (same meaning,
    different drawing style and palette). Group = the emoji's CLDR short name; ``--n-emoji``
    of them (default 250) are drawn at random (``--seed``) among those that all four vendors
    have (skin-tone variants left out). Packages: ``@iconify-json/noto`` 1.2.9 (Apache-2.0,
    Google), ``@iconify-json/twemoji`` 1.2.5 (CC-BY-4.0, Twitter/X and jdecked/twemoji
    contributors), ``@iconify-json/openmoji`` 1.2.29 (CC-BY-SA-4.0, HfG Schwaebisch Gmuend),
    ``@iconify-json/fluent-emoji-flat`` 1.2.6 (MIT, Microsoft).
``dark``
    Logos beside their dark-mode variants, the look-alike that polarity breaks: ``--n-brands``
    (default 200) brands of the ``simple-icons`` package drawn at random (``--seed``) among those
    whose brand colour is neither near black nor near white, each in its brand colour on
    transparent, in white on black and in white on its brand colour (the three ways brand
    guidelines allow); skill-icons' own ``-light``/``-dark`` drawings of ~160 tools; and
    vscode-icons' file types beside their ``file-type-light-`` variants. Group = the brand,
    tool or file type. Packages: ``simple-icons`` 16.37.0 (CC0-1.0, Simple Icons contributors;
    its ``data/simple-icons.json`` gives the brand colours), ``@iconify-json/skill-icons``
    1.2.4 (MIT, tandpfun), ``@iconify-json/vscode-icons`` 1.2.97 (MIT, Roberto Huertas).
``many``
    About 14,000 real brand, technology and file-type logos for the end-to-end benchmark
    (``benchmarks/end_to_end.py``), every drawing of nine packages, labelled where a brand
    has more than one drawing. Group = the icon name normalised across packages
    (:func:`brand_key`: lower case, package suffixes such as ``-icon``, ``-wordmark``,
    ``-dark``/``-light``, ``-background``, vscode's ``file-type-``/``light-`` and trailing
    variant digits removed, then everything but letters and digits), so simple-icons
    ``github``, logos ``github-icon``, devicon ``github-wordmark`` and skill-icons
    ``github-dark`` are one group; web3 tokens (tickers) are grouped among themselves only.
    Unlike the other sets, images without a partner are kept as singleton groups
    (``singleton`` column of ``meta.csv``): they are embedded and clustered but left out of
    the quality scores. Packages: ``@iconify-json/simple-icons`` 1.2.103 (CC0-1.0, Simple
    Icons contributors), ``@iconify-json/logos`` 1.2.19 (CC0-1.0, SVG Logos, Gil Barbara),
    ``@iconify-json/cib`` 1.2.3 (CC0-1.0, CoreUI brands), ``@iconify-json/devicon`` 1.2.68
    and ``@iconify-json/devicon-plain`` 1.2.57 (MIT), ``@iconify-json/skill-icons`` 1.2.4
    (MIT, tandpfun), ``@iconify-json/vscode-icons`` 1.2.97 (MIT, Roberto Huertas; file types
    only, not folders), ``@iconify-json/fa6-brands`` 1.2.6 (CC-BY-4.0, Fonticons) and
    ``@iconify-json/token-branded`` 1.2.45 (MIT, Web3 Icons, 0xa3k5).

The artwork is rendered from SVG with resvg (:func:`lookalike.images.render_svg`, which strips
every external reference), kept with its transparency and the icon set's own padding (unlike
logos-dev, which is cropped and composited on white), so the sets also exercise background
handling and content cropping. Identical renders inside a group are kept once; groups with
fewer than two images are dropped (except in ``many``). Packages are fetched with ``npm pack`` into
``OUT/_npm/`` (reused when present). Output folders are git-ignored.

Usage::

    .venv/bin/python benchmarks/make_labelled_sets.py                 # devicon, emoji, dark
    .venv/bin/python benchmarks/make_labelled_sets.py --sets emoji --n-emoji 100
    .venv/bin/python benchmarks/make_labelled_sets.py --sets many     # ~14,000, a few minutes
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import random
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from lookalike.exceptions import ImageError
from lookalike.images import render_svg

ROOT = Path(__file__).resolve().parent
DEFAULT_OUT = ROOT / "sets"

#: npm package -> (pinned version, SPDX licence, attribution).
PACKAGES: dict[str, tuple[str, str, str]] = {
    "@iconify-json/devicon": ("1.2.68", "MIT", "Devicon contributors (konpa et al.)"),
    "@iconify-json/devicon-plain": ("1.2.57", "MIT", "Devicon contributors (konpa et al.)"),
    "@iconify-json/noto": ("1.2.9", "Apache-2.0", "Google Inc (Noto Emoji)"),
    "@iconify-json/twemoji": ("1.2.5", "CC-BY-4.0", "Twitter/X, jdecked/twemoji contributors"),
    "@iconify-json/openmoji": ("1.2.29", "CC-BY-SA-4.0", "OpenMoji, HfG Schwaebisch Gmuend"),
    "@iconify-json/fluent-emoji-flat": ("1.2.6", "MIT", "Microsoft Corporation (Fluent Emoji)"),
    "@iconify-json/simple-icons": ("1.2.103", "CC0-1.0", "Simple Icons contributors"),
    "@iconify-json/logos": ("1.2.19", "CC0-1.0", "SVG Logos (Gil Barbara)"),
    "@iconify-json/cib": ("1.2.3", "CC0-1.0", "CoreUI (creativeLabs)"),
    "@iconify-json/skill-icons": ("1.2.4", "MIT", "tandpfun (Skill Icons)"),
    "@iconify-json/vscode-icons": ("1.2.97", "MIT", "Roberto Huertas (vscode-icons)"),
    "@iconify-json/fa6-brands": ("1.2.6", "CC-BY-4.0", "Fonticons, Inc. (Font Awesome 6)"),
    "@iconify-json/token-branded": ("1.2.45", "MIT", "0xa3k5 (Web3 Icons)"),
    "simple-icons": ("16.37.0", "CC0-1.0", "Simple Icons contributors (brand colours)"),
}

SETS = {
    "devicon": ["@iconify-json/devicon", "@iconify-json/devicon-plain"],
    "emoji": [
        "@iconify-json/noto",
        "@iconify-json/twemoji",
        "@iconify-json/openmoji",
        "@iconify-json/fluent-emoji-flat",
    ],
    "many": [
        "@iconify-json/simple-icons",
        "@iconify-json/logos",
        "@iconify-json/cib",
        "@iconify-json/devicon",
        "@iconify-json/devicon-plain",
        "@iconify-json/skill-icons",
        "@iconify-json/vscode-icons",
        "@iconify-json/fa6-brands",
        "@iconify-json/token-branded",
    ],
    "dark": [
        "simple-icons",
        "@iconify-json/skill-icons",
        "@iconify-json/vscode-icons",
    ],
}

#: Per package of ``many``: (prefixes, suffixes) removed from an icon name by
#: :func:`brand_key` before it is reduced to letters and digits.
_AFFIXES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "simple-icons": ((), ()),
    "logos": ((), ("-icon", "-wordmark")),
    "cib": ((), ()),
    "devicon": ((), ("-wordmark",)),
    "devicon-plain": ((), ("-wordmark",)),
    "skill-icons": ((), ("-dark", "-light")),
    "vscode-icons": (("file-type-light-", "file-type-"), ()),
    "fa6-brands": (("square-",), ("-square", "-alt")),
    "token-branded": ((), ("-background",)),
}


def _npm_tarball(package: str, npm_dir: Path) -> Path:
    """The pinned ``npm pack`` tarball of ``package``, fetched into ``npm_dir`` if needed."""
    version = PACKAGES[package][0]
    npm_dir.mkdir(parents=True, exist_ok=True)
    tgz = npm_dir / f"{package.lstrip('@').replace('/', '-')}-{version}.tgz"
    if not tgz.exists():
        if shutil.which("npm") is None:
            raise SystemExit("npm is not installed; install Node.js/npm (apt-get install npm)")
        subprocess.run(
            ["npm", "pack", f"{package}@{version}", "--pack-destination", str(npm_dir)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return tgz


def _tar_json(tgz: Path, member: str) -> Any:
    with tarfile.open(tgz, "r:gz") as tar:
        f = tar.extractfile(member)
        if f is None:
            raise SystemExit(f"{tgz} has no {member}")
        return json.load(f)


def fetch_icon_set(package: str, npm_dir: Path) -> dict:
    """The parsed ``icons.json`` of an Iconify package, fetched with ``npm pack`` if needed."""
    return _tar_json(_npm_tarball(package, npm_dir), "package/icons.json")


def fetch_simple_icons(npm_dir: Path) -> list[dict]:
    """Every icon of the ``simple-icons`` package: ``slug``, ``title``, ``hex`` and ``path``
    (the SVG path data of its 24 x 24 drawing)."""
    tgz = _npm_tarball("simple-icons", npm_dir)
    data = _tar_json(tgz, "package/data/simple-icons.json")
    out = []
    with tarfile.open(tgz, "r:gz") as tar:
        for entry in data:
            slug = entry.get("slug") or re.sub(r"[^a-z0-9]", "", entry["title"].lower())
            f = tar.extractfile(f"package/icons/{slug}.svg")
            found = re.search(rb' d="([^"]+)"', f.read()) if f else None
            if found:
                out.append({**entry, "slug": slug, "path": found.group(1).decode()})
    return out


def icon_svg(icon_set: dict, name: str) -> bytes:
    """A standalone SVG document for icon ``name`` of an Iconify ``icons.json``."""
    icon = icon_set["icons"][name]
    left = icon.get("left", icon_set.get("left", 0))
    top = icon.get("top", icon_set.get("top", 0))
    width = icon.get("width", icon_set.get("width", 16))
    height = icon.get("height", icon_set.get("height", 16))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'viewBox="{left} {top} {width} {height}" width="{width}" height="{height}">'
        f"{icon['body']}</svg>"
    ).encode()


def _devicon_items(sets: dict[str, dict]) -> list[tuple[str, str, str, str]]:
    """(group, source, variant, icon name) for every Devicon drawing."""
    items = []
    for package, variant_base in (
        ("@iconify-json/devicon", "original"),
        ("@iconify-json/devicon-plain", "plain"),
    ):
        for name in sorted(sets[package]["icons"]):
            if sets[package]["icons"][name].get("hidden"):
                continue
            group, wordmark = (
                (name[: -len("-wordmark")], True) if name.endswith("-wordmark") else (name, False)
            )
            variant = f"{variant_base}-wordmark" if wordmark else variant_base
            items.append((group, package.split("/")[1], variant, name))
    return items


def _emoji_items(
    sets: dict[str, dict], packages: list[str], *, n_emoji: int, seed: int
) -> list[tuple[str, str, str, str]]:
    """(group, source, variant, icon name) for ``n_emoji`` emoji drawn by every vendor."""
    common = None
    for package in packages:
        names = {n for n, icon in sets[package]["icons"].items() if not icon.get("hidden")}
        common = names if common is None else common & names
    pool = sorted(n for n in common or () if "tone" not in n)
    chosen = sorted(random.Random(seed).sample(pool, min(n_emoji, len(pool))))
    return [(name, p.split("/")[1], "emoji", name) for name in chosen for p in packages]


def _luminance(hex6: str) -> float:
    """Relative luminance (0..1, WCAG) of an ``RRGGBB`` colour."""
    c = [int(hex6[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    c = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in c]
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]


def _brand_svg(path: str, fg: str, bg: str | None) -> bytes:
    """A simple-icons drawing in colour ``fg`` on ``bg`` (None: transparent), 2 units of margin."""
    rect = f'<rect x="-2" y="-2" width="28" height="28" fill="#{bg}"/>' if bg else ""
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="-2 -2 28 28" width="28" height="28">'
        f'{rect}<path fill="#{fg}" d="{path}"/></svg>'
    ).encode()


def _dark_items(
    sets: dict[str, dict], brands: list[dict], *, n_brands: int, seed: int
) -> list[tuple[str, str, str, bytes]]:
    """(group, source, variant, SVG) of logos beside their dark-mode variants.

    * ``n_brands`` simple-icons brands drawn at random (``seed``) among those whose brand
      colour is neither near black nor near white (relative luminance 0.1-0.7): the icon in its
      brand colour on transparent (``colour``), in white on black (``white-on-black``) and in
      white on its brand colour (``white-on-brand``);
    * skill-icons' ``-light`` and ``-dark`` drawings of the same tool (the artist's own
      dark-mode variants);
    * vscode-icons' file types beside their ``file-type-light-`` variants (drawn for light
      themes).
    """
    items = []
    pool = sorted(
        (b for b in brands if 0.1 <= _luminance(b["hex"]) <= 0.7), key=lambda b: b["slug"]
    )
    for b in sorted(
        random.Random(seed).sample(pool, min(n_brands, len(pool))), key=lambda b: b["slug"]
    ):
        for variant, fg, bg in (
            ("colour", b["hex"], None),
            ("white-on-black", "FFFFFF", "000000"),
            ("white-on-brand", "FFFFFF", b["hex"]),
        ):
            items.append(
                (f"si-{b['slug']}", "simple-icons", variant, _brand_svg(b["path"], fg, bg))
            )
    skill = sets["@iconify-json/skill-icons"]
    for name in sorted(skill["icons"]):
        base = name.removesuffix("-dark")
        if name.endswith("-dark") and f"{base}-light" in skill["icons"]:
            for variant in ("light", "dark"):
                icon = f"{base}-{variant}"
                items.append((f"skill-{base}", "skill-icons", variant, icon_svg(skill, icon)))
    vscode = sets["@iconify-json/vscode-icons"]
    for name in sorted(vscode["icons"]):
        if name.startswith("file-type-light-"):
            base = name.removeprefix("file-type-light-")
            if f"file-type-{base}" in vscode["icons"]:
                for variant, icon in (("default", f"file-type-{base}"), ("light", name)):
                    items.append(
                        (f"vscode-{base}", "vscode-icons", variant, icon_svg(vscode, icon))
                    )
    return items


def brand_key(source: str, name: str) -> str:
    """The group of icon ``name`` of package ``source`` (e.g. ``"logos"``) in the ``many`` set.

    ``brand_key("logos", "google-chrome-icon") == brand_key("simple-icons", "googlechrome")``.
    Trailing variant digits (``access2``, ``500px-5``) and a trailing ``js`` (``vuejs``,
    ``vue``) are dropped when something is left; tokens get a ``token-`` prefix, since
    tickers are not brand names.
    """
    prefixes, suffixes = _AFFIXES[source]
    key = name.lower()
    for p in prefixes:
        if key.startswith(p):
            key = key[len(p) :]
            break
    for sfx in suffixes:
        if key.endswith(sfx) and len(key) > len(sfx):
            key = key[: -len(sfx)]
    key = re.sub(r"[^a-z0-9]", "", key)
    stem = re.sub(r"\d+$", "", key)
    key = stem if len(stem) >= 2 else key
    if key.endswith("js") and len(key) >= 5:
        key = key[:-2]
    return f"token-{key}" if source == "token-branded" else key


def _many_items(sets: dict[str, dict]) -> list[tuple[str, str, str, str]]:
    """(group, source, variant, icon name) for every drawing of the ``many`` packages."""
    items = []
    for package in SETS["many"]:
        source = package.split("/")[1]
        for name in sorted(sets[package]["icons"]):
            if sets[package]["icons"][name].get("hidden"):
                continue
            if source == "vscode-icons" and not name.startswith("file-type-"):
                continue  # folders and defaults: the same folder drawing, not a logo
            items.append((brand_key(source, name), source, name, name))
    return items


def _render(svg: bytes, size: int) -> bytes | None:
    """PNG bytes of the rendered SVG, or None when it renders blank."""
    img = render_svg(svg, size=size)
    if img.getchannel("A").getextrema()[1] == 0:
        return None
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def build_set(
    name: str,
    out_dir: Path,
    *,
    size: int = 256,
    n_emoji: int = 250,
    n_brands: int = 200,
    seed: int = 0,
) -> pd.DataFrame:
    """Render set ``name`` into ``out_dir/name`` and return its ``meta.csv`` table."""
    t0 = time.perf_counter()
    packages = SETS[name]
    npm = out_dir / "_npm"
    sets = {p: fetch_icon_set(p, npm) for p in packages if p.startswith("@iconify-json/")}
    pkg_of = {p.split("/")[-1]: p for p in packages}
    if name == "dark":
        items = _dark_items(sets, fetch_simple_icons(npm), n_brands=n_brands, seed=seed)
    else:
        if name == "devicon":
            named = _devicon_items(sets)
        elif name == "many":
            named = _many_items(sets)
        else:
            named = _emoji_items(sets, packages, n_emoji=n_emoji, seed=seed)
        items = [(g, src, v, icon_svg(sets[pkg_of[src]], icon)) for g, src, v, icon in named]

    dest = out_dir / name
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "images").mkdir(parents=True)
    rows, seen, failures = [], set(), 0
    for group, source, variant, svg in items:
        package = pkg_of[source]
        try:
            png = _render(svg, size)
        except ImageError as e:
            print(f"  skip {source}:{group}/{variant}: {e}", file=sys.stderr)
            failures += 1
            continue
        if png is None:
            failures += 1
            continue
        digest = hashlib.sha256(png).hexdigest()
        if digest in seen:  # e.g. a plain drawing identical to the original
            continue
        seen.add(digest)
        rel = f"images/{group}__{source}__{variant}.png"
        (dest / rel).write_bytes(png)
        version, licence, _ = PACKAGES[package]
        rows.append(
            {
                "path": rel,
                "group": group,
                "source": source,
                "variant": variant,
                "package": f"{package}@{version}",
                "license": licence,
            }
        )
    meta = pd.DataFrame(rows)
    counts = meta["group"].map(meta["group"].value_counts())
    if name == "many":  # singletons stay: embedded and clustered, left out of the scores
        meta["singleton"] = counts < 2
    else:
        for rel in meta.loc[counts < 2, "path"]:
            (dest / rel).unlink()
        meta = meta[counts >= 2].reset_index(drop=True)
    meta[["path", "group"]].to_csv(dest / "labels.csv", index=False)
    meta.to_csv(dest / "meta.csv", index=False)
    labelled = meta[meta["group"].map(meta["group"].value_counts()) >= 2]
    print(
        f"{name}: {len(meta)} images of {meta['group'].nunique()} groups "
        f"({len(labelled)} images in {labelled['group'].nunique()} groups of 2 or more) -> {dest} "
        f"({failures} blank or failed renders skipped, {time.perf_counter() - t0:.1f} s)"
    )
    return meta


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    ap.add_argument(
        "--sets",
        nargs="+",
        choices=sorted(SETS),
        default=["devicon", "emoji", "dark"],
        help="sets to build (default devicon, emoji and dark; many is built on request)",
    )
    ap.add_argument("--size", type=int, default=256, help="longest side in pixels")
    ap.add_argument("--n-emoji", type=int, default=250, help="emoji drawn for the emoji set")
    ap.add_argument("--n-brands", type=int, default=200, help="brands drawn for the dark set")
    ap.add_argument("--seed", type=int, default=0, help="seed of the emoji and brand draws")
    args = ap.parse_args(argv)
    for name in args.sets:
        print(f"{name}: licences:")
        for p in SETS[name]:
            version, licence, who = PACKAGES[p]
            print(f"  {p}@{version}  {licence}  ({who})")
        build_set(
            name,
            args.out,
            size=args.size,
            n_emoji=args.n_emoji,
            n_brands=args.n_brands,
            seed=args.seed,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
