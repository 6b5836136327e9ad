"""MetaRTT on the NanoTrack v3 base: a target-specific layer adapted by a few gradient steps.

``metartt-nano`` (meta-learned ``theta_init^0`` and per-step rates, ``train/metartt_nano.py``)
and ``metartt-nano[rule=plain]`` (the same layer fine-tuned from zero with one plain rate, the
baseline the paper compares with) are :class:`AdaptiveNanoTracker` with two rules. The base
network and its tracking procedure are :class:`runtime.nanotrack.tracker.NanoTracker`'s,
unchanged; only the per-cell score differs: ``sigmoid(margin + w . f + b)`` with the target layer of
:mod:`runtime.nanotrack.target_layer` (``w = b = 0`` gives the base's probability exactly).

- first frame: ``K_init`` steps on the search crop around the given box (labels from the box);
- every ``online_interval`` frames: ``K_on`` steps on the first frame's sample and the last
  ``memory_frames`` confident frames (score >= ``memory_confidence``, target not lost), labelled
  at the tracker's own box (as RT-MDNet's online updates are).

The search branch gives the classification features too: ONNX Runtime runs the graph cache's
``search_features.onnx`` (the default on a CPU), torch ``FeatureSearchBranch`` (on a GPU). With
``prune`` the head's classification tower is sliced once per video on either.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from runtime.backends import create_backend
from runtime.backends.manifest import checkpoint_record
from runtime.backends.siamese import OnnxRuntimeSiameseBackend, TorchSiameseBackend
from runtime.nanotrack import model
from runtime.nanotrack.config import NanoTrackConfig
from runtime.nanotrack.deploy import siamese_spec
from runtime.nanotrack.pruning import (
    SHIPPED_NANO_PRUNE,
    NanoPruneCheckpoint,
    head_outputs,
    predict_masks,
    prune_rate,
    relative_macs,
    slice_feature_graph,
    slice_head,
    sliced_convs,
)
from runtime.nanotrack.target_layer import (
    FEATURES,
    AdaptRule,
    CropSample,
    adapt,
    cell_labels,
    load_rule,
)
from runtime.nanotrack.tracker import NanoTracker, search_crop, search_scale
from runtime.paths import data_root
from runtime.prune_net import Masks, PruneNet
from runtime.response_maps import response_entropy
from runtime.tracker_api import check_init

SHIPPED_RULE = Path(__file__).resolve().parent.parent / "checkpoints" / "metartt_nano.pt"
PLAIN = "plain"  # the rule of the preset metartt-nano[rule=plain]


@dataclass
class TargetLayerConfig(NanoTrackConfig):
    """What every tracker with a target layer on the base shares: its memory of confident
    frames and the torch search branch."""

    online_interval: int = 10  # RT-MDNet's long-term update interval (frames)
    memory_frames: int = 10  # confident frames kept for the online steps, besides the first
    memory_confidence: float = 0.9  # the base's lost threshold: only frames it trusts
    # The target layer adapts on v3's classification features alone (its training saw no v2),
    # and its sigmoid score is not the base's probability: no base calibration.
    fusion_weight: float = 0.0
    calibrate: bool = False
    # The full 255 crop every frame: the memory samples and the layer's training saw no other
    # (the compact search was measured on the base tracker only).
    compact_instance_size: int = 0
    # auto: ONNX Runtime's features graph from the graph cache on a CPU (1.9x torch's speed on
    # metartt-nano, docs/nanotrack.md), torch on a GPU; TensorRT has no features engine.
    backend: str = "auto"
    # One-shot pruning of the head's classification tower at the first frame
    # (runtime.nanotrack.pruning): "" none, "shipped" (runtime/checkpoints/metartt_nano_prune.pt)
    # or a train/metartt_nano_prune.py checkpoint.
    prune: str = ""


@dataclass
class AdaptiveNanoTrackConfig(TargetLayerConfig):
    # A target-layer checkpoint (train/metartt_nano.py), "shipped" (runtime/checkpoints/), or
    # "plain": fine-tuning from zero, `plain_rate` for every step (metartt-nano[rule=plain]).
    rule: str = "shipped"
    plain_rate: float = 1.0  # chosen on train + train_extra (docs/nanotrack.md, "Seeds")
    init_steps: int = 5  # K_init (MetaRTT); a meta rule brings its own count
    online_steps: int = 5  # K_on (MetaRTT); 0: no online updates


@dataclass(frozen=True)
class MemoryEntry:
    """A confident frame's crop as a training sample, and its response map's entropy."""

    sample: CropSample
    entropy: float


class TargetLayerTracker(NanoTracker):
    """The base tracker scoring cells with ``sigmoid(margin + w . f + b)``; how ``w, b`` are set
    at the first frame and online is the subclass's (:meth:`_first_layer`, :meth:`_online_layer`).
    """

    name = "target-layer"

    def __init__(self, config: TargetLayerConfig, data_dir: Path | None = None) -> None:
        self.weights_dir = data_root(data_dir) / "weights"
        self.pruner = self._load_pruner(config.prune, self.weights_dir)
        # Pruning reads the first frame's activations through the unpruned torch network.
        self.net = None if self.pruner is None else model.build_network(self.weights_dir)
        backend = create_backend(siamese_spec(config, data_dir, features=True), verbose=False)
        super().__init__(config, data_dir, backend)
        self.full_backend = backend
        self.masks: Masks = {}
        self.w = torch.zeros(FEATURES)
        self.b = torch.zeros(())
        self._last: tuple[torch.Tensor, torch.Tensor, float] | None = None
        self.updates = 0

    @staticmethod
    def _load_pruner(prune: str, weights_dir: Path) -> PruneNet | None:
        if not prune:
            return None
        path = SHIPPED_NANO_PRUNE if prune == "shipped" else Path(prune).expanduser()
        base_sha = checkpoint_record("nanotrack", weights_dir)["sha256"]
        return NanoPruneCheckpoint.from_file(path, base_sha).build()

    def _prune_for(self, crop: torch.Tensor) -> None:
        """Masks for this video from its first search crop; the search branch becomes the sliced
        head's (the template side is not pruned, so the kernels stay): a copy of the torch
        modules, or the features graph with the sliced convs in a new ONNX Runtime session."""
        self.backend = self.full_backend
        if self.pruner is None:
            return
        net = self.net
        assert net is not None  # built with the pruner
        with torch.inference_mode():
            kernels = model.TemplateKernels(*(k.cpu() for k in self.kernels))
            outputs = head_outputs(net.head, kernels, net.backbone(crop.cpu()), {})
        self.masks = predict_masks(self.pruner, outputs.activations)
        full = self.full_backend
        if isinstance(full, OnnxRuntimeSiameseBackend):
            convs = sliced_convs(net.head, self.masks)
            self.backend = full.with_search_graph(slice_feature_graph(full.search_bytes, convs))
        else:
            sliced = slice_head(net.head, self.masks)
            pruned = model.NanoTrackNet(net.backbone, sliced).to(self.device)
            self.backend = TorchSiameseBackend(
                model.TemplateBranch(pruned),
                model.FeatureSearchBranch(pruned),
                half=getattr(full, "half", False),
            )

    # -- the adapted score -----------------------------------------------------------------------
    def _search(self, crop: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        margins, boxes, feats = self.backend.search(crop, self.kernels)
        # Out of inference mode (the backend's): the online steps differentiate through these.
        margin, feat = margins[0].cpu().clone(), feats[0].cpu().clone()
        with torch.no_grad():
            score = torch.sigmoid(margin + self.w @ feat + self.b)
        self._last = (feat, margin, response_entropy(score))
        delta = boxes.cpu().numpy().reshape(4, -1).astype(np.float64)
        return score.numpy().astype(np.float64), delta

    def _sample(self, instance_size: int, center: np.ndarray, size: np.ndarray) -> MemoryEntry:
        """The last searched crop as a training sample: its target at ``center`` (crop px from
        the crop centre) with ``size`` (crop px)."""
        assert self._last is not None
        feat, margin, entropy = self._last
        points, _ = self._map(instance_size)
        return MemoryEntry(CropSample(feat, margin, cell_labels(points, center, size)), entropy)

    # -- what subclasses decide --------------------------------------------------------------------
    def _first_layer(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``w, b`` after the first frame (``self.first`` is its sample)."""
        raise NotImplementedError

    def _online_layer(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``w, b`` after this frame's online step, or None when none is due."""
        raise NotImplementedError

    # -- tracking ------------------------------------------------------------------------------
    def init(self, frame: np.ndarray, box: np.ndarray) -> None:
        frame, box = check_init(frame, box)  # the frame as BGR for the crop below too
        super().init(frame, box)
        c, st = self.config, self.state
        assert st is not None
        self.w, self.b = torch.zeros(FEATURES), torch.zeros(())
        crop = self._tensor(search_crop(frame, st.center, st.size, st.instance_size, c, self.fill))
        self._prune_for(crop)
        self._search(crop)
        scale = search_scale(st.size, c)
        self.first = self._sample(st.instance_size, np.zeros(2), st.size * scale)
        self.memory: list[MemoryEntry] = []
        self.frames_since_update = 0
        self.updates = 0
        self.w, self.b = self._first_layer()

    def update(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        c, st = self.config, self.state
        before = None if st is None else (st.center.copy(), search_scale(st.size, c))
        instance_size = None if st is None else st.instance_size
        box, score = super().update(frame)
        assert self.state is not None and before is not None and instance_size is not None
        if not self.state.lost and score >= c.memory_confidence:
            center, scale = before
            entry = self._sample(
                instance_size, (self.state.center - center) * scale, self.state.size * scale
            )
            self.memory = [*self.memory, entry][-c.memory_frames :]
        self.frames_since_update += 1
        with self.stage_clock.stage("online_update"):
            layer = self._online_layer()
        if layer is not None:
            self.w, self.b = layer
            self.frames_since_update = 0
            self.updates += 1
        return box, score

    def run_stats(self) -> dict[str, float]:
        stats = {**super().run_stats(), "layer_updates": float(self.updates)}
        if self.masks:
            stats |= {"prune_rate": prune_rate(self.masks), "tower_macs": relative_macs(self.masks)}
        return stats


class AdaptiveNanoTracker(TargetLayerTracker):
    """MetaRTT on the base: ``w, b`` adapted by gradient steps with an :class:`AdaptRule`."""

    name = "metartt-nano"

    def __init__(
        self, config: AdaptiveNanoTrackConfig | None = None, data_dir: Path | None = None
    ) -> None:
        super().__init__(config or AdaptiveNanoTrackConfig(), data_dir)
        self.rule, self.rule_sha256 = self._load_rule(self.config, self.weights_dir)

    @staticmethod
    def _load_rule(c: AdaptiveNanoTrackConfig, weights_dir: Path) -> tuple[AdaptRule, str | None]:
        if c.rule == PLAIN:
            return AdaptRule.plain(c.init_steps, c.online_steps, c.plain_rate), None
        path = SHIPPED_RULE if c.rule == "shipped" else Path(c.rule).expanduser()
        base_sha = checkpoint_record("nanotrack", weights_dir)["sha256"]
        rule, _info, sha = load_rule(path, base_sha)
        return rule, sha

    def _first_layer(self) -> tuple[torch.Tensor, torch.Tensor]:
        rule = self.rule
        return adapt(rule.w0, rule.b0, [self.first.sample], rule.init_rates_w, rule.init_rates_b)

    def _online_layer(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        rule = self.rule
        if rule.online_steps == 0 or self.frames_since_update < self.config.online_interval:
            return None
        samples = [self.first.sample, *(e.sample for e in self.memory)]
        return adapt(self.w, self.b, samples, rule.online_rates_w, rule.online_rates_b)

    def __repr__(self) -> str:
        return f"AdaptiveNanoTracker({self.backend!r}, rule {self.config.rule})"
