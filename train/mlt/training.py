"""Train MLT (Choi et al., ICCV 2019) on real tracking videos, in two stages.

    python train/mlt.py --stage match [--trunk nanotrack|paper] [--steps N] [--out DIR]
    python train/mlt.py --stage meta  --set matching=runs/mlt/match-nanotrack/mlt.pt [...]
        [--set KEY=VALUE ...] [--resume] [--data DIR] [--train-data DIR ...]
    torchrun --nproc_per_node 2 train/mlt.py ...   # gradients all-reduced over gloo on CPU

Videos: the ``train`` split of ``sequences/`` plus ``train_extra/`` (``train.datasets``; a val
name is refused), aerial and ground-level videos drawn half and half.

``match`` (stage 1): pairs of frames of one video (at most ``max_gap`` apart); a 127x127
exemplar around the target in one, a 255x255 search image in the other with the paper's
augmentations (random translation and stretch of the search window, colour jitter, grey
scale, horizontal flip). Balanced logistic loss on the response map; Adam (paper: 1e-4).
With the NanoTrack trunk the trunk is fixed and the neck (3x3 conv to 256) + conv5 are trained;
with the paper trunk everything is trained from scratch.

``meta`` (stage 2): the matching network is fixed. Per video: one exemplar and M' = 16 context
images (augmented, labels at the true target); the averaged negative gradient over the first
M = 8 of them with respect to conv5's kernel goes into the meta-learner; its 32 kernels and
224-channel attention are scored by the loss on all 16 (M' > M: not overfitting to the images
the gradient came from). Adam 1e-4 on the meta-learner only.

Outputs in ``--out``: ``config.json``, ``log.csv``, ``training.png``, ``last.pt`` (``--resume``
continues from it, same settings required), ``mlt.pt`` (the runtime checkpoint:
``python -m runtime.track VIDEO --tracker mlt`` after copying it to runtime/checkpoints/mlt.pt,
or ``bench.ope --trackers mlt --set checkpoint=OUT/mlt.pt``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.distributed as dist

from runtime.backbones import build_backbone
from runtime.cli.program import program_name
from runtime.crop import exemplar_side, square_crop
from runtime.evaluation.one_pass import mean_auc, resolve_sequences
from runtime.mlt import MLTConfig, MLTTracker
from runtime.mlt.checkpoint import MLTCheckpoint, trunk_sha256
from runtime.mlt.meta_learner import MetaLearner, conv5_gradient
from runtime.mlt.model import (
    MatchingNet,
    balanced_logistic_loss,
    label_map,
    response_side,
    to_tensor,
)
from runtime.paths import data_root
from train import tooling
from train.datasets import annotated, is_aerial, read_frame, training_sequences

STAGES = ("match", "meta")
MONITORING = ("steps", "checkpoint_every", "val_every", "val_max_frames")
LOG_FIELDS = ["step", "loss", "loss_base", "sec_per_step", "val_auc"]


@dataclass
class MLTTrainConfig:
    """Paper values where it gives them (Adam 1e-4, M = 8, M' = 16, 127/255 crops)."""

    stage: str = "match"
    trunk: str = "nanotrack"
    steps: int = 600
    lr: float = 1e-4
    seed: int = 0
    batch: int = 8  # match: frame pairs per step; meta: videos per step
    max_gap: int = 100  # frames between exemplar and search / context images
    exemplar_size: int = 127
    search_size: int = 255
    context: float = 0.5
    # augmentations: search-window translation (crop px), stretch, colour, grey, flip
    max_shift: float = 48.0
    stretch: float = 0.05
    color_jitter: float = 0.2
    gray_prob: float = 0.1
    flip_prob: float = 0.5
    m_context: int = 8  # M: images the gradient comes from
    m_loss: int = 16  # M': images the generated kernels are scored on
    matching: str = ""  # stage meta: the stage-1 runtime checkpoint (its mlt.pt)
    checkpoint_every: int = 50
    val_every: int = 0
    val_max_frames: int = 60
    val_sequences: str = ""  # comma-separated val names for val_auc ("" = the whole val split)


# ------------------------------------------------------------------------------------------
# Sampling
# ------------------------------------------------------------------------------------------
class FrameSampler:
    def __init__(self, sequences, config: MLTTrainConfig) -> None:
        self.c = config
        usable = [(s, annotated(s)) for s in sequences]
        usable = [(s, idx) for s, idx in usable if len(idx) >= 2]
        self.views = [
            [u for u in usable if is_aerial(u[0])],
            [u for u in usable if not is_aerial(u[0])],
        ]
        self.views = [v for v in self.views if v]
        if not self.views:
            raise ValueError("no training sequences with two annotated frames")

    def video(self, rng: np.random.Generator):
        view = self.views[rng.integers(len(self.views))]
        return view[rng.integers(len(view))]

    def frames(self, rng: np.random.Generator, n: int):
        """One video: an exemplar frame index and ``n`` other annotated indices near it."""
        seq, idx = self.video(rng)
        a = int(rng.integers(len(idx)))
        near = idx[np.abs(idx - idx[a]) <= self.c.max_gap]
        near = near[near != idx[a]] if len(near) > 1 else near
        others = rng.choice(near, size=n, replace=len(near) < n)
        return seq, int(idx[a]), [int(o) for o in others]

    def _jitter(self, crop: np.ndarray, rng: np.random.Generator, gray: bool) -> np.ndarray:
        c = self.c
        out = crop.astype(np.float32)
        if gray:
            out = np.repeat(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)[..., None], 3, 2)
            out = out.astype(np.float32)
        gain = 1.0 + rng.uniform(-c.color_jitter, c.color_jitter, size=3)
        bias = rng.uniform(-c.color_jitter, c.color_jitter) * 40.0
        return np.clip(out * gain + bias, 0, 255).astype(np.uint8)

    def exemplar(self, image, box, rng, gray: bool, flip: bool) -> np.ndarray:
        c = self.c
        center = box[:2] + box[2:] / 2.0
        fill = tuple(float(v) for v in image.reshape(-1, 3).mean(axis=(0,)))
        crop = square_crop(image, center, exemplar_side(box, c.context), c.exemplar_size, fill)
        crop = self._jitter(crop, rng, gray)
        return crop[:, ::-1].copy() if flip else crop

    def search(self, image, box, rng, gray: bool, flip: bool) -> tuple[np.ndarray, np.ndarray]:
        """A search crop with the target shifted by up to ``max_shift`` crop px (returned)."""
        c = self.c
        center = box[:2] + box[2:] / 2.0
        side = exemplar_side(box, c.context) * c.search_size / c.exemplar_size
        side *= float(np.exp(rng.uniform(-c.stretch, c.stretch)))
        shift = rng.uniform(-c.max_shift, c.max_shift, size=2)
        crop_center = center - shift * side / c.search_size
        fill = tuple(float(v) for v in image.reshape(-1, 3).mean(axis=(0,)))
        crop = self._jitter(square_crop(image, crop_center, side, c.search_size, fill), rng, gray)
        if flip:
            crop, shift = crop[:, ::-1].copy(), shift * np.array([-1.0, 1.0])
        return crop, shift

    def group(self, rng: np.random.Generator, n: int):
        """Exemplar crop, ``n`` search crops of the same video, their target offsets."""
        seq, a, others = self.frames(rng, n)
        gray = bool(rng.random() < self.c.gray_prob)
        flip = bool(rng.random() < self.c.flip_prob)
        z = self.exemplar(read_frame(seq.frame_paths[a]), seq.ground_truth[a], rng, gray, flip)
        xs, offsets = [], []
        for o in others:
            x, off = self.search(
                read_frame(seq.frame_paths[o]), seq.ground_truth[o], rng, gray, flip
            )
            xs.append(x)
            offsets.append(off)
        return z, xs, np.stack(offsets)


# ------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------
class Trunk:
    """The fixed NanoTrack trunk (torch, no grad), or the identity for the paper trunk."""

    def __init__(self, name: str, weights: Path) -> None:
        self.module = None
        if name == "nanotrack":
            self.module = build_backbone("nanotrack", weights)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.module is None else self.module(x)


def _val_auc(config: MLTTrainConfig, checkpoint: Path, root: Path) -> float:
    names = [n for n in config.val_sequences.split(",") if n]
    sequences = resolve_sequences(root / "sequences", names, None if names else "val")
    use_meta = config.stage == "meta"
    tracker_config = MLTConfig(backbone=config.trunk, checkpoint=str(checkpoint), use_meta=use_meta)
    factory = lambda: MLTTracker(tracker_config, data_dir=root)  # noqa: E731
    return mean_auc("mlt", factory, sequences, config.val_max_frames)


def _all_reduce_grads(params: Sequence[torch.nn.Parameter]) -> None:
    if not (dist.is_available() and dist.is_initialized()):
        return
    world = dist.get_world_size()
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world


def _broadcast(module: torch.nn.Module) -> None:
    if dist.is_available() and dist.is_initialized():
        for t in module.state_dict().values():
            dist.broadcast(t, 0)


MLTTrainingPlan = tooling.TrainingPlan[MLTTrainConfig]


@dataclass
class MLTTrainingRun:
    """What one stage's run holds: the fixed trunk, the networks, what is trained, Adam."""

    trunk: Trunk  # fixed
    net: MatchingNet  # trained in stage match, fixed in stage meta
    learner: MetaLearner | None  # stage meta only
    trained: torch.nn.Module  # net (match) or learner (meta)
    optimizer: torch.optim.Optimizer
    trunk_sha: str  # recorded in every runtime checkpoint


def train(
    config: MLTTrainConfig, root: Path, out: Path, resume: bool = False, extra: Sequence[Path] = ()
) -> Path:
    """Run (or continue) one stage in ``out``; returns the runtime checkpoint's path."""
    if config.stage not in STAGES:
        raise ValueError(f"unknown stage {config.stage!r}; choose one of {STAGES}")
    plan = tooling.TrainingPlan.create(config, root, out, "mlt.pt", resume, extra)
    plan.out.mkdir(parents=True, exist_ok=True)
    run = _build_run(plan)
    start = tooling.start_step(plan, lambda: _resume_state(plan, run))
    rows = tooling.open_log(plan, start)
    sampler = FrameSampler(training_sequences(plan.root, plan.extra_data), config)
    side = response_side(config.trunk, config.exemplar_size, config.search_size)
    bar = tooling.progress(plan, start, f"mlt {config.stage}")
    for step in bar:
        t0 = time.perf_counter()
        loss, base = _mlt_step(plan, run, sampler, side, step)
        if not plan.is_first:
            continue
        rows.append(_log_row(step, loss, base, t0))
        bar.set_postfix(loss=f"{float(loss.detach()):.3f}", base=f"{float(base.detach()):.3f}")
        if plan.schedule.writes_checkpoint(step):
            _write_checkpoint(plan, run, rows, step)
    if plan.distributed:
        dist.barrier()
    return plan.checkpoint_path


def _mlt_step(
    plan: MLTTrainingPlan, run: MLTTrainingRun, sampler: FrameSampler, side: int, step: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of the stage: its loss (and the log's base loss), back-propagated, gradients
    averaged over the processes, one Adam step."""
    config = plan.config
    rng = plan.step_rng(step)
    # The meta-learner's dropout draws from torch's global generator: seeded per step (as
    # train/prune.py), so a resumed run draws what the uninterrupted one did. From a
    # generator of its own, so the step's data (drawn from ``rng``) stay what they were.
    torch.manual_seed(int(np.random.default_rng([config.seed, step, plan.rank, 1]).integers(2**62)))
    if config.stage == "match":
        loss, base = _match_loss(plan, run, sampler, side, rng)
    else:
        loss, base = _meta_loss(plan, run, sampler, side, rng)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    _all_reduce_grads([p for p in run.trained.parameters() if p.requires_grad])
    run.optimizer.step()
    return loss, base


def _build_run(plan: MLTTrainingPlan) -> MLTTrainingRun:
    """The trunk; stage match: a fresh matching network (seeded); stage meta: stage 1's
    network, fixed, and a fresh meta-learner. Rank 0's start on every rank; Adam."""
    config = plan.config
    weights = plan.root / "weights"
    sha = trunk_sha256(config.trunk, weights)
    trunk = Trunk(config.trunk, weights)
    torch.manual_seed(config.seed)
    learner: MetaLearner | None = None
    if config.stage == "match":
        net = MatchingNet(config.trunk)
        trained: torch.nn.Module = net
    else:
        if not config.matching:
            raise ValueError("stage meta needs --set matching=<stage-1 mlt.pt>")
        stage1 = MLTCheckpoint.from_file(config.matching)
        stage1.check_trunk(config.trunk, weights)
        net = stage1.matching_net()
        net.requires_grad_(False)
        learner = MetaLearner()
        trained = learner
    _broadcast(trained)
    optimizer = torch.optim.Adam([p for p in trained.parameters() if p.requires_grad], config.lr)
    return MLTTrainingRun(trunk, net, learner, trained, optimizer, sha)


def _resume_state(plan: MLTTrainingPlan, run: MLTTrainingRun) -> int:
    state = tooling.load_state(plan.state_path, plan.config, free=MONITORING)
    run.net.load_state_dict(state["net"])
    if run.learner is not None:
        run.learner.load_state_dict(state["learner"])
    run.optimizer.load_state_dict(state["optimizer"])
    return int(state["step"])


def _match_loss(
    plan: MLTTrainingPlan,
    run: MLTTrainingRun,
    sampler: FrameSampler,
    side: int,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage match: the balanced logistic loss on ``batch`` exemplar/search pairs (twice: the
    trained loss and the log's base loss are the same here)."""
    net, trunk = run.net, run.trunk
    net.train()
    groups = [sampler.group(rng, 1) for _ in range(plan.config.batch)]
    z4 = net.features4(trunk(to_tensor([g[0] for g in groups])))
    x4 = net.features4(trunk(to_tensor([g[1][0] for g in groups])))
    offsets = torch.tensor(np.stack([g[2][0] for g in groups]), dtype=torch.float32)
    labels = label_map(side, net.stride, offsets)
    loss = balanced_logistic_loss(net.response(net.embed(z4), net.embed(x4)), labels)
    return loss, loss


def _meta_loss(
    plan: MLTTrainingPlan,
    run: MLTTrainingRun,
    sampler: FrameSampler,
    side: int,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage meta: per video, the loss with the meta-learner's kernels and attention on all
    M' images (the gradient from the first M), and the fixed network's loss as the base."""
    config, net, trunk, learner = plan.config, run.net, run.trunk, run.learner
    assert learner is not None
    net.eval()
    learner.train()
    losses, bases = [], []
    for _ in range(config.batch):
        z, xs, offs = sampler.group(rng, config.m_loss)
        with torch.no_grad():
            z4 = net.features4(trunk(to_tensor([z])))
            x4 = net.features4(trunk(to_tensor(xs)))
        labels = label_map(side, net.stride, torch.tensor(offs, dtype=torch.float32))
        m = config.m_context
        grad = conv5_gradient(net, z4, x4[:m], labels[:m])
        kernels, attention = learner(grad)
        zf = net.embed(z4, kernels=kernels, attention=attention)
        xf = net.embed(x4, kernels=kernels, attention=attention)
        losses.append(balanced_logistic_loss(net.response(zf, xf), labels))
        with torch.no_grad():
            bases.append(balanced_logistic_loss(net.response(net.embed(z4), net.embed(x4)), labels))
    return torch.stack(losses).mean(), torch.stack(bases).mean()


def _log_row(step: int, loss: torch.Tensor, base: torch.Tensor, t0: float) -> dict[str, object]:
    """The step's ``log.csv`` row (``val_auc`` filled in at a validated checkpoint)."""
    return {
        "step": step + 1,
        "loss": f"{float(loss.detach()):.5f}",
        "loss_base": f"{float(base.detach()):.5f}",
        "sec_per_step": f"{time.perf_counter() - t0:.3f}",
        "val_auc": "",
    }


def _write_checkpoint(
    plan: MLTTrainingPlan, run: MLTTrainingRun, rows: list[dict[str, object]], step: int
) -> None:
    """``mlt.pt`` (validated when due), ``last.pt``, ``log.csv`` and ``training.png``."""
    config = plan.config
    run.net.eval()
    info = {"train_config": asdict(config), "stage": config.stage, "step": step + 1}
    MLTCheckpoint.from_models(run.net, run.learner, run.trunk_sha, info).to_file(
        plan.checkpoint_path
    )
    if plan.schedule.validates(step):
        rows[-1]["val_auc"] = f"{_val_auc(config, plan.checkpoint_path, plan.root):.4f}"
    state = {"net": run.net.state_dict(), "optimizer": run.optimizer.state_dict()}
    if run.learner is not None:
        state["learner"] = run.learner.state_dict()
    tooling.save_state(plan.state_path, step + 1, config, **state)
    tooling.write_log(plan.log_path, rows, LOG_FIELDS)
    tooling.plot_log(
        rows,
        plan.plot_path,
        ("loss", "loss_base"),
        "val_auc",
        "val AUC (first frames)",
        "no validation in this run",
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=program_name("python train/mlt.py"), description=__doc__.split("\n")[0]
    )
    tooling.add_common_arguments(p, "lr=1e-3 or matching=runs/mlt/match-nanotrack/mlt.pt")
    p.add_argument("--stage", choices=STAGES)
    p.add_argument("--trunk", choices=("nanotrack", "paper"))
    p.add_argument("--out", type=Path, help="run folder (default: runs/mlt/STAGE-TRUNK)")
    p.add_argument("--steps", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--checkpoint-every", type=int)
    p.add_argument("--val-every", type=int)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    flags = ("stage", "trunk", "steps", "seed", "lr", "checkpoint_every", "val_every")
    config = tooling.settings(MLTTrainConfig, args, {}, flags)
    root = data_root(args.data)
    out = args.out or Path("runs") / "mlt" / f"{config.stage}-{config.trunk}"
    path = tooling.run_processes(lambda: train(config, root, out, args.resume, args.train_data))
    if tooling.is_first_process():
        print(f"runtime checkpoint: {path}")
    return 0
