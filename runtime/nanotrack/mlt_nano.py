"""MLT on the NanoTrack v3 base: ``mlt-nano`` (generated kernels) and ``mlt-nano[generator=adam]``.

Both are :class:`runtime.nanotrack.adaptive.TargetLayerTracker`: the base tracker whose cell
score takes a residual ``w . f + b`` on the classification features (zero: the base exactly).

- ``mlt-nano``: MLT's procedure (Choi et al., ICCV 2019, section 4). At the first frame the
  meta-learner (:class:`runtime.nanotrack.kernel_generator.KernelGenerator`, trained by
  ``python train/mlt_nano.py``) generates the target-specific kernel and channel attention from
  the loss gradient on the first frame's crop; every ``online_interval`` = T = 30 frames it
  generates them again from the gradient over M = 8 context images: the first frame and the
  memory frames (confident, target not lost) with the lowest response entropy.
- ``mlt-nano[generator=adam]``: the paper's online fine-tuning baseline instead of the
  meta-learner: every ``ft_interval`` = 50 frames, ``ft_steps`` = 30 Adam steps at ``ft_lr`` =
  1e-3 on the layer,
  over the 2M = 16 lowest-entropy context images (MLT-mt+ft's values, as ``runtime.mlt``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from runtime.backends.manifest import checkpoint_record
from runtime.nanotrack.adaptive import MemoryEntry, TargetLayerConfig, TargetLayerTracker
from runtime.nanotrack.kernel_generator import KernelGenerator, load_generator
from runtime.nanotrack.target_layer import CropSample, balanced_loss

SHIPPED_GENERATOR = Path(__file__).resolve().parent.parent / "checkpoints" / "mlt_nano.pt"
FINETUNE = "adam"  # the generator of the preset mlt-nano[generator=adam]


@dataclass
class MLTNanoConfig(TargetLayerConfig):
    # A kernel-generator checkpoint (train/mlt_nano.py), "shipped" (runtime/checkpoints/), or
    # "adam": fine-tune the layer online instead (mlt-nano[generator=adam]).
    generator: str = "shipped"
    online_interval: int = 30  # T (MLT): new kernels every 30 frames
    memory_frames: int = 100  # context images kept (MLT's memory size, runtime.mlt)
    m_context: int = 8  # M (MLT): the first frame + the 7 lowest-entropy memory frames
    ft_interval: int = 50  # MLT-mt+ft: Adam every 50 frames ...
    ft_steps: int = 30  # ... 30 steps ...
    ft_lr: float = 1e-3  # ... at 1e-3, on 2M = 16 context images


class MLTNanoTracker(TargetLayerTracker):
    name = "mlt-nano"

    def __init__(self, config: MLTNanoConfig | None = None, data_dir: Path | None = None) -> None:
        super().__init__(config or MLTNanoConfig(), data_dir)
        c = self.config
        self.generator: KernelGenerator | None = None
        self.generator_sha256: str | None = None
        if c.generator != FINETUNE:
            path = SHIPPED_GENERATOR if c.generator == "shipped" else Path(c.generator)
            base_sha = checkpoint_record("nanotrack", self.weights_dir)["sha256"]
            self.generator, _info, self.generator_sha256 = load_generator(
                path.expanduser(), base_sha
            )

    def _context(self, m: int) -> list[CropSample]:
        """The first frame and the ``m - 1`` memory frames with the lowest response entropy."""
        chosen: list[MemoryEntry] = sorted(self.memory, key=lambda e: e.entropy)[: m - 1]
        return [self.first.sample, *(e.sample for e in chosen)]

    def _first_layer(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.generator is None:  # fine-tuning starts from the base
            return torch.zeros_like(self.w), torch.zeros_like(self.b)
        return self.generator.generate([self.first.sample])

    def _online_layer(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        c = self.config
        if self.generator is not None:
            if self.frames_since_update < c.online_interval:
                return None
            return self.generator.generate(self._context(c.m_context))
        if self.frames_since_update < c.ft_interval:
            return None
        return self._finetune(self._context(2 * c.m_context))

    def _finetune(self, samples: list[CropSample]) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        w = self.w.detach().clone().requires_grad_(True)
        b = self.b.detach().clone().requires_grad_(True)
        optimizer = torch.optim.Adam([w, b], lr=c.ft_lr)
        with torch.enable_grad():
            for _ in range(c.ft_steps):
                optimizer.zero_grad()
                balanced_loss(w, b, samples).backward()
                optimizer.step()
        return w.detach(), b.detach()

    def __repr__(self) -> str:
        return f"MLTNanoTracker({self.backend!r}, generator {self.config.generator})"
