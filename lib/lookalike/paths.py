"""Every path lookalike uses, derived from one anchor (the project root)."""

from __future__ import annotations

import os
from pathlib import Path

#: The workspace root: ``lib/lookalike/paths.py`` -> two levels up from ``lib``.
PROJECT_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
DATA_DIR = PROJECT_ROOT / "data"
DEMO_DIR = DATA_DIR / "demo"
CONFIGS_DIR = PROJECT_ROOT / "configs"
RUNS_DIR = PROJECT_ROOT / "runs"

#: Name of the Jupyter kernel registered from the project's virtualenv.
KERNEL_NAME = "lookalike"


def resolve(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` as an absolute path; relative paths are taken from the project root.

    Notebooks run with their own folder as working directory in JupyterLab and with the
    caller's in papermill, so every relative path in a parameter means "from the root".
    """
    p = Path(os.path.expanduser(os.fspath(path)))
    return p if p.is_absolute() else (PROJECT_ROOT / p)


def default_cache_dir() -> Path:
    """Shared cache for embeddings and weights: ``$LOOKALIKE_CACHE`` or ``~/.cache/lookalike``."""
    env = os.environ.get("LOOKALIKE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lookalike"
