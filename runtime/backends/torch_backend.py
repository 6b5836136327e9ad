"""The reference backend: the PyTorch modules themselves (CPU or CUDA, whatever they sit on)."""

from __future__ import annotations

import torch

from runtime.roi_features import RoIFeatureExtractor


class TorchBackend:
    name = "torch"
    channel_budget: int | None = None  # slices to any width
    takes_batches = True  # the modules run any batch of crops

    def __init__(self, extractor: RoIFeatureExtractor, half: bool = False) -> None:
        """``half``: run the backbone under CUDA fp16 autocast (outputs stay float32)."""
        device = next(extractor.parameters()).device
        if half and device.type != "cuda":
            raise ValueError(
                f"fp16 on the torch backend needs a CUDA device, the backbone is on {device}; "
                f"use precision fp32 on a CPU"
            )
        self.extractor = extractor
        self.half = half

    def keep_channels(self, keep: torch.Tensor) -> TorchBackend:
        """A backend whose backbone computes only output channels ``keep`` (channel pruning)."""
        return TorchBackend(self.extractor.keep_channels(keep), self.half)

    @torch.no_grad()
    def feature_map(self, crop: torch.Tensor) -> torch.Tensor:
        if not self.half:
            return self.extractor.feature_map(crop)
        with torch.autocast("cuda", dtype=torch.float16):
            return self.extractor.feature_map(crop).float()

    @torch.no_grad()
    def pool(
        self, feature_map: torch.Tensor, rois: torch.Tensor, batch_indices: torch.Tensor
    ) -> torch.Tensor:
        return self.extractor.pool(feature_map, rois, batch_indices)

    def __repr__(self) -> str:
        device = next(self.extractor.parameters()).device
        half = ", fp16" if self.half else ""
        return f"TorchBackend({type(self.extractor.backbone).__name__} on {device}{half})"
