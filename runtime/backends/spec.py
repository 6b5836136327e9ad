"""What a tracker asks of a feature backend: one small frozen record, below every tracker.

A tracker builds a :class:`FeatureBackendSpec` from its own config (``RTMDNetConfig.backend_spec``,
``MLTConfig.backend_spec``) and hands it to :func:`runtime.backends.create_backend`; the backends
and the export-folder checks (:func:`runtime.backends.manifest.check_manifest`) read the spec, never
a tracker's config, so nothing in :mod:`runtime.backends` imports a tracker package.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from runtime.paths import data_root


def default_weights_dir() -> Path:
    """``<data>/weights`` of the default data folder (``TRACKER_DATA`` or ``../shared/data``)."""
    return data_root(None) / "weights"


@dataclass(frozen=True)
class FeatureBackendSpec:
    """Which graph, which weights, which arithmetic, where, and what the folder must be bound to.

    The defaults are those of RT-MDNet's config (``RTMDNetConfig()``), so a backend built without
    a spec serves the default tracker.
    """

    # --- the graph: the backbone, and RoIAlign on it ------------------------------------------
    backbone: str = "nanotrack"
    # The folder the backbone's weight file is read (and hashed) from.
    weights_dir: Path = field(default_factory=default_weights_dir)
    # RoIAlign's output side and sampling ratio; None: the tracker reads the feature map only
    # (MLT), so it pools nothing and any export folder's RoI settings serve it.
    roi_size: int | None = 3
    roi_sampling_ratio: int | None = 2

    # --- how and where it runs ---------------------------------------------------------------
    backend: str = "auto"  # auto | torch | onnxruntime | tensorrt
    precision: str = "fp32"  # fp32 | fp16 | int8
    device: str = "cpu"  # of the torch modules and of the tensors that cross
    export_dir: Path | None = None  # a folder written by export/build_engine.py
    threads: int | None = None  # ONNX Runtime's intra-op threads (None: torch's)

    # --- checkpoints an export folder may be bound to (manifest "tracker_checkpoints") --------
    # Paths, or None; a value that names no file ("fit") binds nothing.
    meta_checkpoint: str | None = None
    prune_checkpoint: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights_dir", Path(self.weights_dir).expanduser())
        if self.export_dir is not None:
            object.__setattr__(self, "export_dir", Path(self.export_dir).expanduser())
        for name in ("meta_checkpoint", "prune_checkpoint"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, str(value))

    @property
    def pools(self) -> bool:
        """Whether the tracker pools RoIs on the feature map (``roi_size`` is set)."""
        return self.roi_size is not None

    def bound_checkpoints(self) -> dict[str, str | None]:
        """The checkpoints by the manifest's ``tracker_checkpoints`` keys (``meta``, ``prune``)."""
        return {"meta": self.meta_checkpoint, "prune": self.prune_checkpoint}

    def replace(self, **changes: Any) -> FeatureBackendSpec:
        """A copy with ``changes`` (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)


@runtime_checkable
class SpecSource(Protocol):
    """Anything that states its backend needs as a spec: a tracker's config, or a tracker."""

    def backend_spec(
        self, data_dir: str | os.PathLike[str] | None = None, **changes: Any
    ) -> FeatureBackendSpec: ...


def resolve_spec(
    source: FeatureBackendSpec | SpecSource | None,
    data_dir: str | os.PathLike[str] | None = None,
) -> FeatureBackendSpec:
    """``source`` as a spec: a spec as it is, a config's ``backend_spec(data_dir)``, or the default.

    ``data_dir`` (the data folder, whose ``weights/`` the backbone comes from) is for a config or
    the default; a spec carries its own ``weights_dir``, and giving both is refused.
    """
    if isinstance(source, FeatureBackendSpec):
        if data_dir is not None:
            raise TypeError(
                "data_dir is for a tracker config; a FeatureBackendSpec has weights_dir"
            )
        return source
    if source is None:
        return FeatureBackendSpec(weights_dir=data_root(data_dir) / "weights")
    if isinstance(source, SpecSource):
        return source.backend_spec(data_dir)
    raise TypeError(
        f"expected a FeatureBackendSpec or an object with backend_spec() (a tracker config), "
        f"got {type(source).__name__}"
    )
