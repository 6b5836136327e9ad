"""Stage 7 of a run: the tracking loop. Every frame is tracked, written (boxes, scores, video) and
shown before the next is read; what the run measured and how it ended is a :class:`RunResult`.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from runtime.cli import console
from runtime.cli.console import Notify
from runtime.cli.display import Display
from runtime.cli.request import UsageError
from runtime.cli.signals import StopSignals
from runtime.io.frames import BadFrameError, FrameSource
from runtime.io.outputs import TrackOutputs
from runtime.io.overlay import TargetMark, draw_targets
from runtime.io.viewer import Key
from runtime.multi_target import MultiTracker

LIVE_FPS_WINDOW = 30  # frames averaged for the progress bar's live FPS


@dataclass(frozen=True, eq=False)
class RunResult:
    """What one run tracked and measured, and how it ended. ``boxes`` holds exactly the frames
    the outputs hold."""

    boxes: tuple[np.ndarray, ...] = ()  # per frame, (targets, 4), 0-based
    scores: tuple[np.ndarray, ...] = ()  # per frame and target (NaN: frame 1)
    lost: tuple[tuple[bool, ...], ...] | None = None  # per frame and target, where reported
    init_seconds: float = 0.0
    update_seconds: tuple[float, ...] = ()
    redrawn_at: tuple[int, ...] = ()  # 0-based frames the user re-drew on
    interrupted: bool = False  # Ctrl-C, SIGINT or SIGTERM
    bad_frame: BadFrameError | None = None  # an image folder's frame that stopped the run
    short_read: tuple[int, int] | None = None  # (frames read, frames the video declares)
    # Live sources only (FrameSource.live): frames skipped to stay on the newest, why the stream
    # stopped early, and per update frame the seconds from its arrival to its boxes.
    dropped_frames: int | None = None
    stream_end: str | None = None
    latency_seconds: tuple[float, ...] = ()

    @property
    def frames(self) -> int:
        return len(self.boxes)


@dataclass
class _Tally:
    """What the loop records as it goes; frozen into a :class:`RunResult` at its end."""

    boxes: list[np.ndarray] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)
    lost: list[tuple[bool, ...]] | None = None
    init_seconds: float = 0.0
    update_seconds: list[float] = field(default_factory=list)
    redrawn_at: list[int] = field(default_factory=list)
    latency_seconds: list[float] = field(default_factory=list)

    def result(
        self,
        source: FrameSource,
        *,
        interrupted: bool,
        bad_frame: BadFrameError | None,
        short_read: tuple[int, int] | None,
    ) -> RunResult:
        """The run's result, with how it ended."""
        return RunResult(
            boxes=tuple(self.boxes),
            scores=tuple(self.scores),
            lost=None if self.lost is None else tuple(self.lost),
            init_seconds=self.init_seconds,
            update_seconds=tuple(self.update_seconds),
            redrawn_at=tuple(self.redrawn_at),
            interrupted=interrupted,
            bad_frame=bad_frame,
            short_read=short_read,
            dropped_frames=source.dropped_frames if source.live else None,
            stream_end=source.end_reason if source.live else None,
            latency_seconds=tuple(self.latency_seconds),
        )


def _live_fps(recent: deque[float]) -> float:
    return len(recent) / sum(recent) if recent and sum(recent) > 0 else float("nan")


def _redraw(
    group: MultiTracker, display: Display, frame: np.ndarray, index: int, warn: Notify
) -> bool:
    """Let the user draw the targets again on ``frame`` and start over from it; whether it did
    (the same number of boxes as targets, each usable; otherwise tracking goes on unchanged)."""
    count = len(group.targets)
    try:
        boxes = display.pick_boxes(frame, f"frame {index + 1}: draw the {count} box(es) again")
    except UsageError as exc:
        warn(f"warning: {exc}; tracking on unchanged")
        return False
    if not boxes:
        return False
    if len(boxes) != count:
        warn(f"warning: {len(boxes)} boxes drawn for {count} targets; tracking on unchanged")
        return False
    try:
        group.init(frame, boxes)
    except ValueError as exc:
        warn(f"warning: cannot start over from the boxes drawn ({exc}); tracking on unchanged")
        return False
    return True


def track_source(
    group: MultiTracker,
    source: FrameSource,
    init_boxes: Sequence[np.ndarray],
    *,
    max_frames: int | None,
    outputs: TrackOutputs | None,
    display: Display,
    quiet: bool,
    stop: StopSignals | None = None,
    warn: Notify = console.warn,
) -> RunResult:
    """Run the trackers over the source, writing each frame's outputs as it is tracked.

    Only the trackers' init/update count as tracking time. Ctrl-C (or SIGTERM, through
    ``stop``) ends the loop with ``interrupted`` set; a bad frame of an image folder ends it with
    ``bad_frame`` set; a video that ends before the frame count it declares sets ``short_read``;
    q or Esc in the window ends it as a normal end. In every case the outputs hold exactly the
    frames in ``boxes``. r in the window re-draws the boxes: the trackers start over from that
    frame (its own row keeps the boxes tracked on it).
    """
    from tqdm import tqdm

    stop = stop or StopSignals()  # not entered: held() only defers signals it was given
    total = source.frame_count
    if max_frames is not None:
        total = min(total, max_frames) if total is not None else max_frames
    tally = _Tally()
    interrupted = False
    bad_frame: BadFrameError | None = None
    short_read: tuple[int, int] | None = None
    recent: deque[float] = deque(maxlen=LIVE_FPS_WINDOW)
    bar = tqdm(total=total, disable=quiet, unit="frame", file=sys.stderr, dynamic_ncols=True)
    try:
        for index, frame in enumerate(source):
            if max_frames is not None and index >= max_frames:
                break
            start = time.perf_counter()
            if index == 0:
                group.init(frame, [box.copy() for box in init_boxes])
                found = [(box.copy(), float("nan")) for box in init_boxes]
                init_seconds = time.perf_counter() - start
            else:
                found = group.update(frame)
                done = time.perf_counter()
                elapsed = done - start
                arrived = source.last_arrival if source.live else None
            lost = group.lost
            if lost is not None and index == 0:
                lost = [False] * len(found)
            marks = [
                TargetMark(
                    np.asarray(box, dtype=np.float64).reshape(4),
                    float(score),
                    None if lost is None else lost[k],
                )
                for k, (box, score) in enumerate(found)
            ]
            fps = float("nan")
            image = None
            with stop.held():  # this frame's results go everywhere, or nowhere
                if index == 0:
                    tally.init_seconds = init_seconds
                else:
                    tally.update_seconds.append(elapsed)
                    recent.append(elapsed)
                    if arrived is not None:
                        tally.latency_seconds.append(done - arrived)
                fps = _live_fps(recent)
                tally.boxes.append(np.stack([mark.box for mark in marks]))
                tally.scores.append(np.array([mark.score for mark in marks]))
                if lost is not None:
                    tally.lost = tally.lost if tally.lost is not None else []
                    tally.lost.append(tuple(lost))
                if outputs is not None:
                    image = outputs.write(frame, index, marks, fps=fps, total=total)
            if display.enabled:
                if image is None:
                    image = draw_targets(frame, index, marks, fps=fps, total=total)
                key = display.show(image)
                if key is Key.QUIT:
                    break
                if key is Key.REDRAW and _redraw(group, display, frame, index, warn):
                    tally.redrawn_at.append(index)
            if recent:  # refresh=False: the bar redraws at its own pace, not per frame
                bar.set_postfix_str(f"{fps:.1f} fps", refresh=False)
            bar.update(1)
        else:
            declared = source.frame_count
            if declared is not None and len(tally.boxes) < declared:
                short_read = (len(tally.boxes), declared)
    except BadFrameError as exc:
        # Keep what was tracked before it: the outputs are complete for those frames.
        bad_frame = exc
    except KeyboardInterrupt:
        # Keep what was tracked so far: the outputs are complete for those frames.
        interrupted = True
    finally:
        bar.close()
    return tally.result(source, interrupted=interrupted, bad_frame=bad_frame, short_read=short_read)
