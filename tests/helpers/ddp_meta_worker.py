"""Run under torchrun by tests/test_meta_train.py: a few meta-steps, then save the replica."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

from train.meta import TrainConfig, train  # noqa: E402
from train.tooling import apply_overrides  # noqa: E402


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
