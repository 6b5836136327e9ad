"""Train the pruning network of the NanoTrack v3 head's towers (MetaRTT's Eq. 9-12 on the base).

    python train/metartt_nano_prune.py [--steps N] [--seed S] [--out DIR] [--set KEY=VALUE ...]
        [--resume] [--data DIR] [--train-data DIR ...]

What is learned: :class:`runtime.prune_net.PruneNet` over the 12 tower blocks of
:mod:`runtime.nanotrack.pruning` (a 96 -> 48 -> 96 perceptron per block). The base is never
changed; every crop's backbone features are computed once (the crops and their tracking noise
are those of ``train/metartt_nano.py``: :func:`train.nanotrack.metartt_nano.cache_video`).

Episodes (one per video drawn), as the tracker prunes: the masks come from the video's first
search crop (its descriptor, under the unpruned head); the objective (Eq. 9-10,
:func:`runtime.nanotrack.pruning.lasso_objective`) is taken over ``test_crops`` later crops of
the same video, cut with tracking noise (Eq. 11's "the frames the pruned tracker will see"):
every block's next-layer output and the two outputs of the masked head must match the unpruned
head's, plus ``sparsity`` times the mean mask. Adam on the pruning network; its output layer
starts at masks of 1, the unpruned head.

Videos: the ``train`` split and ``train_extra/`` only (``train.datasets``). Outputs in ``--out``
(default ``runs/metartt-nano-prune/seed<S>``): ``config.json``, ``log.csv``, ``training.png``,
``last.pt`` (``--resume``) and ``metartt_nano_prune.pt`` (bound to the base weights' sha256:
``bench.ope --trackers "metartt-nano[prune=OUT/metartt_nano_prune.pt]"``).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from runtime.backends.manifest import checkpoint_record
from runtime.nanotrack.model import NanoTrackNet, TemplateKernels, build_network
from runtime.nanotrack.pruning import (
    NanoPruneCheckpoint,
    descriptors,
    head_outputs,
    lasso_objective,
    layer_widths,
    prune_rate,
    relative_macs,
)
from runtime.prune_net import PruneNet, PruneNetConfig
from train import tooling
from train.datasets import training_sequences
from train.nanotrack.metartt_nano import NanoMetaConfig, VideoCrops, cache_video

ARTIFACT = "metartt_nano_prune.pt"


@dataclass
class NanoPruneTrainConfig:
    steps: int = 600  # the prune rate and the loss are flat from ~100 (log.csv)
    checkpoint_every: int = 100
    seed: int = 0
    lr: float = 0.01  # Adam; at MetaRTT's 5e-5 the masks would barely leave 1 in 600 steps
    episodes_per_step: int = 4
    frames_per_video: int = 30  # later crops cached per video (as train/metartt_nano.py)
    test_crops: int = 6  # of them, per episode, the objective is taken over
    # lambda of Eq. 9-10, chosen on val among 0.3 / 0.5 / 1.0 (25 / 46 / 79 % of the tower's
    # channels cut; AUC 0.689 / 0.683 / 0.493 over seeds; docs/nanotrack.md, "Pruning the head")
    sparsity: float = 0.3
    # Which towers are pruned ("cls", "reg" or "cls,reg"). The classification tower only: on
    # val, 7.8 % of the box-regression tower's channels cost 10 AUC points (its outputs are
    # exponentiated edge distances), 11.6 % of the classification tower's none
    # (docs/nanotrack.md, "Pruning the head").
    towers: str = "cls"
    output_weight: float = 1.0  # weight of the head's two outputs in Eq. 9-10 (1: as the blocks)
    net: PruneNetConfig = field(default_factory=PruneNetConfig)

    def crops(self) -> NanoMetaConfig:
        """The crop cache's settings: the same crops as the MetaRTT layer's."""
        return NanoMetaConfig(seed=self.seed, frames_per_video=self.frames_per_video)


@dataclass
class NanoPruneRun:
    net: NanoTrackNet
    videos: list[VideoCrops]
    descriptors: list[dict[str, torch.Tensor]]  # each video's, from its first crop
    prune_net: PruneNet
    optimizer: torch.optim.Optimizer


NanoPrunePlan = tooling.TrainingPlan[NanoPruneTrainConfig]


def _batch(kernels: TemplateKernels, n: int) -> TemplateKernels:
    return TemplateKernels(*(k.expand(n, *k.shape[1:]) for k in kernels))


def _build_run(plan: NanoPrunePlan) -> NanoPruneRun:
    c = plan.config
    net = build_network(plan.root / "weights")
    rng = np.random.default_rng(c.seed)
    sequences = training_sequences(plan.root, plan.extra_data)
    bar = tqdm(sequences, desc="caching crops", dynamic_ncols=True)
    videos = [v for v in (cache_video(s, net, c.crops(), rng) for s in bar) if v is not None]
    with torch.no_grad():
        first = [head_outputs(net.head, v.kernels, v.features[:1], {}) for v in videos]
    torch.manual_seed(c.seed)  # the perceptrons' first layers start at random weights
    prune_net = PruneNet(layer_widths(net.head, tuple(c.towers.split(","))), c.net)
    optimizer = torch.optim.Adam(prune_net.parameters(), lr=c.lr)
    described = [descriptors(o.activations) for o in first]
    return NanoPruneRun(net, videos, described, prune_net, optimizer)


def episode_loss(
    run: NanoPruneRun, config: NanoPruneTrainConfig, video: int, pick: random.Random
) -> tuple[torch.Tensor, dict[str, float]]:
    v = run.videos[video]
    chosen = pick.sample(range(1, len(v.features)), config.test_crops)
    xf, kernels = v.features[chosen], _batch(v.kernels, len(chosen))
    masks = run.prune_net(run.descriptors[video])
    with torch.no_grad():
        reference = head_outputs(run.net.head, kernels, xf, {})
    pruned = head_outputs(run.net.head, kernels, xf, masks)
    loss, figures = lasso_objective(reference, pruned, masks, config.sparsity, config.output_weight)
    figures |= {"prune_rate": prune_rate(masks), "tower_macs": relative_macs(masks)}
    return loss, figures


def _step(plan: NanoPrunePlan, run: NanoPruneRun, step: int) -> dict[str, float]:
    c = plan.config
    pick = random.Random(hash((c.seed, step)))  # a resumed run draws what it would have
    torch.manual_seed(c.seed * 1_000_003 + step)  # and drops out the same units
    run.prune_net.train()
    run.optimizer.zero_grad()
    totals: dict[str, float] = {}
    for _ in range(c.episodes_per_step):
        loss, figures = episode_loss(run, c, pick.randrange(len(run.videos)), pick)
        (loss / c.episodes_per_step).backward()
        for key, value in {"loss": float(loss.detach()), **figures}.items():
            totals[key] = totals.get(key, 0.0) + value / c.episodes_per_step
    run.optimizer.step()
    return {key: round(value, 6) for key, value in totals.items()}


def _write_checkpoint(
    plan: NanoPrunePlan, run: NanoPruneRun, rows: list[dict[str, object]], step: int
) -> None:
    c = plan.config
    info = {"step": step + 1, "config": asdict(c), "videos": len(run.videos)}
    base_sha = checkpoint_record("nanotrack", plan.root / "weights")["sha256"]
    state = {n: t.detach().clone() for n, t in run.prune_net.state_dict().items()}
    NanoPruneCheckpoint(state, run.prune_net.widths, c.net, info).to_file(
        plan.checkpoint_path, base_sha
    )
    tooling.save_state(
        plan.state_path, step + 1, c, net=state, optimizer=run.optimizer.state_dict()
    )
    fields = ["step", "loss", "recon", "l1", "prune_rate", "tower_macs", "seconds"]
    tooling.write_log(plan.log_path, rows, fields)
    tooling.plot_log(rows, plan.plot_path, fields[1:6], "seconds", "seconds per step")


def train(
    config: NanoPruneTrainConfig,
    root: Path,
    out: Path,
    resume: bool = False,
    extra_data: tuple[Path, ...] | list[Path] = (),
) -> Path:
    """Run (or continue) the training in ``out``; returns the checkpoint's path."""
    plan = tooling.TrainingPlan.create(config, root, out, ARTIFACT, resume, extra_data)
    out.mkdir(parents=True, exist_ok=True)
    run = _build_run(plan)
    return tooling.run_steps(
        plan,
        "metartt-nano-prune",
        lambda: tooling.resume_into(plan, net=run.prune_net, optimizer=run.optimizer),
        lambda index: _step(plan, run, index),
        lambda rows, index: _write_checkpoint(plan, run, rows, index),
    )


TOOL = tooling.SeededTool(
    script="metartt_nano_prune.py",
    description="Train the pruning network of the NanoTrack v3 head's towers (MetaRTT).",
    run_dir="metartt-nano-prune",
    default_steps=NanoPruneTrainConfig.steps,
    set_example="sparsity=0.5",
    what="head-pruning checkpoint",
    use=lambda path: f"bench.ope --trackers 'metartt-nano[prune={path}]'",
)


def main(argv: list[str] | None = None) -> int:
    return TOOL.main(NanoPruneTrainConfig, train, argv)
