"""A small synthetic clip to track when the shared data is absent, so the CLI always has an input.

A textured elliptical object (saturated stripes, a checker patch and noise, unlike the muted
background) moves along a figure-eight path with a mild, slow scale change, over a textured
background that pans slowly. Everything is drawn from ``seed`` with NumPy's generator, so the same
arguments give the same frames. The object's true box is known exactly (:func:`demo_track`).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from runtime.boxes import to_otb
from runtime.io.video_writer import AtomicVideoWriter

DEMO_FPS = 25.0
_SCALE_SWING = 0.15  # object size varies by +-15 % over the clip
_PAN_FRACTION = 0.25  # the background pans by this fraction of the frame width over the clip


def _object_base_size(size: tuple[int, int]) -> tuple[int, int]:
    """The object's (w, h) at scale 1: about a sixth of the frame width, a bit taller than wide."""
    width, height = size
    base_w = max(8, round(width * 0.16))
    base_h = max(8, min(round(base_w * 1.2), round(height * 0.3)))
    return base_w, base_h


def demo_track(n_frames: int = 120, size: tuple[int, int] = (480, 360)) -> np.ndarray:
    """The object's exact box in every frame, (N, 4) **0-based** integer-valued x, y, w, h."""
    width, height = size
    base_w, base_h = _object_base_size(size)
    t = np.arange(n_frames, dtype=np.float64) / max(n_frames - 1, 1)  # 0 .. 1 over the clip
    scale = 1.0 + _SCALE_SWING * np.sin(2.0 * np.pi * t)
    w = np.round(base_w * scale)
    h = np.round(base_h * scale)
    # Figure-eight (Lissajous 1:2) with amplitudes that keep the largest object inside the frame.
    max_w, max_h = base_w * (1 + _SCALE_SWING), base_h * (1 + _SCALE_SWING)
    amp_x = max(0.0, (width - max_w) / 2.0 - 2.0) * 0.8
    amp_y = max(0.0, (height - max_h) / 2.0 - 2.0) * 0.8
    cx = width / 2.0 + amp_x * np.sin(2.0 * np.pi * t)
    cy = height / 2.0 + amp_y * np.sin(4.0 * np.pi * t)
    x = np.round(cx - w / 2.0)
    y = np.round(cy - h / 2.0)
    return np.stack([x, y, w, h], axis=1)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: int) -> np.ndarray:
    """Noise in [0, 1] with features about ``cell`` pixels across (upsampled coarse noise)."""
    height, width = shape
    coarse = rng.random((max(2, height // cell + 2), max(2, width // cell + 2)), dtype=np.float32)
    big = cv2.resize(coarse, (width + 2 * cell, height + 2 * cell), interpolation=cv2.INTER_CUBIC)
    return np.clip(big[cell : cell + height, cell : cell + width], 0.0, 1.0)


def _background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A muted, textured landscape wider than the frame (the extra width is what pans)."""
    width, height = size
    pan = int(np.ceil(width * _PAN_FRACTION)) + 1
    shape = (height, width + pan)
    texture = (
        0.5 * _smooth_noise(rng, shape, 48)
        + 0.3 * _smooth_noise(rng, shape, 12)
        + 0.2 * _smooth_noise(rng, shape, 3)
    )
    tint = np.array([0.55, 0.65, 0.5], dtype=np.float32)  # greyish green, far from the object
    image = (texture[..., None] * tint * 255.0 + 40.0).astype(np.float32)
    # A few muted blocks and discs give the background structure a tracker could latch onto.
    canvas = np.clip(image, 0, 255).astype(np.uint8)
    for _ in range(12):
        colour = tuple(int(c) for c in rng.integers(60, 150, size=3))
        cx, cy = int(rng.integers(0, shape[1])), int(rng.integers(0, shape[0]))
        r = int(rng.integers(max(3, height // 30), max(4, height // 8)))
        if rng.random() < 0.5:
            cv2.circle(canvas, (cx, cy), r, colour, -1, cv2.LINE_AA)
        else:
            cv2.rectangle(canvas, (cx - r, cy - r // 2), (cx + r, cy + r // 2), colour, -1)
    return canvas


def _object_template(rng: np.random.Generator, base: tuple[int, int]) -> np.ndarray:
    """The object's appearance at twice its base size (downscaling later keeps it crisp)."""
    w, h = base[0] * 2, base[1] * 2
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    stripes = 0.5 + 0.5 * np.sin((xx + 0.6 * yy) * (2.0 * np.pi / max(6.0, w / 5.0)))
    image = np.empty((h, w, 3), dtype=np.float32)
    image[..., 0] = 40 + 60 * stripes  # blue
    image[..., 1] = 60 + 150 * (1.0 - stripes)  # green
    image[..., 2] = 200 + 55 * stripes  # red: saturated warm colours
    # A checker patch in the upper part makes the object's appearance asymmetric.
    cell = max(2, w // 10)
    checker = ((xx // cell + yy // cell) % 2).astype(np.float32)
    patch = (yy < h * 0.45) & (np.abs(xx - w / 2) < w * 0.25)
    image[patch] = (checker[patch, None] * np.array([255, 255, 60], np.float32)) + 20
    image += rng.normal(0.0, 12.0, size=image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def _ellipse_alpha(w: int, h: int) -> np.ndarray:
    """A soft-edged elliptical mask filling a w x h box, in [0, 1]."""
    mask = np.zeros((h * 4, w * 4), dtype=np.uint8)
    cv2.ellipse(mask, (w * 2, h * 2), (w * 2 - 1, h * 2 - 1), 0, 0, 360, 255, -1, cv2.LINE_AA)
    return cv2.resize(mask, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def render_frames(
    n_frames: int = 120, size: tuple[int, int] = (480, 360), seed: int = 0
) -> list[np.ndarray]:
    """The clip's frames (BGR uint8), before encoding."""
    width, height = size
    rng = np.random.default_rng(seed)
    background = _background(rng, size)
    template = _object_template(rng, _object_base_size(size))
    pan = background.shape[1] - width
    frames = []
    for i, (x, y, w, h) in enumerate(demo_track(n_frames, size).astype(int)):
        offset = round(pan * i / max(n_frames - 1, 1))  # slow, steady pan to the left
        frame = background[:, offset : offset + width].astype(np.float32)
        obj = cv2.resize(template, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
        alpha = _ellipse_alpha(w, h)[..., None]
        region = frame[y : y + h, x : x + w]
        frame[y : y + h, x : x + w] = alpha * obj + (1.0 - alpha) * region
        frame += rng.normal(0.0, 3.0, size=frame.shape).astype(np.float32)  # sensor noise
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return frames


def synthesize_clip(
    path: Path, n_frames: int = 120, size: tuple[int, int] = (480, 360), seed: int = 0
) -> tuple[Path, np.ndarray]:
    """Write the demo clip to ``path`` (H.264 for an .mp4); returns the path written and the
    **1-based** first-frame box ``x, y, w, h`` (OTB convention, like ``videos.json``).

    The path can differ from ``path`` only if no MP4 can be written (then it is an MJPG .avi).
    """
    if n_frames < 1:
        raise ValueError(f"n_frames must be at least 1, got {n_frames}")
    writer = AtomicVideoWriter(path, DEMO_FPS, size)
    with writer:
        for frame in render_frames(n_frames, size, seed):
            writer.write(frame)
    return writer.path, to_otb(demo_track(n_frames, size)[0])
