"""What trackers read off a response map (below every tracker: MLT's and the Siamese base's)."""

from __future__ import annotations

import torch


def response_entropy(prob: torch.Tensor) -> float:
    """Entropy of a response map normalized to a distribution: low for one sharp peak (MLT picks
    its context images by it)."""
    p = prob.flatten().double()
    p = p / p.sum().clamp_min(1e-12)
    return float(-(p * torch.log(p.clamp_min(1e-12))).sum())
