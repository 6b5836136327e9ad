"""Stage 2 of a run: what to open, and the targets' first boxes as given or known (still 1-based).

An input is a video file, an image folder, a camera index or a stream URL (what a string names is
decided in :func:`runtime.io.source_spec.parse_source` alone); without one, the shared data's
default video, or a synthesized demo clip where the data is absent. The first boxes come from
``--init``, else from ``videos.json`` (a known video) or an OTB folder's ground truth, else they
are drawn in the ``--show`` window (:mod:`runtime.cli.first_boxes`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.cli.console import Notify
from runtime.cli.output_files import OUTPUT_DIR
from runtime.cli.request import TrackRequest, UsageError
from runtime.io.demo_clip import synthesize_clip
from runtime.io.frames import InputError
from runtime.io.source_spec import SourceKind, parse_source
from runtime.paths import data_root
from runtime.sequences import GROUND_TRUTH_FILE, read_boxes_file

DEFAULT_VIDEO = "pysot_bag.avi"  # in <data>/videos/, with its box in videos.json
DEMO_CLIP = OUTPUT_DIR / "demo_clip.mp4"  # tracked when the shared data is absent
DRAWN = "the window"  # box_origin of boxes the user draws (--show without --init)


@dataclass(frozen=True, eq=False)
class ResolvedInput:
    """What to open, and where the first boxes come from."""

    spec: str  # what open_source gets
    init_boxes_1based: tuple[np.ndarray, ...]  # one per target; empty: to be drawn (--show)
    box_origin: str  # where the boxes came from, for the messages

    @property
    def must_draw(self) -> bool:
        """No box is given or known: the user draws them on the first frame."""
        return not self.init_boxes_1based


def parse_box(text: str) -> np.ndarray:
    """``"x,y,w,h"`` (1-based, as the user wrote it) to four finite floats, or UsageError."""
    hint = "--init needs four numbers x,y,w,h (1-based pixels), e.g. --init 316,140,113,118"
    parts = [p.strip() for p in text.replace(" ", ",").split(",") if p.strip()]
    if len(parts) != 4:
        raise UsageError(f"{hint}; got {text!r}")
    try:
        values = np.array([float(p) for p in parts], dtype=np.float64)
    except ValueError:
        raise UsageError(f"{hint}; got {text!r}") from None
    if not np.all(np.isfinite(values)):
        raise UsageError(f"{hint}; got {text!r} (not finite)")
    return values


def _known_video_box(video: Path, data: Path) -> np.ndarray | None:
    """The 1-based first-frame box videos.json gives for a file of this name, if any."""
    listing = data / "videos" / "videos.json"
    if not listing.is_file():
        return None
    try:
        entries = json.loads(listing.read_text())
    except ValueError as exc:
        raise UsageError(f"cannot read {listing}: {exc}") from None
    for entry in entries:
        if entry.get("file") == video.name and "init_box" in entry:
            return np.asarray(entry["init_box"], dtype=np.float64)
    return None


def _sequence_first_box(folder: Path) -> np.ndarray | None:
    """The first ground-truth row (1-based) of an OTB sequence folder, if it has one."""
    gt = folder / GROUND_TRUTH_FILE
    if not gt.is_file():
        return None
    try:
        rows = read_boxes_file(gt)
    except ValueError as exc:
        raise UsageError(f"cannot read the first box: {exc}") from None
    if len(rows) == 0 or np.isnan(rows[0]).any():
        raise UsageError(f"{gt} has no usable first row; give the first box with --init")
    return rows[0]


def _default_input(given: tuple[np.ndarray, ...], data: Path, notify: Notify) -> ResolvedInput:
    """No input named: the shared data's default video, else a synthesized demo clip."""
    default = data / "videos" / DEFAULT_VIDEO
    if default.is_file():
        if given:
            return ResolvedInput(str(default), given, "--init")
        box = _known_video_box(default, data)
        if box is None:
            raise UsageError(f"no first-frame box for {default} in videos.json; give --init")
        return ResolvedInput(str(default), (box,), "videos.json")
    path, demo_box = synthesize_clip(DEMO_CLIP)
    notify(f"no video at {default}: tracking a synthesized demo clip, {path}")
    if given:
        return ResolvedInput(str(path), given, "--init")
    return ResolvedInput(str(path), (demo_box,), "demo clip")


def resolve_input(request: TrackRequest, notify: Notify) -> ResolvedInput:
    """Decide what to open and which first-frame boxes to use (still 1-based).

    With ``--show``, where no box is given or known, the boxes are left to be drawn on the first
    frame instead of refusing.
    """
    given = tuple(parse_box(text) for text in request.init)
    data = data_root(request.data)
    if request.input is None:
        return _default_input(given, data, notify)
    if given:
        return ResolvedInput(request.input, given, "--init")
    source = parse_source(request.input)  # camera, stream URL or path: decided there alone
    if source.kind is SourceKind.PATH:
        path = source.path
        assert path is not None
        box: np.ndarray | None = None
        origin = ""
        if path.is_file():
            box, origin = _known_video_box(path, data), "videos.json"
        elif path.is_dir():
            box, origin = _sequence_first_box(path), GROUND_TRUTH_FILE
        if box is not None:
            return ResolvedInput(request.input, (box,), origin)
        if not path.exists():
            raise InputError(f"no such file or folder: {path}")
    if request.show:
        return ResolvedInput(request.input, (), DRAWN)
    raise UsageError(
        f"no known first-frame box for {request.input}; give one with --init x,y,w,h (1-based), "
        f"or draw it with --show"
    )
