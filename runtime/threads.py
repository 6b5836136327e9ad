"""How many CPU threads torch and OpenCV should use: the cores that are actually free.

torch defaults to one thread per core it may run on. When other processes keep some of those
cores busy, its worker threads wait on each other at every parallel region (spinning, then
sleeping, then being descheduled mid-barrier), and a per-frame tracker slows down by an order
of magnitude: ``metartt`` on one ``val`` sequence went from 28 FPS to 1.3 FPS with 2 threads on
2 cores, one of them kept busy by another process (issue 19). One thread fewer than there are
busy cores loses far less than that (docs/metartt.md, "Threads").

:func:`default_threads` therefore takes the cores this process may use (its CPU affinity, capped
by a cgroup CPU quota where one is set) and subtracts the work already running there (the 1-minute
load average, rounded), never going below one thread. ``OMP_NUM_THREADS``, when set to a positive
integer, is the user's choice and wins.

:func:`set_threads` applies a count to torch and OpenCV. Both settings are **process-wide** (torch
has no per-model thread count): every tracker and every other torch/OpenCV user in the process
gets the same. The count chosen is remembered, and :func:`ensure_threads` (what
:func:`runtime.registry.create_tracker` calls) picks :func:`default_threads` only when nothing in
this process has chosen one yet, and only once: the CLI's ``--threads``, a benchmark's, or an
earlier tracker's choice is never overridden behind the caller's back.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>" or "max <period>"


def usable_cores() -> int:
    """Cores this process may run on: its affinity mask, capped by a cgroup v2 CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = CGROUP_CPU_MAX.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def busy_cores() -> float:
    """The 1-minute load average: runnable tasks, averaged (0 where the OS does not say)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def default_threads(cores: int | None = None, load: float | None = None) -> int:
    """Threads for a tracking process started now: ``max(1, cores - round(load))``.

    ``cores`` defaults to :func:`usable_cores`, ``load`` to :func:`busy_cores`. Call it before
    the tracker starts working: once this process runs, its own threads count in the load
    average too. The load average is the whole machine's; on a machine with more cores than the
    affinity mask allows, other processes' load on the other cores counts against this one, so
    it errs towards fewer threads, the cheap side (one thread too few costs a fraction of the
    speed; one too many on a busy core costs most of it). ``OMP_NUM_THREADS`` set to a positive
    integer is returned as it is.
    """
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    cores = usable_cores() if cores is None else cores
    load = busy_cores() if load is None else load
    return max(1, cores - round(load))


@dataclass
class ProcessThreads:
    """The thread count chosen for this process, if any (torch's and OpenCV's are global)."""

    count: int | None = None


_PROCESS = ProcessThreads()


def set_threads(count: int) -> int:
    """Use ``count`` threads in torch (intra-op) and OpenCV, for the whole process; returns it.

    ONNX Runtime sessions built afterwards take torch's count unless given their own.
    """
    if count < 1:
        raise ValueError(f"threads must be at least 1, got {count}")
    import cv2

    cv2.setNumThreads(count)
    try:
        import torch
    except ImportError:  # a tracker without torch still runs; nothing more to configure
        pass
    else:
        torch.set_num_threads(count)
    _PROCESS.count = count
    return count


def ensure_threads(threads: int | None = None) -> int:
    """The thread count to track with, applied: ``threads`` when given (it replaces any earlier
    choice), else the count this process already chose, else (the first time) the free cores
    (:func:`default_threads`), measured once: later, this process's own work would count in the
    load average and shrink the count mid-run."""
    if threads is not None:
        return set_threads(threads)
    if _PROCESS.count is not None:
        return _PROCESS.count
    return set_threads(default_threads())


__all__ = [
    "ProcessThreads",
    "busy_cores",
    "default_threads",
    "ensure_threads",
    "set_threads",
    "usable_cores",
]
