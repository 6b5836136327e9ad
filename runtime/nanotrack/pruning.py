"""MetaRTT's one-shot channel pruning on the NanoTrack v3 head (issue 16, third part).

What can be pruned: the channels inside the head's two towers (classification and box
regression), the part of the search branch that runs at the score map's size on every frame. A
tower is six blocks ``x -> pw_i(relu6(dw_i(x)))`` (3x3 depthwise, 1x1 pointwise, 96 channels
each). Each block has a channel mask ``beta_i >= 0`` on its depthwise output (after the ReLU6):

- a channel whose mask is zero contributes nothing to ``pw_i``; and since ``dw_i`` is depthwise,
  the same channel of the tensor before it is used by nothing else either, so one zero removes
  ``dw_i``'s filter, ``pw_i``'s input column **and** the output row of the layer before
  (``pw_{i-1}``, or the ``down_*`` 1x1 conv for the first block);
- the kept mask values are folded into ``pw_i``'s columns, so the sliced head computes exactly the
  masked head's outputs (:func:`slice_head`, :func:`slice_feature_graph` for the ONNX graph;
  test: relative difference < 1e-5).

What is pruned (the shipped pruning network, ``train/metartt_nano_prune.py``'s default): the
classification tower only; every cut of the regression tower cost 5-10 val AUC points. The
towers' outputs keep their 96 channels (what ``cls_logits``, ``bbox_pred`` and the target layer
of ``metartt-nano`` read); the correlations and ``down_*``'s inputs are not pruned (their
channels are the template's, mixed by a channel attention). docs/nanotrack.md, "Pruning the
head", has the measurements.

Where masks come from: the pruning network of Eq. 12 (:class:`runtime.prune_net.PruneNet`) on
the first frame's search crop, per block the depthwise output's spatial mean, divided by its RMS
(:func:`descriptors`). Once per video.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import torch
from onnx import numpy_helper
from torch import nn

from runtime.checkpoint_io import load_bound_payload, save_payload
from runtime.nanotrack.model import BANHead, TemplateKernels
from runtime.prune_net import Masks, PruneNet, PruneNetConfig

TOWERS = ("cls", "reg")  # BANHead.cls_tower / down_cls, BANHead.bbox_tower / down_reg
BLOCKS = 6  # runtime.nanotrack.model.TOWER_BLOCKS
CHECKPOINT_FORMAT = "nanotrack-prune/1"
SHIPPED_NANO_PRUNE = (
    Path(__file__).resolve().parent.parent / "checkpoints" / "metartt_nano_prune.pt"
)


def layer_names(towers: tuple[str, ...] = TOWERS) -> tuple[str, ...]:
    """The blocks of ``towers`` in network order: ``cls0 .. cls5, reg0 .. reg5``."""
    return tuple(f"{tower}{i}" for tower in towers for i in range(BLOCKS))


def layer_widths(head: BANHead, towers: tuple[str, ...] = TOWERS) -> dict[str, int]:
    """Channels per pruned block of ``towers`` (the pruning network's ``widths``)."""
    return {
        f"{tower}{i}": _tower(head, tower)[3 * i].out_channels
        for tower in towers
        for i in range(BLOCKS)
    }


def _tower_masks(masks: Mapping[str, torch.Tensor], tower: str) -> list[torch.Tensor] | None:
    """A tower's six masks, or None where ``masks`` leaves the tower unpruned."""
    names = layer_names((tower,))
    return [masks[name] for name in names] if any(n in masks for n in names) else None


def _tower(head: BANHead, tower: str) -> nn.Sequential:
    return head.cls_tower if tower == "cls" else head.bbox_tower


def _down(head: BANHead, tower: str) -> nn.Sequential:
    return head.down_cls if tower == "cls" else head.down_reg


def tower_forward(
    tower: nn.Sequential,
    x: torch.Tensor,
    masks: list[torch.Tensor] | None = None,
    activations: list[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A tower's output, with each block's depthwise output times its mask (None: unmasked).

    Returns the output and every block's pointwise output (what Eq. 9-10 reconstructs);
    ``activations``, when given, receives each block's depthwise output before its mask.
    """
    outputs = []
    for i in range(len(tower) // 3):
        dw, act, pw = tower[3 * i], tower[3 * i + 1], tower[3 * i + 2]
        y = act(dw(x))
        if activations is not None:
            activations.append(y)
        if masks is not None:
            y = y * masks[i].view(1, -1, 1, 1)
        x = pw(y)
        outputs.append(x)
    return x, outputs


@dataclass
class HeadOutputs:
    """The head's search-side outputs under some masks."""

    logits: torch.Tensor  # (B, 2, n, n)
    box_logits: torch.Tensor  # (B, 4, n, n), before exp
    block_outputs: list[torch.Tensor]  # every block's pointwise output, cls then reg
    activations: list[torch.Tensor]  # every block's depthwise output before its mask

    @property
    def features(self) -> torch.Tensor:
        """The classification tower's output (the target layer's input)."""
        return self.block_outputs[BLOCKS - 1]


def head_outputs(
    head: BANHead, kernels: TemplateKernels, xf: torch.Tensor, masks: Mapping[str, torch.Tensor]
) -> HeadOutputs:
    """The masked head on backbone features ``xf``; a tower without masks (``masks={}``: the
    whole head) is unmasked."""
    cls_in = torch.cat(
        (head.corr_pw_cls(kernels.pw_cls, xf), head.corr_dw_cls(kernels.dw_cls, xf)), 1
    )
    reg_in = torch.cat(
        (head.corr_pw_reg(kernels.pw_reg, xf), head.corr_dw_reg(kernels.dw_reg, xf)), 1
    )
    blocks: list[torch.Tensor] = []
    activations: list[torch.Tensor] = []
    tops = []
    for tower, x in (("cls", cls_in), ("reg", reg_in)):
        top, outs = tower_forward(
            _tower(head, tower), _down(head, tower)(x), _tower_masks(masks, tower), activations
        )
        tops.append(top)
        blocks += outs
    return HeadOutputs(head.cls_logits(tops[0]), head.bbox_pred(tops[1]), blocks, activations)


def descriptors(activations: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Eq. 12's input per block of both towers (a pruning network reads its own): the
    depthwise output's mean over the map (and the batch), divided by its RMS (the pattern over
    channels, not the video's feature magnitude)."""
    out = {}
    for name, a in zip(layer_names(), activations, strict=True):
        v = a.mean(dim=(0, 2, 3))
        out[name] = v / v.pow(2).mean().sqrt().clamp_min(1e-6)
    return out


def lasso_objective(
    reference: HeadOutputs,
    pruned: HeadOutputs,
    masks: Mapping[str, torch.Tensor],
    sparsity: float,
    output_weight: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. 9-10 on the head: every block's next-layer output (its pointwise conv) and the two
    outputs must match the unpruned head's (relative squared error each; the two outputs' terms
    times ``output_weight``; averaged over the 14 terms, an unpruned tower's being zero), plus
    ``sparsity`` times the mean mask value."""
    pairs = [
        *zip(pruned.block_outputs, reference.block_outputs, strict=True),
        (pruned.logits, reference.logits),
        (pruned.box_logits, reference.box_logits),
    ]
    terms = [(g - w).pow(2).sum() / w.pow(2).sum().clamp_min(1e-12) for g, w in pairs]
    weights = torch.ones(len(terms))
    weights[-2:] = output_weight
    recon = (torch.stack(terms) * weights).mean()
    l1 = torch.stack([m.abs().mean() for m in masks.values()]).mean()
    return recon + sparsity * l1, {"recon": float(recon.detach()), "l1": float(l1.detach())}


# -- physical slicing ------------------------------------------------------------------------
# Kept widths are rounded up to a multiple of this with zero-mask channels (which fold to zero
# columns, so the result is still exact): ONNX Runtime's CPU convs work in blocks of 8/16
# channels, and odd widths made the sliced search 6 % slower than the unpruned one, rounded 5 %
# faster (docs/nanotrack.md, "Pruning the head").
KEEP_MULTIPLE = 8


def kept_channels(mask: torch.Tensor, multiple: int = KEEP_MULTIPLE) -> torch.Tensor:
    """Indices of the non-zero mask values, padded with zero-mask ones (the first dropped) to a
    multiple of ``multiple`` channels (at most the layer's width; at least one channel): a
    zero-mask channel folds to nothing, so the sliced convs compute the masked network exactly."""
    nonzero = mask > 0
    want = min(len(mask), max(1, -(-int(nonzero.sum()) // multiple) * multiple))
    padding = torch.nonzero(~nonzero).flatten()[: want - int(nonzero.sum())]
    keep = nonzero.clone()
    keep[padding] = True
    return torch.nonzero(keep).flatten()


def _conv(
    weight: torch.Tensor, bias: torch.Tensor | None, like: nn.Conv2d, groups: int = 1
) -> nn.Conv2d:
    out = nn.Conv2d(
        weight.shape[1] * groups,
        weight.shape[0],
        like.kernel_size,
        padding=like.padding,
        groups=groups,
        bias=bias is not None,
    )
    out.weight.data.copy_(weight)
    if bias is not None:
        assert out.bias is not None
        out.bias.data.copy_(bias)
    return out.requires_grad_(False)


def _slice_tower(
    down: nn.Conv2d, tower: nn.Sequential, masks: list[torch.Tensor]
) -> tuple[nn.Conv2d, nn.Sequential]:
    masks = [m.detach().float() for m in masks]
    kept = [kept_channels(m) for m in masks]
    bias = down.bias[kept[0]] if down.bias is not None else None
    new_down = _conv(down.weight[kept[0]], bias, down)
    layers: list[nn.Module] = []
    for i in range(len(kept)):
        dw, act, pw = tower[3 * i], tower[3 * i + 1], tower[3 * i + 2]
        k = kept[i]
        dw_bias = dw.bias[k] if dw.bias is not None else None
        rows = kept[i + 1] if i + 1 < len(kept) else torch.arange(pw.out_channels)
        pw_weight = pw.weight[rows][:, k] * masks[i][k].view(1, -1, 1, 1)
        pw_bias = pw.bias[rows] if pw.bias is not None else None
        layers += [_conv(dw.weight[k], dw_bias, dw, groups=len(k)), copy.deepcopy(act)]
        layers.append(_conv(pw_weight, pw_bias, pw))
    return new_down, nn.Sequential(*layers)


def _tower_names(tower: str) -> tuple[str, str]:
    """The head's attribute names of a tower's ``down_*`` conv and of its blocks."""
    return ("down_cls", "cls_tower") if tower == "cls" else ("down_reg", "bbox_tower")


def sliced_convs(head: BANHead, masks: Mapping[str, torch.Tensor]) -> dict[str, nn.Conv2d]:
    """The convs that pruning changes, by their path in the head (``"down_cls.0"``,
    ``"cls_tower.2"``, ...), cut to the kept channels with the kept masks folded in; the towers
    without masks are not in it."""
    convs: dict[str, nn.Conv2d] = {}
    with torch.no_grad():
        for tower in TOWERS:
            tower_masks = _tower_masks(masks, tower)
            if tower_masks is None:
                continue
            down, layers = _slice_tower(_down(head, tower)[0], _tower(head, tower), tower_masks)
            down_name, tower_name = _tower_names(tower)
            convs[f"{down_name}.0"] = down
            for j, layer in enumerate(layers):
                if isinstance(layer, nn.Conv2d):
                    convs[f"{tower_name}.{j}"] = layer
    return convs


def slice_head(head: BANHead, masks: Mapping[str, torch.Tensor]) -> BANHead:
    """A copy of ``head`` with the masked channels cut out and the kept masks folded in: it
    computes what :func:`head_outputs` computes under ``masks``, with smaller convs."""
    sliced = copy.deepcopy(head)
    for path, conv in sliced_convs(head, masks).items():
        name, index = path.split(".")
        getattr(sliced, name)[int(index)] = conv
    return sliced.eval()


def slice_feature_graph(
    graph: bytes, convs: Mapping[str, nn.Conv2d], prefix: str = "net.head."
) -> bytes:
    """The features graph (``search_features.onnx``) with ``convs`` (:func:`sliced_convs`) in
    place of the unpruned ones: their initializers (named by the exporter after the torch
    parameters, ``prefix`` + path) replaced, the depthwise convs' ``group`` set to their kept
    width, and the stale intermediate shapes dropped (ONNX Runtime infers them).
    """
    model = onnx.load_from_string(graph)
    tensors = {t.name: t for t in model.graph.initializer}
    groups = {}
    for path, conv in convs.items():
        for kind in ("weight", "bias"):
            name = f"{prefix}{path}.{kind}"
            if name not in tensors:
                raise ValueError(f"the features graph has no initializer {name}; cannot slice it")
            array = getattr(conv, kind).detach().cpu().numpy()
            tensors[name].CopyFrom(numpy_helper.from_array(array, name))
        groups[f"{prefix}{path}.weight"] = conv.groups
    for node in model.graph.node:
        if node.op_type == "Conv" and len(node.input) > 1 and node.input[1] in groups:
            for attribute in node.attribute:
                if attribute.name == "group":
                    attribute.i = groups[node.input[1]]
    del model.graph.value_info[:]
    return model.SerializeToString()


def prune_rate(masks: Mapping[str, torch.Tensor]) -> float:
    """Share of the pruned blocks' channels cut out."""
    total = sum(m.numel() for m in masks.values())
    kept = sum(len(kept_channels(m)) for m in masks.values())
    return 1.0 - kept / total


def relative_macs(masks: Mapping[str, torch.Tensor], width: int = 96) -> float:
    """The sliced towers' multiply-adds (``down_*`` and the six blocks, per map cell) over the
    unpruned towers' (both; a tower without masks counts whole): what pruning can save at most
    in the towers."""

    def tower_macs(keeps: list[int], down_in: int) -> int:
        macs = down_in * keeps[0]
        for i, k in enumerate(keeps):
            rows = keeps[i + 1] if i + 1 < len(keeps) else width
            macs += 9 * k + k * rows
        return macs

    down_in = width + 64  # the pixel-wise (64) and depthwise (96) correlation channels
    full = sum(tower_macs([width] * BLOCKS, down_in) for _ in TOWERS)
    pruned = 0
    for tower in TOWERS:
        tower_masks = _tower_masks(masks, tower)
        keeps = (
            [width] * BLOCKS
            if tower_masks is None
            else [len(kept_channels(m)) for m in tower_masks]
        )
        pruned += tower_macs(keeps, down_in)
    return pruned / full


# -- the checkpoint ----------------------------------------------------------------------------
class NanoPruneCheckpointError(ValueError):
    """A head-pruning checkpoint that is unreadable or made for other base weights."""


@dataclass
class NanoPruneCheckpoint:
    state: dict[str, torch.Tensor]
    widths: dict[str, int]
    config: PruneNetConfig
    info: dict = field(default_factory=dict)
    sha256: str = ""

    def build(self) -> PruneNet:
        net = PruneNet(self.widths, self.config)
        net.load_state_dict(self.state)
        return net.eval()

    def to_file(self, path: str | os.PathLike[str], base_sha256: str) -> str:
        payload = {
            "format": CHECKPOINT_FORMAT,
            "state": {n: t.detach().cpu().float().contiguous() for n, t in self.state.items()},
            "widths": json.dumps(self.widths),
            "config": json.dumps(self.config.__dict__),
            "base_sha256": base_sha256,
            "info": json.dumps(self.info, sort_keys=True, default=str),
        }
        self.sha256 = save_payload(path, payload)
        return self.sha256

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], base_sha256: str) -> NanoPruneCheckpoint:
        payload, sha = load_bound_payload(
            path,
            CHECKPOINT_FORMAT,
            NanoPruneCheckpointError,
            "head-pruning checkpoint",
            "NanoTrack head-pruning checkpoint",
            "python train/metartt_nano_prune.py",
            base_sha256,
        )
        return cls(
            state=payload["state"],
            widths=json.loads(payload["widths"]),
            config=PruneNetConfig(**json.loads(payload["config"])),
            info=json.loads(payload["info"]),
            sha256=sha,
        )


def predict_masks(net: PruneNet, activations: list[torch.Tensor]) -> Masks:
    """The pruning network's masks for a video from its first search crop's activations."""
    with torch.no_grad():
        return net(descriptors(activations))
