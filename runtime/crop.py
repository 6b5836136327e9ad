"""Search crops: cut a region of the frame, resized so the target has a fixed size in pixels.

A :class:`CropWindow` maps between frame and crop coordinates (both 0-based, continuous: pixel
``i`` covers ``[i, i+1)``), so candidate boxes drawn in the frame become RoIs in the crop with one
call. The crop is isotropic (one scale for x and y), as the pretrained backbones were trained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class CropWindow:
    x0: float  # frame coordinate of the crop's left edge
    y0: float
    scale: float  # crop pixels per frame pixel
    width: int  # crop size in pixels
    height: int

    def boxes_to_crop(self, boxes: np.ndarray) -> np.ndarray:
        out = np.asarray(boxes, dtype=np.float64).copy()
        out[..., 0] = (out[..., 0] - self.x0) * self.scale
        out[..., 1] = (out[..., 1] - self.y0) * self.scale
        out[..., 2:4] *= self.scale
        return out

    def rois(self, boxes: np.ndarray, padding: float) -> np.ndarray:
        """``x1, y1, x2, y2`` RoIs in crop pixels of ``boxes`` enlarged ``padding`` times."""
        b = self.boxes_to_crop(boxes)
        pad = b[:, 2:4] * (padding - 1.0) / 2.0
        return np.concatenate([b[:, :2] - pad, b[:, :2] + b[:, 2:4] + pad], axis=1)


def window_around(
    center_xy: np.ndarray,
    half_extent_xy: np.ndarray,
    scale: float,
    max_side: int,
    multiple: int = 16,
) -> CropWindow:
    """A window centred on ``center_xy`` covering ``+-half_extent_xy`` frame pixels at ``scale``.

    If the window would exceed ``max_side`` crop pixels, the scale drops (the target gets smaller
    in the crop) rather than the window shrinking, so every candidate stays inside.
    Sides are rounded up to ``multiple`` pixels.
    """
    size = 2.0 * np.asarray(half_extent_xy, dtype=np.float64) * scale
    if size.max() > max_side:
        scale *= max_side / size.max()
        size = 2.0 * np.asarray(half_extent_xy, dtype=np.float64) * scale
    # Sides are rounded up to a multiple of the backbone's stride, so the feature grid always
    # lines up with the crop the same way.
    width, height = (int(max(np.ceil(v / multiple), 1) * multiple) for v in size)
    x0 = float(center_xy[0]) - width / (2.0 * scale)
    y0 = float(center_xy[1]) - height / (2.0 * scale)
    return CropWindow(x0, y0, scale, width, height)


def cut(frame: np.ndarray, window: CropWindow, fill: tuple[float, float, float]) -> np.ndarray:
    """The crop as ``H x W x 3`` uint8 (same channel order as ``frame``), bilinear resampling.

    Parts of the window outside the frame read ``fill`` (the frame's mean colour is a good one).
    """
    inv = 1.0 / window.scale
    # Crop pixel u (centre u + 0.5) sits at frame coordinate x0 + (u + 0.5) / s, i.e. pixel index
    # x0 + (u + 0.5) / s - 0.5 in OpenCV's centre-based convention.
    matrix = np.array(
        [
            [inv, 0.0, window.x0 + 0.5 * inv - 0.5],
            [0.0, inv, window.y0 + 0.5 * inv - 0.5],
        ]
    )
    interpolation = cv2.INTER_LINEAR
    if window.scale < 0.5:
        # Heavy downscaling aliases with bilinear taps; pre-shrink the frame with area averaging.
        factor = max(1, int(1.0 / (2.0 * window.scale)))
        small = cv2.resize(
            frame,
            (frame.shape[1] // factor, frame.shape[0] // factor),
            interpolation=cv2.INTER_AREA,
        )
        fx = frame.shape[1] / small.shape[1]
        fy = frame.shape[0] / small.shape[0]
        matrix = np.array(
            [
                [inv / fx, 0.0, (window.x0 + 0.5 * inv) / fx - 0.5],
                [0.0, inv / fy, (window.y0 + 0.5 * inv) / fy - 0.5],
            ]
        )
        frame = small
    return cv2.warpAffine(
        frame,
        matrix,
        (window.width, window.height),
        flags=interpolation | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=fill,
    )


# -- Siamese (SiamFC-style) square crops: one geometry for MLT and NanoTrack ---------------


def exemplar_side(box: np.ndarray, context: float) -> float:
    """SiamFC's exemplar side in frame pixels: sqrt((w + p)(h + p)), p = context * (w + h)."""
    w, h = float(box[2]), float(box[3])
    p = context * (w + h)
    return math.sqrt((w + p) * (h + p))


def square_window(center: np.ndarray, side_frame: float, out_size: int) -> CropWindow:
    scale = out_size / max(side_frame, 1e-6)
    x0 = float(center[0]) - side_frame / 2.0
    y0 = float(center[1]) - side_frame / 2.0
    return CropWindow(x0, y0, scale, out_size, out_size)


def square_crop(
    frame: np.ndarray,
    center: np.ndarray,
    side_frame: float,
    out_size: int,
    fill: tuple[float, float, float],
) -> np.ndarray:
    """``out_size`` x ``out_size`` uint8 crop of a ``side_frame`` square centred on ``center``."""
    return cut(frame, square_window(center, side_frame, out_size), fill)
