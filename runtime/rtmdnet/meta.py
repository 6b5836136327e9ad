"""MetaRTT at tracking time (Jung et al., AAAI 2020): few-step adaptation with learned rates.

A meta checkpoint holds what ``train/meta.py`` learns: ``theta_init^0`` (the FC head's initial
weights and its input scale) and, for each of the ``K_init`` initial and ``K_on`` online steps, a
learning-rate tensor shaped like every head parameter. One step is
``theta <- theta - A[k] * grad L(batch; theta)`` (elementwise, no momentum), on a minibatch drawn
as RT-MDNet draws one: ``batch_pos`` positives and the ``batch_neg`` highest-scoring of
``batch_neg_cand`` negatives. Training runs the very same :func:`adapt` (with ``create_graph``),
so the tracker adapts exactly as the meta-parameters were learned to be used.

The checkpoint never holds the pretrained backbone: it is read from its own folder, and the
checkpoint records which backbone and feature size it was trained on, so a mismatch is refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

from runtime.checkpoint_io import load_payload, save_payload
from runtime.rtmdnet.head import FCHead, hardest

Params = dict[str, torch.Tensor]
Rates = Sequence[Mapping[str, torch.Tensor]]  # one {parameter name: rate tensor} per step

CHECKPOINT_FORMAT = "metartt-head/1"
SHIPPED_CHECKPOINT = Path(__file__).resolve().parent.parent / "checkpoints" / "metartt.pt"


@dataclass(frozen=True)
class BatchSpec:
    """Minibatch of one adaptation step (RT-MDNet's sizes)."""

    batch_pos: int = 32
    batch_neg: int = 96
    batch_neg_cand: int = 1024  # hard negatives: the batch_neg highest-scoring of these


def classification_loss(pos_logits: torch.Tensor, neg_logits: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy (a mean, unlike MDNet's sum, so rates do not scale with batch)."""
    targets = torch.cat(
        [
            torch.ones(len(pos_logits), dtype=torch.long),
            torch.zeros(len(neg_logits), dtype=torch.long),
        ]
    ).to(pos_logits.device)
    return F.cross_entropy(torch.cat([pos_logits, neg_logits]), targets)


def forward_with(head: FCHead, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``head``'s logits with the weights in ``params`` (buffers such as input_scale: head's)."""
    return functional_call(head, dict(params), (x,))


def _pick(n: int, k: int, rng: np.random.Generator) -> torch.Tensor:
    return torch.from_numpy(rng.choice(n, size=k, replace=n < k))


def draw_batch(
    head: FCHead,
    params: Mapping[str, torch.Tensor],
    pos: torch.Tensor,
    neg: torch.Tensor,
    spec: BatchSpec,
    rng: np.random.Generator,
    mining_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step's positives and hard negatives (ranked by the current ``params``, no gradient)."""
    pos_batch = pos[_pick(len(pos), min(spec.batch_pos, len(pos)), rng)]
    cand = neg[_pick(len(neg), min(max(spec.batch_neg_cand, spec.batch_neg), len(neg)), rng)]
    if len(cand) > spec.batch_neg:
        cand = hardest(
            cand, lambda x: forward_with(head, params, x)[:, 1], spec.batch_neg, mining_dtype
        )
    return pos_batch, cand


def adapt(
    head: FCHead,
    params: Params,
    pos: torch.Tensor,
    neg: torch.Tensor,
    rates: Rates,
    spec: BatchSpec,
    rng: np.random.Generator,
    *,
    create_graph: bool = False,
    mining_dtype: torch.dtype | None = None,
    step_dtype: torch.dtype | None = None,
) -> Params:
    """``len(rates)`` steps ``theta <- theta - A[k] * grad``; differentiable if ``create_graph``.

    ``head`` must be in eval mode (no dropout): the adapted weights are then a deterministic
    function of the meta-parameters, which the second-order meta-gradient relies on.
    ``step_dtype`` (e.g. bfloat16) runs each step's forward and backward under autocast; the
    weights, their gradients and the update stay float32.
    """
    dtype = step_dtype or torch.float32
    low = torch.autocast(pos.device.type, dtype=dtype, enabled=step_dtype is not None)
    for step_rates in rates:
        if not create_graph:
            params = {n: p.detach().requires_grad_(True) for n, p in params.items()}
        pos_batch, neg_batch = draw_batch(head, params, pos, neg, spec, rng, mining_dtype)
        with torch.enable_grad(), low:
            logits = forward_with(head, params, torch.cat([pos_batch, neg_batch])).float()
            loss = classification_loss(logits[: len(pos_batch)], logits[len(pos_batch) :])
            grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
        params = {
            name: p - step_rates[name] * g
            for (name, p), g in zip(params.items(), grads, strict=True)
        }
    if not create_graph:
        params = {n: p.detach() for n, p in params.items()}
    return params


# ------------------------------------------------------------------------------------------
# The checkpoint
# ------------------------------------------------------------------------------------------
class MetaCheckpointError(ValueError):
    """A meta checkpoint is missing, malformed, or made for another backbone."""


@dataclass
class MetaCheckpoint:
    head_state: dict[str, torch.Tensor]  # FCHead.state_dict(): theta_init^0 and input_scale
    lr_init: list[dict[str, torch.Tensor]]  # K_init steps
    lr_on: list[dict[str, torch.Tensor]]  # K_on steps; empty = RT-MDNet's online updates
    backbone: str
    feature_dim: int
    fc_width: int
    info: dict = field(default_factory=dict)  # training settings, for the record
    sha256: str = ""  # of the file it was read from

    # --------------------------------------------------------------------------------------
    def build_head(self, device: torch.device | str = "cpu") -> FCHead:
        head = FCHead(self.feature_dim, self.fc_width)
        head.load_state_dict(self.head_state)
        return head.to(device).eval()

    def rates(self, which: str, device: torch.device | str = "cpu") -> list[Params]:
        steps = {"init": self.lr_init, "on": self.lr_on}[which]
        return [{n: r.float().to(device) for n, r in step.items()} for step in steps]

    def check_compatible(self, backbone: str, feature_dim: int) -> None:
        if backbone != self.backbone or feature_dim != self.feature_dim:
            raise MetaCheckpointError(
                f"meta checkpoint was trained on backbone {self.backbone!r} "
                f"({self.feature_dim} RoI features), the tracker runs {backbone!r} "
                f"({feature_dim}); train one for this backbone with train/meta.py"
            )

    # --------------------------------------------------------------------------------------
    def to_file(self, path: Path, rate_dtype: torch.dtype = torch.float16) -> str:
        """Write atomically; rates in ``rate_dtype`` (float16 halves the file). Returns sha256."""
        payload = {
            "format": CHECKPOINT_FORMAT,
            "head": {n: t.detach().cpu().float().contiguous() for n, t in self.head_state.items()},
            "lr_init": [_rates_to(step, rate_dtype) for step in self.lr_init],
            "lr_on": [_rates_to(step, rate_dtype) for step in self.lr_on],
            "backbone": self.backbone,
            "feature_dim": self.feature_dim,
            "fc_width": self.fc_width,
            "info": json.dumps(self.info, sort_keys=True, default=str),
        }
        self.sha256 = save_payload(path, payload)
        return self.sha256

    @classmethod
    def from_file(cls, path: Path | str) -> MetaCheckpoint:
        payload, sha256 = load_payload(
            path,
            CHECKPOINT_FORMAT,
            MetaCheckpointError,
            "meta checkpoint",
            "MetaRTT checkpoint",
            "train/meta.py writes the runtime checkpoint as <out>/metartt.pt",
        )
        return cls(
            head_state=payload["head"],
            lr_init=[dict(step) for step in payload["lr_init"]],
            lr_on=[dict(step) for step in payload["lr_on"]],
            backbone=payload["backbone"],
            feature_dim=int(payload["feature_dim"]),
            fc_width=int(payload["fc_width"]),
            info=json.loads(payload["info"]),
            sha256=sha256,
        )


def _rates_to(step: Mapping[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    return {n: r.detach().cpu().to(dtype).contiguous() for n, r in step.items()}
