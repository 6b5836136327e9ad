"""MetaRTT's pruning network (Jung et al., AAAI 2020, Eq. 12), for any set of pruned layers.

Per pruned layer a 2-layer perceptron maps a descriptor of the video (the layer's
global-average-pooled activations at the first frame) to that layer's channel mask
``relu(MLP(descriptor))``; or, the paper's static variant, one learned vector per layer, the same
for every video. Which layers, and how a descriptor is computed, is the tracker's:
``runtime.rtmdnet.prune`` (the backbone's last conv, fc4, fc5) and
``runtime.nanotrack.pruning`` (the NanoTrack head's two towers).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

Masks = dict[str, torch.Tensor]


@dataclass
class PruneNetConfig:
    hidden_fraction: float = 0.5  # hidden units = channels * this (the paper gives no size)
    dropout: float = 0.3  # the paper's MLP has dropout; its rate is not given
    negative_slope: float = 0.01  # LeakyReLU
    static: bool = False  # the variant: one learned mask per layer, the same for every video


class PruneNet(nn.Module):
    """Per pruned layer, descriptor -> mask ``relu(MLP(descriptor))`` (or a static vector).

    ``widths``: channels per layer, in network order (the masks come back in that order). The
    output layer starts at zero weights and bias 1: every mask starts at 1, the unpruned
    network, and training (reconstruction against L1) decides what goes.
    """

    def __init__(self, widths: Mapping[str, int], config: PruneNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or PruneNetConfig()
        self.widths = {layer: int(n) for layer, n in widths.items()}
        c = self.config
        if c.static:
            self.logits = nn.ParameterDict(
                {layer: nn.Parameter(torch.ones(n)) for layer, n in self.widths.items()}
            )
        else:
            mlps = {}
            for layer, n in self.widths.items():
                hidden = max(8, round(n * c.hidden_fraction))
                out = nn.Linear(hidden, n)
                nn.init.zeros_(out.weight)
                nn.init.ones_(out.bias)
                mlps[layer] = nn.Sequential(
                    nn.Linear(n, hidden), nn.LeakyReLU(c.negative_slope), nn.Dropout(c.dropout), out
                )
            self.mlps = nn.ModuleDict(mlps)

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(self.widths)

    def forward(self, descriptor: Mapping[str, torch.Tensor]) -> Masks:
        if self.config.static:
            return {layer: F.relu(self.logits[layer]) for layer in self.layers}
        return {layer: F.relu(self.mlps[layer](descriptor[layer])) for layer in self.layers}
