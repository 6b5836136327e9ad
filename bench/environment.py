"""Where and how a benchmark ran, recorded beside its figures: CPU model, threads, backend, date.

Timings mean little without the machine (DESIGN: name the CPU beside every figure); the report
(:mod:`bench.report`) shows what ``bench.ope`` recorded here.
"""

from __future__ import annotations

import datetime
import functools
import platform
from pathlib import Path

from runtime.registry import is_opencv_peer
from runtime.tracker_api import RunsOnBackend, Tracker

CPUINFO = Path("/proc/cpuinfo")
NOT_REPORTED = "-"


@functools.cache
def cpu_model() -> str:
    """The CPU's model name (Linux: ``/proc/cpuinfo``, as ``lscpu`` shows it), else what the
    platform module knows."""
    try:
        for line in CPUINFO.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or NOT_REPORTED


def backend_label(name: str, tracker: Tracker) -> str:
    """Where ``tracker`` (built for the spec whose tracker name is ``name``) runs its network:
    ``onnxruntime fp32``, ``torch``, ``OpenCV``; ``-`` when it does not say (test doubles)."""
    if is_opencv_peer(name):
        return "OpenCV"
    if not isinstance(tracker, RunsOnBackend):
        return NOT_REPORTED
    backend = tracker.backend
    label = str(getattr(backend, "name", type(backend).__name__))
    precision = getattr(backend, "precision", None)
    return f"{label} {precision}" if isinstance(precision, str) else label


def environment(name: str, tracker: Tracker, threads: int) -> dict[str, object]:
    """The ``environment`` entry of one tracker in a ``bench.ope`` JSON (the day it ran, local)."""
    return {
        "cpu": cpu_model(),
        "threads": threads,
        "backend": backend_label(name, tracker),
        "date": datetime.date.today().isoformat(),
    }
