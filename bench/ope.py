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
                                              "fps": f, "frames": n}},
                   "mean_auc": f, "mean_precision": f, "median_fps": f}}

where ``frames`` is the number of frames tracked (init frame included; the same count FPS uses)
and the metrics are those of :mod:`bench.metrics` (AUC of a perfect tracker = 20/21 = 0.952).
A tracker with ``run_stats()`` adds its per-video figures to each sequence's entry and their
``mean_<key>``/``std_<key>`` over sequences to its own (MetaRTT+Prune: ``prune_rate``,
``kept_conv``, ``kept_fc4``, ``kept_fc5``).
``--results DIR`` writes ``DIR/<tracker>/<seq>.txt``, one 1-based OTB ``x,y,w,h`` row per frame.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from collections.abc import Callable, Iterable
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


def evaluate(
    trackers: list[str],
    sequences: Iterable[Sequence],
    factory: TrackerFactory,
    *,
    max_frames: int | None = None,
    progress: bool = True,
) -> dict[str, list[TrackedSequence]]:
    """Run every tracker on every sequence; returns runs per tracker, in sequence order."""
    # Build each tracker once up front so a bad name or missing weights fails before any work;
    # that instance, never initialized, is used for the first sequence.
    unused: dict[str, Tracker] = {name: _build(factory, name) for name in trackers}
    runs: dict[str, list[TrackedSequence]] = {name: [] for name in trackers}
    for sequence in sequences:
        sequence = truncate(sequence, max_frames)
        frames = decode_frames(sequence)
        for name in trackers:
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
            runs[name].append(
                TrackedSequence(name, sequence.name, boxes, scores, seconds, result, dict(stats))
            )
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
                **{key: float(value) for key, value in t.stats.items()},
            }
            for t in tracked
        }
        summary[name] = {
            "per_sequence": per_sequence,
            "mean_auc": _mean(t.result.auc for t in tracked),
            "mean_precision": _mean(t.result.precision for t in tracked),
            "median_fps": float(np.median([t.fps for t in tracked])) if tracked else float("nan"),
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

    curves = {name: mean_curves([t.result for t in tracked]) for name, tracked in runs.items()}
    sequences = {t.sequence for tracked in runs.values() for t in tracked}
    return plot_all(curves, folder, suffix=f"{len(sequences)} sequences")


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
) -> dict[str, dict]:
    """Evaluate ``trackers`` (names) on ``sequences``; returns the JSON-shaped summary.

    ``factory(name)`` builds a fresh tracker (default: :func:`bench.trackers.make_tracker` with
    ``data_dir``, the shared data root for weights). Optionally writes the JSON, the per-frame
    result files and the plots. Raises :class:`OPEError` for a tracker that cannot be built.
    """
    if not trackers:
        raise OPEError("no trackers given")
    if not sequences:
        raise OPEError("no sequences given")
    trackers = list(dict.fromkeys(trackers))  # a name twice would only overwrite its results
    build = factory or partial(make_tracker, data_dir=data_dir)
    runs = evaluate(trackers, sequences, build, max_frames=max_frames, progress=progress)
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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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
        )
    except OPEError as error:
        print(f"bench.ope: error: {error}", file=sys.stderr)
        return 2
    print(markdown_table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
