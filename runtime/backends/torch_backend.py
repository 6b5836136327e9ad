"""The reference backend: the PyTorch modules themselves (CPU or CUDA, whatever they sit on)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from runtime.rtmdnet.features import RoIFeatureExtractor


class TorchBackend:
    name = "torch"

    def __init__(self, extractor: RoIFeatureExtractor) -> None:
        self.extractor = extractor

    def keep_channels(self, keep: torch.Tensor) -> TorchBackend:
        """A backend whose backbone computes only output channels ``keep`` (channel pruning)."""
        return TorchBackend(self.extractor.keep_channels(keep))

    @torch.no_grad()
    def feature_map(self, crop: torch.Tensor) -> torch.Tensor:
        return self.extractor.feature_map(crop)

    @torch.no_grad()
    def pool(
        self, feature_map: torch.Tensor, rois: torch.Tensor, batch_indices: torch.Tensor
    ) -> torch.Tensor:
        return self.extractor.pool(feature_map, rois, batch_indices)

    def __repr__(self) -> str:
        device = next(self.extractor.parameters()).device
        return f"TorchBackend({type(self.extractor.backbone).__name__} on {device})"
