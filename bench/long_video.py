"""Long-video check: a real clip played forward and back for thousands of frames.

    python -m bench.long_video --trackers metartt,mlt,nanotrack --frames 10000 \\
        [--clip PATH] [--init X,Y,W,H] [--size 320x240] [--threads N] [--json OUT] [--boxes DIR]

The clip (an OTB sequence folder, its box from ``groundtruth_rect.txt``, by default
``<data root>/sequences/vot2015_bag``; or a video file, its box from the ``videos.json`` beside
it, e.g. ``videos/pysot_bag.avi``, the same footage; ``--init`` overrides, 1-based)
is decoded once and resized to ``--size``; its ``n`` frames are kept in memory once and indexed
forward and back (0, 1, ..., n-1, n-2, ..., 1, 0, 1, ...), so frames ``k`` and ``k + P`` show the
same image, ``P = 2n - 2`` (390 for a 196-frame clip). Memory stays bounded whatever ``--frames``.

Each tracker is initialized on frame 0 and updated on every later frame. Reported per tracker:

- the box size ``w x h`` at the start (frame 0), the middle, the end, and its minimum over the run
  (``min_w``, ``min_h``; each side's own minimum);
- the *loop drift*: the distance of the box centre at frame ``k`` from the box centre at frame
  ``k mod P`` of the first loop (the same image), at the middle and at the end, and its maximum;
  a tracker that still follows the object keeps it within a few pixels;
- frames per second over the ``init``/``update`` calls only (as :mod:`bench.ope`);
- with a clip that has ground truth (an OTB folder): the mean IoU with it over the first loop
  and over the last ``P`` frames;
- the process RSS (``VmRSS`` of ``/proc/self/status``, else ``ru_maxrss``) right after ``init``,
  at the middle and at the end, in MiB. The trackers run one after another in one process, so a
  later tracker's figures include what earlier ones left behind; compare each row with itself.

A markdown table goes to stdout, the figures to ``--json``, and with ``--boxes DIR`` each
tracker's per-frame boxes and scores to ``DIR/<tracker>.csv`` (for plotting, or diagnosing).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from bench.ope import add_set_argument, parse_overrides, set_threads, spec_factory, tracker_specs
from runtime.atomic import write_atomic
from runtime.boxes import centers, from_otb, iou
from runtime.cli.program import program_name
from runtime.evaluation.one_pass import OPEError, build_tracker
from runtime.paths import data_root
from runtime.sequences import GROUND_TRUTH_FILE, list_frames, read_boxes_file
from runtime.tracker_api import Tracker

# Under the data root: the frames of pysot_bag.avi (the same footage) with per-frame ground truth.
DEFAULT_CLIP = Path("sequences") / "vot2015_bag"


# ------------------------------------------------------------------------------------- the clip


@dataclass
class PingPongClip:
    """``n`` decoded frames played forward and back: ``frame(k)`` for any ``k >= 0``."""

    frames: list[np.ndarray]
    init_box: np.ndarray  # 0-based x, y, w, h on frame 0 (after resizing)
    ground_truth: np.ndarray | None = None  # (n, 4) 0-based, per stored frame, if the clip has it

    @property
    def period(self) -> int:
        return max(2 * len(self.frames) - 2, 1)

    def index(self, k: int) -> int:
        """Which stored frame plays at position ``k``."""
        n = len(self.frames)
        if n == 1:
            return 0
        r = k % self.period
        return r if r < n else self.period - r

    def frame(self, k: int) -> np.ndarray:
        return self.frames[self.index(k)]

    def truth(self, n_frames: int) -> np.ndarray | None:
        """Ground truth of positions ``0 .. n_frames - 1`` (None without ground truth)."""
        if self.ground_truth is None:
            return None
        return self.ground_truth[[self.index(k) for k in range(n_frames)]]


def _box_from_listing(video: Path) -> np.ndarray | None:
    """The 1-based first-frame box ``videos.json`` (next to the video) gives for it, if any."""
    listing = video.parent / "videos.json"
    if not listing.is_file():
        return None
    for entry in json.loads(listing.read_text()):
        if entry.get("file") == video.name and "init_box" in entry:
            return np.asarray(entry["init_box"], dtype=np.float64)
    return None


def load_clip(
    path: Path, size: tuple[int, int] | None, init_1based: np.ndarray | None
) -> PingPongClip:
    """Decode ``path`` (a video file or an OTB / image folder) once, resized to ``size``."""
    frames: list[np.ndarray] = []
    box = init_1based
    truth = None
    if path.is_dir():
        folder = path / "img" if (path / "img").is_dir() else path
        for frame_path in list_frames(folder):
            image = cv2.imread(str(frame_path), cv2.IMREAD_COLOR)
            if image is None:
                raise OPEError(f"cannot read image {frame_path}")
            frames.append(image)
        if (path / GROUND_TRUTH_FILE).is_file():
            truth = from_otb(read_boxes_file(path / GROUND_TRUTH_FILE))
            if len(truth) != len(frames):
                truth = None
            elif box is None:
                box = read_boxes_file(path / GROUND_TRUTH_FILE)[0]
    elif path.is_file():
        capture = cv2.VideoCapture(str(path))
        try:
            while True:
                ok, image = capture.read()
                if not ok:
                    break
                frames.append(image)
        finally:
            capture.release()
        if box is None:
            box = _box_from_listing(path)
    else:
        raise OPEError(f"clip not found: {path}")
    if not frames:
        raise OPEError(f"no frames decoded from {path}")
    if box is None:
        raise OPEError(f"no first-frame box known for {path}; give --init X,Y,W,H (1-based)")
    box0 = from_otb(np.asarray(box, dtype=np.float64).reshape(4))
    if size is not None:
        height, width = frames[0].shape[:2]
        sx, sy = size[0] / width, size[1] / height
        frames = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]
        box0 = box0 * np.array([sx, sy, sx, sy])
        truth = None if truth is None else truth * np.array([sx, sy, sx, sy])
    return PingPongClip(frames, box0, truth)


# ----------------------------------------------------------------------------------- measuring


def rss_mib() -> float:
    """The process's resident set size now (``VmRSS``), else its peak (``ru_maxrss``), in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024.0 if sys.platform != "darwin" else peak / 2**20


@dataclass
class LongRun:
    """One tracker over the long clip: its boxes, scores, time and memory readings."""

    tracker: str
    boxes: np.ndarray  # (frames, 4), row 0 = the given initial box
    scores: np.ndarray
    seconds: float
    rss: dict[str, float]  # "start" (after init), "middle", "end"; MiB


def run_long(
    tracker: Tracker,
    clip: PingPongClip,
    n_frames: int,
    name: str = "",
    progress: Callable[[str], None] | None = None,
) -> LongRun:
    """Track ``n_frames`` positions of ``clip``; time only ``init``/``update``."""
    boxes = np.empty((n_frames, 4), dtype=np.float64)
    scores = np.empty(n_frames, dtype=np.float64)
    boxes[0], scores[0] = clip.init_box, 1.0
    middle = n_frames // 2
    start = time.perf_counter()
    tracker.init(clip.frame(0), clip.init_box.copy())
    seconds = time.perf_counter() - start
    rss = {"start": rss_mib()}
    for k in range(1, n_frames):
        frame = clip.frame(k)
        start = time.perf_counter()
        box, score = tracker.update(frame)
        seconds += time.perf_counter() - start
        boxes[k] = np.asarray(box, dtype=np.float64).reshape(4)
        scores[k] = float(score)
        if k == middle:
            rss["middle"] = rss_mib()
        if progress is not None and (k % 500 == 0 or k == n_frames - 1):
            w, h = boxes[k, 2:]
            progress(
                f"{name}: frame {k}/{n_frames - 1}  box {w:.1f}x{h:.1f}  {k / seconds:.1f} fps"
            )
    rss.setdefault("middle", rss["start"])
    rss["end"] = rss_mib()
    return LongRun(name, boxes, scores, seconds, rss)


def loop_drift(boxes: np.ndarray, period: int) -> np.ndarray:
    """Per frame: centre distance from the first loop's box on the same image (0 in loop 1)."""
    k = np.arange(len(boxes))
    c = centers(boxes)
    return np.linalg.norm(c - c[k % period], axis=1)


@dataclass
class LongSummary:
    frames: int
    size_start: list[float]  # [w, h]
    size_middle: list[float]
    size_end: list[float]
    min_w: float
    min_h: float
    drift_middle: float  # px
    drift_end: float
    drift_max: float
    fps: float
    rss_start_mib: float
    rss_middle_mib: float
    rss_end_mib: float
    # Mean IoU with the clip's ground truth (when it has one) over the first and the last loop.
    iou_first_loop: float | None = None
    iou_last_loop: float | None = None


def summarize(run: LongRun, period: int, truth: np.ndarray | None = None) -> LongSummary:
    n = len(run.boxes)
    middle = n // 2
    drift = loop_drift(run.boxes, period)
    first = last = None
    if truth is not None:
        overlap = iou(run.boxes, truth)
        first = float(np.nanmean(overlap[: min(period, n)]))
        last = float(np.nanmean(overlap[max(n - period, 0) :]))
    return LongSummary(
        frames=n,
        size_start=[float(v) for v in run.boxes[0, 2:]],
        size_middle=[float(v) for v in run.boxes[middle, 2:]],
        size_end=[float(v) for v in run.boxes[-1, 2:]],
        min_w=float(run.boxes[:, 2].min()),
        min_h=float(run.boxes[:, 3].min()),
        drift_middle=float(drift[middle]),
        drift_end=float(drift[-1]),
        drift_max=float(drift.max()),
        fps=n / max(run.seconds, 1e-9),
        rss_start_mib=run.rss["start"],
        rss_middle_mib=run.rss["middle"],
        rss_end_mib=run.rss["end"],
        iou_first_loop=first,
        iou_last_loop=last,
    )


def markdown_table(summaries: dict[str, LongSummary]) -> str:
    def wh(size: list[float]) -> str:
        return f"{size[0]:.0f}x{size[1]:.0f}"

    def mean_iou(s: LongSummary) -> str:
        if s.iou_first_loop is None or s.iou_last_loop is None:
            return "-"
        return f"{s.iou_first_loop:.2f} / {s.iou_last_loop:.2f}"

    lines = [
        "| tracker | frames | box start | box middle | box end | min w / h | drift middle (px) "
        "| drift end (px) | drift max (px) | IoU loop 1 / last | FPS "
        "| RSS start / middle / end (MiB) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, s in summaries.items():
        lines.append(
            f"| {name} | {s.frames} | {wh(s.size_start)} | {wh(s.size_middle)} | "
            f"{wh(s.size_end)} | {s.min_w:.0f} / {s.min_h:.0f} | {s.drift_middle:.1f} | "
            f"{s.drift_end:.1f} | {s.drift_max:.1f} | {mean_iou(s)} | {s.fps:.1f} | "
            f"{s.rss_start_mib:.0f} / {s.rss_middle_mib:.0f} / {s.rss_end_mib:.0f} |"
        )
    return "\n".join(lines)


def write_boxes_csv(run: LongRun, path: Path, period: int) -> None:
    drift = loop_drift(run.boxes, period)
    rows = ["frame,x,y,w,h,score,loop_drift"]
    rows += [
        f"{k},{b[0]:.2f},{b[1]:.2f},{b[2]:.2f},{b[3]:.2f},{s:.4f},{d:.2f}"
        for k, (b, s, d) in enumerate(zip(run.boxes, run.scores, drift, strict=True))
    ]
    write_atomic(path, "\n".join(rows) + "\n")


# ---------------------------------------------------------------------------------------- CLI


def _size(text: str) -> tuple[int, int] | None:
    if text.lower() in ("", "native", "none"):
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH, e.g. 320x240, got {text!r}") from None
    if w < 16 or h < 16:
        raise argparse.ArgumentTypeError(f"size too small: {text!r}")
    return w, h


def _box(text: str) -> np.ndarray:
    try:
        values = np.asarray([float(v) for v in text.split(",")], dtype=np.float64)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y,W,H, got {text!r}") from None
    if values.shape != (4,) or not np.all(np.isfinite(values)) or np.any(values[2:] <= 0):
        raise argparse.ArgumentTypeError(f"expected X,Y,W,H with W, H > 0, got {text!r}")
    return values


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=program_name("python -m bench.long_video"),
        description="Trackers over a clip played forward and back: box size, loop drift, FPS, RSS.",
    )
    parser.add_argument("--trackers", required=True, help="comma-separated tracker names")
    parser.add_argument("--frames", type=int, default=10000, help="frames to track (default 10000)")
    parser.add_argument(
        "--clip",
        type=Path,
        default=None,
        help="an OTB sequence folder or a video file (default: <data root>/sequences/vot2015_bag)",
    )
    parser.add_argument("--init", type=_box, default=None, help="1-based X,Y,W,H on frame 1")
    parser.add_argument(
        "--size", type=_size, default=(320, 240), help="resize frames to WxH (default 320x240)"
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch, OpenCV)")
    parser.add_argument("--json", type=Path, default=None, help="where to write the figures")
    parser.add_argument("--boxes", type=Path, default=None, help="folder for per-frame CSVs")
    parser.add_argument(
        "--data-root", type=Path, default=None, help="shared data (default $TRACKER_DATA)"
    )
    add_set_argument(parser, "override a config field of our trackers (repeatable)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    notify = (lambda _m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    try:
        if args.frames < 2:
            raise OPEError(f"--frames must be at least 2, got {args.frames}")
        root = data_root(args.data_root)
        trackers = tracker_specs(args.trackers)
        threads = set_threads(args.threads)
        options = parse_overrides(args.overrides)
        clip_path = args.clip if args.clip is not None else root / DEFAULT_CLIP
        clip = load_clip(clip_path, args.size, args.init)
        h, w = clip.frames[0].shape[:2]
        notify(
            f"long video: {clip_path.name}, {len(clip.frames)} frames of {w}x{h} played forward "
            f"and back (period {clip.period}) for {args.frames} frames; box "
            f"{clip.init_box[2]:.1f}x{clip.init_box[3]:.1f}; {threads} thread(s)"
        )
        summaries: dict[str, LongSummary] = {}
        for spec in trackers:
            tracker = build_tracker(spec_factory(root, options), spec)
            run = run_long(tracker, clip, args.frames, spec, notify)
            del tracker
            gc.collect()
            summaries[spec] = summarize(run, clip.period, clip.truth(args.frames))
            if args.boxes is not None:
                write_boxes_csv(run, args.boxes / f"{spec}.csv", clip.period)
    except OPEError as error:
        print(f"bench.long_video: error: {error}", file=sys.stderr)
        return 2
    if args.json is not None:
        payload = {
            "clip": str(clip_path),
            "clip_frames": len(clip.frames),
            "size": [w, h],
            "period": clip.period,
            "init_box": [float(v) for v in clip.init_box],
            "threads": threads,
            "trackers": {name: asdict(s) for name, s in summaries.items()},
        }
        write_atomic(args.json, json.dumps(payload, indent=2) + "\n")
    print(markdown_table(summaries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
