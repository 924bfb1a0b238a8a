"""The ``lookalike`` command: bad input is one line and exit code 2, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from lookalike.paths import PROJECT_ROOT


def lookalike(*args: str, cwd=PROJECT_ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "lib")}
    return subprocess.run(
        [sys.executable, "-m", "lookalike", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.fixture
def files(tmp_path):
    (tmp_path / "bad.yaml").write_text("run_dir: runs/x\nk_values: [1, 2\n")
    (tmp_path / "latin1.yaml").write_bytes("run_dir: caf\xe9\n".encode("latin-1"))
    (tmp_path / "ok.yaml").write_text(f"run_dir: {tmp_path / 'run'}\n")
    (tmp_path / "a_file").write_text("x")
    return tmp_path


CASES = {
    "yaml": (["run", "{t}/bad.yaml"], r"config .*bad.yaml is not valid YAML \(line 2"),
    "utf8": (["run", "{t}/latin1.yaml"], r"latin1.yaml is not UTF-8 text .*save it as UTF-8"),
    "missing": (["run", "{t}/nope.yaml"], r"config file not found: .*nope.yaml"),
    "p_yaml": (["run", "{t}/ok.yaml", "-p", "k_values=[5, 10"], r"-p k_values=\[5, 10: the value"),
    "p_form": (["run", "{t}/ok.yaml", "-p", "k_values"], r"-p expects name=value"),
    "run_dir": (["run", "{t}/ok.yaml", "--run-dir", "{t}/a_file"], r"run_dir=.*a_file is a file"),
    "from": (["run", "{t}/ok.yaml", "--from", "7"], r"--from 7: unknown notebook; use one of 01"),
    "name": (["run", "{t}/ok.yaml", "-p", "k_valuse=5"], r"did you mean k_values\?"),
    "choice": (["run", "{t}/ok.yaml", "-p", "source=folders"], r"did you mean folder\?"),
    "type": (["run", "{t}/ok.yaml", "-p", "max_domains=-3"], r"max_domains=-3: use an integer"),
    "param": (["params", "k_valuse"], r"unknown parameter 'k_valuse' \(did you mean k_values\?\)"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_exit_2(files, case):
    import re

    args, pattern = CASES[case]
    proc = lookalike(*(a.format(t=files) for a in args))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("lookalike: error: ")
    assert re.search(pattern, lines[0]), lines[0]
    assert not (files / "run").exists()


def test_several_problems_are_one_line_each(files):
    proc = lookalike("run", f"{files}/ok.yaml", "-p", "k_valuse=5", "-p", "source=folders")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "lookalike: error: 2 problems in the parameters:",
        "  k_valuse: unknown parameter (did you mean k_values?)",
        "  source='folders': use one of catalog, logos, folder (did you mean folder?)",
    ]


def test_params_prints_yaml_with_descriptions_grouped_by_notebook():
    from lookalike.params import NOTEBOOKS, SCHEMA

    proc = lookalike("params")
    assert proc.returncode == 0
    data = yaml.safe_load(proc.stdout)
    assert set(data) == set(SCHEMA)
    assert data["k"] is None and data["demo"] == "auto" and data["k_values"][:2] == [3, 5]
    out = proc.stdout
    assert "None" not in out.replace("None = ", "") and "True" not in out
    positions = [out.index(f"# -- {nb}:") for nb in NOTEBOOKS]
    assert positions == sorted(positions)
    assert "batch_size: 32  # images per forward pass [an integer >= 1, or null]" in out
    assert "\n# concurrency: 8  # set above (shared with 01_scrape)" in out


def test_params_name_shows_one_parameter():
    proc = lookalike("params", "k_values")
    assert proc.returncode == 0
    assert proc.stdout.splitlines()[:4] == [
        "k_values: the k sweep; values >= the number of images are dropped",
        "  allowed:   a list of integers >= 2 (one integer means [it]), or null",
        "  default:   [3, 5, 10, 20, 50, 70, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]",
        "  notebooks: 04_pca_kmeans",
    ]


def test_weights_passes_its_options_through(monkeypatch, capsys):
    from lookalike import cli, weights

    seen = []
    monkeypatch.setattr(weights, "main_weights", lambda argv: seen.append(argv) or 0)
    assert cli.main(["weights", "--offline", "--cache-dir", "/tmp/k"]) == 0
    assert seen == [["--offline", "--cache-dir", "/tmp/k"]]
    proc = lookalike("weights", "--help")
    assert proc.returncode == 0 and "--offline" in proc.stdout and "--cache-dir" in proc.stdout
