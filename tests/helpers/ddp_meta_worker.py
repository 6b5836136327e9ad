"""Run under torchrun by tests/train/test_meta_train.py: a few meta-steps, then save the replica.

The test puts the checkout first on ``PYTHONPATH``, so this imports the code under test.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist

from train.rtmdnet.meta_training import TrainConfig, train
from train.tooling import apply_overrides


def main() -> None:
    root, out, steps = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    config = apply_overrides(
        TrainConfig(),
        {"steps": steps, "checkpoint_every": steps, "episode.n_neg_init": 1000, "meta_lr": 1e-3},
    )
    result = train(config, root, out)
    rank = dist.get_rank()
    torch.save(result.learner.state_dict(), out / f"replica{rank}.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
