"""A killed or interrupted runner leaves no kernel working, and an interrupt is one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest

from lookalike.paths import KERNEL_NAME, PROJECT_ROOT

pytestmark = pytest.mark.skipif(not hasattr(os, "killpg"), reason="POSIX process groups")


def _busy_notebook(path: Path, beats: Path) -> Path:
    """A notebook whose cell writes its pid, then 'works' (appends a beat) for a minute."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": KERNEL_NAME,
        "display_name": "lookalike",
        "language": "python",
    }
    params = nbformat.v4.new_code_cell("run_dir = 'x'")
    params.metadata["tags"] = ["parameters"]
    body = textwrap.dedent(
        f"""\
        import os, time
        with open({str(beats)!r}, "a") as f:
            f.write(f"pid {{os.getpid()}}\\n")
        for i in range(600):
            with open({str(beats)!r}, "a") as f:
                f.write("beat\\n")
            time.sleep(0.1)
        """
    )
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, path)
    return path


def _start_runner(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """``lookalike run`` (through cli.main) on the busy notebook, in its own process group."""
    beats = tmp_path / "beats.txt"
    nb = _busy_notebook(tmp_path / "busy.ipynb", beats)
    config = tmp_path / "c.yaml"
    config.write_text(f"run_dir: {tmp_path / 'run'}\n")
    script = (
        "import sys\n"
        "from lookalike import cli, run\n"
        f"run.notebook_path = lambda name: {str(nb)!r}\n"
        f"sys.exit(cli.main(['run', {str(config)!r}, '--from', '04', '--to', '04', "
        "'--no-html', '--no-progress']))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "lib")}
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the runner's own process group, as a terminal gives it
    )
    return proc, beats


def _wait_for_kernel(beats: Path, proc: subprocess.Popen, timeout: float = 90) -> int:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if beats.exists() and beats.read_text().count("beat") >= 3:
            return int(beats.read_text().splitlines()[0].split()[1])
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    raise AssertionError("the kernel never started working")


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")  # a zombie has stopped; only its exit status is left


def _assert_stops_within(pid: int, beats: Path, seconds: float) -> None:
    """The kernel is gone within ``seconds`` and has not beaten since this was called."""
    n = beats.read_text().count("beat")
    t0 = time.monotonic()
    while not _gone(pid):
        assert time.monotonic() - t0 < seconds, f"kernel {pid} still running"
        time.sleep(0.02)
    time.sleep(0.3)
    assert beats.read_text().count("beat") == n, "the kernel kept working after the runner"


def test_sigkill_of_the_runners_group_takes_the_kernel_with_it(tmp_path):
    proc, beats = _start_runner(tmp_path)
    try:
        pid = _wait_for_kernel(beats, proc)
        assert os.getpgid(pid) != proc.pid  # the kernel is not in the runner's group...
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        _assert_stops_within(pid, beats, 0.3)  # ...yet it dies with the runner, at once
    finally:
        with pytest.raises(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def test_ctrl_c_stops_the_kernel_and_prints_one_line(tmp_path):
    proc, beats = _start_runner(tmp_path)
    pid = _wait_for_kernel(beats, proc)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    _assert_stops_within(pid, beats, 3.0)
    assert err.splitlines() == ["lookalike: interrupted"], err
    assert "Traceback" not in out and "ZMQError" not in out
    assert out.splitlines()[-1] == "[lookalike] 04_pca_kmeans ...", out
