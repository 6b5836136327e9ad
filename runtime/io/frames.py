"""What every frame source yields, and the errors a source raises.

Every frame a source yields is an ``H x W x 3`` uint8 **BGR** array (what OpenCV decodes), as
:mod:`runtime.tracker_api` expects (:func:`as_bgr` makes sure of it). The sources themselves:
:mod:`runtime.io.sources` (opens any input; image folders), :mod:`runtime.io.capture` (video
files, cameras and streams, frame by frame) and :mod:`runtime.io.live` (the newest frame).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np


class InputError(ValueError):
    """A video, folder or camera that cannot be used as input; the message says why."""


class BadFrameError(InputError):
    """A frame after the first that cannot be used, met while iterating a source.

    ``index`` is the frame's 0-based index (the message names it 1-based, as boxes files do) and
    ``path`` its file. The frames before it were fine; what was tracked on them stays valid.
    """

    def __init__(self, message: str, index: int, path: Path) -> None:
        super().__init__(message)
        self.index = index
        self.path = path


class UnreadableFrameError(BadFrameError):
    """An image of a folder that cannot be decoded (corrupt, truncated, not an image)."""


class FrameSizeError(BadFrameError):
    """An image whose size differs from the first frame's: boxes would be in other coordinates."""


def as_bgr(frame: np.ndarray) -> np.ndarray:
    """Guarantee the tracker contract (H x W x 3 uint8) whatever the decoder handed back."""
    if frame.ndim == 2:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    elif frame.shape[2] == 4:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    if frame.dtype != np.uint8:
        frame = cv2.convertScaleAbs(frame)
    return np.ascontiguousarray(frame)


def frame_size(frame: np.ndarray) -> tuple[int, int]:
    """``(width, height)``, the order OpenCV's sizes take."""
    return int(frame.shape[1]), int(frame.shape[0])


class FrameSource:
    """Frames from somewhere, in order. Iterate it; close it (or use ``with``) when done.

    ``fps`` and ``frame_count`` are ``None`` when the source does not know them (image folders
    have no frame rate; cameras have no end). ``frame_count`` of a video file is what the
    container claims, which can be off by a frame or two for some codecs. ``first_frame`` is
    decoded when the source is opened, so a source that exists has at least one frame.

    A live source (:class:`runtime.io.live.LiveSource`) skips frames to stay on the newest:
    ``live`` is True, ``dropped_frames`` counts the frames skipped so far, ``last_arrival`` is when
    the frame just yielded was read (``time.perf_counter()``) and ``end_reason`` why the stream
    stopped early.
    """

    name: str
    fps: float | None
    frame_count: int | None
    size: tuple[int, int]  # (width, height) of the first frame
    first_frame: np.ndarray
    live: bool = False
    dropped_frames: int = 0
    last_arrival: float | None = None
    end_reason: str | None = None

    def __iter__(self) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the underlying file or device (idempotent)."""

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, size={self.size}, fps={self.fps}, "
            f"frame_count={self.frame_count})"
        )
