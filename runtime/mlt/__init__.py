"""MLT (Choi, Kwon, Lee, ICCV 2019): a matching network plus a meta-learner that turns the loss
gradient of its last conv layer into 32 target-specific 1x1 kernels and a channel attention."""

from runtime.mlt.config import MLTConfig
from runtime.mlt.tracker import MLTTracker

__all__ = ["MLTConfig", "MLTTracker"]
