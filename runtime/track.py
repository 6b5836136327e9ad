"""``python -m runtime.track``, and the console command ``tracker``: the tracking CLI's entry point.

The CLI itself is :mod:`runtime.cli` (its stages in order: :mod:`runtime.cli.main`); this module
stays so that ``python -m runtime.track`` and ``runtime.track:main`` keep working.
"""

from __future__ import annotations

import sys

from runtime.cli.main import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
