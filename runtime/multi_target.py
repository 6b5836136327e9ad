"""Several targets in one video: one tracker per target, each frame decoded once.

    group = create_multi_tracker("nanotrack")
    group.init(first_frame, [box_a, box_b])          # 0-based x, y, w, h each
    for frame in frames:
        for number, (box, score) in enumerate(group.update(frame), start=1):
            ...

Every target is a tracker of its own, so it keeps its own state (template, memories, online
head, lost flag): a target's boxes are the ones a single-target run from the same box gives. The
second and later trackers are the first one's siblings where it offers them
(:class:`runtime.tracker_api.SharesNetwork`: the weights, ONNX Runtime sessions or engines are
loaded once), else built again by the same factory. Where the tracker batches
(:class:`runtime.tracker_api.BatchesTargets`: ``nanotrack`` on the torch backend) one frame's
search crops go through the network in one call; otherwise the targets update one after another.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from runtime.registry import build_tracker
from runtime.threads import ensure_threads
from runtime.tracker_api import (
    BatchesTargets,
    ReportsLost,
    SharesNetwork,
    Tracker,
    check_frame,
    check_init_box,
    require_init,
)


def batches(tracker: Tracker) -> bool:
    """Whether ``tracker`` updates several targets in batched network calls here."""
    return isinstance(tracker, BatchesTargets) and tracker.can_batch


class MultiTracker:
    """Tracks a list of targets through one video; ``update`` returns ``[(box, score), ...]``
    in the order of the boxes given to ``init``.

    ``make_tracker`` builds one single-target tracker; ``first``, when given, is one already
    built by it (its errors, such as missing weights, then surface before any frame).
    ``batch=False`` updates the targets one after another even where the tracker could batch
    them (batched results differ from single ones by float rounding; bench.multi_target
    compares the two speeds).
    """

    def __init__(
        self, make_tracker: Callable[[], Tracker], first: Tracker | None = None, batch: bool = True
    ) -> None:
        self._make = make_tracker
        self.batch = batch
        self.trackers: list[Tracker] = [first if first is not None else make_tracker()]
        self.name = getattr(self.trackers[0], "name", type(self.trackers[0]).__name__)
        self.targets: list[Tracker] = []  # one per box of the last init, in its order

    def _tracker(self, index: int) -> Tracker:
        """The ``index``-th tracker, made (a sibling of the first where it can be) if new."""
        while len(self.trackers) <= index:
            first = self.trackers[0]
            made = first.sibling() if isinstance(first, SharesNetwork) else self._make()
            self.trackers.append(made)
        return self.trackers[index]

    def init(self, frame: np.ndarray, boxes: Sequence[np.ndarray]) -> None:
        """Start tracking one target per box (each as a single tracker's ``init`` checks it).

        A later ``init`` starts over with the boxes it is given (fewer or more), reusing the
        trackers already made.
        """
        frame = check_frame(frame)
        boxes = list(boxes)
        if not boxes:
            raise ValueError(f"{self.name}: init() needs at least one box")
        checked = []
        for number, box in enumerate(boxes, start=1):
            try:
                checked.append(check_init_box(box, frame))
            except ValueError as exc:
                raise ValueError(f"target {number}: {exc}") from None
        targets = [self._tracker(i) for i in range(len(checked))]
        for tracker, box in zip(targets, checked, strict=True):
            tracker.init(frame, box)
        self.targets = targets

    def update(self, frame: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """Every target's box and score on the next frame."""
        require_init(bool(self.targets), self.name)
        frame = check_frame(frame)
        first = self.targets[0]
        if self.batch and len(self.targets) > 1 and batches(first):
            together = first.update_targets(self.targets, frame)
            if together is not None:
                return together
        return [tracker.update(frame) for tracker in self.targets]

    @property
    def lost(self) -> list[bool] | None:
        """Per target, whether it is reported lost after the last ``update`` (``None`` for
        trackers that do not report it)."""
        if not self.targets or not all(isinstance(t, ReportsLost) for t in self.targets):
            return None
        return [bool(t.lost) for t in self.targets]  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"MultiTracker({self.name}, {len(self.targets)} targets)"


def create_multi_tracker(
    name: str, data_dir: Path | None = None, *, threads: int | None = None, **options: object
) -> MultiTracker:
    """A :class:`MultiTracker` of the registry's tracker ``name`` (``threads`` and options as
    :func:`runtime.registry.create_tracker`'s, threads set once); its first tracker is built
    now."""
    ensure_threads(threads)
    return MultiTracker(lambda: build_tracker(name, data_dir, **options))
