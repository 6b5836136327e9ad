"""The one interface every tracker implements (ours, OpenCV's peers, test doubles).

Frames are ``H x W x 3`` uint8 arrays in **BGR** order (what OpenCV reads). Boxes are 0-based
``x, y, w, h`` floats (see :mod:`runtime.boxes`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Tracker(Protocol):
    name: str

    def init(self, frame: np.ndarray, box: np.ndarray) -> None:
        """Start tracking the object inside ``box`` on ``frame``."""

    def update(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        """Locate the object on the next frame: its box and a confidence score."""


@runtime_checkable
class ReportsLost(Protocol):
    """A tracker that says when it has lost its target (after ``update``); optional."""

    lost: bool
