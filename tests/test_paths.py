"""lookalike.paths: how reports show paths (no path of this machine)."""

from __future__ import annotations

from pathlib import Path

from lookalike.paths import DATA_DIR, PROJECT_ROOT, RUNS_DIR, RunLayout, shown


def test_shown_is_relative_to_the_run_then_the_project_then_home(tmp_path):
    run = tmp_path / "run"
    assert shown(run / "figures" / "a.png", run) == "figures/a.png"
    assert shown(DATA_DIR / "demo" / "q.png", run) == "data/demo/q.png"
    assert shown(Path.home() / ".keras" / "w.h5") == "~/.keras/w.h5"
    assert shown("/elsewhere/x.png") == "/elsewhere/x.png"


def test_shown_leaves_relative_paths_urls_and_domains_as_given():
    for value in ("logos/a.png", "https://shop.test/a.png", "acme.test"):
        assert shown(value) == value


def test_a_run_is_labelled_by_its_place_in_the_project_or_its_name(tmp_path):
    assert RunLayout(RUNS_DIR / "demo-logos").label() == "runs/demo-logos"
    assert RunLayout(tmp_path / "my-run").label() == "my-run"
    run = RunLayout(tmp_path / "my-run")
    assert run.shown(run.gallery) == "report/gallery.html"
    assert run.shown(PROJECT_ROOT / "configs") == "configs"
