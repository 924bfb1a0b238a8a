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
