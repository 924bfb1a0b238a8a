"""HTML reports of executed notebooks that open offline: no CDN, no widget manager.

nbconvert's default HTML loads require.js, MathJax and the ipywidgets manager from CDNs, and
draws widgets only with that manager: offline every progress bar and the notebook's
:class:`lookalike.browser.ClusterBrowser` would be empty space. :func:`render_html` instead
replaces each widget output by static HTML drawn from the widget state the notebook saved
(a tqdm bar's final text and bar, the browser's pickers as text, its images inlined) and
renders with ``lookalike/templates/report.html.j2``, which loads no script at all.
"""

from __future__ import annotations

import base64
import html as _html
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

from .paths import PROJECT_ROOT, resolve

__all__ = [
    "WIDGET_STATE",
    "WIDGET_VIEW",
    "render_html",
    "shown_parameters",
    "static_widgets",
    "widget_html",
]

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"

_BOXES = {"HBoxModel": "row", "VBoxModel": "column", "BoxModel": "row", "GridBoxModel": "row"}
_PICKERS = {"DropdownModel", "SelectModel", "RadioButtonsModel", "ToggleButtonsModel"}
_TEXTS = {"LabelModel", "TextModel", "TextareaModel", "IntTextModel", "FloatTextModel"}
_NUMBERS = {"IntSliderModel", "FloatSliderModel", "BoundedIntTextModel", "BoundedFloatTextModel"}
_PROGRESS = {"FloatProgressModel", "IntProgressModel"}
_SNAPSHOT = (
    '<p class="lookalike-widget-note"><i>A snapshot of an interactive widget: open the '
    "notebook in JupyterLab to use it.</i></p>"
)
_BAR_COLOURS = {"success": "#5cb85c", "danger": "#d9534f", "warning": "#f0ad4e", "info": "#5bc0de"}


def _child_id(ref: str) -> str:
    return ref.removeprefix("IPY_MODEL_")


def _field(description: str, value: str) -> str:
    label = f"{_html.escape(description)}: " if description else ""
    return f'<div class="lookalike-widget-field">{label}<b>{_html.escape(value)}</b></div>'


def _progress(s: dict[str, Any]) -> str:
    """A static bar: its width is the share done, its colour tqdm's (green when finished)."""
    lo, hi, v = float(s.get("min", 0)), float(s.get("max", 100)), float(s.get("value", 0))
    share = 0.0 if hi <= lo else min(max((v - lo) / (hi - lo), 0.0), 1.0)
    colour = _BAR_COLOURS.get(s.get("bar_style") or "", "#2196f3")
    return (
        '<div class="lookalike-widget-progress" style="display:inline-block;width:200px;'
        'height:1em;border:1px solid #bbb;vertical-align:middle;margin:0 4px">'
        f'<div style="width:{share * 100:.1f}%;height:100%;background:{colour}"></div></div>'
    )


def widget_html(model_id: str, state: dict[str, Any]) -> str | None:
    """Static HTML of one saved widget and its children, or None when one is unknown.

    Parameters
    ----------
    model_id : str
        The widget's model id (as in the output's widget-view data).
    state : dict
        The notebook's saved widget state: ``nb.metadata.widgets[WIDGET_STATE]["state"]``,
        model id -> ``{"model_name", "state", "buffers"}``.

    Returns
    -------
    str or None
        HTML with no script and no external resource (images become data: URLs); None for
        a widget whose state was not saved or whose kind this module does not draw.
    """
    model = state.get(model_id)
    if model is None:
        return None
    name, s = model.get("model_name", ""), model.get("state", {})
    if name in _BOXES:
        parts = [widget_html(_child_id(c), state) for c in s.get("children", [])]
        if any(p is None for p in parts):
            return None
        return (
            f'<div class="lookalike-widget-box" style="display:flex;flex-direction:'
            f'{_BOXES[name]};gap:4px;align-items:flex-start">{"".join(parts)}</div>'
        )
    if name in ("HTMLModel", "HTMLMathModel"):
        return f'<div class="lookalike-widget-html">{s.get("value", "")}</div>'
    if name == "ImageModel":
        buffer = next((b for b in model.get("buffers", []) if b.get("path") == ["value"]), None)
        if buffer is None:
            return ""  # an image widget that was never given an image
        data = buffer["data"]
        if buffer.get("encoding") != "base64":
            data = base64.b64encode(data.encode("latin-1")).decode("ascii")
        size = "".join(f' {a}="{_html.escape(str(s[a]))}"' for a in ("width", "height") if s.get(a))
        fmt = _html.escape(s.get("format") or "png")
        return f'<img src="data:image/{fmt};base64,{data}"{size} alt="">'
    if name in _PICKERS:
        labels, index = s.get("_options_labels", []), s.get("index")
        chosen = labels[index] if isinstance(index, int) and 0 <= index < len(labels) else ""
        return _field(s.get("description", ""), chosen)
    if name in _TEXTS or name in _NUMBERS:
        return _field(s.get("description", ""), str(s.get("value", "")))
    if name in _PROGRESS:
        return _progress(s)
    if name == "ButtonModel":
        return _field("", s.get("description", ""))
    return None


def static_widgets(nb) -> int:
    """Replace every widget output of ``nb`` (in place) by static HTML; returns how many.

    An output whose widget can't be drawn (state not saved, or an unknown kind) keeps only
    its other representations (``text/plain``). The saved widget state is removed from the
    notebook's metadata afterwards: no output needs it.

    Parameters
    ----------
    nb : nbformat.NotebookNode
        An executed notebook (version 4).

    Returns
    -------
    int
        Number of widget outputs drawn as static HTML.
    """
    saved = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    drawn = 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            view = out.get("data", {}).get(WIDGET_VIEW)
            if view is None:
                continue
            del out["data"][WIDGET_VIEW]
            static = widget_html(view.get("model_id", ""), saved)
            if static is not None:
                if "lookalike-widget-field" in static:  # it had pickers: say they were live
                    static += _SNAPSHOT
                out["data"]["text/html"] = static
                drawn += 1
    nb.metadata.pop("widgets", None)
    return drawn


_PARAMETER = re.compile(r'(\w+) = "(/[^"]*)"')  # a papermill-injected absolute path


def shown_parameters(nb, run_dir: str | os.PathLike[str] | None = None) -> None:
    """Show the absolute paths of papermill's injected parameters as a shared report should.

    In the cell tagged ``injected-parameters`` (in place): a path inside the project becomes
    relative to the project root (what the notebooks' ``resolve`` reads back the same), and
    ``run_dir`` outside the project its folder name, with a comment saying so.

    Parameters
    ----------
    nb : nbformat.NotebookNode
    run_dir : path, optional
        The run folder the notebook ran on.
    """
    run = resolve(run_dir) if run_dir is not None else None

    def show(m: re.Match) -> str:
        p = Path(m[2])
        if p.is_relative_to(PROJECT_ROOT):
            return f'{m[1]} = "{p.relative_to(PROJECT_ROOT).as_posix()}"'
        if p == run:
            return f'{m[1]} = "{p.name}"  # this run\'s folder; reports leave out its full path'
        return m[0]

    for cell in nb.cells:
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            cell.source = _PARAMETER.sub(show, cell.source)


def render_html(
    ipynb: str | os.PathLike[str],
    html: str | os.PathLike[str],
    *,
    run_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Render an executed notebook to one HTML file that opens offline.

    Images are inlined, widgets drawn statically (:func:`static_widgets`), and the page loads
    nothing: no script, stylesheet or font from the network. The injected parameters show
    no path of this machine (:func:`shown_parameters`).

    Parameters
    ----------
    ipynb : path
        The executed notebook.
    html : path
        Where the HTML goes (its folder is created).
    run_dir : path, optional
        The run folder the notebook ran on.

    Returns
    -------
    Path of the HTML file.
    """
    import nbformat
    from nbconvert import HTMLExporter

    html = Path(html)
    nb = nbformat.read(ipynb, as_version=4)
    static_widgets(nb)
    shown_parameters(nb, run_dir)
    with resources.as_file(resources.files(__package__) / "templates" / "report.html.j2") as t:
        exporter = HTMLExporter(embed_images=True, template_file=str(t))
        body, _ = exporter.from_notebook_node(nb)
    html.parent.mkdir(parents=True, exist_ok=True)
    html.write_text(body, encoding="utf-8")
    return html
