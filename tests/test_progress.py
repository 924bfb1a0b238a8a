"""Progress bars and summary lines: the kernel's side, the runner's side, and both together."""

from __future__ import annotations

import json
import logging
import time

import nbformat
import pytest

from lookalike import progress
from lookalike.paths import KERNEL_NAME


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def sink(tmp_path, monkeypatch):
    path = tmp_path / "progress.jsonl"
    monkeypatch.setenv(progress.ENV_FILE, str(path))
    monkeypatch.setenv(progress.ENV_STAGE, "03_embed_vgg16")
    return path


def test_bar_reports_open_moves_and_close(sink):
    items = list(progress.bar(range(7), desc="embed", unit="img"))
    assert items == list(range(7))
    recs = _records(sink)
    assert recs[0] | {"elapsed": 0} == {
        "stage": "03_embed_vgg16",
        "kind": "bar",
        "id": recs[0]["id"],
        "desc": "embed",
        "n": 0,
        "total": 7,
        "unit": "img",
        "rate": recs[0]["rate"],
        "elapsed": 0,
        "closed": False,
    }
    assert recs[-1]["closed"] is True and recs[-1]["n"] == 7
    assert len(recs) <= 4  # at most every EMIT_EVERY_S: open, maybe one move, close


def test_a_disabled_bar_still_reports_and_update_counts(sink):
    with progress.bar(total=10, desc="logos", unit="domain", disable=True) as b:
        for _ in range(4):
            b.update(2)
    last = _records(sink)[-1]
    assert (last["desc"], last["n"], last["total"], last["unit"], last["closed"]) == (
        "logos",
        8,
        10,
        "domain",
        True,
    )


def test_records_are_rate_limited(sink, monkeypatch):
    monkeypatch.setattr(progress, "EMIT_EVERY_S", 0.05)
    b = progress.bar(total=1000, desc="x")
    for _ in range(1000):
        b.update(1)
    time.sleep(0.06)
    b.update(0)
    b.close()
    recs = _records(sink)
    assert 3 <= len(recs) < 50 and recs[-1]["n"] == 1000


def test_summary_prints_and_records(sink, capsys):
    progress.summary("embed: 5/5 images embedded (100.0%), 1.0 s, 5.0 images/s")
    assert capsys.readouterr().out == "embed: 5/5 images embedded (100.0%), 1.0 s, 5.0 images/s\n"
    assert _records(sink)[-1]["kind"] == "summary"


def test_without_the_runner_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.delenv(progress.ENV_FILE, raising=False)
    monkeypatch.chdir(tmp_path)
    list(progress.bar(range(3)))
    progress.summary("done")
    assert list(tmp_path.iterdir()) == []


def test_strip_ansi():
    assert (
        progress.strip_ansi("\x1b[0;31mValueError\x1b[0m: x\x1b]8;;http://a\x07y")
        == "ValueError: xy"
    )


def test_monitor_logs_plain_lines_every_few_seconds(tmp_path, capsys):
    path = tmp_path / "p.jsonl"
    lines: list[str] = []
    with progress.ProgressMonitor(path, log=lines.append, log_every_s=3600, poll_s=0.01):
        with path.open("a") as f:
            for n in range(0, 101, 10):
                f.write(
                    json.dumps(
                        {
                            "kind": "bar",
                            "stage": "01_scrape",
                            "id": "1",
                            "desc": "images",
                            "n": n,
                            "total": 100,
                            "unit": "img",
                            "rate": 5.0,
                            "elapsed": n / 5,
                            "closed": n == 100,
                        }
                    )
                    + "\n"
                )
            f.write(json.dumps({"kind": "summary", "line": "scrape: 100 images \x1b[1mok\x1b[0m"}))
            f.write("\n")
    assert lines == [
        "01_scrape images: 0/100 img (5.0 img/s, 0.0 s)",
        "01_scrape images: 100/100 img (5.0 img/s, 20.0 s) done",
        "scrape: 100 images ok",
    ]
    err = capsys.readouterr()
    assert "01_scrape images: 100%" in err.err and "scrape: 100 images ok" in err.out


# -- through the runner ----------------------------------------------------------------------


def tiny_notebook(path, n_items: int = 6):
    """A notebook that reports like a stage: a bar, a disabled bar, coloured text, a summary."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": KERNEL_NAME,
        "display_name": "Python (lookalike)",
        "language": "python",
    }
    params = nbformat.v4.new_code_cell(f"run_dir = 'x'\nn = {n_items}")
    params.metadata["tags"] = ["parameters"]
    body = (
        "import os, time\n"
        "from lookalike import progress\n"
        "stage = os.environ.get('LOOKALIKE_STAGE', '?')\n"
        "for i in progress.bar(range(n), desc='items', unit='img'):\n"
        "    time.sleep(0.15)\n"
        "print('\\x1b[31mcoloured\\x1b[0m')\n"
        "progress.summary(f'{stage} summary: {n} items, 100.0%')\n"
    )
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, path)
    return path


def test_runner_shows_progress_and_each_stages_summary(tmp_path, monkeypatch, capsys):
    from lookalike import run as runner

    nb = tiny_notebook(tmp_path / "tiny.ipynb")
    monkeypatch.setattr(runner, "notebook_path", lambda name: nb)
    run_dir = tmp_path / "run"
    runner.run_pipeline({}, run_dir=run_dir, start="04", stop="05", html=False)
    out = capsys.readouterr()
    assert out.out.splitlines()[0].startswith(f"[lookalike] run folder {run_dir}")
    for stage in ("04_pca_kmeans", "05_elbow_and_inspect"):
        assert f"{stage} summary: 6 items, 100.0%" in out.out
        assert f"{stage} items: 100%" in out.err  # the terminal bar
        assert "| 6/6 [" in out.err
    assert "without encryption" not in out.out + out.err
    assert "KeyboardInterrupt" not in out.out + out.err
    log = (run_dir / "run.log").read_text(encoding="utf-8")
    assert "\x1b" not in log
    assert "[04_pca_kmeans] coloured" in log
    assert "04_pca_kmeans items: 6/6 img" in log and "05_elbow_and_inspect summary: 6 items" in log
    assert "without encryption" not in log


def test_execute_notebook_returns_the_summaries(tmp_path, capsys):
    from lookalike.run import execute_notebook

    logging.getLogger("lookalike.run").setLevel(logging.INFO)
    nb = tiny_notebook(tmp_path / "tiny.ipynb", n_items=3)
    got = execute_notebook(
        nb, tmp_path / "out.ipynb", {"n": 4}, stage="00_tiny", cwd=tmp_path, show_progress=False
    )
    assert got == ["00_tiny summary: 4 items, 100.0%"]
    assert "00_tiny items" not in capsys.readouterr().err  # no bars when show_progress=False
