"""MLT's runtime checkpoint: the weights this project trained, and the trunk they were trained on.

A ``torch.save``'d dict (``format`` ``"mlt-checkpoint"``, loaded with ``weights_only=True``):
``trunk`` ("nanotrack" or "paper"), ``trunk_sha256`` (sha256 of the pretrained trunk's weight
file it was trained on; ``None`` for the paper trunk, whose weights are in the checkpoint),
``matching`` (the matching network's state dict: neck or paper trunk, conv5, response scale;
float16), ``meta_learner`` (float16 state dict, or ``None`` before stage 2) and ``info``.
The NanoTrack trunk itself is never stored: it is read from the shared weights at run time, and
a file whose sha256 differs from the recorded one is refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from runtime.backbones.nanotrack import NANOTRACK_NPZ
from runtime.checkpoint_io import load_payload, save_payload
from runtime.hashing import sha256_file
from runtime.mlt.meta_learner import MetaLearner
from runtime.mlt.model import MatchingNet

FORMAT = "mlt-checkpoint"
SHIPPED_CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "mlt.pt"


class MLTCheckpointError(ValueError):
    """Not an MLT checkpoint, or one made for other trunk weights."""


def trunk_weight_file(trunk: str, weights_dir: str | os.PathLike[str]) -> Path | None:
    if trunk == "nanotrack":
        return Path(weights_dir).expanduser().joinpath(*NANOTRACK_NPZ)
    return None


def trunk_sha256(trunk: str, weights_dir: str | os.PathLike[str]) -> str | None:
    path = trunk_weight_file(trunk, weights_dir)
    if path is None:
        return None
    if not path.is_file():
        raise FileNotFoundError(f"trunk weights for MLT ({trunk}) not found at {path}")
    return sha256_file(path)


def _half(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().half() if v.is_floating_point() else v for k, v in state.items()}


def _float(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


@dataclass
class MLTCheckpoint:
    trunk: str
    trunk_sha256: str | None
    matching: dict[str, torch.Tensor]
    meta_learner: dict[str, torch.Tensor] | None = None
    info: dict = field(default_factory=dict)
    sha256: str = ""  # of the file it was read from

    @classmethod
    def from_models(
        cls,
        net: MatchingNet,
        learner: MetaLearner | None,
        sha: str | None,
        info: dict | None = None,
    ) -> MLTCheckpoint:
        return cls(
            net.trunk_name,
            sha,
            _half(net.state_dict()),
            _half(learner.state_dict()) if learner is not None else None,
            dict(info or {}),
        )

    def to_file(self, path: str | os.PathLike[str]) -> str:
        payload = {
            "format": FORMAT,
            "trunk": self.trunk,
            "trunk_sha256": self.trunk_sha256,
            "matching": self.matching,
            "meta_learner": self.meta_learner,
            "info": self.info,
        }
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return save_payload(path, payload)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> MLTCheckpoint:
        payload, sha = load_payload(
            Path(path),
            FORMAT,
            MLTCheckpointError,
            "MLT checkpoint",
            "MLT checkpoint",
            "make one with python train/mlt.py",
        )
        try:
            return cls(
                payload["trunk"],
                payload["trunk_sha256"],
                payload["matching"],
                payload.get("meta_learner"),
                payload.get("info", {}),
                sha,
            )
        except KeyError as exc:  # the right format tag but a field missing: damaged or edited
            raise MLTCheckpointError(
                f"{path} is an MLT checkpoint without its {exc.args[0]!r} entry; make one with "
                "python train/mlt.py"
            ) from None

    def check_trunk(self, trunk: str, weights_dir: str | os.PathLike[str]) -> None:
        """Refuse (MLTCheckpointError) a checkpoint made for another trunk or trunk file."""
        if trunk != self.trunk:
            raise MLTCheckpointError(
                f"the MLT checkpoint was trained on the {self.trunk!r} trunk, not {trunk!r}"
            )
        current = trunk_sha256(trunk, weights_dir)
        if current != self.trunk_sha256:
            raise MLTCheckpointError(
                f"trunk hash mismatch: the MLT checkpoint was trained on {self.trunk} weights "
                f"with sha256 {self.trunk_sha256}, but {trunk_weight_file(trunk, weights_dir)} "
                f"has sha256 {current}; retrain with python train/mlt.py or use the weights it "
                "was trained on"
            )

    def matching_net(self) -> MatchingNet:
        net = MatchingNet(self.trunk)
        net.load_state_dict(_float(self.matching))
        return net.eval()

    def learner(self) -> MetaLearner | None:
        if self.meta_learner is None:
            return None
        learner = MetaLearner()
        learner.load_state_dict(_float(self.meta_learner))
        return learner.eval()
