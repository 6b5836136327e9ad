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


MIN_VISIBLE_SIDE = 4.0
"""The smallest box side (frame pixels) a first box should have; below it the CLI warns.

Why 4: the Siamese trackers crop a context of about twice the target's side
(``sqrt((w + p)(h + p))``, ``p = (w + h) / 2``) and scale it to the 127-pixel template, so a
side-4 target is magnified about 16x, as much as the backbone's stride (16): one feature cell
then covers one frame pixel, and below that the network matches interpolated blur, not the
target's texture. The smallest side in any ground-truth frame of the shared data is 5.25 px
(and 8.25 px in a first frame), so ordinary small targets (10x10) are never warned about.
"""


def small_box_message(box: np.ndarray) -> str | None:
    """Why a (valid) first-frame box is too small to track reliably, or None when it is not."""
    w, h = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4)[2:])
    if min(w, h) >= MIN_VISIBLE_SIDE:
        return None
    return (
        f"{w:g}x{h:g} px is smaller than {MIN_VISIBLE_SIDE:g} px a side: the network sees less "
        "than one frame pixel per feature cell, so tracking it will be unreliable"
    )


def validate_init_box(
    box: np.ndarray | list[float], frame_shape: tuple[int, ...], *, one_based: bool = False
) -> np.ndarray:
    """Check a first-frame box (0-based) against the frame; raise ValueError with a clear reason.

    ``one_based``: the user gave the box 1-based (``--init``), so the messages show x and y as
    the user wrote them.
    """
    arr = np.asarray(box, dtype=np.float64).reshape(-1)
    if arr.shape != (4,):
        raise ValueError(f"a box needs 4 numbers x,y,w,h; got {arr.size}")
    shown = to_otb(arr) if one_based else arr
    convention = "1-based" if one_based else "0-based"
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"the box {shown.tolist()} has a non-finite value")
    x, y, w, h = arr
    if w <= 0 or h <= 0:
        raise ValueError(f"the box has zero or negative size (w={w:g}, h={h:g})")
    height, width = frame_shape[:2]
    if x + w <= 0 or y + h <= 0 or x >= width or y >= height:
        sx, sy = shown[:2]
        raise ValueError(
            f"the box x={sx:g},y={sy:g},w={w:g},h={h:g} ({convention}) lies outside the "
            f"{width}x{height} frame"
        )
    return arr
