"""One way to build any tracker the benchmarks can run: ours and OpenCV's peers, by name.

The registry (:mod:`runtime.registry`) knows both; this module keeps the benchmarks' names for it.
"""

from __future__ import annotations

from pathlib import Path

from runtime.registry import ALL_NAMES, build_tracker
from runtime.tracker_api import Tracker


def available_names() -> list[str]:
    """Every tracker name :func:`make_tracker` accepts: ours, then the OpenCV peers."""
    return list(ALL_NAMES)


def make_tracker(name: str, data_dir: Path | None = None, **options: object) -> Tracker:
    """A fresh tracker by name; ``data_dir`` is the shared data root (weights, peer models).

    ``options`` override config fields of ours (OpenCV's ``cv2-*`` peers take none); ValueError
    for an unknown name or an option the tracker does not take. The thread count is the
    benchmark's (``--threads``, set once for the run), never changed here.
    """
    return build_tracker(name, data_dir=data_dir, **options)
