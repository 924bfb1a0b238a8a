"""The committed notebooks: stripped, parameterised and documented."""

from __future__ import annotations

import ast

import nbformat
import pytest

from lookalike.paths import KERNEL_NAME
from lookalike.run import NOTEBOOKS, notebook_path


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_committed_without_outputs(name):
    nb = nbformat.read(notebook_path(name), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name}: a cell has outputs; run `make strip`"
            assert cell.execution_count is None, f"{name}: execution counts left in"
    assert nb.metadata["kernelspec"]["name"] == KERNEL_NAME


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_parameter_has_a_comment(name):
    nb = nbformat.read(notebook_path(name), as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name}: expected one cell tagged 'parameters'"
    source = tagged[0].source
    lines = source.splitlines()
    names = []
    for node in ast.parse(source).body:
        assert isinstance(node, ast.Assign), f"{name}: only assignments in the parameters cell"
        names.append(node.targets[0].id)
        line = lines[node.end_lineno - 1]
        target = node.targets[0].id
        assert "#" in line.split("=", 1)[1], f"{name}: parameter {target} lacks a comment"
    assert names[0] == "run_dir"


def test_notebooks_default_to_the_same_demo_run():
    from lookalike.run import notebook_parameters

    run_dirs = {notebook_parameters(n)["run_dir"] for n in NOTEBOOKS}
    assert run_dirs == {"runs/demo-logos"}


# -- the parameters cells agree with the schema (lookalike.params) -----------------------------

#: Parameters cells that still declare an older default than the schema. Each entry is a
#: pending notebook edit: (notebook, parameter) -> (value in the cell today, schema value).
#: Remove the entry when the notebook is edited; the test below fails while an entry is stale.
PENDING: dict[tuple[str, str], tuple] = {}


def _mismatches() -> list[tuple[str, str, object, object]]:
    from lookalike import params
    from lookalike.run import notebook_parameters

    out = []
    for nb in NOTEBOOKS:
        cell = notebook_parameters(nb)
        schema = {p.name: p.default_for(nb) for p in params.for_notebook(nb)}
        for name in sorted(set(cell) | set(schema)):
            if name not in schema:
                out.append((nb, name, cell[name], "<not in the schema>"))
            elif name not in cell:
                out.append((nb, name, "<not in the cell>", schema[name]))
            elif cell[name] != schema[name] or type(cell[name]) is not type(schema[name]):
                if cell[name] is None and params.SCHEMA[name].nullable:
                    continue  # None: "the library's default", which the schema allows
                out.append((nb, name, cell[name], schema[name]))
    return out


def test_parameters_cells_agree_with_the_schema():
    found = {(nb, name): (cell, schema) for nb, name, cell, schema in _mismatches()}
    unexpected = {k: v for k, v in found.items() if PENDING.get(k) != v}
    stale = sorted(k for k in PENDING if k not in found)
    lines = [
        f"  {nb}: {name}: cell says {cell!r}, schema (lib/lookalike/params.py) says {schema!r}"
        for (nb, name), (cell, schema) in sorted(unexpected.items())
    ] + [f"  {nb}: {name}: now agrees; remove it from PENDING" for nb, name in stale]
    assert not lines, "parameters cells and schema disagree:\n" + "\n".join(lines)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_parameter_of_a_cell_passes_the_schema(name):
    from lookalike import params
    from lookalike.run import notebook_parameters

    values = {k: v for k, v in notebook_parameters(name).items() if k in params.SCHEMA}
    _, problems = params.validate(values, notebooks=[])
    assert not problems, problems
