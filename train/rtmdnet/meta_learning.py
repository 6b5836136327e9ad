"""MetaRTT's meta-learning core (Jung et al., AAAI 2020, Algorithm 1), independent of data loading.

Meta-parameters ``M = {theta_init^0, A_init, A_on}``: the FC head's initial weights and, for every
adaptation step, a learning-rate tensor shaped like each parameter (``K_init = K_on = 5``). An
episode adapts ``theta`` by ``K_init`` steps on ``D_init`` and then ``K_on`` steps on the online
data, each step ``theta <- theta - A[k] * grad L(batch; theta)`` (elementwise; the step itself is
``runtime.rtmdnet.meta.adapt``, the one the tracker runs). The meta-loss is the test loss after the
initial adaptation plus the test loss after the online adaptation, and it is differentiated
through both inner loops (second order, Eq. 8): every inner gradient is taken with
``create_graph=True``.

Test loss: cross-entropy on ``D_test^std`` plus ``gamma`` times a triplet loss on L2-normalized
fc5 embeddings (anchor and positive: positives of ``D_test^std``; negative: ``D_test^hard``, the
targets of other videos). The embedding is our reading of "outputs" (a triplet on 2-d logits would
carry little); the choice is stated here so an ablation can revisit it.

Dropout is off inside the inner loops: the adapted weights must be a deterministic function of the
meta-parameters for the second-order gradient to mean anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from runtime.rtmdnet.head import FCHead
from runtime.rtmdnet.meta import (
    BatchSpec,
    MetaCheckpoint,
    Params,
    adapt,
    classification_loss,
    forward_with,
)


@dataclass
class MetaConfig:
    k_init: int = 5
    k_on: int = 5  # 0: meta-learn the initial adaptation only (the Meta-Tracker baseline)
    # Starting value of every learned rate (mean loss, plain steps). The paper does not give one;
    # Adam at 1e-4 moves a rate by at most ~1e-4 per step, so it must start near a useful value.
    # Swept on 24 training episodes before meta-training (docs/metartt.md): 0.1 gave the lowest
    # test losses; 0.3 diverges on some episodes; fc6 x10 (RT-MDNet's multiplier) was worse.
    lr_init_value: float = 0.1
    gamma: float = 0.1  # weight of the triplet term (0: no hard examples)
    triplet_margin: float = 0.2
    scalar_lr: bool = False  # ablation: one learned scalar per step instead of per-parameter
    # Test CE as the mean of the positives' and the negatives' means, instead of the mean over all
    # samples (1 positive : 4 negatives in D_test^std). Not in the paper; see docs/metartt.md.
    balanced_test_loss: bool = False


class TrainingMetaLearner(nn.Module):
    """Holds ``theta_init^0`` (an :class:`FCHead`) and the per-step learning rates."""

    def __init__(self, head: FCHead, config: MetaConfig) -> None:
        super().__init__()
        self.head = head
        self.config = config

        def rates(steps: int) -> nn.ParameterList:
            def one(p: torch.Tensor) -> nn.Parameter:
                shape = () if config.scalar_lr else p.shape
                return nn.Parameter(torch.full(shape, config.lr_init_value))

            return nn.ParameterList(
                nn.ParameterDict({self._key(n): one(p) for n, p in head.named_parameters()})
                for _ in range(steps)
            )

        self.lr_init = rates(config.k_init)
        self.lr_on = rates(config.k_on)
        self.head.eval()

    def train(self, mode: bool = True) -> TrainingMetaLearner:
        # The head stays in eval mode (no dropout): see the module docstring.
        super().train(mode)
        self.head.eval()
        return self

    @staticmethod
    def _key(name: str) -> str:
        return name.replace(".", "__")  # ParameterDict keys may not contain dots

    def rates(self, which: str) -> list[dict[str, torch.Tensor]]:
        """``which`` = "init" or "on": per step, ``{parameter name: rate}``."""
        steps = {"init": self.lr_init, "on": self.lr_on}[which]
        return [{n: step[self._key(n)] for n, _ in self.head.named_parameters()} for step in steps]

    def initial_params(self) -> Params:
        return dict(self.head.named_parameters())

    def forward_with(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        return forward_with(self.head, params, x)

    def adapt(
        self,
        params: Params,
        pos: torch.Tensor,
        neg: torch.Tensor,
        which: str,
        spec: BatchSpec,
        rng: np.random.Generator,
        mining_dtype: torch.dtype | None = None,
    ) -> Params:
        """The ``which`` ("init"/"on") inner loop, differentiable w.r.t. every meta-parameter."""
        return adapt(
            self.head,
            params,
            pos,
            neg,
            self.rates(which),
            spec,
            rng,
            create_graph=True,
            mining_dtype=mining_dtype,
        )

    def test_loss(
        self, params: Params, pos: torch.Tensor, neg: torch.Tensor, hard: torch.Tensor
    ) -> torch.Tensor:
        logits = self.forward_with(params, torch.cat([pos, neg]))
        if self.config.balanced_test_loss:
            ce = 0.5 * (
                classification_loss(logits[: len(pos)], logits[:0])
                + classification_loss(logits[:0], logits[len(pos) :])
            )
        else:
            ce = classification_loss(logits[: len(pos)], logits[len(pos) :])
        if self.config.gamma == 0 or len(hard) == 0 or len(pos) < 2:
            return ce
        emb = F.normalize(_embed(self.head, params, torch.cat([pos, hard])), dim=1)
        anchor, positive = emb[: len(pos)], emb[: len(pos)].roll(1, dims=0)
        negative = emb[len(pos) :][torch.arange(len(pos)) % len(hard)]
        triplet = F.triplet_margin_loss(
            anchor, positive, negative, margin=self.config.triplet_margin
        )
        return ce + self.config.gamma * triplet

    def to_checkpoint(self, backbone: str, info: dict | None = None) -> MetaCheckpoint:
        """What the runtime needs: theta_init^0, input scale, rates (no optimizer state)."""

        def plain(which: str) -> list[dict[str, torch.Tensor]]:
            return [{n: r.detach().clone() for n, r in step.items()} for step in self.rates(which)]

        return MetaCheckpoint(
            head_state={n: t.detach().clone() for n, t in self.head.state_dict().items()},
            lr_init=plain("init"),
            lr_on=plain("on"),
            backbone=backbone,
            feature_dim=self.head.fc4[0].in_features,
            fc_width=self.head.fc4[0].out_features,
            info=info or {},
        )


def _embed(head: FCHead, params: Params, x: torch.Tensor) -> torch.Tensor:
    """fc5 output (fc6 left out) of ``head``'s layers with the weights in ``params``."""
    h = F.relu(F.linear(x * head.input_scale, params["fc4.0.weight"], params["fc4.0.bias"]))
    return F.relu(F.linear(h, params["fc5.1.weight"], params["fc5.1.bias"]))
