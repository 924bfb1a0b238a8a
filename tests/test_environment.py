"""environment.yml, pyproject.toml and constraints.txt agree with each other."""

from __future__ import annotations

import re
from importlib import metadata

import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from lookalike.paths import PROJECT_ROOT


def _pyproject() -> dict:
    return tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (PROJECT_ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not pinned with =="
            pins[canonicalize_name(name)] = version
    return pins


def _all_requirements() -> list[Requirement]:
    project = _pyproject()["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    return [Requirement(r) for r in reqs]


def test_every_dependency_is_pinned():
    pins = _constraints()
    missing = [r.name for r in _all_requirements() if canonicalize_name(r.name) not in pins]
    assert not missing, f"add pins for {missing} to constraints.txt"


def test_pins_satisfy_pyproject_ranges():
    pins = _constraints()
    for req in _all_requirements():
        assert req.specifier.contains(pins[canonicalize_name(req.name)], prereleases=True), req


def test_environment_yml_matches_pyproject():
    env = yaml.safe_load((PROJECT_ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    python = next(d for d in deps if isinstance(d, str) and d.startswith("python="))
    version = python.split("=", 1)[1]
    requires = SpecifierSet(_pyproject()["project"]["requires-python"])
    assert requires.contains(version + ".0"), f"{python} is outside requires-python {requires}"
    pip_section = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert "-c constraints.txt" in pip_section, "environment.yml must install with the pins"
    assert any(re.fullmatch(r"-e \.(\[[\w,]+\])?", line) for line in pip_section)


def test_installed_versions_match_the_pins():
    """The venv the tests run in is the pinned stack (catches a stale .venv)."""
    pins = _constraints()
    wrong = {}
    for req in _all_requirements():
        name = canonicalize_name(req.name)
        installed = metadata.version(req.name)
        if installed != pins[name]:
            wrong[name] = (installed, pins[name])
    assert not wrong, f"installed != pinned: {wrong}; run `make setup`"
