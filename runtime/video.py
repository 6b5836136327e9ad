"""Video input and output: frame sources (file, image folder, camera) and an annotated writer.

Every frame a source yields is an ``H x W x 3`` uint8 **BGR** array (what OpenCV decodes), as
:mod:`runtime.tracker_api` expects. Boxes handed to the writer are the project's **0-based**
``x, y, w, h`` floats (see :mod:`runtime.boxes`); the writer converts to OpenCV's pixel-centre
drawing coordinates itself.
"""

from __future__ import annotations

import enum
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import TypeVar
from urllib.parse import urlsplit

import cv2
import numpy as np

from runtime.sequences import IMAGE_SUFFIXES, list_frames

DEFAULT_FPS = 25.0  # used for writing when a source has no frame rate (image folders, some cameras)


class InputError(ValueError):
    """A video, folder or camera that cannot be used as input; the message says why."""


class OutputError(OSError):
    """An output video that cannot be written; the message says why."""


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


def quiet_opencv_logs() -> None:
    """Silence OpenCV's and FFmpeg's own stderr chatter so a CLI can print one clear line.

    FFmpeg reads ``OPENCV_FFMPEG_LOGLEVEL`` once, when OpenCV first uses it, so call this before
    opening anything. A value the user set is kept (they may want the diagnostics back).
    """
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    if "OPENCV_LOG_LEVEL" not in os.environ:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


# --------------------------------------------------------------------------------------- input


def as_bgr(frame: np.ndarray) -> np.ndarray:
    """Guarantee the tracker contract (H x W x 3 uint8) whatever the decoder handed back."""
    if frame.ndim == 2:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    elif frame.shape[2] == 4:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    if frame.dtype != np.uint8:
        frame = cv2.convertScaleAbs(frame)
    return np.ascontiguousarray(frame)


class FrameSource:
    """Frames from somewhere, in order. Iterate it; close it (or use ``with``) when done.

    ``fps`` and ``frame_count`` are ``None`` when the source does not know them (image folders
    have no frame rate; cameras have no end). ``frame_count`` of a video file is what the
    container claims, which can be off by a frame or two for some codecs. ``first_frame`` is
    decoded when the source is opened, so a source that exists has at least one frame.

    A live source (:class:`LiveSource`) skips frames to stay on the newest: ``live`` is True,
    ``dropped_frames`` counts the frames skipped so far, ``last_arrival`` is when the frame just
    yielded was read (``time.perf_counter()``) and ``end_reason`` why the stream stopped early.
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

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, size={self.size}, fps={self.fps}, "
            f"frame_count={self.frame_count})"
        )


def _frame_size(frame: np.ndarray) -> tuple[int, int]:
    return int(frame.shape[1]), int(frame.shape[0])


class ImageFolderSource(FrameSource):
    """Sorted image files of a folder (an OTB sequence's ``img/`` for example)."""

    def __init__(self, frame_paths: list[Path], name: str) -> None:
        if not frame_paths:
            raise InputError(f"no frames given for {name}")
        self.frame_paths = list(frame_paths)
        self.name = name
        self.fps = None
        self.frame_count = len(self.frame_paths)
        self.first_frame = self._read(self.frame_paths[0])
        self.size = _frame_size(self.first_frame)

    @staticmethod
    def _read(path: Path) -> np.ndarray:
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
            raise InputError(f"cannot read image {path}: not a readable image file")
        return as_bgr(frame)

    def __iter__(self) -> Iterator[np.ndarray]:
        """The frames in order; re-iterable (each pass reads from disk again).

        Raises :class:`UnreadableFrameError` at an image that cannot be decoded and
        :class:`FrameSizeError` at one whose size is not the first frame's (a tracker's boxes
        are in the first frame's pixels; resizing silently would move them). Both are raised
        where the bad frame would have been yielded, so every frame before it was yielded.
        """
        yield self.first_frame
        for index, path in enumerate(self.frame_paths[1:], start=1):
            frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if frame is None:
                raise UnreadableFrameError(
                    f"frame {index + 1} ({path}) could not be read", index=index, path=path
                )
            frame = as_bgr(frame)
            size = _frame_size(frame)
            if size != self.size:
                raise FrameSizeError(
                    f"frame {index + 1} ({path}) is {size[0]}x{size[1]} but the first frame is "
                    f"{self.size[0]}x{self.size[1]}: the boxes would be in other coordinates",
                    index=index,
                    path=path,
                )
            yield frame


# ---------------------------------------------------------------- what an input string names

# Network sources OpenCV's FFmpeg opens. A camera index, rtsp, rtmp, udp, rtp, srt and tcp are
# live (frames come at the sender's pace and a slow reader falls behind); http(s) is often a
# video file on a web server, tracked frame by frame unless --live says it is a live feed (an IP
# camera's MJPEG, say).
STREAM_SCHEMES = ("http", "https", "rtsp", "rtsps", "rtmp", "udp", "rtp", "srt", "tcp")
LIVE_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "udp", "rtp", "srt", "tcp"})
DEFAULT_TIMEOUT = 10.0  # seconds a stream may take to open, or between two frames
_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://")


class SourceKind(enum.Enum):
    CAMERA = "camera"
    STREAM = "stream"  # a URL
    PATH = "path"  # a file or folder (it may not exist)


@dataclass(frozen=True)
class SourceSpec:
    """What an input string names; :func:`parse_source` is the one place that decides."""

    text: str
    kind: SourceKind
    camera: int | None = None
    url: str | None = None
    scheme: str | None = None
    path: Path | None = None

    @property
    def live_by_default(self) -> bool:
        """Cameras and live-stream schemes (:data:`LIVE_SCHEMES`); --live makes any source live."""
        return self.kind is SourceKind.CAMERA or self.scheme in LIVE_SCHEMES

    @property
    def stream_name(self) -> str:
        """A file-name-safe name for a camera or stream (its outputs are named after it): the
        URL's last path part without suffix, else its host and port."""
        if self.camera is not None:
            return f"camera{self.camera}"
        parts = urlsplit(self.url or "")
        last = PurePosixPath(parts.path).stem or parts.netloc.rsplit("@", 1)[-1] or "stream"
        return re.sub(r"[^A-Za-z0-9._-]+", "_", last).strip("._") or "stream"


def parse_source(spec: str | os.PathLike[str]) -> SourceSpec:
    """Whether ``spec`` is a camera index (digits, unless a path of that name exists), a stream
    URL (``scheme://...``; kept as text: a Path would fold its ``//``) or a path.

    Raises :class:`InputError` for a URL whose scheme OpenCV cannot open.
    """
    text = os.fspath(spec)
    found = _URL.match(text.strip())
    if found is not None:
        scheme = found.group(1).lower()
        if scheme not in STREAM_SCHEMES:
            raise InputError(
                f"cannot open {text}: {scheme}:// is not a stream this tracker reads "
                f"(it reads {', '.join(s + '://' for s in STREAM_SCHEMES)})"
            )
        return SourceSpec(text, SourceKind.STREAM, url=text.strip(), scheme=scheme)
    path = Path(text).expanduser()
    if text.strip().isdigit() and not path.exists():
        return SourceSpec(text, SourceKind.CAMERA, camera=int(text))
    return SourceSpec(text, SourceKind.PATH, path=path)


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


def _read_first(cap: cv2.VideoCapture, source: SourceSpec) -> np.ndarray:
    ok, frame = cap.read()
    if not ok or frame is None:
        cap.release()
        raise InputError(f"cannot read {_what(source)}: its first frame cannot be decoded")
    return as_bgr(frame)


def _rate(cap: cv2.VideoCapture) -> float | None:
    fps = float(cap.get(cv2.CAP_PROP_FPS))
    return fps if np.isfinite(fps) and 0 < fps < 1000 else None


def _count(cap: cv2.VideoCapture) -> int | None:
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
        self.size = _frame_size(self.first_frame)
        assert self._cap is not None
        self.fps = _rate(self._cap)
        self.frame_count = _count(self._cap)

    def _open(self) -> np.ndarray:
        """Open the capture and decode its first frame, raising InputError if either fails."""
        self.close()
        cap = open_capture(self.source, self.timeout)
        first = _read_first(cap, self.source)
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
        self.first_frame = _read_first(cap, source)
        self.last_arrival = time.perf_counter()
        self.size = _frame_size(self.first_frame)
        self.fps = _rate(cap)
        self._pace = self.fps if _count(cap) is not None else None
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


def _folder_name(folder: Path) -> str:
    """An OTB sequence's frames live in ``<Name>/img``: name the source ``<Name>``, not ``img``."""
    folder = folder.resolve()
    return folder.parent.name if folder.name == "img" else folder.name


def open_source(
    spec: str | os.PathLike[str], *, live: bool | None = None, timeout: float = DEFAULT_TIMEOUT
) -> FrameSource:
    """Open a video file, an image folder (or OTB sequence folder with ``img/``), a camera or a
    stream URL (what each string is: :func:`parse_source`).

    ``live``: track the newest frame (:class:`LiveSource`); ``None`` means live for cameras and
    :data:`LIVE_SCHEMES`, frame by frame for files and http(s). ``timeout``: seconds a stream may
    take to open or to send a frame. Raises :class:`InputError` with a clear reason when the
    input cannot be used.
    """
    source = parse_source(spec)
    live = source.live_by_default if live is None else live
    if source.kind is not SourceKind.PATH:
        if live:
            return LiveSource(source, source.stream_name, timeout)
        return CaptureSource(source, source.stream_name, timeout)
    path = source.path
    assert path is not None
    if not path.exists():
        raise InputError(f"no such file or folder: {path}")
    if path.is_dir():
        if live:
            raise InputError(f"{path} is an image folder: only a video, camera or stream is live")
        img_dir = path / "img" if (path / "img").is_dir() else path
        frames = list_frames(img_dir)
        if not frames:
            raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {img_dir}")
        return ImageFolderSource(frames, _folder_name(path))
    if not path.is_file():
        raise InputError(f"not a regular file or folder: {path}")
    if live:
        return LiveSource(source, path.stem, timeout)
    return CaptureSource(source, path.stem, timeout)


# -------------------------------------------------------------------------------------- output


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
        if _frame_size(frame) != self.size:
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


BOX_COLOR = (0, 255, 0)  # BGR green: the tracker's box
LOST_COLOR = (0, 0, 255)  # BGR red: the box while the tracker reports the target lost
GT_COLOR = (0, 200, 255)  # BGR amber: ground truth, when known
_SHIFT = 4  # cv2 fixed-point bits: draw boxes at 1/16 px so float boxes are not rounded twice


def _draw_box(image: np.ndarray, box: np.ndarray, color: tuple[int, int, int], thick: int) -> bool:
    """Draw a 0-based x,y,w,h box; returns False (draws nothing) for a NaN box."""
    x, y, w, h = np.asarray(box, dtype=np.float64).reshape(4)
    if not np.all(np.isfinite((x, y, w, h))):
        return False
    # Pixel i covers [i, i+1) in box coordinates but OpenCV puts pixel i's centre at i:
    # the box's edges x and x+w sit at x-0.5 and x+w-0.5 in drawing coordinates.
    scale = 1 << _SHIFT
    p1 = (round((x - 0.5) * scale), round((y - 0.5) * scale))
    p2 = (round((x + w - 0.5) * scale), round((y + h - 0.5) * scale))
    cv2.rectangle(image, p1, p2, color, thick, cv2.LINE_AA, _SHIFT)
    return True


def _put_label(image: np.ndarray, text: str, origin: tuple[int, int]) -> None:
    # A dark outline under white text stays legible on any background. Scale 0.5 suits a 640-px
    # wide frame; smaller frames get smaller text, down to 0.35 (about 8 px high, still
    # legible), and a line still too wide breaks at its double spaces onto the next lines, so
    # nothing is cut off at the right edge (a 176x144 clip lost most of its status line).
    font = cv2.FONT_HERSHEY_SIMPLEX
    width = image.shape[1]
    scale = float(np.clip(0.5 * width / 640, 0.35, 0.5))
    x, y = origin
    room = width - x - 3  # the outline is 1 px wider than the text on each side

    def fits(line: str) -> bool:
        return cv2.getTextSize(line, font, scale, 3)[0][0] <= room

    lines: list[str] = []
    for part in text.split("  "):
        if lines and fits(f"{lines[-1]}  {part}"):
            lines[-1] = f"{lines[-1]}  {part}"
        else:
            lines.append(part)
    while not all(fits(line) for line in lines) and scale > 0.25:  # one word wider than the room
        scale -= 0.05
    (_, line_height), baseline = cv2.getTextSize("Ag", font, scale, 3)
    for k, line in enumerate(lines):
        at = (x, y + k * (line_height + baseline + 2))
        cv2.putText(image, line, at, font, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(image, line, at, font, scale, (255, 255, 255), 1, cv2.LINE_AA)


def draw_annotations(
    frame: np.ndarray,
    index: int,
    box: np.ndarray | None = None,
    *,
    score: float | None = None,
    fps: float | None = None,
    ground_truth: np.ndarray | None = None,
    total: int | None = None,
    target_lost: bool = False,
) -> np.ndarray:
    """A copy of ``frame`` with the box (0-based), optional ground truth and a status line.

    ``target_lost``: the tracker reports the target lost; the box is drawn in
    :data:`LOST_COLOR` and the status line says so.

    ``index`` is the 0-based frame index; it is shown 1-based ("frame 1" is the first frame) so it
    matches the line numbers of a boxes file and OTB's ``img/0001.jpg`` names.
    """
    image = as_bgr(frame).copy()
    if ground_truth is not None:
        _draw_box(image, ground_truth, GT_COLOR, 1)
    color = LOST_COLOR if target_lost else BOX_COLOR
    outside = box is not None and not _draw_box(image, box, color, 2)
    parts = [f"frame {index + 1}" + (f"/{total}" if total else "")]
    if outside or target_lost:
        parts.append("target lost" if target_lost else "lost")
    if score is not None and np.isfinite(score):
        parts.append(f"score {score:.2f}")
    if fps is not None and np.isfinite(fps):
        parts.append(f"{fps:.1f} fps")
    _put_label(image, "  ".join(parts), (8, 20))
    return image


@dataclass(frozen=True)
class TargetMark:
    """One target's result on one frame, as drawn and written."""

    box: np.ndarray  # 0-based x, y, w, h
    score: float  # NaN where there is none (the first frame)
    lost: bool | None = None  # reported lost; None for trackers that do not report it


# BGR colours of targets 1, 2, ... when there are several (red stays the colour of "lost"):
# green first, as a single target's box.
TARGET_COLORS = (
    (0, 255, 0),
    (255, 160, 0),
    (255, 0, 255),
    (0, 255, 255),
    (255, 255, 0),
    (160, 80, 255),
    (0, 160, 255),
    (255, 255, 255),
)


def target_color(number: int) -> tuple[int, int, int]:
    """The colour of target ``number`` (1-based); the palette repeats after 8 targets."""
    return TARGET_COLORS[(number - 1) % len(TARGET_COLORS)]


def draw_targets(
    frame: np.ndarray,
    index: int,
    targets: Sequence[TargetMark],
    *,
    fps: float | None = None,
    total: int | None = None,
) -> np.ndarray:
    """A copy of ``frame`` with every target's box in its own colour, labelled with its number
    (1-based, the order of ``--init``) and score; one target is drawn as
    :func:`draw_annotations` draws it."""
    if len(targets) == 1:
        only = targets[0]
        return draw_annotations(
            frame,
            index,
            only.box,
            score=only.score,
            fps=fps,
            total=total,
            target_lost=bool(only.lost),
        )
    image = as_bgr(frame).copy()
    height, width = image.shape[:2]
    missing: list[str] = []
    for number, target in enumerate(targets, start=1):
        color = LOST_COLOR if target.lost else target_color(number)
        if not _draw_box(image, target.box, color, 2) or target.lost:
            missing.append(f"#{number}")
        x, y = np.asarray(target.box, dtype=np.float64)[:2]
        if np.isfinite(x) and np.isfinite(y):
            label = f"#{number}" + (f" {target.score:.2f}" if np.isfinite(target.score) else "")
            origin = (int(np.clip(x, 0, width - 60)), int(np.clip(y - 6, 34, height - 4)))
            _put_label(image, label, origin)
    parts = [f"frame {index + 1}" + (f"/{total}" if total else ""), f"{len(targets)} targets"]
    if missing:
        parts.append("lost " + " ".join(missing))
    if fps is not None and np.isfinite(fps):
        parts.append(f"{fps:.1f} fps")
    _put_label(image, "  ".join(parts), (8, 20))
    return image


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
