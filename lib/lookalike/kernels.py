"""The stage kernels of ``lookalike run``: how they start, and that they never outlive it.

jupyter_client starts every kernel in a session of its own (so an interrupt can reach the
kernel's whole process group), which also means that a signal to the runner's process
group never reaches the kernel. Two things keep a kernel from working on after the runner:

- On Linux the kernel asks to be killed when its parent dies (``prctl(PR_SET_PDEATHSIG,
  SIGKILL)``, set between fork and exec), so even ``kill -9`` of the runner takes its
  kernel with it at once. Elsewhere ipykernel's own parent poller ends an orphaned kernel
  within about a second.
- :func:`run_interruptibly` runs papermill in a worker thread, so Ctrl-C reaches the
  runner's main thread as a plain ``KeyboardInterrupt`` (and not nbclient's signal
  handler, which closes the kernel's sockets under the running cell); the runner then
  kills every kernel it started (:func:`kill_kernels`) and the interrupt is one line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, TypeVar

__all__ = ["kernel_manager_class", "kill_kernels", "live_kernel_pids", "run_interruptibly"]

T = TypeVar("T")

#: Kernel managers whose kernel may still be running (see :func:`kill_kernels`).
_MANAGERS: weakref.WeakSet[Any] = weakref.WeakSet()

#: PR_SET_PDEATHSIG, from <linux/prctl.h>.
_PR_SET_PDEATHSIG = 1


def _death_signal_setter() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child die with its parent (Linux), else ``None``.

    libc's ``prctl`` is looked up here, in the parent: after ``fork`` the child only calls
    it (no ``dlopen``, which could deadlock in a child of a threaded process).
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def die_with_parent() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the runner died before prctl took effect
            os._exit(1)

    return die_with_parent


def kernel_manager_class(
    env: Mapping[str, str], output: IO[bytes] | None = None, ipc_dir: Path | None = None
) -> type:
    """A jupyter_client kernel manager class for one stage's kernel.

    The kernel talks to the runner over the IPC transport (Unix sockets in ``ipc_dir``, so
    ipykernel has no reason to warn about unencrypted TCP), gets ``env`` added to its
    environment, dies with the runner (see the module docstring), and sends its process's
    own stdout/stderr (not the notebook's output) to ``output``. On shutdown it is not
    interrupted first: a SIGINT there only makes ipykernel print "KeyboardInterrupt caught
    in kernel", and the shutdown request follows anyway.

    Parameters
    ----------
    env : mapping of str to str
        Extra environment variables of the kernel.
    output : binary file, optional
        Where the kernel process's stdout and stderr go.
    ipc_dir : Path, optional
        Folder for the IPC sockets (default: the kernel's connection-file folder).

    Returns
    -------
    type
        A subclass of ``jupyter_client.manager.AsyncKernelManager``, for papermill's
        ``kernel_manager_class``.
    """
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import CaselessStrEnum

    class _StageKernelManager(AsyncKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

        def _ip_default(self) -> str:
            if ipc_dir is not None and self.transport == "ipc":
                return str(ipc_dir / "kernel")
            return super()._ip_default()

        async def _async_pre_start_kernel(self, **kw: Any) -> Any:
            kw["env"] = {**os.environ, **(kw.get("env") or {}), **env}
            if output is not None:
                kw.setdefault("stdout", output)
                kw.setdefault("stderr", output)
            preexec = _death_signal_setter()
            if preexec is not None:
                kw.setdefault("preexec_fn", preexec)
            _MANAGERS.add(self)
            return await super()._async_pre_start_kernel(**kw)

        async def _async_interrupt_kernel(self) -> None:
            if self.shutting_down:
                return
            await super()._async_interrupt_kernel()

    return _StageKernelManager


def _process(manager: Any) -> Any:
    """The kernel's ``Popen`` if it is still running, else ``None``."""
    proc = getattr(getattr(manager, "provisioner", None), "process", None)
    return proc if proc is not None and proc.poll() is None else None


def live_kernel_pids() -> list[int]:
    """Process ids of the kernels started by :func:`kernel_manager_class` still running."""
    return [proc.pid for m in list(_MANAGERS) if (proc := _process(m)) is not None]


def kill_kernels() -> list[int]:
    """SIGKILL every running stage kernel and its process group; returns their pids.

    Each kernel leads its own session, so its process group holds the kernel and whatever
    it started.
    """
    killed = []
    for manager in list(_MANAGERS):
        proc = _process(manager)
        if proc is None:
            continue
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            proc.kill()
        with contextlib.suppress(Exception):
            proc.wait(timeout=5)
        killed.append(proc.pid)
    return killed


@contextlib.contextmanager
def _quiet_loggers(names: tuple[str, ...] = ("papermill", "nbclient", "traitlets", "asyncio")):
    """Silence the execution libraries while an interrupted run winds down."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def run_interruptibly(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Call ``fn(*args, **kwargs)`` in a worker thread, killing the kernels on Ctrl-C.

    Returns
    -------
    object
        What ``fn`` returned; what it raised is raised here.

    Raises
    ------
    KeyboardInterrupt
        On Ctrl-C, after every stage kernel has been killed; whatever the dying execution
        raises or logs meanwhile is dropped.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    worker = threading.Thread(target=target, name="lookalike-stage", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.1)
    except KeyboardInterrupt:
        with _quiet_loggers():
            kill_kernels()
            worker.join(timeout=10)
        raise KeyboardInterrupt from None
    if "error" in box:
        raise box["error"]
    return box["value"]
