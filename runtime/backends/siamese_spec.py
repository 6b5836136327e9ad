"""What a Siamese tracker asks of its backend: one frozen record, below every tracker.

The Siamese counterpart of :class:`runtime.backends.spec.FeatureBackendSpec`: a tracker family
(``runtime.nanotrack.deploy.siamese_spec``) fills it in and hands it to
:func:`runtime.backends.create_backend`. The two things only the tracker package can do, build
its network in torch and export its graph cache, are handed in as callables, so that nothing in
:mod:`runtime.backends` imports a tracker package.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from runtime.backends.siamese import SiameseExport

Notify = Callable[[str], None]


@dataclass(frozen=True)
class SiameseBackendSpec:
    """Which network, which weights, which arithmetic, where, and how to build it."""

    weights_dir: Path  # the folder the weight file is read (and hashed) from
    # The network's template and search branches as torch modules on the spec's device; the
    # search branch gives the classification features too when ``features`` is set.
    torch_branches: Callable[[SiameseBackendSpec], tuple[nn.Module, nn.Module]] = field(
        compare=False, repr=False
    )
    # The tracker's graph cache: its FP32 graphs, exported and checked on first use (``notify``
    # hears of the wait); None where the tracker has none. OSError or RuntimeError where it
    # cannot be written or a graph fails its check.
    graph_cache: Callable[[Path, Notify], SiameseExport] | None = field(
        default=None, compare=False, repr=False
    )
    tracker: str = "nanotrack"  # export/build_engine.py --tracker NAME makes its folders

    backend: str = "auto"  # auto | torch | onnxruntime | tensorrt
    precision: str = "fp32"  # auto | fp32 | fp16 | int8 | bf16 (runtime.backends.choice)
    device: str = "cpu"  # of the torch modules
    export_dir: Path | None = None  # a folder from build_engine.py --tracker NAME
    threads: int | None = None  # ONNX Runtime's intra-op threads (None: torch's)
    # The search gives ``margins, boxes, features`` (the trackers with a target layer).
    features: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights_dir", Path(self.weights_dir).expanduser())
        if self.export_dir is not None:
            object.__setattr__(self, "export_dir", Path(self.export_dir).expanduser())

    def replace(self, **changes: Any) -> SiameseBackendSpec:
        """A copy with ``changes`` (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)
