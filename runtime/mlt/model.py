"""MLT's matching network: trunk, conv5 (+ generated kernels), channel attention, L2
normalisation, cross-correlation, logistic loss with class-balance weights.

Two trunks under the same conv5 (1x1, 256 -> 192):

- ``"paper"``: the paper's conv1-conv4 with batch norm (11x11x3x128 s2, max-pool 3 s2;
  5x5x128x256, max-pool 3 s2; 3x3x256x384; 3x3x384x256), stride 8, no padding. A 127x127
  exemplar gives 8x8 conv4 features, a 255x255 search image 24x24: a 17x17 response.
- ``"nanotrack"``: NanoTrack v3's pretrained trunk (stride 16, 96 channels, fixed; it runs
  through :mod:`runtime.backends` in the tracker) followed by a trained 3x3 conv to 256 channels
  with batch norm (the "neck", standing in for conv4). 127 -> 8x8 -> 6x6, 255 -> 16x16 -> 14x14:
  a 9x9 response at stride 16 (a 17x17 one would need a 383x383 search image).

Inputs are float BGR 0..255 crops, as every backbone of the project takes them.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

TRUNKS = ("nanotrack", "paper")
CONV5_IN, CONV5_OUT, N_GENERATED = 256, 192, 32
POSITIVE_RADIUS_PX = 16.0  # SiamFC: a response cell is positive within 16 px of the target


def _bn_relu(conv: nn.Conv2d) -> list[nn.Module]:
    return [conv, nn.BatchNorm2d(conv.out_channels), nn.ReLU(inplace=True)]


class PaperTrunk(nn.Module):
    """The paper's conv1-conv4 (batch norm, ReLU), stride 8; trained from scratch here."""

    stride = 8
    out_channels = CONV5_IN

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_bn_relu(nn.Conv2d(3, 128, 11, 2)),
            nn.MaxPool2d(3, 2),
            *_bn_relu(nn.Conv2d(128, 256, 5)),
            nn.MaxPool2d(3, 2),
            *_bn_relu(nn.Conv2d(256, 384, 3)),
            *_bn_relu(nn.Conv2d(384, 256, 3)),
        )
        # BGR 0..255 -> roughly zero-mean unit-variance (ImageNet statistics, BGR order)
        self.register_buffer("mean", torch.tensor([104.0, 117.0, 124.0]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features((x - self.mean) / 58.0)


class NanoTrackNeck(nn.Module):
    """Trained 3x3 conv 96 -> 256 + BN + ReLU on the fixed NanoTrack trunk (no padding)."""

    def __init__(self, in_channels: int = 96) -> None:
        super().__init__()
        self.layers = nn.Sequential(*_bn_relu(nn.Conv2d(in_channels, CONV5_IN, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def trunk_stride(trunk: str) -> int:
    return {"nanotrack": 16, "paper": 8}[trunk]


def feature_side(trunk: str, crop: int) -> int:
    """Side of the conv4 (256-channel) map for a ``crop`` x ``crop`` input."""
    if trunk == "nanotrack":
        return math.ceil(crop / 16) - 2  # trunk: ceil(n / 16) (symmetric padding); neck: -2
    if trunk == "paper":
        s = (crop - 11) // 2 + 1
        s = (s - 3) // 2 + 1
        s = s - 4
        s = (s - 3) // 2 + 1
        return s - 4
    raise ValueError(f"unknown MLT trunk {trunk!r}; choose one of {TRUNKS}")


def response_side(trunk: str, exemplar: int, search: int) -> int:
    return feature_side(trunk, search) - feature_side(trunk, exemplar) + 1


class MatchingNet(nn.Module):
    """Everything above the fixed trunk: neck (or the paper's trunk), conv5, response scale.

    ``features4(trunk_out)`` gives the 256-channel conv4 map; ``embed`` applies conv5 (with
    generated kernels and attention when given) and the L2 normalisation; ``response``
    cross-correlates an embedded exemplar with embedded search maps into logits.
    """

    def __init__(self, trunk: str = "nanotrack") -> None:
        super().__init__()
        if trunk not in TRUNKS:
            raise ValueError(f"unknown MLT trunk {trunk!r}; choose one of {TRUNKS}")
        self.trunk_name = trunk
        self.stride = trunk_stride(trunk)
        self.neck: nn.Module = NanoTrackNeck() if trunk == "nanotrack" else PaperTrunk()
        self.conv5 = nn.Conv2d(CONV5_IN, CONV5_OUT, 1)
        # Logits = scale * (sum of cosine similarities) + bias (SiamFC's "adjust" layer).
        self.scale = nn.Parameter(torch.tensor(0.1))
        self.bias = nn.Parameter(torch.tensor(-1.0))

    def features4(self, trunk_out: torch.Tensor) -> torch.Tensor:
        """NanoTrack features (or, for the paper trunk, the crop itself) -> conv4 map."""
        return self.neck(trunk_out)

    def embed(
        self,
        f4: torch.Tensor,
        conv5_weight: torch.Tensor | None = None,
        kernels: torch.Tensor | None = None,
        attention: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """conv5 (+ ``kernels`` (256, 32) as extra 1x1 filters), ``attention`` (224,), L2 norm."""
        weight = self.conv5.weight if conv5_weight is None else conv5_weight
        f = F.conv2d(f4, weight, self.conv5.bias)
        if kernels is not None:
            extra = F.conv2d(f4, kernels.t().reshape(N_GENERATED, CONV5_IN, 1, 1))
            f = torch.cat([f, extra], dim=1)
        if attention is not None:
            f = f * attention.reshape(1, -1, 1, 1)
        return F.normalize(f, dim=1, eps=1e-6)

    def response(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, R, R)``: exemplar ``z`` (1 or B, C, h, w) over search ``x`` (B, C, H, W)."""
        if z.shape[0] == 1:  # one exemplar for every search map: a plain convolution
            return F.conv2d(x, z)[:, 0] * self.scale + self.bias
        b = x.shape[0]
        out = F.conv2d(x.reshape(1, -1, *x.shape[2:]), z, groups=b)
        return out[0] * self.scale + self.bias


# ------------------------------------------------------------------------------------------
# Labels and loss
# ------------------------------------------------------------------------------------------
def label_map(side: int, stride: int, offsets_px: torch.Tensor) -> torch.Tensor:
    """``(B, side, side)`` 0/1 labels: 1 within 16 px of each target offset (crop pixels,
    ``(B, 2)`` x, y from the search crop's centre)."""
    c = (side - 1) / 2.0
    grid = (torch.arange(side, dtype=torch.float32) - c) * stride
    dx = grid.view(1, 1, side) - offsets_px[:, 0].view(-1, 1, 1)
    dy = grid.view(1, side, 1) - offsets_px[:, 1].view(-1, 1, 1)
    return ((dx**2 + dy**2) <= POSITIVE_RADIUS_PX**2).float()


def balanced_logistic_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """SiamFC's logistic loss, positives and negatives each weighted to half (per map)."""
    pos = labels.flatten(1).sum(1).clamp_min(1).view(-1, 1, 1)
    neg = (1 - labels).flatten(1).sum(1).clamp_min(1).view(-1, 1, 1)
    weights = labels * (0.5 / pos) + (1 - labels) * (0.5 / neg)
    loss = F.binary_cross_entropy_with_logits(logits, labels, weight=weights, reduction="none")
    return loss.flatten(1).sum(1).mean()


# ------------------------------------------------------------------------------------------
# Crops (training and tracking cut them the same way)
# ------------------------------------------------------------------------------------------
def to_tensor(crops: list[np.ndarray] | np.ndarray, device: torch.device | str = "cpu"):
    """uint8 ``(H, W, 3)`` BGR crops -> ``(B, 3, H, W)`` float32 BGR 0..255."""
    arr = np.stack(crops) if isinstance(crops, list) else np.asarray(crops)[None]
    return torch.from_numpy(arr).to(device).permute(0, 3, 1, 2).float()


def upsample_response(resp: np.ndarray, factor: int) -> np.ndarray:
    side = resp.shape[-1]
    size = (side - 1) * factor + 1
    return cv2.resize(resp, (size, size), interpolation=cv2.INTER_CUBIC)
