"""The package's shape: no import cycles, one owner of run-file names, short functions."""

from __future__ import annotations

import ast
import re
import warnings
from pathlib import Path

import pytest

import lookalike
from lookalike import paths

PACKAGE = Path(lookalike.__file__).parent
MODULES = sorted(PACKAGE.rglob("*.py"))
# Deprecated aliases: they only re-export, and are imported by nobody inside the package.
ALIASES = {"io", "inspect"}
MAX_FUNCTION_LINES = 80


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    return ".".join(rel.parts).removesuffix(".__init__") or "__init__"


def _imports(path: Path) -> set[str]:
    """Package modules that ``path`` imports (``from . import x``, ``from .x import y``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0 and (node.module or "").startswith("lookalike."):
                found.add(node.module.split(".", 1)[1])
            elif node.level == 1:
                if node.module:
                    found.add(node.module)
                else:
                    found.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("lookalike."):
                    found.add(a.name.split(".", 1)[1])
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> package modules it imports, at any depth of the file (lazy imports too)."""
    names = {_module_name(p) for p in MODULES}
    return {_module_name(p): {m for m in _imports(p) if m in names} for p in MODULES}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n) :] + [n]
            if n not in state and (cycle := visit(n)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (cycle := visit(m)):
            return cycle
    return None


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_nothing_inside_the_package_imports_a_deprecated_alias():
    users = {m: deps & ALIASES for m, deps in import_graph().items() if deps & ALIASES}
    users = {m: d for m, d in users.items() if m not in ALIASES}
    assert not users, f"modules importing deprecated aliases: {users}"


def _run_file_names() -> set[str]:
    """Every file and folder name :class:`~lookalike.paths.RunLayout` hands out."""
    run = paths.RunLayout("/run")
    names = {v for k, v in vars(paths.RunLayout).items() if k.isupper() and isinstance(v, str)}
    for attr, value in vars(paths.RunLayout).items():
        if isinstance(value, property):
            names.add(getattr(run, attr).name)
    return names


def _string_literals(path: Path) -> list[tuple[int, str]]:
    out = []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and n.body
        and isinstance(n.body[0], ast.Expr)
        and isinstance(n.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings:
                out.append((node.lineno, node.value))
    return out


def test_run_layout_names_every_run_file():
    names = _run_file_names()
    for expected in ("images.parquet", "embeddings", "state.json", "ids.parquet", "figures"):
        assert expected in names


# Folder names that are also ordinary words (a source called "logos", a unit "images/s",
# the module "images", the command "find", an "index") count only as a segment of a path to
# a file ("logos/*.png").
AMBIGUOUS = {"images", "logos", "clusters", "report", "notebooks", "find", "index"}


def spells_run_file(text: str, names: set[str]) -> bool:
    """True when the string literal ``text`` names a run file or folder of ``names``."""
    segments = [s for s in re.split(r"[/\\]", text) if s]
    if text in names - AMBIGUOUS:
        return True
    if any(s in names and "." in s for s in segments):  # a file name, anywhere in a path
        return True
    files = [s for s in segments[1:] if "." in s or "*" in s]
    return bool(files) and any(s in names for s in segments[:-1])


def test_the_run_file_detector():
    names = {"images.parquet", "embeddings", "logos", "state.json"}
    assert spells_run_file("images.parquet", names)
    assert spells_run_file("embeddings", names)
    assert spells_run_file("logos/*.png", names)
    assert spells_run_file("x/state.json", names)
    assert not spells_run_file("logos", names)  # also a source's name
    assert not spells_run_file("images/s", names)


def test_no_module_but_the_run_layout_spells_a_run_file_name():
    names = _run_file_names()
    offenders = [
        f"{path.relative_to(PACKAGE)}:{line}: {text!r}"
        for path in MODULES
        if path.name != "paths.py"
        for line, text in _string_literals(path)
        if spells_run_file(text, names)
    ]
    assert not offenders, "run file names outside RunLayout:\n" + "\n".join(offenders)


def _code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]) -> int:
    body = node.body
    if (
        isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        start = body[0].end_lineno + 1
    else:
        start = body[0].lineno
    code = lines[start - 1 : node.end_lineno]
    return sum(1 for s in code if s.strip() and not s.strip().startswith("#"))


def long_functions(limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``module:function (n lines)`` for every function whose code exceeds ``limit`` lines."""
    out = []
    for path in MODULES:
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = _code_lines(node, lines)
                if n > limit:
                    out.append(f"{path.relative_to(PACKAGE)}:{node.name} ({n} lines)")
    return out


def test_no_function_is_longer_than_80_lines_of_code():
    assert long_functions() == []


def test_the_line_counter_counts_code_not_docstrings_or_comments():
    src = 'def f():\n    """Doc.\n\n    More.\n    """\n    # why\n    a = 1\n\n    return a\n'
    node = ast.parse(src).body[0]
    assert _code_lines(node, src.splitlines()) == 2


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_deprecated_aliases_warn(alias):
    import importlib
    import sys

    sys.modules.pop(f"lookalike.{alias}", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        importlib.import_module(f"lookalike.{alias}")
    assert any(issubclass(w.category, DeprecationWarning) for w in caught)


def test_py_typed_marker_ships():
    assert (PACKAGE / "py.typed").is_file()
