"""Score result folders written by other toolkits (or by ``bench.ope --results``) against our
ground truth, with the same metrics, table and JSON as ``bench.ope``.

    python -m bench.score RESULTS_DIR [--format otb|got10k|pysot] [--data DIR] [--split val] \\
        [--json OUT]

``RESULTS_DIR`` holds one folder per tracker (or is one tracker's folder) in the layout
``--format`` names (:mod:`bench.result_files`: ``otb`` and ``pysot`` ``<tracker>/<seq>.txt``,
``got10k`` ``<tracker>/<seq>/<seq>_001.txt``; rows 1-based ``x,y,w,h``, comma, tab or space
separated). Each file is scored by :mod:`runtime.evaluation.metrics` against
``<data>/<seq>/groundtruth_rect.txt`` and summarized by
:func:`runtime.evaluation.one_pass.summarize`, so the table and the ``--json`` are those of
``bench.ope`` (FPS from per-frame times where the layout has them, ``got10k``'s
``<seq>_time.txt``; otherwise ``-`` in the table and NaN in the JSON).

Which sequences: with ``--split``, the split's (results for other sequences are ignored) and
every tracker must have all of them; without, every sequence the results name, each of which
must have ground truth, and every tracker must have the same ones (means over different sequences
would not compare). Bad input is one ``bench.score: error: ...`` line and exit code 2: a missing or
empty results folder, a sequence without ground truth or missing for a tracker, an unparsable
row (file and line) or a file whose row count is not the sequence's frame count (both counts).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from bench.ope import markdown_table, write_json
from bench.result_files import (
    READ_FORMATS,
    ResultFiles,
    find_results,
    read_result_boxes,
    read_times,
)
from runtime.cli.program import program_name
from runtime.evaluation.metrics import evaluate_sequence
from runtime.evaluation.one_pass import OPEError, TrackedSequence, resolve_sequences, summarize
from runtime.paths import data_root
from runtime.sequences import GROUND_TRUTH_FILE, Sequence, sequence_names


def _chosen_sequences(
    results: dict[str, dict[str, ResultFiles]], data: Path, split: str | None
) -> list[str]:
    """The sequences to score (module docstring); OPEError where results and data disagree."""
    if split is not None:
        try:
            names = sequence_names(data, split)
        except (ValueError, FileNotFoundError) as error:
            raise OPEError(str(error)) from None
    else:
        names = list(dict.fromkeys(seq for files in results.values() for seq in sorted(files)))
        for name in names:
            if not (data / name / GROUND_TRUTH_FILE).is_file():
                where = next(files[name].boxes for files in results.values() if name in files)
                raise OPEError(f"{where}: sequence {name!r} has no ground truth in {data}")
    for tracker, files in results.items():
        missing = [name for name in names if name not in files]
        if missing:
            scope = f"of split {split!r}" if split is not None else "that other trackers have"
            raise OPEError(f"tracker {tracker} has no results for {', '.join(missing)} ({scope})")
    return names


def score_file(tracker: str, sequence: Sequence, files: ResultFiles) -> TrackedSequence:
    """One results file scored against the sequence's ground truth (OPEError for bad input)."""
    boxes = read_result_boxes(files.boxes, len(sequence))
    frame_seconds = read_times(files.times, len(sequence)) if files.times is not None else None
    seconds = float(frame_seconds.sum()) if frame_seconds is not None else float("nan")
    result = evaluate_sequence(boxes, sequence.ground_truth, sequence.name)
    scores = np.full(len(boxes), np.nan)  # result files hold no confidence
    return TrackedSequence(
        tracker, sequence.name, boxes, scores, seconds, result, frame_seconds=frame_seconds
    )


def score_results(
    folder: Path, fmt: str, data: Path, split: str | None = None
) -> dict[str, list[TrackedSequence]]:
    """Every tracker's results in ``folder`` scored on the chosen sequences, in their order."""
    results = find_results(folder, fmt)
    names = _chosen_sequences(results, data, split)
    sequences = resolve_sequences(data, names, split)
    return {
        tracker: [score_file(tracker, s, files[s.name]) for s in sequences]
        for tracker, files in results.items()
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=program_name("python -m bench.score"),
        description="Score per-frame result files (OTB, GOT-10k or pysot layout) against the "
        "ground truth: AUC, precision, normalized precision (bench.ope's table and JSON).",
    )
    parser.add_argument("results", type=Path, help="folder of tracker folders (or one tracker's)")
    parser.add_argument(
        "--format",
        choices=READ_FORMATS,
        default="otb",
        help="layout: otb or pysot (<tracker>/<seq>.txt), got10k (<tracker>/<seq>/<seq>_001.txt)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="folder of OTB-layout sequences, the ground truth (default: <data root>/sequences)",
    )
    parser.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="shared data folder (default: $TRACKER_DATA or ../shared/data)",
    )
    parser.add_argument("--split", default=None, help="score this split of splits.json (e.g. val)")
    parser.add_argument("--json", type=Path, default=None, help="write the summary here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        data = args.data if args.data is not None else data_root(args.data_root) / "sequences"
        if not data.is_dir():
            raise OPEError(f"data folder not found: {data}")
        summary = summarize(score_results(args.results, args.format, data, args.split))
        if args.json is not None:
            write_json(summary, args.json)
    except OPEError as error:
        print(f"bench.score: error: {error}", file=sys.stderr)
        return 2
    print(markdown_table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
