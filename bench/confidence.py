"""Fit and measure the confidence calibration of :mod:`runtime.confidence`.

    python -m bench.confidence --fit --trackers metartt,mlt,nanotrack \\
        --out runtime/checkpoints/confidence.json [--data DIR] [--records DIR]
    python -m bench.confidence --split val --json OUT [--trackers ...] [--calibration FILE]

``--fit`` runs each tracker over the ``train`` split of ``<data>/sequences`` (``splits.json``) and
every sequence of ``<data>/train_extra`` (never a ``val`` sequence: one is refused), records per
frame after the first the tracker's raw score (``tracker.raw_score`` where the tracker calibrates
its own score, else what ``update`` returned) and the IoU of its box with the ground truth
(frames whose ground truth is NaN, target not visible, are skipped), fits
``P(IoU > 0 | raw) = sigmoid(a * f(raw) + b)`` per tracker (Platt, :func:`fit_platt`; ``f`` the
logit for scores in [0, 1], else the identity) and writes the file atomically. Trackers already
in ``--out`` and not refitted are kept.

``--split val`` runs the trackers over the ``val`` split and writes, per tracker, how well the
calibrated confidence separates frames with IoU > 0 from frames with IoU = 0 (``roc_auc``) and
its reliability: in 5 equal bins of predicted confidence, the mean prediction against the
observed share of IoU > 0 frames (plus ECE, Brier score, log loss, and how often ``lost``, the
tracker's own or a :class:`runtime.confidence.LostState` on the confidence, fires on frames with
IoU = 0 and on the rest). A tracker whose runtime score is already a probability (``nanotrack``)
also gets the reliability of that raw score as it is.

``--records DIR`` keeps each (tracker, sequence) run's per-frame numbers as JSON and reuses them
on the next invocation (delete the folder after changing a tracker).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench.trackers import make_tracker
from runtime.atomic import write_atomic
from runtime.boxes import iou
from runtime.cli.program import program_name
from runtime.confidence import (
    CALIBRATION_FILE,
    Calibration,
    CalibrationError,
    LostState,
    calibration_table,
    fit_platt,
    load_calibrations,
)
from runtime.evaluation.one_pass import OPEError, decode_frames
from runtime.paths import data_root
from runtime.sequences import Sequence, load_sequence, sequence_names
from runtime.tracker_api import Tracker

DEFAULT_TRACKERS = ("metartt", "mlt", "nanotrack")
BINS = 5
# Trackers whose runtime score stays what the network gives (already a probability): their raw
# score's own reliability is reported beside the calibrated one's.
RAW_PROBABILITY = ("nanotrack",)


class ConfidenceError(Exception):
    """A user-facing problem; the CLI prints it as one ``error:`` line."""


@dataclass
class Run:
    """One tracker over one sequence: per frame after the first with ground truth."""

    tracker: str
    sequence: str
    raw: np.ndarray  # the raw score
    iou: np.ndarray  # IoU of the reported box with the ground truth
    lost: np.ndarray | None  # the tracker's own lost flag, where it reports one
    feature: str | None  # the calibration feature the tracker declares, if it calibrates

    def to_json(self) -> dict:
        return {
            "tracker": self.tracker,
            "sequence": self.sequence,
            "raw": self.raw.tolist(),
            "iou": self.iou.tolist(),
            "lost": None if self.lost is None else self.lost.astype(int).tolist(),
            "feature": self.feature,
        }

    @classmethod
    def from_json(cls, data: dict) -> Run:
        lost = data.get("lost")
        return cls(
            data["tracker"],
            data["sequence"],
            np.asarray(data["raw"], dtype=np.float64),
            np.asarray(data["iou"], dtype=np.float64),
            None if lost is None else np.asarray(lost, dtype=bool),
            data.get("feature"),
        )


# --- sequences ---------------------------------------------------------------------------------
def train_sequences(data: Path) -> list[Path]:
    """The ``train`` split of ``sequences/`` and all of ``train_extra/``; refuses ``val``."""
    root, extra = data / "sequences", data / "train_extra"
    try:
        val = set(sequence_names(root, "val"))
        folders = [root / n for n in sequence_names(root, "train")]
    except (FileNotFoundError, ValueError) as exc:
        raise ConfidenceError(f"cannot read the train split: {exc}") from None
    if extra.is_dir():
        folders += [extra / n for n in sequence_names(extra)]
    leaked = sorted(f.name for f in folders if f.name in val)
    if leaked:
        raise ConfidenceError(f"val sequences among the fitting data: {', '.join(leaked)}")
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing:
        raise ConfidenceError(f"sequence folders not found: {', '.join(missing)}")
    return folders


def split_sequences(data: Path, split: str) -> list[Path]:
    root = data / "sequences"
    try:
        return [root / n for n in sequence_names(root, split)]
    except (FileNotFoundError, ValueError) as exc:
        raise ConfidenceError(str(exc)) from None


# --- running -------------------------------------------------------------------------------------
def run_tracker(tracker, sequence: Sequence, frames: list[np.ndarray], name: str) -> Run:
    """Init on frame 0 with the ground truth; raw score, IoU (and lost) of every later frame."""
    tracker.init(frames[0], sequence.init_box.copy())
    scorer = getattr(tracker, "scorer", None)
    feature = getattr(getattr(scorer, "calibration", None), "feature", None)
    raw, ious, lost = [], [], []
    reports_lost = hasattr(tracker, "lost")
    for index in range(1, len(frames)):
        box, score = tracker.update(frames[index])
        truth = sequence.ground_truth[index]
        if np.isnan(truth).any():
            continue
        raw.append(float(getattr(tracker, "raw_score", score)))
        ious.append(float(iou(np.asarray(box, dtype=np.float64).reshape(4), truth)))
        lost.append(bool(tracker.lost) if reports_lost else False)
    return Run(
        name,
        sequence.name,
        np.asarray(raw),
        np.asarray(ious),
        np.asarray(lost, dtype=bool) if reports_lost else None,
        feature,
    )


def collect(
    trackers: list[str],
    folders: list[Path],
    factory: Callable[[str], object],
    max_frames: int | None = None,
    records: Path | None = None,
    progress: bool = True,
) -> dict[str, list[Run]]:
    """Every tracker over every sequence (frames decoded once per sequence)."""
    runs: dict[str, list[Run]] = {name: [] for name in trackers}
    for folder in folders:
        sequence = load_sequence(folder)
        if max_frames is not None:
            sequence = Sequence(
                sequence.name,
                sequence.frame_paths[:max_frames],
                sequence.ground_truth[:max_frames],
                sequence.attributes,
            )
        frames: list[np.ndarray] | None = None
        for name in trackers:
            cached = None
            if records is not None:
                cached = records / f"{name}__{sequence.name}__{max_frames or 'all'}.json"
                if cached.is_file():
                    runs[name].append(Run.from_json(json.loads(cached.read_text())))
                    continue
            if frames is None:
                frames = decode_frames(sequence)
            start = time.perf_counter()
            run = run_tracker(factory(name), sequence, frames, name)
            if progress:
                tqdm.write(
                    f"{name} / {sequence.name}: {len(frames)} frames in "
                    f"{time.perf_counter() - start:.1f}s",
                    file=sys.stderr,
                )
            runs[name].append(run)
            if cached is not None:
                write_atomic(cached, json.dumps(run.to_json()) + "\n")
    return runs


# --- metrics ---------------------------------------------------------------------------------
def roc_auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half); NaN without both classes."""
    score, positive = np.asarray(score, dtype=np.float64), np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    sorted_scores = score[order]
    i = 0
    while i < len(score):  # average ranks over ties
        j = i
        while j + 1 < len(score) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def reliability(predicted: np.ndarray, positive: np.ndarray, bins: int = BINS) -> list[dict]:
    """Per equal-width bin of ``predicted`` on [0, 1]: count, mean prediction, observed rate."""
    predicted = np.clip(np.asarray(predicted, dtype=np.float64), 0.0, 1.0)
    positive = np.asarray(positive, dtype=bool)
    index = np.minimum((predicted * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        inside = index == b
        n = int(inside.sum())
        out.append(
            {
                "bin": [b / bins, (b + 1) / bins],
                "frames": n,
                "mean_predicted": float(predicted[inside].mean()) if n else None,
                "observed": float(positive[inside].mean()) if n else None,
            }
        )
    return out


def expected_calibration_error(table: list[dict], total: int) -> float:
    return float(
        sum(
            row["frames"] / total * abs(row["mean_predicted"] - row["observed"])
            for row in table
            if row["frames"]
        )
    )


def probability_metrics(predicted: np.ndarray, positive: np.ndarray) -> dict:
    predicted = np.clip(np.asarray(predicted, dtype=np.float64), 1e-12, 1 - 1e-12)
    y = np.asarray(positive, dtype=np.float64)
    table = reliability(predicted, positive)
    return {
        "roc_auc": roc_auc(predicted, positive),
        "reliability": table,
        "ece": expected_calibration_error(table, len(predicted)),
        "brier": float(np.mean((predicted - y) ** 2)),
        "log_loss": float(-np.mean(y * np.log(predicted) + (1 - y) * np.log(1 - predicted))),
    }


def _pooled(runs: list[Run]) -> tuple[np.ndarray, np.ndarray]:
    raw = np.concatenate([r.raw for r in runs]) if runs else np.zeros(0)
    ious = np.concatenate([r.iou for r in runs]) if runs else np.zeros(0)
    return raw, ious


def feature_for(runs: list[Run]) -> str:
    """The tracker's declared calibration feature, else logit for scores inside [0, 1]."""
    declared = {r.feature for r in runs if r.feature}
    if len(declared) == 1:
        return declared.pop()
    raw, _ = _pooled(runs)
    return "logit" if raw.size and raw.min() >= 0.0 and raw.max() <= 1.0 else "raw"


def fit(name: str, runs: list[Run]) -> Calibration:
    raw, ious = _pooled(runs)
    kind = feature_for(runs)
    positive = ious > 0
    a, b = fit_platt(raw, positive, kind)
    calibration = Calibration(name, a, b, kind)
    predicted = calibration.predict(raw)
    info = {
        "frames": int(raw.size),
        "sequences": len(runs),
        "positive_rate": float(positive.mean()),
        "train_roc_auc": roc_auc(predicted, positive),
        "train_log_loss": probability_metrics(predicted, positive)["log_loss"],
        "lost": {
            "lost_below": LostState.lost_below,
            "recover_at": LostState.recover_at,
            "patience": LostState.patience,
        },  # fmt: skip
    }
    return Calibration(name, a, b, kind, info=info)


def lost_stats(flags: np.ndarray, positive: np.ndarray) -> dict:
    """How ``lost`` relates to IoU: its share on IoU = 0 frames and on IoU > 0 frames."""
    off = ~positive
    return {
        "lost_frames": int(flags.sum()),
        "lost_on_iou0": float(flags[off].mean()) if off.any() else None,
        "lost_on_iou_pos": float(flags[positive].mean()) if positive.any() else None,
        "iou0_when_lost": float(off[flags].mean()) if flags.any() else None,
    }


def simulated_lost(runs: list[Run], calibration: Calibration) -> np.ndarray:
    flags = []
    for run in runs:
        state = LostState(**(calibration.info.get("lost") or {}))
        flags += [state.update(float(c)) for c in calibration.predict(run.raw)]
    return np.asarray(flags, dtype=bool)


def measure(runs: dict[str, list[Run]], calibrations: dict[str, Calibration]) -> dict:
    out = {}
    for name, tracker_runs in runs.items():
        calibration = calibrations.get(name) or calibrations.get(name.split("-")[0])
        raw, ious = _pooled(tracker_runs)
        positive = ious > 0
        entry: dict = {"frames": int(raw.size), "positive_rate": float(positive.mean())}
        if calibration is None:
            entry["calibration"] = None
            entry["raw_roc_auc"] = roc_auc(raw, positive)
        else:
            entry["calibration"] = {
                "tracker": calibration.tracker,
                "a": calibration.a,
                "b": calibration.b,
                "feature": calibration.feature,
            }
            entry.update(probability_metrics(calibration.predict(raw), positive))
            entry["lost_from_confidence"] = lost_stats(
                simulated_lost(tracker_runs, calibration), positive
            )
        if name in RAW_PROBABILITY:
            raw_metrics = probability_metrics(raw, positive)
            entry["raw_probability"] = {k: raw_metrics[k] for k in ("reliability", "ece", "brier")}
        if all(r.lost is not None for r in tracker_runs) and tracker_runs:
            flags = np.concatenate([r.lost for r in tracker_runs])  # type: ignore[misc]
            entry["lost_reported"] = lost_stats(flags, positive)
        entry["per_sequence_positive_rate"] = {
            r.sequence: float((r.iou > 0).mean()) if r.iou.size else None for r in tracker_runs
        }
        out[name] = entry
    return out


def markdown(summary: dict) -> str:
    lines = [
        "| tracker | frames | IoU>0 | ROC AUC | ECE | reliability (mean predicted / observed) |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, e in summary.items():
        bins = " ; ".join(
            f"{r['mean_predicted']:.2f}/{r['observed']:.2f} (n={r['frames']})"
            if r["frames"]
            else "-"
            for r in e.get("reliability", [])
        )
        auc = e.get("roc_auc", e.get("raw_roc_auc", float("nan")))
        lines.append(
            f"| {name} | {e['frames']} | {e['positive_rate']:.3f} | {auc:.3f} "
            f"| {e.get('ece', float('nan')):.3f} | {bins} |"
        )
    return "\n".join(lines)


# --- CLI -------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=program_name("python -m bench.confidence"),
        description="Fit (on train) or measure (on val) the trackers' confidence calibration.",
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--fit", action="store_true", help="fit on train + train_extra")
    mode.add_argument("--split", help="measure on this split of <data>/sequences (e.g. val)")
    parser.add_argument("--trackers", default=",".join(DEFAULT_TRACKERS))
    parser.add_argument("--out", type=Path, default=CALIBRATION_FILE, help="--fit: output file")
    parser.add_argument("--json", type=Path, help="--split: write the measurement here")
    parser.add_argument(
        "--calibration", type=Path, default=None, help="--split: calibration file to measure"
    )
    parser.add_argument("--data", type=Path, default=None, help="shared data folder")
    parser.add_argument("--max-frames", type=int, default=None, help="per sequence (quick runs)")
    parser.add_argument("--records", type=Path, default=None, help="cache of per-frame records")
    parser.add_argument("--threads", type=int, default=None, help="torch / OpenCV threads")
    parser.add_argument("--quiet", action="store_true")
    return parser


def main(argv: list[str] | None = None, factory: Callable[[str], object] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _main(args, factory)
    except (ConfidenceError, CalibrationError, OPEError, ValueError, FileNotFoundError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2


def _main(args: argparse.Namespace, factory: Callable[[str], object] | None) -> int:
    data = data_root(args.data)
    trackers = [t.strip() for t in args.trackers.split(",") if t.strip()]
    if not trackers:
        raise ConfidenceError("--trackers names no tracker")
    if args.threads is not None:
        import cv2
        import torch

        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    make = factory or (lambda name: make_tracker(name, data_dir=args.data))

    def build(name: str) -> Tracker:
        if not args.fit:
            return make(name)
        with warnings.catch_warnings():  # fitting is how an uncalibrated tracker gets calibrated
            warnings.filterwarnings("ignore", "(?s).*its score is not calibrated", UserWarning)
            return make(name)

    for name in trackers:  # fail on a bad name before any work
        build(name)
    if args.records is not None:
        args.records.mkdir(parents=True, exist_ok=True)
    if args.fit:
        if args.json is not None or args.calibration is not None:
            raise ConfidenceError("--json / --calibration are for --split, not --fit")
        folders = train_sequences(data)
        runs = collect(trackers, folders, build, args.max_frames, args.records, not args.quiet)
        try:
            table = load_calibrations(args.out) if args.out.is_file() else {}
        except CalibrationError:
            table = {}
        for name in trackers:
            table[name] = fit(name, runs[name])
            c = table[name]
            print(
                f"{name}: a={c.a:.4f} b={c.b:.4f} on {c.feature}(raw), "
                f"{c.info['frames']} frames, IoU>0 {c.info['positive_rate']:.3f}, "
                f"train AUC {c.info['train_roc_auc']:.3f}"
            )
        extra = {
            "fitted_on": {
                "sequences": [f.name for f in folders if f.parent.name == "sequences"],
                "train_extra": [f.name for f in folders if f.parent.name == "train_extra"],
                "split": "train (+ train_extra); never val",
                "max_frames": args.max_frames,
            },
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        document = _finite(calibration_table(table, extra))
        write_atomic(args.out, json.dumps(document, indent=1) + "\n")
        print(f"wrote {args.out}")
        return 0
    if args.json is None:
        raise ConfidenceError("--split needs --json OUT")
    if args.split != "val":
        print(f"note: measuring on {args.split!r}, not val", file=sys.stderr)
    calibrations = load_calibrations(args.calibration)
    folders = split_sequences(data, args.split)
    runs = collect(trackers, folders, build, args.max_frames, args.records, not args.quiet)
    summary = measure(runs, calibrations)
    result = {
        "split": args.split,
        "sequences": [f.name for f in folders],
        "calibration_file": str(args.calibration or CALIBRATION_FILE),
        "trackers": summary,
    }
    write_atomic(args.json, json.dumps(_finite(result), indent=1) + "\n")
    print(markdown(summary))
    print(f"wrote {args.json}")
    return 0


def _finite(value: object) -> object:
    """NaN (a metric without both classes) as JSON null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
