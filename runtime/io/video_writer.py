"""Videos written atomically (H.264 in MP4 where it can be had), and the annotated video of a run.

A video appears under its final name only once it is complete; :class:`AnnotatedVideoWriter`
draws every frame's targets (:mod:`runtime.io.overlay`) before writing it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from contextlib import suppress
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import cv2
import numpy as np

from runtime.io.frames import as_bgr, frame_size
from runtime.io.overlay import TargetMark, draw_targets

DEFAULT_FPS = 25.0  # used for writing when a source has no frame rate (image folders, some cameras)


class OutputError(OSError):
    """An output video that cannot be written; the message says why."""


def _stderr_note(message: str) -> None:
    print(message, file=sys.stderr)


class _FinishOnExit:
    """``with writer:`` closes on success and aborts (deletes the partial file) on an exception."""

    def close(self) -> Path:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self: _W) -> _W:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


_W = TypeVar("_W", bound=_FinishOnExit)


# The annotated video is H.264 (yuv420p) in MP4, what every browser's <video> plays (MPEG-4
# Part 2, OpenCV's mp4v, plays in desktop players but not in Chromium). OpenCV's wheels have no
# H.264 encoder, so it goes through PyAV, whose wheels bundle FFmpeg with libx264.
H264_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov"}
# Fragmented MP4: the index (an empty moov) is written first and each fragment (moof + mdat, one
# per keyframe) as soon as it is complete, so the file plays from its start while it grows, like
# a faststart file, and a run killed outright (SIGKILL, power loss) leaves a file that plays up
# to its last whole fragment. faststart instead moves the index to the front when the file is
# closed: a killed run would leave a file no player opens. global_sidx adds, on close, a segment
# index at the front, so a finished file tells its duration and seeks like a faststart one.
MP4_MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof+global_sidx"
H264_OPTIONS = {
    "preset": "veryfast",  # encoding runs between tracked frames: keep it cheap
    "tune": "zerolatency",  # no B-frames or look-ahead: each frame is encoded as it comes
    "crf": "23",  # x264's default quality
}
KEYFRAME_SECONDS = 1.0  # a keyframe (so a fragment) per second: at most ~1 s lost to a SIGKILL


class _Encoder:
    """One open video file that takes BGR frames of the writer's size."""

    fourcc: str

    def write(self, frame: np.ndarray) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """Flush the last frames and close the file."""

    def release(self) -> None:
        """Close the file without caring for its content (it is deleted next)."""


class _OpenCVEncoder(_Encoder):
    """``cv2.VideoWriter``: mp4v or MJPG, for containers PyAV is not used for."""

    def __init__(self, writer: cv2.VideoWriter, fourcc: str) -> None:
        self._writer = writer
        self.fourcc = fourcc

    @classmethod
    def open(cls, path: Path, fourcc: str, fps: float, size: tuple[int, int]) -> _OpenCVEncoder:
        api = cv2.CAP_FFMPEG if cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG) else 0
        writer = cv2.VideoWriter(str(path), api, cv2.VideoWriter_fourcc(*fourcc), fps, size)
        if not writer.isOpened():
            writer.release()
            raise OutputError(f"OpenCV cannot write {fourcc} to {path}")
        return cls(writer, fourcc)

    def write(self, frame: np.ndarray) -> None:
        self._writer.write(frame)

    def finish(self) -> None:
        self._writer.release()

    def release(self) -> None:
        self._writer.release()


def even_size(size: tuple[int, int]) -> tuple[int, int]:
    """The size H.264 in yuv420p can hold: odd widths and heights grow by one pixel (its
    colour planes are half the size in each direction)."""
    width, height = size
    return width + width % 2, height + height % 2


class _H264Encoder(_Encoder):
    """H.264 (libx264, yuv420p) in fragmented MP4 through PyAV (see :data:`MP4_MOVFLAGS`)."""

    fourcc = "avc1"

    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        import av  # here, not at the top: only writing an MP4 needs it

        self._av = av
        self.path = path
        self.size = size
        self.coded_size = even_size(size)
        rate = Fraction(fps).limit_denominator(1001)  # 29.97 -> 30000/1001
        options = {"movflags": MP4_MOVFLAGS, "flush_packets": "1"}  # each fragment to disk
        fmt = H264_CONTAINERS.get(path.suffix.lower(), "mp4")
        self._container = av.open(str(path), mode="w", format=fmt, options=options)
        try:
            stream = self._container.add_stream("libx264", rate=rate)
            stream.width, stream.height = self.coded_size
            stream.pix_fmt = "yuv420p"
            stream.options = dict(H264_OPTIONS)
            stream.codec_context.gop_size = max(1, round(fps * KEYFRAME_SECONDS))
            self._stream = stream
            self._time_base = Fraction(1) / rate
            self._frames = 0
        except BaseException:
            self._container.close()
            raise

    def _mux(self, frame: object) -> None:
        try:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        except self._av.FFmpegError as exc:  # a full disk, a file system gone read-only
            raise OutputError(f"cannot write video {self.path}: {exc}") from None

    def write(self, frame: np.ndarray) -> None:
        if self.coded_size != self.size:
            # Pad the odd column/row with a copy of the last one: no pixel is lost and the
            # boxes drawn stay where they were.
            pad_w, pad_h = (c - s for c, s in zip(self.coded_size, self.size, strict=True))
            frame = cv2.copyMakeBorder(frame, 0, pad_h, 0, pad_w, cv2.BORDER_REPLICATE)
        video_frame = self._av.VideoFrame.from_ndarray(frame, format="bgr24")
        video_frame.pts = self._frames
        video_frame.time_base = self._time_base
        self._mux(video_frame)
        self._frames += 1

    def finish(self) -> None:
        self._mux(None)  # drain the encoder
        try:
            self._container.close()
        except self._av.FFmpegError as exc:
            raise OutputError(f"cannot finish video {self.path}: {exc}") from None

    def release(self) -> None:
        with suppress(Exception):  # the file is deleted next: nothing in it matters
            self._container.close()


def _h264_errors() -> tuple[type[Exception], ...]:
    """What opening an H.264 writer raises where one cannot be had here."""
    try:
        import av
    except ImportError:
        return (ImportError,)
    return (ImportError, ValueError, OSError, av.FFmpegError)


class AtomicVideoWriter(_FinishOnExit):
    """Write frames to a video that appears under its final name only once it is complete.

    Frames go to ``<stem>.partial<suffix>`` and are renamed on :meth:`close`, so an interrupted
    run never leaves a file that looks finished. An ``.mp4`` (``.m4v``, ``.mov``) is H.264 in
    fragmented MP4 (:data:`MP4_MOVFLAGS`): it plays in browsers, and a ``.partial.mp4`` left by
    a killed run plays up to its last second or so. Odd frame sizes are padded to even ones
    (:func:`even_size`) and ``notify`` says so. Other containers, or an MP4 where H.264 cannot be
    written, get OpenCV's ``mp4v``; if that does not open either, ``MJPG`` in an ``.avi`` next to
    it. Every fallback is said through ``notify``, and :attr:`path` is the name actually written.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fps: float | None,
        size: tuple[int, int],
        *,
        notify: Callable[[str], None] = _stderr_note,
    ) -> None:
        width, height = (int(v) for v in size)
        if width <= 0 or height <= 0:
            raise ValueError(f"video size must be positive, got {size}")
        self.size = (width, height)
        self.fps = float(fps) if fps is not None and np.isfinite(fps) and fps > 0 else DEFAULT_FPS
        self.frames_written = 0
        requested = Path(path)
        requested.parent.mkdir(parents=True, exist_ok=True)
        self.path, self._encoder = self._open(requested, notify)
        self.fourcc = self._encoder.fourcc

    def _open(self, requested: Path, notify: Callable[[str], None]) -> tuple[Path, _Encoder]:
        if requested.suffix.lower() in H264_CONTAINERS:
            tmp = self._partial_name(requested)
            try:
                encoder = _H264Encoder(tmp, self.fps, self.size)
            except _h264_errors() as exc:  # PyAV missing, or its FFmpeg lacks libx264
                tmp.unlink(missing_ok=True)
                notify(
                    f"note: cannot write H.264 to {requested} ({exc}); writing mp4v instead "
                    "(desktop players play it, browsers do not)"
                )
            else:
                if encoder.coded_size != self.size:
                    w, h = encoder.coded_size
                    notify(
                        f"note: the video is {w}x{h}, the frames {self.size[0]}x{self.size[1]} "
                        "padded by a copy of their last column/row (H.264 in yuv420p needs even "
                        "sizes)"
                    )
                return requested, encoder
        for fourcc, final in (("mp4v", requested), ("MJPG", requested.with_suffix(".avi"))):
            tmp = self._partial_name(final)
            try:
                encoder = _OpenCVEncoder.open(tmp, fourcc, self.fps, self.size)
            except OutputError:
                tmp.unlink(missing_ok=True)
                continue
            if final != requested:
                notify(
                    f"note: cannot write mp4v video to {requested}; writing MJPG to {final} instead"
                )
            return final, encoder
        raise OutputError(f"cannot write video {requested}: OpenCV opened neither mp4v nor MJPG")

    @staticmethod
    def _partial_name(final: Path) -> Path:
        # Keep the real suffix last: FFmpeg picks the container from it.
        return final.with_name(f"{final.stem}.partial{final.suffix}")

    @property
    def partial_path(self) -> Path:
        return self._partial_name(self.path)

    def write(self, frame: np.ndarray) -> None:
        if self._encoder is None:
            raise RuntimeError(f"video writer for {self.path} is already closed")
        frame = as_bgr(frame)
        if frame_size(frame) != self.size:
            # OpenCV silently drops frames of the wrong size; resize rather than lose them.
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        self._encoder.write(frame)
        self.frames_written += 1

    def close(self) -> Path:
        """Finish the file and give it its final name; returns that name (idempotent)."""
        if self._encoder is not None:
            encoder, self._encoder = self._encoder, None
            encoder.finish()
            self.partial_path.replace(self.path)
        return self.path

    def abort(self) -> None:
        """Stop and delete the partial file (used when the run failed)."""
        if self._encoder is not None:
            encoder, self._encoder = self._encoder, None
            encoder.release()
            self.partial_path.unlink(missing_ok=True)


class AnnotatedVideoWriter(_FinishOnExit):
    """Write tracking results as a video: every target's box and score, frame index, FPS.

    Written atomically like :class:`AtomicVideoWriter` (H.264 in an ``.mp4``; its fallbacks).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fps: float | None,
        size: tuple[int, int],
        *,
        notify: Callable[[str], None] = _stderr_note,
    ) -> None:
        self._video = AtomicVideoWriter(path, fps, size, notify=notify)

    @property
    def path(self) -> Path:
        return self._video.path

    @property
    def frames_written(self) -> int:
        return self._video.frames_written

    def write(
        self,
        frame: np.ndarray,
        index: int,
        targets: Sequence[TargetMark],
        *,
        fps: float | None = None,
        total: int | None = None,
    ) -> np.ndarray:
        """Annotate (:func:`draw_targets`) and write one frame; returns the annotated image."""
        image = draw_targets(frame, index, targets, fps=fps, total=total)
        self._video.write(image)
        return image

    def close(self) -> Path:
        return self._video.close()

    def abort(self) -> None:
        self._video.abort()
