"""The ``--show`` window as a run sees it: frames shown, boxes drawn, keys read, and where no
window can be had (no display, a headless OpenCV, a window system gone mid-run) one message
instead of a crash. The window itself is :mod:`runtime.io.viewer`.
"""

from __future__ import annotations

from contextlib import suppress

import cv2
import numpy as np

from runtime.cli.console import Notify
from runtime.cli.request import UsageError
from runtime.io.viewer import Key, OpenCVWindow, Window, window_unavailable


class Display:
    """The ``--show`` window, where one can be opened; otherwise nothing (one warning)."""

    def __init__(self, window: Window | None, warn: Notify) -> None:
        self.window = window
        self._warn = warn

    @property
    def enabled(self) -> bool:
        return self.window is not None

    def show(self, image: np.ndarray) -> Key:
        if self.window is None:
            return Key.NONE
        try:
            return self.window.show(image)
        except cv2.error as exc:  # the window system went away mid-run
            self.window = None
            self._warn(f"warning: --show: cannot show frames any more ({exc.err}); tracking on")
            return Key.NONE

    def pick_boxes(self, image: np.ndarray, prompt: str) -> list[np.ndarray]:
        """Boxes drawn on ``image`` (0-based), or UsageError when none can be drawn here."""
        if self.window is None:
            raise UsageError("--show: no window to draw the box in")
        try:
            return self.window.pick_boxes(image, prompt)
        except cv2.error as exc:
            raise UsageError(
                f"--show: cannot open a window to draw the box in ({exc.err})"
            ) from None

    def close(self) -> None:
        if self.window is not None:
            with suppress(cv2.error):
                self.window.close()

    def __enter__(self) -> Display:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_display(show: bool, must_draw: bool, warn: Notify, window: Window | None) -> Display:
    """The ``--show`` display: ``window`` if given (tests), else OpenCV's where it can open.

    Without a display or a GUI build of OpenCV, a run that needs boxes drawn (``must_draw``) ends
    with one ``error:`` line; any other run tracks on after one warning.
    """
    if not show:
        return Display(None, warn)
    if window is None:
        reason = window_unavailable()
        if reason is not None:
            if must_draw:
                raise UsageError(
                    f"--show: cannot open a window to draw the first box: {reason}; give the "
                    f"box with --init x,y,w,h (1-based) instead"
                )
            warn(f"warning: --show: {reason}; not showing frames")
            return Display(None, warn)
        window = OpenCVWindow()
    return Display(window, warn)
