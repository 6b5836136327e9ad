"""What one tracking run writes, frame by frame.

Outputs are written as the run goes (:class:`TrackOutputs`): one boxes row and one scores row per
frame, each on disk before the next frame is tracked, so any end of the run (normal, Ctrl-C,
SIGTERM, a bad frame, even SIGKILL) leaves them valid for the frames tracked; the video is
finalised on every end but SIGKILL (:class:`runtime.cli.signals.StopSignals` holds Ctrl-C and
SIGTERM while one frame's outputs are written). Used by ``python -m runtime.track``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.atomic import LineFile
from runtime.io.overlay import TargetMark
from runtime.io.video_writer import AnnotatedVideoWriter, OutputError
from runtime.sequences import BoxesFileWriter


@dataclass(frozen=True)
class OutputPaths:
    """Where a run writes: the boxes file (``None``: none) and the annotated video (``None``:
    none). Several targets get one boxes file each (:func:`target_boxes_paths`)."""

    boxes: Path | None
    video: Path | None


def scores_path(boxes: Path) -> Path:
    """The per-frame side file next to a boxes file: ``<stem>_scores.csv``."""
    return boxes.with_name(f"{boxes.stem}_scores.csv")


SCORES_HEADER = "frame,score,lost"


def format_scores_row(index: int, score: float, lost: bool | None) -> str:
    """One ``frame,score,lost`` row: frame 1-based, score empty when NaN, lost 0/1 or empty."""
    lost_text = "" if lost is None else str(int(lost))
    return f"{index + 1},{'' if np.isnan(score) else f'{score:.4f}'},{lost_text}"


def target_boxes_paths(boxes: Path, count: int) -> list[Path]:
    """Where each target's boxes go: ``boxes`` itself for one target; for several,
    ``<stem>_t1<suffix>``, ``<stem>_t2<suffix>``, ... (1-based, the order of ``--init``)."""
    if count == 1:
        return [boxes]
    return [boxes.with_name(f"{boxes.stem}_t{k}{boxes.suffix}") for k in range(1, count + 1)]


@dataclass
class _TargetFiles:
    """One target's boxes file and its ``_scores.csv`` side file."""

    boxes: BoxesFileWriter
    scores: LineFile

    @classmethod
    def open(cls, path: Path) -> _TargetFiles:
        files = cls(BoxesFileWriter(path), LineFile(scores_path(path)))
        files.scores.write_line(SCORES_HEADER)
        return files


class TrackOutputs:
    """The run's outputs, written frame by frame as the boxes come.

    Per target, the boxes file and its ``_scores.csv`` side file get one row per frame, each on
    disk before the next frame is tracked, so a killed run (even SIGKILL) leaves them complete
    for the frames tracked (several targets: one pair of files each, :func:`target_boxes_paths`).
    The annotated video (every target in it) is finalised (playable) by :meth:`close`, which the
    CLI calls on a normal end, on Ctrl-C/SIGTERM and after a bad frame; a SIGKILL leaves only its
    ``.partial`` file, which for an MP4 (fragmented) plays up to its last second or so.
    """

    def __init__(
        self,
        paths: OutputPaths,
        fps: float | None,
        size: tuple[int, int],
        *,
        targets: int = 1,
        notify: Callable[[str], None],
    ) -> None:
        self._boxes_paths = [] if paths.boxes is None else target_boxes_paths(paths.boxes, targets)
        self.files: list[_TargetFiles] = []
        self.video: AnnotatedVideoWriter | None = None
        if paths.video is not None:
            self.video = AnnotatedVideoWriter(paths.video, fps, size, notify=notify)
        self.frames = 0  # frames whose outputs are all written

    def write(
        self,
        frame: np.ndarray,
        index: int,
        targets: Sequence[TargetMark],
        *,
        fps: float,
        total: int | None,
    ) -> np.ndarray | None:
        """Write one frame's outputs; returns the annotated image when a video is written."""
        image = None
        try:
            if self._boxes_paths:  # without --boxes there are no text files, only the video
                if not self.files:
                    # Opened with the first frame's results, so a run stopped before it (a slow
                    # model load, Ctrl-C) leaves earlier files of these names as they were.
                    self.files = [_TargetFiles.open(path) for path in self._boxes_paths]
                for files, target in zip(self.files, targets, strict=True):
                    files.boxes.write(target.box)
                    files.scores.write_line(format_scores_row(index, target.score, target.lost))
            if self.video is not None:
                image = self.video.write(frame, index, targets, fps=fps, total=total)
        except OutputError:
            raise
        except OSError as exc:  # a full disk, a file system gone read-only
            where = exc.filename or (self._boxes_paths or ["output"])[0]
            raise OutputError(f"cannot write {where}: {exc.strerror or exc}") from None
        self.frames += 1
        return image

    def _text_files(self) -> list[BoxesFileWriter | LineFile]:
        return [item for files in self.files for item in (files.boxes, files.scores)]

    def close(self) -> list[Path]:
        """Finish every output (sync the text files, finalise the video); returns their paths."""
        written: list[Path] = []
        errors: list[BaseException] = []
        for item in self._text_files():
            try:
                item.close()
                written.append(item.path)
            except OSError as exc:
                errors.append(exc)
        if self.video is not None:
            try:
                written.append(self.video.close())
            except OSError as exc:
                errors.append(exc)
        if errors:
            raise OutputError(f"cannot finish the outputs: {errors[0]}")
        return written

    def discard(self) -> None:
        """Remove every output (nothing was tracked, so nothing is worth keeping)."""
        for item in self._text_files():
            item.close()
            item.path.unlink(missing_ok=True)
        if self.video is not None:
            self.video.abort()
