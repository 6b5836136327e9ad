"""The one interface every tracker implements (ours, OpenCV's peers, test doubles).

Frames are ``H x W x 3`` uint8 arrays in **BGR** order (what OpenCV reads). Boxes are 0-based
``x, y, w, h`` floats (see :mod:`runtime.boxes`).

Every tracker checks what it is given at the interface, with the same functions and so the same
messages as the CLI (``python -m runtime.track``): :func:`check_frame` (grey ``H x W`` /
``H x W x 1`` and BGRA frames are converted to BGR; float or other dtypes and empty frames are
refused), :func:`check_init_box` (:func:`runtime.boxes.validate_init_box`) and
:func:`require_init` ("update before init"). :func:`check_init` / :func:`check_update` are the
one-line forms for the top of ``init`` and ``update``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from runtime.boxes import validate_init_box
from runtime.io.frames import as_bgr
from runtime.stage_clock import StageClock


@runtime_checkable
class Tracker(Protocol):
    name: str

    def init(self, frame: np.ndarray, box: np.ndarray) -> None:
        """Start tracking the object inside ``box`` on ``frame``."""

    def update(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        """Locate the object on the next frame: its box and a confidence score."""


@runtime_checkable
class ReportsLost(Protocol):
    """A tracker that says when it has lost its target (after ``update``); optional."""

    lost: bool


@runtime_checkable
class ReportsRunStats(Protocol):
    """A tracker with per-video figures for summaries and benchmarks (prune rate, lost frames)."""

    def run_stats(self) -> dict[str, float]:
        """Figures about the video tracked since the last ``init``."""


@runtime_checkable
class RunsOnBackend(Protocol):
    """A tracker whose fixed network runs on a chosen backend (torch, ONNX Runtime, TensorRT);
    its ``repr`` says which, and ``chosen_because`` (where set) why."""

    backend: object


@runtime_checkable
class TimesStages(Protocol):
    """A tracker that times the stages of its ``update`` (:mod:`runtime.stage_clock`; off until
    ``bench.profile`` enables it)."""

    stage_clock: StageClock


@runtime_checkable
class SharesNetwork(Protocol):
    """A tracker that can start another like itself for a second target in the same video
    (:mod:`runtime.multi_target`), sharing what it can of its network (weights, sessions)."""

    def sibling(self) -> Tracker:
        """A new tracker with no target yet, of this one's kind and settings."""


@runtime_checkable
class BatchesTargets(Protocol):
    """A tracker that can update several targets (itself and its siblings) with batched
    network calls (:mod:`runtime.multi_target`)."""

    @property
    def can_batch(self) -> bool:
        """Whether :meth:`update_targets` batches here at all (its backend allows it)."""

    def update_targets(
        self, targets: Sequence[Tracker], frame: np.ndarray
    ) -> list[tuple[np.ndarray, float]] | None:
        """Each target's ``update(frame)``, in order; ``None`` where they cannot be batched."""


FRAME_CONTRACT = "H x W x 3 uint8 BGR, 0..255, as cv2.imread gives"


def check_frame(frame: object) -> np.ndarray:
    """``frame`` as the contiguous ``H x W x 3`` uint8 BGR array trackers take; ValueError if not.

    Grey ``H x W`` or ``H x W x 1`` frames become BGR, ``H x W x 4`` BGRA loses its alpha (as
    :func:`runtime.io.frames.as_bgr` does for decoded video). Float and other dtypes are refused,
    not rescaled: a float frame in [0, 1] read as 0..255 would be black.
    """
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"a frame must be a numpy array ({FRAME_CONTRACT}); got {type(frame)}")
    if frame.dtype != np.uint8:
        detail = ""
        if frame.size and np.issubdtype(frame.dtype, np.number):
            detail = f" with values in [{np.nanmin(frame):g}, {np.nanmax(frame):g}]"
        raise ValueError(
            f"the frame is {frame.dtype}{detail}: pass uint8 0..255 (H x W x 3 BGR, as "
            f"cv2.imread gives), e.g. (frame * 255).round().astype(np.uint8) from floats in [0, 1]"
        )
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if not (frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] in (3, 4))):
        raise ValueError(
            f"the frame has shape {frame.shape}: pass H x W x 3 BGR (or H x W grey, H x W x 4 "
            f"BGRA, converted to BGR)"
        )
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"the frame is empty (shape {frame.shape})")
    return as_bgr(frame)  # one conversion for decoded video and API frames alike


def check_init_box(box: object, frame: np.ndarray) -> np.ndarray:
    """The first-frame box as 4 float64s, refused (ValueError, the CLI's message) if unusable:
    not 4 numbers, not finite, zero or negative size, or entirely outside ``frame``."""
    return validate_init_box(box, frame.shape)  # type: ignore[arg-type]


def require_init(started: bool, name: str) -> None:
    """RuntimeError unless ``init`` has run (``started``): ``update`` needs a target first."""
    if not started:
        raise RuntimeError(
            f"{name}: update() called before init(): call init(first_frame, box) first"
        )


def check_init(frame: object, box: object) -> tuple[np.ndarray, np.ndarray]:
    """Top of ``init``: ``frame, box = check_init(frame, box)`` (checked frame, checked box)."""
    checked = check_frame(frame)
    return checked, check_init_box(box, checked)


def check_update(frame: object, started: bool, name: str) -> np.ndarray:
    """Top of ``update``: ``frame = check_update(frame, started, self.name)``."""
    require_init(started, name)
    return check_frame(frame)
