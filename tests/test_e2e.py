"""End to end: ``lookalike run`` on a tiny demo with the real VGG16 weights.

These tests start real Jupyter kernels, the real demo web server and the real network;
they are the slowest in the suite (about a minute each).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lookalike import storage
from lookalike.extras import SLOTS
from lookalike.paths import PROJECT_ROOT, RunLayout
from lookalike.report import WIDGET_VIEW
from lookalike.run import NOTEBOOKS

K_VALUES = [2, 3, 4]


def _lookalike(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "lookalike", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "MPLBACKEND": "Agg"},
        timeout=900,
    )
    if check and proc.returncode != 0:
        pytest.fail(f"lookalike {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def _errors_in(nb_path: Path) -> list[str]:
    nb = nbformat.read(nb_path, as_version=4)
    return [
        f"{o.get('ename')}: {o.get('evalue')}"
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]


@pytest.fixture(scope="module")
def logo_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("e2e") / "demo-logos"
    _lookalike(
        "run",
        "configs/demo-logos.yaml",
        "--run-dir",
        str(run),
        "-p",
        "max_domains=40",
        "-p",
        f"k_values={K_VALUES}",
    )
    return run


def test_manifest_has_a_row_per_logo(logo_run):
    manifest = storage.read_manifest(logo_run)
    ok = manifest[manifest["status"] == "ok"]
    assert len(ok) >= 36, manifest["error"].value_counts()
    assert set(manifest["source"]) == {"logos"}
    for path in ok["path"]:
        assert storage.image_abspath(logo_run, path).stat().st_size > 0


def test_embeddings_are_finite_512d(logo_run):
    ids, vectors = storage.read_embeddings(logo_run)
    ok = storage.read_manifest(logo_run, ok_only=True)
    assert vectors.shape == (len(ok), 512)
    assert vectors.dtype == np.float32
    assert np.isfinite(vectors).all()
    assert set(ids["image_id"]) == set(ok["image_id"])


def test_every_image_has_a_label_at_every_k(logo_run):
    ids, _ = storage.read_embeddings(logo_run)
    clusters = pd.read_parquet(logo_run / "clusters.parquet")
    km = clusters[clusters["method"] == "kmeans"]
    assert sorted(km["k"].unique()) == K_VALUES
    for k in K_VALUES:
        at_k = km[km["k"] == k]
        assert set(at_k["image_id"]) == set(ids["image_id"])
        assert at_k["cluster"].between(0, k - 1).all()
        assert at_k["cluster"].nunique() == k


def test_metrics_have_a_row_per_k(logo_run):
    metrics = pd.read_csv(logo_run / "metrics.csv")
    km = metrics[metrics["method"] == "kmeans"]
    assert sorted(km["k"]) == K_VALUES
    cols = ["inertia", "silhouette", "davies_bouldin", "calinski_harabasz"]
    assert np.isfinite(km[cols].to_numpy()).all()


def test_logos_preset_adds_parts_neighbours_and_similarity_clusters(logo_run):
    from lookalike import neighbors, similarity

    assert similarity.read_settings(logo_run)["preset"] == "logos"
    ids, _ = storage.read_embeddings(logo_run)
    assert np.load(RunLayout(logo_run).parts).shape[:2] == (len(ids), SLOTS)
    nb = neighbors.read_neighbors(logo_run)
    assert list(nb.columns) == neighbors.NEIGHBORS_COLUMNS + neighbors.MATCH_COLUMNS
    assert set(nb["match"]) <= set(neighbors.MATCHES) and nb["colour_gain"].notna().all()
    assert len(nb) == len(ids) * min(10, len(ids) - 1)
    assert set(nb["image_id"]) == set(ids["image_id"])
    assert (nb["image_id"] != nb["neighbor_id"]).all()
    metrics = pd.read_csv(logo_run / "metrics.csv")
    assert sorted(metrics.loc[metrics["method"] == "similarity", "k"]) == K_VALUES


def test_figures_are_nonempty_pngs(logo_run):
    figures = sorted((logo_run / "figures").rglob("*.png"))
    names = {p.name for p in figures}
    assert {"elbow.png", "scores.png"} <= names
    # the logo run inspects the similarity clustering of the logos preset by default
    assert any(n.startswith("overview_similarity_k") for n in names)
    for p in figures:
        with Image.open(p) as im:
            assert im.format == "PNG" and min(im.size) > 10


def test_executed_notebooks_have_no_errors(logo_run):
    for name in NOTEBOOKS:
        nb_path = logo_run / "notebooks" / f"{name}.ipynb"
        assert nb_path.exists(), name
        assert _errors_in(nb_path) == [], name
        html = logo_run / "report" / f"{name}.html"
        assert html.stat().st_size > 1000
    assert (logo_run / "params.yaml").exists()
    log = (logo_run / "run.log").read_text()
    assert "done 05_elbow_and_inspect" in log


def test_reports_load_nothing_and_show_no_path_of_this_machine(logo_run):
    """Every notebook's report (with progress bars in 02-05 and the browser in 05): no
    script from a CDN, no live widget, no path of the run folder or the project."""
    roots = {str(logo_run), str(logo_run.resolve()), str(PROJECT_ROOT)}
    for name in NOTEBOOKS:
        text = RunLayout(logo_run).report(name).read_text(encoding="utf-8")
        assert "<script src=" not in text and WIDGET_VIEW not in text, name
        assert [r for r in roots if r in text] == [], name
        assert "run folder: demo-logos" in text, name


def test_rerun_resumes_without_redoing_work(logo_run):
    logo_files = {p: p.stat().st_mtime_ns for p in (logo_run / "logos").glob("*.png")}
    vectors_before = np.load(logo_run / "embeddings" / "vectors.npy")
    _lookalike(
        "run",
        "configs/demo-logos.yaml",
        "--run-dir",
        str(logo_run),
        "--to",
        "03",
        "-p",
        "max_domains=40",
    )
    assert {p: p.stat().st_mtime_ns for p in logo_files} == logo_files
    nb = nbformat.read(logo_run / "notebooks" / "03_embed_vgg16.ipynb", as_version=4)
    text = json.dumps([c.get("outputs", []) for c in nb.cells])
    assert "'computed': 0" in text or '"computed": 0' in text or "computed 0" in text, text[-2000:]
    np.testing.assert_array_equal(np.load(logo_run / "embeddings" / "vectors.npy"), vectors_before)


def test_more_domains_join_the_run_without_embedding_the_others(logo_run, tmp_path):
    import shutil

    run = RunLayout(tmp_path / "grown")
    shutil.copytree(logo_run, run.root, symlinks=True)
    before = pd.read_parquet(run.clusters)
    _lookalike(
        "run", "configs/demo-logos.yaml", "--run-dir", str(run.root), "--to", "04",
        "-p", "max_domains=48", "-p", f"k_values={K_VALUES}",
    )  # fmt: skip
    after = pd.read_parquet(run.clusters)
    old, new = set(before["image_id"]), set(after["image_id"]) - set(before["image_id"])
    assert new
    nb = nbformat.read(run.executed_notebook("03_embed_vgg16"), as_version=4)
    text = json.dumps([c.get("outputs", []) for c in nb.cells])
    assert f"computed {len(new)}, cached {len(old)}" in text, text[-2000:]  # only the new ones
    kept = before.merge(after, on=["image_id", "method", "k"], suffixes=("", "_after"))
    assert len(kept) == len(before) and (kept["cluster"] == kept["cluster_after"]).all()
    added = pd.read_csv(run.additions)
    assert set(added["n_new"]) == {len(new)} and set(added["n_before"]) == {len(old)}
    manifest = storage.read_manifest(run)
    assert manifest["added"].notna().all() and manifest["added"].nunique() >= 2
    nb4 = nbformat.read(run.executed_notebook("04_pca_kmeans"), as_version=4)
    assert f"{len(new)} new images joined the {len(old)} already clustered" in json.dumps(
        [c.get("outputs", []) for c in nb4.cells]
    )


def test_plain_papermill_runs_one_notebook(logo_run, tmp_path):
    out = tmp_path / "04.ipynb"
    proc = subprocess.run(
        [
            str(Path(sys.executable).with_name("papermill")),
            "notebooks/04_pca_kmeans.ipynb",
            str(out),
            "-p",
            "run_dir",
            str(logo_run),
            "-y",
            f"k_values: {K_VALUES}",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _errors_in(out) == []


def test_failure_names_notebook_and_cell(logo_run, tmp_path):
    # a value that passes the parameter checks but fails inside the notebook: the vector
    # cache under a path whose parent is a file
    (tmp_path / "bogus").write_text("a file, not a folder")
    proc = _lookalike(
        "run",
        "configs/demo-logos.yaml",
        "--run-dir",
        str(logo_run),
        "--from",
        "03",
        "--to",
        "03",
        "-p",
        f"cache_dir={tmp_path / 'bogus' / 'cache'}",
        "-p",
        "force=true",
        "--no-html",
        check=False,
    )
    assert proc.returncode != 0
    assert "03_embed_vgg16" in proc.stderr and "cell" in proc.stderr, proc.stderr
    assert "bogus" in proc.stderr


def test_unknown_parameter_is_refused_before_running(tmp_path):
    proc = _lookalike(
        "run",
        "configs/demo-logos.yaml",
        "--run-dir",
        str(tmp_path / "r"),
        "-p",
        "k_valuez=[2]",
        check=False,
    )
    assert proc.returncode == 2  # bad input: the command-line convention
    assert "k_valuez" in proc.stderr and "k_values" in proc.stderr
    assert not (tmp_path / "r" / "notebooks").exists()
