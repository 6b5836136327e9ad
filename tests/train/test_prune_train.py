"""``train/prune.py`` on the shared data: a real run, its files, resume, the static variant."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from runtime.registry import create_tracker
from runtime.rtmdnet.meta import SHIPPED_CHECKPOINT, MetaCheckpoint
from runtime.rtmdnet.prune import PruneCheckpoint
from tests.support import DATA, needs_data
from train.rtmdnet.prune_training import PruneTrainConfig, main, train
from train.tooling import apply_overrides

pytestmark = needs_data
# Fewer first-frame negatives keep each step fast; a large rate makes one step visible.
SMALL = {"episode.n_neg_init": 1000, "lr": 1e-2}


def _config(**overrides) -> PruneTrainConfig:
    return apply_overrides(PruneTrainConfig(), {**SMALL, **overrides})


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_a_run_writes_its_files_and_a_checkpoint_the_tracker_takes(tmp_path):
    run = tmp_path / "run"
    path = train(_config(steps=2, checkpoint_every=1), DATA, run)
    assert {p.name for p in run.iterdir()} >= {
        "config.json",
        "log.csv",
        "training.png",
        "last.pt",
        "prune.pt",
    }
    rows = _rows(run)
    assert [r["step"] for r in rows] == ["1", "2"]
    assert float(rows[0]["recon"]) == pytest.approx(0.0, abs=1e-9)  # masks start at 1
    assert float(rows[0]["l1"]) == pytest.approx(1.0)
    assert float(rows[1]["l1"]) < 1.0  # the L1 term pulled the masks down
    ckpt = PruneCheckpoint.from_file(path)
    assert ckpt.meta_sha256 == MetaCheckpoint.from_file(SHIPPED_CHECKPOINT).sha256
    assert ckpt.info["step"] == 2
    tracker = create_tracker("metartt", data_dir=DATA, prune=str(path))
    assert tracker._prune_net is not None


def test_resume_continues_exactly_where_a_killed_run_stopped(tmp_path):
    train(_config(steps=2, checkpoint_every=1), DATA, tmp_path / "whole")
    train(_config(steps=1, checkpoint_every=1), DATA, tmp_path / "split")
    with pytest.raises(SystemExit, match="already holds a run"):
        train(_config(steps=2, checkpoint_every=1), DATA, tmp_path / "split")
    with pytest.raises(SystemExit, match="different settings \\(sparsity\\)"):
        train(_config(steps=2, sparsity=0.5), DATA, tmp_path / "split", resume=True)
    train(_config(steps=2, checkpoint_every=1), DATA, tmp_path / "split", resume=True)
    whole = PruneCheckpoint.from_file(tmp_path / "whole" / "prune.pt").state
    resumed = PruneCheckpoint.from_file(tmp_path / "split" / "prune.pt").state
    for name, value in whole.items():
        assert torch.equal(value, resumed[name]), name
    assert [r["loss"] for r in _rows(tmp_path / "split")] == [
        r["loss"] for r in _rows(tmp_path / "whole")
    ]


def test_cli_static_variant_and_bad_settings(tmp_path):
    with pytest.raises(SystemExit, match="unknown setting"):
        main(["--data", str(DATA), "--out", str(tmp_path / "x"), "--set", "net.nope=1"])
    with pytest.raises(SystemExit, match="meta checkpoint not found"):
        main(["--data", str(DATA), "--out", str(tmp_path / "y"), "--meta", "missing.pt"])
    out = tmp_path / "static"
    argv = ["--data", str(DATA), "--out", str(out), "--variant", "static", "--steps", "1"]
    assert main([*argv, "--set", "episode.n_neg_init=1000"]) == 0
    ckpt = PruneCheckpoint.from_file(out / "prune.pt")
    assert ckpt.config.static and set(ckpt.state) == {"logits.conv", "logits.fc4", "logits.fc5"}
