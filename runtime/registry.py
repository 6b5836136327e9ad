"""Our trackers by name, so the CLI and the benchmarks never special-case anyone.

``create_tracker(name)`` returns an object implementing :class:`runtime.tracker_api.Tracker`.
OpenCV's peers live in ``bench/`` (they are baselines, not part of the product).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from runtime.tracker_api import Tracker


def _rtmdnet(data_dir: Path | None, **options: object) -> Tracker:
    from runtime.rtmdnet import RTMDNetConfig, RTMDNetTracker

    config = RTMDNetConfig(**options)  # type: ignore[arg-type]
    return RTMDNetTracker(config, data_dir=data_dir)


_FACTORIES: dict[str, Callable[..., Tracker]] = {
    "rtmdnet": _rtmdnet,
}

TRACKER_NAMES: tuple[str, ...] = tuple(_FACTORIES)


def create_tracker(name: str, data_dir: Path | None = None, **options: object) -> Tracker:
    """Build one of our trackers; ``options`` override fields of its config dataclass."""
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise ValueError(f"unknown tracker {name!r}; ours are: {', '.join(TRACKER_NAMES)}") from None
    return factory(data_dir, **options)
