"""Backbone + RoIAlign: the fixed part of the network that runs once per frame.

This is the part that goes to ONNX / TensorRT (``forward``); trackers also use the two halves
separately so one feature map serves several sets of RoIs. It sits beside :mod:`runtime.roi_align`
below every tracker: the RT-MDNet family pools RoIs with it, MLT runs its trunk through it
(``roi_size=None``: no pooling), and :mod:`runtime.backends` and ``export/`` take it as it is.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from runtime.backbones.common import keep_output_channels
from runtime.roi_align import RoIAlign


class RoIFeatureExtractor(nn.Module):
    """``feature_map(crops)`` then ``pool(feature_map, rois, batch_indices)``.

    ``roi_size=None`` builds the trunk alone (``pool`` refuses, ``feature_dim`` is None): for a
    tracker that reads the feature map only.
    """

    def __init__(
        self, backbone: nn.Module, roi_size: int | None = 3, sampling_ratio: int | None = 2
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.roi_size, self.sampling_ratio = roi_size, sampling_ratio
        self.roi_align: RoIAlign | None = None
        self.feature_dim: int | None = None
        if roi_size is not None:
            ratio = 2 if sampling_ratio is None else sampling_ratio
            self.roi_align = RoIAlign((roi_size, roi_size), 1.0 / backbone.stride, ratio)
            self.feature_dim = backbone.out_channels * roi_size * roi_size
        self.stride = int(backbone.stride)
        # ONNX RoiAlign assumes feature cell i is centred on input coordinate stride * (i + 0.5);
        # each backbone says where its cells really sit (crops are multiples of the stride, so
        # one number holds for every crop). RoIs are shifted by the difference.
        offset = (
            backbone.feature_offset(16 * self.stride)
            if hasattr(backbone, "feature_offset")
            else 0.0
        )
        self.roi_shift = self.stride / 2.0 - 0.5 - float(offset)

    @property
    def pools(self) -> bool:
        """Whether this extractor pools RoIs (built with a ``roi_size``)."""
        return self.roi_align is not None

    def keep_channels(self, keep: torch.Tensor) -> RoIFeatureExtractor:
        """A copy whose backbone computes only output channels ``keep`` (channel pruning)."""
        sliced = keep_output_channels(self.backbone, keep)
        device = next(self.backbone.parameters()).device
        return RoIFeatureExtractor(sliced, self.roi_size, self.sampling_ratio).to(device).eval()

    def feature_map(self, crops: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` float BGR 0-255 crops -> backbone features."""
        return self.backbone(crops)

    def pool(
        self, feature_map: torch.Tensor, rois: torch.Tensor, batch_indices: torch.Tensor
    ) -> torch.Tensor:
        """``(N, 4)`` RoIs (x1, y1, x2, y2 crop pixels) -> ``(N, C * roi * roi)`` features."""
        if self.roi_align is None:
            raise RuntimeError(
                "this RoIFeatureExtractor was built without RoI pooling (roi_size=None)"
            )
        return self.roi_align(feature_map, rois + self.roi_shift, batch_indices).flatten(1)

    def forward(
        self, crops: torch.Tensor, rois: torch.Tensor, batch_indices: torch.Tensor
    ) -> torch.Tensor:
        return self.pool(self.feature_map(crops), rois, batch_indices)


def crop_to_tensor(crop: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """``H x W x 3`` uint8 BGR -> ``(1, 3, H, W)`` float32 BGR 0-255."""
    return torch.from_numpy(crop).to(device).permute(2, 0, 1).unsqueeze(0).float()
