"""Per-frame result folders in other toolkits' layouts: written by ``bench.ope --results``, read
and scored by ``bench.score``.

* ``otb`` (what ``bench.ope`` has always written): ``DIR/<tracker>/<seq>.txt``, one ``x,y,w,h``
  row per frame. The GOT-10k toolkit's OTB experiment writes this layout too, with per-frame
  seconds in ``DIR/<tracker>/times/<seq>_time.txt`` (``ExperimentOTB._record``), read if there.
* ``got10k`` (the GOT-10k toolkit, ``got10k/experiments/got10k.py``, ``ExperimentGOT10k._record``):
  ``DIR/<tracker>/<seq>/<seq>_001.txt`` (repetition 1: ``np.savetxt(boxes, fmt='%.3f',
  delimiter=',')``) and ``DIR/<tracker>/<seq>/<seq>_time.txt`` (one row per frame, the seconds
  of that frame's call, frame 1's being ``init``'s as ``Tracker.track`` times it; ``fmt='%.8f'``;
  a column per repetition). Only repetition 1 (``_001``, and the first time column) is read.
* ``pysot`` (read only; pysot's ``tools/test.py``, OPE branch: ``results/<dataset>/<model>/
  <seq>.txt``, rows ``','.join``): the same layout as ``otb``. Rows may be comma, tab or space
  separated, so pytracking's tab-separated ``<tracker>/<param>/<seq>.txt`` reads as well (give
  the ``<tracker>`` folder: each ``<param>`` is then a tracker).

``DIR`` holds one folder per tracker; a ``DIR`` that itself holds result files is one tracker,
named after the folder.

Coordinates: neither toolkit converts boxes. The GOT-10k toolkit hands the tracker ``anno[0]``
as read from the annotation file and scores the recorded boxes against that same file
(``ExperimentOTB.report``: ``rect_iou(boxes, anno)``), pysot likewise against its dataset
JSON. So a result file is in the frame of the dataset's own ground-truth file, which for
OTB-layout sequences (ours) is 1-based: every format here is written and read 1-based, like
``groundtruth_rect.txt`` (:func:`runtime.boxes.to_otb`, :func:`runtime.boxes.from_otb`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.atomic import write_atomic
from runtime.boxes import from_otb, to_otb
from runtime.evaluation.one_pass import OPEError, TrackedSequence
from runtime.sequences import read_boxes_file, write_boxes_file

WRITE_FORMATS = ("otb", "got10k")
READ_FORMATS = ("otb", "got10k", "pysot")
GOT10K_REPETITION = "_001"
LAYOUTS = {
    "otb": "DIR/<tracker>/<seq>.txt",
    "pysot": "DIR/<tracker>/<seq>.txt",
    "got10k": f"DIR/<tracker>/<seq>/<seq>{GOT10K_REPETITION}.txt",
}


def write_results(runs: dict[str, list[TrackedSequence]], folder: Path, fmt: str = "otb") -> None:
    """Each run's per-frame boxes (1-based) in ``folder`` in layout ``fmt`` (``WRITE_FORMATS``)."""
    for name, tracked in runs.items():
        for t in tracked:
            if fmt == "otb":
                write_boxes_file(Path(folder) / name / f"{t.sequence}.txt", t.boxes)
            elif fmt == "got10k":
                _write_got10k(Path(folder) / name / t.sequence, t)
            else:
                raise ValueError(f"cannot write results as {fmt!r} (formats: {WRITE_FORMATS})")


def _write_got10k(folder: Path, tracked: TrackedSequence) -> None:
    if tracked.frame_seconds is None:
        raise OPEError(f"{tracked.tracker} / {tracked.sequence}: no per-frame times to write")
    rows = to_otb(tracked.boxes)
    # The GOT-10k toolkit's own number formats (np.savetxt fmt='%.3f' / '%.8f').
    boxes = "".join(",".join(f"{v:.3f}" for v in row) + "\n" for row in rows)
    times = "".join(f"{s:.8f}\n" for s in tracked.frame_seconds)
    write_atomic(folder / f"{tracked.sequence}{GOT10K_REPETITION}.txt", boxes)
    write_atomic(folder / f"{tracked.sequence}_time.txt", times)


@dataclass(frozen=True)
class ResultFiles:
    """Where one tracker's results for one sequence are."""

    boxes: Path
    times: Path | None  # per-frame seconds, where the layout has them and the file is there


def _sequence_files(tracker_dir: Path, fmt: str) -> dict[str, ResultFiles]:
    found: dict[str, ResultFiles] = {}
    if fmt == "got10k":
        for boxes in sorted(tracker_dir.glob(f"*/*{GOT10K_REPETITION}.txt")):
            name = boxes.parent.name
            if boxes.name == f"{name}{GOT10K_REPETITION}.txt":
                times = boxes.parent / f"{name}_time.txt"
                found[name] = ResultFiles(boxes, times if times.is_file() else None)
        return found
    for boxes in sorted(p for p in tracker_dir.glob("*.txt") if p.is_file()):
        times = tracker_dir / "times" / f"{boxes.stem}_time.txt"
        found[boxes.stem] = ResultFiles(boxes, times if times.is_file() else None)
    return found


def find_results(folder: Path, fmt: str) -> dict[str, dict[str, ResultFiles]]:
    """{tracker: {sequence: files}} in a results folder of layout ``fmt`` (``READ_FORMATS``).

    Raises OPEError for a missing folder or one that holds no results of that layout.
    """
    if fmt not in READ_FORMATS:
        raise OPEError(f"unknown results format {fmt!r} (formats: {', '.join(READ_FORMATS)})")
    folder = Path(folder)
    if not folder.is_dir():
        raise OPEError(f"results folder not found: {folder}")
    own = _sequence_files(folder, fmt)
    if own:
        return {folder.name: own}
    trackers = {
        sub.name: files
        for sub in sorted(p for p in folder.iterdir() if p.is_dir())
        if (files := _sequence_files(sub, fmt))
    }
    if not trackers:
        raise OPEError(f"no {fmt} results in {folder} (expected {LAYOUTS[fmt]})")
    return trackers


def read_result_boxes(path: Path, frames: int) -> np.ndarray:
    """A results file's 1-based rows as 0-based boxes; OPEError naming the file (and line) for an
    unparsable row or a row count other than ``frames``."""
    try:
        rows = read_boxes_file(path)
    except (OSError, UnicodeDecodeError) as error:
        raise OPEError(f"cannot read {path}: {error}") from None
    except ValueError as error:  # already "<path>:<line>: ..."
        raise OPEError(str(error)) from None
    if len(rows) != frames:
        raise OPEError(f"{path}: {len(rows)} rows, but the sequence has {frames} frames")
    return from_otb(rows)


def read_times(path: Path, frames: int) -> np.ndarray:
    """A per-frame seconds file (first column), checked like :func:`read_result_boxes`."""
    values = []
    for line_no, line in _lines(path):
        parts = line.replace(",", " ").split()
        try:
            values.append(float(parts[0]))
        except (ValueError, IndexError):
            raise OPEError(f"{path}:{line_no}: not a number of seconds: {line!r}") from None
    if len(values) != frames:
        raise OPEError(f"{path}: {len(values)} rows, but the sequence has {frames} frames")
    return np.asarray(values, dtype=np.float64)


def _lines(path: Path) -> Iterable[tuple[int, str]]:
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise OPEError(f"cannot read {path}: {error}") from None
    for line_no, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield line_no, line.strip()
