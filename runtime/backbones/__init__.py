"""Conv backbones for the trackers, in plain PyTorch (no torchvision).

One contract for all of them::

    backbone = build_backbone(name, weights_dir=None)  # eval mode, frozen
    backbone.stride          # cumulative stride of the output feature map
    backbone.out_channels
    backbone.min_input_size  # smallest input side the trunk accepts
    backbone.pretrained      # False only for a randomly initialized trunk
    features = backbone(crop)  # crop: float32 (N, 3, H, W), BGR 0..255 as OpenCV gives it

Each backbone normalizes its own input inside ``forward`` (or in its folded first conv), so an
exported ONNX graph takes raw BGR 0..255 crops.

- ``"nanotrack"``: NanoTrack v3's MobileNetV3-small-style trunk, stride 16, 96 channels,
  pretrained for tracking (Apache-2.0). See :mod:`runtime.backbones.nanotrack`.
- ``"mobilenet_v2"``: Google's ImageNet MobileNetV2 1.0/224 cut at stride 16 (96 channels) or,
  with ``cut="stride8"``, stride 8 (32 channels) (Apache-2.0). See
  :mod:`runtime.backbones.mobilenet_v2`.
- ``"vggm"``: RT-MDNet's VGG-M conv1-3, stride 8, 512 channels. No pretrained weights exist
  here: random init unless ``weights=`` names a trained state dict. See
  :mod:`runtime.backbones.vggm`.

Weights come from ``weights_dir`` or, by default, ``data_root() / "weights"``; a missing file
raises FileNotFoundError naming it.
"""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from runtime.backbones.mobilenet_v2 import (
    MobileNetV2Backbone,
    build_mobilenet_v2,
    imagenet_labels,
    mobilenet_v2_classifier,
)
from runtime.backbones.nanotrack import NanoTrackBackbone, build_nanotrack
from runtime.backbones.vggm import CrossChannelLRN, VGGMBackbone, build_vggm

BACKBONE_NAMES = ("nanotrack", "mobilenet_v2", "vggm")


def build_backbone(
    name: str, weights_dir: str | os.PathLike[str] | None = None, **options: Any
) -> nn.Module:
    """A frozen, eval-mode backbone by name (one of :data:`BACKBONE_NAMES`).

    ``options`` go to the backbone's constructor: ``cut="stride16" | "stride8"`` for
    ``mobilenet_v2``; ``weights=<path to .pt/.npz>``, ``lrn_size``, ``seed`` for ``vggm`` (which
    does not read ``weights_dir``: it has no shipped weights).
    """
    if name == "nanotrack":
        return build_nanotrack(weights_dir, **options)
    if name == "mobilenet_v2":
        return build_mobilenet_v2(weights_dir, **options)
    if name == "vggm":
        return build_vggm(**options)
    raise ValueError(f"unknown backbone {name!r}; choose one of {BACKBONE_NAMES}")


__all__ = [
    "BACKBONE_NAMES",
    "CrossChannelLRN",
    "MobileNetV2Backbone",
    "NanoTrackBackbone",
    "VGGMBackbone",
    "build_backbone",
    "build_mobilenet_v2",
    "build_nanotrack",
    "build_vggm",
    "imagenet_labels",
    "mobilenet_v2_classifier",
]
