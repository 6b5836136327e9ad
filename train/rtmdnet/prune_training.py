"""Train MetaRTT's pruning network (Jung et al., AAAI 2020, Eq. 11-12) with the tracker fixed.

    python train/prune.py [--meta CKPT] [--variant net|static] [--steps N] [--sparsity L]
        [--out DIR] [--set KEY=VALUE ...] [--resume]
    torchrun --nproc_per_node 2 train/prune.py ...     # gradients averaged over processes

The meta-learned tracker (``--meta``, default: the shipped ``runtime/checkpoints/metartt.pt``)
stays fixed. Every step draws one training episode exactly as ``train/meta.py`` does (train split
and ``train_extra``, never ``val``) and simulates it with that tracker, no gradient:
``theta_init^K`` from ``K_init`` learned steps on ``D_init``; the middle frames tracked by it and
``D_on`` pooled around its estimates; ``theta_on^1 .. theta_on^K`` from the ``K_on`` online steps.
The pruning network sees the ``D_init`` descriptors under ``theta_init^K`` (what the tracker will
see at a first frame) and outputs the masks; the loss is Eq. 11: the masked network must
reconstruct the unpruned one's layer outputs for *every* parameter set of the episode, on the
samples the tracker scores later (``D_test`` and ``D_on``), plus ``sparsity`` x L1(masks).
Adam at 5e-5 (the paper's rate).

Variants: ``net`` (Eq. 12, the default) and ``static`` (one learned mask vector per layer, the
same for every video; Adam at 5e-3, since a free vector moves only ~lr per Adam step).

Outputs in ``--out`` (default ``runs/prune/VARIANT``): ``config.json``, ``log.csv`` (loss, its
parts, the episode's prune rate and kept share per layer), ``training.png``, ``last.pt``
(atomic, every ``--checkpoint-every`` steps; ``--resume`` continues it) and ``prune.pt`` (for
the tracker: ``python -m runtime.track VIDEO --prune OUT/prune.pt``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from runtime.cli.program import program_name
from runtime.paths import data_root
from runtime.prune_net import PruneNet, PruneNetConfig
from runtime.rtmdnet.head import fast_low_precision
from runtime.rtmdnet.meta import (
    SHIPPED_CHECKPOINT,
    BatchSpec,
    MetaCheckpoint,
    Params,
    adapt,
    forward_with,
)
from runtime.rtmdnet.prune import (
    LAYERS,
    ChannelSelection,
    Masks,
    PruneCheckpoint,
    channel_macs,
    descriptors,
    lasso_objective,
    layer_widths,
)
from train import tooling
from train.datasets import training_sequences
from train.rtmdnet.episodes import EpisodeConfig, EpisodeSampler
from train.rtmdnet.meta_training import build_extractor, episode_data, online_samples

VARIANTS: dict[str, dict[str, object]] = {
    "net": {},
    "static": {"net.static": True, "lr": 5e-3},
}
MONITORING = ("steps", "checkpoint_every")  # free on --resume
LOG_FIELDS = [
    "step",
    "loss",
    "recon",
    "l1",
    "prune_rate",
    *(f"kept_{layer}" for layer in LAYERS),
    "sec_per_step",
]


@dataclass
class PruneTrainConfig:
    steps: int = 1000
    lr: float = 5e-5  # Adam, the paper's rate for the pruning network
    # L1 weight of Eq. 9-11. Chosen for a prune rate near one half (docs/metartt.md).
    sparsity: float = 0.1
    # False: the paper's L1 (mean mask per layer). True: each channel weighted by the MACs it
    # costs a frame (runtime.rtmdnet.prune.channel_macs), meant to push the output conv; measured,
    # it keeps every conv channel and cuts fc4 harder (docs/speed.md).
    flop_weighted: bool = False
    seed: int = 0
    meta: str = ""  # meta checkpoint; "" = the shipped one
    backbone: str = "nanotrack"
    checkpoint_every: int = 50
    net: PruneNetConfig = field(default_factory=PruneNetConfig)
    episode: EpisodeConfig = field(default_factory=EpisodeConfig)

    @property
    def meta_path(self) -> Path:
        return Path(self.meta) if self.meta else SHIPPED_CHECKPOINT


@dataclass
class EpisodeTrajectory:
    """One simulated episode: every parameter set the tracker passes through, and its data."""

    params: list[Params]  # theta_init^K, theta_on^1 .. theta_on^K
    init_samples: torch.Tensor  # D_init (scaled), for the descriptors
    later_samples: torch.Tensor  # D_test and D_on (scaled): what the tracker scores later


def simulate(
    meta: MetaCheckpoint,
    extractor,
    config: PruneTrainConfig,
    sampler: EpisodeSampler,
    rng: np.random.Generator,
) -> EpisodeTrajectory:
    """Draw an episode and run the fixed meta-learned tracker through it (no gradient)."""
    tracker = config.episode.tracker
    spec = BatchSpec(tracker.batch_pos, tracker.batch_neg, tracker.batch_neg_cand)
    mining = fast_low_precision(torch.device("cpu"))
    head = meta.build_head()
    episode = sampler.sample(rng)
    data = episode_data(extractor, episode, config.episode)
    start = {n: p.detach() for n, p in head.named_parameters()}
    theta_init = adapt(
        head, start, data.init_pos, data.init_neg, meta.rates("init"), spec, rng,
        mining_dtype=mining,
    )  # fmt: skip
    pos_memory, neg_memory, _ = online_samples(
        extractor,
        episode,
        data,
        lambda x: forward_with(head, theta_init, x)[:, 1],
        config.episode,
        True,
        rng,
    )
    trajectory = [theta_init]
    pos, neg = torch.cat(pos_memory), torch.cat(neg_memory)
    for step_rates in meta.rates("on"):  # one step at a time: every theta_on^k enters Eq. 11
        trajectory.append(
            adapt(head, trajectory[-1], pos, neg, [step_rates], spec, rng, mining_dtype=mining)
        )
    later = [data.test_pos, data.test_neg, *pos_memory[1:], *neg_memory[1:]]
    return EpisodeTrajectory(
        trajectory, torch.cat([data.init_pos, data.init_neg]), torch.cat(later)
    )


def _all_reduce_mean(net: PruneNet) -> None:
    world = dist.get_world_size()
    for p in net.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world


PruneTrainingPlan = tooling.TrainingPlan[PruneTrainConfig]


@dataclass
class PruneTrainingRun:
    """What a pruning-network run holds: the fixed tracker, and the network being trained."""

    meta: MetaCheckpoint  # the meta-learned tracker, fixed
    extractor: object  # its frozen backbone + RoIAlign (train.rtmdnet.meta_training)
    net: PruneNet
    optimizer: torch.optim.Optimizer
    cells: int  # RoI cells per channel (roi_size ** 2)


def train(
    config: PruneTrainConfig,
    root: Path,
    out: Path,
    resume: bool = False,
    extra_data: Sequence[Path] = (),
) -> Path:
    """Run (or continue) pruning-network training in ``out``; returns the ``prune.pt`` path."""
    plan = tooling.TrainingPlan.create(config, root, out, "prune.pt", resume, extra_data)
    _prepare(plan)
    run = _build_run(plan)
    start = tooling.start_step(plan, lambda: _resume_state(plan, run))
    rows = tooling.open_log(plan, start)
    sampler = EpisodeSampler(
        training_sequences(plan.root, plan.extra_data), config.episode, seed=config.seed
    )
    desc = f"prune-train ({'static' if config.net.static else 'net'})"
    bar = tooling.progress(plan, start, desc)
    for step in bar:
        t0 = time.perf_counter()
        loss, parts, masks = _prune_step(plan, run, sampler, step)
        if not plan.is_first:
            continue
        row = _log_row(step, loss, parts, masks, t0)
        rows.append(row)
        bar.set_postfix(loss=row["loss"], pruned=row["prune_rate"])
        if plan.schedule.writes_checkpoint(step):
            _write_checkpoint(plan, run, rows, step)
    if plan.distributed:
        dist.barrier()
    return plan.checkpoint_path


def _prepare(plan: PruneTrainingPlan) -> None:
    """The run folder, and the tracker settings on the backbone the run trains with."""
    plan.out.mkdir(parents=True, exist_ok=True)
    plan.config.episode.tracker.backbone = plan.config.backbone


def _build_run(plan: PruneTrainingPlan) -> PruneTrainingRun:
    """The fixed tracker (checked against the backbone), the pruning network (seeded), Adam."""
    config = plan.config
    cells = config.episode.tracker.roi_size**2
    meta = MetaCheckpoint.from_file(config.meta_path)
    extractor = build_extractor(config, plan.root)
    meta.check_compatible(config.backbone, extractor.feature_dim)
    torch.manual_seed(config.seed)
    net = PruneNet(layer_widths(meta.build_head(), cells), config.net)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    return PruneTrainingRun(meta, extractor, net, optimizer, cells)


def _resume_state(plan: PruneTrainingPlan, run: PruneTrainingRun) -> int:
    state = tooling.load_state(plan.state_path, plan.config, free=MONITORING)
    run.net.load_state_dict(state["net"])
    run.optimizer.load_state_dict(state["optimizer"])
    return int(state["step"])


def _prune_step(
    plan: PruneTrainingPlan, run: PruneTrainingRun, sampler: EpisodeSampler, step: int
) -> tuple[torch.Tensor, dict[str, float], Masks]:
    """One simulated episode, the masks for it, Eq. 11's loss, one Adam step (gradients averaged
    over the processes)."""
    rng = plan.step_rng(step)
    # Dropout draws from torch's global generator: seeded per step, so a resumed run
    # draws what the uninterrupted one did.
    torch.manual_seed(int(rng.integers(2**62)))
    episode = simulate(run.meta, run.extractor, plan.config, sampler, rng)
    run.net.train()
    masks = run.net(descriptors(episode.params[0], episode.init_samples, run.cells, rng))
    macs = channel_macs(run.net.widths, run.cells) if plan.config.flop_weighted else None
    loss, parts = lasso_objective(
        episode.params, episode.later_samples, masks, plan.config.sparsity, run.cells, macs
    )
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if plan.distributed:
        _all_reduce_mean(run.net)
    run.optimizer.step()
    return loss, parts, masks


def _log_row(
    step: int,
    loss: torch.Tensor,
    parts: dict[str, float],
    masks: Masks,
    t0: float,
) -> dict[str, object]:
    """The step's ``log.csv`` row: the loss, its parts, the episode's prune rate and kept shares."""
    selection = ChannelSelection.from_masks(masks)
    widths = {layer: len(m) for layer, m in selection.masks.items()}
    return {
        "step": step + 1,
        "loss": f"{float(loss.detach()):.5f}",
        "recon": f"{parts['recon']:.5f}",
        "l1": f"{parts['l1']:.5f}",
        "prune_rate": f"{selection.prune_rate:.4f}",
        **{f"kept_{k}": f"{n / widths[k]:.4f}" for k, n in selection.kept().items()},
        "sec_per_step": f"{time.perf_counter() - t0:.3f}",
    }


def _write_checkpoint(
    plan: PruneTrainingPlan, run: PruneTrainingRun, rows: list[dict[str, object]], step: int
) -> None:
    """``prune.pt``, ``last.pt``, ``log.csv`` and ``training.png``."""
    config, net = plan.config, run.net
    info = {"train_config": asdict(config), "step": step + 1}
    PruneCheckpoint(net.state_dict(), net.widths, config.net, run.meta.sha256, info).to_file(
        plan.checkpoint_path
    )
    tooling.save_state(
        plan.state_path,
        step + 1,
        config,
        net=net.state_dict(),
        optimizer=run.optimizer.state_dict(),
    )
    tooling.write_log(plan.log_path, rows, LOG_FIELDS)
    tooling.plot_log(rows, plan.plot_path, ("loss", "recon", "l1"), "prune_rate", "prune rate")


# ------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=program_name("python train/prune.py"),
        description="Train MetaRTT's channel-pruning network (the meta-learned tracker fixed).",
    )
    tooling.add_common_arguments(p, "net.dropout=0.5 or episode.n_neg_init=2000")
    p.add_argument("--meta", help="meta checkpoint (default: the shipped one)")
    p.add_argument("--out", type=Path, help="run folder (default: runs/prune/VARIANT)")
    p.add_argument("--variant", choices=sorted(VARIANTS), default="net")
    p.add_argument("--steps", type=int, help="training steps (default 1000)")
    p.add_argument("--sparsity", type=float, help="L1 weight (default 0.1)")
    p.add_argument(
        "--flop-weighted",
        action="store_true",
        default=None,
        help="weight each channel's L1 term by the MACs it costs a frame (default: the paper's L1)",
    )
    p.add_argument("--seed", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--checkpoint-every", type=int)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    flags = ("steps", "sparsity", "flop_weighted", "seed", "lr", "checkpoint_every", "meta")
    config = tooling.settings(PruneTrainConfig, args, VARIANTS[args.variant], flags)
    root = data_root(args.data)
    out = args.out or Path("runs") / "prune" / args.variant
    path = tooling.run_processes(lambda: train(config, root, out, args.resume, args.train_data))
    if tooling.is_first_process():
        print(f"pruning checkpoint: {path}  (python -m runtime.track VIDEO --prune {path})")
    return 0
