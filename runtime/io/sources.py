"""Open any input as a :class:`~runtime.io.frames.FrameSource`: a video file, an image folder
(or OTB sequence folder with ``img/``), a camera or a stream URL (:func:`open_source`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from runtime.io.capture import DEFAULT_TIMEOUT, CaptureSource
from runtime.io.frames import (
    FrameSizeError,
    FrameSource,
    InputError,
    UnreadableFrameError,
    as_bgr,
    frame_size,
)
from runtime.io.live import LiveSource
from runtime.io.source_spec import SourceKind, parse_source
from runtime.sequences import IMAGE_SUFFIXES, list_frames


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
        self.size = frame_size(self.first_frame)

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
            size = frame_size(frame)
            if size != self.size:
                raise FrameSizeError(
                    f"frame {index + 1} ({path}) is {size[0]}x{size[1]} but the first frame is "
                    f"{self.size[0]}x{self.size[1]}: the boxes would be in other coordinates",
                    index=index,
                    path=path,
                )
            yield frame


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
