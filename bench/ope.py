"""One-pass evaluation (OPE, as OTB): every tracker on every sequence, same frames, one process.

    python -m bench.ope --data DIR [--seqs A,B] [--split val] --trackers NAME[,NAME...] \\
        --json OUT [--plots DIR] [--results DIR] [--report DIR] [--max-frames N] [--threads N]

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
included) and the metrics are those of :mod:`runtime.evaluation.metrics` (AUC of a perfect
tracker = 20/21 = 0.952). A sequence with no scored frame after the first (its score is frame 1's
given box alone) is reported with a warning, kept in ``per_sequence`` and left out of
``mean_auc``, ``mean_precision`` and the plots (``excluded_from_means`` lists it; FPS still
counts). Tracking and scoring are :mod:`runtime.evaluation.one_pass` (shared with training's
validation); this module adds the command line, saved and resumable runs and the files.

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
``--report DIR`` writes the run's HTML report there at the end (:mod:`bench.report`).
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
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from bench.peers import PEER_NAMES
from bench.report import ReportError, write_report
from bench.trackers import available_names, make_tracker
from runtime.atomic import write_atomic
from runtime.evaluation.metrics import evaluate_sequence, mean_curves
from runtime.evaluation.one_pass import (
    OPEError,
    TrackedSequence,
    TrackerFactory,
    build_tracker,
    evaluate,
    resolve_sequences,
    summarize,
    truncate,
)
from runtime.paths import data_root
from runtime.rtmdnet.prune import prune_setting
from runtime.sequences import Sequence, write_boxes_file
from runtime.tracker_api import Tracker


def _stderr_warning(message: str) -> None:
    print(f"bench.ope: {message}", file=sys.stderr)


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
    built = {name: build_tracker(build, name) for name in trackers}
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
    parser.add_argument(
        "--report", type=Path, default=None, help="folder for the run's HTML report (bench.report)"
    )
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


def tracker_specs(text: str) -> list[str]:
    """``--trackers`` as a list of specs, each naming a known tracker (OPEError otherwise)."""
    trackers = split_list(text)
    if not trackers:
        raise OPEError("--trackers names no tracker")
    known = available_names()
    unknown = [t for t in trackers if split_spec(t)[0] not in known]
    if unknown:
        raise OPEError(f"unknown tracker {', '.join(unknown)} (known: {', '.join(known)})")
    return trackers


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
        trackers = tracker_specs(args.trackers)
        sequences = resolve_sequences(data, split_list(args.seqs), args.split)
        threads = set_threads(args.threads)
        options = parse_overrides(args.overrides)
        if args.prune is not None:
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
        if args.report is not None:
            write_report([args.json], args.report, data=data, attributes_required=False)
    except (OPEError, ReportError) as error:
        print(f"bench.ope: error: {error}", file=sys.stderr)
        return 2
    print(markdown_table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
