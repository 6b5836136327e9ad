"""A camera or stream tracked live: a reader thread keeps the newest frame, never a backlog."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from runtime.io.capture import (
    DEFAULT_TIMEOUT,
    capture_fps,
    capture_frame_count,
    open_capture,
    read_first_frame,
)
from runtime.io.frames import FrameSource, as_bgr, frame_size
from runtime.io.source_spec import SourceSpec


@dataclass(frozen=True)
class _Arrived:
    number: int  # 0 for the first frame the source read
    frame: np.ndarray
    at: float  # time.perf_counter() when it was read


class LiveSource(FrameSource):
    """A camera or stream tracked live: the newest frame, never a backlog.

    A reader thread reads frames as they come and keeps only the latest; iterating yields the
    first frame (the targets' boxes are given on it), then whichever frame is newest each time
    the tracker asks, so a tracker slower than the source skips frames instead of falling ever
    further behind. :attr:`dropped_frames` counts the frames skipped, :attr:`last_arrival` is
    when the frame just yielded was read (a frame's latency is measured from it), and
    :attr:`end_reason` says why a stream stopped early (``None`` when it simply ended).

    A recording made live (``--live`` on a file or an http(s) video, which say how many frames
    they have) is read at its frame rate, as a camera would deliver it; real streams come at the
    sender's pace. ``frame_count`` is ``None``: a live run tracks what it keeps up with.
    """

    def __init__(self, source: SourceSpec, name: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.source = source
        self.name = name
        self.timeout = timeout
        self.live = True
        cap = open_capture(source, timeout)
        self.first_frame = read_first_frame(cap, source)
        self.last_arrival = time.perf_counter()
        self.size = frame_size(self.first_frame)
        self.fps = capture_fps(cap)
        self._pace = self.fps if capture_frame_count(cap) is not None else None
        self.frame_count = None
        self.dropped_frames = 0
        self.end_reason: str | None = None
        self._latest: _Arrived | None = None
        self._done = False
        self._iterated = False
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._reader = threading.Thread(
            target=self._read, args=(cap, self.last_arrival), name=f"read {name}", daemon=True
        )
        self._reader.start()

    def _read(self, cap: cv2.VideoCapture, start: float) -> None:
        """The reader thread: owns ``cap`` (releases it), publishes each frame as the latest."""
        number = 0
        waited = False  # a read ran into the read timeout: the stream ends after it
        try:
            while not self._stop.is_set():
                if self._pace is not None:  # frame n is due n / fps after the first
                    due = start + (number + 1) / self._pace - time.perf_counter()
                    if due > 0 and self._stop.wait(due):
                        break
                asked = time.perf_counter()
                ok, frame = cap.read()  # OpenCV lets go of the GIL: the tracker runs meanwhile
                now = time.perf_counter()
                # A read that times out ends the stream, but the reads after it may still hand
                # back the frames the decoder held: the end comes after those.
                waited = waited or now - asked >= 0.9 * self.timeout
                if not ok or frame is None:
                    if waited and not self._stop.is_set():
                        self.end_reason = f"no frame came for {self.timeout:g} s"
                    break
                number += 1
                arrived = _Arrived(number, as_bgr(frame), now)
                with self._changed:
                    self._latest = arrived
                    self._changed.notify_all()
        except cv2.error as exc:
            self.end_reason = f"reading failed ({exc.err})"
        finally:
            cap.release()
            with self._changed:
                self._done = True
                self._changed.notify_all()

    def _next_after(self, number: int) -> _Arrived | None:
        """The newest frame after frame ``number``, waiting for one; None once none will come."""
        with self._changed:
            while True:
                latest = self._latest
                if latest is not None and latest.number > number:
                    return latest
                if self._done:
                    return None
                # A bounded wait, so Ctrl-C (handled between waits) is never held up.
                self._changed.wait(timeout=0.25)

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._iterated:
            raise RuntimeError("a live source can be iterated only once")
        self._iterated = True
        yield self.first_frame
        number = 0
        while (arrived := self._next_after(number)) is not None:
            self.dropped_frames += arrived.number - number - 1
            number = arrived.number
            self.last_arrival = arrived.at
            yield arrived.frame

    def close(self) -> None:
        """Stop the reader. It may sit in a read for up to ``timeout``: it is not waited for
        long, it releases the capture itself when that read returns."""
        self._stop.set()
        if self._reader.is_alive() and self._reader is not threading.current_thread():
            self._reader.join(timeout=1.0)
