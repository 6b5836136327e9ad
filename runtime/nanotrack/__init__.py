"""The ``nanotrack`` tracker: the full pretrained NanoTrack v3 network (backbone + BAN head)."""

from runtime.nanotrack.config import NanoTrackConfig
from runtime.nanotrack.tracker import NanoTracker

__all__ = ["NanoTrackConfig", "NanoTracker"]
