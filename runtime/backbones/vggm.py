"""RT-MDNet's VGG-M-style conv1-conv3 trunk: stride 8, 512 output channels.

Weights: **none ship with this project.** RT-MDNet (Jung et al., ECCV 2018) starts these layers
from the ImageNet VGG-M model and pretrains them offline on tracking videos; neither file is here.
Without a state dict the layers get a fixed-seed Kaiming initialization, which is useful for shape,
speed and export checks only: the tracker needs this trunk trained offline (``train/``) before it
can track. Pass ``weights=`` a ``.pt``/``.pth``/``.npz`` state dict with this module's keys
(``conv1.weight``, ``conv1.bias``, ... ``conv3.bias``); RT-MDNet's own ``.pth`` layout
(``{"shared_layers": {"conv1.0.weight", ...}}``) is accepted too. Architecture written from
RT-MDNet's paper and its public model definition (github.com/IlchaeJung/RT-MDNet), not copied.

Layers (no padding anywhere): conv1 7x7x96 s2, ReLU, LRN, max-pool 3x3 s2; conv2 5x5x256 s2,
ReLU, LRN; conv3 3x3x512 dilation 3, ReLU. RT-MDNet drops VGG-M's pool2 and dilates conv3
instead, keeping the stride at 8. Receptive field 75 px: output cell ``i`` is centred on input
pixel ``37 + 8 * i`` (0-based), and inputs must be at least 75 px on each side.

Preprocessing (RT-MDNet's): RGB, minus 128, no scaling. The input here is BGR 0..255 like every
backbone; ``forward`` flips the channels and subtracts 128 (kept explicit rather than folded so the
weights stay in RT-MDNet's RGB convention and original checkpoints load unchanged).

LRN: ``y = x / (k + alpha * sum_{|c' - c| <= n // 2} x_c'^2) ** beta`` with n=5, alpha=1e-4
applied to the plain sum (MatConvNet's convention, the formula py-MDNet uses for the VGG-M
layers), beta=0.75, k=2. In PyTorch's and Caffe's convention (alpha divided by n) that is
``local_response_norm(size=5, alpha=5e-4, beta=0.75, k=2)``. RT-MDNet's published code calls its
LRN with the default ``local_size=1``, which drops the cross-channel sum and becomes
``x / (2 + 1e-4 * x^2) ** 0.75``; pass ``lrn_size=1`` to reproduce that exactly. The sum over
channels is a fixed 1x1 convolution (buffers: a banded CxC weight holding alpha inside the band,
and k as its bias), so it exports to ONNX and TensorRT as a plain Conv.

License: no third-party weights or code are included; RT-MDNet is cited for the architecture.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from runtime.backbones.common import channels_last, freeze, load_state_dict_file, nhwc

LRN_SIZE = 5
LRN_ALPHA = 1e-4  # per sum of squares (MatConvNet / MDNet convention)
LRN_BETA = 0.75
LRN_K = 2.0


class CrossChannelLRN(nn.Module):
    """``x / (k + alpha * window_sum(x^2)) ** beta`` over ``size`` neighbouring channels.

    The window is the one ``torch.nn.functional.local_response_norm`` uses (``size // 2``
    channels before, ``(size - 1) // 2`` after, zero beyond the ends), so this module equals
    ``local_response_norm(x, size, alpha=alpha * size, beta=beta, k=k)``. ``alpha`` and ``k`` are
    folded into the banded 1x1 conv's weight and bias.
    """

    def __init__(
        self,
        channels: int,
        size: int = LRN_SIZE,
        alpha: float = LRN_ALPHA,
        beta: float = LRN_BETA,
        k: float = LRN_K,
    ):
        super().__init__()
        if size < 1:
            raise ValueError(f"LRN size must be >= 1, got {size}")
        self.channels, self.size, self.alpha, self.beta, self.k = channels, size, alpha, beta, k
        c = torch.arange(channels)
        offset = c[None, :] - c[:, None]  # [out, in]: input channel minus output channel
        band = (offset >= -(size // 2)) & (offset <= (size - 1) // 2)
        self.register_buffer("weight", (band.float() * alpha)[:, :, None, None], persistent=False)
        self.register_buffer("bias", torch.full((channels,), float(k)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sq = x * x
        # k + alpha * window sum; with no neighbours (size 1) the conv is the identity: skip it
        denom = F.conv2d(sq, self.weight, self.bias) if self.size > 1 else sq * self.alpha + self.k
        if self.beta == 0.75:  # d^-3/4 = d^-1/2 * d^-1/4: ~2x faster than pow on CPU
            r = denom.rsqrt_()  # in place is autograd-safe: conv/add do not save their outputs
            return x * (r * r.sqrt())
        return x * denom.pow(-self.beta)

    def extra_repr(self) -> str:
        c, n, a, b, k = self.channels, self.size, self.alpha, self.beta, self.k
        return f"{c}, size={n}, alpha={a}, beta={b}, k={k}"


def _from_rtmdnet_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Accept RT-MDNet's checkpoint layout (``shared_layers``, ``convN.0.*``) as well as ours."""
    if "shared_layers" in state and isinstance(state["shared_layers"], dict):
        state = state["shared_layers"]
    out = {}
    for key, value in state.items():
        for layer in ("conv1", "conv2", "conv3"):
            for kind in ("weight", "bias"):
                if key in (f"{layer}.0.{kind}", f"layers.{layer}.0.{kind}", f"{layer}.{kind}"):
                    out[f"{layer}.{kind}"] = value
    return out


class VGGMBackbone(nn.Module):
    """RT-MDNet conv1-3. Input BGR 0..255; output stride 8, 512 channels (see module docstring)."""

    stride = 8
    out_channels = 512
    min_input_size = 75
    receptive_field = 75

    def __init__(
        self,
        weights: str | os.PathLike[str] | None = None,
        lrn_size: int = LRN_SIZE,
        seed: int = 0,
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 96, 7, stride=2)
        self.lrn1 = CrossChannelLRN(96, size=lrn_size)
        self.conv2 = nn.Conv2d(96, 256, 5, stride=2)
        self.lrn2 = CrossChannelLRN(256, size=lrn_size)
        self.conv3 = nn.Conv2d(256, 512, 3, dilation=3)
        # RT-MDNet subtracts 128 from RGB 0..255 (no scaling)
        self.register_buffer("mean", torch.full((1, 3, 1, 1), 128.0), persistent=False)
        if weights is None:
            self.pretrained = False
            gen = torch.Generator().manual_seed(seed)
            for conv in (self.conv1, self.conv2, self.conv3):
                nn.init.kaiming_normal_(conv.weight, nonlinearity="relu", generator=gen)
                nn.init.zeros_(conv.bias)
        else:
            self.pretrained = True
            state = _from_rtmdnet_keys(load_state_dict_file(weights, "VGG-M backbone state dict"))
            self.load_state_dict(state, strict=True)
        channels_last(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nhwc(x).flip(1) - self.mean  # BGR -> RGB, minus 128
        x = self.lrn1(F.relu(self.conv1(x), inplace=True))
        x = F.max_pool2d(x, 3, 2)
        x = self.lrn2(F.relu(self.conv2(x), inplace=True))
        return F.relu(self.conv3(x), inplace=True).contiguous()

    def output_conv(self) -> nn.Conv2d:
        """conv3: only a ReLU follows it, so channel pruning may slice it."""
        return self.conv3

    def feature_offset(self, size: int) -> float:
        """Input pixel (0-based) on which output cell 0 is centred: 37 (valid convolutions).

        Cell ``i`` is centred on ``37 + 8 * i`` and sees input pixels ``8 * i .. 8 * i + 74``
        (RT-MDNet's ``receptive_field = 75``), for any input side.
        """
        return float((self.receptive_field - 1) // 2)


def build_vggm(
    weights: str | os.PathLike[str] | None = None, lrn_size: int = LRN_SIZE, seed: int = 0
) -> VGGMBackbone:
    """The VGG-M trunk, frozen and in eval mode (random init unless ``weights`` is given)."""
    return freeze(VGGMBackbone(weights, lrn_size=lrn_size, seed=seed))
