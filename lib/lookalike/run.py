"""Run the five notebooks in order with papermill: the engine behind ``lookalike run``."""

from __future__ import annotations

import datetime as _dt
import logging
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from .exceptions import ConfigError, RunError
from .paths import KERNEL_NAME, NOTEBOOKS_DIR, PROJECT_ROOT, resolve

#: The pipeline, in order. The two-digit prefix is what ``--from``/``--to`` take.
NOTEBOOKS: tuple[str, ...] = (
    "01_scrape",
    "02_fetch_logos",
    "03_embed_vgg16",
    "04_pca_kmeans",
    "05_elbow_and_inspect",
)

log = logging.getLogger("lookalike.run")


def load_config(path: str | os.PathLike[str] | None) -> dict[str, Any]:
    """Read a YAML parameter file into a dict (``None`` gives an empty config)."""
    if path is None:
        return {}
    p = resolve(path)
    if not p.exists():
        raise ConfigError(f"config file not found: {p}")
    with open(p, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p} must hold a mapping of parameter: value, not {type(data).__name__}")
    return data


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """Turn ``["k=5", "k_values=[2, 3]"]`` into ``{"k": 5, "k_values": [2, 3]}``.

    Values are parsed as YAML, so numbers, booleans, ``null`` and lists work.
    """
    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"-p expects name=value, got {item!r}")
        out[name.strip()] = yaml.safe_load(value)
    return out


def notebook_path(name: str) -> Path:
    """Path of a pipeline notebook by full name (``03_embed_vgg16``)."""
    return NOTEBOOKS_DIR / f"{name}.ipynb"


def notebook_parameters(name: str) -> dict[str, Any]:
    """Names and default values declared in the notebook's ``parameters`` cell.

    The cell is parsed with :mod:`ast` (papermill's own line parser skips any line that
    holds two ``=`` signs, such as a URL with a query string).
    """
    import ast

    import nbformat

    path = notebook_path(name)
    if not path.exists():
        raise ConfigError(f"notebook not found: {path}")
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        raise ConfigError(f"{path.name} has no cell tagged 'parameters'")
    out: dict[str, Any] = {}
    for node in ast.parse(cells[0].source).body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    try:
                        out[target.id] = ast.literal_eval(node.value)
                    except ValueError:
                        out[target.id] = ast.unparse(node.value)
    return out


def select_notebooks(start: str | None = None, stop: str | None = None) -> list[str]:
    """Notebooks from ``start`` to ``stop`` inclusive; each is a prefix such as ``"03"``."""

    def index(prefix: str | None, default: int) -> int:
        if prefix is None:
            return default
        matches = [i for i, n in enumerate(NOTEBOOKS) if n.startswith(str(prefix).zfill(2))]
        if not matches:
            raise ConfigError(
                f"unknown notebook {prefix!r}; use one of {[n[:2] for n in NOTEBOOKS]}"
            )
        return matches[0]

    i, j = index(start, 0), index(stop, len(NOTEBOOKS) - 1)
    if i > j:
        raise ConfigError(f"--from {start} comes after --to {stop}")
    return list(NOTEBOOKS[i : j + 1])


def resolve_parameters(
    config: Mapping[str, Any], overrides: Mapping[str, Any], run_dir: str | os.PathLike[str] | None
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Merge config and overrides, check every name, and split them per notebook.

    Returns
    -------
    params : dict
        Everything the user set, with ``run_dir`` made absolute.
    per_notebook : dict of notebook name -> dict
        For each notebook, only the parameters its ``parameters`` cell declares.
    """
    params = {**config, **overrides}
    if run_dir is not None:
        params["run_dir"] = os.fspath(run_dir)
    declared = {name: notebook_parameters(name) for name in NOTEBOOKS}
    known = set().union(*declared.values())
    unknown = sorted(set(params) - known)
    if unknown:
        raise ConfigError(f"unknown parameter(s) {unknown}; known parameters are: {sorted(known)}")
    if "run_dir" not in params:
        raise ConfigError("no run_dir: set run_dir in the config or pass --run-dir DIR")
    params["run_dir"] = str(resolve(params["run_dir"]))
    per_nb = {name: {k: v for k, v in params.items() if k in declared[name]} for name in NOTEBOOKS}
    return params, per_nb


def ensure_kernel() -> str:
    """Register this interpreter as the ``lookalike`` Jupyter kernel if it is not yet known.

    The kernel goes into ``sys.prefix`` (the project's venv), so runs never depend on
    whichever ``python3`` kernel happens to be installed elsewhere.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
        if Path(spec.argv[0]).exists():
            return KERNEL_NAME
    except NoSuchKernel:
        pass
    from ipykernel.kernelspec import install

    install(kernel_name=KERNEL_NAME, display_name="Python (lookalike)", prefix=sys.prefix)
    return KERNEL_NAME


def render_html(ipynb: Path, html: Path) -> Path:
    """Render an executed notebook to a self-contained HTML file (images inlined)."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(ipynb, as_version=4)
    exporter = HTMLExporter(embed_images=True)
    body, _ = exporter.from_notebook_node(nb)
    html.parent.mkdir(parents=True, exist_ok=True)
    html.write_text(body, encoding="utf-8")
    return html


def _describe_failure(exc: Exception, name: str) -> str:
    cell = getattr(exc, "exec_count", None)
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = getattr(exc, "evalue", str(exc))
    where = f"cell [{cell}]" if cell is not None else "a cell"
    return f"notebook {name} failed in {where}: {ename}: {evalue}"


def run_pipeline(
    config: Mapping[str, Any] | None = None,
    *,
    run_dir: str | os.PathLike[str] | None = None,
    start: str | None = None,
    stop: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    html: bool = True,
    progress: bool = True,
) -> Path:
    """Execute the notebooks ``start``..``stop`` into ``RUN/notebooks`` and render reports.

    Parameters
    ----------
    config : mapping, optional
        Parameters from a YAML file (see ``configs/example.yaml``).
    run_dir : path, optional
        Output folder; overrides ``run_dir`` from the config.
    start, stop : str, optional
        Two-digit prefixes of the first and last notebook (``"03"``, ``"05"``).
    overrides : mapping, optional
        ``-p name=value`` values; they win over the config.
    html : bool, default True
        Also write a self-contained HTML rendering of each notebook to ``RUN/report/``.

    Returns
    -------
    Path of the run folder.

    Raises
    ------
    ConfigError
        For an unknown parameter name (the message lists the known ones).
    RunError
        When a notebook fails; the message names the notebook, the cell and the error.
    """
    import papermill as pm

    # papermill warns about parameter lines it can't parse (any line with two "=", such as
    # a URL with a query); lookalike reads the cell with ast, so the warning is noise.
    logging.getLogger("papermill.translators").setLevel(logging.ERROR)
    params, per_nb = resolve_parameters(config or {}, overrides or {}, run_dir)
    run = Path(params["run_dir"])
    (run / "notebooks").mkdir(parents=True, exist_ok=True)
    with open(run / "params.yaml", "w", encoding="utf-8") as f:
        yaml.safe_dump(params, f, sort_keys=True)

    handler = logging.FileHandler(run / "run.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    kernel = ensure_kernel()
    names = select_notebooks(start, stop)
    log.info("run %s: notebooks %s, kernel %s", run, ", ".join(names), kernel)
    try:
        for name in names:
            out = run / "notebooks" / f"{name}.ipynb"
            t0 = time.perf_counter()
            print(f"[lookalike] {name} ...", flush=True)
            log.info("start %s with %s", name, per_nb[name])
            try:
                pm.execute_notebook(
                    str(notebook_path(name)),
                    str(out),
                    parameters=per_nb[name],
                    kernel_name=kernel,
                    cwd=str(NOTEBOOKS_DIR),
                    progress_bar=False,
                    log_output=False,
                    stdout_file=_LogStream(log, name),
                    stderr_file=_LogStream(log, name, level=logging.WARNING),
                )
            except pm.PapermillExecutionError as exc:
                msg = _describe_failure(exc, name)
                log.error("%s\n%s", msg, "\n".join(getattr(exc, "traceback", []) or []))
                if html and out.exists():
                    render_html(out, run / "report" / f"{name}.html")
                raise RunError(
                    f"{msg}\n  executed notebook: {out}\n  log: {run / 'run.log'}"
                ) from exc
            if html:
                render_html(out, run / "report" / f"{name}.html")
            dt = time.perf_counter() - t0
            log.info("done %s in %.1f s", name, dt)
            print(f"[lookalike] {name} done in {dt:.1f} s", flush=True)
        log.info("finished at %s", _dt.datetime.now().isoformat(timespec="seconds"))
    finally:
        log.removeHandler(handler)
        handler.close()
    return run


class _LogStream:
    """File-like sink that forwards a kernel's stdout/stderr lines to the run log."""

    def __init__(self, logger: logging.Logger, name: str, level: int = logging.INFO):
        self.logger, self.name, self.level = logger, name, level

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                self.logger.log(self.level, "[%s] %s", self.name, line.rstrip())
        return len(text)

    def flush(self) -> None:  # file protocol
        pass


def known_parameters() -> dict[str, Sequence[str]]:
    """Map each notebook to the parameter names it declares (for ``lookalike params``)."""
    return {name: list(notebook_parameters(name)) for name in NOTEBOOKS}


__all__ = [
    "NOTEBOOKS",
    "PROJECT_ROOT",
    "load_config",
    "parse_overrides",
    "run_pipeline",
    "select_notebooks",
    "known_parameters",
]
