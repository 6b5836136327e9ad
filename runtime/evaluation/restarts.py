"""Supervised (VOT-style) restart experiment: a tracker re-initialized after each failure.

The loop (:func:`track_with_restarts`), as VOT's baseline experiment and pysot's
``tools/test.py`` run it: the tracker is initialized from the ground truth on the first frame
and updated on every later one. A frame whose ground truth is *visible* (no NaN, positive width
and height) and whose IoU with the tracker's box is 0 is a **failure**. The tracker is then not
called on the next ``skip - 1`` frames and is initialized again from the ground truth ``skip``
frames after the failure (``skip = 5``: a failure on frame f, a re-init on frame f + 5, pysot's
``frame_counter = idx + 5``). A frame whose ground truth is not visible is never a failure (the
tracker is updated there as usual; its IoU is unknown) and a re-init that falls on such a frame
waits for the next visible one. A failure within the last ``skip`` frames gets no re-init.
Each frame gets a :class:`FrameState` (VOT's result-file codes: 1 init, 2 failure, 0 skipped).

Scores (:func:`score_restarts`), per sequence:

* **failures**: the frames in state ``FAILED``.
* **accuracy**: the mean IoU over the frames the tracker reported a box on that overlaps the
  ground truth (state ``TRACKED``) with visible ground truth, leaving out the burn-in: each
  (re-)initialization frame and the ``burn_in - 1`` frames after it (``burn_in = 10``, VOT's
  and pysot's ``ar_benchmark`` ``burnin=10``: the boxes just after an init are still the given
  one). Left out as well, as in VOT: failure frames (their IoU is 0 by definition; robustness
  counts them), skipped frames and init frames. NaN when no frame is left.
* **average overlap** (EAO-style, a simplified definition, *not* VOT's EAO, which averages
  no-reset fragments over a range of sequence lengths): the mean per-frame overlap over every
  frame with visible ground truth after the first initialization, where a tracked frame counts
  its IoU and the frames from a failure up to and including its re-init frame (the failure
  frame, the skipped frames, the re-init frame, whose box is the given one) count 0. So a
  failure costs ``skip + 1`` zero frames, and a tracker that never fails gets its plain mean IoU
  after frame 1. NaN when there is no such frame.

Over sequences (:func:`summarize_restarts`): ``accuracy`` and ``eao`` are means over the
sequences (each weighs the same, as the OTB means; NaN ones left out), ``robustness`` is
failures per 100 frames, pooled (``100 * total failures / total frames``, as pysot's
``ar_benchmark``), ``failures`` the total. FPS counts the ``init``/``update`` calls made.
:func:`restart_runner` is the experiment for :func:`runtime.evaluation.one_pass.run_trackers`
(every tracker on every sequence, same frames; ``bench.ope --restart`` is its command line).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from tqdm import tqdm

from runtime.boxes import iou
from runtime.evaluation.one_pass import RunOne
from runtime.sequences import Sequence
from runtime.tracker_api import Tracker


class FrameState(IntEnum):
    """What happened on a frame of a restart run (VOT's codes where VOT has one)."""

    SKIPPED = 0  # not given to the tracker: after a failure, before the re-init
    INITIALIZED = 1  # init() from the ground truth
    FAILED = 2  # update() gave a box with IoU 0 against visible ground truth
    TRACKED = 3  # update() gave any other box


@dataclass(frozen=True)
class RestartSettings:
    skip: int = 5  # re-init this many frames after a failure (VOT, pysot)
    burn_in: int = 10  # frames from each init left out of accuracy (VOT, pysot: burnin=10)

    def __post_init__(self) -> None:
        if self.skip < 1:
            raise ValueError(
                f"skip must be at least 1 (re-init after the failure), got {self.skip}"
            )
        if self.burn_in < 0:
            raise ValueError(f"burn_in must be at least 0, got {self.burn_in}")


@dataclass
class RestartRun:
    """The per-frame record of one restart run over one sequence."""

    boxes: np.ndarray  # (N, 4) 0-based; the ground truth on init frames, NaN on skipped ones
    states: np.ndarray  # (N,) FrameState codes
    frame_seconds: np.ndarray  # (N,) seconds in each frame's init/update call; 0 when skipped

    @property
    def failures(self) -> int:
        return int(np.count_nonzero(self.states == FrameState.FAILED))

    @property
    def calls(self) -> int:
        """init and update calls made (every frame but the skipped ones)."""
        return int(np.count_nonzero(self.states != FrameState.SKIPPED))


def visible_frames(ground_truth: np.ndarray) -> np.ndarray:
    """Frames whose ground truth can be scored and initialized from: finite, positive size."""
    gt = np.asarray(ground_truth, dtype=np.float64).reshape(-1, 4)
    with np.errstate(invalid="ignore"):
        return np.isfinite(gt).all(axis=1) & (gt[:, 2] > 0) & (gt[:, 3] > 0)


def frame_overlaps(boxes: np.ndarray, ground_truth: np.ndarray) -> np.ndarray:
    """(N,) IoU per frame in [0, 1]: NaN where the ground truth is not visible, 0 for a NaN box."""
    values = np.clip(np.nan_to_num(iou(boxes, ground_truth), nan=0.0), 0.0, 1.0)
    return np.where(visible_frames(ground_truth), values, np.nan)


def track_with_restarts(
    tracker: Tracker,
    frames: list[np.ndarray],
    ground_truth: np.ndarray,
    settings: RestartSettings | None = None,
    bar: tqdm | None = None,
) -> RestartRun:
    """Run one tracker over decoded frames, re-initializing it from ``ground_truth`` (0-based,
    frame-aligned) ``settings.skip`` frames after each failure. The same tracker object is
    initialized again (``init`` starts tracking afresh, as VOT's protocol does)."""
    settings = settings or RestartSettings()
    gt = np.asarray(ground_truth, dtype=np.float64).reshape(-1, 4)
    if len(gt) != len(frames):
        raise ValueError(f"{len(frames)} frames but {len(gt)} ground-truth boxes")
    visible = visible_frames(gt)
    boxes = np.full((len(frames), 4), np.nan)
    states = np.full(len(frames), FrameState.SKIPPED, dtype=np.int8)
    frame_seconds = np.zeros(len(frames), dtype=np.float64)
    tracking, restart_at = False, 0
    for index, frame in enumerate(frames):
        if not tracking and index >= restart_at and visible[index]:
            start = time.perf_counter()
            tracker.init(frame, gt[index].copy())
            frame_seconds[index] = time.perf_counter() - start
            boxes[index], states[index], tracking = gt[index], FrameState.INITIALIZED, True
        elif tracking:
            start = time.perf_counter()
            box, _score = tracker.update(frame)
            frame_seconds[index] = time.perf_counter() - start
            boxes[index] = np.asarray(box, dtype=np.float64).reshape(4)
            overlap = frame_overlaps(boxes[index : index + 1], gt[index : index + 1])[0]
            if overlap == 0.0:  # NaN (ground truth not visible) is never a failure
                states[index], tracking = FrameState.FAILED, False
                restart_at = index + settings.skip
            else:
                states[index] = FrameState.TRACKED
        if bar is not None:
            bar.update(1)
    return RestartRun(boxes, states, frame_seconds)


@dataclass(frozen=True)
class RestartScores:
    """One restart run's figures (definitions in the module docstring)."""

    frames: int
    failures: int
    accuracy: float
    accuracy_frames: int  # frames the accuracy is the mean over
    average_overlap: float
    overlap_frames: int  # frames the average overlap is the mean over
    calls: int
    seconds: float

    @property
    def fps(self) -> float:
        # Guard against a zero timer reading on a trivially fast test double.
        return self.calls / max(self.seconds, 1e-9)


def _since_init(states: np.ndarray) -> np.ndarray:
    """(N,) frames since the latest init at or before each frame (-1 before the first)."""
    since = np.full(len(states), -1)
    last = None
    for index, state in enumerate(states):
        if state == FrameState.INITIALIZED:
            last = index
        if last is not None:
            since[index] = index - last
    return since


def score_restarts(
    run: RestartRun, ground_truth: np.ndarray, settings: RestartSettings | None = None
) -> RestartScores:
    """Failures, accuracy and the EAO-style average overlap of one run (module docstring)."""
    settings = settings or RestartSettings()
    overlaps = frame_overlaps(run.boxes, ground_truth)
    visible = ~np.isnan(overlaps)
    states = np.asarray(run.states)
    since = _since_init(states)
    counted = visible & (states == FrameState.TRACKED) & (since >= settings.burn_in)
    first_init = np.flatnonzero(states == FrameState.INITIALIZED)
    after_first = np.arange(len(states)) > (first_init[0] if len(first_init) else len(states))
    in_overlap = visible & after_first
    # Tracked frames keep their IoU; failure, skipped and re-init frames count 0.
    per_frame = np.where(states == FrameState.TRACKED, np.nan_to_num(overlaps), 0.0)
    return RestartScores(
        frames=len(states),
        failures=run.failures,
        accuracy=float(overlaps[counted].mean()) if counted.any() else float("nan"),
        accuracy_frames=int(counted.sum()),
        average_overlap=float(per_frame[in_overlap].mean()) if in_overlap.any() else float("nan"),
        overlap_frames=int(in_overlap.sum()),
        calls=run.calls,
        seconds=float(np.sum(run.frame_seconds)),
    )


@dataclass
class RestartSequence:
    """One tracker's restart run over one sequence, and its scores."""

    tracker: str
    sequence: str
    run: RestartRun
    scores: RestartScores


def restart_runner(settings: RestartSettings | None = None) -> RunOne[RestartSequence]:
    """One restart run per (tracker, sequence), for :func:`runtime.evaluation.one_pass.run_trackers`
    (every tracker on every sequence, on the same decoded frames, in one process)."""
    settings = settings or RestartSettings()

    def one_run(
        name: str, tracker: Tracker, sequence: Sequence, frames: list[np.ndarray], bar: tqdm
    ) -> RestartSequence:
        run = track_with_restarts(tracker, frames, sequence.ground_truth, settings, bar)
        scores = score_restarts(run, sequence.ground_truth, settings)
        bar.set_postfix(failures=scores.failures, refresh=False)
        return RestartSequence(name, sequence.name, run, scores)

    return one_run


def summarize_restarts(runs: dict[str, list[RestartSequence]]) -> dict[str, dict]:
    """Per tracker: ``per_sequence`` figures, then ``accuracy``, ``robustness`` (failures per 100
    frames), ``failures``, ``frames``, ``eao`` and ``median_fps`` (module docstring)."""
    summary: dict[str, dict] = {}
    for name, done in runs.items():
        scores = [r.scores for r in done]
        frames = sum(s.frames for s in scores)
        failures = sum(s.failures for s in scores)
        summary[name] = {
            "per_sequence": {
                r.sequence: {
                    "frames": r.scores.frames,
                    "failures": r.scores.failures,
                    "accuracy": r.scores.accuracy,
                    "accuracy_frames": r.scores.accuracy_frames,
                    "average_overlap": r.scores.average_overlap,
                    "overlap_frames": r.scores.overlap_frames,
                    "fps": float(r.scores.fps),
                }
                for r in done
            },
            "accuracy": _nanmean([s.accuracy for s in scores]),
            "robustness": 100.0 * failures / frames if frames else float("nan"),
            "failures": failures,
            "frames": frames,
            "eao": _nanmean([s.average_overlap for s in scores]),
            "median_fps": float(np.median([s.fps for s in scores])) if scores else float("nan"),
        }
    return summary


def _nanmean(values: list[float]) -> float:
    kept = [v for v in values if not np.isnan(v)]
    return float(np.mean(kept)) if kept else float("nan")
