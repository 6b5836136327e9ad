"""MLT's meta-learner on the NanoTrack v3 base: target-specific kernels generated from a gradient.

MLT (Choi et al., ICCV 2019) adds to a matching network a *target-aware* layer whose weights and
channel attention a meta-learner generates, from the gradient of the tracking loss with respect
to that layer's weights over a few confident context images. On the base (issue 16, ``mlt-nano``)
the target-aware layer is the classification branch's last one: ``cls_logits``, a frozen 1x1
conv whose target-minus-background direction ``d`` (96 numbers) and offset ``c`` give the base's
per-cell margin ``d . f + c``. With a generated kernel ``dw``, bias ``db`` and channel attention
``a`` (96 numbers, ``a = 1`` being the base) the cell logit becomes

    z = d . (a * f) + c + dw . f + db = margin + (dw + (a - 1) * d) . f + db

so a generation is one effective residual ``(w, b)`` of :mod:`runtime.nanotrack.target_layer`,
and zero outputs are the base exactly (the generator's output layer starts at zero).

The generator's input is the gradient of :func:`~runtime.nanotrack.target_layer.balanced_loss` at
the base (``w = b = 0``) over the context images: 96 + 1 numbers, given as the direction and the
log of the norm (the norm spans orders of magnitude between videos). An MLP maps them to
``dw``, ``db`` and the attention logits (``a = 2 * sigmoid(.)``, in (0, 2)).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import nn

from runtime.checkpoint_io import load_bound_payload, save_payload
from runtime.nanotrack.target_layer import FEATURES, CropSample, balanced_loss

CHECKPOINT_FORMAT = "nanotrack-kernel-generator/1"
HIDDEN = 256


def base_gradient(samples: Sequence[CropSample]) -> torch.Tensor:
    """``d loss / d (w, b)`` at the base (``w = b = 0``) over ``samples``: ``(97,)``."""
    w = torch.zeros(FEATURES, requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    with torch.enable_grad():
        grad_w, grad_b = torch.autograd.grad(balanced_loss(w, b, samples), (w, b))
    return torch.cat([grad_w, grad_b[None]])


class KernelGenerator(nn.Module):
    """The meta-learner: a base gradient ``(97,)`` -> the effective residual ``(w (96,), b ())``.

    ``direction`` is the base's target-minus-background direction of ``cls_logits`` (96,), which
    the channel attention scales; ``attention=False`` generates the kernel and bias only (an
    ablation).
    """

    def __init__(
        self, direction: torch.Tensor, hidden: int = HIDDEN, attention: bool = True
    ) -> None:
        super().__init__()
        self.attention = attention
        self.register_buffer("direction", direction.detach().clone().float())
        self.net = nn.Sequential(
            nn.Linear(FEATURES + 2, hidden), nn.ReLU(), nn.Linear(hidden, 2 * FEATURES + 1)
        )
        last = self.net[-1]
        nn.init.zeros_(last.weight)  # untrained: zero kernel, unit attention = the base
        nn.init.zeros_(last.bias)

    def forward(self, gradient: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        norm = gradient.norm().clamp_min(1e-12)
        x = torch.cat([gradient / norm, norm.log()[None]])
        out = self.net(x)
        dw, db, attention_logits = out[:FEATURES], out[FEATURES], out[FEATURES + 1 :]
        if not self.attention:
            return dw, db
        attention = 2.0 * torch.sigmoid(attention_logits)
        return dw + (attention - 1.0) * self.direction, db

    def generate(self, samples: Sequence[CropSample]) -> tuple[torch.Tensor, torch.Tensor]:
        """The residual for a target seen in ``samples`` (no gradient kept)."""
        with torch.no_grad():
            return self(base_gradient(samples))


def save_generator(
    path: str | os.PathLike[str],
    generator: KernelGenerator,
    info: dict[str, object],
    base_sha256: str,
) -> None:
    """Write a checkpoint bound to the base weights it was trained on (atomic)."""
    state = {k: v.detach().clone() for k, v in generator.state_dict().items()}
    payload = {"format": CHECKPOINT_FORMAT, "state": state, "base_sha256": base_sha256}
    payload["attention"] = generator.attention
    save_payload(path, payload | {"info": info})


class KernelGeneratorCheckpointError(ValueError):
    """A kernel-generator checkpoint that is unreadable or made for other base weights."""


def load_generator(
    path: str | os.PathLike[str], base_sha256: str
) -> tuple[KernelGenerator, dict[str, object], str]:
    """``(generator, info, file sha256)``; refused when trained for other base weights."""
    payload, sha = load_bound_payload(
        path,
        CHECKPOINT_FORMAT,
        KernelGeneratorCheckpointError,
        "kernel-generator checkpoint",
        "NanoTrack kernel-generator checkpoint",
        "python train/mlt_nano.py",
        base_sha256,
    )
    state = payload["state"]
    hidden = state["net.0.weight"].shape[0]
    generator = KernelGenerator(state["direction"], hidden, bool(payload.get("attention", True)))
    generator.load_state_dict(state)
    generator.requires_grad_(False)  # used for inference only
    return generator.eval(), dict(payload.get("info", {})), sha
