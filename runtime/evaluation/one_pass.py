"""One-pass evaluation (OPE, as OTB), the core: run trackers over sequences and score them.

Every tracker on every sequence, on the same decoded frames, in this process: frames decoded once
(``cv2.imread``, BGR) per sequence; each tracker built fresh for that sequence, initialized on
frame 0 with the ground-truth box and updated on every later frame; the box reported for frame 0
is the given one. Speed counts tracking only (``time.perf_counter`` around each ``init`` and
``update``; :func:`track_timed` keeps each frame's seconds, :func:`track` their sum); the scores
are :mod:`runtime.evaluation.metrics`. :func:`summarize` gives the JSON-shaped summary that
``bench.ope`` writes (its module docstring states the shape). :func:`run_trackers` is the loop over
trackers and sequences itself, shared with the restart experiment
(:mod:`runtime.evaluation.restarts`).

``bench.ope`` (the command line: saving, resuming, plots, tables) and training's validation
(``train.rtmdnet.meta_training``, ``train.mlt.training``: :func:`mean_auc`) both build on this.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
from tqdm import tqdm

from runtime.evaluation.metrics import SequenceResult, evaluate_sequence
from runtime.sequences import Sequence, load_sequence, sequence_names
from runtime.tracker_api import Tracker

TrackerFactory = Callable[[str], Tracker]
Run = TypeVar("Run")
# One tracker's run over one sequence's decoded frames: (name, tracker, sequence, frames, bar).
RunOne = Callable[[str, Tracker, Sequence, list[np.ndarray], tqdm], Run]

# How often (frames) the progress bar's fps figure is refreshed: often enough to watch, rare
# enough that tqdm's formatting stays negligible (it is outside the timed calls anyway).
_POSTFIX_EVERY = 10


class OPEError(Exception):
    """A user-facing problem (bad name, missing folder): the CLI prints it as one line."""


@dataclass
class TrackedSequence:
    """One tracker's run over one sequence: its boxes, scores, time and metrics."""

    tracker: str
    sequence: str
    boxes: np.ndarray  # (N, 4) 0-based x, y, w, h; row 0 is the given initial box
    scores: np.ndarray  # (N,) tracker confidence; row 0 is 1.0 (the given box)
    seconds: float  # time inside init + update calls only
    result: SequenceResult
    stats: dict[str, float] = field(default_factory=dict)  # the tracker's run_stats(), if any
    # (N,) seconds of each frame's init/update call (sum: ``seconds``); None where not known.
    frame_seconds: np.ndarray | None = None

    @property
    def frames(self) -> int:
        return len(self.boxes)

    @property
    def fps(self) -> float:
        # Guard against a zero timer reading on a trivially fast test double.
        return self.frames / max(self.seconds, 1e-9)


def truncate(sequence: Sequence, max_frames: int | None) -> Sequence:
    """The first ``max_frames`` frames of a sequence (for quick runs); unchanged if None."""
    if max_frames is None or max_frames >= len(sequence):
        return sequence
    if max_frames < 1:
        raise OPEError(f"--max-frames must be at least 1, got {max_frames}")
    return replace(
        sequence,
        frame_paths=sequence.frame_paths[:max_frames],
        ground_truth=sequence.ground_truth[:max_frames],
    )


def decode_frames(sequence: Sequence) -> list[np.ndarray]:
    """All frames as BGR uint8 arrays, read once so every tracker sees the same pixels."""
    frames = []
    for path in sequence.frame_paths:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise OPEError(f"cannot read image {path}")
        frames.append(image)
    return frames


def track_timed(
    tracker: Tracker,
    frames: list[np.ndarray],
    init_box: np.ndarray,
    bar: tqdm | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run one tracker over decoded frames: (boxes, scores, seconds of each frame's call).

    Frame 0's seconds are the ``init`` call's, as the GOT-10k toolkit times them.
    """
    boxes = np.empty((len(frames), 4), dtype=np.float64)
    scores = np.empty(len(frames), dtype=np.float64)
    frame_seconds = np.zeros(len(frames), dtype=np.float64)
    boxes[0] = np.asarray(init_box, dtype=np.float64).reshape(4)
    scores[0] = 1.0

    start = time.perf_counter()
    tracker.init(frames[0], boxes[0].copy())
    frame_seconds[0] = time.perf_counter() - start
    seconds = float(frame_seconds[0])
    if bar is not None:
        bar.update(1)

    for index in range(1, len(frames)):
        start = time.perf_counter()
        box, score = tracker.update(frames[index])
        frame_seconds[index] = time.perf_counter() - start
        seconds += float(frame_seconds[index])
        boxes[index] = np.asarray(box, dtype=np.float64).reshape(4)
        scores[index] = float(score)
        if bar is not None:
            bar.update(1)
            if index % _POSTFIX_EVERY == 0 or index == len(frames) - 1:
                bar.set_postfix(fps=f"{(index + 1) / max(seconds, 1e-9):.1f}", refresh=False)
    return boxes, scores, frame_seconds


def track(
    tracker: Tracker,
    frames: list[np.ndarray],
    init_box: np.ndarray,
    bar: tqdm | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Run one tracker over decoded frames: (boxes, scores, seconds spent in init/update)."""
    boxes, scores, frame_seconds = track_timed(tracker, frames, init_box, bar)
    return boxes, scores, float(frame_seconds.sum())


def build_tracker(factory: TrackerFactory, name: str) -> Tracker:
    try:
        return factory(name)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as error:
        # Missing weights, an unknown name or config field (--set): say which tracker.
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise OPEError(f"cannot build tracker {name!r}: {message}") from error


def print_warning(message: str) -> None:
    """The default ``warn`` of :func:`evaluate`: the message on stderr."""
    print(message, file=sys.stderr)


def uninformative_warning(sequence: str, result: SequenceResult) -> str:
    return (
        f"warning: {sequence}: no ground truth after frame 1 (scored {result.scored_frames} "
        "frame: the given box), so its score says nothing; left out of the means"
    )


def run_trackers(
    trackers: list[str],
    sequences: Iterable[Sequence],
    factory: TrackerFactory,
    run_one: RunOne[Run],
    *,
    max_frames: int | None = None,
    progress: bool = True,
    done: dict[tuple[str, str], Run] | None = None,
    on_done: Callable[[Run], None] | None = None,
    on_each: Callable[[Run], None] | None = None,
    built: dict[str, Tracker] | None = None,
) -> dict[str, list[Run]]:
    """Every tracker on every sequence, on the same decoded frames; runs per tracker, in sequence
    order. ``run_one(name, tracker, sequence, frames, bar)`` makes one run (the tracker is fresh
    for that sequence; ``bar`` counts its frames).

    ``done`` holds runs already made (``--resume``), keyed by (tracker, sequence): they are taken
    as they are, not run again. ``on_done`` is called with each new run as soon as it finishes,
    ``on_each`` with every run, done or new, in order. ``built``: trackers already built (never
    initialized) to use for the first sequence.
    """
    # Build each tracker once up front so a bad name or missing weights fails before any work;
    # that instance, never initialized, is used for the first sequence.
    unused: dict[str, Tracker] = (
        dict(built)
        if built is not None
        else {name: build_tracker(factory, name) for name in trackers}
    )
    done = done or {}
    runs: dict[str, list[Run]] = {name: [] for name in trackers}
    for sequence in sequences:
        sequence = truncate(sequence, max_frames)
        todo = [name for name in trackers if (name, sequence.name) not in done]
        for name in trackers:
            if (name, sequence.name) in done:
                runs[name].append(done[(name, sequence.name)])
                if on_each is not None:
                    on_each(done[(name, sequence.name)])
        if not todo:
            continue
        frames = decode_frames(sequence)
        for name in todo:
            tracker = unused.pop(name, None)
            if tracker is None:
                tracker = build_tracker(factory, name)
            with tqdm(
                total=len(frames),
                desc=f"{name} / {sequence.name}",
                unit="fr",
                disable=not progress,
                file=sys.stderr,
                dynamic_ncols=True,
            ) as bar:
                run = run_one(name, tracker, sequence, frames, bar)
            runs[name].append(run)
            if on_each is not None:
                on_each(run)
            if on_done is not None:
                on_done(run)
        del frames  # one sequence in memory at a time
    return runs


def evaluate(
    trackers: list[str],
    sequences: Iterable[Sequence],
    factory: TrackerFactory,
    *,
    max_frames: int | None = None,
    progress: bool = True,
    done: dict[tuple[str, str], TrackedSequence] | None = None,
    on_done: Callable[[TrackedSequence], None] | None = None,
    warn: Callable[[str], None] = print_warning,
    built: dict[str, Tracker] | None = None,
) -> dict[str, list[TrackedSequence]]:
    """Run every tracker on every sequence (one pass); returns runs per tracker, in sequence order.

    ``done``, ``on_done`` and ``built`` as in :func:`run_trackers`.
    """
    warned: set[str] = set()

    def check(t: TrackedSequence) -> None:
        if not t.result.informative and t.sequence not in warned:
            warned.add(t.sequence)
            warn(uninformative_warning(t.sequence, t.result))

    def one_pass(
        name: str, tracker: Tracker, sequence: Sequence, frames: list[np.ndarray], bar: tqdm
    ) -> TrackedSequence:
        boxes, scores, frame_seconds = track_timed(tracker, frames, sequence.init_box, bar)
        result = evaluate_sequence(boxes, sequence.ground_truth, sequence.name)
        # Per-video figures a tracker reports about itself (e.g. its prune rate).
        stats = tracker.run_stats() if hasattr(tracker, "run_stats") else {}
        seconds = float(frame_seconds.sum())
        return TrackedSequence(
            name, sequence.name, boxes, scores, seconds, result, dict(stats), frame_seconds
        )

    return run_trackers(
        trackers,
        sequences,
        factory,
        one_pass,
        max_frames=max_frames,
        progress=progress,
        done=done,
        on_done=on_done,
        on_each=check,
        built=built,
    )


def summarize(runs: dict[str, list[TrackedSequence]]) -> dict[str, dict]:
    """The JSON-shaped summary (see the module docstring for the exact shape)."""
    summary: dict[str, dict] = {}
    for name, tracked in runs.items():
        per_sequence = {
            t.sequence: {
                "auc": t.result.auc,
                "precision": t.result.precision,
                "norm_precision": t.result.norm_precision,
                "fps": float(t.fps),
                "frames": int(t.frames),
                "scored_frames": int(t.result.scored_frames),
                **{key: float(value) for key, value in t.stats.items()},
            }
            for t in tracked
        }
        # A sequence scored on frame 1 alone would add a "perfect" 0.952: leave it out.
        scored = [t for t in tracked if t.result.informative]
        summary[name] = {
            "per_sequence": per_sequence,
            "mean_auc": _mean(t.result.auc for t in scored),
            "mean_precision": _mean(t.result.precision for t in scored),
            "median_fps": float(np.median([t.fps for t in tracked])) if tracked else float("nan"),
            "excluded_from_means": [t.sequence for t in tracked if not t.result.informative],
        }
        for key in dict.fromkeys(k for t in tracked for k in t.stats):
            values = [t.stats[key] for t in tracked if key in t.stats]
            summary[name][f"mean_{key}"] = _mean(values)
            summary[name][f"std_{key}"] = float(np.std(values))
    return summary


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return float(np.mean(values)) if values else float("nan")


def resolve_sequences(data: Path, seqs: list[str], split: str | None) -> list[Sequence]:
    """Load the named sequences (all in ``data`` if none named; ``split`` filters or checks)."""
    if not data.is_dir():
        raise OPEError(f"data folder not found: {data}")
    available = sequence_names(data)
    try:
        in_split = sequence_names(data, split) if split else None
    except (ValueError, FileNotFoundError) as error:
        raise OPEError(str(error)) from error
    if seqs:
        unknown = [s for s in seqs if s not in available]
        if unknown:
            raise OPEError(
                f"unknown sequence {', '.join(unknown)} in {data} (have: {', '.join(available)})"
            )
        if in_split is not None:
            outside = [s for s in seqs if s not in in_split]
            if outside:
                raise OPEError(f"sequence {', '.join(outside)} is not in the {split!r} split")
        names = seqs
    elif in_split is not None:
        missing = [s for s in in_split if s not in available]
        if missing:
            raise OPEError(f"split {split!r} names {', '.join(missing)}, not found in {data}")
        names = in_split
    else:
        names = available
    if not names:
        raise OPEError(f"no sequences found in {data}")
    try:
        return [load_sequence(data / name) for name in dict.fromkeys(names)]
    except (ValueError, FileNotFoundError) as error:
        raise OPEError(str(error)) from error


def mean_auc(
    name: str,
    factory: Callable[[], Tracker],
    sequences: list[Sequence],
    max_frames: int | None = None,
) -> float:
    """Mean success AUC of the trackers ``factory()`` builds (one per sequence) over ``sequences``
    (their first ``max_frames`` frames), without progress bars: training's validation figure."""
    build: TrackerFactory = lambda _name: factory()  # noqa: E731
    runs = evaluate([name], sequences, build, max_frames=max_frames, progress=False)
    return float(summarize(runs)[name]["mean_auc"])
