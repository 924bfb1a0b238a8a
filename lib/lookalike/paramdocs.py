"""The parameter schema as text: ``lookalike params`` (YAML) and ``docs/parameters.md``.

Everything here is generated from :data:`lookalike.params.SCHEMA`; a test checks that the
committed ``docs/parameters.md`` equals :func:`markdown`.
"""

from __future__ import annotations

from typing import Any

from .exceptions import ConfigError
from .params import NOTEBOOKS, SCHEMA, Param, _show, for_notebook, suggest

__all__ = ["TITLES", "describe", "markdown", "to_yaml"]

#: What each notebook does, in a few words.
TITLES = {
    "01_scrape": "gather images from a catalog, or index a folder",
    "02_fetch_logos": "a logo for every domain",
    "03_embed_vgg16": "one vector per image (plus parts and colour for logos)",
    "04_pca_kmeans": "reduce and cluster",
    "05_elbow_and_inspect": "choose k and look",
}


def _yaml_value(value: Any) -> str:
    """A value in YAML flow style (``null``, ``true``, ``[3, 5]``, quoted where needed)."""
    if value is None or isinstance(value, bool | int | float):
        return _show(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("...").strip()


def _other_defaults(p: Param, notebook: str) -> str:
    """``" (02_fetch_logos: 8)"`` when the default differs in another notebook."""
    others = [
        f"{nb}: {_yaml_value(p.default_for(nb))}"
        for nb in p.notebooks
        if nb != notebook and p.default_for(nb) != p.default_for(notebook)
    ]
    return f" (default in {', '.join(others)})" if others else ""


def to_yaml() -> str:
    """Every parameter as a YAML config with its description, grouped by notebook.

    A parameter shared by several notebooks is a key under the first one and a comment
    under the others (one key sets it for every notebook that takes it), so the text is
    valid YAML holding each first notebook's defaults.
    """
    lines = [
        "# lookalike parameters: name: default  # what it does [what is allowed]",
        "# Copy what you need into a config file; a key sets every notebook that takes it.",
    ]
    seen: set[str] = set()
    for nb in NOTEBOOKS:
        lines += ["", f"# -- {nb}: {TITLES[nb]}"]
        for p in for_notebook(nb):
            entry = f"{p.name}: {_yaml_value(p.default_for(nb))}"
            note = f"  # {p.help} [{p.allowed()}]{_other_defaults(p, nb)}"
            if p.name in seen:
                lines.append(f"# {entry}  # set above (shared with {p.notebooks[0]})")
            else:
                lines.append(entry + note)
                seen.add(p.name)
    return "\n".join(lines) + "\n"


def describe(name: str) -> str:
    """A few lines about one parameter, for ``lookalike params NAME``."""
    p = SCHEMA.get(name)
    if p is None:
        hint = suggest(name, list(SCHEMA)) or "; `lookalike params` lists them all"
        raise ConfigError(f"unknown parameter {name!r}{hint}")
    defaults = ", ".join(f"{nb}: {_yaml_value(p.default_for(nb))}" for nb in p.notebooks)
    return "\n".join(
        [
            f"{p.name}: {p.help}",
            f"  allowed:   {p.allowed()}",
            f"  default:   {_yaml_value(p.default_for())}"
            + (
                f" ({defaults})"
                if len({_show(p.default_for(nb)) for nb in p.notebooks}) > 1
                else ""
            ),  # noqa: E501
            f"  notebooks: {', '.join(p.notebooks)}",
        ]
        + ([f"  details:   {p.doc}"] if p.doc else [])
    )


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown() -> str:
    """``docs/parameters.md``: one table per notebook, generated from the schema."""
    out = [
        "# Parameters",
        "",
        "<!-- Generated from lib/lookalike/params.py by "
        "`python -m lookalike params --markdown`; do not edit by hand. -->",
        "",
        "Set parameters in a YAML config (`lookalike run CONFIG`), with `-p name=value` "
        "(the value is read as YAML: `-p k_values='[5, 10]'`, `-p demo=false`), or in a "
        "notebook's `parameters` cell. A key sets every notebook that takes it. Relative "
        "paths are from the project root. `null` means the library's default, or what the "
        "row says. `lookalike run` checks every value before any notebook starts and lists "
        "every problem at once; `lookalike params NAME` shows one parameter.",
        "",
        "Every notebook takes `run_dir`, the run folder.",
    ]
    for nb in NOTEBOOKS:
        out += [
            "",
            f"## {nb}: {TITLES[nb]}",
            "",
            "| parameter | default | allowed | meaning |",
            "|---|---|---|---|",
        ]
        for p in for_notebook(nb):
            if p.name == "run_dir":
                continue
            shared = [x for x in p.notebooks if x != nb]
            also = f" (also {', '.join(shared)})" if shared else ""
            out.append(
                f"| `{p.name}` | `{_cell(_yaml_value(p.default_for(nb)))}` | "
                f"{_cell(p.allowed())} | {_cell(p.doc or p.help)}{also} |"
            )
    return "\n".join(out) + "\n"
