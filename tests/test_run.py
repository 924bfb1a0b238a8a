"""The runner: config files, parameter checks before any kernel, notebook selection, demo."""

from __future__ import annotations

import time

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


def test_unknown_parameter_suggests_the_closest_name(tmp_path):
    with pytest.raises(ConfigError, match=r"^kk: unknown parameter \(did you mean k\?\)$"):
        resolve_parameters({"kk": 3}, {}, tmp_path)
    with pytest.raises(ConfigError, match=r"^zzz: unknown parameter \(`lookalike params` lists"):
        resolve_parameters({"zzz": 3}, {}, tmp_path)


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
    with pytest.raises(ConfigError, match="--from 09: unknown notebook; use one of 01, 02"):
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
    # example.yaml works as soon as image_dir is set
    overrides = {"image_dir": str(tmp_path)} if name == "example.yaml" else {}
    values, _ = resolve_parameters(config, overrides, tmp_path / "run")
    assert values["demo"] is name.startswith("demo-")


# -- config files and -p values that are not valid ---------------------------------------------


def test_load_config_names_the_file_and_the_fix(tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("run_dir: runs/x\nk_values: [1, 2\n", encoding="utf-8")
    with pytest.raises(
        ConfigError,
        match=rf"^config {bad_yaml} is not valid YAML \(line \d+, "
        r"column \d+: .*\); write one 'name: value' per line$",
    ):
        load_config(bad_yaml)
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("user_agent: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"is not UTF-8 text \(byte 0xe9 at offset 15\); save"):
        load_config(latin1)
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(tmp_path)
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    assert load_config(empty) == {}


def test_parse_overrides_rejects_invalid_yaml():
    with pytest.raises(ConfigError, match=r"^-p k_values=\[1, 2: the value is not valid YAML"):
        parse_overrides(["k_values=[1, 2"])


# -- checked before any kernel starts ----------------------------------------------------------


@pytest.fixture
def no_kernel(monkeypatch):
    """Fail the test if the runner gets as far as a kernel."""
    import jupyter_client.manager
    import papermill

    from lookalike import run as runner

    launched = []

    def spy(*args, **kwargs):
        launched.append(args)
        raise AssertionError("a kernel was started")

    monkeypatch.setattr(runner, "ensure_kernel", spy)
    monkeypatch.setattr(runner, "execute_notebook", spy)
    monkeypatch.setattr(papermill, "execute_notebook", spy)
    monkeypatch.setattr(jupyter_client.manager.KernelManager, "start_kernel", spy)
    monkeypatch.setattr(jupyter_client.manager.AsyncKernelManager, "start_kernel", spy)
    return launched


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"source": "folders"},
            r"^source='folders': use one of catalog, logos, folder "
            r"\(did you mean folder\?\)$",
        ),
        ({"k_valuse": 5}, r"^k_valuse: unknown parameter \(did you mean k_values\?\)$"),
        (
            {"source": "folder", "image_dir": "/no/such/folder"},
            r"^image_dir='/no/such/folder': /no/such/folder not found; set it to a folder",
        ),
        ({"k_values": "five"}, r"^k_values='five': use a list of integers >= 2"),
        (
            {"source": "catalog", "catalog_url": "https://shop.example/", "demo": True},
            r"^demo=true: catalog_url='https://shop.example/' is not the demo shop",
        ),
    ],
)
def test_bad_parameters_fail_before_any_kernel_starts(tmp_path, no_kernel, overrides, message):
    from lookalike.run import run_pipeline

    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=message):
        run_pipeline({}, run_dir=tmp_path / "run", overrides=overrides)
    assert time.perf_counter() - t0 < 1.0
    assert no_kernel == []
    assert not (tmp_path / "run").exists()  # nothing written either


def test_k_values_scalar_is_accepted_as_a_list(tmp_path):
    values, per_nb = resolve_parameters({}, {"k_values": 5}, tmp_path)
    assert per_nb["04_pca_kmeans"]["k_values"] == [5]


def test_run_dir_that_is_a_file_is_refused(tmp_path, no_kernel):
    from lookalike.run import run_pipeline

    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ConfigError, match=rf"^run_dir='{f}': {f} is a file; give a folder"):
        run_pipeline({}, run_dir=f)
    assert no_kernel == []


# -- the demo switch, as the notebooks receive it ----------------------------------------------


def test_a_users_url_and_proxy_reach_the_notebooks_with_demo_off(tmp_path):
    config = {
        "source": "catalog",
        "catalog_url": "https://shop.example/shoes/",
        "proxy": "http://127.0.0.1:3128",
    }
    values, per_nb = resolve_parameters(config, {}, tmp_path)
    assert values["demo"] is False
    for nb in ("01_scrape", "02_fetch_logos"):
        assert per_nb[nb]["demo"] is False  # explicit: the notebooks' own default is not used
        assert per_nb[nb]["proxy"] == "http://127.0.0.1:3128"
    assert "demo" not in per_nb["03_embed_vgg16"]
    # the demo's own inputs turn it on
    assert resolve_parameters({"source": "catalog"}, {}, tmp_path)[0]["demo"] is True
    assert resolve_parameters({}, {}, tmp_path)[0]["demo"] is True


def _png(side: int = 64) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (side, side), (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def test_a_users_catalog_is_fetched_through_the_users_proxy(tmp_path, serve):
    """Notebook 01 with a user URL and demo left out: every request goes to the user's proxy."""
    from lookalike.run import run_pipeline

    page = (
        b'<html><body><div class="product"><a href="/p/1"><img src="/img/a.png"></a></div>'
        b'<div class="product"><a href="/p/2"><img src="/img/b.png"></a></div></body></html>'
    )
    html = {"Content-Type": "text/html"}
    png = {"Content-Type": "image/png"}
    proxy = serve(
        {
            "http://shop.example/robots.txt": (404, html, b""),
            "http://shop.example/shoes/": (200, html, page),
            "http://shop.example/img/a.png": (200, png, _png(64)),
            "http://shop.example/img/b.png": (200, png, _png(72)),
        }
    )
    config = {
        "source": "catalog",
        "catalog_url": "http://shop.example/shoes/",
        "proxy": proxy.url,
        "max_pages": 1,
    }
    run = run_pipeline(config, run_dir=tmp_path / "run", stop="01", html=False, progress=False)
    assert proxy.hits["http://shop.example/shoes/"] >= 1
    assert proxy.hits["http://shop.example/img/a.png"] == 1
    assert load_config(run / "params.yaml")["demo"] is False


def test_a_demo_run_says_so_in_its_first_line(tmp_path, no_kernel, capsys):
    from lookalike.run import run_pipeline

    with pytest.raises(AssertionError, match="a kernel was started"):
        run_pipeline({}, run_dir=tmp_path / "demo", html=False)  # the defaults: logo demo
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(
        "[lookalike] demo run (domains_path is the demo's data/demo/domains.csv): "
        "requests go to the built-in offline demo web"
    )
    with pytest.raises(AssertionError, match="a kernel was started"):
        run_pipeline(
            {"source": "folder", "image_dir": str(tmp_path)}, run_dir=tmp_path / "own", html=False
        )
    assert capsys.readouterr().out.splitlines()[0].startswith("[lookalike] run folder ")
