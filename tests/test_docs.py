"""The README and docs/: generated parts are current, links resolve, no undecodable words."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lookalike.paths import PROJECT_ROOT

DOCS = sorted((PROJECT_ROOT / "docs").glob("*.md"))
PAGES = [PROJECT_ROOT / "README.md", *DOCS]


def test_parameters_md_is_generated_from_the_schema():
    from lookalike.paramdocs import markdown

    committed = (PROJECT_ROOT / "docs" / "parameters.md").read_text(encoding="utf-8")
    assert committed == markdown(), (
        "docs/parameters.md is out of date; regenerate it with\n"
        "  python -m lookalike params --markdown > docs/parameters.md"
    )


def test_every_parameter_is_documented():
    from lookalike.params import SCHEMA

    text = (PROJECT_ROOT / "docs" / "parameters.md").read_text(encoding="utf-8")
    missing = [n for n in SCHEMA if n != "run_dir" and f"| `{n}` |" not in text]
    assert not missing


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_resolve_inside_the_repository(page):
    text = page.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text) + re.findall(
        r"!\[[^\]]*\]\(([^)]+)\)", text
    ):
        if target.startswith(("http://", "https://")):
            continue
        path = (page.parent / target).resolve()
        assert path.exists(), f"{page.name}: link to {target} does not exist"
        assert PROJECT_ROOT in path.parents, f"{page.name}: {target} is outside the repository"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_path_outside_the_repository_or_undecodable_word(page):
    text = page.read_text(encoding="utf-8")
    assert "../" not in text.replace("](../", "")
    for word in ("seeds' recipe", "seed's", "the seeds", "logo seed", "about 4 minutes"):
        assert word not in text, f"{page.name} says {word!r}"


def test_readme_starts_short():
    text = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) < 130
    assert "figures/demo-overview.png" in text
    assert "make demo" in text and "make test" in text
    folder, logos, catalog = (text.index(f"source: {s}") for s in ("folder", "logos", "catalog"))
    assert folder < logos < catalog  # a folder first
    assert "both together took 8 min\n20 s (logos about 3.2 minutes, catalog about 5.0)" in text
    for doc in DOCS:
        assert f"docs/{doc.name}" in text


def test_example_config_is_a_folder_run():
    from lookalike.run import load_config

    config = load_config(PROJECT_ROOT / "configs" / "example.yaml")
    assert config["source"] == "folder" and "image_dir" in config
    text = (PROJECT_ROOT / "configs" / "example.yaml").read_text(encoding="utf-8")
    assert "# source: logos" in text and "# source: catalog" in text


def test_the_library_page_names_every_module():
    import lookalike

    text = (Path(__file__).resolve().parents[1] / "docs" / "library.md").read_text()
    package = Path(lookalike.__file__).parent
    missing = [
        p.name
        for p in sorted(package.glob("*.py"))
        if p.stem not in {"__init__", "__main__"}
        and f"`{p.name}`" not in text
        and f"`lookalike.{p.stem}`" not in text
    ]
    assert not missing, f"docs/library.md does not mention {missing}"
