"""Progress bars and summary lines that the runner can show at the terminal.

A stage reports progress with :func:`bar` (a thin wrapper around ``tqdm.auto``: in a
notebook it is the usual widget bar) and its result with :func:`summary`. When the
environment variable :data:`ENV_FILE` names a file, as it does in a kernel started by
``lookalike run``, both also append JSON lines to that file; the runner tails it, draws a
terminal bar per stage and writes plain progress lines to ``run.log``
(:class:`ProgressMonitor`). Without the variable they behave exactly like tqdm and
``print``.

One JSON object per line:

- ``{"kind": "bar", "stage", "id", "desc", "n", "total", "unit", "rate", "elapsed",
  "closed"}``: written when a bar opens, at most every :data:`EMIT_EVERY_S` seconds while
  it moves, and when it closes. ``rate`` is units per second since the bar opened.
- ``{"kind": "summary", "stage", "line"}``: a stage's one-line summary.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from tqdm.auto import tqdm as _tqdm

__all__ = [
    "ENV_FILE",
    "ENV_STAGE",
    "EMIT_EVERY_S",
    "ProgressMonitor",
    "bar",
    "strip_ansi",
    "summary",
]

#: Set by the runner in a kernel's environment: the JSON-lines file to append to.
ENV_FILE = "LOOKALIKE_PROGRESS"
#: Set by the runner: the stage (notebook) name written into every record.
ENV_STAGE = "LOOKALIKE_STAGE"
#: Seconds between two records of one moving bar (open and close are always written).
EMIT_EVERY_S = 0.5

_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_ids = itertools.count(1)
_lock = threading.Lock()


def strip_ansi(text: str) -> str:
    """Remove ANSI escape sequences (colours, cursor moves) from ``text``."""
    return _ANSI.sub("", text)


def _record(obj: dict[str, Any]) -> None:
    """Append one JSON line to the runner's progress file, if there is one."""
    path = os.environ.get(ENV_FILE)
    if not path:
        return
    obj = {"stage": os.environ.get(ENV_STAGE, ""), **obj}
    line = json.dumps(obj, default=str) + "\n"
    try:
        with _lock, open(path, "a", encoding="utf-8") as f:
            f.write(line)
    except OSError:
        pass  # progress reporting must never break a stage


class _Bar(_tqdm):  # type: ignore[misc, valid-type]
    """tqdm (``tqdm.auto``) that also reports to the runner; see :func:`bar`."""

    def __init__(self, *args: Any, **kwargs: Any):
        self._report_id = f"{os.getpid()}-{next(_ids)}"
        self._count = 0
        self._iterating = False
        self._t_open = time.monotonic()
        self._t_emit = 0.0
        self._reported_close = False
        # tqdm keeps no desc/unit/total while disabled; the report needs them.
        self._desc, self._unit = kwargs.get("desc") or "", kwargs.get("unit") or "it"
        total = kwargs.get("total")
        if total is None and args and hasattr(args[0], "__len__"):
            total = len(args[0])
        self._total = total
        super().__init__(*args, **kwargs)
        self._count = int(getattr(self, "n", 0) or 0)
        self._emit(force=True)

    def _emit(self, *, force: bool = False, closed: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._t_emit < EMIT_EVERY_S:
            return
        self._t_emit = now
        # tqdm does not count while disabled, so the bar keeps its own count.
        n = max(self._count, int(getattr(self, "n", 0) or 0))
        elapsed = now - self._t_open
        _record(
            {
                "kind": "bar",
                "id": self._report_id,
                "desc": self._desc if self.disable else (self.desc or "").rstrip(": "),
                "n": n,
                "total": self._total if self.disable else self.total,
                "unit": self._unit if self.disable else self.unit,
                "rate": n / elapsed if elapsed > 0 else None,
                "elapsed": round(elapsed, 3),
                "closed": closed,
            }
        )

    def update(self, n: float | None = 1) -> bool | None:
        out = super().update(n)
        if not self._iterating:  # tqdm's own iterator calls update() with what it counted
            self._count += int(n or 0)
        self._emit()
        return out

    def __iter__(self) -> Iterator[Any]:
        self._iterating = True
        try:
            for item in super().__iter__():
                yield item
                self._count += 1
                self._emit()
        finally:
            self._iterating = False

    def refresh(self, *args: Any, **kwargs: Any) -> Any:
        out = super().refresh(*args, **kwargs)
        self._emit()
        return out

    def close(self) -> None:
        super().close()
        if not self._reported_close and hasattr(self, "_report_id"):
            self._reported_close = True
            self._emit(force=True, closed=True)


def bar(
    iterable: Iterable[Any] | None = None,
    *,
    total: float | None = None,
    desc: str | None = None,
    unit: str = "it",
    disable: bool | None = False,
    **kwargs: Any,
) -> _tqdm:
    """A ``tqdm.auto`` progress bar that ``lookalike run`` also shows at the terminal.

    Use it exactly like ``tqdm`` (iterate over it, or ``update(n)`` and ``close()``, or as
    a context manager). ``disable`` hides the notebook bar only: the runner still sees
    the progress.

    Parameters
    ----------
    iterable : iterable, optional
        Items to iterate over.
    total : float, optional
        Expected number of units (``len(iterable)`` when it has one).
    desc : str, optional
        Short label, e.g. ``"embed"``; the runner prefixes the stage's name.
    unit : str, default "it"
        Name of one unit, e.g. ``"img"``.
    disable : bool, default False
        Hide the bar in the notebook.
    **kwargs
        Any other ``tqdm`` option (``leave``, ``position``, ...).

    Returns
    -------
    tqdm.auto.tqdm
    """
    return _Bar(iterable, total=total, desc=desc, unit=unit, disable=disable, **kwargs)


def summary(line: str) -> str:
    """Print a stage's one-line summary and record it for the runner; returns ``line``."""
    print(line, flush=True)
    _record({"kind": "summary", "line": strip_ansi(str(line))})
    return line


# -- the runner's side -------------------------------------------------------------------------


def _format_progress(rec: dict[str, Any]) -> str:
    """``"03_embed_vgg16 embed: 120/399 img (8.9 img/s, 13.4 s)"``: one plain log line."""
    n, total, unit = rec.get("n", 0), rec.get("total"), rec.get("unit") or "it"
    count = f"{n}/{int(total)}" if total else f"{n}"
    rate = rec.get("rate")
    speed = f"{rate:.1f} {unit}/s, " if rate else ""
    label = " ".join(x for x in (rec.get("stage"), rec.get("desc")) if x)
    done = " done" if rec.get("closed") else ""
    return f"{label}: {count} {unit} ({speed}{float(rec.get('elapsed') or 0):.1f} s){done}"


class ProgressMonitor:
    """Tail a progress file in a thread: terminal bars, summary lines and log lines.

    Parameters
    ----------
    path : Path
        The JSON-lines file the kernel appends to (see :data:`ENV_FILE`).
    log : callable
        Called with one plain-text line (no ANSI codes) for ``run.log``: a progress line
        per bar every ``log_every_s`` seconds and when it closes, and every summary line.
    echo : callable
        Called with each summary line for the terminal (``print``).
    show_bars : bool, default True
        Draw a tqdm bar per stage bar on ``file`` (stderr).
    log_every_s : float, default 5.0
        Seconds between two log lines of one bar.
    log_summaries : bool, default True
        Also pass summary lines to ``log`` (the runner says no: the kernel's printed output,
        summary lines included, already goes to ``run.log``).
    poll_s : float, default 0.2
        How often the file is read.
    """

    def __init__(
        self,
        path: Path,
        *,
        log: Any,
        echo: Any = print,
        show_bars: bool = True,
        log_every_s: float = 5.0,
        log_summaries: bool = True,
        poll_s: float = 0.2,
        file: IO[str] | None = None,
    ):
        self.path, self.log, self.echo = Path(path), log, echo
        self.show_bars, self.log_every_s, self.poll_s = show_bars, log_every_s, poll_s
        self.file, self.log_summaries = file, log_summaries
        self.summaries: list[str] = []
        self._bars: dict[str, Any] = {}
        self._logged: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lookalike-progress", daemon=True)
        self._offset = 0
        self._partial = ""

    def __enter__(self) -> ProgressMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._read()  # whatever arrived after the last poll
        for key in list(self._bars):
            self._bars.pop(key).close()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            self._read()

    def _read(self) -> None:
        try:
            with open(self.path, encoding="utf-8") as f:
                f.seek(self._offset)
                chunk = f.read()
                self._offset = f.tell()
        except FileNotFoundError:
            return
        lines = (self._partial + chunk).split("\n")
        self._partial = lines.pop()  # an incomplete last line waits for the next read
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("kind") == "summary":
                self._summary(strip_ansi(str(rec.get("line", ""))))
            elif rec.get("kind") == "bar":
                self._bar(rec)

    def _summary(self, line: str) -> None:
        self.summaries.append(line)
        if self.log_summaries:
            self.log(line)
        if self._bars:
            from tqdm import tqdm as std_tqdm

            std_tqdm.write(line, file=self.file)
        else:
            self.echo(line)

    def _bar(self, rec: dict[str, Any]) -> None:
        key = str(rec.get("id"))
        now = time.monotonic()
        if rec.get("closed") or now - self._logged.get(key, -1e9) >= self.log_every_s:
            self._logged[key] = now
            self.log(_format_progress(rec))
        if not self.show_bars:
            return
        tb = self._bars.get(key)
        if tb is None and not rec.get("closed"):
            label = " ".join(x for x in (rec.get("stage"), rec.get("desc")) if x)
            tb = self._bars[key] = _terminal_bar(label, rec, self.file)
        if tb is None:
            return
        if rec.get("total") != tb.total:
            tb.total = rec.get("total")
        tb.update(max(0, int(rec.get("n") or 0) - tb.n))
        if rec.get("closed"):
            self._bars.pop(key).close()


def _terminal_bar(label: str, rec: dict[str, Any], file: IO[str] | None) -> Any:
    from tqdm import tqdm as std_tqdm  # the terminal's, never the notebook widget

    return std_tqdm(
        total=rec.get("total"),
        desc=label,
        unit=rec.get("unit") or "it",
        file=file,
        mininterval=0.2,
        leave=True,
        dynamic_ncols=True,
    )
