"""The FC head (fc4 -> fc5 -> fc6) and MDNet's few-step training with hard negative mining."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class FCHead(nn.Module):
    """Scores RoI features: ``(N, C*roi*roi) -> (N, 2)`` logits, index 1 = target.

    ``input_scale`` standardises the backbone's feature magnitude (set once, on the first frame),
    so the paper's learning rates work whatever backbone feeds the head.
    """

    def __init__(
        self,
        in_features: int,
        width: int = 512,
        dropout: float = 0.5,
        fc5_width: int | None = None,  # a pruned head's fc5 keeps its own number of units
    ) -> None:
        super().__init__()
        fc5_width = width if fc5_width is None else fc5_width
        self.register_buffer("input_scale", torch.ones(()))
        self.fc4 = nn.Sequential(nn.Linear(in_features, width), nn.ReLU())
        self.fc5 = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, fc5_width), nn.ReLU())
        self.fc6 = nn.Sequential(nn.Dropout(dropout), nn.Linear(fc5_width, 2))

    def embed(self, roi_features: torch.Tensor) -> torch.Tensor:
        return self.fc5(self.fc4(roi_features * self.input_scale))

    def forward(self, roi_features: torch.Tensor) -> torch.Tensor:
        return self.fc6(self.embed(roi_features))

    def param_groups(self, lr: float, lr_mult_fc6: float) -> list[dict]:
        groups: OrderedDict[str, dict] = OrderedDict()
        for name, param in self.named_parameters():
            layer_lr = lr * lr_mult_fc6 if name.startswith("fc6") else lr
            groups.setdefault(f"{layer_lr}", {"params": [], "lr": layer_lr})["params"].append(param)
        return list(groups.values())


def binary_loss(pos_logits: torch.Tensor, neg_logits: torch.Tensor) -> torch.Tensor:
    """MDNet's loss: summed (not averaged) cross-entropy of positives and negatives."""
    return (
        -F.log_softmax(pos_logits, dim=1)[:, 1].sum() - F.log_softmax(neg_logits, dim=1)[:, 0].sum()
    )


def fast_low_precision(device: torch.device) -> torch.dtype | None:
    """bfloat16 where this machine multiplies it natively (AVX512-BF16/AMX, or a GPU), else None."""
    if device.type == "cuda":
        return torch.bfloat16
    if device.type == "cpu" and torch.backends.mkldnn.is_available():
        try:
            return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None
        except (AttributeError, RuntimeError):
            return None
    return None


def hardest(
    cand: torch.Tensor,
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    k: int,
    mining_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """The ``k`` negatives that ``score_fn`` (target scores) ranks highest: hard negative mining.

    Ranking only chooses samples, so it runs without autograd and, with ``mining_dtype`` (e.g.
    bfloat16), at lower precision.
    """
    with (
        torch.no_grad(),
        torch.autocast(
            cand.device.type, dtype=mining_dtype or torch.float32, enabled=mining_dtype is not None
        ),
    ):
        scores = score_fn(cand).float()
    return cand[scores.topk(min(k, len(cand))).indices]


def _index_stream(n: int, needed: int, rng: np.random.Generator) -> np.ndarray:
    """Concatenated permutations of ``range(n)`` long enough for ``needed`` draws."""
    reps = int(np.ceil(needed / max(n, 1)))
    return np.concatenate([rng.permutation(n) for _ in range(max(reps, 1))])[:needed]


def train_head(
    head: FCHead,
    optimizer: torch.optim.Optimizer,
    pos_feats: torch.Tensor,
    neg_feats: torch.Tensor,
    iterations: int,
    *,
    batch_pos: int,
    batch_neg: int,
    batch_neg_cand: int,
    batch_test: int,
    grad_clip: float,
    rng: np.random.Generator,
    mining_dtype: torch.dtype | None = None,
) -> float:
    """``iterations`` SGD steps on (pos, neg); negatives are the hardest of a larger candidate set.

    ``mining_dtype`` (e.g. bfloat16) runs only the candidate ranking of hard negative mining at
    lower precision: it chooses which negatives to train on, the training step itself stays in
    float32. Returns the last loss (for logs).
    """
    batch_neg_cand = max(batch_neg_cand, batch_neg)
    pos_idx = torch.from_numpy(_index_stream(len(pos_feats), batch_pos * iterations, rng))
    neg_idx = torch.from_numpy(_index_stream(len(neg_feats), batch_neg_cand * iterations, rng))
    loss_value = float("nan")
    for it in range(iterations):
        batch_pos_feats = pos_feats[pos_idx[it * batch_pos : (it + 1) * batch_pos]]
        cand = neg_feats[neg_idx[it * batch_neg_cand : (it + 1) * batch_neg_cand]]
        if len(cand) > batch_neg:
            head.eval()
            cand = hardest(
                cand,
                lambda x: torch.cat(
                    [head(x[s : s + batch_test])[:, 1] for s in range(0, len(x), batch_test)]
                ),
                batch_neg,
                mining_dtype,
            )
        head.train()
        logits = head(torch.cat([batch_pos_feats, cand]))
        loss = binary_loss(logits[: len(batch_pos_feats)], logits[len(batch_pos_feats) :])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), grad_clip)
        optimizer.step()
        loss_value = float(loss.detach())
    head.eval()
    return loss_value
