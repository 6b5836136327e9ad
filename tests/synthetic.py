"""Synthetic OTB-layout sequences and test-double trackers shared by the evaluation tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from runtime.boxes import to_otb
from runtime.sequences import Sequence
from runtime.tracker_api import Tracker

N_FRAMES = 12
SEQ_NAME = "Synth"


def write_sequence(root: Path, name: str = SEQ_NAME, n: int = N_FRAMES) -> Path:
    """A grey frame with a white rectangle moving 4 px right and 2 px down per frame."""
    folder = root / name
    (folder / "img").mkdir(parents=True)
    boxes = []
    for i in range(n):
        frame = np.full((96, 128, 3), 60, dtype=np.uint8)
        x, y, w, h = 10 + 4 * i, 20 + 2 * i, 24, 16
        cv2.rectangle(frame, (x, y), (x + w - 1, y + h - 1), (255, 255, 255), thickness=-1)
        cv2.imwrite(str(folder / "img" / f"{i + 1:04d}.png"), frame)
        boxes.append([x, y, w, h])
    # Integer 0-based boxes, written 1-based as OTB files are.
    rows = to_otb(np.asarray(boxes, dtype=np.float64))
    (folder / "groundtruth_rect.txt").write_text(
        "\n".join(",".join(f"{v:g}" for v in row) for row in rows) + "\n"
    )
    return folder


class OracleTracker:
    """Returns the ground truth of the sequence it was given, frame by frame."""

    name = "oracle"

    def __init__(self, ground_truth: np.ndarray) -> None:
        self._gt = ground_truth
        self._index = 0

    def init(self, frame: np.ndarray, box: np.ndarray) -> None:
        assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
        np.testing.assert_allclose(box, self._gt[0])
        self._index = 0

    def update(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        self._index += 1
        return self._gt[self._index].copy(), 1.0


class StaticTracker:
    """Never moves from the initial box."""

    name = "static"

    def init(self, frame: np.ndarray, box: np.ndarray) -> None:
        self._box = np.asarray(box, dtype=np.float64).copy()

    def update(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        return self._box.copy(), 0.5


def tracker_factory(sequence: Sequence) -> Callable[[str], Tracker]:
    def build(name: str) -> Tracker:
        if name == "oracle":
            return OracleTracker(sequence.ground_truth)
        if name == "static":
            return StaticTracker()
        raise ValueError(f"unknown tracker {name!r}")

    return build
