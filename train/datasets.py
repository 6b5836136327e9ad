"""Training videos from the usual tracking-dataset layouts, as ``runtime.sequences.Sequence``.

Every loader returns ``Sequence`` objects: frame paths plus ground truth in the project's 0-based
``x, y, w, h`` (pixel ``i`` covers ``[i, i+1)``), with NaN rows where the target is not visible.
Each file format's box convention is stated once, in :data:`CONVENTIONS`, and every loader converts
through :func:`to_internal` (OTB goes through ``runtime.sequences.load_sequence`` and
``runtime.boxes.from_otb``, which is the same 1-based rule).

Layouts (``discover(root)`` tells them apart):

- OTB: ``<Name>/img/0001.jpg`` + ``groundtruth_rect.txt`` (the shared ``sequences/`` and
  ``train_extra/`` folders). LaSOT-style ``full_occlusion.txt``/``out_of_view.txt`` and GOT-style
  ``absence.label`` next to it also blank rows.
- GOT-10k: ``train/<seq>/00000001.jpg``, ``groundtruth.txt``, optional ``absence.label`` and
  ``cover.label``.
- LaSOT: ``<class>/<class>-N/img/00000001.jpg``, ``groundtruth.txt``, ``full_occlusion.txt``,
  ``out_of_view.txt``.
- ImageNet VID: ``Annotations/VID/train/.../<snippet>/000000.xml`` and
  ``Data/VID/train/.../<snippet>/000000.JPEG``; one track per snippet.

:func:`training_sequences` is the one entry point for meta-training on the shared data: the
``train`` split of ``sequences/`` plus all of ``train_extra/``, and it refuses any ``val`` name.
"""

from __future__ import annotations

import json
import os
import re
import warnings
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from runtime.sequences import (
    GROUND_TRUTH_FILE,
    Sequence,
    list_frames,
    load_sequence,
    read_boxes_file,
)

Layout = Literal["otb", "got10k", "lasot", "imagenet_vid"]
View = Literal["aerial", "ground"]


# ------------------------------------------------------------------------------------------
# Box conventions: stated once, converted once
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BoxConvention:
    """How a file writes a box, relative to the project's 0-based continuous ``x, y, w, h``."""

    origin: float  # coordinate the file gives the first pixel's left/top edge (1 = 1-based)
    corners: bool  # rows are x1, y1, x2, y2 rather than x, y, w, h
    inclusive: bool  # with corners: x2, y2 index the last pixel inside (width = x2 - x1 + 1)
    source: str  # where the convention comes from


CONVENTIONS: dict[Layout, BoxConvention] = {
    # OTB: MATLAB toolkit, 1-based. The shared data's MANIFEST.md states it for every file.
    "otb": BoxConvention(1.0, False, False, "OTB toolkit; ../shared/data MANIFEST.md"),
    # GOT-10k: "All coordinate values are 1-based" -- the dataset's maintainer,
    # github.com/got-10k/toolkit issue #6.
    "got10k": BoxConvention(1.0, False, False, "got-10k/toolkit issue #6 (maintainer)"),
    # LaSOT: its evaluation toolkit is OTB's MATLAB code (centre = x + (w-1)/2) and the maintainer
    # says the smallest coordinate is 1 (HengLan/LaSOT_Evaluation_Toolkit issue #14). The shared
    # lasot_airplane-1 meta.json says the same ("x,y,w,h (1-based)").
    "lasot": BoxConvention(1.0, False, False, "LaSOT_Evaluation_Toolkit issue #14, its .m code"),
    # ImageNet VID: PASCAL-style pixel indices, xmax/ymax inclusive (the ILSVRC devkit's
    # eval_vid_detection.m computes widths as xmax - xmin + 1), origin 0 (the frames' first
    # pixel row/column is written as 0 in the XML).
    "imagenet_vid": BoxConvention(0.0, True, True, "ILSVRC2015 devkit eval_vid_detection.m"),
}


def to_internal(rows: np.ndarray, convention: BoxConvention) -> np.ndarray:
    """File rows -> the project's 0-based ``x, y, w, h`` (NaN rows stay NaN)."""
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
    out = rows.copy()
    if convention.corners:
        extra = 1.0 if convention.inclusive else 0.0
        out[:, 2] = rows[:, 2] - rows[:, 0] + extra
        out[:, 3] = rows[:, 3] - rows[:, 1] + extra
    out[:, :2] -= convention.origin
    return out


def blank_invisible(gt: np.ndarray, invisible: np.ndarray | None = None) -> np.ndarray:
    """Set to NaN the rows flagged invisible and the rows that are not a real box.

    A row that is not finite or has ``w <= 0`` or ``h <= 0`` cannot be a target (LaSOT's
    extension and GOT-10k write zero boxes for absent targets), so it becomes NaN too.
    """
    out = np.asarray(gt, dtype=np.float64).copy()
    bad = ~np.isfinite(out).all(axis=1) | (out[:, 2] <= 0) | (out[:, 3] <= 0)
    if invisible is not None:
        flags = np.asarray(invisible, dtype=bool)
        if len(flags) != len(out):
            raise ValueError(f"{len(flags)} visibility flags for {len(out)} ground-truth rows")
        bad |= flags
    out[bad] = np.nan
    return out


def _frame_flags(path: Path, n_frames: int) -> np.ndarray | None:
    """One integer flag per frame from ``path``, or None if the file is absent."""
    if not path.is_file():
        return None
    flags = _read_flags(path)
    if len(flags) != n_frames:
        raise ValueError(f"{path}: {len(flags)} flags for {n_frames} frames")
    return flags


def _read_flags(path: Path) -> np.ndarray:
    """0/1 (or small integer) flags, comma/space/newline separated, as an int array."""
    text = path.read_text().strip()
    if not text:
        return np.zeros(0, dtype=np.int64)
    try:
        return np.array([int(float(p)) for p in re.split(r"[,\s]+", text) if p], dtype=np.int64)
    except ValueError:
        raise ValueError(f"{path}: expected integer flags") from None


# ------------------------------------------------------------------------------------------
# Loaders
# ------------------------------------------------------------------------------------------
def load_otb(folder: Path) -> Sequence:
    """One OTB-layout folder (1-based ``groundtruth_rect.txt``), flags applied as NaN.

    ``runtime.sequences.load_sequence`` does the reading and the 1-based conversion; this adds
    the visibility flags some converted sequences carry (the shared LaSOT prefix keeps
    ``full_occlusion.txt``/``out_of_view.txt``).
    """
    folder = Path(folder)
    sequence = load_sequence(folder)
    invisible = np.zeros(len(sequence), dtype=bool)
    for flag_file in ("full_occlusion.txt", "out_of_view.txt", "absence.label"):
        path = folder / flag_file
        if path.is_file():
            flags = _read_flags(path)
            if len(flags) != len(sequence):
                raise ValueError(f"{path}: {len(flags)} flags for {len(sequence)} frames")
            invisible |= flags > 0
    sequence.ground_truth = blank_invisible(sequence.ground_truth, invisible)
    return sequence


def load_otb_folder(root: Path, names: Iterable[str] | None = None) -> list[Sequence]:
    """Every OTB sequence under ``root`` (or only ``names``), sorted by name."""
    root = Path(root)
    if (root / GROUND_TRUTH_FILE).is_file():
        return [load_otb(root)]
    if names is None:
        names = sorted(p.name for p in root.iterdir() if (p / GROUND_TRUTH_FILE).is_file())
    return [load_otb(root / name) for name in names]


def load_got10k_sequence(folder: Path) -> Sequence:
    """One GOT-10k sequence: frames in the folder, 1-based ``groundtruth.txt``, label files."""
    folder = Path(folder)
    frames = list_frames(folder)
    if not frames:
        raise ValueError(f"no images in {folder}")
    rows = read_boxes_file(folder / "groundtruth.txt")
    if len(rows) != len(frames):
        # GOT-10k's test split gives only the first box: not usable for training.
        raise ValueError(f"{folder.name}: {len(frames)} frames but {len(rows)} ground-truth rows")
    invisible = np.zeros(len(frames), dtype=bool)
    absent = _frame_flags(folder / "absence.label", len(frames))
    if absent is not None:
        invisible |= absent > 0  # 1 = target absent
    cover = _frame_flags(folder / "cover.label", len(frames))
    if cover is not None:
        invisible |= cover == 0  # visible ratio class 0 = fully occluded (as pytracking reads it)
    gt = blank_invisible(to_internal(rows, CONVENTIONS["got10k"]), invisible)
    return Sequence(folder.name, frames, gt)


def load_got10k(root: Path, split: str = "train") -> list[Sequence]:
    """GOT-10k sequences of ``root/<split>`` (or of ``root`` itself if it is the split folder).

    The split's ``list.txt`` gives the order where present; otherwise every sub-folder with a
    ``groundtruth.txt``.
    """
    root = Path(root)
    folder = root / split if (root / split).is_dir() else root
    listing = folder / "list.txt"
    if listing.is_file():
        names = [n.strip() for n in listing.read_text().splitlines() if n.strip()]
    else:
        names = sorted(p.name for p in folder.iterdir() if (p / "groundtruth.txt").is_file())
    return [load_got10k_sequence(folder / name) for name in names]


def load_lasot_sequence(folder: Path) -> Sequence:
    """One LaSOT sequence ``<class>-N``: ``img/``, 1-based ``groundtruth.txt`` and the flags."""
    folder = Path(folder)
    frames = list_frames(folder / "img")
    if not frames:
        raise ValueError(f"no images in {folder / 'img'}")
    rows = read_boxes_file(folder / "groundtruth.txt")
    if len(rows) != len(frames):
        raise ValueError(f"{folder.name}: {len(frames)} frames but {len(rows)} ground-truth rows")
    invisible = np.zeros(len(frames), dtype=bool)
    for flag_file in ("full_occlusion.txt", "out_of_view.txt"):
        flags = _frame_flags(folder / flag_file, len(frames))
        if flags is not None:
            invisible |= flags > 0
    gt = blank_invisible(to_internal(rows, CONVENTIONS["lasot"]), invisible)
    return Sequence(folder.name, frames, gt)


def _is_lasot_sequence(folder: Path) -> bool:
    return (folder / "img").is_dir() and (folder / "groundtruth.txt").is_file()


def load_lasot(root: Path, names: Iterable[str] | None = None) -> list[Sequence]:
    """LaSOT sequences under ``root`` (``<class>/<class>-N``), or a single class folder.

    ``names`` (e.g. the lines of LaSOT's ``training_set.txt``) restricts which are loaded.
    """
    root = Path(root)
    if _is_lasot_sequence(root):
        return [load_lasot_sequence(root)]
    folders: list[Path] = []
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        if _is_lasot_sequence(child):  # root is one class folder
            folders.append(child)
        else:
            folders.extend(sorted(p for p in child.iterdir() if _is_lasot_sequence(p)))
    if names is not None:
        wanted = set(names)
        folders = [f for f in folders if f.name in wanted]
    return [load_lasot_sequence(f) for f in folders]


def _vid_root(root: Path) -> Path | None:
    for candidate in (root, root / "ILSVRC2015", root / "ILSVRC"):
        if (candidate / "Annotations" / "VID").is_dir():
            return candidate
    return None


def _parse_vid_xml(path: Path) -> dict[int, tuple[float, float, float, float]]:
    """``trackid -> (xmin, ymin, xmax, ymax)`` of one ImageNet-VID frame annotation."""
    boxes: dict[int, tuple[float, float, float, float]] = {}
    for obj in ET.parse(path).getroot().iter("object"):
        track = obj.findtext("trackid")
        bndbox = obj.find("bndbox")
        if track is None or bndbox is None:
            continue
        values = [bndbox.findtext(k) for k in ("xmin", "ymin", "xmax", "ymax")]
        if any(v is None for v in values):
            raise ValueError(f"{path}: incomplete bndbox for track {track}")
        boxes[int(track)] = tuple(float(v) for v in values)  # type: ignore[arg-type]
    return boxes


def load_vid_snippet(annotation_dir: Path, data_dir: Path) -> Sequence | None:
    """One ImageNet-VID snippet as one track: the track annotated in the most frames.

    The sequence runs from that track's first to its last annotated frame (the runtime expects a
    visible target in frame 0); frames in between without it are NaN. Returns None for a snippet
    without any object.
    """
    xmls = sorted(annotation_dir.glob("*.xml"))
    per_frame = [_parse_vid_xml(p) for p in xmls]
    counts: dict[int, int] = {}
    for boxes in per_frame:
        for track in boxes:
            counts[track] = counts.get(track, 0) + 1
    if not counts:
        return None
    # Most annotated frames wins; ties go to the lowest id, so the choice is reproducible.
    track = min(counts, key=lambda t: (-counts[t], t))
    present = [i for i, boxes in enumerate(per_frame) if track in boxes]
    first, last = present[0], present[-1]
    rows = np.full((last - first + 1, 4), np.nan)
    frames: list[Path] = []
    for k, i in enumerate(range(first, last + 1)):
        frame = data_dir / (xmls[i].stem + ".JPEG")
        if not frame.is_file():
            alternatives = [p for p in data_dir.glob(xmls[i].stem + ".*")]
            if not alternatives:
                raise FileNotFoundError(f"no frame for {xmls[i]} in {data_dir}")
            frame = alternatives[0]
        frames.append(frame)
        if track in per_frame[i]:
            rows[k] = per_frame[i][track]
    gt = blank_invisible(to_internal(rows, CONVENTIONS["imagenet_vid"]))
    return Sequence(annotation_dir.name, frames, gt)


def load_imagenet_vid(root: Path, split: str = "train") -> list[Sequence]:
    """ImageNet VID snippets of ``split`` (one track each, see :func:`load_vid_snippet`).

    Parses every XML on the first call (the full train set is ~1.1 M files: minutes); snippets
    without objects are skipped.
    """
    base = _vid_root(Path(root))
    if base is None:
        raise FileNotFoundError(f"no Annotations/VID under {root}")
    ann_root = base / "Annotations" / "VID" / split
    data_root = base / "Data" / "VID" / split
    if not ann_root.is_dir():
        raise FileNotFoundError(f"no {ann_root}")
    # os.walk lists each directory once (no stat per XML file): the train set has ~1.1 M files.
    snippet_dirs = sorted(
        Path(d) for d, _, files in os.walk(ann_root) if any(f.endswith(".xml") for f in files)
    )
    out: list[Sequence] = []
    for ann_dir in snippet_dirs:
        sequence = load_vid_snippet(ann_dir, data_root / ann_dir.relative_to(ann_root))
        if sequence is not None:
            out.append(sequence)
    return out


# ------------------------------------------------------------------------------------------
# Layout detection
# ------------------------------------------------------------------------------------------
def _is_got10k_sequence(folder: Path) -> bool:
    return (folder / "groundtruth.txt").is_file() and not (folder / "img").is_dir()


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir())


def detect_layout(root: Path) -> Layout:
    """Which of the supported layouts ``root`` holds; ValueError naming what was looked for."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    if _vid_root(root) is not None:
        return "imagenet_vid"
    children = _subdirs(root)
    if (root / GROUND_TRUTH_FILE).is_file() or any(
        (c / GROUND_TRUTH_FILE).is_file() for c in children
    ):
        return "otb"
    if _is_lasot_sequence(root) or any(_is_lasot_sequence(c) for c in children):
        return "lasot"
    if any(_is_lasot_sequence(g) for c in children for g in _subdirs(c)):
        return "lasot"
    split = root / "train"
    if split.is_dir() and any(_is_got10k_sequence(c) for c in _subdirs(split)):
        return "got10k"
    if any(_is_got10k_sequence(c) for c in children):
        return "got10k"
    raise ValueError(
        f"{root}: no known layout (OTB <seq>/{GROUND_TRUTH_FILE}; GOT-10k train/<seq>/"
        "groundtruth.txt; LaSOT <class>/<class>-N/img + groundtruth.txt; ImageNet VID "
        "Annotations/VID)"
    )


def discover(root: Path) -> list[Sequence]:
    """Every sequence under ``root``, whichever supported layout it is in.

    This is a plain loader: it applies no train/val split. For the shared data use
    :func:`training_sequences`, which does.
    """
    root = Path(root)
    if (root / "splits.json").is_file():
        raise ValueError(
            f"{root} holds splits.json: it is a data root with a val split; use "
            "training_sequences() so val sequences are kept out"
        )
    layout = detect_layout(root)
    if layout == "otb":
        return load_otb_folder(root)
    if layout == "got10k":
        return load_got10k(root)
    if layout == "lasot":
        return load_lasot(root)
    return load_imagenet_vid(root)


# ------------------------------------------------------------------------------------------
# The shared training data, guarded against val
# ------------------------------------------------------------------------------------------
# Dataset tags the shared data puts in front of a sequence's own name (MANIFEST.md); stripped
# when comparing names so that e.g. "otb_Crossing" is recognized as the val sequence "Crossing".
_SOURCE_PREFIXES = (
    "otb_",
    "vot2015_",
    "vot_",
    "tld_",
    "lasot_",
    "uav123_",
    "uavdt_",
    "dtb70_",
    "davis2016_",
    "got10k_",
    "uav_",
)


def canonical_name(name: str) -> str:
    """A sequence's name without dataset tag, ``_firstN`` suffix or case, for leak checks."""
    n = name.lower()
    for prefix in _SOURCE_PREFIXES:
        if n.startswith(prefix):
            n = n[len(prefix) :]
            break
    return re.sub(r"_first\d+$", "", n)


class ValLeakError(ValueError):
    """A validation sequence was about to be used for training."""


def read_splits(data_root: Path) -> dict[str, list[str]]:
    for candidate in (Path(data_root) / "splits.json", Path(data_root) / "sequences/splits.json"):
        if candidate.is_file():
            splits = json.loads(candidate.read_text())
            if "train" not in splits or "val" not in splits:
                raise ValueError(f"{candidate} needs 'train' and 'val' lists")
            return {k: list(v) for k, v in splits.items()}
    raise FileNotFoundError(f"no splits.json in {data_root}")


def assert_no_val(sequences: Iterable[Sequence], val_names: Iterable[str]) -> None:
    """Raise :class:`ValLeakError` if any sequence is (a renamed copy of) a val sequence."""
    val = {canonical_name(n): n for n in val_names}
    leaks = [
        f"{s.name} (val: {val[canonical_name(s.name)]})"
        for s in sequences
        if canonical_name(s.name) in val
    ]
    if leaks:
        raise ValLeakError(
            "validation sequences must never be trained on, but these were about to be: "
            + ", ".join(leaks)
        )


# ------------------------------------------------------------------------------------------
# Frames and annotated indices (every training tool reads frames this way)
# ------------------------------------------------------------------------------------------
def read_frame(path) -> np.ndarray:
    """One frame as BGR uint8 (OSError if it cannot be read)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f"cannot read image {path}")
    return image


def annotated(sequence: Sequence) -> np.ndarray:
    """Indices of frames whose ground truth is a real box (not NaN, positive size)."""
    gt = sequence.ground_truth
    ok = np.isfinite(gt).all(axis=1)
    ok[ok] &= (gt[ok, 2] > 0) & (gt[ok, 3] > 0)
    return np.flatnonzero(ok)


def training_sequences(data_root: Path, extra_roots: Iterable[Path] = ()) -> list[Sequence]:
    """All meta-training sequences of the shared data (and any ``extra_roots``).

    The ``train`` split of ``<data_root>/splits.json`` from ``<data_root>/sequences``, every
    sequence of ``<data_root>/train_extra`` (if present), and whatever :func:`discover` finds in
    ``extra_roots`` (GOT-10k, LaSOT, VID...). Raises :class:`ValLeakError` if any of them is a
    ``val`` sequence, under its own name or a dataset-tagged one.
    """
    data_root = Path(data_root)
    splits = read_splits(data_root)
    overlap = {canonical_name(n) for n in splits["train"]} & {
        canonical_name(n) for n in splits["val"]
    }
    if overlap:
        raise ValLeakError(f"splits.json lists {sorted(overlap)} in both train and val")
    sequences = load_otb_folder(data_root / "sequences", splits["train"])
    extra = data_root / "train_extra"
    if extra.is_dir():
        sequences += load_otb_folder(extra)
    for root in extra_roots:
        sequences += discover(Path(root))
    assert_no_val(sequences, splits["val"])
    counts = Counter(s.name for s in sequences)
    duplicates = sorted(n for n, k in counts.items() if k > 1)
    if duplicates:
        warnings.warn(f"sequence names occur more than once: {duplicates}", stacklevel=2)
    return sequences


# ------------------------------------------------------------------------------------------
# Aerial vs ground-level
# ------------------------------------------------------------------------------------------
# train_extra/MANIFEST.md: the UAV123, UAVDT and DTB70 sequences and "uav_Biker_lowalt" (a
# low-altitude UAV clip) are aerial views, 24 of its 31; everything else is ground level.
AERIAL_PREFIXES = ("uav123_", "uavdt_", "dtb70_", "uav_")


def view_of(sequence: Sequence | str) -> View:
    """``"aerial"`` for UAV/drone footage (by the shared data's name prefixes), else ground."""
    name = sequence if isinstance(sequence, str) else sequence.name
    return "aerial" if name.lower().startswith(AERIAL_PREFIXES) else "ground"


def is_aerial(sequence: Sequence | str) -> bool:
    return view_of(sequence) == "aerial"


__all__ = [
    "AERIAL_PREFIXES",
    "CONVENTIONS",
    "BoxConvention",
    "ValLeakError",
    "assert_no_val",
    "blank_invisible",
    "canonical_name",
    "detect_layout",
    "discover",
    "is_aerial",
    "load_got10k",
    "load_got10k_sequence",
    "load_imagenet_vid",
    "load_lasot",
    "load_lasot_sequence",
    "load_otb",
    "load_otb_folder",
    "load_vid_snippet",
    "read_splits",
    "to_internal",
    "training_sequences",
    "annotated",
    "read_frame",
    "view_of",
]
