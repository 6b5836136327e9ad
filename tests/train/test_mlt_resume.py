"""``train/mlt.py --resume`` computes exactly what the uninterrupted run does (both stages).

The meta-learner has dropout, which draws from torch's global generator; without a per-step seed
a resumed run starts that generator where the uninterrupted run started step 0 and diverges.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from runtime.mlt.checkpoint import SHIPPED_CHECKPOINT, MLTCheckpoint
from tests.support import DATA, needs_data, needs_shipped_mlt
from train.mlt.training import MLTTrainConfig, train

pytestmark = [needs_data, needs_shipped_mlt]


def _loss_column(run: Path) -> list[str]:
    with open(run / "log.csv", newline="") as f:
        return [row["loss"] for row in csv.DictReader(f)]


def _state(run: Path) -> dict[str, torch.Tensor]:
    """The float32 weights of ``last.pt`` (the runtime ``mlt.pt`` keeps float16 only)."""
    state = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    out = {f"net.{k}": v for k, v in state["net"].items()}
    out.update({f"learner.{k}": v for k, v in state.get("learner", {}).items()})
    return out


@pytest.mark.parametrize("stage", ["meta", "match"])
def test_resume_continues_exactly_where_a_killed_run_stopped(tmp_path, stage):
    # Tiny steps: one video (meta: 4 context images, the gradient from 2) or 2 pairs per step.
    small = {"stage": stage, "batch": 1 if stage == "meta" else 2, "m_context": 2, "m_loss": 4}
    small["checkpoint_every"] = 1
    if stage == "meta":
        small["matching"] = str(SHIPPED_CHECKPOINT)  # its matching network, fixed in stage 2
        small["lr"] = 1e-2  # large enough that a different dropout mask shows in the weights

    def config(steps: int) -> MLTTrainConfig:
        return MLTTrainConfig(**small, steps=steps)

    train(config(2), DATA, tmp_path / "whole")
    train(config(1), DATA, tmp_path / "split")
    train(config(2), DATA, tmp_path / "split", resume=True)
    assert _loss_column(tmp_path / "split") == _loss_column(tmp_path / "whole")
    whole, resumed = _state(tmp_path / "whole"), _state(tmp_path / "split")
    assert whole.keys() == resumed.keys()
    if stage == "meta":  # the meta-learner moved, and moved the same way
        assert any(k.startswith("learner.") for k in whole)
        assert MLTCheckpoint.from_file(tmp_path / "split" / "mlt.pt").meta_learner is not None
    for name, value in whole.items():
        assert torch.equal(value, resumed[name]), name
