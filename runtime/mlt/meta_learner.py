"""MLT's meta-learner: the loss gradient of conv5 -> 32 new 1x1 kernels + a channel attention.

Input: the negative gradient of the matching loss with respect to conv5's kernel (256 x 192,
averaged over M context images with generated labels), divided by its RMS (the raw gradient's
scale varies by orders of magnitude between videos; the paper does not say how it scales it).

Three FC layers (two hidden of 512, ReLU, dropout with keep probability 0.7) as the paper. One
deviation, for size: the paper's first FC would read the whole flattened 256 x 192 gradient
(49,152 x 512 weights, 100 MB in float32, more parameters than this project has training
frames). Here the same three layers read each of conv5's 256 input-channel rows (192 values)
and are shared across rows: row ``i`` gives row ``i`` of the new kernels (256 x 32) and 224
attention logits, averaged over the rows and passed through a sigmoid (the attention for the
192 + 32 channels). 0.5 M parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from runtime.mlt.model import (
    CONV5_IN,
    CONV5_OUT,
    N_GENERATED,
    MatchingNet,
    balanced_logistic_loss,
)

N_ATTENTION = CONV5_OUT + N_GENERATED  # 224


class MetaLearner(nn.Module):
    def __init__(self, hidden: int = 512, keep_prob: float = 0.7) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(CONV5_OUT, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(1.0 - keep_prob),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(1.0 - keep_prob),
            nn.Linear(hidden, N_GENERATED + N_ATTENTION),
        )
        last = self.layers[-1]
        with torch.no_grad():
            last.weight.mul_(0.1)
            last.bias.zero_()
            last.bias[N_GENERATED:] = 2.0  # attention starts near 0.88: close to no attention

    def forward(self, gradient: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(256, 192)`` gradient -> kernels ``(256, 32)``, attention ``(224,)`` in (0, 1)."""
        g = gradient / gradient.pow(2).mean().sqrt().clamp_min(1e-12)
        out = self.layers(g)
        kernels = out[:, :N_GENERATED] * (1.0 / CONV5_IN**0.5)
        attention = torch.sigmoid(out[:, N_GENERATED:].mean(0))
        return kernels, attention


def conv5_gradient(
    net: MatchingNet,
    z4: torch.Tensor,
    x4: torch.Tensor,
    labels: torch.Tensor,
    conv5_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """The meta-learner's input: ``-dL/dW_conv5`` as ``(256, 192)`` (mean over the M images).

    ``z4`` is the exemplar's conv4 map ``(1, 256, h, w)``, ``x4`` the M context images' ``(M,
    256, H, W)``, ``labels`` their generated label maps. No graph is kept (first order).
    """
    base = net.conv5.weight if conv5_weight is None else conv5_weight
    weight = base.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        z = net.embed(z4.detach(), weight)
        x = net.embed(x4.detach(), weight)
        loss = balanced_logistic_loss(net.response(z, x), labels)
        (grad,) = torch.autograd.grad(loss, weight)
    return -grad.reshape(CONV5_OUT, CONV5_IN).t().contiguous()


__all__ = ["N_ATTENTION", "MetaLearner", "conv5_gradient"]
