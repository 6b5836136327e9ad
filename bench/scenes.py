"""Ground-level or aerial: which kind of video a shared sequence is, from its ``meta.json``.

Reports split the two because trackers rank differently on them (docs/nanotrack.md): the
UAV123, DTB70 and UAVDT sequences (and the low-altitude ``uav_Biker_lowalt``) are filmed from
drones; OTB, VOT, TLD, LaSOT and DAVIS ones from the ground. ``sequences/`` holds ground-level
benchmarks only (its ``meta.json`` names no aerial dataset).
"""

from __future__ import annotations

import json
from pathlib import Path

GROUND = "ground"
AERIAL = "aerial"
AERIAL_MARKS = ("uav", "dtb70")  # dataset names and sequence-name prefixes filmed from drones


def scene_of(folder: Path) -> str:
    """``"aerial"`` or ``"ground"`` for one sequence folder."""
    meta_file = folder / "meta.json"
    dataset = ""
    if meta_file.is_file():
        try:
            dataset = str(json.loads(meta_file.read_text()).get("dataset", ""))
        except (json.JSONDecodeError, UnicodeDecodeError):
            dataset = ""
    text = f"{dataset} {folder.name}".lower()
    return AERIAL if any(mark in text for mark in AERIAL_MARKS) else GROUND
