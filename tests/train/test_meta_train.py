"""``train/meta.py`` on the shared data: a real run, its files, resume, and 2-process DDP."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from runtime.paths import PROJECT_ROOT
from runtime.registry import create_tracker
from runtime.rtmdnet.meta import MetaCheckpoint
from tests.support import DATA, needs_data
from train.rtmdnet.meta_training import TrainConfig, main, train
from train.tooling import apply_overrides

pytestmark = needs_data
ROOT = PROJECT_ROOT
# Fewer first-frame negatives keep each step fast; the procedure is the same.
SMALL = {"episode.n_neg_init": 1000, "meta_lr": 1e-3}


def _config(**overrides) -> TrainConfig:
    return apply_overrides(TrainConfig(), {**SMALL, **overrides})


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_a_run_writes_log_plot_checkpoints_and_a_usable_tracker(tmp_path):
    run = tmp_path / "run"
    result = train(_config(steps=2, checkpoint_every=1, val_every=2, val_max_frames=2), DATA, run)
    assert {p.name for p in run.iterdir()} >= {
        "config.json",
        "log.csv",
        "training.png",
        "last.pt",
        "metartt.pt",
    }
    rows = _rows(run)
    assert [r["step"] for r in rows] == ["1", "2"]
    assert all(float(r["meta_loss"]) > 0 for r in rows)
    assert rows[0]["val_auc"] == "" and 0.0 <= float(rows[1]["val_auc"]) <= 1.0
    ckpt = MetaCheckpoint.from_file(result.checkpoint)
    assert ckpt.info["step"] == 2 and ckpt.backbone == "nanotrack"
    # The meta-parameters moved, and the tracker takes the checkpoint.
    torch.manual_seed(0)
    start = TrainConfig()
    assert start.meta.lr_init_value != float(ckpt.lr_init[0]["fc6.1.weight"].float().mean())
    tracker = create_tracker("metartt", data_dir=DATA, meta=str(result.checkpoint))
    assert tracker.meta.sha256 == ckpt.sha256


@pytest.mark.slow
def test_resume_continues_exactly_where_a_killed_run_stopped(tmp_path):
    whole = train(_config(steps=3, checkpoint_every=1), DATA, tmp_path / "whole")
    train(_config(steps=2, checkpoint_every=1), DATA, tmp_path / "split")
    with pytest.raises(SystemExit, match="already holds a run"):
        train(_config(steps=3, checkpoint_every=1), DATA, tmp_path / "split")
    resumed = train(_config(steps=3, checkpoint_every=1), DATA, tmp_path / "split", resume=True)
    for (name, a), b in zip(
        whole.learner.state_dict().items(), resumed.learner.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    assert [r["meta_loss"] for r in _rows(tmp_path / "split")] == [
        r["meta_loss"] for r in _rows(tmp_path / "whole")
    ]


def test_resume_refuses_changed_settings(tmp_path):
    train(_config(steps=1), DATA, tmp_path / "run")
    with pytest.raises(SystemExit, match="meta"):
        train(_config(steps=2, **{"meta.gamma": 0.0}), DATA, tmp_path / "run", resume=True)


def test_cli_variants_and_bad_settings(tmp_path):
    with pytest.raises(SystemExit, match="unknown setting"):
        main(["--data", str(DATA), "--out", str(tmp_path / "x"), "--set", "meta.nope=1"])
    assert (
        main(
            [
                "--data", str(DATA), "--out", str(tmp_path / "init-only"), "--variant",
                "init-only", "--steps", "1", "--set", "episode.n_neg_init=1000",
            ]
        )
        == 0
    )  # fmt: skip
    ckpt = MetaCheckpoint.from_file(tmp_path / "init-only" / "metartt.pt")
    assert len(ckpt.lr_init) == 5 and ckpt.lr_on == []
    assert _rows(tmp_path / "init-only")[0]["loss_on"] == "nan"


@pytest.mark.slow
def test_two_processes_with_gloo_keep_identical_replicas(tmp_path):
    """torchrun, 2 CPU processes, DDP: different episodes per rank, one averaged meta-gradient."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}  # this checkout's code
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(ROOT / "tests" / "helpers" / "ddp_meta_worker.py"), str(DATA), str(tmp_path), "2",
    ]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    replicas = [torch.load(tmp_path / f"replica{r}.pt", weights_only=True) for r in (0, 1)]
    for name, value in replicas[0].items():
        assert torch.equal(value, replicas[1][name]), name
    ckpt = MetaCheckpoint.from_file(tmp_path / "metartt.pt")
    assert ckpt.info["world_size"] == 2
    # Averaged over both ranks' episodes: not what rank 0 alone would have learned.
    alone = train(_config(steps=2, checkpoint_every=2), DATA, tmp_path / "alone").learner
    assert not torch.equal(
        alone.state_dict()["head.fc4.0.weight"], replicas[0]["head.fc4.0.weight"]
    )
