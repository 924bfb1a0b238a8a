"""The parameter schema: checks, normalisation, the demo switch and the notebook hook."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lookalike import params
from lookalike.exceptions import ConfigError
from lookalike.params import SCHEMA, check, check_notebook, resolve_demo, validate
from lookalike.paths import PROJECT_ROOT

USER_URL = "https://shop.example/shoes/"


def test_a_scalar_is_read_as_a_list_of_one():
    assert check({"k_values": 5})["k_values"] == [5]
    assert check({"providers": "site"})["providers"] == ["site"]
    assert check({"gallery_k_values": 4})["gallery_k_values"] == [4]


def test_unknown_name_and_wrong_choice_suggest_the_right_one():
    with pytest.raises(
        ConfigError, match=r"k_valuse: unknown parameter \(did you mean k_values\?\)"
    ):
        check({"k_valuse": 5})
    with pytest.raises(
        ConfigError,
        match=r"source='folders': use one of catalog, logos, folder "
        r"\(did you mean folder\?\)",
    ):
        check({"source": "folders"})
    with pytest.raises(ConfigError, match=r"'sit' in the list.*\(did you mean site\?\)"):
        check({"providers": ["sit", "google"]})


def test_every_problem_is_reported_at_once_one_line_each():
    bad = {
        "k_values": "abc",
        "batch_size": "abc",
        "max_pages": "abc",
        "max_domains": -3,
        "pca_components": 0,
        "demo": "yes",
        "k": "None",
    }
    _, problems = validate(bad)
    assert [p.split("=")[0] for p in problems] == list(bad)
    assert all("\n" not in p for p in problems)
    assert "max_domains=-3: use an integer >= 1" in problems[3]
    assert "pca_components=0: use an integer >= 1, or a share of variance in (0, 1)" in problems[4]
    assert "write null, not None" in problems[6]
    with pytest.raises(ConfigError, match=r"^7 problems in the parameters:\n  k_values='abc'"):
        check(bad)


def test_types_and_ranges():
    ok = {
        "timeout_s": 5,
        "colour_weight": 0.0,
        "pca_components": 0.9,
        "dup_threshold": 1.0,
        "export_folders": "none",
        "background": "none",
        "layer": "block4_pool",
        "k": None,
    }
    assert check(ok) == ok
    for name, value in [
        ("timeout_s", 0),
        ("colour_weight", 1.5),
        ("pca_components", 1.5),
        ("follow_product_pages", "yes"),
        ("normalize", 1),
        ("layer", "block6"),
        ("k_values", [1, 5]),
        ("k_values", []),
        ("catalog_url", "shop.example"),
        ("page_url_template", "https://x.example/?p=1"),
        ("run_dir", None),
    ]:
        _, problems = validate({name: value})
        assert problems and problems[0].startswith(f"{name}="), (name, value, problems)


def test_paths_that_must_exist(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(
        ConfigError, match=rf"image_dir='{missing}': {missing} not found; set it to"
    ):
        check({"source": "folder", "image_dir": str(missing)})
    with pytest.raises(ConfigError, match=r"image_dir=null: source='folder' needs image_dir"):
        check({"source": "folder"})
    with pytest.raises(ConfigError, match=r"domains_path=.*not found"):
        check({"source": "logos", "domains_path": str(missing / "d.csv")})
    # only for the notebooks that run: 03..05 do not read the folder
    check({"source": "folder", "image_dir": str(missing)}, notebooks=["03_embed_vgg16"])
    assert check({"source": "folder", "image_dir": str(tmp_path)})["image_dir"] == str(tmp_path)
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match=r"run_dir=.*is a file; give a folder"):
        check({"run_dir": str(a_file)})
    with pytest.raises(ConfigError, match=r"run_dir=.*is a file; give a folder"):
        check({"run_dir": str(a_file / "sub")})


# -- the demo switch ---------------------------------------------------------------------------


def test_demo_auto_is_on_only_for_the_demos_own_inputs(tmp_path):
    domains = tmp_path / "d.csv"
    domains.write_text("domain\nexample.com\n")
    assert resolve_demo({}) is True  # the defaults are the logo demo
    assert resolve_demo({"domains_path": str(params.DEMO_DOMAINS)}) is True
    assert resolve_demo({"source": "catalog"}) is True  # http://shop.test/shoes/
    assert resolve_demo({"source": "catalog", "catalog_url": USER_URL}) is False
    assert resolve_demo({"source": "catalog", "page_url_template": USER_URL + "?p={page}"}) is False
    assert resolve_demo({"source": "logos", "domains_path": str(domains)}) is False
    assert resolve_demo({"proxy": "http://127.0.0.1:3128"}) is False
    assert resolve_demo({"source": "catalog", "proxy": "http://127.0.0.1:3128"}) is False
    assert resolve_demo({"source": "folder", "image_dir": str(tmp_path)}) is False
    assert resolve_demo({"demo": False}) is False


def test_demo_true_never_takes_a_users_input_or_proxy(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"demo=true: catalog_url='https://shop.example/shoes/'"
        r" is not the demo shop .*leave demo out \(auto\) or set demo: false",
    ):
        resolve_demo({"demo": True, "source": "catalog", "catalog_url": USER_URL})
    with pytest.raises(
        ConfigError,
        match=r"demo=true: proxy='http://127.0.0.1:3128' is set, "
        r"but the demo would replace it",
    ):
        check({"demo": True, "proxy": "http://127.0.0.1:3128"})
    domains = tmp_path / "d.csv"
    domains.write_text("domain\nexample.com\n")
    with pytest.raises(ConfigError, match=r"is your own domain list"):
        check({"demo": True, "domains_path": str(domains)})
    assert resolve_demo({"demo": True}) is True


def test_demo_constants_match_the_demo_web():
    from lookalike import demo

    assert params.DEMO_SHOP_HOST == demo.SHOP_HOST
    assert params.DEMO_DOMAINS.is_file()


# -- running inside a notebook -----------------------------------------------------------------


def test_check_notebook_normalises_in_place_and_resolves_demo(capsys):
    ns = {"run_dir": "runs/x", "k_values": 5, "pca_components": 10, "other": object()}
    out = check_notebook("04_pca_kmeans", ns)
    assert ns["k_values"] == [5] and out["k_values"] == [5]
    ns = {"run_dir": "runs/x", "source": "catalog", "demo": "auto", "catalog_url": USER_URL}
    assert check_notebook("01_scrape", ns)["demo"] is False and ns["demo"] is False
    ns = {"run_dir": "runs/x", "source": "logos", "demo": True}
    check_notebook("02_fetch_logos", ns)
    assert ns["demo"] is True and "demo: on" in capsys.readouterr().out
    with pytest.raises(ConfigError, match=r"k_values='abc'"):
        check_notebook("04_pca_kmeans", {"k_values": "abc"})
    with pytest.raises(ConfigError, match=r"did you mean 04_pca_kmeans"):
        check_notebook("04_pca_kmean", {})


def test_checking_is_fast_and_imports_no_stage_module():
    code = (
        "import sys, time, json; t = time.perf_counter()\n"
        "from lookalike import params\n"
        "params.validate({'source': 'folders', 'k_values': 5, 'k_valuse': 1})\n"
        "params.check({'source': 'catalog', 'catalog_url': 'https://a.example/'})\n"
        "dt = time.perf_counter() - t\n"
        "print(json.dumps([dt, sorted(m for m in sys.modules if m.startswith(('lookalike', "
        "'tensorflow', 'keras', 'pandas', 'numpy')))]))"
    )
    env_path = str(PROJECT_ROOT / "lib")
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
    )
    seconds, modules = json.loads(out.stdout)
    assert seconds < 0.5
    assert modules == ["lookalike", "lookalike.exceptions", "lookalike.params", "lookalike.paths"]


# -- the schema's copies of the stage modules' choices -----------------------------------------


def _defined_in_package(name: str):
    """The value of module-level ``name`` wherever the package defines it (found with ast)."""
    pkg = PROJECT_ROOT / "lib" / "lookalike"
    for path in sorted(pkg.glob("*.py")):
        if path.stem == "params":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            targets = (
                node.targets
                if isinstance(node, ast.Assign)
                else ([node.target] if isinstance(node, ast.AnnAssign) else [])
            )
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return getattr(importlib.import_module(f"lookalike.{path.stem}"), name)
    raise AssertionError(f"no module of lib/lookalike defines {name}")


@pytest.mark.parametrize(
    "name",
    [
        "PROVIDERS",
        "POOLINGS",
        "BACKGROUNDS",
        "FITS",
        "PRECISIONS",
        "ENGINES",
        "ALGORITHMS",
        "EXPORT_MODES",
        "VGG16_LAYERS",
    ],
)
def test_choices_match_the_stage_modules(name):
    assert tuple(getattr(params, name)) == tuple(_defined_in_package(name))


def test_presets_match_the_similarity_presets():
    presets = _defined_in_package("PRESETS")
    assert set(params.PRESETS) == {"auto", *presets}


def test_schema_is_well_formed():
    for p in SCHEMA.values():
        assert p.help and "\n" not in p.help, p.name
        assert set(p.notebooks) <= set(params.NOTEBOOKS), p.name
        for nb in p.notebooks:
            value, problem = params.check_value(p, p.default_for(nb))
            assert problem is None, (p.name, nb, problem)
    assert Path(params.__file__).stat().st_size < 60_000
