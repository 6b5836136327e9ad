"""Track objects through a video: ``python -m runtime.track [INPUT] [--init x,y,w,h] ...``.

One target per ``--init`` (repeatable), each with its own tracker (:mod:`runtime.multi_target`;
one target is a group of one, so there is one loop); with ``--show`` the boxes may be drawn in a
window instead (:mod:`runtime.io.viewer`) and re-drawn mid-run.

Boundary conventions: ``--init`` and the ``--boxes`` file are **1-based** ``x, y, w, h`` (OTB, like
``videos.json``); they are converted to the project's 0-based boxes here and nowhere else.

Mistakes in what the user gave (missing or unreadable input, a bad box, an unknown tracker, missing
weights, an output path that cannot be written) end with one line on stderr that starts with
``error: `` and exit code 2, no traceback; all of them are found before tracking starts.

Outputs are written as the run goes (:mod:`runtime.io.outputs`), so a stopped run leaves them
valid for the frames tracked. A bad image mid-folder stops the run there with exit code
:data:`EXIT_INCOMPLETE` (3): the outputs are valid but do not cover the input, which a script must
be able to tell from success; a video shorter than it declares only warns (exit 0), because a
container's frame count is a claim that can be off.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import cv2
import numpy as np

from runtime.backends.tensorrt_backend import TensorRTUnavailable
from runtime.boxes import from_otb, small_box_message, validate_init_box
from runtime.cli.program import program_name
from runtime.cli.request import (
    DEFAULT_TRACKER,
    FALLBACK_TRACKER,
    TrackerChoice,
    TrackRequest,
    UsageError,
)
from runtime.cli.signals import StopSignals
from runtime.io.demo_clip import synthesize_clip
from runtime.io.outputs import (
    OutputPaths,
    TrackOutputs,
    scores_path,
    target_boxes_paths,
)
from runtime.io.viewer import Key, OpenCVWindow, Window, window_unavailable
from runtime.multi_target import MultiTracker
from runtime.opencv_peers import PEER_NAMES
from runtime.paths import data_root
from runtime.registry import TRACKER_NAMES, create_tracker, is_opencv_peer
from runtime.sequences import GROUND_TRUTH_FILE, read_boxes_file
from runtime.threads import default_threads, set_threads
from runtime.tracker_api import ReportsRunStats, RunsOnBackend, Tracker
from runtime.video import (
    DEFAULT_TIMEOUT,
    BadFrameError,
    FrameSizeError,
    FrameSource,
    InputError,
    OutputError,
    SourceKind,
    TargetMark,
    draw_targets,
    open_source,
    parse_source,
    quiet_opencv_logs,
)

DEFAULT_VIDEO = "pysot_bag.avi"
OUTPUT_DIR = Path("outputs")  # relative to the current directory, like any CLI's outputs
DEMO_CLIP = OUTPUT_DIR / "demo_clip.mp4"
LIVE_FPS_WINDOW = 30  # frames averaged for the progress bar's live FPS
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # Ctrl-C, SIGINT or SIGTERM: the outputs cover the frames tracked
EXIT_INCOMPLETE = 3  # an image of a folder was unusable mid-way: outputs cover the frames before

TrackerFactory = Callable[..., Tracker]
"""Builds a tracker from its name and the data folder (``None``: the tracker's own default)."""


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


class _Parser(argparse.ArgumentParser):
    # argparse prints usage and exits by itself; raise instead so main owns the one-line format.
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=program_name("python -m runtime.track"),
        description=(
            "Track one or more objects through a video, image folder or camera, starting from "
            "their boxes in the first frame. Writes a boxes file per target (1-based x,y,w,h per "
            "frame) and an annotated video."
        ),
    )
    parser.add_argument(
        "input",
        nargs="?",
        help=(
            "video file, image folder (or OTB sequence folder with img/), camera index such as 0, "
            "or stream URL (rtsp://, http(s)://, udp://, rtmp://, srt://...; default: "
            f"<data>/videos/{DEFAULT_VIDEO}, or a synthesized demo clip if absent)"
        ),
    )
    parser.add_argument(
        "--init",
        metavar="X,Y,W,H",
        action="append",
        default=[],
        help=(
            "first-frame box, 1-based pixels (OTB convention, as in videos.json); needed unless "
            "the input is listed in videos.json or is an OTB folder with groundtruth_rect.txt, "
            "or --show lets you draw it. Repeat it to track several targets at once (one "
            "boxes file each: <boxes stem>_t1.txt, _t2.txt, ...). Write --init=-5,10,40,40 "
            "when x is negative."
        ),
    )
    parser.add_argument(
        "--tracker",
        default=None,
        help=(
            f"tracker name, one of ours: {', '.join(TRACKER_NAMES)} (default: {DEFAULT_TRACKER}; "
            f"without the shared pretrained weights, {FALLBACK_TRACKER}); or, to compare "
            f"against, OpenCV peers (baselines, not ours): {', '.join(PEER_NAMES)}"
        ),
    )
    parser.add_argument(
        "--meta",
        type=Path,
        metavar="CKPT",
        help="MetaRTT checkpoint written by train/meta.py (OUT/metartt.pt); default for "
        "metartt: the one the project ships (runtime/checkpoints/metartt.pt)",
    )
    parser.add_argument(
        "--prune",
        nargs="?",
        const="shipped",
        metavar="CKPT|fit",
        help="MetaRTT one-shot channel pruning: masks predicted at the first frame by a pruning "
        "network (train/prune.py's OUT/prune.pt; without a value, the shipped one for the "
        "shipped meta checkpoint), or 'fit' (masks fitted on the first frame alone); with "
        "--tracker metartt-nano, the head's pruning network (train/nanotrack_prune.py's "
        "OUT/nanotrack_prune.pt; without a value, the shipped one)",
    )
    parser.add_argument(
        "--boxes",
        type=Path,
        help="write 1-based x,y,w,h boxes here, one row per frame including the first",
    )
    parser.add_argument("--output", type=Path, help="write the annotated video here (.mp4)")
    parser.add_argument(
        "--show",
        action="store_true",
        help="show the tracked frames in a window, with FPS, score and lost state; without "
        "--init (a camera, say) draw the first box(es) with the mouse first; keys: r re-draws "
        "the boxes and starts over from that frame, q or Esc stops",
    )
    parser.add_argument(
        "--live",
        action="store_true",
        help="track the newest frame, dropping the ones the tracker cannot keep up with, so "
        "the boxes stay current (the summary counts the frames dropped and the latency); "
        "always so for cameras and rtsp/rtmp/udp/rtp/srt/tcp streams; for an http(s) URL "
        "(an IP camera's MJPEG) or a file (played at its frame rate, as a camera would)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"how long a stream may take to open, or to send its next frame, before the run "
        f"gives up on it (default: {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    parser.add_argument(
        "--data",
        type=Path,
        metavar="DIR",
        help="shared data folder (default: $TRACKER_DATA or ../shared/data)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="CPU threads for torch and OpenCV (default: the cores not already busy, from the "
        "load average; more threads than free cores makes every frame wait, many times slower)",
    )
    parser.add_argument(
        "--backend",
        choices=("auto", "torch", "onnxruntime", "tensorrt"),
        default=None,
        help="where the fixed network runs (default: auto; nanotrack: TensorRT if usable and "
        "exported, else ONNX Runtime from --export-dir or from graphs it exports on first use; "
        "the others: TensorRT if usable and exported, else ONNX Runtime if --export-dir is "
        "given, else torch)",
    )
    parser.add_argument(
        "--export-dir",
        type=Path,
        default=None,
        help="folder written by export/build_engine.py (needed by onnxruntime/tensorrt)",
    )
    parser.add_argument(
        "--precision",
        choices=("fp32", "fp16", "int8"),
        default=None,
        help="backbone arithmetic: fp32 (default); fp16 on a GPU only; int8 with an export "
        "folder made by build_engine.py --precision int8",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar, notes or summary")
    parser.epilog = (
        "With neither --boxes nor --output, both are written to outputs/<input>_boxes.txt and "
        "outputs/<input>_tracked.mp4; with either one given, only what was asked for is written. "
        "Output paths are checked before tracking starts. The boxes file and its _scores.csv "
        "side file grow by one row per frame as it is tracked, so a stopped or killed run "
        "leaves them valid for the frames tracked; Ctrl-C and SIGTERM also finalise the video. "
        "An image of a folder that cannot be read, or whose size differs from the first "
        "frame's, stops the run there (frames are not skipped: row N stays frame N), keeping "
        "the outputs for the frames before it. A video that ends before the frame count it "
        "declares is tracked to its end, with a warning. Exit codes: 0 done; 2 bad arguments "
        "or input, nothing tracked; 3 stopped at a bad image, outputs cover the frames before "
        "it; 130 interrupted (Ctrl-C, SIGINT, SIGTERM), outputs cover the frames tracked."
    )
    return parser


# ------------------------------------------------------------------------------ input and boxes


def parse_box(text: str) -> np.ndarray:
    """``"x,y,w,h"`` (1-based, as the user wrote it) to four finite floats, or UsageError."""
    hint = "--init needs four numbers x,y,w,h (1-based pixels), e.g. --init 316,140,113,118"
    parts = [p.strip() for p in text.replace(" ", ",").split(",") if p.strip()]
    if len(parts) != 4:
        raise UsageError(f"{hint}; got {text!r}")
    try:
        values = np.array([float(p) for p in parts], dtype=np.float64)
    except ValueError:
        raise UsageError(f"{hint}; got {text!r}") from None
    if not np.all(np.isfinite(values)):
        raise UsageError(f"{hint}; got {text!r} (not finite)")
    return values


def _known_video_box(video: Path, data: Path) -> np.ndarray | None:
    """The 1-based first-frame box videos.json gives for a file of this name, if any."""
    listing = data / "videos" / "videos.json"
    if not listing.is_file():
        return None
    try:
        entries = json.loads(listing.read_text())
    except ValueError as exc:
        raise UsageError(f"cannot read {listing}: {exc}") from None
    for entry in entries:
        if entry.get("file") == video.name and "init_box" in entry:
            return np.asarray(entry["init_box"], dtype=np.float64)
    return None


def _sequence_first_box(folder: Path) -> np.ndarray | None:
    """The first ground-truth row (1-based) of an OTB sequence folder, if it has one."""
    gt = folder / GROUND_TRUTH_FILE
    if not gt.is_file():
        return None
    try:
        rows = read_boxes_file(gt)
    except ValueError as exc:
        raise UsageError(f"cannot read the first box: {exc}") from None
    if len(rows) == 0 or np.isnan(rows[0]).any():
        raise UsageError(f"{gt} has no usable first row; give the first box with --init")
    return rows[0]


DRAWN = "the window"  # box_origin of boxes the user draws (--show without --init)


@dataclass
class ResolvedInput:
    spec: str  # what open_source gets
    init_boxes_1based: list[np.ndarray]  # one per target; empty: to be drawn (--show)
    box_origin: str  # where the boxes came from, for the log


def resolve_input(
    input_arg: str | None,
    init_args: Sequence[str],
    data: Path,
    notify: Callable[[str], None],
    *,
    can_draw: bool = False,
) -> ResolvedInput:
    """Decide what to open and which first-frame boxes to use (still 1-based).

    ``can_draw`` (``--show``): where no box is given or known, leave the boxes to be drawn on the
    first frame instead of refusing.
    """
    given = [parse_box(text) for text in init_args]
    if input_arg is None:
        default = data / "videos" / DEFAULT_VIDEO
        if default.is_file():
            if given:
                return ResolvedInput(str(default), given, "--init")
            box = _known_video_box(default, data)
            if box is None:
                raise UsageError(f"no first-frame box for {default} in videos.json; give --init")
            return ResolvedInput(str(default), [box], "videos.json")
        path, demo_box = synthesize_clip(DEMO_CLIP)
        notify(f"no video at {default}: tracking a synthesized demo clip, {path}")
        if given:
            return ResolvedInput(str(path), given, "--init")
        return ResolvedInput(str(path), [demo_box], "demo clip")
    if given:
        return ResolvedInput(input_arg, given, "--init")
    source = parse_source(input_arg)  # camera, stream URL or path: decided there alone
    if source.kind is SourceKind.PATH:
        path = source.path
        assert path is not None
        box: np.ndarray | None = None
        origin = ""
        if path.is_file():
            box, origin = _known_video_box(path, data), "videos.json"
        elif path.is_dir():
            box, origin = _sequence_first_box(path), GROUND_TRUTH_FILE
        if box is not None:
            return ResolvedInput(input_arg, [box], origin)
        if not path.exists():
            raise InputError(f"no such file or folder: {path}")
    if can_draw:
        return ResolvedInput(input_arg, [], DRAWN)
    raise UsageError(
        f"no known first-frame box for {input_arg}; give one with --init x,y,w,h (1-based), "
        f"or draw it with --show"
    )


# ---------------------------------------------------------------------------------- the loop


def output_paths(boxes: Path | None, video: Path | None, stem: str) -> OutputPaths:
    if boxes is None and video is None:
        return OutputPaths(OUTPUT_DIR / f"{stem}_boxes.txt", OUTPUT_DIR / f"{stem}_tracked.mp4")
    return OutputPaths(boxes, video)


class Display:
    """The ``--show`` window, where one can be opened; otherwise nothing (one warning)."""

    def __init__(self, window: Window | None, warn: Callable[[str], None]) -> None:
        self.window = window
        self._warn = warn

    @property
    def enabled(self) -> bool:
        return self.window is not None

    def show(self, image: np.ndarray) -> Key:
        if self.window is None:
            return Key.NONE
        try:
            return self.window.show(image)
        except cv2.error as exc:  # the window system went away mid-run
            self.window = None
            self._warn(f"warning: --show: cannot show frames any more ({exc.err}); tracking on")
            return Key.NONE

    def pick_boxes(self, image: np.ndarray, prompt: str) -> list[np.ndarray]:
        """Boxes drawn on ``image`` (0-based), or UsageError when none can be drawn here."""
        if self.window is None:
            raise UsageError("--show: no window to draw the box in")
        try:
            return self.window.pick_boxes(image, prompt)
        except cv2.error as exc:
            raise UsageError(
                f"--show: cannot open a window to draw the box in ({exc.err})"
            ) from None

    def close(self) -> None:
        if self.window is not None:
            with suppress(cv2.error):
                self.window.close()


def open_display(
    show: bool, must_draw: bool, warn: Callable[[str], None], window: Window | None
) -> Display:
    """The ``--show`` display: ``window`` if given (tests), else OpenCV's where it can open.

    Without a display or a GUI build of OpenCV, a run that needs boxes drawn (``must_draw``) ends
    with one ``error:`` line; any other run tracks on after one warning.
    """
    if not show:
        return Display(None, warn)
    if window is None:
        reason = window_unavailable()
        if reason is not None:
            if must_draw:
                raise UsageError(
                    f"--show: cannot open a window to draw the first box: {reason}; give the "
                    f"box with --init x,y,w,h (1-based) instead"
                )
            warn(f"warning: --show: {reason}; not showing frames")
            return Display(None, warn)
        window = OpenCVWindow()
    return Display(window, warn)


@dataclass
class RunResult:
    boxes: list[np.ndarray] = field(default_factory=list)  # per frame, (targets, 4), 0-based
    scores: list[np.ndarray] = field(default_factory=list)  # per frame and target (NaN: frame 1)
    lost: list[list[bool]] | None = None  # per frame and target, where trackers report it
    init_seconds: float = 0.0
    update_seconds: list[float] = field(default_factory=list)
    redrawn_at: list[int] = field(default_factory=list)  # 0-based frames the user re-drew on
    interrupted: bool = False  # Ctrl-C, SIGINT or SIGTERM
    bad_frame: BadFrameError | None = None  # an image folder's frame that stopped the run
    short_read: tuple[int, int] | None = None  # (frames read, frames the video declares)
    # Live sources only (FrameSource.live): frames skipped to stay on the newest, why the stream
    # stopped early, and per update frame the seconds from its arrival to its boxes.
    dropped_frames: int | None = None
    stream_end: str | None = None
    latency_seconds: list[float] = field(default_factory=list)


def _live_fps(recent: deque[float]) -> float:
    return len(recent) / sum(recent) if recent and sum(recent) > 0 else float("nan")


def _redraw(
    group: MultiTracker,
    display: Display,
    frame: np.ndarray,
    index: int,
    warn: Callable[[str], None],
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
    warn: Callable[[str], None] = _stderr,
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
    result = RunResult()
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
                    result.init_seconds = init_seconds
                else:
                    result.update_seconds.append(elapsed)
                    recent.append(elapsed)
                    if arrived is not None:
                        result.latency_seconds.append(done - arrived)
                fps = _live_fps(recent)
                result.boxes.append(np.stack([mark.box for mark in marks]))
                result.scores.append(np.array([mark.score for mark in marks]))
                if lost is not None:
                    result.lost = result.lost if result.lost is not None else []
                    result.lost.append(list(lost))
                if outputs is not None:
                    image = outputs.write(frame, index, marks, fps=fps, total=total)
            if display.enabled:
                if image is None:
                    image = draw_targets(frame, index, marks, fps=fps, total=total)
                key = display.show(image)
                if key is Key.QUIT:
                    break
                if key is Key.REDRAW and _redraw(group, display, frame, index, warn):
                    result.redrawn_at.append(index)
            if recent:  # refresh=False: the bar redraws at its own pace, not per frame
                bar.set_postfix_str(f"{fps:.1f} fps", refresh=False)
            bar.update(1)
        else:
            declared = source.frame_count
            if declared is not None and len(result.boxes) < declared:
                result.short_read = (len(result.boxes), declared)
    except BadFrameError as exc:
        # Keep what was tracked before it: the outputs are complete for those frames.
        result.bad_frame = exc
    except KeyboardInterrupt:
        # Keep what was tracked so far: the outputs are complete for those frames.
        result.interrupted = True
    finally:
        bar.close()
        if source.live:
            result.dropped_frames = source.dropped_frames
            result.stream_end = source.end_reason
    return result


def _lost_line(lost: Sequence[bool], frames: int, who: str) -> str:
    lost_at = [i + 1 for i, flag in enumerate(lost) if flag]
    first = f" (first at frame {lost_at[0]})" if lost_at else ""
    return f"{who} reported lost in {len(lost_at)} of {frames} frames{first}"


def live_line(result: RunResult) -> str:
    """How a live run kept up: frames dropped, and the latency from arrival to boxes."""
    tracked, dropped = len(result.boxes), result.dropped_frames or 0
    line = f"live: {dropped} of {tracked + dropped} frames dropped to track the newest"
    latency = sorted(result.latency_seconds)
    if latency:
        p95 = latency[min(len(latency) - 1, round(0.95 * (len(latency) - 1)))]
        line += (
            f"; latency from a frame's arrival to its boxes: median "
            f"{statistics.median(latency) * 1e3:.0f} ms, 95th percentile {p95 * 1e3:.0f} ms, "
            f"max {latency[-1] * 1e3:.0f} ms"
        )
    return line


def tracker_label(name: str) -> str:
    """The tracker's name as output shows it: OpenCV's peers are marked as not ours."""
    return f"{name} (OpenCV peer)" if is_opencv_peer(name) else name


def summarize(result: RunResult, source_name: str, tracker_name: str, wall: float) -> list[str]:
    n = len(result.boxes)
    targets = result.boxes[0].shape[0] if result.boxes else 1
    several = f" ({targets} targets)" if targets > 1 else ""
    label = tracker_label(tracker_name)
    lines = [f"tracked {n} frames of {source_name} with {label}{several}"]
    if result.update_seconds:
        times = result.update_seconds
        mean_fps = len(times) / sum(times) if sum(times) > 0 else float("inf")
        median_time = statistics.median(times)
        median_fps = 1.0 / median_time if median_time > 0 else float("inf")
        every = f", all {targets} targets" if targets > 1 else ""
        lines.append(
            f"tracking speed over {len(times)} update frames: mean {mean_fps:.1f} fps, "
            f"median {median_fps:.1f} fps (tracker time only{every}); "
            f"init {result.init_seconds * 1e3:.0f} ms"
        )
    else:
        lines.append(f"init {result.init_seconds * 1e3:.0f} ms; no update frames, so no FPS")
    if result.dropped_frames is not None:
        lines.append(live_line(result))
    if result.lost is not None:
        per_target = list(zip(*result.lost, strict=True))
        for number, lost in enumerate(per_target, start=1):
            who = "target" if targets == 1 else f"target {number}"
            lines.append(_lost_line(lost, n, who))
    if result.redrawn_at:
        frames = ", ".join(str(i + 1) for i in result.redrawn_at)
        lines.append(f"boxes re-drawn at frame {frames}")
    lines.append(f"wall time {wall:.2f} s (including decoding, drawing and encoding)")
    return lines


def degraded_input_message(result: RunResult, source_name: str) -> str | None:
    """The one ``warning:``/``error:`` line for input that ended badly, if it did."""
    n = len(result.boxes)
    if result.bad_frame is not None:
        kind = "error" if isinstance(result.bad_frame, FrameSizeError) else "warning"
        return f"{kind}: {result.bad_frame}; stopping: outputs cover frames 1..{n}"
    if result.stream_end is not None:
        return f"warning: {source_name}: {result.stream_end}; stopping: outputs cover frames 1..{n}"
    if result.short_read is not None:
        read, declared = result.short_read
        return (
            f"warning: {source_name} ended after {read} of the {declared} frames it declares "
            f"(truncated or damaged?); outputs cover frames 1..{read}"
        )
    return None


# ---------------------------------------------------------------------------------------- main


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


def _build_tracker(factory: TrackerFactory, choice: TrackerChoice, data: Path | None) -> Tracker:
    options = choice.options()
    try:
        # Injected test factories take (name, data) only; options go only where some are set.
        return factory(choice.name, data, **options) if options else factory(choice.name, data)
    except TensorRTUnavailable as exc:  # --backend tensorrt on a machine without it
        raise UsageError(str(exc)) from None
    except ValueError as exc:  # the registry's "unknown tracker", a bad config value
        raise UsageError(str(exc)) from None


def build_tracker(
    request: TrackRequest, factory: TrackerFactory, notify: Callable[[str], None]
) -> tuple[Tracker, TrackerChoice]:
    """The requested tracker, or for a default one whose weights are missing the fallback."""
    try:
        return _build_tracker(factory, request.tracker, request.data), request.tracker
    except FileNotFoundError as exc:
        fallback = request.tracker.fallback()
        if fallback is None:
            raise
        notify(f"{exc}\nfalling back to {fallback.name} (untrained backbone: poor accuracy)")
        return _build_tracker(factory, fallback, request.data), fallback


def _first_boxes(
    resolved: ResolvedInput, source: FrameSource, display: Display
) -> list[np.ndarray]:
    """The targets' first-frame boxes, 0-based and checked: as given, or drawn by the user.

    Messages give the boxes 1-based, the CLI's convention (as ``--init`` and the boxes file).
    A box too small for the network to see is tracked after one warning each.
    """
    if resolved.init_boxes_1based:
        boxes = [from_otb(box) for box in resolved.init_boxes_1based]
    else:
        boxes = display.pick_boxes(source.first_frame, "draw the target's box")
        if not boxes:
            raise UsageError("no box drawn on the first frame; nothing tracked")
    for number, box in enumerate(boxes, start=1):
        which = "first-frame box" if len(boxes) == 1 else f"first-frame box {number}"
        try:
            validate_init_box(box, source.first_frame.shape, one_based=True)
        except ValueError as exc:
            raise UsageError(f"bad {which} (from {resolved.box_origin}): {exc}") from None
        small = small_box_message(box)
        if small is not None:
            _stderr(f"warning: {which} (from {resolved.box_origin}) {small}")
    return boxes


def run(
    request: TrackRequest,
    factory: TrackerFactory = create_tracker,
    stop: StopSignals | None = None,
    window: Window | None = None,
) -> int:
    """One CLI run; ``window`` replaces OpenCV's ``--show`` window (tests)."""
    wall_start = time.perf_counter()
    stop = stop or StopSignals()
    notify: Callable[[str], None] = (lambda _m: None) if request.quiet else _stderr
    set_threads(request.threads if request.threads is not None else default_threads())
    data = data_root(request.data)
    resolved = resolve_input(request.input, request.init, data, notify, can_draw=request.show)
    display = open_display(request.show, not resolved.init_boxes_1based, _stderr, window)
    try:
        with open_source(
            resolved.spec, live=request.live or None, timeout=request.timeout
        ) as source:
            return _track(request, factory, stop, resolved, source, display, notify, wall_start)
    finally:
        display.close()


def _track(
    request: TrackRequest,
    factory: TrackerFactory,
    stop: StopSignals,
    resolved: ResolvedInput,
    source: FrameSource,
    display: Display,
    notify: Callable[[str], None],
    wall_start: float,
) -> int:
    init_boxes = _first_boxes(resolved, source, display)
    paths = output_paths(request.boxes, request.output, source.name)
    _check_outputs(paths, len(init_boxes))
    tracker, choice = build_tracker(request, factory, notify)
    if isinstance(tracker, RunsOnBackend):
        why = getattr(tracker.backend, "chosen_because", "")
        notify(f"{choice.name}: {tracker.backend!r}" + (f" ({why})" if why else ""))
    group = MultiTracker(lambda: _build_tracker(factory, choice, request.data), first=tracker)
    outputs: TrackOutputs | None = None
    result: RunResult | None = None
    try:
        outputs = TrackOutputs(
            paths, source.fps, source.size, targets=len(init_boxes), notify=notify
        )
        result = track_source(
            group,
            source,
            init_boxes,
            max_frames=request.max_frames,
            outputs=outputs,
            display=display,
            quiet=request.quiet,
            stop=stop,
        )
    except BaseException:
        # A tracker error or a failing output: keep what was tracked (the files are valid
        # for those frames), finalise the video so it plays, then report the error.
        if outputs is not None:
            with stop.held(raise_pending=False):
                if outputs.frames:
                    _stderr(f"note: outputs kept for the {outputs.frames} frames tracked")
                    # The error that stopped the run is the one to report.
                    with suppress(OutputError):
                        outputs.close()
                else:
                    outputs.discard()
        raise
    with stop.held(raise_pending=False):  # a second Ctrl-C cannot spoil the finalisation
        if not result.boxes:  # interrupted before the first frame was tracked
            outputs.discard()
            _stderr("interrupted before the first frame; nothing written")
            return EXIT_INTERRUPTED
        written = outputs.close()
    if stop.pending is not None:
        result.interrupted = True
    degraded = degraded_input_message(result, source.name)
    if degraded is not None:  # shown even with --quiet: the outputs do not cover the input
        _stderr(degraded)
    if not request.quiet:
        lines = summarize(result, source.name, choice.name, time.perf_counter() - wall_start)
        if result.interrupted:
            lines.insert(0, f"interrupted: outputs cover the first {len(result.boxes)} frames")
        single = len(group.targets) == 1
        stats = tracker.run_stats() if single and isinstance(tracker, ReportsRunStats) else {}
        if "prune_rate" in stats:
            kept = ", ".join(f"{k[5:]} {v:.0%}" for k, v in stats.items() if k.startswith("kept_"))
            detail = f" (kept: {kept})" if kept else ""
            lines.append(f"pruned {stats['prune_rate']:.0%} of the channels{detail}")
        lines += [f"wrote {p}" for p in written]
        print("\n".join(lines))
    if result.interrupted:
        return EXIT_INTERRUPTED
    if result.bad_frame is not None:
        return EXIT_INCOMPLETE
    return 0


def main(
    argv: Sequence[str] | None = None,
    tracker_factory: TrackerFactory | None = None,
    window: Window | None = None,
) -> int:
    """Run the CLI; returns the exit code. ``tracker_factory`` replaces the registry and
    ``window`` the ``--show`` window (tests)."""
    quiet_opencv_logs()
    # SIGTERM (timeout, kill, a job scheduler) stops the run like Ctrl-C: outputs finalised.
    with StopSignals() as stop:
        try:
            args = build_parser().parse_args(list(argv) if argv is not None else None)
            request = TrackRequest.from_args(args, check_name=tracker_factory is None)
            return run(request, tracker_factory or create_tracker, stop, window)
        except (UsageError, InputError, OutputError, FileNotFoundError, PermissionError) as exc:
            # FileNotFoundError: missing weights or data; PermissionError: an unwritable output.
            # Anything else is a bug and keeps its traceback.
            _stderr(f"error: {exc}")
            return EXIT_USAGE
        except KeyboardInterrupt:
            _stderr("interrupted")
            return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
