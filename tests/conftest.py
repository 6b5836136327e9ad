"""Fixtures every test folder can use. The shared-data paths and the skip markers they go with
are in tests/support.py (a decorator needs them when its file is imported)."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pytest

from runtime.sequences import load_sequence
from tests.support import CROSSING


@pytest.fixture(scope="session")
def crossing_frames() -> Callable[[int], tuple[list[np.ndarray], np.ndarray]]:
    """``crossing_frames(n)``: the first ``n`` frames of Crossing (BGR) and their ground truth
    (mark the test ``needs_data``)."""

    def first(n: int) -> tuple[list[np.ndarray], np.ndarray]:
        seq = load_sequence(CROSSING)
        return [cv2.imread(str(p)) for p in seq.frame_paths[:n]], seq.ground_truth[:n]

    return first
