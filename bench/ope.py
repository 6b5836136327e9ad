"""One-pass evaluation (OPE, as OTB): every tracker on every sequence, same frames, one process.

    python -m bench.ope --data DIR [--seqs A,B] [--split val] --trackers NAME[,NAME...] \\
        --json OUT [--plots DIR] [--results DIR] [--max-frames N] [--threads N]

For each sequence the frames are decoded once (``cv2.imread``, BGR) into memory; then each tracker,
built fresh for that sequence, is initialized on frame 0 with the ground-truth box and updated on
every later frame. The box reported for frame 0 is the given initial box. Speed counts tracking
only: ``time.perf_counter`` around each ``init`` and ``update`` call, never image decoding, and
FPS = frames (the init frame included) / total tracking time.

``--json`` has exactly this shape (means over sequences, median FPS over sequences)::

    {"<tracker>": {"per_sequence": {"<seq>": {"auc": f, "precision": f, "norm_precision": f,
                                              "fps": f, "frames": n, "scored_frames": n}},
                   "mean_auc": f, "mean_precision": f, "median_fps": f,
                   "excluded_from_means": ["<seq>", ...]}}

where ``frames`` is the number of frames tracked (init frame included; the same count FPS uses),
``scored_frames`` the number the metrics were computed over (ground truth not NaN, frame 1
included) and the metrics are those of :mod:`bench.metrics` (AUC of a perfect tracker = 20/21 =
0.952). A sequence with no scored frame after the first (its score is frame 1's given box alone)
is reported with a warning, kept in ``per_sequence`` and left out of ``mean_auc``,
``mean_precision`` and the plots (``excluded_from_means`` lists it; FPS still counts).

Progress is kept as it is made: after every tracker's run over a sequence, that run (its boxes,
scores and time) is saved atomically to ``<json stem>.runs/`` beside the JSON, the ``--json`` file
is rewritten atomically with the summary of the runs done so far and ``--results`` gets that
run's boxes file. A killed run thus keeps everything finished; ``--resume`` continues it, running
only the (tracker, sequence) pairs not yet saved, and refuses (one line) when the trackers, the
sequences, ``--max-frames`` or the config overrides differ from the saved run's. Without
``--resume`` the saved runs of an earlier invocation are cleared first.
A tracker with ``run_stats()`` adds its per-video figures to each sequence's entry and their
``mean_<key>``/``std_<key>`` over sequences to its own (MetaRTT+Prune: ``prune_rate``,
``kept_conv``, ``kept_fc4``, ``kept_fc5``).
``--results DIR`` writes ``DIR/<tracker>/<seq>.txt``, one 1-based OTB ``x,y,w,h`` row per frame.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import io
import json
import re
import signal
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from bench.metrics import SequenceResult, evaluate_sequence, mean_curves
from bench.peers import PEER_NAMES
from bench.trackers import available_names, make_tracker
from runtime.atomic import write_atomic
from runtime.paths import data_root
from runtime.sequences import Sequence, load_sequence, sequence_names, write_boxes_file
from runtime.tracker_api import Tracker

TrackerFactory = Callable[[str], Tracker]

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


def track(
    tracker: Tracker,
    frames: list[np.ndarray],
    init_box: np.ndarray,
    bar: tqdm | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Run one tracker over decoded frames: (boxes, scores, seconds spent in init/update)."""
    boxes = np.empty((len(frames), 4), dtype=np.float64)
    scores = np.empty(len(frames), dtype=np.float64)
    boxes[0] = np.asarray(init_box, dtype=np.float64).reshape(4)
    scores[0] = 1.0

    start = time.perf_counter()
    tracker.init(frames[0], boxes[0].copy())
    seconds = time.perf_counter() - start
    if bar is not None:
        bar.update(1)

    for index in range(1, len(frames)):
        start = time.perf_counter()
        box, score = tracker.update(frames[index])
        seconds += time.perf_counter() - start
        boxes[index] = np.asarray(box, dtype=np.float64).reshape(4)
        scores[index] = float(score)
        if bar is not None:
            bar.update(1)
            if index % _POSTFIX_EVERY == 0 or index == len(frames) - 1:
                bar.set_postfix(fps=f"{(index + 1) / max(seconds, 1e-9):.1f}", refresh=False)
    return boxes, scores, seconds


def _build(factory: TrackerFactory, name: str) -> Tracker:
    try:
        return factory(name)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as error:
        # Missing weights, an unknown name or config field (--set): say which tracker.
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise OPEError(f"cannot build tracker {name!r}: {message}") from error


def _stderr_warning(message: str) -> None:
    print(f"bench.ope: {message}", file=sys.stderr)


def uninformative_warning(sequence: str, result: SequenceResult) -> str:
    return (
        f"warning: {sequence}: no ground truth after frame 1 (scored {result.scored_frames} "
        "frame: the given box), so its score says nothing; left out of the means"
    )


def evaluate(
    trackers: list[str],
    sequences: Iterable[Sequence],
    factory: TrackerFactory,
    *,
    max_frames: int | None = None,
    progress: bool = True,
    done: dict[tuple[str, str], TrackedSequence] | None = None,
    on_done: Callable[[TrackedSequence], None] | None = None,
    warn: Callable[[str], None] = _stderr_warning,
    built: dict[str, Tracker] | None = None,
) -> dict[str, list[TrackedSequence]]:
    """Run every tracker on every sequence; returns runs per tracker, in sequence order.

    ``done`` holds runs already made (``--resume``), keyed by (tracker, sequence): they are taken
    as they are, not run again. ``on_done`` is called with each new run as soon as it finishes.
    ``built``: trackers already built (never initialized) to use for the first sequence.
    """
    # Build each tracker once up front so a bad name or missing weights fails before any work;
    # that instance, never initialized, is used for the first sequence.
    unused: dict[str, Tracker] = (
        dict(built) if built is not None else {name: _build(factory, name) for name in trackers}
    )
    done = done or {}
    runs: dict[str, list[TrackedSequence]] = {name: [] for name in trackers}
    warned: set[str] = set()

    def check(t: TrackedSequence) -> None:
        if not t.result.informative and t.sequence not in warned:
            warned.add(t.sequence)
            warn(uninformative_warning(t.sequence, t.result))

    for sequence in sequences:
        sequence = truncate(sequence, max_frames)
        todo = [name for name in trackers if (name, sequence.name) not in done]
        for name in trackers:
            if (name, sequence.name) in done:
                runs[name].append(done[(name, sequence.name)])
                check(done[(name, sequence.name)])
        if not todo:
            continue
        frames = decode_frames(sequence)
        for name in todo:
            tracker = unused.pop(name, None)
            if tracker is None:
                tracker = _build(factory, name)
            with tqdm(
                total=len(frames),
                desc=f"{name} / {sequence.name}",
                unit="fr",
                disable=not progress,
                file=sys.stderr,
                dynamic_ncols=True,
            ) as bar:
                boxes, scores, seconds = track(tracker, frames, sequence.init_box, bar)
            result = evaluate_sequence(boxes, sequence.ground_truth, sequence.name)
            # Per-video figures a tracker reports about itself (e.g. its prune rate).
            stats = tracker.run_stats() if hasattr(tracker, "run_stats") else {}
            tracked = TrackedSequence(
                name, sequence.name, boxes, scores, seconds, result, dict(stats)
            )
            runs[name].append(tracked)
            check(tracked)
            if on_done is not None:
                on_done(tracked)
        del frames  # one sequence in memory at a time
    return runs


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


def markdown_table(summary: dict[str, dict]) -> str:
    """Tracker, mean AUC, mean precision (20 px), median FPS, one row per tracker.

    A prune-rate column (mean ± std over the sequences) joins when a tracker reports one.
    """
    pruning = any("mean_prune_rate" in entry for entry in summary.values())
    lines = [
        "| tracker | mean AUC | mean precision@20px | median FPS |"
        + (" prune rate |" if pruning else ""),
        "| --- | ---: | ---: | ---: |" + (" ---: |" if pruning else ""),
    ]
    for name, entry in summary.items():
        row = (
            f"| {name} | {entry['mean_auc']:.3f} | {entry['mean_precision']:.3f} "
            f"| {entry['median_fps']:.1f} |"
        )
        if pruning:
            rate = entry.get("mean_prune_rate")
            row += f" {rate:.1%} ± {entry['std_prune_rate']:.1%} |" if rate is not None else " - |"
        lines.append(row)
    excluded = list(dict.fromkeys(s for e in summary.values() for s in e["excluded_from_means"]))
    if excluded:
        lines += [
            "",
            f"Means leave out {', '.join(excluded)}: no ground truth after frame 1.",
        ]
    return "\n".join(lines)


def write_json(summary: dict[str, dict], path: Path) -> None:
    """Write the summary atomically (temporary file, then rename)."""
    write_atomic(path, json.dumps(summary, indent=2) + "\n")


def write_results(runs: dict[str, list[TrackedSequence]], folder: Path) -> None:
    """``folder/<tracker>/<seq>.txt``: one 1-based OTB row per frame (converted by the writer)."""
    for name, tracked in runs.items():
        for t in tracked:
            write_boxes_file(Path(folder) / name / f"{t.sequence}.txt", t.boxes)


def write_plots(runs: dict[str, list[TrackedSequence]], folder: Path) -> list[Path]:
    """Success / precision / normalized precision plots of the mean curves of every tracker."""
    from bench.plots import plot_all  # matplotlib only when plots are asked for

    scored = {
        name: [t.result for t in tracked if t.result.informative] for name, tracked in runs.items()
    }
    curves = {name: mean_curves(results) for name, results in scored.items() if results}
    sequences = {r.name for results in scored.values() for r in results}
    return plot_all(curves, folder, suffix=f"{len(sequences)} sequences")


def runs_dir_for(json_path: Path) -> Path:
    """Where a run writing ``json_path`` keeps its finished (tracker, sequence) runs."""
    json_path = Path(json_path)
    return json_path.with_name(f"{json_path.stem}.runs")


def _slug(spec: str) -> str:
    """A file-name-safe, collision-free folder name for a tracker spec (specs hold / [ ; =)."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", spec).strip("._")[:60] or "tracker"
    return f"{readable}-{hashlib.sha1(spec.encode()).hexdigest()[:8]}"


class RunStore:
    """Finished runs on disk, one ``<tracker slug>/<sequence>.npz`` each, plus ``manifest.json``
    naming the trackers, sequences, frame limit and config the runs belong to."""

    MANIFEST = "manifest.json"
    VERSION = 1

    def __init__(self, folder: Path, manifest: dict[str, object]) -> None:
        self.folder = Path(folder)
        self.manifest = {"version": self.VERSION, **manifest}

    def _path(self, tracker: str, sequence: str) -> Path:
        return self.folder / _slug(tracker) / f"{sequence}.npz"

    def start(self) -> None:
        """A fresh run: forget the runs of an earlier one here, write this run's manifest."""
        if self.folder.is_dir():
            for old in self.folder.glob("*/*.npz"):
                old.unlink(missing_ok=True)
            for sub in self.folder.iterdir():
                if sub.is_dir() and not any(sub.iterdir()):
                    sub.rmdir()
        write_atomic(self.folder / self.MANIFEST, json.dumps(self.manifest, indent=2) + "\n")

    def resume(self, sequences: list[Sequence], notify: Callable[[str], None]) -> dict:
        """The runs saved by an earlier, identical run: {(tracker, sequence): TrackedSequence}.

        Raises OPEError (one line) when the saved run had other trackers, sequences, frame limit
        or config. With nothing saved, starts afresh and says so.
        """
        manifest_path = self.folder / self.MANIFEST
        if not manifest_path.is_file():
            notify(f"--resume: no earlier run in {self.folder}; starting from the beginning")
            self.start()
            return {}
        try:
            saved = json.loads(manifest_path.read_text())
        except ValueError as error:
            raise OPEError(f"--resume: cannot read {manifest_path}: {error}") from None
        for key, what in (
            ("trackers", "--trackers"),
            ("sequences", "sequences"),
            ("max_frames", "--max-frames"),
            ("config", "--set/--prune"),
        ):
            old, new = saved.get(key), self.manifest.get(key)
            if isinstance(old, list) and isinstance(new, list):
                same = sorted(map(str, old)) == sorted(map(str, new))
            else:
                same = old == new
            if not same:
                raise OPEError(
                    f"--resume: {self.folder} holds a run with {what} {_shown(old)}, this one "
                    f"has {_shown(new)}; give the same, or leave out --resume to start again"
                )
        by_name = {s.name: s for s in sequences}
        done: dict[tuple[str, str], TrackedSequence] = {}
        for tracker in self.manifest["trackers"]:  # type: ignore[union-attr]
            for name, sequence in by_name.items():
                path = self._path(tracker, name)
                if path.is_file():
                    loaded = self._load(path, tracker, sequence)
                    if loaded is not None:
                        done[(tracker, name)] = loaded
        total = len(by_name) * len(self.manifest["trackers"])  # type: ignore[arg-type]
        notify(f"--resume: {len(done)} of {total} runs already done in {self.folder}")
        return done

    def save(self, tracked: TrackedSequence) -> None:
        buffer = io.BytesIO()
        np.savez(
            buffer,
            boxes=tracked.boxes,
            scores=tracked.scores,
            seconds=np.float64(tracked.seconds),
            stats=np.array(json.dumps(tracked.stats)),
            tracker=np.array(tracked.tracker),
            sequence=np.array(tracked.sequence),
        )
        write_atomic(self._path(tracked.tracker, tracked.sequence), buffer.getvalue())

    @staticmethod
    def _load(path: Path, tracker: str, sequence: Sequence) -> TrackedSequence | None:
        """A saved run, or None (it is then run again) if it is unreadable or does not fit."""
        try:
            with np.load(path, allow_pickle=False) as data:
                boxes = np.asarray(data["boxes"], dtype=np.float64).reshape(-1, 4)
                scores = np.asarray(data["scores"], dtype=np.float64).reshape(-1)
                seconds = float(data["seconds"])
                stats = json.loads(str(data["stats"]))
                same = str(data["tracker"]) == tracker and str(data["sequence"]) == sequence.name
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None
        if not same or len(boxes) != len(sequence) or len(scores) != len(boxes):
            return None
        result = evaluate_sequence(boxes, sequence.ground_truth, sequence.name)
        return TrackedSequence(tracker, sequence.name, boxes, scores, seconds, result, stats)


def _shown(value: object) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value)) or "(none)"
    return json.dumps(value)


def run_ope(
    trackers: list[str],
    sequences: list[Sequence],
    *,
    data_dir: Path | None = None,
    factory: TrackerFactory | None = None,
    max_frames: int | None = None,
    json_path: Path | None = None,
    results_dir: Path | None = None,
    plots_dir: Path | None = None,
    progress: bool = True,
    resume: bool = False,
    runs_dir: Path | None = None,
    config: dict[str, object] | None = None,
    warn: Callable[[str], None] = _stderr_warning,
) -> dict[str, dict]:
    """Evaluate ``trackers`` (names) on ``sequences``; returns the JSON-shaped summary.

    ``factory(name)`` builds a fresh tracker (default: :func:`bench.trackers.make_tracker` with
    ``data_dir``, the shared data root for weights). Optionally writes the JSON, the per-frame
    result files and the plots. Raises :class:`OPEError` for a tracker that cannot be built.

    With ``json_path`` (or ``runs_dir``) every finished run is saved at once in ``runs_dir``
    (default :func:`runs_dir_for`), the JSON and the ``results_dir`` files are brought up to date
    after each run, and ``resume`` continues an earlier run there (``config``: the settings the
    runs depend on beyond trackers, sequences and ``max_frames``; a resume must match them).
    """
    if not trackers:
        raise OPEError("no trackers given")
    if not sequences:
        raise OPEError("no sequences given")
    trackers = list(dict.fromkeys(trackers))  # a name twice would only overwrite its results
    if max_frames is not None and max_frames < 1:
        raise OPEError(f"--max-frames must be at least 1, got {max_frames}")
    build = factory or partial(make_tracker, data_dir=data_dir)
    # Build every tracker before touching any file: a bad name or missing weights fails first.
    built = {name: _build(build, name) for name in trackers}
    if runs_dir is None and json_path is not None:
        runs_dir = runs_dir_for(json_path)
    store = None
    done: dict[tuple[str, str], TrackedSequence] = {}
    if runs_dir is not None:
        manifest = {
            "trackers": trackers,
            "sequences": [s.name for s in sequences],
            "max_frames": max_frames,
            "config": config or {},
        }
        store = RunStore(runs_dir, manifest)
        if resume:
            done = store.resume([truncate(s, max_frames) for s in sequences], warn)
        else:
            store.start()
    elif resume:
        raise OPEError("--resume needs --json (the runs are kept beside it)")
    finished: dict[str, list[TrackedSequence]] = {name: [] for name in trackers}
    for (name, _), tracked in done.items():
        finished[name].append(tracked)
    order = {s.name: i for i, s in enumerate(sequences)}

    def on_done(tracked: TrackedSequence) -> None:
        if store is not None:
            store.save(tracked)
        finished[tracked.tracker].append(tracked)
        finished[tracked.tracker].sort(key=lambda t: order.get(t.sequence, len(order)))
        if json_path is not None:
            write_json(summarize({k: v for k, v in finished.items() if v}), json_path)
        if results_dir is not None:
            write_results({tracked.tracker: [tracked]}, results_dir)

    runs = evaluate(
        trackers,
        sequences,
        build,
        max_frames=max_frames,
        progress=progress,
        done=done,
        on_done=on_done,
        warn=warn,
        built=built,
    )
    summary = summarize(runs)
    if json_path is not None:
        write_json(summary, json_path)
    if results_dir is not None:
        write_results(runs, results_dir)
    if plots_dir is not None:
        write_plots(runs, plots_dir)
        (Path(plots_dir) / "summary.md").write_text(markdown_table(summary) + "\n")
    return summary


def split_list(text: str | None) -> list[str]:
    return [item.strip() for item in (text or "").split(",") if item.strip()]


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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ope",
        description="One-pass evaluation (success, precision, normalized precision, FPS).",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="folder of OTB-layout sequences (default: <data root>/sequences)",
    )
    parser.add_argument("--seqs", default=None, help="comma-separated sequence names")
    parser.add_argument("--split", default=None, help="a split in splits.json (e.g. val)")
    parser.add_argument(
        "--trackers",
        required=True,
        help="comma-separated tracker names; ours take per-tracker overrides as "
        "NAME[KEY=VALUE;KEY=VALUE], e.g. rtmdnet[backend=onnxruntime;export_dir=DIR]",
    )
    parser.add_argument("--json", type=Path, required=True, help="where to write the results")
    parser.add_argument("--plots", type=Path, default=None, help="folder for PNG plots")
    parser.add_argument("--results", type=Path, default=None, help="folder for per-frame boxes")
    parser.add_argument("--max-frames", type=int, default=None, help="first N frames only")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch and OpenCV (default: torch's default)",
    )
    parser.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="shared data folder with weights and "
        "peer models (default: $TRACKER_DATA or ../shared/data)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field of our trackers (repeatable), e.g. --set lr_init=0.001 "
        "--set seed=1; OpenCV peers ignore it",
    )
    parser.add_argument(
        "--prune",
        nargs="?",
        const="shipped",
        metavar="CKPT|fit",
        help="run our trackers with MetaRTT channel pruning (same as --set prune=...): a "
        "pruning checkpoint from train/prune.py, 'fit', or no value for the shipped one",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue an earlier, stopped run writing the same --json: run only the (tracker, "
        "sequence) pairs it did not finish (its runs are kept in <json stem>.runs/); refused "
        "if the trackers, sequences, --max-frames or --set/--prune differ",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def split_spec(spec: str) -> tuple[str, dict[str, object]]:
    """``"rtmdnet[backend=onnxruntime;seed=1]"`` -> ``("rtmdnet", {...})``: per-tracker overrides.

    The whole spec stays the tracker's label in the results, so variants of one tracker can run
    side by side in one run.
    """
    name, bracket, rest = spec.partition("[")
    if not bracket:
        return spec, {}
    if not rest.endswith("]"):
        raise OPEError(f"tracker spec {spec!r}: expected NAME[KEY=VALUE;...]")
    items = [item for item in rest[:-1].split(";") if item.strip()]
    return name, parse_overrides(items)


def parse_overrides(items: list[str]) -> dict[str, object]:
    """``["lr_init=0.001", "backbone=vggm"]`` -> ``{"lr_init": 0.001, "backbone": "vggm"}``."""
    options: dict[str, object] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise OPEError(f"--set needs KEY=VALUE, got {item!r}")
        try:
            value: object = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text  # a bare word such as a backbone name
        options[key.strip()] = value
    return options


def set_threads(threads: int | None) -> int:
    import torch  # only the CLI decides thread counts; run_ope leaves the process as it is

    count = threads if threads is not None else torch.get_num_threads()
    if count < 1:
        raise OPEError(f"--threads must be at least 1, got {count}")
    torch.set_num_threads(count)
    cv2.setNumThreads(count)  # the same budget for the OpenCV peers, so speeds compare fairly
    return count


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (kill, timeout, a job scheduler) stops the run like Ctrl-C; restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread can set handlers: leave signals alone
        return
    previous = signal.getsignal(signal.SIGTERM)

    def handle(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    installed = previous != signal.SIG_IGN
    if installed:
        signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        if installed:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with _sigterm_as_interrupt():
        try:
            return _main(args)
        except KeyboardInterrupt:
            where = runs_dir_for(args.json)
            kept = (
                f"; finished runs are kept in {where} and {args.json}: run the same command "
                "with --resume to continue"
                if (where / RunStore.MANIFEST).is_file()
                else ""
            )
            print(f"bench.ope: interrupted{kept}", file=sys.stderr)
            return 130


def _main(args: argparse.Namespace) -> int:
    try:
        root = data_root(args.data_root)
        data = args.data if args.data is not None else root / "sequences"
        trackers = split_list(args.trackers)
        if not trackers:
            raise OPEError("--trackers names no tracker")
        known = available_names()
        unknown = [t for t in trackers if split_spec(t)[0] not in known]
        if unknown:
            raise OPEError(f"unknown tracker {', '.join(unknown)} (known: {', '.join(known)})")
        sequences = resolve_sequences(data, split_list(args.seqs), args.split)
        threads = set_threads(args.threads)
        options = parse_overrides(args.overrides)
        if args.prune is not None:
            from runtime.rtmdnet.prune import prune_setting

            try:
                options["prune"] = prune_setting(args.prune)
            except ValueError as error:
                raise OPEError(str(error)) from None

        def factory(spec: str) -> Tracker:
            name, own = split_spec(spec)
            if name in PEER_NAMES:
                return make_tracker(name, data_dir=root, **own)
            return make_tracker(name, data_dir=root, **{**options, **own})

        if not args.quiet:
            print(
                f"OPE: {len(trackers)} tracker(s) x {len(sequences)} sequence(s), "
                f"{threads} thread(s)",
                file=sys.stderr,
            )
        summary = run_ope(
            trackers,
            sequences,
            data_dir=root,
            factory=factory,
            max_frames=args.max_frames,
            json_path=args.json,
            results_dir=args.results,
            plots_dir=args.plots,
            progress=not args.quiet,
            resume=args.resume,
            # What the runs depend on beyond trackers and sequences: a resume must match it.
            config={"set": sorted(args.overrides), "prune": args.prune},
        )
    except OPEError as error:
        print(f"bench.ope: error: {error}", file=sys.stderr)
        return 2
    print(markdown_table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
