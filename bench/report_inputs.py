"""What a report (:mod:`bench.report`) reads: ``bench.ope --json`` files, the runs saved beside
them and the sequences' OTB attributes; every problem with them is one :class:`ReportError` line.

A ``bench.ope`` JSON holds scalar scores per sequence (its module docstring states the shape), not
the curves. The curves are recomputed from the boxes that ``bench.ope`` saves for every (tracker,
sequence) run in ``<json stem>.runs/`` (``<tracker slug>/<sequence>.npz``; each file names its
tracker spec and sequence, so no slug has to be rebuilt here), scored against the ground truth of
the sequence folder by :func:`runtime.evaluation.metrics.evaluate_sequence`, exactly as the run
scored them. The recomputed AUC is checked against the JSON's: a tracker whose saved run is
missing, does not fit or scores otherwise (other ground truth) gets no curves, with the reason.

The saved runs' folder comes from :mod:`bench.run_store` (``runs_dir_for``); the npz key read
here is its ``boxes``.
"""

from __future__ import annotations

import json
import math
import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.run_store import runs_dir_for
from runtime.evaluation.metrics import MeanCurves, SequenceResult, evaluate_sequence, mean_curves
from runtime.sequences import load_sequence

# The 11 attributes of OTB-2015 (Wu, Lim, Yang, "Object Tracking Benchmark", TPAMI 2015, Table 1),
# in the paper's order, with its names: the codes are what the sequences' meta.json give
# (``otb_attributes``), the names what the report spells out.
OTB_ATTRIBUTE_NAMES: dict[str, str] = {
    "IV": "Illumination variation",
    "SV": "Scale variation",
    "OCC": "Occlusion",
    "DEF": "Deformation",
    "MB": "Motion blur",
    "FM": "Fast motion",
    "IPR": "In-plane rotation",
    "OPR": "Out-of-plane rotation",
    "OV": "Out-of-view",
    "BC": "Background clutters",
    "LR": "Low resolution",
}
OTB_ATTRIBUTES: tuple[str, ...] = tuple(OTB_ATTRIBUTE_NAMES)
_TRACKER_KEYS = ("per_sequence", "mean_auc", "mean_precision", "median_fps")
_SEQUENCE_KEYS = ("auc", "precision", "norm_precision", "fps", "frames")
# A saved run's AUC is recomputed from float64 boxes; the JSON keeps it to the last digit.
_AUC_TOLERANCE = 1e-9


class ReportError(Exception):
    """A user-facing problem with the report's inputs: the CLI prints it as one line."""


@dataclass(frozen=True)
class TrackerRun:
    """One tracker spec of one ``bench.ope`` result file, with its curves when they are known."""

    spec: str
    source: Path  # the JSON it comes from
    summary: dict[str, Any]  # that JSON's entry for the spec
    curves: dict[str, SequenceResult] | None  # per sequence, from the saved runs; None: not known
    no_curves: str = ""  # why ``curves`` is None (a clause for the page)

    @property
    def per_sequence(self) -> dict[str, dict[str, Any]]:
        return self.summary["per_sequence"]

    @property
    def scored(self) -> list[str]:
        """The sequences its means are over (``bench.ope`` leaves out the uninformative ones)."""
        excluded = set(self.summary.get("excluded_from_means", []))
        return [name for name in self.per_sequence if name not in excluded]

    @property
    def auc(self) -> float:
        return float(self.summary["mean_auc"])

    @property
    def precision(self) -> float:
        return float(self.summary["mean_precision"])

    @property
    def median_fps(self) -> float:
        return float(self.summary["median_fps"])

    @property
    def norm_precision(self) -> float:
        return _mean(self.per_sequence[name]["norm_precision"] for name in self.scored)

    @property
    def mean_curves(self) -> MeanCurves | None:
        if self.curves is None or not self.scored:
            return None
        return mean_curves([self.curves[name] for name in self.scored])

    @property
    def success_rate(self) -> float | None:
        curves = self.mean_curves
        return None if curves is None else curves.success_rate

    @property
    def environment(self) -> dict[str, Any] | None:
        """Where it ran (CPU, threads, backend, date), as ``bench.ope`` records it; None for a
        result from before it did."""
        found = self.summary.get("environment")
        return found if isinstance(found, dict) else None

    def wins_losses_ties(self) -> str | None:
        """``"3/1/0"`` against its ``--peer`` (None: no ``versus`` entry; it is the peer)."""
        counts = self.summary.get("versus")
        if not isinstance(counts, dict):
            return None
        return f"{counts['wins']}/{counts['losses']}/{counts['ties']}"

    def sequence_auc(self, sequence: str) -> float | None:
        entry = self.per_sequence.get(sequence)
        return None if entry is None else float(entry["auc"])

    def attribute_auc(self, attribute: str, attributes: dict[str, tuple[str, ...]]) -> float | None:
        """Mean AUC over its scored sequences that have ``attribute`` (None: it ran on none)."""
        names = [name for name in self.scored if attribute in attributes.get(name, ())]
        return _mean(self.per_sequence[name]["auc"] for name in names) if names else None


def _mean(values: Iterable[float]) -> float:
    listed = [float(value) for value in values]
    return float(np.mean(listed)) if listed else math.nan


def read_result(path: Path) -> dict[str, dict[str, Any]]:
    """A ``bench.ope --json`` file, checked for the keys a report reads (ReportError otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"no such file: {path}")
    try:
        result = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ReportError(f"{path}: not a JSON file ({str(error).splitlines()[0]})") from None
    not_ope = f"{path}: not a bench.ope --json result"
    if not isinstance(result, dict):
        raise ReportError(f"{not_ope} (expected an object of trackers)")
    if not result:
        raise ReportError(f"{path}: holds no trackers")
    for spec, entry in result.items():
        if not isinstance(entry, dict) or any(key not in entry for key in _TRACKER_KEYS):
            raise ReportError(f"{not_ope} ({spec!r} lacks one of {', '.join(_TRACKER_KEYS)})")
        per_sequence = entry["per_sequence"]
        if not isinstance(per_sequence, dict) or not per_sequence:
            raise ReportError(f"{not_ope} ({spec!r} has no per-sequence scores)")
        for sequence, scores in per_sequence.items():
            if not isinstance(scores, dict) or not all(
                isinstance(scores.get(key), int | float) for key in _SEQUENCE_KEYS
            ):
                raise ReportError(
                    f"{not_ope} ({spec!r} / {sequence!r} lacks one of {', '.join(_SEQUENCE_KEYS)})"
                )
    return result


def runs_folder(json_path: Path) -> Path:
    """Where ``bench.ope --json json_path`` saved its runs."""
    return runs_dir_for(json_path)


def saved_boxes(folder: Path) -> dict[tuple[str, str], np.ndarray]:
    """(tracker spec, sequence) -> the boxes of every readable saved run in ``folder``."""
    boxes: dict[tuple[str, str], np.ndarray] = {}
    for path in sorted(folder.glob("*/*.npz")):
        try:
            with np.load(path, allow_pickle=False) as data:
                key = (str(data["tracker"]), str(data["sequence"]))
                boxes[key] = np.asarray(data["boxes"], dtype=np.float64).reshape(-1, 4)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            continue  # a damaged file: that run has no curves, and the page says so
    return boxes


class GroundTruth:
    """The sequences' ground truth, each loaded once (None where the folder cannot be read)."""

    def __init__(self, data: Path) -> None:
        self.data = Path(data)
        self._loaded: dict[str, np.ndarray | None] = {}

    def __call__(self, name: str) -> np.ndarray | None:
        if name not in self._loaded:
            try:
                self._loaded[name] = load_sequence(self.data / name).ground_truth
            except (OSError, ValueError):
                self._loaded[name] = None
        return self._loaded[name]


def _curves(
    spec: str,
    per_sequence: dict[str, dict[str, Any]],
    boxes: dict[tuple[str, str], np.ndarray],
    ground_truth: GroundTruth,
) -> tuple[dict[str, SequenceResult] | None, str]:
    curves: dict[str, SequenceResult] = {}
    for name, scores in per_sequence.items():
        run = boxes.get((spec, name))
        if run is None:
            return None, f"no saved run on {name}"
        truth = ground_truth(name)
        if truth is None:
            return None, f"sequence {name} not found in {ground_truth.data}"
        frames = int(scores["frames"])  # the run may have been cut short by --max-frames
        if len(run) != frames or len(truth) < frames:
            return None, f"its saved run on {name} has {len(run)} boxes, not {frames}"
        result = evaluate_sequence(run, truth[:frames], name)
        if abs(result.auc - float(scores["auc"])) > _AUC_TOLERANCE:
            return None, f"its boxes on {name} score otherwise against {ground_truth.data}"
        curves[name] = result
    return curves, ""


def load_runs(paths: Sequence[Path], data: Path) -> list[TrackerRun]:
    """Every tracker of every file, in order, with curves from the runs saved beside each file."""
    if not paths:
        raise ReportError("no results given: name one or more bench.ope --json files")
    results = [(Path(path), read_result(Path(path))) for path in paths]
    ground_truth = GroundTruth(data)
    runs = []
    for path, result in results:
        folder = runs_folder(path)
        boxes = saved_boxes(folder) if folder.is_dir() else {}
        for spec, entry in result.items():
            if not folder.is_dir():
                curves, why = None, f"no saved runs ({folder} not found)"
            else:
                curves, why = _curves(spec, entry["per_sequence"], boxes, ground_truth)
            runs.append(TrackerRun(spec, path, entry, curves, why))
    return runs


def otb_attributes(folder: Path) -> tuple[str, ...]:
    """The OTB attributes in ``folder/meta.json``'s ``otb_attributes`` ("SV DEF BC" or a list).

    Other words in the field (a note such as ``(as OTB "Jumping")``) are not attributes and are
    dropped; no file, no field or an unreadable file: none.
    """
    try:
        field = json.loads((folder / "meta.json").read_text()).get("otb_attributes", "")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return ()
    words = re.split(r"[\s,]+", field) if isinstance(field, str) else list(field or [])
    found = {str(word).upper() for word in words}
    return tuple(a for a in OTB_ATTRIBUTES if a in found)


def sequence_attributes(data: Path, names: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Sequence name -> its OTB attributes (empty: none recorded), for ``names``."""
    return {name: otb_attributes(Path(data) / name) for name in names}
