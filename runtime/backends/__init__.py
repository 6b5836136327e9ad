"""Interchangeable backends for the fixed part of every tracker's network, behind one factory.

Feature backends (RT-MDNet, MLT: backbone + RoIAlign), one interface, :class:`FeatureBackend`
(``name``, ``takes_batches``, ``feature_map(crop)``, ``pool(fmap, rois, batch_indices)``,
``keep_channels``), three implementations:

- ``"torch"``: :class:`TorchBackend`, the PyTorch modules (the default; CPU or CUDA).
- ``"onnxruntime"``: :class:`OnnxRuntimeBackend`, the ONNX graphs of an export folder.
- ``"tensorrt"``: :class:`TensorRTBackend`, the TensorRT 10 engines of an export folder (written
  against the API, not run here: no TensorRT on these machines).

Siamese backends (NanoTrack: template and search) are in :mod:`runtime.backends.siamese`.

A tracker says what it needs in a spec, :class:`FeatureBackendSpec` (backbone, weights folder, RoI
settings, backend, precision, device, export folder, threads, bound checkpoints; from its config:
``RTMDNetConfig.backend_spec``, ``MLTConfig.backend_spec``) or :class:`SiameseBackendSpec`
(``runtime.nanotrack.deploy.siamese_spec``), and hands it to :func:`create_backend`, which asks
the one rule (:func:`choose_backend`, :mod:`runtime.backends.choice`) where it runs. Nothing here
imports a tracker package: what only a tracker can build comes in the spec.

An export folder comes from ``python export/build_engine.py --backbone NAME --out DIR``; its
``manifest.json`` must match the spec (and the weights it names), else the backend refuses.

Choosing one without touching configs or the registry (what a ``--backend`` flag needs)::

    tracker = create_tracker("rtmdnet", data_dir)
    use_backend(tracker, "auto", export_dir=DIR)   # tensorrt > onnxruntime (DIR given) > torch
"""

from __future__ import annotations

from runtime.backends.base import FeatureBackend
from runtime.backends.choice import (
    BACKEND_NAMES,
    PRECISIONS,
    BackendAsk,
    BackendChoice,
    check_precision,
    choose_backend,
)
from runtime.backends.factory import create_backend, has_engines, torch_extractor, use_backend
from runtime.backends.manifest import ManifestMismatchError
from runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from runtime.backends.siamese import SiameseBackend, TorchSiameseBackend
from runtime.backends.siamese_spec import SiameseBackendSpec
from runtime.backends.spec import FeatureBackendSpec
from runtime.backends.tensorrt_backend import (
    TensorRTBackend,
    TensorRTUnavailable,
    tensorrt_status,
)
from runtime.backends.torch_backend import TorchBackend

__all__ = [
    "BACKEND_NAMES",
    "PRECISIONS",
    "BackendAsk",
    "BackendChoice",
    "FeatureBackend",
    "FeatureBackendSpec",
    "ManifestMismatchError",
    "OnnxRuntimeBackend",
    "SiameseBackend",
    "SiameseBackendSpec",
    "TensorRTBackend",
    "TensorRTUnavailable",
    "TorchBackend",
    "TorchSiameseBackend",
    "check_precision",
    "choose_backend",
    "create_backend",
    "has_engines",
    "torch_extractor",
    "tensorrt_status",
    "use_backend",
]
