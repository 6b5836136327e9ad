"""Cameras, streams and video files through ``cv2.VideoCapture``, read frame by frame.

A stream gets a timeout to open and to send each frame, so a silent address ends with a clear
:class:`~runtime.io.frames.InputError` instead of a hang. :mod:`runtime.io.live` reads the same
captures live (the newest frame).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import cv2
import numpy as np

from runtime.io.frames import FrameSource, InputError, as_bgr, frame_size
from runtime.io.source_spec import SourceKind, SourceSpec

DEFAULT_TIMEOUT = 10.0  # seconds a stream may take to open, or between two frames


def quiet_opencv_logs() -> None:
    """Silence OpenCV's and FFmpeg's own stderr chatter so a CLI can print one clear line.

    FFmpeg reads ``OPENCV_FFMPEG_LOGLEVEL`` once, when OpenCV first uses it, so call this before
    opening anything. A value the user set is kept (they may want the diagnostics back).
    """
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    if "OPENCV_LOG_LEVEL" not in os.environ:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def _ffmpeg_api() -> int:
    # Ask for FFmpeg by name: CAP_ANY would also try the image-sequence backend, which reads
    # names such as "clip%03d.mp4" as patterns and fails in confusing ways.
    return cv2.CAP_FFMPEG if cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG) else 0


def open_capture(source: SourceSpec, timeout: float = DEFAULT_TIMEOUT) -> cv2.VideoCapture:
    """An opened ``cv2.VideoCapture`` of a camera, stream or video file, or InputError.

    A stream gets ``timeout`` seconds to open and then to deliver each frame (OpenCV's FFmpeg
    would wait 30 s), so a silent address ends with a clear error instead of a hang.
    """
    if source.kind is SourceKind.CAMERA:
        cap = cv2.VideoCapture(source.camera)
        if not cap.isOpened():
            raise InputError(f"cannot open camera {source.camera} (no such device or it is busy)")
        return cap
    if source.kind is SourceKind.STREAM:
        ms = max(1, round(timeout * 1000))
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        start = time.perf_counter()
        cap = cv2.VideoCapture(source.url, _ffmpeg_api(), params)
        if not cap.isOpened():
            cap.release()
            if time.perf_counter() - start >= 0.9 * timeout:
                raise InputError(
                    f"cannot open stream {source.url}: nothing answered within {timeout:g} s"
                )
            raise InputError(
                f"cannot open stream {source.url}: refused, not found, or not a video stream"
            )
        return cap
    cap = cv2.VideoCapture(str(source.path), _ffmpeg_api())
    if not cap.isOpened():
        raise InputError(
            f"cannot read video {source.path}: OpenCV cannot open it "
            "(not a video, or a codec this OpenCV build lacks)"
        )
    return cap


def _what(source: SourceSpec) -> str:
    if source.kind is SourceKind.CAMERA:
        return f"camera {source.camera}"
    return f"stream {source.url}" if source.kind is SourceKind.STREAM else f"video {source.path}"


def read_first_frame(cap: cv2.VideoCapture, source: SourceSpec) -> np.ndarray:
    """The capture's first frame, BGR; InputError (the capture released) if it cannot be had."""
    ok, frame = cap.read()
    if not ok or frame is None:
        cap.release()
        raise InputError(f"cannot read {_what(source)}: its first frame cannot be decoded")
    return as_bgr(frame)


def capture_fps(cap: cv2.VideoCapture) -> float | None:
    """The frame rate the capture declares, or None where it declares none that is plausible."""
    fps = float(cap.get(cv2.CAP_PROP_FPS))
    return fps if np.isfinite(fps) and 0 < fps < 1000 else None


def capture_frame_count(cap: cv2.VideoCapture) -> int | None:
    """The frame count the container claims, or None (cameras, live streams)."""
    # Live streams report 0 or garbage (udp: a huge negative number).
    count = float(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    return int(count) if np.isfinite(count) and count > 0 else None


class CaptureSource(FrameSource):
    """A video file, or a URL of one, read frame by frame through ``cv2.VideoCapture``."""

    def __init__(self, source: SourceSpec, name: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.source = source
        self.name = name
        self.timeout = timeout
        self._cap: cv2.VideoCapture | None = None
        self._passes = 0
        self.first_frame = self._open()
        self.size = frame_size(self.first_frame)
        assert self._cap is not None
        self.fps = capture_fps(self._cap)
        self.frame_count = capture_frame_count(self._cap)

    def _open(self) -> np.ndarray:
        """Open the capture and decode its first frame, raising InputError if either fails."""
        self.close()
        cap = open_capture(self.source, self.timeout)
        first = read_first_frame(cap, self.source)
        self._cap = cap
        return first

    def __iter__(self) -> Iterator[np.ndarray]:
        self._passes += 1
        if self._passes > 1:
            # A second pass over a file reopens it: seeking is unreliable across codecs.
            self.first_frame = self._open()
        yield self.first_frame
        while self._cap is not None:
            ok, frame = self._cap.read()
            if not ok or frame is None:  # end of stream (or a truncated tail: stop there too)
                break
            yield as_bgr(frame)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
