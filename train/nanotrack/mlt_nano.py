"""Train MLT's meta-learner on the frozen NanoTrack v3 base (``mlt-nano``).

    python train/mlt_nano.py [--steps N] [--seed S] [--out DIR] [--set KEY=VALUE ...]
        [--resume] [--data DIR] [--train-data DIR ...]

What is learned: :class:`runtime.nanotrack.kernel_generator.KernelGenerator`, an MLP from the
loss gradient at the base (over context images) to a target-specific kernel, bias and channel
attention of the classification branch's last layer. The base is never changed; every crop's
backbone features are computed once (the crops and their tracking noise are those of
``train/metartt_nano.py``: :func:`train.nanotrack.metartt_nano.cache_video`).

Episodes (one per video drawn), as MLT trains its meta-learner: the gradient over ``m_context``
= M = 8 context crops (the first frame's and 7 later ones) gives the generated layer, whose loss
is taken over ``m_prime`` = M' = 16 crops of the same video (the 8 and 8 more: the paper's
regularization, kernels that hold beyond the images they came from) plus ``distractor_crops``
crops of another video matched with this video's template (every cell background). A second
term does the same for the first-frame generation (context: the first crop alone). Adam on the
generator; its output layer starts at zero, so training starts from the base.

Videos: the ``train`` split and ``train_extra/`` only (``train.datasets``). Outputs in ``--out``
(default ``runs/mlt-nano/seed<S>``): ``config.json``, ``log.csv``, ``training.png``, ``last.pt``
(``--resume``) and ``mlt_nano.pt`` (bound to the base weights' sha256:
``bench.ope --trackers "mlt-nano[generator=OUT/mlt_nano.pt]"``).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from runtime.backends.manifest import checkpoint_record
from runtime.nanotrack.kernel_generator import KernelGenerator, base_gradient, save_generator
from runtime.nanotrack.model import NanoTrackNet, build_network
from runtime.nanotrack.target_layer import CropSample, balanced_loss
from train import tooling
from train.datasets import training_sequences
from train.nanotrack.metartt_nano import NanoMetaConfig, VideoCrops, cache_video, samples

ARTIFACT = "mlt_nano.pt"


@dataclass
class MLTNanoTrainConfig:
    steps: int = 300
    checkpoint_every: int = 100
    seed: int = 0
    lr: float = 1e-3  # Adam on the generator
    episodes_per_step: int = 4
    hidden: int = 256  # the generator's hidden width
    attention: bool = True  # generate the channel attention too (False: kernel and bias only)
    m_context: int = 8  # M (MLT)
    m_prime: int = 16  # M' (MLT's regularization)
    distractor_crops: int = 2
    frames_per_video: int = 30  # later crops cut per video (as train/metartt_nano.py)
    shift: float = 0.15  # crop centre noise, in target sides (std)
    scale_step: float = 1.08  # crop size noise: scale_step ** N(0, 1)

    def crop_settings(self) -> NanoMetaConfig:
        """The crop cache's settings (``cache_video``): the same crops as the MetaRTT layer's."""
        return NanoMetaConfig(
            frames_per_video=self.frames_per_video,
            shift=self.shift,
            scale_step=self.scale_step,
            test_frames=self.m_prime - self.m_context + 1,
            memory_frames=self.m_context - 1,
        )


Plan = tooling.TrainingPlan[MLTNanoTrainConfig]


@dataclass
class MLTNanoRun:
    net: NanoTrackNet
    videos: list[VideoCrops]
    own: list[list[CropSample]]  # each video's crops with its own kernels
    generator: KernelGenerator
    optimizer: torch.optim.Optimizer


def _direction(net: NanoTrackNet) -> torch.Tensor:
    """``cls_logits``' target-minus-background direction (96,)."""
    weight = net.head.cls_logits[0].weight[:, :, 0, 0]
    return (weight[1] - weight[0]).detach()


def _build_run(plan: Plan) -> MLTNanoRun:
    c = plan.config
    net = build_network(plan.root / "weights")
    rng = np.random.default_rng(c.seed)
    crops = c.crop_settings()
    bar = tqdm(training_sequences(plan.root, plan.extra_data), desc="caching crops")
    videos = [v for v in (cache_video(s, net, crops, rng) for s in bar) if v is not None]
    own = [samples(net, v.kernels, v.features, v.labels) for v in videos]
    generator = KernelGenerator(_direction(net), c.hidden, c.attention)
    optimizer = torch.optim.Adam(generator.parameters(), lr=c.lr)
    return MLTNanoRun(net, videos, own, generator, optimizer)


def episode_loss(
    run: MLTNanoRun, config: MLTNanoTrainConfig, video: int, pick: random.Random
) -> tuple[torch.Tensor, torch.Tensor]:
    """One episode: the loss of the first-frame generation and of the M-context generation."""
    own = run.own[video]
    later = own[1:]
    pick.shuffle(later)
    other = run.videos[pick.choice([j for j in range(len(run.videos)) if j != video])]
    chosen = pick.sample(range(1, len(other.labels)), config.distractor_crops)
    background = [torch.zeros_like(other.labels[j]) for j in chosen]
    distractors = samples(run.net, run.videos[video].kernels, other.features[chosen], background)
    m, m_prime = config.m_context, config.m_prime
    w, b = run.generator(base_gradient([own[0]]))
    first_frame = balanced_loss(w, b, later[:m_prime] + distractors)
    context = [own[0], *later[: m - 1]]
    w, b = run.generator(base_gradient(context))
    online = balanced_loss(w, b, context + later[m - 1 : m_prime - 1] + distractors)
    return first_frame, online


def _step(plan: Plan, run: MLTNanoRun, step: int) -> tuple[float, float]:
    c = plan.config
    pick = random.Random(hash((c.seed, step)))  # a resumed run draws what it would have
    run.optimizer.zero_grad()
    first_total = online_total = 0.0
    for _ in range(c.episodes_per_step):
        first, online = episode_loss(run, c, pick.randrange(len(run.videos)), pick)
        ((first + online) / (2 * c.episodes_per_step)).backward()
        first_total += float(first.detach()) / c.episodes_per_step
        online_total += float(online.detach()) / c.episodes_per_step
    run.optimizer.step()
    return first_total, online_total


FIELDS = ["step", "loss_first_frame", "loss_context", "seconds"]


def _write_checkpoint(plan: Plan, run: MLTNanoRun, rows: list[dict[str, object]], step: int):
    info = {"step": step + 1, "config": asdict(plan.config), "videos": len(run.videos)}
    base_sha = checkpoint_record("nanotrack", plan.root / "weights")["sha256"]
    save_generator(plan.checkpoint_path, run.generator, info, base_sha)
    tooling.save_state(
        plan.state_path,
        step + 1,
        plan.config,
        generator=run.generator.state_dict(),
        optimizer=run.optimizer.state_dict(),
    )
    tooling.write_log(plan.log_path, rows, FIELDS)
    tooling.plot_log(rows, plan.plot_path, FIELDS[1:3], "seconds", "seconds per step")


def train(
    config: MLTNanoTrainConfig,
    root: Path,
    out: Path,
    resume: bool = False,
    extra_data: tuple[Path, ...] | list[Path] = (),
) -> Path:
    """Run (or continue) the training in ``out``; returns the checkpoint's path."""
    plan = tooling.TrainingPlan.create(config, root, out, ARTIFACT, resume, extra_data)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    run = _build_run(plan)

    def step(index: int) -> dict[str, float]:
        first, online = _step(plan, run, index)
        return {"loss_first_frame": round(first, 6), "loss_context": round(online, 6)}

    return tooling.run_steps(
        plan,
        "mlt-nano",
        lambda: tooling.resume_into(plan, generator=run.generator, optimizer=run.optimizer),
        step,
        lambda rows, index: _write_checkpoint(plan, run, rows, index),
    )


TOOL = tooling.SeededTool(
    script="mlt_nano.py",
    description="Train MLT's kernel generator on the frozen NanoTrack v3 base.",
    run_dir="mlt-nano",
    default_steps=MLTNanoTrainConfig.steps,
    set_example="lr=0.0005",
    what="kernel-generator checkpoint",
    use=lambda path: f"bench.ope --trackers 'mlt-nano[generator={path}]'",
)


def main(argv: list[str] | None = None) -> int:
    return TOOL.main(MLTNanoTrainConfig, train, argv)
