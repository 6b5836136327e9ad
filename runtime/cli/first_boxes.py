"""Stage 4 of a run: the targets' first-frame boxes, 0-based and checked against the first frame.

They are the boxes :mod:`runtime.cli.inputs` resolved (``--init``'s 1-based boxes are converted
here, and nowhere else in the CLI) or the ones the user draws in the ``--show``
window. Messages give boxes 1-based, as ``--init`` and the boxes file do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runtime.boxes import from_otb, small_box_message, validate_init_box
from runtime.cli.console import warn
from runtime.cli.display import Display
from runtime.cli.inputs import ResolvedInput
from runtime.cli.request import UsageError
from runtime.io.frames import FrameSource


@dataclass(frozen=True, eq=False)
class FirstBoxes:
    """One 0-based ``x, y, w, h`` box per target, in the order of ``--init``."""

    boxes: tuple[np.ndarray, ...]

    @property
    def count(self) -> int:
        return len(self.boxes)


def first_boxes(resolved: ResolvedInput, source: FrameSource, display: Display) -> FirstBoxes:
    """The targets' first-frame boxes: as given, or drawn by the user; UsageError for a box the
    first frame cannot hold. A box too small for the network to see is tracked after one warning
    each."""
    if resolved.init_boxes_1based:
        boxes = [from_otb(box) for box in resolved.init_boxes_1based]
    else:
        boxes = display.pick_boxes(source.first_frame, "draw the target's box")
        if not boxes:
            raise UsageError("no box drawn on the first frame; nothing tracked")
    for number, box in enumerate(boxes, start=1):
        which = "first-frame box" if len(boxes) == 1 else f"first-frame box {number}"
        try:
            validate_init_box(box, source.first_frame.shape, one_based=True)
        except ValueError as exc:
            raise UsageError(f"bad {which} (from {resolved.box_origin}): {exc}") from None
        small = small_box_message(box)
        if small is not None:
            warn(f"warning: {which} (from {resolved.box_origin}) {small}")
    return FirstBoxes(tuple(boxes))
