"""MetaRTT's one-shot channel pruning (Jung et al., AAAI 2020, Sec. 4, Eq. 9-12), tracking side.

Pruned layers: the backbone's last conv layer (its output channels, the RoI features' channels)
and the FC layers fc4 and fc5 (their units); fc6 is the 2-way output. Each has a channel mask
``beta^l >= 0``. The masked network multiplies channel ``c`` of layer ``l``'s output by
``beta^l_c``; a channel whose mask is zero contributes nothing, so it can be cut out:

- conv channel ``c``: its filter is removed from the backbone's last conv, its RoI features (the
  ``roi * roi`` cells of that channel) from fc4's inputs;
- fc4 / fc5 unit ``j``: row ``j`` of that layer and column ``j`` of the next one.

The kept mask values are folded into the next layer's columns (``relu(z) * b = relu(z * b)``
does not even need ``b >= 0`` there: the mask multiplies after the ReLU), so the sliced network
computes exactly the masked network's scores (:func:`slice_head`). The learned per-parameter rates
are sliced too, and the folded columns' rates multiplied by ``beta^2``, so a learned step on the
sliced weights equals the same step on the masked network's weights (:func:`slice_rates`).

Where masks come from:

- the pruning network of Eq. 12 (:class:`PruneNet`, trained by ``train/prune.py``): per layer a
  2-layer perceptron (LeakyReLU, dropout) maps the global-average-pooled activations of the
  ``D_init`` samples, averaged over the samples, under ``theta_init^K``, to the layer's mask;
  run once, at the first frame;
- a static mask (``PruneNet(static=True)``): one learned vector per layer for all videos;
- :func:`fit_masks`: the LASSO of Eq. 9-10 minimized on the first frame's samples alone (the
  "no meta-learning" variant).

The objective of Eq. 9-10 (:func:`lasso_objective`): the masked network must reconstruct every
pruned layer's *next* layer output of the unpruned network (relative squared error), plus an L1
penalty on the masks. Eq. 11 takes it over the parameters of a whole simulated episode.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from runtime.checkpoint_io import load_payload, save_payload
from runtime.prune_net import Masks, PruneNet, PruneNetConfig
from runtime.rtmdnet.head import FCHead

Params = dict[str, torch.Tensor]

LAYERS = ("conv", "fc4", "fc5")  # what is pruned, in network order
CHECKPOINT_FORMAT = "metartt-prune/1"
SHIPPED_PRUNE = Path(__file__).resolve().parent.parent / "checkpoints" / "metartt_prune.pt"
SHIPPED_STATIC = Path(__file__).resolve().parent.parent / "checkpoints" / "metartt_prune_static.pt"
FIT = "fit"  # the prune setting for masks fitted on the first frame alone
SHIPPED = "shipped"  # --prune without a value: the shipped pruning network
STATIC = "static"  # one mask for every video, the ablation shipped beside the pruning network
# How many D_init samples (a random subset) the descriptor averages: the mean is stable well
# before that, and the head's forward over all 5,500 would cost ~0.1 s at the first frame.
DESCRIPTOR_SAMPLES = 1024

W4, B4, W5, B5, W6, B6 = (
    "fc4.0.weight",
    "fc4.0.bias",
    "fc5.1.weight",
    "fc5.1.bias",
    "fc6.1.weight",
    "fc6.1.bias",
)


def layer_widths(head: FCHead, roi_cells: int) -> dict[str, int]:
    """Channels per pruned layer: ``{"conv": C, "fc4": units, "fc5": units}``."""
    return {
        "conv": head.fc4[0].in_features // roi_cells,
        "fc4": head.fc4[0].out_features,
        "fc5": head.fc5[1].out_features,
    }


# ------------------------------------------------------------------------------------------
# The masked network, functionally
# ------------------------------------------------------------------------------------------
def layer_outputs(
    params: Mapping[str, torch.Tensor],
    x: torch.Tensor,
    masks: Mapping[str, torch.Tensor] | None = None,
    roi_cells: int = 9,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """fc4 and fc5 activations (before their own masks) and the logits of the masked head.

    ``x``: RoI features already multiplied by the head's ``input_scale``. ``masks=None``: the
    unpruned network.
    """
    if masks is not None:
        x = x * masks["conv"].repeat_interleave(roi_cells)
    a4 = F.relu(F.linear(x, params[W4], params[B4]))
    h4 = a4 * masks["fc4"] if masks is not None else a4
    a5 = F.relu(F.linear(h4, params[W5], params[B5]))
    h5 = a5 * masks["fc5"] if masks is not None else a5
    return a4, a5, F.linear(h5, params[W6], params[B6])


class MaskedHead(FCHead):
    """An :class:`FCHead` whose conv/fc4/fc5 channels are multiplied by fixed masks.

    The reference the sliced head is checked against; its parameter names are FCHead's, so
    :func:`runtime.rtmdnet.meta.adapt` adapts it exactly as it adapts the unpruned head.
    """

    def __init__(self, head: FCHead, masks: Mapping[str, torch.Tensor], roi_cells: int) -> None:
        fc4, fc5 = head.fc4[0], head.fc5[1]
        super().__init__(fc4.in_features, fc4.out_features, fc5_width=fc5.out_features)
        self.load_state_dict(head.state_dict())
        self.roi_cells = roi_cells
        for layer in LAYERS:
            self.register_buffer(f"mask_{layer}", masks[layer].detach().clone())
        self.eval()

    @property
    def masks(self) -> Masks:
        return {layer: getattr(self, f"mask_{layer}") for layer in LAYERS}

    def forward(self, roi_features: torch.Tensor) -> torch.Tensor:
        # Attribute access, not named_parameters(): functional_call swaps these attributes.
        fc4, fc5, fc6 = self.fc4[0], self.fc5[1], self.fc6[1]
        params = {
            W4: fc4.weight,
            B4: fc4.bias,
            W5: fc5.weight,
            B5: fc5.bias,
            W6: fc6.weight,
            B6: fc6.bias,
        }
        return layer_outputs(params, roi_features * self.input_scale, self.masks, self.roi_cells)[2]


def descriptors(
    params: Mapping[str, torch.Tensor],
    x: torch.Tensor,
    roi_cells: int,
    rng: np.random.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Eq. 12's input per layer: the layer's global-average-pooled output, mean over samples.

    ``x``: scaled ``D_init`` features (at most :data:`DESCRIPTOR_SAMPLES` of them, drawn with
    ``rng``, enter the mean). Each vector is divided by its RMS, so the pruning network sees the
    pattern across channels, not the video's feature magnitude.
    """
    if rng is not None and len(x) > DESCRIPTOR_SAMPLES:
        x = x[torch.from_numpy(rng.choice(len(x), DESCRIPTOR_SAMPLES, replace=False))]
    with torch.no_grad():
        a4, a5, _ = layer_outputs(params, x, None, roi_cells)
        conv = x.unflatten(1, (-1, roi_cells)).mean(dim=2)  # GAP over each RoI's cells
        out = {"conv": conv.mean(0), "fc4": a4.mean(0), "fc5": a5.mean(0)}
    return {k: v / v.pow(2).mean().sqrt().clamp_min(1e-6) for k, v in out.items()}


# Multiply-accumulates one channel of each pruned layer costs per tracked frame, for the
# FLOP-weighted sparsity term (issue 17). R = RoIs through the head per frame: 256 candidates plus
# the online update amortized (5 steps x (1,024 ranked + 128 trained x 3 for forward and backward)
# every ~10 frames, ~700); the output conv's channel also costs its 1x1 filter (288 inputs) over a
# ~29x29 feature map (the ~4.4-side search window at 107 px a side, stride 16, docs/speed.md).
ROIS_PER_FRAME = 950
CONV_FILTER_MACS = 288 * 29 * 29


def channel_macs(widths: Mapping[str, int], roi_cells: int) -> dict[str, float]:
    """Per-channel MACs per frame of each pruned layer (see :data:`ROIS_PER_FRAME`).

    A conv channel feeds ``roi_cells`` fc4 columns; an fc4 unit is a row of fc4 and a column of
    fc5; an fc5 unit a row of fc5 and a column of fc6.
    """
    return {
        "conv": CONV_FILTER_MACS + roi_cells * widths["fc4"] * ROIS_PER_FRAME,
        "fc4": (widths["conv"] * roi_cells + widths["fc5"]) * ROIS_PER_FRAME,
        "fc5": (widths["fc4"] + 2) * ROIS_PER_FRAME,
    }


def mask_penalty(
    masks: Mapping[str, torch.Tensor], macs: Mapping[str, float] | None = None
) -> torch.Tensor:
    """The L1 term: the mean mask value per layer averaged over layers (the paper's), or, given
    ``macs`` (:func:`channel_macs`), weighted by what each channel costs, i.e. for 0/1 masks the
    share of the pruned layers' MACs that is kept."""
    if macs is None:
        return torch.stack([masks[layer].abs().mean() for layer in LAYERS]).mean()
    kept = sum(macs[layer] * masks[layer].abs().sum() for layer in LAYERS)
    return kept / sum(macs[layer] * len(masks[layer]) for layer in LAYERS)


def lasso_objective(
    params_list: Sequence[Mapping[str, torch.Tensor]],
    x: torch.Tensor,
    masks: Mapping[str, torch.Tensor],
    sparsity: float,
    roi_cells: int,
    macs: Mapping[str, float] | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. 9-11: reconstruction error of the masked network plus ``sparsity`` times L1(masks).

    For every parameter set in ``params_list`` (Eq. 11: theta_init^K, each theta_on^k), the
    masked network's fc4 and fc5 activations and logits must match the unpruned network's on
    ``x`` (relative squared error per layer, so layers of different magnitude weigh alike). The
    L1 term is :func:`mask_penalty` (FLOP-weighted when ``macs`` is given).
    """
    recon = x.new_zeros(())
    for params in params_list:
        with torch.no_grad():
            reference = layer_outputs(params, x, None, roi_cells)
        pruned = layer_outputs(params, x, masks, roi_cells)
        for got, want in zip(pruned, reference, strict=True):
            recon = recon + (got - want).pow(2).sum() / want.pow(2).sum().clamp_min(1e-12)
    recon = recon / (len(params_list) * 3)
    l1 = mask_penalty(masks, macs)
    loss = recon + sparsity * l1
    return loss, {"recon": float(recon.detach()), "l1": float(l1.detach())}


def fit_masks(
    params: Mapping[str, torch.Tensor],
    x: torch.Tensor,
    widths: Mapping[str, int],
    sparsity: float,
    steps: int,
    lr: float,
    roi_cells: int,
) -> Masks:
    """Masks by minimizing Eq. 9-10 on ``x`` alone (the variant without meta-learning).

    Adam on free mask logits (start 1, masks = relu(logits)): a mask pushed below zero by the
    L1 term is exactly zero and stays there, as in a LASSO solution.
    """
    logits = {layer: torch.ones(widths[layer], requires_grad=True) for layer in LAYERS}
    optimizer = torch.optim.Adam(logits.values(), lr=lr)
    frozen = {n: p.detach() for n, p in params.items()}
    with torch.enable_grad():
        for _ in range(steps):
            masks = {layer: F.relu(z) for layer, z in logits.items()}
            loss, _ = lasso_objective([frozen], x, masks, sparsity, roi_cells)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return {layer: F.relu(z.detach()) for layer, z in logits.items()}


class PruneCheckpointError(ValueError):
    """A pruning checkpoint is missing, malformed, or made for another meta checkpoint."""


@dataclass
class PruneCheckpoint:
    """What the tracker needs to predict masks: the pruning network and what it was made for."""

    state: dict[str, torch.Tensor]
    widths: dict[str, int]
    config: PruneNetConfig
    meta_sha256: str  # the meta checkpoint whose theta_init^K it was trained on
    info: dict = field(default_factory=dict)
    sha256: str = ""

    def build(self, device: torch.device | str = "cpu") -> PruneNet:
        net = PruneNet(self.widths, self.config)
        net.load_state_dict(self.state)
        return net.to(device).eval()

    def check_compatible(self, meta_sha256: str | None) -> None:
        if meta_sha256 != self.meta_sha256:
            made_for = self.meta_sha256[:12]
            have = meta_sha256[:12] if meta_sha256 else "no meta checkpoint"
            raise PruneCheckpointError(
                f"pruning checkpoint was trained for meta checkpoint {made_for}..., the tracker "
                f"uses {have}; train one for it with python train/prune.py --meta CKPT"
            )

    def to_file(self, path: Path) -> str:
        payload = {
            "format": CHECKPOINT_FORMAT,
            "state": {n: t.detach().cpu().float().contiguous() for n, t in self.state.items()},
            "widths": json.dumps(self.widths),
            "config": json.dumps(self.config.__dict__),
            "meta_sha256": self.meta_sha256,
            "info": json.dumps(self.info, sort_keys=True, default=str),
        }
        self.sha256 = save_payload(path, payload)
        return self.sha256

    @classmethod
    def from_file(cls, path: Path | str) -> PruneCheckpoint:
        payload, sha256 = load_payload(
            path,
            CHECKPOINT_FORMAT,
            PruneCheckpointError,
            "pruning checkpoint",
            "MetaRTT pruning checkpoint",
            "train/prune.py writes it as <out>/prune.pt",
        )
        return cls(
            state=payload["state"],
            widths=json.loads(payload["widths"]),
            config=PruneNetConfig(**json.loads(payload["config"])),
            meta_sha256=payload["meta_sha256"],
            info=json.loads(payload["info"]),
            sha256=sha256,
        )


def prune_setting(value: str) -> str:
    """A ``--prune`` value -> the tracker's ``prune`` setting (a checkpoint path or "fit").

    ``"shipped"``: the pruning network shipped for the shipped meta checkpoint; ``"static"``: the
    one static mask shipped beside it (the ablation).
    """
    if value == SHIPPED:
        return str(SHIPPED_PRUNE)
    if value == STATIC:
        return str(SHIPPED_STATIC)
    if value == FIT:
        return value
    if not Path(value).is_file():
        raise PruneCheckpointError(
            f"--prune: no pruning checkpoint at {value} (or give shipped, static or fit)"
        )
    return value


# ------------------------------------------------------------------------------------------
# From masks to a smaller network
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChannelSelection:
    """One video's pruning: the masks and, per layer, the indices of the channels kept."""

    masks: Masks
    keep: dict[str, torch.Tensor]

    @classmethod
    def from_masks(
        cls, masks: Mapping[str, torch.Tensor], widths: Mapping[str, int] | None = None
    ) -> ChannelSelection:
        """Keep the channels whose mask is above zero, or exactly ``widths[layer]`` of them.

        A fixed width (a TensorRT engine built once at that width, refitted per video) keeps the
        top-k channels by mask: zero-mask channels fill up a short selection exactly (their
        columns are folded to zero), a long one loses its weakest channels (approximate).
        """
        masks = {layer: masks[layer].detach().float() for layer in LAYERS}
        widths = dict(widths or {})
        keep = {}
        for layer, m in masks.items():
            if layer in widths:
                k = max(1, min(int(widths[layer]), len(m)))
                kept = torch.sort(torch.argsort(m, descending=True, stable=True)[:k]).values
            else:
                kept = torch.nonzero(m > 0).flatten()
            if len(kept) == 0:  # keep one (zero-masked) channel: shapes stay valid, and it
                kept = m.argmax().reshape(1)  # passes nothing, as in the masked network
            keep[layer] = kept
        return cls(masks, keep)

    def kept(self) -> dict[str, int]:
        return {layer: len(k) for layer, k in self.keep.items()}

    @property
    def prune_rate(self) -> float:
        """Share of the pruned layers' channels removed (all layers together)."""
        total = sum(len(m) for m in self.masks.values())
        return 1.0 - sum(self.kept().values()) / total

    def feature_columns(self, roi_cells: int) -> torch.Tensor:
        """Columns of the unpruned RoI features that the kept conv channels produce."""
        return (self.keep["conv"][:, None] * roi_cells + torch.arange(roi_cells)).flatten()

    def _folded(self, roi_cells: int) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per weight: (rows kept, columns kept, scale of each kept column)."""
        cols = self.feature_columns(roi_cells)
        m, k = self.masks, self.keep
        return {
            W4: (k["fc4"], cols, m["conv"].repeat_interleave(roi_cells)[cols]),
            W5: (k["fc5"], k["fc4"], m["fc4"][k["fc4"]]),
            W6: (torch.arange(2), k["fc5"], m["fc5"][k["fc5"]]),
        }

    def slice_params(self, params: Mapping[str, torch.Tensor], roi_cells: int) -> Params:
        """The sliced head's weights, each kept column times its mask (scores stay the same)."""
        out = {}
        for weight, (rows, cols, scale) in self._folded(roi_cells).items():
            w = params[weight]
            out[weight] = w[rows.to(w.device)][:, cols.to(w.device)] * scale.to(w)
            bias = weight.replace("weight", "bias")
            out[bias] = params[bias][rows.to(w.device)]
        return {name: out[name] for name in params}  # FCHead's order

    def slice_rates(
        self, rates: Sequence[Mapping[str, torch.Tensor]], roi_cells: int
    ) -> list[Params]:
        """Learned rates for the sliced weights: the same steps as on the masked network.

        A folded column ``w' = w * b`` receives ``b`` times the masked gradient and must move
        ``b`` times as far, hence its rate times ``b ** 2``. Scalar rates are kept as they are
        (their per-column scale cannot be expressed; the ``scalar-lr`` ablation only).
        """
        folded = self._folded(roi_cells)
        out = []
        for step in rates:
            sliced = {}
            for name, rate in step.items():
                if rate.dim() == 0:
                    sliced[name] = rate
                    continue
                weight = name.replace("bias", "weight")
                rows, cols, scale = (t.to(rate.device) for t in folded[weight])
                if rate.dim() == 1:
                    sliced[name] = rate[rows]
                else:
                    sliced[name] = rate[rows][:, cols] * scale.to(rate).pow(2)
            out.append(sliced)
        return out

    def slice_head(
        self, head: FCHead, params: Mapping[str, torch.Tensor], roi_cells: int
    ) -> FCHead:
        """A smaller :class:`FCHead` (eval mode) holding :meth:`slice_params`' weights."""
        kept = self.kept()
        small = FCHead(kept["conv"] * roi_cells, kept["fc4"], fc5_width=kept["fc5"])
        device = head.input_scale.device
        small = small.to(device)
        with torch.no_grad():
            small.input_scale.copy_(head.input_scale)
            for name, value in self.slice_params(params, roi_cells).items():
                small.get_parameter(name).copy_(value)
        return small.eval()
