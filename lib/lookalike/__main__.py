"""``python -m lookalike`` is the ``lookalike`` command."""

import sys

from .cli import main

sys.exit(main())
