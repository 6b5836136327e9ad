"""MetaRTT at tracking time: the checkpoint format, and the tracker adapting with learned rates."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from runtime.rtmdnet import RTMDNetConfig, RTMDNetTracker
from runtime.rtmdnet.head import FCHead
from runtime.rtmdnet.meta import (
    SHIPPED_CHECKPOINT,
    BatchSpec,
    MetaCheckpoint,
    MetaCheckpointError,
    adapt,
)
from runtime.sequences import load_sequence
from tests.support import CROSSING, needs_weights
from train.rtmdnet.meta_learning import MetaConfig, TrainingMetaLearner

FEATURE_DIM = 96 * 3 * 3  # NanoTrack's 96 channels, 3x3 RoIAlign
FAST = {"n_neg_init": 2000, "init_jitter_scales": (1.0, 1.1)}


def _learner(dim: int = FEATURE_DIM, width: int = 32, k_on: int = 5, lr: float = 0.1):
    torch.manual_seed(0)
    return TrainingMetaLearner(FCHead(dim, width), MetaConfig(k_on=k_on, lr_init_value=lr))


def _checkpoint(tmp_path, name="meta.pt", **kwargs) -> MetaCheckpoint:
    ckpt = _learner(**kwargs).to_checkpoint("nanotrack", {"note": "test"})
    ckpt.to_file(tmp_path / name)
    return MetaCheckpoint.from_file(tmp_path / name)


def test_checkpoint_round_trip_keeps_weights_and_rates_in_float16(tmp_path):
    learner = _learner()
    with torch.no_grad():
        for step in learner.lr_init:
            for rate in step.values():
                rate.uniform_(0.01, 0.2)
    sha = learner.to_checkpoint("nanotrack").to_file(tmp_path / "m.pt")
    loaded = MetaCheckpoint.from_file(tmp_path / "m.pt")
    assert loaded.sha256 == sha and loaded.backbone == "nanotrack"
    raw = torch.load(tmp_path / "m.pt", weights_only=True)
    assert raw["lr_init"][0]["fc4.0.weight"].dtype == torch.float16
    assert raw["head"]["fc4.0.weight"].dtype == torch.float32
    head = loaded.build_head()
    for name, p in learner.head.named_parameters():
        assert torch.equal(dict(head.named_parameters())[name], p)
    for mine, theirs in zip(learner.rates("init"), loaded.rates("init"), strict=True):
        for name in mine:
            torch.testing.assert_close(theirs[name], mine[name].detach(), rtol=1e-3, atol=0)
    assert len(loaded.rates("on")) == 5


def test_refuses_foreign_files_and_other_backbones(tmp_path):
    with pytest.raises(MetaCheckpointError, match="not found"):
        MetaCheckpoint.from_file(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(MetaCheckpointError, match="not a readable checkpoint"):
        MetaCheckpoint.from_file(tmp_path / "junk.pt")
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(MetaCheckpointError, match="not a MetaRTT checkpoint"):
        MetaCheckpoint.from_file(tmp_path / "other.pt")
    ckpt = _checkpoint(tmp_path)
    with pytest.raises(MetaCheckpointError, match="backbone 'nanotrack'"):
        ckpt.check_compatible("mobilenet_v2", 320 * 9)


def test_tracking_step_equals_the_meta_training_step():
    """The tracker's adapt (no graph) gives the very weights the meta-training inner loop gives."""
    learner = _learner(dim=20, width=16)
    gen = torch.Generator().manual_seed(3)
    pos, neg = torch.randn(40, 20, generator=gen) + 1, torch.randn(300, 20, generator=gen) - 1
    spec = BatchSpec(batch_pos=8, batch_neg=16, batch_neg_cand=64)
    trained = learner.adapt(
        learner.initial_params(), pos, neg, "init", spec, np.random.default_rng(5)
    )
    plain = {n: p.detach().clone() for n, p in learner.initial_params().items()}
    rates = [{n: r.detach() for n, r in step.items()} for step in learner.rates("init")]
    tracked = adapt(learner.head, plain, pos, neg, rates, spec, np.random.default_rng(5))
    for name, p in trained.items():
        torch.testing.assert_close(tracked[name], p.detach(), rtol=1e-6, atol=1e-7)
        assert not tracked[name].requires_grad


def test_low_precision_steps_stay_close_to_float32_and_keep_float32_weights():
    """update_precision=bfloat16: the same samples (same RNG), the step's arithmetic in bf16."""
    learner = _learner(dim=20, width=16)
    gen = torch.Generator().manual_seed(3)
    pos, neg = torch.randn(40, 20, generator=gen) + 1, torch.randn(300, 20, generator=gen) - 1
    spec = BatchSpec(batch_pos=8, batch_neg=16, batch_neg_cand=64)
    start = {n: p.detach().clone() for n, p in learner.initial_params().items()}
    rates = [{n: r.detach() for n, r in step.items()} for step in learner.rates("init")]
    exact = adapt(learner.head, start, pos, neg, rates, spec, np.random.default_rng(5))
    low = adapt(
        learner.head,
        start,
        pos,
        neg,
        rates,
        spec,
        np.random.default_rng(5),
        step_dtype=torch.bfloat16,
    )
    for name, p in exact.items():
        assert low[name].dtype == torch.float32
        moved = (p - start[name]).norm()
        assert (low[name] - p).norm() < 0.05 * moved + 1e-6, name
        assert not torch.equal(low[name], p)  # it did run in bf16


@needs_weights  # the tracker builds its backbone before it checks the precision
def test_an_unknown_precision_is_refused_when_the_tracker_is_built():
    with pytest.raises(ValueError, match="unknown precision 'float8'"):
        RTMDNetTracker(RTMDNetConfig(update_precision="float8"))


def _crossing(n: int):
    sequence = load_sequence(CROSSING)
    frames = [cv2.imread(str(p)) for p in sequence.frame_paths[:n]]
    return frames, sequence.ground_truth[0]


@needs_weights
def test_tracker_starts_from_theta_init_and_uses_the_learned_rates(tmp_path):
    frames, box = _crossing(12)
    zero = _learner(lr=0.0).to_checkpoint("nanotrack")
    zero.to_file(tmp_path / "zero.pt")
    tracker = RTMDNetTracker(RTMDNetConfig(meta=str(tmp_path / "zero.pt"), **FAST))
    tracker.init(frames[0], box)
    # Zero rates: 5 steps change nothing, so the head is exactly theta_init^0.
    for name, p in tracker.head.named_parameters():
        assert torch.equal(p, zero.head_state[name]), name

    _checkpoint(tmp_path, "meta.pt")
    tracker = RTMDNetTracker(RTMDNetConfig(meta=str(tmp_path / "meta.pt"), **FAST))
    tracker.init(frames[0], box)
    moved = [not torch.equal(p, zero.head_state[n]) for n, p in tracker.head.named_parameters()]
    assert all(moved)
    for frame in frames[1:]:  # frame 10 runs a long-term update: 5 steps from theta_init^K
        out, score = tracker.update(frame)
        assert np.isfinite(out).all() and np.isfinite(score)
    assert tracker.head.fc4[0].out_features == 32  # the checkpoint's width, not the config's


@needs_weights
def test_init_only_checkpoint_keeps_rtmdnet_online_updates(tmp_path):
    frames, box = _crossing(11)
    _checkpoint(tmp_path, "init_only.pt", k_on=0)
    tracker = RTMDNetTracker(RTMDNetConfig(meta=str(tmp_path / "init_only.pt"), **FAST))
    tracker.init(frames[0], box)
    calls = []
    tracker._train = lambda *args: calls.append(args[-1])  # record RT-MDNet's SGD updates
    for frame in frames[1:]:
        tracker.update(frame)
    assert calls and all(steps == tracker.config.maxiter_update for steps in calls)


@needs_weights
def test_refuses_a_checkpoint_for_another_backbone(tmp_path):
    _checkpoint(tmp_path, "meta.pt")
    config = RTMDNetConfig(meta=str(tmp_path / "meta.pt"), backbone="mobilenet_v2")
    with pytest.raises(MetaCheckpointError, match="trained on backbone 'nanotrack'"):
        RTMDNetTracker(config)


def test_the_shipped_checkpoint_is_small_and_loads():
    ckpt = MetaCheckpoint.from_file(SHIPPED_CHECKPOINT)
    assert ckpt.backbone == "nanotrack" and len(ckpt.lr_init) == 5 and len(ckpt.lr_on) == 5
    assert SHIPPED_CHECKPOINT.stat().st_size < 20 * 2**20
    assert ckpt.info["train_config"]["meta"]["k_init"] == 5
