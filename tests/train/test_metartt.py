"""MetaRTT's meta-learning core: second-order gradients reach every meta-parameter, and a few
meta-steps on a synthetic task family make the 5-step adaptation better."""

from __future__ import annotations

import numpy as np
import torch

from runtime.rtmdnet.head import FCHead
from runtime.rtmdnet.meta import BatchSpec
from train.rtmdnet.meta_learning import MetaConfig, TrainingMetaLearner

SPEC = BatchSpec(batch_pos=24, batch_neg=24, batch_neg_cand=24)  # the whole task every step


def _task(gen: torch.Generator, dim: int = 12, n: int = 24):
    """A binary task: positives near a random direction, negatives near its opposite."""
    direction = torch.nn.functional.normalize(torch.randn(dim, generator=gen), dim=0)

    def draw(sign: float, k: int) -> torch.Tensor:
        return sign * 1.5 * direction + 0.7 * torch.randn(k, dim, generator=gen)

    return draw(1, n), draw(-1, n), draw(1, n), draw(-1, n), draw(-1, 4)


def _learner(scalar: bool = False) -> TrainingMetaLearner:
    torch.manual_seed(0)
    head = FCHead(12, width=16, dropout=0.0)
    return TrainingMetaLearner(
        head, MetaConfig(k_init=2, k_on=2, lr_init_value=0.05, scalar_lr=scalar)
    )


def _meta_loss(learner: TrainingMetaLearner, gen: torch.Generator) -> torch.Tensor:
    pos, neg, test_pos, test_neg, hard = _task(gen)
    rng = np.random.default_rng(0)
    adapted = learner.adapt(learner.initial_params(), pos, neg, "init", SPEC, rng)
    after_init = learner.test_loss(adapted, test_pos, test_neg, hard)
    online = learner.adapt(adapted, test_pos[:8], test_neg[:8], "on", SPEC, rng)
    return after_init + learner.test_loss(online, test_pos, test_neg, hard)


def test_meta_gradient_reaches_weights_and_every_rate():
    learner = _learner()
    # theta_init (6 tensors) plus one rate tensor per parameter for each of the 2 + 2 steps.
    assert len(list(learner.parameters())) == 6 * (1 + 2 + 2)
    _meta_loss(learner, torch.Generator().manual_seed(1)).backward()
    for name, p in learner.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_scalar_rates_are_one_number_per_step():
    learner = _learner(scalar=True)
    assert all(p.dim() == 0 for p in learner.lr_init.parameters())


def test_meta_training_improves_adaptation_on_new_tasks():
    learner = _learner()
    eval_gen = torch.Generator().manual_seed(123)
    before = sum(float(_meta_loss(learner, eval_gen)) for _ in range(8))
    optimizer = torch.optim.Adam(learner.parameters(), lr=1e-2)
    train_gen = torch.Generator().manual_seed(7)
    for _ in range(60):
        optimizer.zero_grad()
        _meta_loss(learner, train_gen).backward()
        optimizer.step()
    eval_gen = torch.Generator().manual_seed(123)
    after = sum(float(_meta_loss(learner, eval_gen)) for _ in range(8))
    assert after < 0.7 * before


def test_training_config_round_trips_through_json_and_overrides():
    import json
    from dataclasses import asdict

    import pytest

    from train.rtmdnet.meta_training import TrainConfig, config_from_dict
    from train.tooling import apply_overrides

    config = apply_overrides(TrainConfig(), {"meta.gamma": "0", "episode.tracker.top_k": "3"})
    assert config.meta.gamma == 0.0 and config.episode.tracker.top_k == 3
    assert config_from_dict(json.loads(json.dumps(asdict(config)))) == config
    with pytest.raises(ValueError, match="unknown setting"):
        apply_overrides(TrainConfig(), {"meta.no_such_thing": 1})
