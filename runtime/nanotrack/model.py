"""The whole NanoTrack v3 network in PyTorch: backbone, (identity) neck and the BAN-style head.

Weights: ``<weights>/nanotrack_v3/nanotrackv3_state_dict.npz`` (pickle-free), NanoTrack v3 by
HonglinChu (SiamTrackers, Apache-2.0). Structure read from the public reference
(``NanoTrack/nanotrack/models/head/ban_v3.py``, ``neck/neck.py``, ``model_builder.py``) and
checked against the authors' ``nanotrack_head.onnx`` (tests/runtime/nanotrack/test_nanotrack.py):

- backbone: :class:`runtime.backbones.nanotrack.NanoTrackBackbone` (stride 16, 96 channels);
  a 127 template crop gives an 8x8 map ``zf``, a 255 search crop a 16x16 map ``xf``.
- neck: the checkpoint holds ``neck.downsample`` (1x1 conv + BN), but the reference's
  ``AdjustLayer`` applies it only when its input and output widths differ (96 = 96 here) and
  ``ModelBuilder.template``/``track`` never call the neck at all: it is not part of the network
  that produced the published results, so it is not applied here either.
- head, per branch (classification ``cls`` and box regression ``reg``):
  * depthwise correlation: 1x1 conv + BN on the centre 4x4 of ``zf`` (the kernel) and on ``xf``,
    then a per-channel correlation with padding 1: ``16 + 2 - 4 + 1 = 15``;
  * pixel-wise correlation: 1x1 conv + BN on all of ``zf`` and on ``xf``; every one of the 64
    template positions is a 96-d kernel (a matrix product): 64 maps of 16x16; channel attention
    (global average pool, 1x1, ReLU, 1x1, sigmoid); a 2x2 depthwise conv + BN + ReLU6, a 1x1 conv
    + BN: 64 maps of 15x15;
  * ``down_*``: 1x1 conv over the 64 + 96 concatenated channels to 96; a tower of six
    (3x3 depthwise + BN + ReLU6, 1x1 + BN) blocks; ``cls_logits`` (2 channels: background,
    target) or ``bbox_pred`` (4 channels, ``exp`` applied: distances to the box's left, top,
    right and bottom edges in search-crop pixels).

Every BatchNorm is folded into the conv before it, as in the backbone.

The network is split where a tracker needs it split: :class:`TemplateBranch` runs once per
target (crop -> the four correlation kernels, the template side of the head already applied) and
:class:`SearchBranch` once per frame (crop + kernels -> scores and boxes). Both are what
``runtime.backends`` runs and what gets exported to ONNX.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from runtime.backbones.common import fold_bn_in_sequential, freeze
from runtime.backbones.nanotrack import NanoTrackBackbone, nanotrack_state

CHANNELS = 96  # backbone output = correlation width
PIXELWISE_CHANNELS = 64  # 8 x 8 template positions
TOWER_BLOCKS = 6
TEMPLATE_CENTRE = (2, 6)  # the reference crops the 8x8 template map to [2:6, 2:6] for depthwise


class TemplateKernels(NamedTuple):
    """What the search branch correlates with: the template side of the head, computed once.

    ``dw_*``: ``(B, 96, 4, 4)`` depthwise kernels; ``pw_*``: ``(B, 64, 96)``, one 96-d kernel per
    template position (row ``i`` is position ``i`` of the 8x8 map in row-major order).
    """

    dw_cls: torch.Tensor
    dw_reg: torch.Tensor
    pw_cls: torch.Tensor
    pw_reg: torch.Tensor


KERNEL_NAMES: tuple[str, ...] = TemplateKernels._fields


def _conv_bn(
    cin: int, cout: int, k: int = 1, groups: int = 1, bias: bool = True
) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, groups=groups, bias=bias), nn.BatchNorm2d(cout)]


class DepthwiseCorrelation(nn.Module):
    """``conv_kernel`` / ``conv_search``: 1x1 conv + BN each (keys as the checkpoint's)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_kernel = nn.Sequential(*_conv_bn(CHANNELS, CHANNELS))
        self.conv_search = nn.Sequential(*_conv_bn(CHANNELS, CHANNELS))

    def kernel(self, zf: torch.Tensor) -> torch.Tensor:
        lo, hi = TEMPLATE_CENTRE
        return self.conv_kernel(zf[:, :, lo:hi, lo:hi])

    def forward(self, kernel: torch.Tensor, xf: torch.Tensor) -> torch.Tensor:
        search = self.conv_search(xf)
        b, c, h, w = search.shape
        # One grouped conv over the batch: group b*c correlates search channel c of item b with
        # kernel channel c of item b.
        out = F.conv2d(
            search.reshape(1, b * c, h, w),
            kernel.reshape(b * c, 1, kernel.shape[2], kernel.shape[3]),
            padding=1,
            groups=b * c,
        )
        return out.reshape(b, c, out.shape[2], out.shape[3])


class ChannelAttention(nn.Module):
    """``x * sigmoid(fc2(relu(fc1(mean_hw(x)))))`` (the reference's ``CAModule``)."""

    def __init__(self, channels: int = PIXELWISE_CHANNELS) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels, 1)
        self.fc2 = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


class PixelwiseCorrelation(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        p = PIXELWISE_CHANNELS
        self.CA_layer = ChannelAttention(p)  # noqa: N815  (the checkpoint's key)
        self.conv_kernel = nn.Sequential(*_conv_bn(CHANNELS, CHANNELS))
        self.conv_search = nn.Sequential(*_conv_bn(CHANNELS, CHANNELS))
        self.conv = nn.Sequential(
            *_conv_bn(p, p, k=2, groups=p, bias=False), nn.ReLU6(), *_conv_bn(p, p)
        )

    def kernel(self, zf: torch.Tensor) -> torch.Tensor:
        k = self.conv_kernel(zf)
        return k.flatten(2).transpose(1, 2).contiguous()  # (B, hz*wz, C)

    def forward(self, kernel: torch.Tensor, xf: torch.Tensor) -> torch.Tensor:
        search = self.conv_search(xf)
        b, c, h, w = search.shape
        corr = torch.matmul(kernel, search.reshape(b, c, h * w)).reshape(b, -1, h, w)
        return self.conv(self.CA_layer(corr))


def _tower() -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(TOWER_BLOCKS):
        layers += [*_conv_bn(CHANNELS, CHANNELS, k=3, groups=CHANNELS, bias=False), nn.ReLU6()]
        layers += _conv_bn(CHANNELS, CHANNELS, bias=False)
    # the 3x3 depthwise convs pad by 1 (the reference's padding=1)
    for layer in layers:
        if isinstance(layer, nn.Conv2d) and layer.kernel_size == (3, 3):
            layer.padding = (1, 1)
    return nn.Sequential(*layers)


class BANHead(nn.Module):
    """The reference's ``DepthwiseBAN`` (keys ``ban_head.*`` of the checkpoint)."""

    def __init__(self) -> None:
        super().__init__()
        self.corr_dw_reg = DepthwiseCorrelation()
        self.corr_pw_reg = PixelwiseCorrelation()
        self.corr_dw_cls = DepthwiseCorrelation()
        self.corr_pw_cls = PixelwiseCorrelation()
        self.cls_tower = _tower()
        self.bbox_tower = _tower()
        self.cls_logits = nn.Sequential(nn.Conv2d(CHANNELS, 2, 1))
        self.bbox_pred = nn.Sequential(nn.Conv2d(CHANNELS, 4, 1))
        self.down_reg = nn.Sequential(nn.Conv2d(CHANNELS + PIXELWISE_CHANNELS, CHANNELS, 1))
        self.down_cls = nn.Sequential(nn.Conv2d(CHANNELS + PIXELWISE_CHANNELS, CHANNELS, 1))

    def kernels(self, zf: torch.Tensor) -> TemplateKernels:
        return TemplateKernels(
            self.corr_dw_cls.kernel(zf),
            self.corr_dw_reg.kernel(zf),
            self.corr_pw_cls.kernel(zf),
            self.corr_pw_reg.kernel(zf),
        )

    def classify_features(self, k: TemplateKernels, xf: torch.Tensor) -> torch.Tensor:
        """The classification branch up to (not including) ``cls_logits``: ``(B, 96, h, w)``."""
        x = torch.cat((self.corr_pw_cls(k.pw_cls, xf), self.corr_dw_cls(k.dw_cls, xf)), 1)
        return self.cls_tower(self.down_cls(x))

    def regress(self, k: TemplateKernels, xf: torch.Tensor) -> torch.Tensor:
        x = torch.cat((self.corr_pw_reg(k.pw_reg, xf), self.corr_dw_reg(k.dw_reg, xf)), 1)
        return torch.exp(self.bbox_pred(self.bbox_tower(self.down_reg(x))))

    def forward(self, k: TemplateKernels, xf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 2, h, w)`` logits (background, target), ``(B, 4, h, w)`` edge distances."""
        return self.cls_logits(self.classify_features(k, xf)), self.regress(k, xf)

    def folded(self) -> BANHead:
        """This head with every BatchNorm folded into its conv (call in eval mode)."""
        for corr in (self.corr_dw_reg, self.corr_dw_cls, self.corr_pw_reg, self.corr_pw_cls):
            corr.conv_kernel = fold_bn_in_sequential(corr.conv_kernel)
            corr.conv_search = fold_bn_in_sequential(corr.conv_search)
            if isinstance(corr, PixelwiseCorrelation):
                corr.conv = fold_bn_in_sequential(corr.conv)
        self.cls_tower = fold_bn_in_sequential(self.cls_tower)
        self.bbox_tower = fold_bn_in_sequential(self.bbox_tower)
        return self


HEAD_PREFIX = "ban_head."


def build_head(weights_dir: str | os.PathLike[str] | None = None) -> BANHead:
    """The BAN head with the checkpoint's weights (strict key/shape check), BN folded, frozen."""
    state = nanotrack_state(HEAD_PREFIX, weights_dir)
    head = BANHead()
    head.load_state_dict(state, strict=True)
    head.eval()
    return freeze(head.folded())


class NanoTrackNet(nn.Module):
    """Backbone + head, frozen; ``template`` and ``search`` are the two halves a tracker runs."""

    def __init__(self, backbone: NanoTrackBackbone, head: BANHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def template(self, crop: torch.Tensor) -> TemplateKernels:
        """``(B, 3, 127, 127)`` BGR 0..255 -> the four correlation kernels."""
        return self.head.kernels(self.backbone(crop))

    def search(
        self, crop: torch.Tensor, kernels: TemplateKernels
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 3, S, S)`` BGR 0..255 -> logits ``(B, 2, n, n)``, boxes ``(B, 4, n, n)``.

        ``n = S / 16 - 1`` (15 for the 255 crop): the map grows with the search crop, which is
        how the tracker widens its search when the target is lost.
        """
        return self.head(kernels, self.backbone(crop))


def build_network(weights_dir: str | os.PathLike[str] | None = None) -> NanoTrackNet:
    """The full NanoTrack v3 network from ``<weights>/nanotrack_v3``, BN folded, frozen."""
    backbone = NanoTrackBackbone(weights_dir)
    return freeze(NanoTrackNet(backbone, build_head(weights_dir)))


class TemplateBranch(nn.Module):
    """Exportable: crop -> ``dw_cls, dw_reg, pw_cls, pw_reg`` (see :class:`TemplateKernels`)."""

    def __init__(self, net: NanoTrackNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, crop: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.net.template(crop))


class SearchBranch(nn.Module):
    """Exportable: crop + the four kernels -> ``scores`` (target probability), ``boxes``.

    The softmax is inside, so the deployed graph hands the tracker probabilities directly.
    """

    def __init__(self, net: NanoTrackNet) -> None:
        super().__init__()
        self.net = net

    def forward(
        self,
        crop: torch.Tensor,
        dw_cls: torch.Tensor,
        dw_reg: torch.Tensor,
        pw_cls: torch.Tensor,
        pw_reg: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits, boxes = self.net.search(crop, TemplateKernels(dw_cls, dw_reg, pw_cls, pw_reg))
        return torch.softmax(logits, dim=1)[:, 1], boxes


class FeatureSearchBranch(SearchBranch):
    """Like :class:`SearchBranch` (same inputs), for trackers that adapt a layer on the
    classification features (runtime.nanotrack.adaptive): crop + kernels -> ``margins (B, n)``
    (target minus background logit per cell), ``boxes (B, 4, h, w)``, ``features (B, 96, n)``."""

    def forward(  # type: ignore[override]  (three outputs: the features too)
        self,
        crop: torch.Tensor,
        dw_cls: torch.Tensor,
        dw_reg: torch.Tensor,
        pw_cls: torch.Tensor,
        pw_reg: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        kernels = TemplateKernels(dw_cls, dw_reg, pw_cls, pw_reg)
        head, xf = self.net.head, self.net.backbone(crop)
        features = head.classify_features(kernels, xf)
        logits = head.cls_logits(features)
        margins = (logits[:, 1] - logits[:, 0]).flatten(1)
        return margins, head.regress(kernels, xf), features.flatten(2)
