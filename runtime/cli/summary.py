"""Stage 9 of a run: what it tells the user at its end. A summary on stdout (unless ``--quiet``)
and, where the input ended badly, one ``warning:`` or ``error:`` line on stderr (always).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

from runtime.cli.console import warn
from runtime.cli.loop import RunResult
from runtime.cli.tracker_setup import BuiltTracker
from runtime.io.frames import FrameSizeError
from runtime.registry import is_opencv_peer
from runtime.tracker_api import ReportsRunStats


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
    """What was tracked, how fast, what was lost or re-drawn, and the wall time."""
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


def _pruned_line(built: BuiltTracker) -> str | None:
    """How much of the network a pruning tracker cut, for a single target (several targets
    each prune their own)."""
    single = len(built.group.targets) == 1
    tracker = built.tracker
    stats = tracker.run_stats() if single and isinstance(tracker, ReportsRunStats) else {}
    if "prune_rate" not in stats:
        return None
    kept = ", ".join(f"{k[5:]} {v:.0%}" for k, v in stats.items() if k.startswith("kept_"))
    detail = f" (kept: {kept})" if kept else ""
    return f"pruned {stats['prune_rate']:.0%} of the channels{detail}"


def report(
    result: RunResult,
    source_name: str,
    built: BuiltTracker,
    written: Sequence[Path],
    *,
    quiet: bool,
    wall: float,
) -> None:
    """Say how the input ended (even with ``--quiet``: the outputs may not cover it), then,
    unless ``quiet``, the summary and the files written."""
    degraded = degraded_input_message(result, source_name)
    if degraded is not None:
        warn(degraded)
    if quiet:
        return
    lines = summarize(result, source_name, built.choice.name, wall)
    if result.interrupted:
        lines.insert(0, f"interrupted: outputs cover the first {len(result.boxes)} frames")
    pruned = _pruned_line(built)
    if pruned is not None:
        lines.append(pruned)
    lines += [f"wrote {p}" for p in written]
    print("\n".join(lines))
