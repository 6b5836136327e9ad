"""Box conventions and geometry, in one place.

Inside the project every box is ``x, y, w, h`` in float pixels, **0-based**: the top-left pixel
of an image covers ``[0, 1) x [0, 1)``. Files in OTB format (ground truth, ``--boxes`` output,
``--init``) are **1-based**; convert only with :func:`from_otb` and :func:`to_otb`, at the file or
CLI boundary.
"""

from __future__ import annotations

import numpy as np

OTB_OFFSET = 1.0


def from_otb(boxes: np.ndarray) -> np.ndarray:
    """1-based OTB ``x, y, w, h`` rows to the project's 0-based boxes (NaN rows stay NaN)."""
    out = np.asarray(boxes, dtype=np.float64).copy()
    out[..., :2] -= OTB_OFFSET
    return out


def to_otb(boxes: np.ndarray) -> np.ndarray:
    """The project's 0-based boxes to 1-based OTB rows."""
    out = np.asarray(boxes, dtype=np.float64).copy()
    out[..., :2] += OTB_OFFSET
    return out


def centers(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64)
    return boxes[..., :2] + boxes[..., 2:4] / 2.0


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of ``x, y, w, h`` boxes, broadcasting over leading axes (NaN where either is NaN)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    x1 = np.maximum(a[..., 0], b[..., 0])
    y1 = np.maximum(a[..., 1], b[..., 1])
    x2 = np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2])
    y2 = np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(union > 0, inter / union, 0.0)
    missing = np.isnan(a).any(axis=-1) | np.isnan(b).any(axis=-1)
    return np.where(missing, np.nan, out)


def validate_init_box(box: np.ndarray | list[float], frame_shape: tuple[int, ...]) -> np.ndarray:
    """Check a first-frame box (0-based) against the frame; raise ValueError with a clear reason."""
    arr = np.asarray(box, dtype=np.float64).reshape(-1)
    if arr.shape != (4,):
        raise ValueError(f"a box needs 4 numbers x,y,w,h; got {arr.size}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"the box {arr.tolist()} has a non-finite value")
    x, y, w, h = arr
    if w <= 0 or h <= 0:
        raise ValueError(f"the box has zero or negative size (w={w:g}, h={h:g})")
    height, width = frame_shape[:2]
    if x + w <= 0 or y + h <= 0 or x >= width or y >= height:
        raise ValueError(
            f"the box x={x:g},y={y:g},w={w:g},h={h:g} (0-based) lies outside the "
            f"{width}x{height} frame"
        )
    return arr
