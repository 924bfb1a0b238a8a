"""The runner: config parsing, parameter checks and notebook selection (no kernels here)."""

from __future__ import annotations

import pytest

from lookalike.exceptions import ConfigError
from lookalike.run import (
    NOTEBOOKS,
    load_config,
    notebook_parameters,
    parse_overrides,
    resolve_parameters,
    select_notebooks,
)


def test_parse_overrides_reads_yaml_values():
    got = parse_overrides(["k=5", "k_values=[2, 3, 4]", "demo=false", "proxy=null", "x=a=b"])
    assert got == {"k": 5, "k_values": [2, 3, 4], "demo": False, "proxy": None, "x": "a=b"}


def test_parse_overrides_rejects_missing_equals():
    with pytest.raises(ConfigError, match="name=value"):
        parse_overrides(["k5"])


def test_unknown_parameter_lists_known_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) \['kk'\].*k_values"):
        resolve_parameters({"kk": 3}, {}, tmp_path)


def test_each_notebook_gets_only_its_parameters(tmp_path):
    params, per_nb = resolve_parameters({"k_values": [2, 3]}, {"batch_size": 4}, tmp_path)
    assert params["run_dir"] == str(tmp_path)
    assert per_nb["04_pca_kmeans"]["k_values"] == [2, 3]
    assert "k_values" not in per_nb["03_embed_vgg16"]
    assert per_nb["03_embed_vgg16"]["batch_size"] == 4
    assert all(p["run_dir"] == str(tmp_path) for p in per_nb.values())


def test_relative_run_dir_is_taken_from_project_root():
    from lookalike.paths import PROJECT_ROOT

    params, _ = resolve_parameters({"run_dir": "runs/x"}, {}, None)
    assert params["run_dir"] == str(PROJECT_ROOT / "runs" / "x")


def test_select_notebooks():
    assert select_notebooks() == list(NOTEBOOKS)
    assert select_notebooks("03", "05") == list(NOTEBOOKS[2:])
    assert select_notebooks("4", "4") == ["04_pca_kmeans"]
    with pytest.raises(ConfigError, match="unknown notebook"):
        select_notebooks("09")
    with pytest.raises(ConfigError, match="comes after"):
        select_notebooks("05", "03")


def test_load_config_rejects_non_mapping(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(p)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_shipped_configs_only_use_known_parameters():
    from lookalike.paths import CONFIGS_DIR

    known = set().union(*(notebook_parameters(n) for n in NOTEBOOKS))
    for path in sorted(CONFIGS_DIR.glob("*.yaml")):
        unknown = set(load_config(path)) - known
        assert not unknown, f"{path.name} sets unknown parameters {unknown}"


@pytest.mark.parametrize("name", ["demo-logos.yaml", "demo-catalog.yaml", "example.yaml"])
def test_shipped_configs_use_only_known_parameters(tmp_path, name):
    from lookalike.paths import PROJECT_ROOT

    config = load_config(PROJECT_ROOT / "configs" / name)
    resolve_parameters(config, {}, tmp_path)  # raises on an unknown or misspelt name
