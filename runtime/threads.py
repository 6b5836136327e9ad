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
"""

from __future__ import annotations

import math
import os
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


__all__ = ["busy_cores", "default_threads", "usable_cores"]
