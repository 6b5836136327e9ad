"""Annotated sequences in OTB layout: ``<Name>/img/0001.jpg ...`` and ``groundtruth_rect.txt``.

Ground-truth files are 1-based (OTB); :class:`Sequence` holds them converted to the project's
0-based convention. Rows of NaN mean the target is not visible and are kept as NaN.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runtime.atomic import LineFile, write_atomic
from runtime.boxes import from_otb, to_otb

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
GROUND_TRUTH_FILE = "groundtruth_rect.txt"


@dataclass
class Sequence:
    name: str
    frame_paths: list[Path]
    ground_truth: np.ndarray  # (N, 4) 0-based x, y, w, h; NaN rows = target not visible
    attributes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.frame_paths)

    @property
    def init_box(self) -> np.ndarray:
        return self.ground_truth[0]


def read_boxes_file(path: Path) -> np.ndarray:
    """Read 1-based ``x,y,w,h`` rows (comma, tab or space separated) into an (N, 4) array.

    ``NaN`` rows are kept. Raises ValueError naming the line of a malformed row.
    """
    rows = []
    for line_no, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = [p for p in re.split(r"[,\s]+", line.strip()) if p]
        if len(parts) != 4:
            raise ValueError(f"{path}:{line_no}: expected 4 values x,y,w,h, got {line.strip()!r}")
        try:
            rows.append([float(p) for p in parts])
        except ValueError:
            raise ValueError(f"{path}:{line_no}: not a number in {line.strip()!r}") from None
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def format_box_row(box_0based: np.ndarray) -> str:
    """One 0-based box as the 1-based OTB row ``x,y,w,h`` of a boxes file (no newline)."""
    row = to_otb(np.asarray(box_0based, dtype=np.float64).reshape(1, 4))[0]
    return ",".join(f"{v:.2f}" for v in row)


def write_boxes_file(path: Path, boxes_0based: np.ndarray) -> None:
    """Write boxes as 1-based OTB rows, one ``x,y,w,h`` per line, written atomically."""
    boxes = np.asarray(boxes_0based, dtype=np.float64).reshape(-1, 4)
    lines = [format_box_row(row) for row in boxes]
    write_atomic(path, "\n".join(lines) + "\n")


class BoxesFileWriter:
    """A boxes file written as the boxes come: one 1-based OTB row per :meth:`write` call.

    Each row reaches the OS before ``write`` returns (:class:`runtime.atomic.LineFile`), so a run
    killed at any point leaves a valid boxes file with one row for every frame written so far.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._file = LineFile(self.path)

    @property
    def rows(self) -> int:
        return self._file.lines

    def write(self, box_0based: np.ndarray) -> None:
        self._file.write_line(format_box_row(box_0based))

    def close(self) -> None:
        self._file.close()


def list_frames(folder: Path) -> list[Path]:
    frames = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return frames


def load_sequence(folder: Path, ground_truth_file: str = GROUND_TRUTH_FILE) -> Sequence:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"sequence folder not found: {folder}")
    img_dir = folder / "img" if (folder / "img").is_dir() else folder
    frames = list_frames(img_dir)
    if not frames:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {img_dir}")
    gt_path = folder / ground_truth_file
    if not gt_path.is_file():
        raise FileNotFoundError(f"ground truth not found: {gt_path}")
    gt = read_boxes_file(gt_path)
    if len(gt) != len(frames):
        raise ValueError(f"{folder.name}: {len(frames)} frames but {len(gt)} ground-truth rows")
    if np.isnan(gt[0]).any():
        raise ValueError(f"{folder.name}: the first frame's ground truth is NaN; cannot start")
    attributes: list[str] = []
    meta = folder / "meta.json"
    if meta.is_file():
        attrs = json.loads(meta.read_text()).get("otb_attributes", "")
        attributes = attrs.split() if isinstance(attrs, str) else list(attrs)
    return Sequence(folder.name, frames, from_otb(gt), attributes)


def sequence_names(root: Path, split: str | None = None) -> list[str]:
    """Sequence folder names under ``root``; with ``split``, those listed in ``splits.json``.

    ``splits.json`` is looked for in ``root`` and its parent (the shared data keeps it there).
    """
    root = Path(root)
    if split is None:
        return sorted(p.name for p in root.iterdir() if (p / GROUND_TRUTH_FILE).is_file())
    for candidate in (root / "splits.json", root.parent / "splits.json"):
        if candidate.is_file():
            splits = json.loads(candidate.read_text())
            if split not in splits:
                raise ValueError(f"split {split!r} not in {candidate} (has {sorted(splits)})")
            return list(splits[split])
    raise FileNotFoundError(f"no splits.json in {root} or its parent")
