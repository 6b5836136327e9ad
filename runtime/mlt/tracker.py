"""The MLT tracker (Choi et al., ICCV 2019, Sec. 3.3): SiamFC-style search with a target-aware
feature space generated every T frames by the meta-learner.

Per frame: three search crops (scales 1/1.035, 1, 1.035) -> fixed trunk (through
:mod:`runtime.backends`: torch, ONNX Runtime or TensorRT) -> neck -> conv5 [+ 32 generated
kernels] -> channel attention -> L2 norm -> cross-correlation with the exemplar -> response;
scale penalty 0.97 on the changed scales, bicubic upsampling, cosine window (0.25), size update
damped by 0.59. A frame whose peak probability exceeds 0.5 joins the memory of context images
(its conv4 map and the estimated target position: the generated label). Every T = 30 frames the
M = 8 memory images with the lowest response entropy give the gradient of the loss with respect
to conv5; the meta-learner maps it to new kernels and attention, and the exemplar is re-embedded.

Variants: ``use_meta=False`` is MLT-mt (the matching network alone); with ``finetune=True`` it
is MLT-mt+ft (conv5 fine-tuned on the memory every 50 frames, 30 Adam steps at 1e-3).

Score: ``update`` returns the calibrated confidence P(IoU > 0) (:mod:`runtime.confidence`, fitted
on the train split); the peak probability it is computed from is ``raw_score``, and ``lost`` says
whether the target is reported lost (a streak of low confidence).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from runtime.backends import create_backend
from runtime.backends.base import FeatureBackend
from runtime.backends.spec import FeatureBackendSpec
from runtime.confidence import CalibratedScore, ScoreCalibrator
from runtime.crop import exemplar_side, square_crop
from runtime.mlt.checkpoint import SHIPPED_CHECKPOINT, MLTCheckpoint, MLTCheckpointError
from runtime.mlt.config import MLTConfig
from runtime.mlt.meta_learner import conv5_gradient
from runtime.mlt.model import (
    balanced_logistic_loss,
    label_map,
    response_side,
    to_tensor,
    upsample_response,
)
from runtime.paths import data_root
from runtime.response_maps import response_entropy
from runtime.stage_clock import StageClock
from runtime.tracker_api import check_init, check_update


@dataclass
class ContextImage:
    x4: torch.Tensor  # (256, H, W) conv4 map of the search crop
    offset_px: np.ndarray  # estimated target centre, crop pixels from the crop's centre
    entropy: float  # of the response (lower: more confident)
    frame: int


class _ModuleTrunk:
    """The paper trunk is trained (it lives in the matching network): the crop goes through."""

    name = "torch"
    chosen_because = "the paper trunk runs in torch (no export)"
    channel_budget = None
    takes_batches = True

    @torch.no_grad()
    def feature_map(self, crop: torch.Tensor) -> torch.Tensor:
        return crop

    def __repr__(self) -> str:
        return "PaperTrunk(torch)"


class MLTTracker(CalibratedScore):  # raw_score, lost: from self.scorer
    name = "mlt"

    def __init__(
        self,
        config: MLTConfig | None = None,
        data_dir: Path | None = None,
        checkpoint: MLTCheckpoint | None = None,
        backend: FeatureBackend | None = None,
    ) -> None:
        self.config = c = config or MLTConfig()
        self.data_dir = data_dir
        self.device = torch.device(c.device)
        weights = data_root(data_dir) / "weights"
        if checkpoint is None:
            checkpoint = MLTCheckpoint.from_file(c.checkpoint or SHIPPED_CHECKPOINT)
        checkpoint.check_trunk(c.backbone, weights)
        self.checkpoint = checkpoint
        self.net = checkpoint.matching_net().to(self.device).eval()
        self.net.requires_grad_(False)
        self.learner = checkpoint.learner() if c.use_meta else None
        if c.use_meta and self.learner is None:
            raise MLTCheckpointError(
                "the MLT checkpoint has no meta-learner (stage 1 only): train stage meta, or "
                "run the matching network alone: --tracker 'mlt[use_meta=False]'"
            )
        if self.learner is not None:
            self.learner = self.learner.to(self.device).eval()
        self.name = "mlt"  # its variants are presets of this name (runtime/presets.py)
        if backend is None:
            # The NanoTrack trunk through runtime.backends (torch, ONNX Runtime or TensorRT);
            # the paper trunk lives in the matching network.
            if c.backbone == "nanotrack":
                backend = create_backend(self.backend_spec(), verbose=False)
            else:
                backend = _ModuleTrunk()
        self.backend = backend
        self.stride = self.net.stride
        self.response_size = response_side(c.backbone, c.exemplar_size, c.search_size)
        up = (self.response_size - 1) * c.response_up + 1
        hann = np.hanning(up)
        self.window = np.outer(hann, hann)
        self.window /= self.window.sum()
        n = c.num_scales
        self.scales = c.scale_step ** (np.arange(n) - (n - 1) / 2.0)
        self.kernel_updates = 0
        self.finetunes = 0
        self.started = False  # init() has run
        # The peak probability -> P(IoU > 0), fitted per variant (falls back to mlt's).
        self.scorer = ScoreCalibrator(self.name, feature_kind="logit")
        self.stage_clock = StageClock()

    def sibling(self) -> MLTTracker:
        """A tracker with no target yet on this one's network (checkpoint, trunk backend
        shared), for another target in the same video."""
        return MLTTracker(self.config, self.data_dir, self.checkpoint, self.backend)

    def backend_spec(self, data_dir: Path | None = None, **changes: object) -> FeatureBackendSpec:
        """What this tracker's trunk asks of a feature backend (:meth:`MLTConfig.backend_spec`),
        with its data folder unless ``data_dir`` is given."""
        return self.config.backend_spec(data_root(data_dir or self.data_dir), **changes)

    # -- features ------------------------------------------------------------------------------
    @torch.no_grad()
    def features4(self, crops: list[np.ndarray]) -> torch.Tensor:
        """uint8 crops -> conv4 maps ``(B, 256, h, w)``.

        The torch trunk takes the scales as one batch; exported graphs take one crop per call.
        """
        batch = to_tensor(crops, self.device)
        if self.backend.takes_batches:
            trunk = self.backend.feature_map(batch)
        else:
            parts = [self.backend.feature_map(batch[i : i + 1]) for i in range(len(batch))]
            trunk = torch.cat(parts)
        return self.net.features4(trunk)

    @torch.no_grad()
    def _embed(self, f4: torch.Tensor) -> torch.Tensor:
        return self.net.embed(f4, self.conv5_weight, self.kernels, self.attention)

    def _sizes(self) -> tuple[float, float]:
        z = exemplar_side(np.array([0, 0, *self.size]), self.config.context)
        return z, z * self.config.search_size / self.config.exemplar_size

    # -- tracking ------------------------------------------------------------------------------
    def init(self, frame: np.ndarray, box: np.ndarray) -> None:
        frame, box = check_init(frame, box)
        self.started = False  # until this init has finished
        c = self.config
        torch.manual_seed(c.seed)
        self.center = box[:2] + box[2:] / 2.0
        self.size = box[2:].copy()
        self.frame_wh = (frame.shape[1], frame.shape[0])
        self.fill = tuple(float(v) for v in frame.reshape(-1, 3).mean(axis=0))
        self.kernels: torch.Tensor | None = None
        self.attention: torch.Tensor | None = None
        self.conv5_weight: torch.Tensor | None = None
        self.memory: list[ContextImage] = []
        self.frame_index = 0
        self.kernel_updates = self.finetunes = 0
        z_side, x_side = self._sizes()
        crops = [
            square_crop(frame, self.center, z_side, c.exemplar_size, self.fill),
            square_crop(frame, self.center, x_side, c.search_size, self.fill),
        ]
        z4 = self.features4(crops[:1])
        x4 = self.features4(crops[1:])
        self.z4 = z4
        self.z = self._embed(z4)
        with torch.no_grad():
            prob = torch.sigmoid(self.net.response(self.z, self._embed(x4)))[0]
        # The first frame's context image, labelled at the given box.
        self.memory.append(ContextImage(x4[0], np.zeros(2), response_entropy(prob), 0))
        self.scorer.reset()
        self.started = True

    def update(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        frame = check_update(frame, self.started, self.name)
        c = self.config
        self.frame_index += 1
        clock = self.stage_clock
        _, x_side = self._sizes()
        with clock.stage("crop"):
            crops = [
                square_crop(frame, self.center, x_side * s, c.search_size, self.fill)
                for s in self.scales
            ]
        with clock.stage("backbone"):
            x4 = self.features4(crops)
        with clock.stage("candidate_scoring"), torch.no_grad():
            logits = self.net.response(self.z, self._embed(x4))
            prob = torch.sigmoid(logits)
            resp = logits.cpu().numpy().astype(np.float32)
            up = np.stack([upsample_response(r, c.response_up) for r in resp])
            penalty = np.full(len(self.scales), c.scale_penalty)
            penalty[(len(self.scales) - 1) // 2] = 1.0
            peaks = up.reshape(len(up), -1).max(1)
            if c.penalty_on_probability:
                peaks = 1.0 / (1.0 + np.exp(-peaks))
            best = int(np.argmax(peaks * penalty))
            r = up[best] - up[best].min()
            r /= max(float(r.sum()), 1e-12)
            r = (1 - c.window_influence) * r + c.window_influence * self.window
            loc = np.array(np.unravel_index(int(r.argmax()), r.shape))[::-1].astype(np.float64)
        with clock.stage("box_regression"):
            disp_up = loc - (r.shape[0] - 1) / 2.0
            disp_crop = disp_up * self.stride / c.response_up  # search-crop pixels
            side = x_side * self.scales[best]
            self.center = self.center + disp_crop * side / c.search_size
            self.center = np.clip(self.center, 0, np.array(self.frame_wh, dtype=np.float64))
            peak = float(prob[best].max())
            rate = c.scale_lr * (peak if c.scale_by_score else 1.0)
            factor = (1 - rate) + rate * self.scales[best]
            self.size = np.maximum(self.size * factor, c.min_side)
        with clock.stage("online_update"):
            if peak > c.memory_threshold:
                entry = ContextImage(
                    x4[best].clone(), disp_crop, response_entropy(prob[best]), self.frame_index
                )
                self.memory.append(entry)
                if len(self.memory) > c.memory_size:
                    self.memory.pop(1)  # the first frame's context stays
            if self.learner is not None and self.frame_index % c.update_interval == 0:
                self.generate_kernels()
            if c.finetune and self.frame_index % c.ft_interval == 0:
                self.finetune_conv5()
        box = np.concatenate([self.center - self.size / 2.0, self.size])
        return box, self.scorer(peak)

    def run_stats(self) -> dict[str, float]:
        """Per-video numbers for the CLI summary and bench.ope."""
        return {"lost_frames": float(self.scorer.state.lost_frames)}

    # -- target adaptation -----------------------------------------------------------------------
    def _confident(self, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        chosen = sorted(self.memory, key=lambda e: e.entropy)[:m]
        x4 = torch.stack([e.x4 for e in chosen])
        offsets = torch.tensor(np.stack([e.offset_px for e in chosen]), dtype=torch.float32)
        return x4, label_map(self.response_size, self.stride, offsets).to(self.device)

    def generate_kernels(self) -> None:
        """The meta-learner's forward pass on the gradient over the M min-entropy images."""
        assert self.learner is not None
        x4, labels = self._confident(self.config.m_context)
        grad = conv5_gradient(self.net, self.z4, x4, labels)
        with torch.no_grad():
            self.kernels, self.attention = self.learner(grad)
        self.z = self._embed(self.z4)
        self.kernel_updates += 1

    def finetune_conv5(self) -> None:
        """MLT-mt+ft: Adam on a copy of conv5's kernel, on the memory (16 min-entropy images)."""
        c = self.config
        x4, labels = self._confident(2 * c.m_context)
        start = self.net.conv5.weight if self.conv5_weight is None else self.conv5_weight
        weight = start.detach().clone().requires_grad_(True)
        optimizer = torch.optim.Adam([weight], lr=c.ft_lr)
        with torch.enable_grad():
            for _ in range(c.ft_steps):
                z = self.net.embed(self.z4, weight)
                loss = balanced_logistic_loss(
                    self.net.response(z, self.net.embed(x4, weight)), labels
                )
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        self.conv5_weight = weight.detach()
        self.z = self._embed(self.z4)
        self.finetunes += 1
