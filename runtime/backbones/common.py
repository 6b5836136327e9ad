"""Shared helpers for the conv backbones: weight files, BatchNorm folding, freezing.

Every backbone follows one input convention: a float32 tensor ``(N, 3, H, W)`` holding **BGR
pixels in 0..255** (what OpenCV gives, cast to float). Each backbone does its own normalization
inside ``forward`` (or folds it into its first convolution), so an exported ONNX graph takes raw
BGR crops and the runtime treats every backbone the same way.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from runtime.paths import data_root, require_file


def weights_root(weights_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder that holds the pretrained weights: ``weights_dir`` or ``data_root()/weights``."""
    if weights_dir is not None:
        return Path(weights_dir).expanduser()
    return data_root() / "weights"


def load_npz(path: Path, what: str) -> dict[str, np.ndarray]:
    """Every array of a pickle-free ``.npz`` file (FileNotFoundError naming it if absent)."""
    require_file(path, what)
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def load_state_dict_file(path: str | os.PathLike[str], what: str) -> dict[str, torch.Tensor]:
    """A state dict from ``.pt``/``.pth`` (``torch.load(weights_only=True)``) or ``.npz``."""
    path = require_file(Path(path).expanduser(), what)
    if path.suffix == ".npz":
        return {
            k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in load_npz(path, what).items()
        }
    if path.suffix in (".pt", ".pth"):
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ValueError(f"{what} at {path} is not a state dict (got {type(state).__name__})")
        return state
    raise ValueError(f"{what} at {path}: expected a .pt, .pth or .npz file")


def fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new Conv2d computing ``bn(conv(x))`` in eval mode (BatchNorm folded into weight/bias)."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var.detach() + bn.eps)
    weight = conv.weight.detach() * scale.reshape(-1, 1, 1, 1)
    bias = bn.bias.detach() - bn.running_mean.detach() * scale
    if conv.bias is not None:
        bias = bias + conv.bias.detach() * scale
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
    )
    with torch.no_grad():
        fused.weight.copy_(weight)
        fused.bias.copy_(bias)
    return fused


def fold_bn_in_sequential(seq: nn.Sequential) -> nn.Sequential:
    """Copy of ``seq`` with every ``Conv2d`` directly followed by ``BatchNorm2d`` folded.

    Nested ``nn.Sequential`` children are folded recursively; other modules are kept as they are
    (their own children are folded in place when they are ``nn.Sequential``).
    """
    children = list(seq.children())
    out: list[nn.Module] = []
    i = 0
    while i < len(children):
        child = children[i]
        nxt = children[i + 1] if i + 1 < len(children) else None
        if isinstance(child, nn.Conv2d) and isinstance(nxt, nn.BatchNorm2d):
            out.append(fold_bn(child, nxt))
            i += 2
            continue
        if isinstance(child, nn.Identity):
            i += 1
            continue
        if isinstance(child, nn.Sequential):
            child = fold_bn_in_sequential(child)
        else:
            for name, grandchild in list(child.named_children()):
                if isinstance(grandchild, nn.Sequential):
                    setattr(child, name, fold_bn_in_sequential(grandchild))
        out.append(child)
        i += 1
    return nn.Sequential(*out)


def channels_last(module: nn.Module) -> nn.Module:
    """Store ``module``'s 4-D weights NHWC; returns it.

    On CPU (oneDNN) the backbones run about 1.2-1.7x faster in channels-last: depthwise convs and
    max-pooling above all. Each backbone's ``forward`` converts its input with
    :func:`nhwc` and hands back an ordinary contiguous NCHW tensor. Memory format is invisible
    to ONNX export.
    """
    return module.to(memory_format=torch.channels_last)


def nhwc(x: torch.Tensor) -> torch.Tensor:
    """``x`` in channels-last memory (a no-op when it already is)."""
    return x.contiguous(memory_format=torch.channels_last)


def freeze(module: nn.Module) -> nn.Module:
    """Put ``module`` in eval mode with every parameter's ``requires_grad`` off; returns it."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def keep_output_channels(backbone: nn.Module, keep: torch.Tensor) -> nn.Module:
    """A frozen copy of ``backbone`` whose output has only the channels ``keep``, in that order.

    Channel pruning of the last conv layer: its filters (and biases) outside ``keep`` are removed,
    so the copy computes less, not a masked map. Only backbones whose output conv is followed by
    element-wise ops alone expose ``output_conv()``; the others cannot be sliced there.
    """
    if not hasattr(backbone, "output_conv"):
        raise ValueError(
            f"the {type(backbone).__name__} backbone's last layer cannot be sliced "
            "(no output_conv: it is followed by a residual add or a channel-mixing op)"
        )
    keep = torch.as_tensor(keep, dtype=torch.long)
    sliced = copy.deepcopy(backbone)
    conv: nn.Conv2d = sliced.output_conv()
    if conv.groups != 1 or len(keep) == 0 or int(keep.max()) >= conv.out_channels:
        raise ValueError(f"cannot keep channels {keep.tolist()[:8]}... of {conv}")
    keep = keep.to(conv.weight.device)
    weight = conv.weight.detach()[keep].contiguous(memory_format=torch.channels_last)
    conv.weight = nn.Parameter(weight, requires_grad=False)
    if conv.bias is not None:
        conv.bias = nn.Parameter(conv.bias.detach()[keep].clone(), requires_grad=False)
    conv.out_channels = len(keep)
    sliced.out_channels = len(keep)
    return sliced
