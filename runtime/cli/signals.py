"""Ctrl-C and SIGTERM as one way to stop a command-line run, never in the middle of a write.

Used by ``python -m runtime.track`` (one frame's outputs are written whole, and the video is
finalised) and ``bench.ope`` (the runs finished are kept for ``--resume``).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class StopSignals:
    """While active (``with``), SIGINT and SIGTERM both raise KeyboardInterrupt, as Ctrl-C does.

    Inside :meth:`held` a signal is only recorded, and raised when the block ends, so one frame's
    outputs (box row, score row, video frame) are written whole or not at all. The previous
    handlers come back on exit. The handlers are installed whatever the process inherited: a shell
    starts a background job (``cmd &``, ``nohup cmd &``, many CI runners) with SIGINT ignored, and
    a run that ignored the SIGINT sent to it would go on to its end (or be SIGKILLed, leaving an
    unplayable video), so how it was started must not decide whether it stops cleanly (issue 28).
    Outside the main thread (where Python cannot set handlers) nothing is installed.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self._previous: dict[int, object] = {}
        self._depth = 0
        self.pending: int | None = None  # a signal received inside held(), not yet raised

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is not threading.main_thread():
            return self
        for signum in self.SIGNALS:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()

    def _handle(self, signum: int, _frame: object) -> None:
        if self._depth:
            self.pending = signum
            return
        raise KeyboardInterrupt

    @contextmanager
    def held(self, *, raise_pending: bool = True) -> Iterator[None]:
        """Hold SIGINT/SIGTERM during the block; one that came in is raised at its end."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
        if raise_pending and not self._depth and self.pending is not None:
            self.pending = None
            raise KeyboardInterrupt
