"""Speed with several targets in one video: frames per second for 1, 2, 4 and 8 targets.

    python -m bench.multi_target --trackers "nanotrack,nanotrack[backend=torch]" \\
        [--targets 1,2,4,8] [--seq Crossing] [--frames 120] [--threads 2] [--json OUT]

One real sequence (an OTB folder under ``<data root>/sequences``); its frames are decoded once,
before timing. Target 1 is the sequence's first ground-truth box; the others are boxes of the
same size spread over the frame on a fixed grid (what they contain does not matter for speed;
each is a full target: its own template and state). Every tracker is a
:class:`runtime.multi_target.MultiTracker`: the frame is shared, the network loaded once where
the tracker offers siblings. Where the tracker batches its targets (nanotrack on the torch
backend with v3 alone: ``nanotrack[backend=torch;fusion_weight=0]``), it is measured both
ways: ``batched`` (one network call for the crops of one side) and
``one by one``.

Reported per row: the median milliseconds of one ``update`` of all targets (tracker time only,
as :mod:`bench.ope`), frames per second from it, milliseconds per target, and the speed relative
to one target of the same row kind. A markdown table goes to stdout, the figures to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from bench.ope import add_set_argument, parse_overrides, set_threads, spec_factory, tracker_specs
from runtime.atomic import write_atomic
from runtime.cli.program import program_name
from runtime.evaluation.one_pass import OPEError
from runtime.multi_target import MultiTracker, batches
from runtime.paths import data_root
from runtime.sequences import load_sequence

DEFAULT_SEQUENCE = "Crossing"  # a val sequence: 120 frames of 360x240, one pedestrian
DEFAULT_COUNTS = (1, 2, 4, 8)


def target_boxes(first: np.ndarray, count: int, frame_shape: tuple[int, ...]) -> list[np.ndarray]:
    """``first`` and ``count - 1`` boxes of its size on a fixed grid over the frame (inside it)."""
    height, width = frame_shape[:2]
    w, h = min(first[2], width / 4), min(first[3], height / 3)
    spots = [(fx, fy) for fy in (0.25, 0.5, 0.75) for fx in (0.15, 0.4, 0.65, 0.9)]
    boxes = [np.asarray(first, dtype=np.float64)]
    for fx, fy in spots[: count - 1]:
        x = float(np.clip(fx * width - w / 2, 0, width - w))
        y = float(np.clip(fy * height - h / 2, 0, height - h))
        boxes.append(np.array([x, y, w, h]))
    return boxes


@dataclass
class Row:
    tracker: str
    mode: str  # "batched", "one by one"
    targets: int
    median_ms: float  # one update of all targets
    fps: float
    ms_per_target: float
    relative: float = float("nan")  # fps / fps of one target, same tracker and mode


def time_group(group: MultiTracker, frames: list[np.ndarray], boxes: list[np.ndarray]) -> float:
    """Median seconds of one ``update`` of every target over ``frames[1:]``."""
    group.init(frames[0], boxes)
    times = []
    for frame in frames[1:]:
        start = time.perf_counter()
        group.update(frame)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(
    spec: str,
    make: object,
    frames: list[np.ndarray],
    first_box: np.ndarray,
    counts: list[int],
) -> list[Row]:
    """Rows for one tracker spec: each count, both ways where the tracker batches."""
    first = make(spec)  # type: ignore[operator]
    modes = ["batched", "one by one"] if batches(first) else ["one by one"]
    rows = []
    for mode in modes:
        group = MultiTracker(lambda: make(spec), first=first, batch=mode == "batched")  # type: ignore[operator]
        base = float("nan")
        for count in counts:
            seconds = time_group(group, frames, target_boxes(first_box, count, frames[0].shape))
            fps = 1.0 / seconds
            base = fps if count == 1 else base
            rows.append(
                Row(spec, mode, count, seconds * 1e3, fps, seconds * 1e3 / count, fps / base)
            )
    if modes == ["batched", "one by one"]:
        rows = [r for r in rows if not (r.mode == "batched" and r.targets == 1)]  # the same run
    return rows


def markdown_table(rows: list[Row]) -> str:
    lines = [
        "| tracker | mode | targets | median ms / frame | FPS | ms / target | vs 1 target |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        relative = "" if np.isnan(r.relative) else f"{r.relative:.2f}x"
        lines.append(
            f"| {r.tracker} | {r.mode} | {r.targets} | {r.median_ms:.2f} | {r.fps:.1f} | "
            f"{r.ms_per_target:.2f} | {relative} |"
        )
    return "\n".join(lines)


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers such as 1,2,4,8, got {text!r}"
        ) from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"target counts must be at least 1, got {text!r}")
    return sorted(set(counts))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=program_name("python -m bench.multi_target"),
        description="Frames per second with 1, 2, 4, 8 targets in one video.",
    )
    parser.add_argument("--trackers", required=True, help="comma-separated tracker specs")
    parser.add_argument(
        "--targets", type=_counts, default=list(DEFAULT_COUNTS), help="target counts (1,2,4,8)"
    )
    parser.add_argument("--seq", default=DEFAULT_SEQUENCE, help="sequence under <data>/sequences")
    parser.add_argument("--frames", type=int, default=120, help="frames to track (default 120)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch, OpenCV)")
    parser.add_argument("--json", type=Path, default=None, help="where to write the figures")
    parser.add_argument(
        "--data-root", type=Path, default=None, help="shared data (default $TRACKER_DATA)"
    )
    add_set_argument(parser, "override a config field of our trackers (repeatable)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.frames < 2:
            raise OPEError(f"--frames must be at least 2, got {args.frames}")
        root = data_root(args.data_root)
        specs = tracker_specs(args.trackers)
        threads = set_threads(args.threads)
        make = spec_factory(root, parse_overrides(args.overrides))
        folder = root / "sequences" / args.seq
        if not folder.is_dir():
            raise OPEError(f"no sequence {args.seq!r} in {folder.parent}")
        sequence = load_sequence(folder)
        frames = [cv2.imread(str(p)) for p in sequence.frame_paths[: args.frames]]
        if len(frames) < 2:
            raise OPEError(f"{folder} has fewer than 2 frames")
        rows = [
            r
            for spec in specs
            for r in measure(spec, make, frames, sequence.init_box, args.targets)
        ]
    except (OPEError, FileNotFoundError, ValueError) as error:
        print(f"bench.multi_target: error: {error}", file=sys.stderr)
        return 2
    if args.json is not None:
        payload = {
            "sequence": args.seq,
            "frames": len(frames),
            "threads": threads,
            "rows": [asdict(r) for r in rows],
        }
        write_atomic(args.json, json.dumps(payload, indent=2) + "\n")
    print(markdown_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
