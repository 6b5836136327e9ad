"""Stage 6 of a run: the tracker the request names, built once, and a group around it that builds
one more per extra target (:class:`runtime.multi_target.MultiTracker`).

A default tracker whose weights are missing falls back to one that needs none, after a note; a
named one never does (the user asked for that one). Option errors of the registry become
:class:`~runtime.cli.request.UsageError`, so they end as one ``error:`` line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runtime.backends.tensorrt_backend import TensorRTUnavailable
from runtime.cli.console import Notify
from runtime.cli.request import TrackerChoice, TrackRequest, UsageError
from runtime.multi_target import MultiTracker
from runtime.tracker_api import RunsOnBackend, Tracker

TrackerFactory = Callable[..., Tracker]
"""Builds a tracker from its name and the data folder (``None``: the tracker's own default)."""


@dataclass(frozen=True, eq=False)
class BuiltTracker:
    """The tracker built for the first target, the choice it was built from (the request's, or
    the fallback), and the group that tracks every target."""

    tracker: Tracker
    choice: TrackerChoice
    group: MultiTracker


def _build(factory: TrackerFactory, choice: TrackerChoice, data: Path | None) -> Tracker:
    options = choice.options()
    try:
        # Injected test factories take (name, data) only; options go only where some are set.
        return factory(choice.name, data, **options) if options else factory(choice.name, data)
    except TensorRTUnavailable as exc:  # --backend tensorrt on a machine without it
        raise UsageError(str(exc)) from None
    except ValueError as exc:  # the registry's "unknown tracker", a bad config value
        raise UsageError(str(exc)) from None


def _requested_or_fallback(
    request: TrackRequest, factory: TrackerFactory, notify: Notify
) -> tuple[Tracker, TrackerChoice]:
    """The requested tracker, or for a default one whose weights are missing the fallback."""
    try:
        return _build(factory, request.tracker, request.data), request.tracker
    except FileNotFoundError as exc:
        fallback = request.tracker.fallback()
        if fallback is None:
            raise
        notify(f"{exc}\nfalling back to {fallback.name} (untrained backbone: poor accuracy)")
        return _build(factory, fallback, request.data), fallback


def make_tracker(request: TrackRequest, factory: TrackerFactory, notify: Notify) -> BuiltTracker:
    """Build the tracker, say where its network runs (and why), and group it for the targets."""
    tracker, choice = _requested_or_fallback(request, factory, notify)
    if isinstance(tracker, RunsOnBackend):
        why = getattr(tracker.backend, "chosen_because", "")
        notify(f"{choice.name}: {tracker.backend!r}" + (f" ({why})" if why else ""))
    group = MultiTracker(lambda: _build(factory, choice, request.data), first=tracker)
    return BuiltTracker(tracker, choice, group)
