"""Meta-train the NanoTrack target layer's rule (MetaRTT's Algorithm 1 on the frozen base).

    python train/metartt_nano.py [--steps N] [--seed S] [--out DIR] [--set KEY=VALUE ...]
        [--resume] [--data DIR] [--train-data DIR ...]

What is learned (:class:`runtime.nanotrack.target_layer.AdaptRule`, 97 + 10 x 97 numbers):
``theta_init^0`` of the residual layer ``w . f + b`` on the classification features, and the
per-parameter rates of its ``K_init`` first-frame and ``K_on`` online steps. The base network is
never changed: every search crop's backbone features are computed once, before training.

Episodes (one per video drawn): the first frame's crop centred on the target (as the tracker
cuts it at ``init``) is the adaptation sample; ``frames_per_video`` later frames are cut where a
tracker would have put its crop (the true centre shifted by ``shift`` target sides, the size
scaled by ``scale_step ** N(0, 1)``: tracking noise) and labelled at the true box. The loss is
the class-balanced cell loss after the ``K_init`` steps on ``test_frames`` later crops plus
``distractor_crops`` crops of another video (every cell background: hard examples from other
videos, as MetaRTT), and again after ``K_on`` online steps on ``memory_frames`` more crops:
differentiated through all steps (second order). Adam on the rule; rates kept >= 0.

Videos: the ``train`` split of ``sequences/`` and ``train_extra/`` (``train.datasets``; a val
name is refused). Outputs in ``--out`` (default ``runs/metartt-nano/seed<S>``): ``config.json``,
``log.csv``, ``training.png``, ``last.pt`` (``--resume``), ``metartt_nano.pt`` (the
runtime checkpoint, bound to the base weights' sha256: ``bench.ope --trackers
"metartt-nano[rule=OUT/metartt_nano.pt]"``; the shipped one is
``runtime/checkpoints/metartt_nano.pt``).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from runtime.backends.manifest import checkpoint_record
from runtime.nanotrack.config import NanoTrackConfig
from runtime.nanotrack.model import NanoTrackNet, TemplateKernels, build_network
from runtime.nanotrack.target_layer import (
    AdaptRule,
    CropSample,
    adapt,
    balanced_loss,
    cell_labels,
    save_rule,
)
from runtime.nanotrack.tracker import (
    cell_points,
    frame_fill,
    map_side,
    search_crop,
    search_scale,
    template_crop,
)
from runtime.sequences import Sequence
from train import tooling
from train.datasets import annotated, read_frame, training_sequences

ARTIFACT = "metartt_nano.pt"


@dataclass
class NanoMetaConfig:
    steps: int = 300  # converged on the train split (log.csv flat from ~200)
    checkpoint_every: int = 100
    seed: int = 0
    lr: float = 0.01  # Adam on the rule
    episodes_per_step: int = 4
    init_steps: int = 5  # K_init (MetaRTT)
    online_steps: int = 5  # K_on (MetaRTT)
    initial_rate: float = 1.0  # starts at the plain fine-tuning rate (metartt-nano[rule=plain])
    frames_per_video: int = 30  # later frames cut per video, spread evenly over it
    shift: float = 0.15  # crop centre noise, in target sides (std)
    scale_step: float = 1.08  # crop size noise: scale_step ** N(0, 1)
    test_frames: int = 4
    memory_frames: int = 3
    distractor_crops: int = 2


@dataclass(frozen=True)
class VideoCrops:
    """One video's cached crops: the template's kernels and the backbone features of its first
    crop (index 0) and of ``frames_per_video`` later ones, with their cell labels."""

    name: str
    kernels: TemplateKernels
    features: torch.Tensor  # (1 + frames, 96, 16, 16) backbone output
    labels: list[torch.Tensor]


def _tensor(crop: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1))).float()


def cache_video(
    sequence: Sequence, net: NanoTrackNet, config: NanoMetaConfig, rng: np.random.Generator
) -> VideoCrops | None:
    """Cut and run the backbone on one video's crops (None when it has too few usable frames)."""
    base = NanoTrackConfig()
    indices = annotated(sequence)
    if len(indices) < config.test_frames + config.memory_frames + 2:
        return None
    gt = sequence.ground_truth
    first_index = int(indices[0])
    first = read_frame(sequence.frame_paths[first_index])
    fill = frame_fill(first)
    points = cell_points(map_side(base.instance_size), base.stride)
    later = indices[1:][np.linspace(0, len(indices) - 2, config.frames_per_video).astype(int)]
    crops, labels = [], []
    for k, index in enumerate([first_index, *later.tolist()]):
        box = gt[index]
        frame = first if k == 0 else read_frame(sequence.frame_paths[index])
        true_center, size = box[:2] + box[2:] / 2.0, box[2:].copy()
        center = true_center.copy()
        if k > 0:  # where a tracker's crop would be: off by its error
            center = center + rng.normal(0.0, config.shift, 2) * size
            size = size * config.scale_step ** rng.normal(0.0, 1.0, 2)
        scale = search_scale(size, base)
        crops.append(_tensor(search_crop(frame, center, size, base.instance_size, base, fill)))
        labels.append(cell_labels(points, (true_center - center) * scale, box[2:] * scale))
    with torch.inference_mode():
        kernels = net.template(_tensor(template_crop(first, gt[first_index], base, fill))[None])
        features = net.backbone(torch.stack(crops))
    return VideoCrops(sequence.name, kernels, features.clone(), labels)


def samples(
    net: NanoTrackNet,
    kernels: TemplateKernels,
    features: torch.Tensor,
    labels: list[torch.Tensor],
) -> list[CropSample]:
    """The target layer's view of crops (backbone ``features``) matched with ``kernels``."""
    with torch.no_grad():
        batch = TemplateKernels(*(k.expand(len(features), *k.shape[1:]) for k in kernels))
        cls = net.head.classify_features(batch, features)
        logits = net.head.cls_logits(cls)
    margins = (logits[:, 1] - logits[:, 0]).flatten(1)
    return [CropSample(f, m, y) for f, m, y in zip(cls.flatten(2), margins, labels, strict=True)]


NanoMetaPlan = tooling.TrainingPlan[NanoMetaConfig]


@dataclass
class NanoMetaRun:
    """What one training run holds: the base, the cached videos, the rule and its optimizer."""

    net: NanoTrackNet
    videos: list[VideoCrops]
    own: list[list[CropSample]]  # each video's crops with its own kernels
    rule: AdaptRule
    optimizer: torch.optim.Optimizer


def _build_run(plan: NanoMetaPlan) -> NanoMetaRun:
    c = plan.config
    net = build_network(plan.root / "weights")
    rng = np.random.default_rng(c.seed)
    sequences = training_sequences(plan.root, plan.extra_data)
    bar = tqdm(sequences, desc="caching crops", dynamic_ncols=True)
    cached = [cache_video(s, net, c, rng) for s in bar]
    videos = [v for v in cached if v is not None]
    own = [samples(net, v.kernels, v.features, v.labels) for v in videos]
    rule = AdaptRule.plain(c.init_steps, c.online_steps, c.initial_rate)
    for tensor in rule.parameters():
        tensor.requires_grad_(True)
    return NanoMetaRun(net, videos, own, rule, torch.optim.Adam(rule.parameters(), lr=c.lr))


def episode_loss(
    run: NanoMetaRun, config: NanoMetaConfig, video: int, pick: random.Random
) -> tuple[torch.Tensor, torch.Tensor]:
    """One episode's loss: after the first-frame steps and after the online steps."""
    own = run.own[video]
    later = own[1:]
    pick.shuffle(later)
    other = run.videos[pick.choice([j for j in range(len(run.videos)) if j != video])]
    chosen = pick.sample(range(1, len(other.labels)), config.distractor_crops)
    background = [torch.zeros_like(other.labels[j]) for j in chosen]
    distractors = samples(run.net, run.videos[video].kernels, other.features[chosen], background)
    rule = run.rule
    t, m = config.test_frames, config.memory_frames
    w, b = adapt(rule.w0, rule.b0, [own[0]], rule.init_rates_w, rule.init_rates_b, True)
    after_init = balanced_loss(w, b, later[:t] + distractors)
    memory = [own[0], *later[t : t + m]]
    w, b = adapt(w, b, memory, rule.online_rates_w, rule.online_rates_b, True)
    after_online = balanced_loss(w, b, later[t + m : 2 * t + m] + distractors)
    return after_init, after_online


def _step(plan: NanoMetaPlan, run: NanoMetaRun, step: int) -> tuple[float, float]:
    c = plan.config
    pick = random.Random(hash((c.seed, step)))  # a resumed run draws what it would have
    run.optimizer.zero_grad()
    init_total = online_total = 0.0
    for _ in range(c.episodes_per_step):
        after_init, after_online = episode_loss(run, c, pick.randrange(len(run.videos)), pick)
        ((after_init + after_online) / (2 * c.episodes_per_step)).backward()
        init_total += float(after_init.detach()) / c.episodes_per_step
        online_total += float(after_online.detach()) / c.episodes_per_step
    run.optimizer.step()
    with torch.no_grad():
        for rates in run.rule.parameters()[2:]:
            rates.clamp_(min=0.0)
    return init_total, online_total


def _write_checkpoint(
    plan: NanoMetaPlan, run: NanoMetaRun, rows: list[dict[str, object]], step: int
) -> None:
    info = {"step": step + 1, "config": asdict(plan.config), "videos": len(run.videos)}
    base_sha = checkpoint_record("nanotrack", plan.root / "weights")["sha256"]
    save_rule(plan.checkpoint_path, run.rule, info, base_sha)
    tooling.save_state(
        plan.state_path,
        step + 1,
        plan.config,
        rule=run.rule.state(),
        optimizer=run.optimizer.state_dict(),
    )
    fields = ["step", "loss_after_init", "loss_after_online", "seconds"]
    tooling.write_log(plan.log_path, rows, fields)
    tooling.plot_log(rows, plan.plot_path, fields[1:3], "seconds", "seconds per step")


def _resume_state(plan: NanoMetaPlan, run: NanoMetaRun) -> int:
    state = tooling.load_state(plan.state_path, plan.config, free=("steps", "checkpoint_every"))
    with torch.no_grad():
        names = ("w0", "b0", "init_rates_w", "init_rates_b", "online_rates_w", "online_rates_b")
        for name, tensor in zip(names, run.rule.parameters(), strict=True):
            tensor.copy_(state["rule"][name])
    run.optimizer.load_state_dict(state["optimizer"])
    return int(state["step"])


def train(
    config: NanoMetaConfig,
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
        after_init, after_online = _step(plan, run, index)
        return {
            "loss_after_init": round(after_init, 6),
            "loss_after_online": round(after_online, 6),
        }

    return tooling.run_steps(
        plan,
        "metartt-nano",
        lambda: _resume_state(plan, run),
        step,
        lambda rows, index: _write_checkpoint(plan, run, rows, index),
    )


TOOL = tooling.SeededTool(
    script="metartt_nano.py",
    description="Meta-train the target layer on the frozen NanoTrack v3 base (MetaRTT).",
    run_dir="metartt-nano",
    default_steps=NanoMetaConfig.steps,
    set_example="lr=0.005",
    what="target-layer checkpoint",
    use=lambda path: f"bench.ope --trackers 'metartt-nano[rule={path}]'",
)


def main(argv: list[str] | None = None) -> int:
    return TOOL.main(NanoMetaConfig, train, argv)
