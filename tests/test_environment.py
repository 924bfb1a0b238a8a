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


#: Extras that cannot be installed here: ``gpu`` (TensorFlow with CUDA) replaces
#: tensorflow-cpu on a machine with an NVIDIA GPU; it is pinned but never installed in CI.
NOT_INSTALLED_HERE = ("gpu",)


def _all_requirements(*, skip: tuple[str, ...] = ()) -> list[Requirement]:
    project = _pyproject()["project"]
    reqs = list(project["dependencies"])
    for name, extra in project["optional-dependencies"].items():
        if name not in skip:
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


def test_the_installs_include_the_ray_extra():
    """`make setup` (so `make test` and CI) and environment.yml install Ray: its tests run."""
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    assert re.search(r"pip install .*-e '\.\[[\w,]*\bray\b[\w,]*\]'", makefile)
    env = (PROJECT_ROOT / "environment.yml").read_text()
    assert re.search(r"-e \.\[[\w,]*\bray\b[\w,]*\]", env)
    extras = _pyproject()["project"]["optional-dependencies"]
    assert [Requirement(r).name for r in extras["ray"]] == ["ray"]
    assert "data" in Requirement(extras["ray"][0]).extras


def test_the_gpu_extra_is_tensorflow_of_the_cpu_builds_version():
    pins = _constraints()
    (req,) = [Requirement(r) for r in _pyproject()["project"]["optional-dependencies"]["gpu"]]
    assert req.name == "tensorflow" and "and-cuda" in req.extras
    assert pins["tensorflow"] == pins["tensorflow-cpu"]


def test_installed_versions_match_the_pins():
    """The venv the tests run in is the pinned stack (catches a stale .venv)."""
    pins = _constraints()
    wrong = {}
    for req in _all_requirements(skip=NOT_INSTALLED_HERE):
        name = canonicalize_name(req.name)
        installed = metadata.version(req.name)
        if installed != pins[name]:
            wrong[name] = (installed, pins[name])
    assert not wrong, f"installed != pinned: {wrong}; run `make setup`"
