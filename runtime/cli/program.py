"""What a tool's usage line calls it: one rule for every command in ``[project.scripts]``.

A tool started as a console command (``tracker-ope``) is named by that command; started any
other way (``python -m bench.ope``, ``python train/meta.py``) by the form the docs give, which
each tool passes in. argparse alone would print the file name (``build_engine.py``) or the
console name depending on how the tool was started, so usage lines disagreed between tools.
"""

from __future__ import annotations

import functools
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

DISTRIBUTION = "realtime-tracker"  # pyproject.toml's [project] name


@functools.cache
def console_commands() -> frozenset[str]:
    """The console commands the installed project declares (none when it is not installed)."""
    try:
        points = distribution(DISTRIBUTION).entry_points
    except PackageNotFoundError:  # run from a checkout on PYTHONPATH
        return frozenset()
    return frozenset(point.name for point in points if point.group == "console_scripts")


def program_name(documented: str) -> str:
    """The console command this process was started as, else ``documented``
    (``"python -m bench.ope"``): the ``prog`` of every tool's argument parser."""
    started = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return started if started in console_commands() else documented
