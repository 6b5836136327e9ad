"""Where a tracker's frame goes: wall-clock milliseconds per named stage (``bench.profile``).

Every tracker of ours owns a :class:`StageClock` (``tracker.stage_clock``) and wraps each part of
its ``update`` in ``with self.stage_clock.stage("crop"):``. The clock is off by default: then
``stage`` hands back one shared no-op context and costs a method call. ``bench.profile`` turns it
on, and after each ``update`` takes the frame's figures (:meth:`StageClock.take`); what the
stages do not cover is reported as ``other`` (Python glue, conversions, bookkeeping).

The stage names are the same for every tracker, so one table compares them (a tracker leaves out
the stages it does not have). Stages must not nest: an outer stage would count an inner one's
time twice.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from types import TracebackType

# In the order a frame runs them (a tracker uses those it has).
STAGES: tuple[str, ...] = (
    "sampling",  # drawing candidate / update sample boxes
    "crop",  # cutting the search window(s) out of the frame, to a tensor
    "backbone",  # the fixed network on the crop (Siamese trackers: with the correlation head)
    "roi_pooling",  # RoIAlign of candidate and update-sample boxes on the feature map
    "candidate_scoring",  # the classifier / response map over the candidates or cells
    "box_regression",  # turning the chosen candidates or cell into the frame's box
    "online_update",  # adapting the target-specific part (amortized: most frames have none)
)
OTHER = "other"  # the frame's time the stages did not cover
_NO_OP = nullcontext()


class _Timing:
    __slots__ = ("clock", "name", "start")

    def __init__(self, clock: StageClock, name: str) -> None:
        self.clock, self.name = clock, name
        self.start = 0.0

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        elapsed_ms = (time.perf_counter() - self.start) * 1e3
        frame = self.clock.frame_ms
        frame[self.name] = frame.get(self.name, 0.0) + elapsed_ms


class StageClock:
    """Milliseconds per stage of the current frame, while ``enabled``."""

    def __init__(self) -> None:
        self.enabled = False
        self.frame_ms: dict[str, float] = {}

    def stage(self, name: str) -> AbstractContextManager[None]:
        """A context timing its body as stage ``name`` (one of :data:`STAGES`)."""
        if not self.enabled:
            return _NO_OP
        if name not in STAGES:
            raise ValueError(f"unknown stage {name!r}; stages are: {', '.join(STAGES)}")
        return _Timing(self, name)

    def take(self) -> dict[str, float]:
        """This frame's milliseconds per stage so far, and start the next frame."""
        frame, self.frame_ms = self.frame_ms, {}
        return frame
