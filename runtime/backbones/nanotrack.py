"""NanoTrack v3's backbone: a truncated MobileNetV3-small, stride 16, 96 output channels.

Weights: ``<weights>/nanotrack_v3/nanotrackv3_state_dict.npz`` (the ``backbone.features.*`` keys),
NanoTrack v3 by HonglinChu (github.com/HonglinChu/SiamTrackers), Apache-2.0, trained as a Siamese
tracker on GOT-10k, VID, YouTube-BB, COCO, DET and LaSOT.

Preprocessing: none. The network takes BGR pixels in 0..255 exactly as OpenCV gives them (checked
against the authors' ``nanotrack_backbone.onnx``, whose first op is the first convolution).

Structure (read from the reference ONNX and the state dict): ``features.0`` is conv3x3 s2 + BN +
HardSwish; ``features.1..9`` are inverted residual blocks. A block whose hidden width equals its
input width has no expand conv and runs depthwise, BN, act, SE, project, BN; the others run expand,
BN, act, depthwise, BN, SE, act, project, BN (SE before the activation there). SE is global average
pool, FC, ReLU, FC, HardSigmoid, multiply. The residual add is used when stride is 1 and the input
and output widths are equal. Unlike the stock MobileNetV3-small, the last block (288 -> 96) has
stride 1, so the trunk stops at stride 16. All padding is symmetric ``k // 2``; output cell ``i``
is centred on input pixel ``16 * i`` (0-based).

BatchNorm statistics are loaded into real BatchNorm layers (strict key and shape check against
the file) and then folded into the convolutions, so the run-time module has no BN ops.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from runtime.backbones.common import (
    channels_last,
    fold_bn_in_sequential,
    freeze,
    load_npz,
    nhwc,
    weights_root,
)

NANOTRACK_NPZ = ("nanotrack_v3", "nanotrackv3_state_dict.npz")
_PREFIX = "backbone."

# features.1..9: (kernel, hidden width, output width, squeeze-excite, hard-swish, stride)
_BLOCKS: tuple[tuple[int, int, int, bool, bool, int], ...] = (
    (3, 16, 16, True, False, 2),
    (3, 72, 24, False, False, 2),
    (3, 88, 24, False, False, 1),
    (5, 96, 40, True, True, 2),
    (5, 240, 40, True, True, 1),
    (5, 240, 40, True, True, 1),
    (5, 120, 48, True, True, 1),
    (5, 144, 48, True, True, 1),
    (5, 288, 96, True, True, 1),
)
_STEM_CHANNELS = 16


def _squeezed(channels: int) -> int:
    """MobileNetV3's SE width: channels // 4 rounded to a multiple of 8 (never down by > 10 %)."""
    v = max(8, int(channels // 4 + 4) // 8 * 8)
    return v + 8 if v < 0.9 * (channels // 4) else v


class SqueezeExcite(nn.Module):
    """x * hardsigmoid(fc2(relu(fc1(mean_hw(x))))): channel attention of MobileNetV3."""

    def __init__(self, channels: int, squeezed: int):
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channels, squeezed),
            nn.ReLU(inplace=True),
            nn.Linear(squeezed, channels),
            nn.Hardsigmoid(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))
        return x * s[:, :, None, None]


class InvertedResidual(nn.Module):
    """One MobileNetV3 block; ``conv`` indices match the checkpoint's ``features.N.conv.M``."""

    def __init__(self, inp: int, hidden: int, out: int, k: int, se: bool, hs: bool, stride: int):
        super().__init__()
        self.use_residual = stride == 1 and inp == out

        def act() -> nn.Module:
            return nn.Hardswish(inplace=True) if hs else nn.ReLU(inplace=True)

        def bn(c: int) -> nn.BatchNorm2d:
            return nn.BatchNorm2d(c)

        dw = nn.Conv2d(hidden, hidden, k, stride, k // 2, groups=hidden, bias=False)
        attention = SqueezeExcite(hidden, _squeezed(hidden)) if se else nn.Identity()
        project = nn.Conv2d(hidden, out, 1, bias=False)
        if inp == hidden:
            self.conv = nn.Sequential(dw, bn(hidden), act(), attention, project, bn(out))
        else:
            expand = nn.Conv2d(inp, hidden, 1, bias=False)
            self.conv = nn.Sequential(
                expand, bn(hidden), act(), dw, bn(hidden), attention, act(), project, bn(out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_residual:
            return x + self.conv(x)
        return self.conv(x)


def _features() -> nn.Sequential:
    """The unfolded trunk (Conv + BatchNorm), key-compatible with ``backbone.features.*``."""
    layers: list[nn.Module] = [
        nn.Sequential(
            nn.Conv2d(3, _STEM_CHANNELS, 3, 2, 1, bias=False),
            nn.BatchNorm2d(_STEM_CHANNELS),
            nn.Hardswish(inplace=True),
        )
    ]
    inp = _STEM_CHANNELS
    for k, hidden, out, se, hs, stride in _BLOCKS:
        layers.append(InvertedResidual(inp, hidden, out, k, se, hs, stride))
        inp = out
    return nn.Sequential(*layers)


def nanotrack_state(
    prefix: str, weights_dir: str | os.PathLike[str] | None = None
) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors whose keys start with ``prefix``, the prefix stripped."""
    path = weights_root(weights_dir).joinpath(*NANOTRACK_NPZ)
    arrays = load_npz(path, "NanoTrack v3 state dict (nanotrackv3_state_dict.npz)")
    return {
        k[len(prefix) :]: torch.from_numpy(v.copy())
        for k, v in arrays.items()
        if k.startswith(prefix)
    }


class NanoTrackBackbone(nn.Module):
    """NanoTrack v3 backbone with BatchNorm folded. Input BGR 0..255, output stride 16, 96 ch."""

    stride = 16
    out_channels = 96
    min_input_size = 32
    pretrained = True

    def __init__(self, weights_dir: str | os.PathLike[str] | None = None):
        super().__init__()
        state = nanotrack_state(_PREFIX, weights_dir)
        features = _features()
        # strict: every key and shape of the checkpoint's backbone must match the structure above
        nn.ModuleDict({"features": features}).load_state_dict(state, strict=True)
        features.eval()
        for block in features:
            if isinstance(block, InvertedResidual):
                block.conv = fold_bn_in_sequential(block.conv)
        features[0] = fold_bn_in_sequential(features[0])
        self.features = channels_last(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(nhwc(x)).contiguous()

    def output_conv(self) -> nn.Conv2d:
        """The conv that makes the output channels (the last block's project conv, BN folded).

        Nothing mixes channels after it (that block has no residual add), so channel pruning may
        slice it (:func:`runtime.backbones.common.keep_output_channels`).
        """
        last = self.features[-1]
        assert isinstance(last, InvertedResidual) and not last.use_residual
        conv = last.conv[-1]
        assert isinstance(conv, nn.Conv2d) and conv.out_channels == self.out_channels
        return conv

    def feature_offset(self, size: int) -> float:
        """Input pixel (0-based) on which output cell 0 is centred: 0 (symmetric padding).

        Cell ``i`` is centred on ``feature_offset(size) + stride * i`` for any input side.
        """
        return 0.0


def build_nanotrack(weights_dir: str | os.PathLike[str] | None = None) -> NanoTrackBackbone:
    """The NanoTrack v3 backbone, frozen and in eval mode."""
    return freeze(NanoTrackBackbone(weights_dir))
