"""The RT-MDNet-style tracker that MetaRTT builds on."""

from runtime.rtmdnet.config import RTMDNetConfig
from runtime.rtmdnet.tracker import RTMDNetTracker

__all__ = ["RTMDNetConfig", "RTMDNetTracker"]
