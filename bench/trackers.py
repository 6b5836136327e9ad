"""One way to build any tracker the benchmarks can run: OpenCV peers and ours, by name."""

from __future__ import annotations

from pathlib import Path

from bench.peers import PEER_NAMES, make_peer
from runtime.registry import TRACKER_NAMES, create_tracker
from runtime.tracker_api import Tracker


def available_names() -> list[str]:
    """Every tracker name :func:`make_tracker` accepts: the OpenCV peers, then ours."""
    return [*PEER_NAMES, *TRACKER_NAMES]


def make_tracker(name: str, data_dir: Path | None = None, **options: object) -> Tracker:
    """A fresh tracker by name; ``data_dir`` is the shared data root (weights, peer models).

    ``cv2-*`` names come from :mod:`bench.peers` (which take no options); every other name goes
    through :func:`runtime.registry.create_tracker`, where ``options`` override config fields.
    Raises ValueError for an unknown name.
    """
    if name in PEER_NAMES:
        if options:
            raise ValueError(f"{name} takes no options (got {', '.join(sorted(options))})")
        return make_peer(name, data_dir)
    if name not in TRACKER_NAMES:
        raise ValueError(f"unknown tracker {name!r}; known: {', '.join(available_names())}")
    return create_tracker(name, data_dir=data_dir, **options)
