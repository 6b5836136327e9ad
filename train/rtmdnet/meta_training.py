"""Meta-train MetaRTT (Jung et al., AAAI 2020, Algorithm 1) on real tracking episodes.

    python train/meta.py [--data DIR] [--train-data DIR ...] [--out DIR] [--steps N]
        [--variant NAME] [--set KEY=VALUE ...] [--resume]
    torchrun --nproc_per_node 2 train/meta.py ...        # DistributedDataParallel, gloo on CPU

Every meta-step, each process draws one episode (:class:`train.rtmdnet.episodes.EpisodeSampler`:
6 frames of one training video, the train split plus ``train_extra``, never ``val``), cuts its
crops with the frozen pretrained backbone exactly as the tracker does, and computes the meta-loss:

1. ``theta_init^K``: ``K_init`` steps with the learned rates on ``D_init`` (first frame, ground
   truth) from ``theta_init^0``; test loss on ``D_test^std`` (last frame) and ``D_test^hard``
   (targets of other videos, as negatives);
2. the middle frames are *tracked* by ``theta_init^K``: candidates around the previous estimate,
   the mean of the top 5 is the estimate, ``D_on`` is drawn around that estimate (not the ground
   truth) and pooled from the same window, as ``RTMDNetTracker.update``;
3. ``theta_on^K``: ``K_on`` steps on ``D_on`` (plus the first frame's samples, as the tracker's
   memory) from ``theta_init^K``; test loss again;
4. meta-loss = both test losses, back-propagated through both inner loops (second order);
   Adam at 1e-4 on ``theta_init^0`` and every rate tensor.

Outputs in ``--out``: ``config.json``, ``log.csv`` (meta-loss, its parts, mean rates, seconds per
step, validation AUC when ``--val-every``), ``training.png``, ``last.pt`` (full training state,
written atomically every ``--checkpoint-every`` steps; ``--resume`` continues from it and gives
the same result as an uninterrupted run) and ``metartt.pt`` (what the tracker needs:
``python -m runtime.track VIDEO --meta OUT/metartt.pt``).

Variants (``--variant``) for the paper's ablation: ``metartt`` (all of the above), ``gt-targets``
(``D_on`` around ground truth), ``no-hard`` (no ``D_test^hard``: gamma = 0), ``scalar-lr`` (one
rate per step), ``init-only`` (Meta-Tracker: only the initial adaptation is meta-learned).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from runtime.backbones import build_backbone
from runtime.boxes import iou
from runtime.cli.program import program_name
from runtime.evaluation.one_pass import mean_auc, resolve_sequences
from runtime.paths import data_root
from runtime.registry import build_tracker
from runtime.roi_features import RoIFeatureExtractor
from runtime.rtmdnet.head import FCHead, fast_low_precision
from runtime.rtmdnet.meta import BatchSpec
from runtime.rtmdnet.tracker import update_reach
from train import tooling
from train.datasets import training_sequences
from train.rtmdnet.episodes import (
    Episode,
    EpisodeConfig,
    EpisodeSampler,
    draw_candidates,
    draw_online_samples,
    window_features,
)
from train.rtmdnet.meta_learning import MetaConfig, TrainingMetaLearner
from train.tooling import (
    write_log,
)

VARIANTS: dict[str, dict[str, object]] = {
    "metartt": {},
    "gt-targets": {"estimated_targets": False},
    "no-hard": {"meta.gamma": 0.0},
    "scalar-lr": {"meta.scalar_lr": True},
    "init-only": {"meta.k_on": 0},
}
MONITORING = ("steps", "checkpoint_every", "val_every", "val_max_frames")  # free on --resume
LOG_FIELDS = [
    "step",
    "meta_loss",
    "loss_init",
    "loss_on",
    "lr_init_mean",
    "lr_on_mean",
    "online_iou",
    "sec_per_step",
    "skipped",
    "val_auc",
]


@dataclass
class TrainConfig:
    """Defaults: the paper's values where it gives them (Adam 1e-4, K = 5, 6-frame episodes)."""

    steps: int = 1000  # meta-steps; each process draws one episode per step
    meta_lr: float = 1e-4
    seed: int = 0
    backbone: str = "nanotrack"
    estimated_targets: bool = True  # D_on around the adapted model's estimates (paper)
    checkpoint_every: int = 50
    val_every: int = 0  # 0: no validation AUC during training (it costs a tracking run)
    val_max_frames: int = 60  # frames per val sequence for that AUC (a trend, not the result)
    meta: MetaConfig = field(default_factory=MetaConfig)
    # D_init counts as the tracker's (500 / 5000); each step uses 32 pos + 96 of 1024 negs.
    episode: EpisodeConfig = field(default_factory=EpisodeConfig)


def config_from_dict(data: dict) -> TrainConfig:
    return tooling.config_from_dict(TrainConfig, data)


# ------------------------------------------------------------------------------------------
# One episode's meta-loss
# ------------------------------------------------------------------------------------------
@dataclass
class EpisodeData:
    """Features that do not depend on the meta-parameters (D_init, D_test, hard), pre-scaled."""

    init_pos: torch.Tensor
    init_neg: torch.Tensor
    test_pos: torch.Tensor
    test_neg: torch.Tensor
    hard: torch.Tensor
    scale: float  # 1 / std of D_init features: the tracker's per-video input_scale
    fill: tuple[float, float, float]  # first frame's mean colour (the tracker's fill)


def episode_data(
    extractor: RoIFeatureExtractor, episode: Episode, config: EpisodeConfig
) -> EpisodeData:
    tracker = config.tracker
    init = episode.init
    fill = tuple(float(v) for v in init.image.reshape(-1, 3).mean(axis=0))
    # D_init exactly as RTMDNetTracker.init pools it: a disjoint share per jittered window.
    shares = len(tracker.init_jitter_scales)
    everything = np.concatenate([episode.init_pos, episode.init_neg])
    pos_parts, neg_parts = [], []
    for j, jitter in enumerate(tracker.init_jitter_scales):
        view = window_features(
            extractor, init.image, init.box, everything, config, jitter=jitter, fill=fill
        )
        pos_parts.append(view.pool(episode.init_pos[j::shares]))
        neg_parts.append(view.pool(episode.init_neg[j::shares]))
    init_pos, init_neg = torch.cat(pos_parts), torch.cat(neg_parts)
    scale = 1.0 / float(torch.cat([init_pos, init_neg]).std().clamp_min(1e-6))

    test = episode.test
    test_boxes = np.concatenate([episode.test_pos, episode.test_neg])
    view = window_features(extractor, test.image, test.box, test_boxes, config, fill=fill)
    test_pos, test_neg = view.pool(episode.test_pos), view.pool(episode.test_neg)
    hard = [
        window_features(extractor, h.image, h.box, h.boxes, config).pool(h.boxes)
        for h in episode.hard
    ]
    hard_feats = torch.cat(hard) if hard else test_neg[:0]
    return EpisodeData(
        init_pos * scale,
        init_neg * scale,
        test_pos * scale,
        test_neg * scale,
        hard_feats * scale,
        scale,
        fill,
    )


class MetaObjective(nn.Module):
    """The meta-loss of one episode (the module DistributedDataParallel wraps)."""

    def __init__(
        self,
        learner: TrainingMetaLearner,
        extractor: RoIFeatureExtractor,
        config: TrainConfig,
    ) -> None:
        super().__init__()
        self.learner = learner
        self.config = config
        tracker = config.episode.tracker
        self.spec = BatchSpec(tracker.batch_pos, tracker.batch_neg, tracker.batch_neg_cand)
        self.mining_dtype = fast_low_precision(torch.device("cpu"))
        # Frozen and not a submodule: DDP must not see (or all-reduce) the backbone.
        self._extractor = [extractor]

    @property
    def extractor(self) -> RoIFeatureExtractor:
        return self._extractor[0]

    def forward(
        self, episode: Episode, data: EpisodeData, rng: np.random.Generator
    ) -> tuple[torch.Tensor, dict[str, float]]:
        learner, c = self.learner, self.config
        adapt = dict(spec=self.spec, rng=rng, mining_dtype=self.mining_dtype)
        theta_init = learner.adapt(
            learner.initial_params(), data.init_pos, data.init_neg, "init", **adapt
        )
        loss_init = learner.test_loss(theta_init, data.test_pos, data.test_neg, data.hard)
        stats = {"loss_init": float(loss_init.detach()), "loss_on": float("nan")}
        if c.meta.k_on == 0:
            return loss_init, stats

        pos_memory, neg_memory, ious = self._online_samples(episode, data, theta_init, rng)
        stats["online_iou"] = float(np.mean(ious)) if ious else float("nan")
        theta_on = learner.adapt(
            theta_init, torch.cat(pos_memory), torch.cat(neg_memory), "on", **adapt
        )
        loss_on = learner.test_loss(theta_on, data.test_pos, data.test_neg, data.hard)
        stats["loss_on"] = float(loss_on.detach())
        return loss_init + loss_on, stats

    def _online_samples(
        self,
        episode: Episode,
        data: EpisodeData,
        theta_init: dict[str, torch.Tensor],
        rng: np.random.Generator,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[float]]:
        frozen = {n: p.detach() for n, p in theta_init.items()}
        return online_samples(
            self.extractor,
            episode,
            data,
            lambda x: self.learner.forward_with(frozen, x)[:, 1],
            self.config.episode,
            self.config.estimated_targets,
            rng,
        )


def online_samples(
    extractor: RoIFeatureExtractor,
    episode: Episode,
    data: EpisodeData,
    score: Callable[[torch.Tensor], torch.Tensor],
    ep: EpisodeConfig,
    estimated_targets: bool,
    rng: np.random.Generator,
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[float]]:
    """Track the middle frames with ``score`` (target scores) and pool ``D_on`` around them.

    As ``RTMDNetTracker``: the memory starts with a subsample of the first frame's samples,
    and a frame whose best candidates score below the success threshold adds nothing. Returns
    the memories (first entry: the first frame's) and the estimates' IoUs with ground truth.
    """
    tracker = ep.tracker
    pos_memory = [_subsample(data.init_pos, tracker.n_pos_update, rng)]
    neg_memory = [_subsample(data.init_neg, tracker.n_neg_update, rng)]
    estimate = episode.init.box
    ious: list[float] = []
    for frame in episode.online:
        reach = update_reach(estimate, tracker)
        if estimated_targets:
            candidates = draw_candidates(estimate, frame.frame_wh, ep, rng)
            view = window_features(
                extractor,
                frame.image,
                estimate,
                candidates,
                ep,
                fill=data.fill,
                min_half_extent=reach,
            )
            with torch.no_grad():
                scores = score(view.pool(candidates) * data.scale)
            top = scores.topk(min(tracker.top_k, len(scores))).indices
            estimate = candidates[top.numpy()].mean(axis=0)
            ious.append(float(iou(estimate[None], frame.box[None])[0]))
            if float(scores[top].mean()) <= tracker.success_thr:
                continue
        else:
            estimate = frame.box
            view = window_features(
                extractor,
                frame.image,
                estimate,
                estimate[None],
                ep,
                fill=data.fill,
                min_half_extent=reach,
            )
        pos, neg = draw_online_samples(estimate, frame.frame_wh, ep, rng)
        if len(pos) and len(neg):
            pos_memory.append(view.pool(pos) * data.scale)
            neg_memory.append(view.pool(neg) * data.scale)
    return pos_memory, neg_memory, ious


def _subsample(feats: torch.Tensor, n: int, rng: np.random.Generator) -> torch.Tensor:
    return feats[torch.from_numpy(rng.permutation(len(feats))[:n])]


# ------------------------------------------------------------------------------------------
# Checkpoints and logs
# ------------------------------------------------------------------------------------------
def save_state(
    path: Path, learner: TrainingMetaLearner, optimizer, step: int, config: TrainConfig
) -> None:
    tooling.save_state(
        path, step, config, learner=learner.state_dict(), optimizer=optimizer.state_dict()
    )


def load_state(path: Path, learner: TrainingMetaLearner, optimizer, config: TrainConfig) -> int:
    state = tooling.load_state(path, config, free=MONITORING)
    learner.load_state_dict(state["learner"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["step"])


def plot_log(rows: list[dict[str, object]], path: Path) -> None:
    tooling.plot_log(
        rows,
        path,
        ("meta_loss", "loss_init", "loss_on"),
        "val_auc",
        "val AUC (first frames only)",
        "no validation in this run\n(--val-every N)",
    )


def validation_auc(checkpoint: Path, root: Path, max_frames: int) -> float:
    """OPE success AUC of the tracker with ``checkpoint`` on the val split (first frames)."""
    sequences = resolve_sequences(root / "sequences", [], "val")
    return mean_auc(
        "metartt",
        # build_tracker: validation keeps the threads training runs with.
        lambda: build_tracker("metartt", data_dir=root, meta=str(checkpoint)),
        sequences,
        max_frames,
    )


# ------------------------------------------------------------------------------------------
# The loop, in named steps over the run's plan
# ------------------------------------------------------------------------------------------
MetaTrainingPlan = tooling.TrainingPlan[TrainConfig]


def build_extractor(config: TrainConfig, root: Path) -> RoIFeatureExtractor:
    tracker = config.episode.tracker
    backbone = build_backbone(config.backbone, root / "weights")
    extractor = RoIFeatureExtractor(backbone, tracker.roi_size, tracker.roi_sampling_ratio).eval()
    extractor.requires_grad_(False)
    return extractor


@dataclass
class TrainResult:
    checkpoint: Path  # the runtime checkpoint (metartt.pt)
    learner: TrainingMetaLearner  # this process's replica (identical on every rank)
    skipped_steps: int  # meta-steps dropped for a non-finite gradient


@dataclass
class MetaTrainingRun:
    """What a meta-training run changes as it goes: the meta-parameters and their optimizer."""

    extractor: RoIFeatureExtractor  # frozen
    learner: TrainingMetaLearner
    optimizer: torch.optim.Optimizer
    model: nn.Module  # the MetaObjective, wrapped in DistributedDataParallel when distributed
    skipped: int = 0  # meta-steps dropped for a non-finite gradient


def train(
    config: TrainConfig,
    root: Path,
    out: Path,
    resume: bool = False,
    extra_data: Sequence[Path] = (),
) -> TrainResult:
    """Run (or continue) meta-training in ``out``.

    Episodes come from ``root``'s train split and ``train_extra/`` plus every dataset found in
    ``extra_data`` (OTB folders, GOT-10k, LaSOT, ImageNet-VID: :func:`train.datasets.discover`).
    """
    plan = tooling.TrainingPlan.create(config, root, out, "metartt.pt", resume, extra_data)
    _prepare(plan)
    run = _build_run(plan)
    start = tooling.start_step(
        plan, lambda: load_state(plan.state_path, run.learner, run.optimizer, config)
    )
    rows = tooling.open_log(plan, start)
    _distribute(plan, run)
    sampler = EpisodeSampler(
        training_sequences(plan.root, plan.extra_data), config.episode, seed=config.seed
    )
    bar = tooling.progress(plan, start, "meta-train")
    for step in bar:
        t0 = time.perf_counter()
        loss, stats = _meta_step(plan, run, sampler, step)
        if not plan.is_first:
            continue
        rows.append(_log_row(run, step, loss, stats, t0))
        bar.set_postfix(loss=f"{float(loss.detach()):.3f}", skipped=run.skipped)
        if plan.schedule.writes_checkpoint(step):
            _write_checkpoint(plan, run, rows, step)
    if plan.distributed:
        dist.barrier()
    return TrainResult(plan.checkpoint_path, run.learner, run.skipped)


def _prepare(plan: MetaTrainingPlan) -> None:
    """The run folder, and the tracker settings on the backbone the run trains with."""
    plan.out.mkdir(parents=True, exist_ok=True)
    plan.config.episode.tracker.backbone = plan.config.backbone


def _build_run(plan: MetaTrainingPlan) -> MetaTrainingRun:
    """The frozen backbone, ``theta_init^0`` and the rates (seeded alike on every rank), Adam."""
    config = plan.config
    extractor = build_extractor(config, plan.root)
    torch.manual_seed(config.seed)  # theta_init^0's random start, identical on every rank
    head = FCHead(extractor.feature_dim, config.episode.tracker.fc_width)
    learner = TrainingMetaLearner(head, config.meta)
    optimizer = torch.optim.Adam(learner.parameters(), lr=config.meta_lr)
    objective = MetaObjective(learner, extractor, config)
    return MetaTrainingRun(extractor, learner, optimizer, objective)


def _distribute(plan: MetaTrainingPlan, run: MetaTrainingRun) -> None:
    """Under ``torchrun``: DistributedDataParallel around the objective (after any resume)."""
    if plan.distributed:
        run.model = nn.parallel.DistributedDataParallel(run.model)


def _meta_step(
    plan: MetaTrainingPlan, run: MetaTrainingRun, sampler: EpisodeSampler, step: int
) -> tuple[torch.Tensor, dict[str, float]]:
    """One episode's meta-loss, back-propagated; Adam steps unless the gradient is not finite."""
    rng = plan.step_rng(step)
    episode = sampler.sample(rng)
    data = episode_data(run.extractor, episode, plan.config.episode)
    loss, stats = run.model(episode, data, rng)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    # A diverged inner loop (NaN/inf) must not poison the meta-parameters. Gradients are
    # all-reduced by now, so every rank takes the same decision.
    finite = all(
        p.grad is None or bool(torch.isfinite(p.grad).all()) for p in run.learner.parameters()
    )
    if finite:
        run.optimizer.step()
    else:
        run.skipped += 1
    return loss, stats


def _log_row(
    run: MetaTrainingRun, step: int, loss: torch.Tensor, stats: dict[str, float], t0: float
) -> dict[str, object]:
    """The step's ``log.csv`` row (``val_auc`` filled in at a validated checkpoint)."""
    return {
        "step": step + 1,
        "meta_loss": f"{float(loss.detach()):.5f}",
        "loss_init": f"{stats['loss_init']:.5f}",
        "loss_on": f"{stats['loss_on']:.5f}",
        "lr_init_mean": f"{_mean_rate(run.learner, 'init'):.6f}",
        "lr_on_mean": f"{_mean_rate(run.learner, 'on'):.6f}",
        "online_iou": f"{stats.get('online_iou', float('nan')):.4f}",
        "sec_per_step": f"{time.perf_counter() - t0:.3f}",
        "skipped": run.skipped,
        "val_auc": "",
    }


def _write_checkpoint(
    plan: MetaTrainingPlan, run: MetaTrainingRun, rows: list[dict[str, object]], step: int
) -> None:
    """``metartt.pt`` (validated when due), ``last.pt``, ``log.csv`` and ``training.png``."""
    config = plan.config
    info = {"train_config": asdict(config), "world_size": plan.world, "step": step + 1}
    run.learner.to_checkpoint(config.backbone, info).to_file(plan.checkpoint_path)
    if plan.schedule.validates(step):
        auc = validation_auc(plan.checkpoint_path, plan.root, config.val_max_frames)
        rows[-1]["val_auc"] = f"{auc:.4f}"
    save_state(plan.state_path, run.learner, run.optimizer, step + 1, config)
    write_log(plan.log_path, rows, LOG_FIELDS)
    plot_log(rows, plan.plot_path)


def _mean_rate(learner: TrainingMetaLearner, which: str) -> float:
    steps = learner.rates(which)
    if not steps:
        return float("nan")
    return float(np.mean([float(r.detach().mean()) for step in steps for r in step.values()]))


# ------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=program_name("python train/meta.py"),
        description="Meta-train MetaRTT's initial weights and per-step learning rates.",
    )
    tooling.add_common_arguments(p, "meta.lr_init_value=0.05 or episode.n_neg_init=2000")
    p.add_argument("--out", type=Path, help="run folder (default: runs/meta/VARIANT)")
    p.add_argument("--variant", choices=sorted(VARIANTS), default="metartt")
    p.add_argument("--steps", type=int, help="meta-steps (default 1000)")
    p.add_argument("--seed", type=int)
    p.add_argument("--meta-lr", type=float)
    p.add_argument("--checkpoint-every", type=int)
    p.add_argument("--val-every", type=int, help="log val AUC every N steps (0: never)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    flags = ("steps", "seed", "meta_lr", "checkpoint_every", "val_every")
    config = tooling.settings(TrainConfig, args, VARIANTS[args.variant], flags)
    root = data_root(args.data)
    out = args.out or Path("runs") / "meta" / args.variant
    result = tooling.run_processes(lambda: train(config, root, out, args.resume, args.train_data))
    if tooling.is_first_process():
        path = result.checkpoint
        print(f"runtime checkpoint: {path}  (python -m runtime.track VIDEO --meta {path})")
    return 0
