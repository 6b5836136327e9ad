"""One-pass evaluation (OPE, as OTB): every tracker on every sequence, same frames, one process.

    python -m bench.ope --data DIR [--seqs A,B] [--split val] --trackers NAME[,NAME...] \\
        --json OUT [--plots DIR] [--results DIR [--format otb|got10k]] [--report DIR] \\
        [--max-frames N] [--threads N] [--restart] [--resume]

For each sequence the frames are decoded once (``cv2.imread``, BGR) into memory; then each tracker,
built fresh for that sequence, is initialized on frame 0 with the ground-truth box and updated on
every later frame. The box reported for frame 0 is the given initial box. Speed counts tracking
only: ``time.perf_counter`` around each ``init`` and ``update`` call, never image decoding, and
FPS = frames (the init frame included) / total tracking time.

``--json`` has exactly this shape (means over sequences, median FPS over sequences)::

    {"<tracker>": {"per_sequence": {"<seq>": {"auc": f, "precision": f, "norm_precision": f,
                                              "fps": f, "frames": n, "scored_frames": n}},
                   "mean_auc": f, "mean_precision": f, "median_fps": f,
                   "excluded_from_means": ["<seq>", ...],
                   "environment": {"cpu": "AMD EPYC", "threads": n, "backend": "onnxruntime fp32",
                                   "date": "YYYY-MM-DD"},
                   "versus": {"peer": "<tracker>", "wins": n, "losses": n, "ties": n,
                              "per_sequence": {"<seq>": f}}}}

(``environment``: where it ran, :mod:`bench.environment`, ``-`` for what a tracker does not say;
``versus`` only with ``--peer NAME``, under every tracker but the peer: per sequence its AUC minus
the peer's, and the sequences it wins, loses or ties, a tie being a difference of at most
:data:`TIE_MARGIN`, over the sequences both score) where ``frames`` is the number of frames
tracked (init frame included; the same count FPS uses),
``scored_frames`` the number the metrics were computed over (ground truth not NaN, frame 1
included) and the metrics are those of :mod:`runtime.evaluation.metrics` (AUC of a perfect
tracker = 20/21 = 0.952). A sequence with no scored frame after the first (its score is frame 1's
given box alone) is reported with a warning, kept in ``per_sequence`` and left out of
``mean_auc``, ``mean_precision``, the table's mean normalized precision and the plots
(``excluded_from_means`` lists it; FPS still counts). Tracking and scoring are
:mod:`runtime.evaluation.one_pass` (shared with training's validation); this module adds the
command line, saved and resumable runs and the files.

Progress is kept as it is made: after every tracker's run over a sequence, that run (its boxes,
scores and per-frame times) is saved atomically to ``<json stem>.runs/`` beside the JSON
(:mod:`bench.run_store`), the ``--json`` file is rewritten atomically with the summary of the runs
done so far and ``--results`` gets that run's files. A killed run thus keeps everything finished;
``--resume`` continues it, running only the (tracker, sequence) pairs not yet saved, and refuses
(one line) when the trackers, the sequences, ``--max-frames`` or the config overrides differ from
the saved run's. Without ``--resume`` the saved runs of an earlier invocation are cleared first.
A tracker with ``run_stats()`` adds its per-video figures to each sequence's entry and their
``mean_<key>``/``std_<key>`` over sequences to its own (MetaRTT+Prune: ``prune_rate``,
``kept_conv``, ``kept_fc4``, ``kept_fc5``).
``--results DIR`` writes one 1-based ``x,y,w,h`` row per frame (:mod:`bench.result_files`):
``--format otb`` (the default) ``DIR/<tracker>/<seq>.txt``, ``--format got10k`` the GOT-10k
toolkit's ``DIR/<tracker>/<seq>/<seq>_001.txt`` and ``<seq>_time.txt`` (per-frame seconds).

``--restart`` runs the supervised, VOT-style experiment instead of one pass
(:mod:`runtime.evaluation.restarts`: re-init from the ground truth 5 frames after each failure,
IoU 0; accuracy, robustness, failures and an EAO-style average overlap, all defined there). Its
runs are saved and resumed like the one-pass ones (a restart run and a one-pass run never resume
each other: the manifest's config says which). It prints its own table and writes::

    {"restart": {"skip_frames": 5, "burn_in": 10,
                 "trackers": {"<tracker>": {"per_sequence": {"<seq>": {"frames": n,
                                  "failures": n, "accuracy": f, "accuracy_frames": n,
                                  "average_overlap": f, "overlap_frames": n, "fps": f}},
                              "accuracy": f, "robustness": f, "failures": n, "frames": n,
                              "eao": f, "median_fps": f}}}}

(``robustness``: failures per 100 frames; ``fps``: init/update calls per second). With
``--restart``, ``--results`` and ``--plots`` are refused: there are no one-pass boxes or curves.
``--report DIR`` writes the run's HTML report there at the end (:mod:`bench.report`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Generic

import numpy as np

from bench.environment import environment
from bench.report import ReportError, write_report
from bench.result_files import WRITE_FORMATS, write_results
from bench.run_store import ONE_PASS, R, RunFormat, RunStore, restart_format, runs_dir_for
from bench.trackers import available_names, make_tracker
from runtime.atomic import write_atomic
from runtime.cli.program import program_name
from runtime.cli.signals import StopSignals
from runtime.evaluation.metrics import mean_curves
from runtime.evaluation.one_pass import (
    OPEError,
    TrackedSequence,
    TrackerFactory,
    build_tracker,
    evaluate,
    resolve_sequences,
    run_trackers,
    summarize,
    truncate,
)
from runtime.evaluation.restarts import (
    RestartSequence,
    RestartSettings,
    restart_runner,
    summarize_restarts,
)
from runtime.opencv_peers import PEER_NAMES
from runtime.paths import data_root
from runtime.registry import unknown_tracker_message
from runtime.rtmdnet.prune import prune_setting
from runtime.sequences import Sequence
from runtime.specs import SpecError, parse_spec
from runtime.specs import parse_overrides as parse_spec_overrides
from runtime.threads import set_threads as runtime_set_threads
from runtime.tracker_api import Tracker


def _stderr_warning(message: str) -> None:
    print(f"bench.ope: {message}", file=sys.stderr)


def _fps(value: float) -> str:
    # Results read from another toolkit's files may hold no times (bench.score): no FPS then.
    return "-" if np.isnan(value) else f"{value:.1f}"


TIE_MARGIN = 0.005  # |AUC difference| on one sequence up to which --peer counts a tie
_FLOAT_SLACK = 1e-9  # AUCs are sums of float fractions: 0.505 - 0.5 is not exactly 0.005


def versus(summary: dict[str, dict], peer: str) -> dict[str, dict]:
    """Per tracker but ``peer``: its per-sequence AUC minus the peer's, over the sequences both
    scored (neither left out of the means), and the wins, losses and ties (|difference| <=
    :data:`TIE_MARGIN`) they make."""
    if peer not in summary:
        return {}
    theirs = summary[peer]
    counted = {
        seq: per["auc"]
        for seq, per in theirs["per_sequence"].items()
        if seq not in theirs["excluded_from_means"]
    }
    out = {}
    for name, entry in summary.items():
        if name == peer:
            continue
        diffs = {
            seq: float(per["auc"]) - float(counted[seq])
            for seq, per in entry["per_sequence"].items()
            if seq in counted and seq not in entry["excluded_from_means"]
        }
        ties = sum(abs(d) <= TIE_MARGIN + _FLOAT_SLACK for d in diffs.values())
        wins = sum(d > TIE_MARGIN + _FLOAT_SLACK for d in diffs.values())
        out[name] = {
            "peer": peer,
            "wins": wins,
            "losses": len(diffs) - wins - ties,
            "ties": ties,
            "per_sequence": diffs,
        }
    return out


def check_peer(peer: str | None, trackers: list[str], *, restart: bool) -> None:
    """OPEError unless ``peer`` is None or one of ``trackers`` in a one-pass run."""
    if peer is not None and peer not in trackers:
        raise OPEError(f"--peer {peer} is not one of --trackers ({', '.join(trackers)})")
    if peer is not None and restart:
        raise OPEError("--peer compares one-pass AUCs; it does not go with --restart")


def _wlt(entry: dict) -> str:
    counts = entry.get("versus")
    return "-" if counts is None else f"{counts['wins']}/{counts['losses']}/{counts['ties']}"


def markdown_table(summary: dict[str, dict]) -> str:
    """Tracker, mean AUC, mean precision (20 px), mean normalized precision, median FPS, one row
    per tracker (the normalized precision averaged over the same sequences as the AUC).

    A prune-rate column (mean ± std over the sequences) joins when a tracker reports one, and a
    wins/losses/ties column against the ``--peer`` when the summary has ``versus`` entries.
    """
    pruning = any("mean_prune_rate" in entry for entry in summary.values())
    peers = {entry["versus"]["peer"] for entry in summary.values() if "versus" in entry}
    against = f" W/L/T vs {peers.pop()} |" if peers else ""
    lines = [
        "| tracker | mean AUC | mean precision@20px | mean norm. precision | median FPS |"
        + (" prune rate |" if pruning else "")
        + against,
        "| --- | ---: | ---: | ---: | ---: |"
        + (" ---: |" if pruning else "")
        + (" ---: |" if against else ""),
    ]
    for name, entry in summary.items():
        kept = [
            per["norm_precision"]
            for seq, per in entry["per_sequence"].items()
            if seq not in entry["excluded_from_means"]
        ]
        norm = float(np.mean(kept)) if kept else float("nan")
        row = (
            f"| {name} | {entry['mean_auc']:.3f} | {entry['mean_precision']:.3f} | {norm:.3f} "
            f"| {_fps(entry['median_fps'])} |"
        )
        if pruning:
            rate = entry.get("mean_prune_rate")
            row += f" {rate:.1%} ± {entry['std_prune_rate']:.1%} |" if rate is not None else " - |"
        if against:
            row += f" {_wlt(entry)} |"
        lines.append(row)
    excluded = list(dict.fromkeys(s for e in summary.values() for s in e["excluded_from_means"]))
    if excluded:
        lines += [
            "",
            f"Means leave out {', '.join(excluded)}: no ground truth after frame 1.",
        ]
    if against:
        lines += [
            "",
            f"W/L/T: sequences won, lost and tied (|AUC difference| <= {TIE_MARGIN}) against the "
            "peer, over the sequences both score.",
        ]
    return "\n".join(lines)


def restart_json(summary: dict[str, dict], settings: RestartSettings) -> dict[str, dict]:
    """The ``--restart`` JSON (module docstring): the settings beside the per-tracker figures."""
    return {
        "restart": {
            "skip_frames": settings.skip,
            "burn_in": settings.burn_in,
            "trackers": summary,
        }
    }


def restart_table(summary: dict[str, dict], settings: RestartSettings) -> str:
    """Tracker, accuracy, robustness, failures, EAO-style average overlap, median FPS."""
    lines = [
        "| tracker | accuracy | robustness (failures / 100 frames) | failures | EAO-style "
        "| median FPS |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, entry in summary.items():
        lines.append(
            f"| {name} | {entry['accuracy']:.3f} | {entry['robustness']:.2f} "
            f"| {entry['failures']} | {entry['eao']:.3f} | {_fps(entry['median_fps'])} |"
        )
    frames = max((entry["frames"] for entry in summary.values()), default=0)
    lines += [
        "",
        f"{frames} frames; re-init {settings.skip} frames after each failure (IoU 0); accuracy "
        f"leaves out {settings.burn_in} burn-in frames from each init; EAO-style: the mean "
        "overlap with the frames from a failure to its re-init as 0 (not VOT's EAO).",
    ]
    return "\n".join(lines)


def write_json(summary: dict[str, dict], path: Path) -> None:
    """Write the summary atomically (temporary file, then rename)."""
    write_atomic(path, json.dumps(summary, indent=2) + "\n")


def write_plots(runs: dict[str, list[TrackedSequence]], folder: Path) -> list[Path]:
    """Success / precision / normalized precision plots of the mean curves of every tracker."""
    from bench.plots import plot_all  # matplotlib only when plots are asked for

    scored = {
        name: [t.result for t in tracked if t.result.informative] for name, tracked in runs.items()
    }
    curves = {name: mean_curves(results) for name, results in scored.items() if results}
    sequences = {r.name for results in scored.values() for r in results}
    return plot_all(curves, folder, suffix=f"{len(sequences)} sequences")


class _Session(Generic[R]):
    """One invocation's bookkeeping, one-pass or restart: the trackers checked and built before
    any file is touched, the saved runs (fresh or resumed) and the runs finished so far."""

    def __init__(
        self,
        trackers: list[str],
        sequences: list[Sequence],
        run_format: RunFormat[R],
        *,
        data_dir: Path | None,
        factory: TrackerFactory | None,
        max_frames: int | None,
        json_path: Path | None,
        resume: bool,
        runs_dir: Path | None,
        config: dict[str, object] | None,
        warn: Callable[[str], None],
    ) -> None:
        if not trackers:
            raise OPEError("no trackers given")
        if not sequences:
            raise OPEError("no sequences given")
        self.trackers = list(dict.fromkeys(trackers))  # a name twice would only overwrite
        if max_frames is not None and max_frames < 1:
            raise OPEError(f"--max-frames must be at least 1, got {max_frames}")
        self.build = factory or partial(make_tracker, data_dir=data_dir)
        # Build every tracker before touching any file: a bad name or missing weights fails first.
        self.built = {name: build_tracker(self.build, name) for name in self.trackers}
        if runs_dir is None and json_path is not None:
            runs_dir = runs_dir_for(json_path)
        self.store: RunStore[R] | None = None
        self.done: dict[tuple[str, str], R] = {}
        if runs_dir is not None:
            manifest = {
                "trackers": self.trackers,
                "sequences": [s.name for s in sequences],
                "max_frames": max_frames,
                "config": config or {},
            }
            self.store = RunStore(runs_dir, manifest, run_format)
            if resume:
                self.done = self.store.resume([truncate(s, max_frames) for s in sequences], warn)
            else:
                self.store.start()
        elif resume:
            raise OPEError("--resume needs --json (the runs are kept beside it)")
        self.finished: dict[str, list[R]] = {name: [] for name in self.trackers}
        for (name, _), run in self.done.items():
            self.finished[name].append(run)
        self._order = {s.name: i for i, s in enumerate(sequences)}

    def add(self, run: R) -> None:
        """A run just finished: save it, keep it with the others in sequence order."""
        if self.store is not None:
            self.store.save(run)
        self.finished[run.tracker].append(run)
        self.finished[run.tracker].sort(key=lambda r: self._order.get(r.sequence, len(self._order)))

    def finished_so_far(self) -> dict[str, list[R]]:
        """The runs finished (saved or new), per tracker that has any."""
        return {name: runs for name, runs in self.finished.items() if runs}


def run_ope(
    trackers: list[str],
    sequences: list[Sequence],
    *,
    data_dir: Path | None = None,
    factory: TrackerFactory | None = None,
    max_frames: int | None = None,
    json_path: Path | None = None,
    results_dir: Path | None = None,
    results_format: str = "otb",
    plots_dir: Path | None = None,
    progress: bool = True,
    resume: bool = False,
    runs_dir: Path | None = None,
    config: dict[str, object] | None = None,
    restart: RestartSettings | None = None,
    peer: str | None = None,
    warn: Callable[[str], None] = _stderr_warning,
) -> dict[str, dict]:
    """Evaluate ``trackers`` (names) on ``sequences``; returns the JSON-shaped summary.

    ``factory(name)`` builds a fresh tracker (default: :func:`bench.trackers.make_tracker` with
    ``data_dir``, the shared data root for weights). Optionally writes the JSON, the per-frame
    result files (``results_format``: ``otb`` or ``got10k``) and the plots. Raises
    :class:`OPEError` for a tracker that cannot be built.

    With ``json_path`` (or ``runs_dir``) every finished run is saved at once in ``runs_dir``
    (default :func:`runs_dir_for`), the JSON and the ``results_dir`` files are brought up to date
    after each run, and ``resume`` continues an earlier run there (``config``: the settings the
    runs depend on beyond trackers, sequences and ``max_frames``; a resume must match them).

    With ``restart``, the supervised experiment instead of one pass (``--restart``): the summary
    is :func:`runtime.evaluation.restarts.summarize_restarts`'s, the JSON :func:`restart_json`'s,
    the settings join ``config`` (a resume must have the same ones) and ``results_dir`` and
    ``plots_dir`` are refused.

    One-pass summaries record each tracker's ``environment`` (:mod:`bench.environment`) and, with
    ``peer`` (one of ``trackers``), every other tracker's ``versus`` it (:func:`versus`).
    """
    check_peer(peer, trackers, restart=restart is not None)
    if results_format not in WRITE_FORMATS:
        raise OPEError(f"--format must be one of {', '.join(WRITE_FORMATS)}, got {results_format}")
    if restart is not None and (results_dir is not None or plots_dir is not None):
        raise OPEError("--restart writes no --results or --plots (no one-pass boxes)")
    if restart is not None:
        config = {**(config or {}), "restart": {"skip": restart.skip, "burn_in": restart.burn_in}}
    session = _Session(
        trackers,
        sequences,
        ONE_PASS if restart is None else restart_format(restart),
        data_dir=data_dir,
        factory=factory,
        max_frames=max_frames,
        json_path=json_path,
        resume=resume,
        runs_dir=runs_dir,
        config=config,
        warn=warn,
    )

    threads = torch_threads()

    def summary_of(runs: dict) -> dict[str, dict]:
        if restart is not None:
            return summarize_restarts(runs)
        summary = summarize(runs)
        for spec, entry in summary.items():
            name = split_spec(spec)[0]
            entry["environment"] = environment(name, session.built[spec], threads)
        for spec, counts in versus(summary, peer).items() if peer is not None else ():
            summary[spec]["versus"] = counts
        return summary

    def write(summary: dict[str, dict]) -> None:
        if json_path is not None:
            write_json(summary if restart is None else restart_json(summary, restart), json_path)

    def on_done(run: TrackedSequence | RestartSequence) -> None:
        session.add(run)
        if json_path is not None:
            write(summary_of(session.finished_so_far()))
        if results_dir is not None:
            write_results({run.tracker: [run]}, results_dir, results_format)

    run_all = (
        partial(evaluate, warn=warn)
        if restart is None
        else partial(run_trackers, run_one=restart_runner(restart))
    )
    runs = run_all(
        session.trackers,
        sequences,
        session.build,
        max_frames=max_frames,
        progress=progress,
        done=session.done,
        on_done=on_done,
        built=session.built,
    )
    summary = summary_of(runs)
    write(summary)
    if results_dir is not None:
        write_results(runs, results_dir, results_format)
    if plots_dir is not None:
        write_plots(runs, plots_dir)
        (Path(plots_dir) / "summary.md").write_text(markdown_table(summary) + "\n")
    return summary


def split_list(text: str | None) -> list[str]:
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=program_name("python -m bench.ope"),
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
    parser.add_argument(
        "--format",
        dest="results_format",
        choices=WRITE_FORMATS,
        default="otb",
        help="layout of --results: otb (DIR/<tracker>/<seq>.txt, the default) or got10k "
        "(DIR/<tracker>/<seq>/<seq>_001.txt and <seq>_time.txt, the GOT-10k toolkit's)",
    )
    parser.add_argument(
        "--restart",
        action="store_true",
        help="supervised VOT-style experiment instead of one pass: re-init from the ground "
        "truth 5 frames after each failure (IoU 0); reports accuracy, robustness, failures "
        "and an EAO-style average overlap",
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
    add_set_argument(
        parser,
        "override a config field of our trackers (repeatable), e.g. --set lr_init=0.001 "
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
    parser.add_argument(
        "--peer",
        metavar="NAME",
        default=None,
        help="one of --trackers to compare the others against, sequence by sequence: the table "
        f"and the JSON ('versus') give each other tracker's wins, losses and ties (|AUC "
        f"difference| <= {TIE_MARGIN}) against it",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def tracker_specs(text: str) -> list[str]:
    """``--trackers`` as a list of specs, each naming a known tracker (OPEError otherwise)."""
    trackers = split_list(text)
    if not trackers:
        raise OPEError("--trackers names no tracker")
    known = available_names()
    unknown = [split_spec(t)[0] for t in trackers if split_spec(t)[0] not in known]
    if unknown:
        raise OPEError(unknown_tracker_message(unknown[0]))
    return trackers


def split_spec(spec: str) -> tuple[str, dict[str, object]]:
    """``"rtmdnet[backend=onnxruntime;seed=1]"`` -> ``("rtmdnet", {...})``: per-tracker overrides
    (:func:`runtime.specs.parse_spec`).

    The whole spec stays the tracker's label in the results, so variants of one tracker can run
    side by side in one run.
    """
    try:
        parsed = parse_spec(spec)
    except SpecError as exc:
        raise OPEError(str(exc)) from None
    return parsed.name, parsed.overrides


def spec_factory(root: Path, options: dict[str, object]) -> Callable[[str], Tracker]:
    """Builds a fresh tracker from a ``--trackers`` spec: its own ``[KEY=VALUE]`` overrides over
    ``options`` (``--set``), which OpenCV's peers do not take; ``root``: the shared data."""

    def factory(spec: str) -> Tracker:
        name, own = split_spec(spec)
        if name in PEER_NAMES:
            return make_tracker(name, data_dir=root, **own)
        return make_tracker(name, data_dir=root, **{**options, **own})

    return factory


def add_set_argument(parser: argparse.ArgumentParser, help_text: str) -> None:
    """The ``--set KEY=VALUE`` option (repeatable) of every benchmark that builds our trackers."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help_text
    )


def parse_overrides(items: list[str]) -> dict[str, object]:
    """``--set`` items as config overrides (:func:`runtime.specs.parse_overrides`)."""
    try:
        return parse_spec_overrides(items)
    except SpecError as exc:
        raise OPEError(f"--set: {exc}") from None


def torch_threads() -> int:
    """The thread count the trackers run with here (torch's; set_threads gives OpenCV the same)."""
    import torch

    return torch.get_num_threads()


def set_threads(threads: int | None) -> int:
    import torch  # only the CLI decides thread counts; run_ope leaves the process as it is

    count = threads if threads is not None else torch.get_num_threads()
    if count < 1:
        raise OPEError(f"--threads must be at least 1, got {count}")
    # The same budget for the OpenCV peers, so speeds compare fairly; recorded, so that no
    # tracker built later picks its own.
    return runtime_set_threads(count)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # SIGINT and SIGTERM stop the run like Ctrl-C, however the process was started (a background
    # job inherits SIGINT ignored): finished runs are kept for --resume.
    with StopSignals():
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
        check_peer(args.peer, trackers, restart=args.restart)
        sequences = resolve_sequences(data, split_list(args.seqs), args.split)
        threads = set_threads(args.threads)
        options = parse_overrides(args.overrides)
        if args.prune is not None:
            try:
                options["prune"] = prune_setting(args.prune)
            except ValueError as error:
                raise OPEError(str(error)) from None

        factory = spec_factory(root, options)

        if args.results is None and args.results_format != "otb":
            raise OPEError("--format is the layout of --results; give --results DIR too")
        if not args.quiet:
            print(
                f"{'Restart' if args.restart else 'OPE'}: {len(trackers)} tracker(s) x "
                f"{len(sequences)} sequence(s), {threads} thread(s)",
                file=sys.stderr,
            )
        restart = RestartSettings() if args.restart else None
        summary = run_ope(
            trackers,
            sequences,
            data_dir=root,
            factory=factory,
            max_frames=args.max_frames,
            json_path=args.json,
            results_dir=args.results,
            results_format=args.results_format,
            plots_dir=args.plots,
            progress=not args.quiet,
            resume=args.resume,
            # What the runs depend on beyond trackers and sequences: a resume must match it.
            config={"set": sorted(args.overrides), "prune": args.prune},
            restart=restart,
            peer=args.peer,
        )
        page = None
        if args.report is not None:
            page = write_report([args.json], args.report, data=data, attributes_required=False)
    except (OPEError, ReportError) as error:
        print(f"bench.ope: error: {error}", file=sys.stderr)
        return 2
    print(markdown_table(summary) if restart is None else restart_table(summary, restart))
    # Where everything went, one line each (the runs folder is named on an interrupt).
    written = [args.json, args.results, args.plots, page]
    print("\n".join(f"wrote {path}" for path in written if path is not None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
