"""RoIAlign written in plain torch, with the exact semantics of ONNX ``RoiAlign`` (opset 16+).

Why our own: there is no CPU torchvision here, and the exported graph must carry the native ONNX
``RoiAlign`` op (TensorRT's parser and ONNX Runtime both implement it), so the torch computation
has to agree with that op's definition, not with some other library's variant.

Semantics (ONNX, ``mode="avg"``, ``coordinate_transformation_mode="half_pixel"``): a box
``x1, y1, x2, y2`` in input-image pixels (0-based, continuous) maps to feature coordinates
``x * spatial_scale - 0.5``; each of the ``out_h x out_w`` bins averages ``sampling_ratio^2``
bilinear samples at the bin's regular sub-grid; samples more than one cell outside the map read 0.

During ONNX export the module emits the native op (see :func:`onnx_translation`); everywhere else
it runs :func:`roi_align`, which is differentiable with respect to the features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _sample_axis(
    start: torch.Tensor, length: torch.Tensor, bins: int, sampling_ratio: int
) -> torch.Tensor:
    """Sample positions along one axis: (N, bins * sampling_ratio)."""
    steps = torch.arange(bins * sampling_ratio, dtype=start.dtype, device=start.device)
    bin_index = torch.div(steps, sampling_ratio, rounding_mode="floor")
    sub_index = steps - bin_index * sampling_ratio
    bin_size = (length / bins)[:, None]
    return start[:, None] + bin_index * bin_size + (sub_index + 0.5) * bin_size / sampling_ratio


def _clamped_axis(coord: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ONNX's bilinear rules along one axis, as a clamp plus a validity mask.

    ONNX reads 0 for a sample below -1 or above ``size``, and otherwise clamps the coordinate into
    ``[0, size - 1]`` before interpolating; a clamped coordinate interpolates exactly like
    ``grid_sample(align_corners=True)``, which is the fast kernel used below.
    """
    valid = (coord >= -1.0) & (coord <= size)
    return coord.clamp(0.0, size - 1.0), valid


def _to_grid(coord: torch.Tensor, size: int) -> torch.Tensor:
    return coord * (2.0 / (size - 1)) - 1.0 if size > 1 else torch.zeros_like(coord)


def roi_align(
    features: torch.Tensor,
    rois: torch.Tensor,
    batch_indices: torch.Tensor,
    output_size: tuple[int, int] = (3, 3),
    spatial_scale: float = 1.0,
    sampling_ratio: int = 2,
) -> torch.Tensor:
    """Pool ``(N, C, out_h, out_w)`` features for ``rois`` (N, 4: x1, y1, x2, y2, image pixels)."""
    if sampling_ratio < 1:
        raise ValueError("sampling_ratio must be >= 1 (adaptive sampling is not supported)")
    _, channels, height, width = features.shape
    out_h, out_w = output_size
    num_rois = rois.shape[0]
    rois = rois.to(features.dtype)
    start_x = rois[:, 0] * spatial_scale - 0.5
    start_y = rois[:, 1] * spatial_scale - 0.5
    len_x = rois[:, 2] * spatial_scale - 0.5 - start_x
    len_y = rois[:, 3] * spatial_scale - 0.5 - start_y

    xs, x_ok = _clamped_axis(_sample_axis(start_x, len_x, out_w, sampling_ratio), width)
    ys, y_ok = _clamped_axis(_sample_axis(start_y, len_y, out_h, sampling_ratio), height)
    sy, sx = ys.shape[1], xs.shape[1]
    grid = torch.stack(
        [
            _to_grid(xs, width)[:, None, :].expand(num_rois, sy, sx),
            _to_grid(ys, height)[:, :, None].expand(num_rois, sy, sx),
        ],
        dim=-1,
    )  # (N, Sy, Sx, 2)
    valid = (y_ok[:, :, None] & x_ok[:, None, :]).to(features.dtype)

    samples = features.new_zeros(num_rois, channels, sy, sx)
    batch_indices = batch_indices.long()
    for b in range(features.shape[0]):
        # One grid_sample call per image, every RoI of that image stacked along the grid height.
        pick = (batch_indices == b).nonzero().flatten() if features.shape[0] > 1 else None
        g = grid if pick is None else grid[pick]
        if g.shape[0] == 0:
            continue
        read = F.grid_sample(
            features[b : b + 1],
            g.reshape(1, -1, sx, 2),
            mode="bilinear",
            padding_mode="border",
            align_corners=True,
        )  # (1, C, n*Sy, Sx)
        read = read.reshape(channels, g.shape[0], sy, sx).permute(1, 0, 2, 3)
        samples = read if pick is None else samples.index_copy(0, pick, read)
    samples = samples * valid[:, None]
    return F.avg_pool2d(samples, sampling_ratio)


@torch.library.custom_op("tracker::roi_align", mutates_args=())
def _roi_align_op(
    features: torch.Tensor,
    rois: torch.Tensor,
    batch_indices: torch.Tensor,
    out_h: int,
    out_w: int,
    spatial_scale: float,
    sampling_ratio: int,
) -> torch.Tensor:
    return roi_align(features, rois, batch_indices, (out_h, out_w), spatial_scale, sampling_ratio)


@_roi_align_op.register_fake
def _(features, rois, batch_indices, out_h, out_w, spatial_scale, sampling_ratio):
    return features.new_empty(rois.shape[0], features.shape[1], out_h, out_w)


def onnx_translation():
    """The custom-translation entry for ``torch.onnx.export(..., dynamo=True)``: native RoiAlign."""
    from onnxscript import opset18 as op

    def translate(features, rois, batch_indices, out_h, out_w, spatial_scale, sampling_ratio):
        return op.RoiAlign(
            features,
            rois,
            op.Cast(batch_indices, to=7),  # INT64, as the ONNX op requires
            mode="avg",
            output_height=out_h,
            output_width=out_w,
            sampling_ratio=sampling_ratio,
            spatial_scale=spatial_scale,
            coordinate_transformation_mode="half_pixel",
        )

    return {torch.ops.tracker.roi_align.default: translate}


class RoIAlign(nn.Module):
    """``(features, rois, batch_indices) -> (N, C, out_h, out_w)``; exports as ONNX ``RoiAlign``."""

    def __init__(
        self,
        output_size: tuple[int, int] = (3, 3),
        spatial_scale: float = 1.0,
        sampling_ratio: int = 2,
    ) -> None:
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio

    def forward(
        self, features: torch.Tensor, rois: torch.Tensor, batch_indices: torch.Tensor
    ) -> torch.Tensor:
        if torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export():
            return _roi_align_op(
                features,
                rois,
                batch_indices,
                *self.output_size,
                self.spatial_scale,
                self.sampling_ratio,
            )
        return roi_align(
            features, rois, batch_indices, self.output_size, self.spatial_scale, self.sampling_ratio
        )

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio}"
        )
