"""Deprecated alias of :mod:`lookalike.storage` (it shadowed the standard library's ``io``).

``from lookalike import io`` keeps working for one release, with a ``DeprecationWarning``.
"""

import warnings

from .folder import IMAGE_EXTENSIONS, index_folder  # noqa: F401
from .storage import *  # noqa: F403
from .storage import coerce_manifest as _coerce_manifest  # noqa: F401

warnings.warn(
    "lookalike.io is deprecated; use lookalike.storage (and lookalike.folder.index_folder)",
    DeprecationWarning,
    stacklevel=2,
)
