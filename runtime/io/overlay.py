"""What the annotated video and the ``--show`` window draw on a frame: every target's box, its
number and score, and a status line (frame, lost, FPS).

Boxes are the project's **0-based** ``x, y, w, h`` floats (see :mod:`runtime.boxes`); they are
converted to OpenCV's pixel-centre drawing coordinates here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from runtime.io.frames import as_bgr

BOX_COLOR = (0, 255, 0)  # BGR green: the tracker's box
LOST_COLOR = (0, 0, 255)  # BGR red: the box while the tracker reports the target lost
GT_COLOR = (0, 200, 255)  # BGR amber: ground truth, when known
_SHIFT = 4  # cv2 fixed-point bits: draw boxes at 1/16 px so float boxes are not rounded twice


def _draw_box(image: np.ndarray, box: np.ndarray, color: tuple[int, int, int], thick: int) -> bool:
    """Draw a 0-based x,y,w,h box; returns False (draws nothing) for a NaN box."""
    x, y, w, h = np.asarray(box, dtype=np.float64).reshape(4)
    if not np.all(np.isfinite((x, y, w, h))):
        return False
    # Pixel i covers [i, i+1) in box coordinates but OpenCV puts pixel i's centre at i:
    # the box's edges x and x+w sit at x-0.5 and x+w-0.5 in drawing coordinates.
    scale = 1 << _SHIFT
    p1 = (round((x - 0.5) * scale), round((y - 0.5) * scale))
    p2 = (round((x + w - 0.5) * scale), round((y + h - 0.5) * scale))
    cv2.rectangle(image, p1, p2, color, thick, cv2.LINE_AA, _SHIFT)
    return True


def _put_label(image: np.ndarray, text: str, origin: tuple[int, int]) -> None:
    # A dark outline under white text stays legible on any background. Scale 0.5 suits a 640-px
    # wide frame; smaller frames get smaller text, down to 0.35 (about 8 px high, still
    # legible), and a line still too wide breaks at its double spaces onto the next lines, so
    # nothing is cut off at the right edge (a 176x144 clip lost most of its status line).
    font = cv2.FONT_HERSHEY_SIMPLEX
    width = image.shape[1]
    scale = float(np.clip(0.5 * width / 640, 0.35, 0.5))
    x, y = origin
    room = width - x - 3  # the outline is 1 px wider than the text on each side

    def fits(line: str) -> bool:
        return cv2.getTextSize(line, font, scale, 3)[0][0] <= room

    lines: list[str] = []
    for part in text.split("  "):
        if lines and fits(f"{lines[-1]}  {part}"):
            lines[-1] = f"{lines[-1]}  {part}"
        else:
            lines.append(part)
    while not all(fits(line) for line in lines) and scale > 0.25:  # one word wider than the room
        scale -= 0.05
    (_, line_height), baseline = cv2.getTextSize("Ag", font, scale, 3)
    for k, line in enumerate(lines):
        at = (x, y + k * (line_height + baseline + 2))
        cv2.putText(image, line, at, font, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(image, line, at, font, scale, (255, 255, 255), 1, cv2.LINE_AA)


def draw_annotations(
    frame: np.ndarray,
    index: int,
    box: np.ndarray | None = None,
    *,
    score: float | None = None,
    fps: float | None = None,
    ground_truth: np.ndarray | None = None,
    total: int | None = None,
    target_lost: bool = False,
) -> np.ndarray:
    """A copy of ``frame`` with the box (0-based), optional ground truth and a status line.

    ``target_lost``: the tracker reports the target lost; the box is drawn in
    :data:`LOST_COLOR` and the status line says so.

    ``index`` is the 0-based frame index; it is shown 1-based ("frame 1" is the first frame) so it
    matches the line numbers of a boxes file and OTB's ``img/0001.jpg`` names.
    """
    image = as_bgr(frame).copy()
    if ground_truth is not None:
        _draw_box(image, ground_truth, GT_COLOR, 1)
    color = LOST_COLOR if target_lost else BOX_COLOR
    outside = box is not None and not _draw_box(image, box, color, 2)
    parts = [f"frame {index + 1}" + (f"/{total}" if total else "")]
    if outside or target_lost:
        parts.append("target lost" if target_lost else "lost")
    if score is not None and np.isfinite(score):
        parts.append(f"score {score:.2f}")
    if fps is not None and np.isfinite(fps):
        parts.append(f"{fps:.1f} fps")
    _put_label(image, "  ".join(parts), (8, 20))
    return image


@dataclass(frozen=True)
class TargetMark:
    """One target's result on one frame, as drawn and written."""

    box: np.ndarray  # 0-based x, y, w, h
    score: float  # NaN where there is none (the first frame)
    lost: bool | None = None  # reported lost; None for trackers that do not report it


# BGR colours of targets 1, 2, ... when there are several (red stays the colour of "lost"):
# green first, as a single target's box.
TARGET_COLORS = (
    (0, 255, 0),
    (255, 160, 0),
    (255, 0, 255),
    (0, 255, 255),
    (255, 255, 0),
    (160, 80, 255),
    (0, 160, 255),
    (255, 255, 255),
)


def target_color(number: int) -> tuple[int, int, int]:
    """The colour of target ``number`` (1-based); the palette repeats after 8 targets."""
    return TARGET_COLORS[(number - 1) % len(TARGET_COLORS)]


def draw_targets(
    frame: np.ndarray,
    index: int,
    targets: Sequence[TargetMark],
    *,
    fps: float | None = None,
    total: int | None = None,
) -> np.ndarray:
    """A copy of ``frame`` with every target's box in its own colour, labelled with its number
    (1-based, the order of ``--init``) and score; one target is drawn as
    :func:`draw_annotations` draws it."""
    if len(targets) == 1:
        only = targets[0]
        return draw_annotations(
            frame,
            index,
            only.box,
            score=only.score,
            fps=fps,
            total=total,
            target_lost=bool(only.lost),
        )
    image = as_bgr(frame).copy()
    height, width = image.shape[:2]
    missing: list[str] = []
    for number, target in enumerate(targets, start=1):
        color = LOST_COLOR if target.lost else target_color(number)
        if not _draw_box(image, target.box, color, 2) or target.lost:
            missing.append(f"#{number}")
        x, y = np.asarray(target.box, dtype=np.float64)[:2]
        if np.isfinite(x) and np.isfinite(y):
            label = f"#{number}" + (f" {target.score:.2f}" if np.isfinite(target.score) else "")
            origin = (int(np.clip(x, 0, width - 60)), int(np.clip(y - 6, 34, height - 4)))
            _put_label(image, label, origin)
    parts = [f"frame {index + 1}" + (f"/{total}" if total else ""), f"{len(targets)} targets"]
    if missing:
        parts.append("lost " + " ".join(missing))
    if fps is not None and np.isfinite(fps):
        parts.append(f"{fps:.1f} fps")
    _put_label(image, "  ".join(parts), (8, 20))
    return image
