"""Where the CLI's messages go: stderr, one line each, so stdout holds only the summary.

Two kinds: :func:`warn` for what the user must see even with ``--quiet`` (warnings, errors, what
happened to the outputs), and the :data:`Notify` that :func:`notifier` gives for notes
``--quiet`` silences (the backend chosen, the demo clip, a fallback tracker).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

Notify = Callable[[str], None]


def warn(message: str) -> None:
    """One message on stderr, whatever ``--quiet`` says."""
    print(message, file=sys.stderr)


def _silent(_message: str) -> None:
    pass


def notifier(quiet: bool) -> Notify:
    """The notes' destination: stderr, or nowhere with ``--quiet``."""
    return _silent if quiet else warn
