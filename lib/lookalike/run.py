"""Run the five notebooks in order with papermill: the engine behind ``lookalike run``.

Every parameter is checked against :mod:`lookalike.params` before any kernel starts.
Each notebook then runs in its own kernel (:mod:`lookalike.kernels`: over the IPC
transport, and never outliving the runner, even after ``kill -9`` or Ctrl-C), while a
:class:`~lookalike.progress.ProgressMonitor` shows the stage's progress at the terminal and
writes plain progress and summary lines to ``RUN/run.log``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from . import params as _params
from .exceptions import ConfigError, RunError
from .kernels import kernel_manager_class, run_interruptibly
from .params import NOTEBOOKS
from .paths import KERNEL_NAME, NOTEBOOKS_DIR, PROJECT_ROOT, RunLayout, resolve
from .progress import ENV_FILE, ENV_STAGE, ProgressMonitor, strip_ansi
from .report import render_html

log = logging.getLogger("lookalike.run")


# -- reading the config ------------------------------------------------------------------------


def _yaml_error(exc: yaml.YAMLError) -> str:
    """``"line 3, column 7: found ..."`` from a YAML error, on one line."""
    # The context mark is where the broken construct starts (an unclosed "[" ...), which
    # is what a person needs; the problem mark is often the end of the file.
    mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    context, problem = getattr(exc, "context", None), getattr(exc, "problem", None)
    what = ", ".join(x for x in (context, problem) if x) or str(exc)
    return " ".join(f"{where}{what}".split())


def load_config(path: str | os.PathLike[str] | None) -> dict[str, Any]:
    """Read a YAML parameter file into a dict (``None`` gives an empty config).

    Raises
    ------
    ConfigError
        The file is missing, a folder, not UTF-8, not valid YAML or not a mapping; the
        message names the file and the fix, on one line.
    """
    if path is None:
        return {}
    p = resolve(path)
    if not p.exists():
        raise ConfigError(f"config file not found: {p}; give the path of a YAML file")
    if p.is_dir():
        raise ConfigError(f"config {p} is a folder; give the path of a YAML file")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config {p} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
            f"{exc.start}); save it as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"config {p} cannot be read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"config {p} is not valid YAML ({_yaml_error(exc)}); write one 'name: value' per line"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p} must hold a mapping of parameter: value, not {type(data).__name__}")
    return data


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """Turn ``["k=5", "k_values=[2, 3]"]`` into ``{"k": 5, "k_values": [2, 3]}``.

    Values are parsed as YAML, so numbers, booleans, ``null`` and lists work.

    Raises
    ------
    ConfigError
        An item without ``=``, or a value that is not valid YAML.
    """
    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"-p expects name=value, got {item!r}")
        try:
            out[name.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"-p {item}: the value is not valid YAML ({_yaml_error(exc)}); quote it "
                f"for the shell and YAML, e.g. -p '{name.strip()}=[5, 10]' or "
                f"-p \"{name.strip()}='text'\""
            ) from None
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

    def index(prefix: str | None, default: int, option: str) -> int:
        if prefix is None:
            return default
        text = str(prefix).strip()
        matches = [i for i, n in enumerate(NOTEBOOKS) if n.startswith(text.zfill(2))]
        if not text or not matches:
            numbers = ", ".join(n[:2] for n in NOTEBOOKS)
            raise ConfigError(f"{option} {prefix}: unknown notebook; use one of {numbers}")
        return matches[0]

    i, j = index(start, 0, "--from"), index(stop, len(NOTEBOOKS) - 1, "--to")
    if i > j:
        raise ConfigError(f"--from {start} comes after --to {stop}; swap them")
    return list(NOTEBOOKS[i : j + 1])


def resolve_parameters(
    config: Mapping[str, Any],
    overrides: Mapping[str, Any],
    run_dir: str | os.PathLike[str] | None,
    *,
    notebooks: Sequence[str] = NOTEBOOKS,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Merge config and overrides, check every value, and split them per notebook.

    Nothing here starts a kernel or reads a notebook: every check comes from
    :mod:`lookalike.params` and takes milliseconds.

    Parameters
    ----------
    config, overrides : mapping
        From the YAML file and from ``-p``; overrides win.
    run_dir : path, optional
        ``--run-dir``; wins over both.
    notebooks : sequence of str
        The notebooks that will run (paths are checked for these only).

    Returns
    -------
    params : dict
        Everything the user set, normalised, with ``run_dir`` made absolute and ``demo``
        resolved to ``True`` or ``False``.
    per_notebook : dict of notebook name -> dict
        For each notebook, only the parameters it takes; 01 and 02 always get ``demo``.

    Raises
    ------
    ConfigError
        Every problem at once, one line each (see :func:`lookalike.params.check`).
    """
    merged = {**config, **overrides}
    if run_dir is not None:
        merged["run_dir"] = os.fspath(run_dir)
    values, problems = _params.validate(merged, notebooks=notebooks)
    if "run_dir" not in merged:
        problems.append("run_dir: not set; set run_dir in the config or pass --run-dir DIR")
    if problems:
        raise _params.problems_error(problems)
    values["run_dir"] = str(resolve(values["run_dir"]))
    values["demo"] = _params.resolve_demo(values)
    per_nb = {
        name: {k: v for k, v in values.items() if name in _params.SCHEMA[k].notebooks}
        for name in NOTEBOOKS
    }
    return values, per_nb


# -- kernels -----------------------------------------------------------------------------------


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


_TQDM_LINE = re.compile(r"\|\s*[\d.]+[kMG]?/[\d.?]+[kMG]?\s*\[")


class _LogStream:
    """File-like sink that forwards a kernel's stdout/stderr lines to the run log.

    ANSI codes are removed, and of a line redrawn with carriage returns (a text progress
    bar) only the last state is kept; text progress bars are left out (the runner logs
    progress itself, every few seconds).
    """

    def __init__(self, logger: logging.Logger, name: str, level: int = logging.INFO):
        self.logger, self.name, self.level = logger, name, level

    def write(self, text: str) -> int:
        for line in strip_ansi(text).splitlines():
            line = line.rsplit("\r", 1)[-1].rstrip()
            if line.strip() and not _TQDM_LINE.search(line):
                self.logger.log(self.level, "[%s] %s", self.name, line)
        return len(text)

    def flush(self) -> None:  # file protocol
        pass


class _PlainFormatter(logging.Formatter):
    """Log lines without ANSI escape codes (IPython colours its tracebacks)."""

    def format(self, record: logging.LogRecord) -> str:
        return strip_ansi(super().format(record))


@contextlib.contextmanager
def _stage_files() -> Iterator[Path]:
    """A temporary folder for one stage's progress file, kernel output and IPC sockets."""
    # short: a Unix socket path has a limit of about 100 characters
    tmp = Path(tempfile.mkdtemp(prefix="lookalike-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def execute_notebook(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    parameters: Mapping[str, Any],
    *,
    stage: str,
    kernel_name: str = KERNEL_NAME,
    cwd: str | os.PathLike[str] = NOTEBOOKS_DIR,
    show_progress: bool = True,
    echo: Any = print,
) -> list[str]:
    """Execute one notebook with papermill, showing its progress and summary lines.

    Parameters
    ----------
    input_path, output_path : path
        The notebook and where the executed copy goes.
    parameters : mapping
        Injected by papermill after the ``parameters`` cell.
    stage : str
        Name in the terminal bars and log lines (the notebook's name).
    kernel_name : str, default "lookalike"
    cwd : path
        The kernel's working directory.
    show_progress : bool, default True
        Draw tqdm bars on stderr while the stage reports progress.
    echo : callable, default print
        Prints each summary line at the terminal.

    Returns
    -------
    list of str
        The stage's summary lines (:func:`lookalike.progress.summary`).

    Raises
    ------
    papermill.PapermillExecutionError
        A cell failed.
    KeyboardInterrupt
        On Ctrl-C, once the stage's kernel has been killed.
    """
    import papermill as pm

    # papermill warns about parameter lines it can't parse (any line with two "=", such as
    # a URL with a query); lookalike reads the cell with ast, so the warning is noise.
    logging.getLogger("papermill.translators").setLevel(logging.ERROR)
    with _stage_files() as tmp:
        progress_file, kernel_log = tmp / "progress.jsonl", tmp / "kernel.log"
        env = {ENV_FILE: str(progress_file), ENV_STAGE: stage}
        monitor = ProgressMonitor(
            progress_file, log=log.info, echo=echo, show_bars=show_progress, log_summaries=False
        )
        try:
            with open(kernel_log, "wb") as out, monitor:
                run_interruptibly(
                    pm.execute_notebook,
                    str(input_path),
                    str(output_path),
                    parameters=dict(parameters),
                    kernel_name=kernel_name,
                    kernel_manager_class=kernel_manager_class(env, out, ipc_dir=tmp),
                    cwd=str(cwd),
                    progress_bar=False,
                    log_output=False,
                    stdout_file=_LogStream(log, stage),
                    stderr_file=_LogStream(log, stage, level=logging.WARNING),
                )
        finally:
            _LogStream(log, f"{stage} kernel").write(
                kernel_log.read_bytes().decode(errors="replace")
            )
    return monitor.summaries


# -- the pipeline ------------------------------------------------------------------------------


def _describe_failure(exc: Exception, name: str) -> str:
    cell = getattr(exc, "exec_count", None)
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = strip_ansi(str(getattr(exc, "evalue", str(exc))))
    where = f"cell [{cell}]" if cell is not None else "a cell"
    return f"notebook {name} failed in {where}: {ename}: {evalue}"


def _first_line(values: Mapping[str, Any], run: RunLayout, names: Sequence[str]) -> str:
    """The run's first line of output: it says when the run uses the demo web."""
    span = names[0] if len(names) == 1 else f"{names[0]} .. {names[-1]}"
    if values["demo"] and {"01_scrape", "02_fetch_logos"} & set(names):
        why = _params.demo_reason(values)[1]
        return (
            f"[lookalike] demo run ({why}): requests go to the built-in offline demo web; "
            f"run folder {run.root}, notebooks {span}"
        )
    return f"[lookalike] run folder {run.root}, notebooks {span}"


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
        Also write an HTML rendering of each notebook to ``RUN/report/`` that opens offline
        (:func:`lookalike.report.render_html`).
    progress : bool, default True
        Show a progress bar per stage at the terminal (``run.log`` gets progress lines
        either way).

    Returns
    -------
    Path of the run folder.

    Raises
    ------
    ConfigError
        Before any kernel starts: every wrong parameter, one line each.
    RunError
        When a notebook fails; the message names the notebook, the cell and the error.
    """
    names = select_notebooks(start, stop)
    values, per_nb = resolve_parameters(config or {}, overrides or {}, run_dir, notebooks=names)
    run = RunLayout(values["run_dir"])
    print(_first_line(values, run, names), flush=True)
    try:
        run.notebooks_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"run_dir {run.root} cannot be created ({exc.strerror}); choose another folder"
        ) from None
    with open(run.params, "w", encoding="utf-8") as f:
        yaml.safe_dump(values, f, sort_keys=True)
    handler = logging.FileHandler(run.log, encoding="utf-8")
    handler.setFormatter(_PlainFormatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        kernel = ensure_kernel()
        log.info("run %s: notebooks %s, kernel %s", run.root, ", ".join(names), kernel)
        for name in names:
            _run_stage(name, run, per_nb[name], kernel, html=html, progress=progress)
        log.info("finished at %s", _dt.datetime.now().isoformat(timespec="seconds"))
    finally:
        log.removeHandler(handler)
        handler.close()
    return run.root


def _run_stage(
    name: str, run: RunLayout, values: Mapping[str, Any], kernel: str, *, html: bool, progress: bool
) -> None:
    """One notebook of :func:`run_pipeline`, with its timing, report and failure message."""
    import papermill as pm

    out = run.executed_notebook(name)
    t0 = time.perf_counter()
    print(f"[lookalike] {name} ...", flush=True)
    log.info("start %s with %s", name, dict(values))
    try:
        execute_notebook(
            notebook_path(name), out, values, stage=name, kernel_name=kernel,
            show_progress=progress,
        )  # fmt: skip
    except pm.PapermillExecutionError as exc:
        msg = _describe_failure(exc, name)
        log.error("%s\n%s", msg, "\n".join(getattr(exc, "traceback", []) or []))
        if html and out.exists():
            render_html(out, run.report(name), run_dir=run.root)
        raise RunError(f"{msg}\n  executed notebook: {out}\n  log: {run.log}") from exc
    if html:
        render_html(out, run.report(name), run_dir=run.root)
    dt = time.perf_counter() - t0
    log.info("done %s in %.1f s", name, dt)
    print(f"[lookalike] {name} done in {dt:.1f} s", flush=True)


def known_parameters() -> dict[str, Sequence[str]]:
    """Map each notebook to the parameter names it takes (for ``lookalike params``)."""
    return {name: [p.name for p in _params.for_notebook(name)] for name in NOTEBOOKS}


__all__ = [
    "NOTEBOOKS",
    "PROJECT_ROOT",
    "execute_notebook",
    "kernel_manager_class",
    "known_parameters",
    "load_config",
    "parse_overrides",
    "resolve_parameters",
    "run_pipeline",
    "select_notebooks",
]
