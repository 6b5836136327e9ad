"""Stages 5 and 8 of a run: where the outputs go (checked before tracking starts), and what
becomes of them when tracking ends, however it ends.

Without ``--boxes`` or ``--output`` both are written under :data:`OUTPUT_DIR`, named after the
input; with either, only what was asked for. The files themselves are written frame by frame by
:class:`runtime.io.outputs.TrackOutputs`: a run that fails keeps them for the frames tracked (the
video finalised so it plays), and a run that tracked nothing leaves nothing behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from runtime.cli.console import Notify, warn
from runtime.cli.request import TrackRequest, UsageError
from runtime.cli.signals import StopSignals
from runtime.io.frames import FrameSource
from runtime.io.outputs import OutputPaths, TrackOutputs, scores_path, target_boxes_paths
from runtime.io.video_writer import OutputError

OUTPUT_DIR = Path("outputs")  # relative to the current directory, like any CLI's outputs


def _check_writable(path: Path) -> None:
    """UsageError unless ``path`` can be created or overwritten (its folder is made if needed)."""
    if path.is_dir():
        raise UsageError(f"output {path} is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the folder for {path}: {exc.strerror or exc}") from None
    # An existing file without any write bit was protected on purpose (root could write it).
    if path.exists() and (not os.access(path, os.W_OK) or not path.stat().st_mode & 0o222):
        raise UsageError(f"output {path} is read-only")
    try:  # the real test: can a file be created in that folder (permissions, read-only mount)?
        handle, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=path.parent)
    except OSError as exc:
        raise UsageError(f"cannot write to {path.parent}: {exc.strerror or exc}") from None
    os.close(handle)
    os.unlink(probe)


def _check_outputs(outputs: OutputPaths, targets: int) -> None:
    """Fail before tracking, not after it, when an output cannot be written where asked."""
    paths = []
    if outputs.boxes is not None:
        for boxes in target_boxes_paths(outputs.boxes, targets):
            paths += [boxes, scores_path(boxes)]
    if outputs.video is not None:
        if outputs.video.resolve() in {path.resolve() for path in paths}:
            raise UsageError(f"--boxes and --output are the same file: {outputs.video}")
        paths.append(outputs.video)
    for path in paths:
        _check_writable(path)


def plan_outputs(request: TrackRequest, stem: str, targets: int) -> OutputPaths:
    """The outputs' paths (defaults named after the input, ``stem``), each checked writable."""
    if request.boxes is None and request.output is None:
        paths = OutputPaths(OUTPUT_DIR / f"{stem}_boxes.txt", OUTPUT_DIR / f"{stem}_tracked.mp4")
    else:
        paths = OutputPaths(request.boxes, request.output)
    _check_outputs(paths, targets)
    return paths


@contextmanager
def opened_outputs(
    paths: OutputPaths, source: FrameSource, targets: int, notify: Notify, stop: StopSignals
) -> Iterator[TrackOutputs]:
    """The outputs, open for the tracking loop. An error inside (a tracker's, a failing output)
    keeps what was tracked: the files are valid for those frames and the video is finalised so it
    plays; then the error goes on up, to be reported."""
    outputs = TrackOutputs(paths, source.fps, source.size, targets=targets, notify=notify)
    try:
        yield outputs
    except BaseException:
        with stop.held(raise_pending=False):
            if outputs.frames:
                warn(f"note: outputs kept for the {outputs.frames} frames tracked")
                # The error that stopped the run is the one to report.
                with suppress(OutputError):
                    outputs.close()
            else:
                outputs.discard()
        raise


def finish_outputs(
    outputs: TrackOutputs, frames: int, stop: StopSignals
) -> tuple[Path, ...] | None:
    """Finalise the outputs of a run that tracked ``frames`` frames; the paths written, or
    ``None`` when it was interrupted before the first frame (then nothing is left behind)."""
    with stop.held(raise_pending=False):  # a second Ctrl-C cannot spoil the finalisation
        if not frames:
            outputs.discard()
            warn("interrupted before the first frame; nothing written")
            return None
        return tuple(outputs.close())
