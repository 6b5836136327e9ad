"""The window of ``python -m runtime.track --show``: frames shown as they are tracked, boxes drawn
with the mouse (OpenCV's ``selectROI``), keys read.

A window needs two things this module checks before opening one: a display (on Linux, X11 or
Wayland: ``DISPLAY`` / ``WAYLAND_DISPLAY``), and an OpenCV build with a GUI backend; the
project installs ``opencv-contrib-python-headless``, which has none (replace it with
``opencv-contrib-python`` of the same version for windows). :func:`window_unavailable` says
which is missing, so the CLI can tell the user in one line instead of failing inside OpenCV.

:class:`Window` is what the CLI drives; :class:`OpenCVWindow` is the real one, and tests drive the
CLI through a scripted one.
"""

from __future__ import annotations

import enum
import os
import sys
from typing import Protocol

import cv2
import numpy as np

NO_GUI_HINT = (
    "this OpenCV build has no GUI (opencv-contrib-python-headless); for windows: pip uninstall "
    "opencv-contrib-python-headless && pip install opencv-contrib-python=={version}"
)


class Key(enum.Enum):
    """What the user asked for with a key while a frame was shown."""

    NONE = "none"
    QUIT = "quit"  # q or Esc
    REDRAW = "redraw"  # r: draw the boxes again and start over from this frame


KEYS = {ord("q"): Key.QUIT, 27: Key.QUIT, ord("r"): Key.REDRAW}


def window_unavailable() -> str | None:
    """Why no window can be opened here (one sentence), or ``None`` when one can."""
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return "no display (DISPLAY/WAYLAND_DISPLAY unset)"
    gui = [line for line in cv2.getBuildInformation().splitlines() if "GUI:" in line]
    if gui and gui[0].split(":", 1)[1].strip().upper() == "NONE":
        return NO_GUI_HINT.format(version=cv2.__version__)
    return None


class Window(Protocol):
    """A place to show frames and draw boxes on."""

    def show(self, image: np.ndarray) -> Key:
        """Show one annotated frame; the key pressed meanwhile, if any."""

    def pick_boxes(self, image: np.ndarray, prompt: str) -> list[np.ndarray]:
        """Let the user draw one or more boxes on ``image``; 0-based ``x, y, w, h`` floats, in
        the order drawn; empty if the user drew none (cancelled)."""

    def close(self) -> None:
        """Close the window."""


class OpenCVWindow:
    """``cv2.imshow`` / ``cv2.selectROIs`` in one window (create only where
    :func:`window_unavailable` is ``None``)."""

    NAME = "runtime.track"

    def show(self, image: np.ndarray) -> Key:
        cv2.imshow(self.NAME, image)
        return KEYS.get(cv2.waitKey(1) & 0xFF, Key.NONE)

    def pick_boxes(self, image: np.ndarray, prompt: str) -> list[np.ndarray]:
        shown = image.copy()
        help_text = f"{prompt}: drag a box, Enter or Space for the next, Esc when done"
        cv2.putText(shown, help_text, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3)
        cv2.putText(shown, help_text, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
        picked = cv2.selectROIs(self.NAME, shown, showCrosshair=True, fromCenter=False)
        # selectROIs gives whole pixels: a box from pixel x to pixel x + w - 1 covers [x, x + w).
        rows = np.asarray(picked, dtype=np.float64).reshape(-1, 4)
        return [row for row in rows if row[2] > 0 and row[3] > 0]

    def close(self) -> None:
        cv2.destroyWindow(self.NAME)
