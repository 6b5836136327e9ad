"""Milliseconds per stage per frame: ``python -m bench.profile``.

    python -m bench.profile --trackers "metartt[backend=onnxruntime;export_dir=DIR],nanotrack" \\
        [--split val] [--seqs A,B] [--threads 2] [--max-frames N] [--json OUT] [--set KEY=VALUE]

Each tracker runs over the same decoded frames (``bench.ope``'s way: one process, frames read
once) with its stage clock on (:mod:`runtime.stage_clock`): every ``update`` is split into the
stages of :data:`runtime.stage_clock.STAGES` by the tracker's own timers, and ``other`` is the
rest of the ``update`` call (Python glue, conversions). Per stage the table gives the median,
the 90th percentile and the mean over all tracked frames of all sequences; the mean is the
amortized figure for stages that run on some frames only (online updates). The first frame
(``init``) is reported on its own. A tracker without a stage clock (OpenCV's) gets its total.

Timings are wall clock on whatever else the machine is doing: profile on an idle machine, and
compare trackers within one run. The JSON keeps every figure (``--json``).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench.ope import (
    add_set_argument,
    parse_overrides,
    set_threads,
    spec_factory,
    split_list,
    tracker_specs,
)
from runtime.atomic import write_atomic
from runtime.cli.program import program_name
from runtime.evaluation.one_pass import (
    OPEError,
    build_tracker,
    decode_frames,
    resolve_sequences,
    truncate,
)
from runtime.paths import data_root
from runtime.sequences import Sequence
from runtime.stage_clock import OTHER, STAGES
from runtime.tracker_api import TimesStages, Tracker

TOTAL = "total"


@dataclass
class StageFigures:
    median_ms: float
    p90_ms: float
    mean_ms: float  # amortized over every frame, the frames without this stage counted as 0
    share: float  # of the mean total


@dataclass
class TrackerProfile:
    tracker: str
    frames: int  # updates timed (first frames excluded)
    stages: dict[str, StageFigures]  # STAGES that ran, then "other" and "total"
    first_frame_ms: float  # median over sequences of the init call
    fps: float  # 1000 / the mean total: what the tracker sustains, updates included


def profile_tracker(
    tracker: Tracker, sequences: list[tuple[Sequence, list[np.ndarray]]], bar: tqdm | None = None
) -> tuple[list[dict[str, float]], list[float]]:
    """Per-update stage milliseconds (with ``other`` and ``total``), and each init's ms."""
    clock = tracker.stage_clock if isinstance(tracker, TimesStages) else None
    if clock is not None:
        clock.enabled = True
    rows: list[dict[str, float]] = []
    inits: list[float] = []
    try:
        for sequence, frames in sequences:
            start = time.perf_counter()
            tracker.init(frames[0], sequence.init_box.copy())
            inits.append((time.perf_counter() - start) * 1e3)
            if clock is not None:
                clock.take()
            for frame in frames[1:]:
                start = time.perf_counter()
                tracker.update(frame)
                total = (time.perf_counter() - start) * 1e3
                row = clock.take() if clock is not None else {}
                row[OTHER] = max(total - sum(row.values()), 0.0)
                row[TOTAL] = total
                rows.append(row)
                if bar is not None:
                    bar.update(1)
    finally:
        if clock is not None:
            clock.enabled = False
    return rows, inits


def summarize(tracker: str, rows: list[dict[str, float]], inits: list[float]) -> TrackerProfile:
    """Median, p90 and amortized mean per stage over ``rows`` (a stage absent from a row: 0)."""
    names = [s for s in STAGES if any(s in row for row in rows)] + [OTHER, TOTAL]
    mean_total = float(np.mean([row[TOTAL] for row in rows])) if rows else 0.0
    stages = {}
    for name in names:
        values = np.array([row.get(name, 0.0) for row in rows]) if rows else np.zeros(1)
        mean = float(values.mean())
        stages[name] = StageFigures(
            median_ms=float(np.median(values)),
            p90_ms=float(np.percentile(values, 90)),
            mean_ms=mean,
            share=mean / mean_total if mean_total > 0 else 0.0,
        )
    return TrackerProfile(
        tracker=tracker,
        frames=len(rows),
        stages=stages,
        first_frame_ms=float(np.median(inits)) if inits else 0.0,
        fps=1e3 / mean_total if mean_total > 0 else 0.0,
    )


def markdown_table(profiles: list[TrackerProfile]) -> str:
    """One row per (tracker, stage): median / p90 / mean ms and the share of the mean frame."""
    lines = [
        "| tracker | stage | median ms | p90 ms | mean ms | share of frame |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for profile in profiles:
        for name, figures in profile.stages.items():
            label = f"**{name}**" if name == TOTAL else name
            lines.append(
                f"| {profile.tracker} | {label} | {figures.median_ms:.2f} | {figures.p90_ms:.2f} "
                f"| {figures.mean_ms:.2f} | {figures.share:.0%} |"
            )
        lines.append(
            f"| {profile.tracker} | first frame (init) | {profile.first_frame_ms:.1f} | | | |"
        )
    fps = ", ".join(f"{p.tracker} {p.fps:.1f}" for p in profiles)
    return "\n".join(lines) + f"\n\nFPS (1000 / mean total ms): {fps}\n"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=program_name("python -m bench.profile"),
        description="Median / p90 / mean milliseconds per tracking stage per frame.",
    )
    parser.add_argument(
        "--trackers",
        required=True,
        help="comma-separated tracker specs, as bench.ope: NAME or NAME[KEY=VALUE;...], e.g. "
        "metartt[backend=onnxruntime;export_dir=DIR]",
    )
    parser.add_argument("--split", default="val", help="a split in splits.json (default: val)")
    parser.add_argument("--seqs", default=None, help="comma-separated sequence names instead")
    parser.add_argument("--max-frames", type=int, default=None, help="first N frames only")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--json", type=Path, default=None, help="where to write the figures")
    parser.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="shared data folder (default: $TRACKER_DATA or ../shared/data)",
    )
    add_set_argument(parser, "override a config field of our trackers (repeatable)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        root = data_root(args.data_root)
        trackers = tracker_specs(args.trackers)
        threads = set_threads(args.threads)
        options = parse_overrides(args.overrides)
        seqs = split_list(args.seqs)
        loaded = resolve_sequences(root / "sequences", seqs, None if seqs else args.split)
        sequences = [(s, decode_frames(s)) for s in (truncate(q, args.max_frames) for q in loaded)]
        updates = sum(len(frames) - 1 for _, frames in sequences)
        profiles = []
        for spec in trackers:
            tracker = build_tracker(spec_factory(root, options), spec)
            with tqdm(
                total=updates, desc=spec, unit="frame", disable=args.quiet, file=sys.stderr
            ) as bar:
                rows, inits = profile_tracker(tracker, sequences, bar)
            del tracker
            gc.collect()
            profiles.append(summarize(spec, rows, inits))
    except OPEError as error:
        print(f"bench.profile: error: {error}", file=sys.stderr)
        return 2
    table = markdown_table(profiles)
    if args.json is not None:
        payload = {
            "split": None if seqs else args.split,
            "sequences": [s.name for s, _ in sequences],
            "threads": threads,
            "max_frames": args.max_frames,
            "trackers": {p.tracker: asdict(p) for p in profiles},
        }
        write_atomic(args.json, json.dumps(payload, indent=2) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
