"""The status text drawn on output frames fits the frame, however small (issue 28.5)."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.io.overlay import TargetMark, draw_annotations, draw_targets


def _drawn_columns(image: np.ndarray) -> np.ndarray:
    """Columns where anything was drawn on a black frame."""
    return np.flatnonzero(image.max(axis=(0, 2)) > 0)


@pytest.mark.parametrize("size", [(176, 144), (320, 240), (640, 480)])
def test_the_status_line_is_not_cut_off(size: tuple[int, int]) -> None:
    width, height = size
    frame = np.zeros((height, width, 3), np.uint8)
    image = draw_annotations(frame, 122, None, score=0.53, fps=123.4, total=456, target_lost=True)
    columns = _drawn_columns(image)
    assert columns.size, "the status text is drawn"
    assert columns.max() < width - 2, f"text runs to the right edge of a {width}x{height} frame"
    rows = np.flatnonzero(image.max(axis=(1, 2)) > 0)
    assert rows.max() < height // 2, "the text stays at the top"


def test_several_targets_status_fits_a_small_frame() -> None:
    frame = np.zeros((144, 176, 3), np.uint8)
    marks = [TargetMark(np.array([np.nan] * 4), 0.5, True) for _ in range(3)]
    image = draw_targets(frame, 122, marks, fps=123.4, total=456)
    assert _drawn_columns(image).max() < 176 - 2


def test_text_on_a_large_frame_keeps_its_size() -> None:
    frame = np.zeros((480, 640, 3), np.uint8)
    image = draw_annotations(frame, 0, None, fps=30.0)
    rows = np.flatnonzero(image.max(axis=(1, 2)) > 0)
    assert rows.max() - rows.min() >= 10, "full-size text on a 640-px frame"
