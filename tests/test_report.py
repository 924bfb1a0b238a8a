"""lookalike.report: HTML reports of executed notebooks that open offline.

The widgets are drawn from real ipywidgets state (``ipywidgets.embed.embed_data`` saves it in
the same format as a notebook's metadata); the reports come from a real ``lookalike run`` of
notebooks 04 and 05 on a small synthetic run, and are opened in Debian's chromium
(headless, skipped without it) with every request sent to a local proxy that records it and
answers none: the network is blocked, and any attempt to use it is seen.
"""

from __future__ import annotations

import base64
import json
import shutil
import socketserver
import subprocess
import threading
from urllib.parse import urlsplit

import ipywidgets as widgets
import nbformat
import pytest
from bs4 import BeautifulSoup
from chromium import CHROMIUM, FLAGS
from ipywidgets.embed import embed_data
from synthetic_run import make_run
from tqdm.notebook import tqdm

from lookalike.browser import ClusterBrowser
from lookalike.paths import PROJECT_ROOT, RunLayout
from lookalike.report import (
    WIDGET_STATE,
    WIDGET_VIEW,
    render_html,
    shown_parameters,
    static_widgets,
    widget_html,
)
from lookalike.run import run_pipeline

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed and could not be: run `make browser` "
    "(as root: apt-get install -y chromium) to run the real-browser report test",
)


FIGURE_SPACE = "\u2007"  # tqdm pads its bars' text with it


def _saved(view) -> tuple[str, dict]:
    """A widget's model id and the saved state of it and its children."""
    data = embed_data(views=[view])
    return data["view_specs"][0]["model_id"], data["manager_state"]


def _notebook(outputs: list[dict], state: dict | None) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("display(w)")
    cell.outputs = [nbformat.from_dict(o) for o in outputs]
    nb.cells.append(cell)
    if state is not None:
        nb.metadata["widgets"] = {WIDGET_STATE: state}
    return nb


def _view(model_id: str, text: str) -> dict:
    data = {WIDGET_VIEW: {"model_id": model_id, "version_major": 2, "version_minor": 0}}
    return nbformat.v4.new_output("display_data", data={**data, "text/plain": text})


def test_a_finished_tqdm_bar_shows_its_final_text_and_a_full_bar():
    bar = tqdm(range(7), desc="embed", unit="img")
    for _ in bar:
        pass
    model_id, saved = _saved(bar.container)
    html = widget_html(model_id, saved["state"])
    soup = BeautifulSoup(html, "html.parser")
    text = soup.get_text().replace(FIGURE_SPACE, " ")
    assert text.startswith("embed: 100% 7/7 [00:00<00:00,")
    fill = soup.select_one(".lookalike-widget-progress div")
    assert fill["style"].startswith("width:100.0%")
    assert soup.find("script") is None


def test_the_cluster_browser_becomes_its_pickers_images_and_table(tmp_path):
    b = ClusterBrowser(make_run(tmp_path), k=3, n_neighbours=4, thumb=32)
    model_id, saved = _saved(b.widget())
    soup = BeautifulSoup(widget_html(model_id, saved["state"]), "html.parser")
    fields = [f.get_text() for f in soup.select(".lookalike-widget-field")]
    assert fields[0] == "k: 3" and fields[1].startswith("cluster: cluster 0:")
    assert fields[2].startswith("image: rank 0:")
    pngs = [base64.b64decode(i["src"].removeprefix("data:image/png;base64,")) for i in soup("img")]
    assert pngs == [b.grid_png, b.neighbours_png]
    rows = soup.select("table tbody tr")
    assert len(rows) == 4  # the neighbours table, one row per neighbour


def test_static_widgets_replace_every_view_and_drop_the_saved_state():
    label = widgets.Label(value="hello")
    model_id, saved = _saved(label)
    nb = _notebook([_view(model_id, "Label(value='hello')"), _view("gone", "Gone()")], saved)
    assert static_widgets(nb) == 1
    drawn, missing = nb.cells[0].outputs
    assert WIDGET_VIEW not in drawn.data and "hello" in drawn.data["text/html"]
    # a widget whose state was not saved keeps its text representation
    assert dict(missing.data) == {"text/plain": "Gone()"}
    assert "widgets" not in nb.metadata


def test_an_unknown_widget_kind_keeps_its_text(tmp_path):
    model_id, saved = _saved(widgets.ColorPicker(value="red"))
    nb = _notebook([_view(model_id, "ColorPicker(value='red')")], saved)
    assert static_widgets(nb) == 0
    assert dict(nb.cells[0].outputs[0].data) == {"text/plain": "ColorPicker(value='red')"}
    nbformat.write(nb, tmp_path / "nb.ipynb")
    html = render_html(tmp_path / "nb.ipynb", tmp_path / "out" / "nb.html").read_text()
    assert "ColorPicker(value=&#x27;red&#x27;)" in html or "ColorPicker(value='red')" in html


def test_injected_paths_show_relative_to_the_project_or_by_the_run_folders_name(tmp_path):
    run = tmp_path / "my-run"
    nb = _notebook([], None)
    cell = nbformat.v4.new_code_cell(
        f'# Parameters\nrun_dir = "{run}"\ndomains_path = "{PROJECT_ROOT}/data/d.csv"\n'
        'image_dir = "/srv/images"\nk = 3\n',
        metadata={"tags": ["injected-parameters"]},
    )
    nb.cells.insert(0, cell)
    shown_parameters(nb, run)
    assert cell.source.splitlines()[1:] == [
        'run_dir = "my-run"  # this run\'s folder; reports leave out its full path',
        'domains_path = "data/d.csv"',
        'image_dir = "/srv/images"',
        "k = 3",
    ]


# -- reports of a real run -------------------------------------------------------------------


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> RunLayout:
    """Notebooks 04 (tqdm bars) and 05 (the cluster browser) run on a synthetic run."""
    root = make_run(tmp_path_factory.mktemp("report"), k_values=(2, 3, 4))
    run_pipeline(
        run_dir=root, start="04", stop="05", overrides={"k_values": [2, 3, 4]}, progress=False
    )
    return RunLayout(root)


def _pages(run: RunLayout) -> list:
    return sorted(run.report_dir.glob("*.html"))


def test_reports_load_no_script_and_keep_no_widget(reports):
    names = [p.name for p in _pages(reports)]
    assert {"04_pca_kmeans.html", "05_elbow_and_inspect.html"} <= set(names)
    for page in _pages(reports):
        soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
        assert [s["src"] for s in soup.find_all("script", src=True)] == [], page.name
        assert [x["href"] for x in soup.find_all("link", href=True)] == [], page.name
        assert soup.find("script", type=WIDGET_VIEW) is None, page.name
    nb04 = reports.report("04_pca_kmeans").read_text(encoding="utf-8").replace(FIGURE_SPACE, " ")
    assert "kmeans (KMeans): 100%" in nb04  # the bars' final text, not their first


def test_reports_show_no_path_of_this_machine(reports):
    roots = {str(reports.root), str(reports.root.resolve()), str(PROJECT_ROOT)}
    for page in _pages(reports):
        text = page.read_text(encoding="utf-8")
        assert [r for r in roots if r in text] == [], page.name
    text = reports.report("05_elbow_and_inspect").read_text(encoding="utf-8")
    assert "run folder: run" in text and "open report/gallery.html in a browser" in text


def _host(request_line: str) -> str:
    """The host of a proxied request: ``GET http://host/... HTTP/1.1``, ``CONNECT host:443``."""
    target = request_line.split()[1]
    return urlsplit(target if "://" in target else f"//{target}").hostname or target


class _Recorder(socketserver.ThreadingTCPServer):
    """A proxy on 127.0.0.1 that records each request's first line and answers none."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        self.requests: list[str] = []
        super().__init__(("127.0.0.1", 0), _RecordLine)


class _RecordLine(socketserver.StreamRequestHandler):
    def handle(self):
        line = self.rfile.readline(4096).decode("latin-1").strip()
        if line:
            self.server.requests.append(line)  # type: ignore[attr-defined]


CHECK = """
<script>
window.addEventListener("load", () => {
  const loads = [...document.querySelectorAll("img[src], script[src], link[href], iframe[src]")]
    .map((e) => e.getAttribute("src") || e.getAttribute("href"));
  const boxes = [...document.querySelectorAll(".jp-OutputArea-output > .lookalike-widget-box")];
  const out = {
    resources: performance.getEntriesByType("resource").map((e) => e.name),
    loads: loads.filter((u) => !/^(data|file):/.test(u)),
    boxes: boxes.map((b) => {
      const imgs = [...b.querySelectorAll("img")];
      return {
        text: b.innerText.trim(),
        height: b.getBoundingClientRect().height,
        images: imgs.length,
        drawn: imgs.filter((i) => i.complete && i.naturalWidth > 0).length,
      };
    }),
  };
  const pre = document.createElement("pre");
  pre.id = "check";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def _open_offline(tmp_path, page) -> tuple[dict, list[str]]:
    """Open ``page`` (a copy with :data:`CHECK`) in chromium with all traffic sent to a
    :class:`_Recorder`; the check's result and the requests the proxy saw."""
    check = tmp_path / page.name
    check.write_text(page.read_text(encoding="utf-8").replace("</body>", CHECK + "</body>"))
    profile = tmp_path / "chromium-profile"
    shutil.rmtree(profile, ignore_errors=True)
    proxy = _Recorder()
    threading.Thread(target=proxy.serve_forever, args=(0.05,), daemon=True).start()
    try:
        proc = subprocess.run(
            [
                CHROMIUM,
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--proxy-server=http://127.0.0.1:{proxy.server_address[1]}",
                "--proxy-bypass-list=<-loopback>",  # loopback too goes to the recorder
                "--virtual-time-budget=10000",
                "--dump-dom",
                check.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )
    finally:
        proxy.shutdown()
        proxy.server_close()
    found = BeautifulSoup(proc.stdout, "html.parser").find("pre", id="check")
    assert found is not None, f"the check did not run:\n{proc.stderr[-3000:]}"
    return json.loads(found.string), proxy.requests


@pytest.fixture(scope="module")
def chromium_own(tmp_path_factory) -> set[str]:
    """The hosts chromium itself asks for (its clock, sign-in, google.com, its check-in) on
    an empty page that keeps it busy; no flag turns all of them off."""
    blank = tmp_path_factory.mktemp("blank") / "blank.html"
    # busy for 3 s, as a report is that runs plotly.js (its map): chromium asks for more of
    # its own hosts (android.clients.google.com) the longer a page keeps it working
    busy = "<script>const t0 = Date.now(); while (Date.now() - t0 < 3000) {}</script>"
    blank.write_text(f"<!DOCTYPE html><html><body><p>empty</p>{busy}</body></html>")
    _, requests = _open_offline(blank.parent, blank)
    return {_host(r) for r in requests}


@needs_chromium
@pytest.mark.parametrize("name", ["04_pca_kmeans", "05_elbow_and_inspect"])
def test_reports_open_offline_in_chromium(reports, tmp_path, chromium_own, name):
    result, requests = _open_offline(tmp_path, reports.report(name))
    # the page asked the (blocked) network for nothing beyond chromium's own requests
    assert {_host(r) for r in requests} - chromium_own == set(), requests
    assert result["loads"] == []
    assert [u for u in result["resources"] if not u.startswith(("file:", "data:"))] == []
    assert result["boxes"], "no widget was drawn"
    assert all(b["text"] and b["height"] > 0 for b in result["boxes"]), result["boxes"]
    if name == "05_elbow_and_inspect":  # the cluster browser: k, cluster, image, 2 sheets
        (browser,) = [b for b in result["boxes"] if b["images"]]
        assert browser["text"].startswith("k: ") and browser["drawn"] == browser["images"] == 2
