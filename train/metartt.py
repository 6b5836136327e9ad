"""MetaRTT's meta-learning core (Jung et al., AAAI 2020, Algorithm 1), independent of data loading.

Meta-parameters ``M = {theta_init^0, A_init, A_on}``: the FC head's initial weights and, for every
adaptation step, a learning-rate tensor shaped like each parameter (``K_init = K_on = 5``). An
episode adapts ``theta`` by ``K_init`` steps on ``D_init`` and then ``K_on`` steps on the online
data, each step ``theta <- theta - A[k] * grad L(D; theta)`` (elementwise). The meta-loss is the
test loss after the initial adaptation plus the test loss after the online adaptation, and it is
differentiated through both inner loops (second order, Eq. 8): every inner gradient is taken with
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

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from runtime.rtmdnet.head import FCHead

Params = dict[str, torch.Tensor]


@dataclass
class MetaConfig:
    k_init: int = 5
    k_on: int = 5
    lr_init_value: float = 1e-3  # starting value of every learned learning rate
    gamma: float = 0.1  # weight of the triplet term
    triplet_margin: float = 0.2
    scalar_lr: bool = False  # ablation: one learned scalar per step instead of per-parameter


class MetaLearner(nn.Module):
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

    def train(self, mode: bool = True) -> MetaLearner:
        # The head stays in eval mode (no dropout): see the module docstring.
        super().train(mode)
        self.head.eval()
        return self

    @staticmethod
    def _key(name: str) -> str:
        return name.replace(".", "__")  # ParameterDict keys may not contain dots

    def initial_params(self) -> Params:
        return dict(self.head.named_parameters())

    def forward_with(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.head, params, (x,))

    def adapt(
        self,
        params: Params,
        pos: torch.Tensor,
        neg: torch.Tensor,
        rates: nn.ParameterList,
        create_graph: bool = True,
    ) -> Params:
        """``len(rates)`` gradient steps on the binary loss; differentiable w.r.t. the rates."""
        for step_rates in rates:
            logits = self.forward_with(params, torch.cat([pos, neg]))
            loss = classification_loss(logits[: len(pos)], logits[len(pos) :])
            grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
            params = {
                name: p - step_rates[self._key(name)] * g
                for (name, p), g in zip(params.items(), grads, strict=True)
            }
        return params

    def test_loss(
        self, params: Params, pos: torch.Tensor, neg: torch.Tensor, hard: torch.Tensor
    ) -> torch.Tensor:
        logits = self.forward_with(params, torch.cat([pos, neg]))
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


def _embed(head: FCHead, params: Params, x: torch.Tensor) -> torch.Tensor:
    """fc5 output (fc6 left out) of ``head``'s layers with the weights in ``params``."""
    h = F.relu(F.linear(x * head.input_scale, params["fc4.0.weight"], params["fc4.0.bias"]))
    return F.relu(F.linear(h, params["fc5.1.weight"], params["fc5.1.bias"]))


def classification_loss(pos_logits: torch.Tensor, neg_logits: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy (a mean, unlike MDNet's sum, so rates do not scale with batch)."""
    targets = torch.cat(
        [
            torch.ones(len(pos_logits), dtype=torch.long),
            torch.zeros(len(neg_logits), dtype=torch.long),
        ]
    ).to(pos_logits.device)
    return F.cross_entropy(torch.cat([pos_logits, neg_logits]), targets)
