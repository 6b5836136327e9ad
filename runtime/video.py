"""Video input and output: frame sources (file, image folder, camera) and an annotated writer.

Every frame a source yields is an ``H x W x 3`` uint8 **BGR** array (what OpenCV decodes), as
:mod:`runtime.tracker_api` expects. Boxes handed to the writer are the project's **0-based**
``x, y, w, h`` floats (see :mod:`runtime.boxes`); the writer converts to OpenCV's pixel-centre
drawing coordinates itself.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar

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
    """

    name: str
    fps: float | None
    frame_count: int | None
    size: tuple[int, int]  # (width, height) of the first frame
    first_frame: np.ndarray

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


class CaptureSource(FrameSource):
    """A video file or a camera, read through ``cv2.VideoCapture``."""

    def __init__(self, target: str | int, name: str, *, is_camera: bool) -> None:
        self.target = target
        self.name = name
        self.is_camera = is_camera
        self._cap: cv2.VideoCapture | None = None
        self._passes = 0
        self.first_frame = self._open()
        self.size = _frame_size(self.first_frame)
        assert self._cap is not None
        fps = float(self._cap.get(cv2.CAP_PROP_FPS))
        self.fps = fps if np.isfinite(fps) and fps > 0 else None
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)) if not is_camera else 0
        self.frame_count = count if count > 0 else None

    def _open(self) -> np.ndarray:
        """Open the capture and decode its first frame, raising InputError if either fails."""
        self.close()
        if self.is_camera:
            cap = cv2.VideoCapture(int(self.target))
            if not cap.isOpened():
                raise InputError(f"cannot open camera {self.target} (no such device or it is busy)")
        else:
            # Ask for FFmpeg by name: CAP_ANY would also try the image-sequence backend, which
            # reads names such as "clip%03d.mp4" as patterns and fails in confusing ways.
            cv2_api = cv2.CAP_FFMPEG if cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG) else 0
            cap = cv2.VideoCapture(str(self.target), cv2_api)
            if not cap.isOpened():
                raise InputError(
                    f"cannot read video {self.target}: OpenCV cannot open it "
                    "(not a video, or a codec this OpenCV build lacks)"
                )
        ok, frame = cap.read()
        if not ok or frame is None:
            cap.release()
            what = f"camera {self.target}" if self.is_camera else f"video {self.target}"
            raise InputError(f"cannot read {what}: its first frame cannot be decoded")
        self._cap = cap
        return as_bgr(frame)

    def __iter__(self) -> Iterator[np.ndarray]:
        self._passes += 1
        if self._passes > 1:
            if self.is_camera:
                raise RuntimeError("a camera stream can be iterated only once")
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


def _folder_name(folder: Path) -> str:
    """An OTB sequence's frames live in ``<Name>/img``: name the source ``<Name>``, not ``img``."""
    folder = folder.resolve()
    return folder.parent.name if folder.name == "img" else folder.name


def open_source(spec: str | os.PathLike[str]) -> FrameSource:
    """Open a video file, an image folder (or OTB sequence folder with ``img/``), or a camera.

    A camera is given by its index as a string of digits (``"0"``); a path of that name that
    exists wins. Raises :class:`InputError` with a clear reason when the input cannot be used.
    """
    text = os.fspath(spec)
    path = Path(text).expanduser()
    if text.strip().isdigit() and not path.exists():
        return CaptureSource(int(text), f"camera{int(text)}", is_camera=True)
    if not path.exists():
        raise InputError(f"no such file or folder: {path}")
    if path.is_dir():
        img_dir = path / "img" if (path / "img").is_dir() else path
        frames = list_frames(img_dir)
        if not frames:
            raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {img_dir}")
        return ImageFolderSource(frames, _folder_name(path))
    if not path.is_file():
        raise InputError(f"not a regular file or folder: {path}")
    return CaptureSource(str(path), path.stem, is_camera=False)


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


class AtomicVideoWriter(_FinishOnExit):
    """Write frames to a video that appears under its final name only once it is complete.

    Frames go to ``<stem>.partial<suffix>`` and are renamed on :meth:`close`, so an interrupted
    run never leaves a file that looks finished. The codec is ``mp4v``; if this OpenCV build
    cannot open that for the path, it falls back to ``MJPG`` in an ``.avi`` next to it, says so
    through ``notify``, and :attr:`path` is the name actually written.
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
        self.path, self.fourcc, self._writer = self._open(requested, notify)

    def _open(
        self, requested: Path, notify: Callable[[str], None]
    ) -> tuple[Path, str, cv2.VideoWriter]:
        api = cv2.CAP_FFMPEG if cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG) else 0
        for fourcc, final in (("mp4v", requested), ("MJPG", requested.with_suffix(".avi"))):
            tmp = self._partial_name(final)
            writer = cv2.VideoWriter(
                str(tmp), api, cv2.VideoWriter_fourcc(*fourcc), self.fps, self.size
            )
            if writer.isOpened():
                if final != requested:
                    notify(
                        f"note: cannot write mp4v video to {requested}; "
                        f"writing MJPG to {final} instead"
                    )
                return final, fourcc, writer
            writer.release()
            tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write video {requested}: OpenCV opened neither mp4v nor MJPG")

    @staticmethod
    def _partial_name(final: Path) -> Path:
        # Keep the real suffix last: FFmpeg picks the container from it.
        return final.with_name(f"{final.stem}.partial{final.suffix}")

    @property
    def partial_path(self) -> Path:
        return self._partial_name(self.path)

    def write(self, frame: np.ndarray) -> None:
        if self._writer is None:
            raise RuntimeError(f"video writer for {self.path} is already closed")
        frame = as_bgr(frame)
        if _frame_size(frame) != self.size:
            # OpenCV silently drops frames of the wrong size; resize rather than lose them.
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        self._writer.write(frame)
        self.frames_written += 1

    def close(self) -> Path:
        """Finish the file and give it its final name; returns that name (idempotent)."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            self.partial_path.replace(self.path)
        return self.path

    def abort(self) -> None:
        """Stop and delete the partial file (used when the run failed)."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
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

    Written atomically like :class:`AtomicVideoWriter` (``mp4v``, falling back to ``MJPG``/.avi).
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
