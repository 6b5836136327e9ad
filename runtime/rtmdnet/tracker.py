"""RT-MDNet-style tracker: backbone once per frame, RoIAlign per candidate, FC head adapted online.

Follows RT-MDNet's tracking procedure (first-frame training with hard negative mining, box
regression fitted on the first frame, long-term updates every 10 frames, short-term updates after a
failure, bounded sample memories). Where the procedure had to change for a pretrained backbone or
for CPU speed, the comment says so.

With a meta checkpoint (``RTMDNetConfig.meta``; MetaRTT, :mod:`runtime.rtmdnet.meta`) the same
procedure starts the head from the meta-learned ``theta_init^0`` and replaces the SGD iterations
by the checkpoint's learned steps (5 at the first frame, 5 per online update). With pruning
(``RTMDNetConfig.prune``, :mod:`runtime.rtmdnet.prune`) the masks are predicted once, right after
the first-frame adaptation, and the rest of the video runs a network with the pruned channels cut
out: the head, its learned rates, the stored sample features and the backend's last conv.
"""

from __future__ import annotations

import copy
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch

from runtime.backends import create_backend, torch_extractor
from runtime.backends.base import FeatureBackend
from runtime.backends.spec import FeatureBackendSpec
from runtime.boxes import validate_init_box
from runtime.confidence import CalibratedScore, ScoreCalibrator
from runtime.crop import CropWindow, cut
from runtime.paths import data_root
from runtime.roi_features import RoIFeatureExtractor, crop_to_tensor
from runtime.rtmdnet.bbreg import BoxRegressor
from runtime.rtmdnet.config import RTMDNetConfig
from runtime.rtmdnet.geometry import (  # the sample specs and windows live there
    BBREG_SPEC,
    NEG_INIT,
    POS_SPEC,
    candidate_spec,
    covering_half_extent,
    neg_update_spec,
    search_window,
    update_half_extent,
    update_reach,  # noqa: F401  (re-exported: train/meta.py imports it from here)
)
from runtime.rtmdnet.head import FCHead, fast_low_precision, train_head
from runtime.rtmdnet.meta import BatchSpec, MetaCheckpoint, Params, adapt, classification_loss
from runtime.rtmdnet.prune import (
    ChannelSelection,
    PruneCheckpoint,
    descriptors,
    fit_masks,
    layer_widths,
)
from runtime.sampling import draw, draw_filtered
from runtime.stage_clock import StageClock
from runtime.tracker_api import check_init, check_update


def init_examples(
    box: np.ndarray,
    frame_wh: tuple[int, int],
    config: RTMDNetConfig,
    rng: np.random.Generator,
    n_pos: int | None = None,
    n_neg: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """First-frame positives and negatives around a ground-truth box (counts: config's default).

    Shared with meta-training, so episodes are drawn exactly as the tracker draws them.
    """
    pos = draw_filtered(
        POS_SPEC, box, n_pos or config.n_pos_init, frame_wh, rng, config.overlap_pos_init
    )
    neg = draw_filtered(
        NEG_INIT, box, n_neg or config.n_neg_init, frame_wh, rng, config.overlap_neg_init
    )
    return pos, neg


def update_examples(
    box: np.ndarray,
    frame_wh: tuple[int, int],
    config: RTMDNetConfig,
    rng: np.random.Generator,
    n_pos: int | None = None,
    n_neg: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Online-update positives and negatives around an *estimated* target."""
    pos = draw_filtered(
        POS_SPEC, box, n_pos or config.n_pos_update, frame_wh, rng, config.overlap_pos_update
    )
    neg = draw_filtered(
        neg_update_spec(config),
        box,
        n_neg or config.n_neg_update,
        frame_wh,
        rng,
        config.overlap_neg_update,
    )
    return pos, neg


def _low_precision(setting: str, device: torch.device) -> torch.dtype | None:
    """A precision setting ("auto", "float32", "bfloat16", ...) as an autocast dtype (None: off)."""
    if setting == "auto":
        return fast_low_precision(device)
    if setting == "float32":
        return None
    dtype = getattr(torch, setting, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown precision {setting!r}; use auto, float32 or bfloat16")
    return dtype


class RTMDNetTracker(CalibratedScore):  # raw_score, lost: from self.scorer
    name = "rtmdnet"

    def __init__(
        self,
        config: RTMDNetConfig | None = None,
        data_dir: Path | None = None,
        extractor: RoIFeatureExtractor | None = None,
        backend: FeatureBackend | None = None,
    ) -> None:
        self.config = config or RTMDNetConfig()
        self.data_dir = data_dir
        # The top candidates' mean fc6 logit -> P(IoU > 0), fitted per variant (runtime.confidence).
        self.scorer = ScoreCalibrator("metartt" if self.config.meta else "rtmdnet")
        self.device = torch.device(self.config.device)
        spec = self.backend_spec()
        if extractor is None:
            extractor = torch_extractor(spec)
        self.extractor = extractor.to(self.device).eval()
        # Runs backbone + RoIAlign (torch, ONNX Runtime or TensorRT: runtime.backends); the
        # extractor still gives the stride and feature size.
        if backend is None:
            # verbose=False: the CLI reports the choice (runtime.track), unless --quiet
            backend = create_backend(spec, extractor=self.extractor, verbose=False)
        self.backend = backend
        self.head: FCHead | None = None
        self._mining_dtype = _low_precision(self.config.mining_precision, self.device)
        self._update_dtype = _low_precision(self.config.update_precision, self.device)
        self.meta: MetaCheckpoint | None = None
        if self.config.meta is not None:
            self.meta = MetaCheckpoint.from_file(self.config.meta)
            self.meta.check_compatible(self.config.backbone, self.extractor.feature_dim)
            self._meta_rates_unpruned = {
                which: self.meta.rates(which, self.device) for which in ("init", "on")
            }
            self._meta_rates = self._meta_rates_unpruned
        self._prune_net = None
        if self.config.prune not in (None, "fit"):
            prune = PruneCheckpoint.from_file(self.config.prune)
            prune.check_compatible(self.meta.sha256 if self.meta is not None else None)
            self._prune_net = prune.build(self.device)
        self.selection: ChannelSelection | None = None  # this video's pruning, once init ran
        self.bbreg = BoxRegressor(
            self.config.bbreg_alpha, self.config.overlap_bbreg, self.config.scale_bbreg
        )
        self.stage_clock = StageClock()

    def backend_spec(self, data_dir: Path | None = None, **changes: object) -> FeatureBackendSpec:
        """What this tracker asks of its feature backend (:meth:`RTMDNetConfig.backend_spec`),
        with its data folder unless ``data_dir`` is given."""
        return self.config.backend_spec(data_root(data_dir or self.data_dir), **changes)

    @property
    def backend(self) -> FeatureBackend:
        """What runs backbone + RoIAlign now (for a pruned video: its smaller network)."""
        return self._backend

    @backend.setter
    def backend(self, backend: FeatureBackend) -> None:
        # A backend set from outside (use_backend) serves every video; pruning replaces
        # self._backend for one video only, and init() goes back to this one.
        self._backend = self._unpruned_backend = backend

    def sibling(self) -> RTMDNetTracker:
        """A tracker with no target yet on this one's network (extractor and backend shared;
        the small checkpoints are read again), for another target in the same video."""
        sibling = RTMDNetTracker(
            self.config, self.data_dir, extractor=self.extractor, backend=self._unpruned_backend
        )
        sibling.name = self.name
        return sibling

    def twin(self, backend: FeatureBackend) -> RTMDNetTracker:
        """A copy of the whole state (head, optimizer, memories, RNG) running on ``backend``.

        For comparing backends frame by frame from the same state (``bench.parity``). For a
        pruned video, pass a backend already cut to ``selection.keep["conv"]``.
        """
        own = self._backend, self._unpruned_backend
        self._backend = self._unpruned_backend = None  # sessions/engines do not deep-copy
        # What update() never changes is shared, not copied (the meta checkpoint alone is 16 MB).
        fixed = (self.extractor, self.meta, self._prune_net, self.config)
        fixed += tuple(getattr(self, n, None) for n in ("_meta_rates", "_meta_rates_unpruned"))
        memo = {id(obj): obj for obj in fixed if obj is not None}
        try:
            twin = copy.deepcopy(self, memo)
        finally:
            self._backend, self._unpruned_backend = own
        twin._backend = twin._unpruned_backend = backend
        return twin

    # ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def _pool(self, fmap: torch.Tensor, window: CropWindow, boxes: np.ndarray) -> torch.Tensor:
        with self.stage_clock.stage("roi_pooling"):
            rois = window.rois(boxes, self.config.roi_padding)
            rois_t = torch.from_numpy(rois).float().to(self.device)
            batch = torch.zeros(len(rois), dtype=torch.int64, device=self.device)
            return self.backend.pool(fmap, rois_t, batch)

    @torch.no_grad()
    def _feature_map(self, frame: np.ndarray, window: CropWindow) -> torch.Tensor:
        with self.stage_clock.stage("crop"):
            crop = crop_to_tensor(cut(frame, window, self._fill), self.device)
        with self.stage_clock.stage("backbone"):
            return self.backend.feature_map(crop)

    def _optimizer(self, lr: float) -> torch.optim.SGD:
        assert self.head is not None
        return torch.optim.SGD(
            self.head.param_groups(lr, self.config.lr_mult_fc6),
            lr=lr,
            momentum=self.config.momentum,
            weight_decay=self.config.weight_decay,
        )

    def _train(self, optimizer: torch.optim.Optimizer, pos, neg, iterations: int) -> float:
        c = self.config
        assert self.head is not None
        return train_head(
            self.head,
            optimizer,
            pos,
            neg,
            iterations,
            batch_pos=c.batch_pos,
            batch_neg=c.batch_neg,
            batch_neg_cand=c.batch_neg_cand,
            batch_test=c.batch_test,
            grad_clip=c.grad_clip,
            rng=self._rng,
            mining_dtype=self._mining_dtype,
        )

    def _subsample(self, feats: torch.Tensor, n: int) -> torch.Tensor:
        if len(feats) <= n:
            return feats
        return feats[torch.from_numpy(self._rng.permutation(len(feats))[:n])]

    # ---------------------------------------------------------------------------------------
    def init(self, frame: np.ndarray, box: np.ndarray) -> None:
        frame, box = check_init(frame, box)
        c = self.config
        target = validate_init_box(box, frame.shape).copy()
        self._rng = np.random.default_rng(c.seed)
        torch.manual_seed(c.seed)
        self._frame_wh = (frame.shape[1], frame.shape[0])
        self._fill = tuple(float(v) for v in frame.reshape(-1, 3).mean(axis=0))
        self._backend, self.selection = self._unpruned_backend, None
        if self.meta is not None:
            self._meta_rates = self._meta_rates_unpruned

        pos, neg = init_examples(target, self._frame_wh, c, self._rng)
        reg = draw_filtered(
            BBREG_SPEC, target, c.n_bbreg, self._frame_wh, self._rng, c.overlap_bbreg, c.scale_bbreg
        )
        half = covering_half_extent(target, np.concatenate([pos, neg, reg]), c.roi_padding)

        # RT-MDNet pools every sample in every jittered crop, then keeps a random subset; pooling
        # a disjoint share per crop gives the same mix at a fraction of the cost.
        shares = len(c.init_jitter_scales)
        pos_feats, neg_feats, reg_feats, reg_boxes = [], [], [], []
        for j, jitter in enumerate(c.init_jitter_scales):
            window = search_window(target, half, c, self.extractor.stride, jitter)
            fmap = self._feature_map(frame, window)
            pos_feats.append(self._pool(fmap, window, pos[j::shares]))
            neg_feats.append(self._pool(fmap, window, neg[j::shares]))
            reg_feats.append(self._pool(fmap, window, reg[j::shares]))
            reg_boxes.append(reg[j::shares])
        pos_all = self._subsample(torch.cat(pos_feats), c.n_pos_init)
        neg_all = self._subsample(torch.cat(neg_feats), c.n_neg_init)

        if self.meta is None:
            self.head = FCHead(self.extractor.feature_dim, c.fc_width, c.dropout).to(self.device)
        else:
            self.head = self.meta.build_head(self.device)
        self.head.input_scale.fill_(
            1.0 / float(torch.cat([pos_all, neg_all]).std().clamp_min(1e-6))
        )
        self._update_optimizer = self._optimizer(c.lr_update)
        if self.meta is None:
            self._train(self._optimizer(c.lr_init), pos_all, neg_all, c.maxiter_init)
        else:
            initial = {n: p.detach().clone() for n, p in self.head.named_parameters()}
            self._theta_init = self._meta_adapt(initial, pos_all, neg_all, "init")
            self._load_params(self._theta_init)
        reg_all = torch.cat(reg_feats)
        if c.prune is not None:
            # From here on a smaller network: the stored features keep the kept channels only.
            columns = self._prune(pos_all, neg_all).feature_columns(self._roi_cells)
            pos_all, neg_all = pos_all[:, columns], neg_all[:, columns]
            reg_all = reg_all[:, columns]

        reg_x = reg_all * self.head.input_scale
        self.bbreg.fit(reg_x.cpu().numpy(), np.concatenate(reg_boxes), target)

        self._pos_memory: deque[torch.Tensor] = deque(maxlen=c.n_frames_long)
        self._neg_memory: deque[torch.Tensor] = deque(maxlen=c.n_frames_short)
        self._pos_memory.append(self._subsample(pos_all, c.n_pos_update))
        self._neg_memory.append(self._subsample(neg_all, c.n_neg_update))
        self._target = target
        # The floor on the target's sides (config.min_scale).
        self._min_size = c.min_scale * target[2:]
        self._trans_f = c.trans_f
        self._frame_index = 0
        self.scorer.reset()

    @property
    def _roi_cells(self) -> int:
        return self.config.roi_size**2

    def _prune(self, pos: torch.Tensor, neg: torch.Tensor) -> ChannelSelection:
        """Masks once, from the adapted head, then the head, rates and backbone cut to them."""
        c, cells = self.config, self._roi_cells
        assert self.head is not None
        params = {n: p.detach() for n, p in self.head.named_parameters()}  # theta_init^K
        x = torch.cat([pos, neg]) * self.head.input_scale
        if self._prune_net is not None:
            with torch.no_grad():
                masks = self._prune_net(descriptors(params, x, cells, self._rng))
        else:
            subset = torch.from_numpy(
                self._rng.choice(len(x), min(len(x), c.prune_fit_samples), replace=False)
            )
            widths = layer_widths(self.head, cells)
            masks = fit_masks(
                params,
                x[subset],
                widths,
                c.prune_fit_sparsity,
                c.prune_fit_steps,
                c.prune_fit_lr,
                cells,
            )
        # A backend built at a fixed kept width (TensorRT, refitted per video) takes exactly that.
        budget = getattr(self._backend, "channel_budget", None)
        widths = {"conv": budget} if budget else None
        selection = ChannelSelection.from_masks(masks, widths)
        pruned_head = selection.slice_head(self.head, params, cells)
        self._prune_losses = self._first_frame_losses(pruned_head, selection, pos, neg)
        full, pruned = self._prune_losses
        if c.prune_guard is not None and pruned > full * (1.0 + c.prune_guard):
            # The masks cut channels this video needs: keep the whole network (issue 17).
            selection = ChannelSelection.from_masks(
                {k: torch.ones_like(m) for k, m in masks.items()}, widths
            )
            pruned_head = selection.slice_head(self.head, params, cells)
        self.head = pruned_head
        if self.meta is not None:
            self._theta_init = {n: p.detach().clone() for n, p in self.head.named_parameters()}
            self._meta_rates = {
                which: selection.slice_rates(rates, cells)
                for which, rates in self._meta_rates.items()
            }
        self._update_optimizer = self._optimizer(c.lr_update)
        start = time.perf_counter()
        if len(selection.keep["conv"]) < len(selection.masks["conv"]):  # else nothing to cut
            self._backend = self._backend.keep_channels(selection.keep["conv"])
        self._slice_seconds = time.perf_counter() - start  # ONNX Runtime: a session build
        self.selection = selection
        return selection

    @torch.no_grad()
    def _first_frame_losses(
        self, pruned_head: FCHead, selection: ChannelSelection, pos: torch.Tensor, neg: torch.Tensor
    ) -> tuple[float, float]:
        """The first frame's classification loss with the unpruned head and with the pruned one
        (on the kept feature columns): the pruning guard's test."""
        assert self.head is not None
        columns = selection.feature_columns(self._roi_cells)
        losses = []
        for head, p, n in ((self.head, pos, neg), (pruned_head, pos[:, columns], neg[:, columns])):
            head.eval()
            losses.append(float(classification_loss(head(p), head(n))))
        return losses[0], losses[1]

    def run_stats(self) -> dict[str, float]:
        """Per-video figures for benchmarks: the share of channels pruned (when pruning)."""
        stats = {"lost_frames": float(self.scorer.state.lost_frames)}
        if self.selection is None:
            return stats
        stats |= {"prune_rate": self.selection.prune_rate, "slice_seconds": self._slice_seconds}
        full, pruned = self._prune_losses
        stats |= {"first_loss_unpruned": full, "first_loss_pruned": pruned}
        widths = {layer: len(m) for layer, m in self.selection.masks.items()}
        for layer, kept in self.selection.kept().items():
            stats[f"kept_{layer}"] = kept / widths[layer]
        return stats

    def _meta_adapt(
        self, params: Params, pos: torch.Tensor, neg: torch.Tensor, which: str
    ) -> Params:
        c = self.config
        assert self.head is not None
        self.head.eval()  # as in meta-training: no dropout
        spec = BatchSpec(c.batch_pos, c.batch_neg, c.batch_neg_cand)
        rates = self._meta_rates[which]
        return adapt(
            self.head,
            params,
            pos,
            neg,
            rates,
            spec,
            self._rng,
            mining_dtype=self._mining_dtype,
            step_dtype=self._update_dtype if which == "on" else None,
        )

    @torch.no_grad()
    def _load_params(self, params: Params) -> None:
        assert self.head is not None
        for name, p in self.head.named_parameters():
            p.copy_(params[name])

    def _online_update(self, pos: torch.Tensor, neg: torch.Tensor) -> None:
        if self.meta is not None and self.meta.lr_on:
            # MetaRTT: K_on learned steps from theta_init^K, the start they were learned for.
            self._load_params(self._meta_adapt(self._theta_init, pos, neg, "on"))
        else:
            self._train(self._update_optimizer, pos, neg, self.config.maxiter_update)

    def _at_least_min_size(self, box: np.ndarray) -> np.ndarray:
        """``box`` scaled about its centre (aspect kept) so that no side is below the floor
        (``min_scale`` times the first box's sides)."""
        factor = float(np.max(self._min_size / np.maximum(box[2:], 1e-9)))
        if factor <= 1.0:
            return box
        centre = box[:2] + box[2:] / 2
        size = box[2:] * factor
        return np.concatenate([centre - size / 2, size])

    @torch.inference_mode()
    def _score(self, feats: torch.Tensor) -> torch.Tensor:
        assert self.head is not None
        self.head.eval()
        return self.head(feats)[:, 1]

    def update(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        frame = check_update(frame, self.head is not None, self.name)
        if self.head is None:
            raise RuntimeError("call init(frame, box) before update(frame)")
        c, clock = self.config, self.stage_clock
        self._frame_index += 1
        target = self._target
        with clock.stage("sampling"):
            spec = candidate_spec(c, self._trans_f)
            samples = draw(spec, target, c.n_samples, self._frame_wh, self._rng)
            # One window serves the candidates and this frame's update negatives.
            half = update_half_extent(target, samples, c)
            window = search_window(target, half, c, self.extractor.stride)
        fmap = self._feature_map(frame, window)
        cand_feats = self._pool(fmap, window, samples)
        with clock.stage("candidate_scoring"):
            scores = self._score(cand_feats)
            top = scores.topk(min(c.top_k, len(scores))).indices
            top_np = top.cpu().numpy()
            score = float(scores[top].mean())
        new_target = samples[top_np].mean(axis=0)
        success = score > c.success_thr
        if not success and c.keep_size_on_failure:
            # RT-MDNet keeps the mean of the top candidates as the target even on failure; this
            # option keeps only their centre: with every candidate below zero their sizes carry
            # no information and pull the box down ~0.2 % per failed frame (config.py).
            centre = new_target[:2] + new_target[2:] / 2
            new_target = np.concatenate([centre - target[2:] / 2, target[2:]])
        # Never below min_scale of the first box: while lost, the box shrank to 5 px (config.py).
        new_target = self._at_least_min_size(new_target)

        self._trans_f = c.trans_f if success else c.trans_f_expand
        if success:
            assert self.head is not None
            with clock.stage("box_regression"):
                reg_x = (cand_feats[top] * self.head.input_scale).cpu().numpy()
                result = self.bbreg.predict(reg_x, samples[top_np]).mean(axis=0)
                result = self._at_least_min_size(result)
            self._target = new_target
            with clock.stage("sampling"):
                pos, neg = update_examples(new_target, self._frame_wh, c, self._rng)
            if len(pos) and len(neg):
                # One RoIAlign call for both (each call has a fixed cost; bench.profile).
                feats = self._pool(fmap, window, np.concatenate([pos, neg]))
                # A copy: a view would keep the negatives alive as long as the positives.
                self._pos_memory.append(feats[: len(pos)].clone())
                self._neg_memory.append(feats[len(pos) :])
        else:
            self._target = new_target
            result = new_target

        with clock.stage("online_update"):
            if not success:
                recent = list(self._pos_memory)[-c.n_frames_short :]
                neg = torch.cat(list(self._neg_memory))
                self._online_update(torch.cat(recent), neg)
            elif self._frame_index % c.long_interval == 0:
                pos = torch.cat(list(self._pos_memory))
                neg = torch.cat(list(self._neg_memory))
                self._online_update(pos, neg)
        return result, self.scorer(score)
