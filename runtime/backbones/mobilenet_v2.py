"""Google's MobileNetV2 1.0/224 (ImageNet) as a tracking backbone, cut at stride 16 or 8.

Weights: ``<weights>/mobilenet_v2_imagenet/mobilenet_v2_1.0_224_dequantized_float32.npz``, the
ImageNet classifier from google-coral/test_data (Apache-2.0), dequantized from its uint8 TFLite
file. BatchNorm is already folded into the weights and biases. TFLite layouts: conv
``[out, kh, kw, in]``, depthwise ``[1, kh, kw, C]``; ReLU6 after every expand and depthwise conv,
none after the project convs; residual adds (the ADD ops missing from the npz's op indices) after
every stride-1 block whose input and output widths match.

Preprocessing: the network wants RGB scaled to ``x / 128 - 1``. Here the input is BGR 0..255
like every backbone, and the channel flip and the scaling are folded into the first convolution
(its input is padded with the raw value 128, which is 0 after scaling, so the fold is exact at
the borders too). No extra ops run for normalization.

Padding is TensorFlow's SAME. For the stride-2 convs it is asymmetric and depends on the input
size (``pad = max((ceil(n / s) - 1) * s + k - n, 0)``, ``pad_top = pad // 2``); it is computed
from the tensor's shape in ``forward``, so results match TFLite for any input size. In an exported
graph it is an explicit Pad whose amounts are computed from the input shape (dynamic H, W);
eagerly, the stride-2 depthwise convs get the same result without copying their input into a
padded buffer (:class:`TFSameConv2d`). With an even input side, output cell ``i`` of a stride-2
conv is centred on input ``2 * i + 1``; with an odd side, on ``2 * i``.

Cuts: ``"stride16"`` (default) ends after the last stride-16 block (op 46, 96 channels, before
the stride-2 depthwise op 48); ``"stride8"`` ends after op 20 (32 channels).
:func:`mobilenet_v2_classifier` builds the whole classifier from the same file (known-answer test).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from runtime.backbones.common import channels_last, freeze, load_npz, nhwc, weights_root
from runtime.paths import require_file

MOBILENET_DIR = "mobilenet_v2_imagenet"
MOBILENET_NPZ = (MOBILENET_DIR, "mobilenet_v2_1.0_224_dequantized_float32.npz")
MOBILENET_LABELS = (MOBILENET_DIR, "imagenet_labels.txt")
_WHAT = "MobileNetV2 weights (mobilenet_v2_1.0_224_dequantized_float32.npz)"

# MobileNetV2 1.0: (expansion t, output width c, repeats n, first stride s)
_STAGES: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
_STEM = 32
# cut: (inverted-residual blocks kept, stride, out channels, last TFLite op index kept)
CUTS: dict[str, tuple[int, int, int, int]] = {
    "stride8": (6, 8, 32, 20),
    "stride16": (13, 16, 96, 46),
}


class TFSamePad(nn.Module):
    """TensorFlow SAME padding for an odd kernel ``k`` with stride 2, any input size.

    ``pad = k - 2 + n % 2``, top/left ``(k - 3) // 2 + n % 2``, bottom/right ``(k - 1) // 2``.
    The shape arithmetic is traced into the ONNX graph, so exported models keep it dynamic.
    """

    def __init__(self, k: int, value: float = 0.0):
        super().__init__()
        if k % 2 != 1:
            raise ValueError(f"TFSamePad supports odd kernels only, got {k}")
        self.lead = (k - 3) // 2
        self.trail = (k - 1) // 2
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        pads = (self.lead + w % 2, self.trail, self.lead + h % 2, self.trail)
        return F.pad(x, pads, value=self.value)


class TFSameConv2d(nn.Conv2d):
    """Stride-2 convolution (odd kernel) with TensorFlow's SAME padding, exact for any size.

    When traced for export it runs :class:`TFSamePad` and then the conv, so the graph keeps the
    size-dependent padding. Eagerly it avoids copying the input into a padded buffer: for an
    even side TF pads ``(k - 3) / 2`` before and ``(k - 1) / 2`` after, which equals a symmetric
    ``(k - 1) / 2`` pad with the kernel grown by a leading zero row (column); for an odd side
    TF's pad is symmetric already. Both paths give the same numbers (tests compare them).
    """

    def __init__(self, in_channels: int, out_channels: int, k: int, groups: int = 1):
        super().__init__(in_channels, out_channels, k, stride=2, padding=0, groups=groups)
        self.same_pad = TFSamePad(k)
        self.half = (k - 1) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return super().forward(self.same_pad(x))
        h, w = x.shape[-2], x.shape[-1]
        weight = F.pad(self.weight, (1 - w % 2, 0, 1 - h % 2, 0))
        return F.conv2d(x, weight, self.bias, 2, self.half, 1, self.groups)


class InvertedResidual(nn.Module):
    """Expand (1x1, ReLU6), depthwise (3x3, ReLU6), project (1x1, linear), optional add."""

    def __init__(self, inp: int, out: int, t: int, stride: int):
        super().__init__()
        hidden = inp * t
        self.use_residual = stride == 1 and inp == out
        layers: list[nn.Module] = []
        if t != 1:
            layers += [nn.Conv2d(inp, hidden, 1), nn.ReLU6(inplace=True)]
        if stride == 2:
            layers += [TFSameConv2d(hidden, hidden, 3, groups=hidden)]
        else:
            layers += [nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden)]
        layers += [nn.ReLU6(inplace=True), nn.Conv2d(hidden, out, 1)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_residual:
            return x + self.conv(x)
        return self.conv(x)


def _block_specs() -> list[tuple[int, int, int, int]]:
    """(input width, output width, expansion, stride) of all 17 blocks."""
    specs = []
    inp = _STEM
    for t, c, n, s in _STAGES:
        for i in range(n):
            specs.append((inp, c, t, s if i == 0 else 1))
            inp = c
    return specs


class _TFLiteWeights:
    """Hands out the npz's arrays in op order, converted to torch layouts, checking shapes."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = arrays
        self.op = 0

    def _take(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        key = f"op{self.op:02d}_{kind}"
        if f"{key}_weight" not in self.arrays:
            raise KeyError(f"MobileNetV2 npz: expected {key}_weight (op {self.op})")
        w, b = self.arrays[f"{key}_weight"], self.arrays[f"{key}_bias"]
        self.op += 1
        return w, b

    def skip_op(self) -> None:
        """An op without weights (residual ADD, average pool) still takes an index."""
        self.op += 1

    def load(self, conv: nn.Conv2d, depthwise: bool) -> None:
        w, b = self._take("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D")
        w = w.transpose(3, 0, 1, 2) if depthwise else w.transpose(0, 3, 1, 2)
        if tuple(w.shape) != tuple(conv.weight.shape) or b.shape != (conv.out_channels,):
            raise ValueError(
                f"MobileNetV2 npz op {self.op - 1}: shape {w.shape} does not fit "
                f"{tuple(conv.weight.shape)}"
            )
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(w)))
            conv.bias.copy_(torch.from_numpy(b))


def _stem(weights: _TFLiteWeights) -> nn.Sequential:
    """Conv 3x3 s2 with the BGR->RGB flip and ``x / 128 - 1`` folded in; pads with raw 128."""
    conv = nn.Conv2d(3, _STEM, 3, 2, 0)
    weights.load(conv, depthwise=False)
    with torch.no_grad():
        w = conv.weight.clone()  # expects RGB in [-1, 1]
        conv.bias.sub_(w.sum(dim=(1, 2, 3)))  # the "- 1" of x / 128 - 1
        conv.weight.copy_(w.flip(1) / 128.0)  # BGR input, / 128
    return nn.Sequential(TFSamePad(3, value=128.0), conv, nn.ReLU6(inplace=True))


def _load_blocks(weights: _TFLiteWeights, n_blocks: int) -> list[nn.Module]:
    blocks: list[nn.Module] = []
    for inp, out, t, stride in _block_specs()[:n_blocks]:
        block = InvertedResidual(inp, out, t, stride)
        convs = [m for m in block.conv if isinstance(m, nn.Conv2d)]
        for conv in convs:
            weights.load(conv, depthwise=conv.groups > 1)
        if block.use_residual:
            weights.skip_op()
        blocks.append(block)
    return blocks


def _npz_path(weights_dir: str | os.PathLike[str] | None) -> Path:
    return weights_root(weights_dir).joinpath(*MOBILENET_NPZ)


class MobileNetV2Backbone(nn.Module):
    """MobileNetV2 trunk. Input BGR 0..255; ``cut="stride16"`` (96 ch) or ``"stride8"`` (32 ch)."""

    min_input_size = 32
    pretrained = True

    def __init__(self, weights_dir: str | os.PathLike[str] | None = None, cut: str = "stride16"):
        super().__init__()
        if cut not in CUTS:
            raise ValueError(f"cut must be one of {sorted(CUTS)}, got {cut!r}")
        n_blocks, self.stride, self.out_channels, last_op = CUTS[cut]
        self.cut = cut
        weights = _TFLiteWeights(load_npz(_npz_path(weights_dir), _WHAT))
        self.features = nn.Sequential(_stem(weights), *_load_blocks(weights, n_blocks))
        assert weights.op == last_op + 1, (weights.op, last_op)
        channels_last(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(nhwc(x)).contiguous()

    def feature_offset(self, size: int) -> float:
        """Input pixel (0-based) on which output cell 0 is centred, for an input side ``size``.

        Cell ``i`` is centred on ``feature_offset(size) + stride * i``. Every stride-2 3x3 conv
        with TF SAME padding centres its cell ``i`` on input ``2 * i + 1`` when its input side is
        even and on ``2 * i`` when odd, so this is 15 for sides divisible by 16 (stride16 cut),
        i.e. almost a whole cell, and 14 for 255.
        """
        offset, scale, n = 0, 1, int(size)
        for _ in range(int(math.log2(self.stride))):  # stem + one stride-2 conv per stage
            offset += scale * (1 - n % 2)
            n, scale = (n + 1) // 2, scale * 2
        return float(offset)


class MobileNetV2Classifier(nn.Module):
    """The full ImageNet classifier: BGR 0..255 in, (N, 1001) softmax probabilities out.

    Class 0 is "background" (TFLite's 1001-class labels). Global average pooling replaces
    TFLite's fixed 7x7 pool, which is the same thing at 224x224.
    """

    def __init__(self, weights_dir: str | os.PathLike[str] | None = None):
        super().__init__()
        weights = _TFLiteWeights(load_npz(_npz_path(weights_dir), _WHAT))
        self.features = nn.Sequential(_stem(weights), *_load_blocks(weights, len(_block_specs())))
        self.head = nn.Conv2d(320, 1280, 1)
        weights.load(self.head, depthwise=False)
        weights.skip_op()  # op 62: AVERAGE_POOL_2D
        self.logits = nn.Conv2d(1280, 1001, 1)
        weights.load(self.logits, depthwise=False)
        assert weights.op == 64, weights.op  # op 64 RESHAPE, op 65 SOFTMAX follow
        channels_last(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self.head(self.features(nhwc(x))))
        x = self.logits(F.adaptive_avg_pool2d(x, 1)).flatten(1)
        return torch.softmax(x, dim=1)


def mobilenet_v2_classifier(
    weights_dir: str | os.PathLike[str] | None = None,
) -> MobileNetV2Classifier:
    """The frozen ImageNet classifier built from the same npz (for known-answer checks)."""
    return freeze(MobileNetV2Classifier(weights_dir))


def imagenet_labels(weights_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """The 1001 class names (index 0 is "background") that go with the classifier."""
    path = require_file(
        weights_root(weights_dir).joinpath(*MOBILENET_LABELS),
        "ImageNet labels (imagenet_labels.txt)",
    )
    return path.read_text().splitlines()


def build_mobilenet_v2(
    weights_dir: str | os.PathLike[str] | None = None, cut: str = "stride16"
) -> MobileNetV2Backbone:
    """The MobileNetV2 trunk, frozen and in eval mode."""
    return freeze(MobileNetV2Backbone(weights_dir, cut=cut))
