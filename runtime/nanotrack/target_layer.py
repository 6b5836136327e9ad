"""A target-specific layer on NanoTrack v3's classification branch, adapted by a few steps.

MetaRTT on the strong base (issue 16): the base network stays frozen; what adapts to the target
is one residual 1x1 layer on the classification tower's 96-channel output ``f`` (the input of
``cls_logits``). Per score-map cell the target logit becomes

    z = (l_target - l_background) + w . f + b

so ``w = 0, b = 0`` is the base tracker exactly (``sigmoid(z)`` is its softmax probability).
``w, b`` are adapted by plain gradient steps with a learning-rate tensor per step, shaped like
the parameters (MetaRTT's per-parameter, per-step rates): ``K_init`` steps on the first frame's
search crop from ``theta_init^0``, ``K_on`` steps on a memory of confident frames every few
frames. :class:`AdaptRule` holds ``theta_init^0`` and the rates: meta-learned
(``train/metartt_nano.py``) or a plain fine-tuning rule (zero start, one rate).

Labels per cell (:func:`cell_labels`): positive where the cell's point lies in the central half
of the target box (the nearest cell always), negative outside the box, ignored in between; the
loss is a class-balanced binary cross-entropy (:func:`balanced_loss`), so the ~10 positive cells
of a 15 x 15 map weigh as much as the ~200 negatives.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from runtime.checkpoint_io import load_bound_payload, save_payload

FEATURES = 96  # the classification tower's width (runtime.nanotrack.model.CHANNELS)
CHECKPOINT_FORMAT = "nanotrack-target-layer/1"


@dataclass(frozen=True)
class CropSample:
    """One search crop as the target layer sees it: per-cell features, base margin, labels."""

    feats: torch.Tensor  # (96, n) classification features, n = map cells
    margin: torch.Tensor  # (n,) base target-minus-background logit
    labels: torch.Tensor  # (n,) 1 target, 0 background, -1 ignored


def cell_labels(points: np.ndarray, center: Sequence[float], size: Sequence[float]) -> torch.Tensor:
    """Labels of the cells at ``points`` ((2, n), crop px from the crop centre) for a target box
    centred at ``center`` with ``size`` (crop px): 1 inside its central half, 0 outside it."""
    dx = np.abs(points[0] - center[0])
    dy = np.abs(points[1] - center[1])
    positive = (dx <= size[0] / 4.0) & (dy <= size[1] / 4.0)
    negative = (dx > size[0] / 2.0) | (dy > size[1] / 2.0)
    nearest = int(np.argmin(dx**2 + dy**2))  # a small target still has one positive cell
    positive[nearest], negative[nearest] = True, False
    labels = np.full(points.shape[1], -1.0, dtype=np.float32)
    labels[positive], labels[negative] = 1.0, 0.0
    return torch.from_numpy(labels)


def logits(
    w: torch.Tensor, b: torch.Tensor, feats: torch.Tensor, margin: torch.Tensor
) -> torch.Tensor:
    """The adapted target logits of every cell: ``margin + w . f + b``."""
    return margin + w @ feats + b


def balanced_loss(w: torch.Tensor, b: torch.Tensor, samples: Sequence[CropSample]) -> torch.Tensor:
    """Mean over ``samples`` of the class-balanced BCE of the labelled cells."""
    total = torch.zeros((), dtype=w.dtype)
    for s in samples:
        used = s.labels >= 0
        target = s.labels[used]
        z = logits(w, b, s.feats[:, used], s.margin[used])
        n_pos = (target == 1).sum().clamp_min(1)
        n_neg = (target == 0).sum().clamp_min(1)
        weight = torch.where(target == 1, 0.5 / n_pos, 0.5 / n_neg)
        total = (
            total + (weight * F.binary_cross_entropy_with_logits(z, target, reduction="none")).sum()
        )
    return total / max(len(samples), 1)


@dataclass
class AdaptRule:
    """``theta_init^0`` (``w0``, ``b0``) and the per-step rates of the initial and online steps."""

    w0: torch.Tensor  # (96,)
    b0: torch.Tensor  # ()
    init_rates_w: torch.Tensor  # (K_init, 96)
    init_rates_b: torch.Tensor  # (K_init,)
    online_rates_w: torch.Tensor  # (K_on, 96)
    online_rates_b: torch.Tensor  # (K_on,)

    @classmethod
    def plain(cls, init_steps: int, online_steps: int, rate: float) -> AdaptRule:
        """Fine-tuning from zero (the base tracker) with one rate for every step."""
        return cls(
            torch.zeros(FEATURES),
            torch.zeros(()),
            torch.full((init_steps, FEATURES), rate),
            torch.full((init_steps,), rate),
            torch.full((online_steps, FEATURES), rate),
            torch.full((online_steps,), rate),
        )

    @property
    def init_steps(self) -> int:
        return len(self.init_rates_b)

    @property
    def online_steps(self) -> int:
        return len(self.online_rates_b)

    def parameters(self) -> list[torch.Tensor]:
        return [
            self.w0,
            self.b0,
            self.init_rates_w,
            self.init_rates_b,
            self.online_rates_w,
            self.online_rates_b,
        ]

    def state(self) -> dict[str, torch.Tensor]:
        names = ("w0", "b0", "init_rates_w", "init_rates_b", "online_rates_w", "online_rates_b")
        return {n: t.detach().clone() for n, t in zip(names, self.parameters(), strict=True)}


def adapt(
    w: torch.Tensor,
    b: torch.Tensor,
    samples: Sequence[CropSample],
    rates_w: torch.Tensor,
    rates_b: torch.Tensor,
    create_graph: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``len(rates_b)`` steps ``theta <- theta - rate[k] * grad L(samples; theta)`` from ``w, b``.

    ``create_graph=True`` keeps the steps differentiable (meta-training: second order)."""
    if not create_graph:
        w, b = w.detach().requires_grad_(True), b.detach().requires_grad_(True)
    for k in range(len(rates_b)):
        loss = balanced_loss(w, b, samples)
        grad_w, grad_b = torch.autograd.grad(loss, (w, b), create_graph=create_graph)
        w, b = w - rates_w[k] * grad_w, b - rates_b[k] * grad_b
        if not create_graph:
            w, b = w.detach().requires_grad_(True), b.detach().requires_grad_(True)
    return (w, b) if create_graph else (w.detach(), b.detach())


def save_rule(
    path: str | os.PathLike[str], rule: AdaptRule, info: dict[str, object], base_sha256: str
) -> None:
    """Write a checkpoint bound to the base weights it was trained on (atomic)."""
    save_payload(
        path,
        {
            "format": CHECKPOINT_FORMAT,
            "rule": rule.state(),
            "base_sha256": base_sha256,
            "info": info,
        },
    )


class TargetLayerCheckpointError(ValueError):
    """A target-layer checkpoint that is unreadable or made for other base weights."""


def load_rule(
    path: str | os.PathLike[str], base_sha256: str
) -> tuple[AdaptRule, dict[str, object], str]:
    """``(rule, info, file sha256)``; refused when trained for other base weights."""
    payload, sha = load_bound_payload(
        path,
        CHECKPOINT_FORMAT,
        TargetLayerCheckpointError,
        "target-layer checkpoint",
        "NanoTrack target-layer checkpoint",
        "python train/metartt_nano.py",
        base_sha256,
    )
    state = payload["rule"]
    rule = AdaptRule(**{k: torch.as_tensor(v, dtype=torch.float32) for k, v in state.items()})
    return rule, dict(payload.get("info", {})), sha
