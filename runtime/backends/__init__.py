"""Interchangeable backends for the fixed part of the network (backbone + RoIAlign).

One interface, :class:`FeatureBackend` (``name``, ``takes_batches``, ``feature_map(crop)``,
``pool(fmap, rois, batch_indices)``, ``keep_channels``), three implementations:

- ``"torch"``: :class:`TorchBackend`, the PyTorch modules (the default; CPU or CUDA).
- ``"onnxruntime"``: :class:`OnnxRuntimeBackend`, the ONNX graphs of an export folder.
- ``"tensorrt"``: :class:`TensorRTBackend`, the TensorRT 10 engines of an export folder (written
  against the API, not run here: no TensorRT on these machines).

A tracker says what it needs in a :class:`FeatureBackendSpec` (backbone, weights folder, RoI
settings, backend, precision, device, export folder, threads, bound checkpoints), built from its
own config (``RTMDNetConfig.backend_spec``, ``MLTConfig.backend_spec``), and hands it to
:func:`create_backend`. Nothing here imports a tracker package.

An export folder comes from ``python export/build_engine.py --backbone NAME --out DIR``; its
``manifest.json`` must match the spec (and the weights it names), else the backend refuses.

Choosing one without touching configs or the registry (what a ``--backend`` flag needs)::

    tracker = create_tracker("rtmdnet", data_dir)
    use_backend(tracker, "auto", export_dir=DIR)   # tensorrt > onnxruntime (DIR given) > torch
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from runtime.backbones import build_backbone
from runtime.backends.base import FeatureBackend
from runtime.backends.manifest import ManifestMismatchError, load_manifest
from runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from runtime.backends.spec import FeatureBackendSpec, SpecSource
from runtime.backends.tensorrt_backend import (
    TensorRTBackend,
    TensorRTUnavailable,
    tensorrt_status,
)
from runtime.backends.torch_backend import TorchBackend
from runtime.roi_features import RoIFeatureExtractor

BACKEND_NAMES = ("auto", "torch", "onnxruntime", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
logger = logging.getLogger(__name__)


def has_engines(export_dir: str | os.PathLike[str]) -> bool:
    """Whether ``export_dir`` holds TensorRT engines (per its manifest)."""
    try:
        return bool(load_manifest(export_dir).get("engines"))
    except (FileNotFoundError, ManifestMismatchError, ValueError):
        return False


def torch_extractor(spec: FeatureBackendSpec) -> RoIFeatureExtractor:
    """The spec's backbone (from ``spec.weights_dir``) + RoIAlign, on ``spec.device``, in eval."""
    backbone = build_backbone(spec.backbone, spec.weights_dir)
    extractor = RoIFeatureExtractor(backbone, spec.roi_size, spec.roi_sampling_ratio)
    return extractor.to(spec.device).eval()


def check_precision(backend: str, precision: str, device: str = "cpu") -> None:
    """Refuse, before anything is loaded, a precision this backend cannot run here."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    on_cpu = backend == "onnxruntime" or (backend == "torch" and device == "cpu")
    if precision == "fp16" and on_cpu:
        raise ValueError(
            f"fp16 is refused on the {backend} backend: it runs on the CPU here, which has no "
            f"fast fp16 arithmetic; use --precision fp32 (or int8 with an int8 export), or fp16 "
            f"on a GPU (the torch backend with device='cuda', or a TensorRT fp16 engine)"
        )
    if precision == "int8" and backend == "torch":
        raise ValueError(
            "int8 runs from an int8 export (python export/build_engine.py --precision int8 "
            "--calib DIR) on --backend onnxruntime or tensorrt, not on the torch backend"
        )


def create_backend(
    spec: FeatureBackendSpec | None = None,
    *,
    extractor: RoIFeatureExtractor | None = None,
    providers: list[str | tuple[str, dict[str, Any]]] | None = None,
    verbose: bool = True,
) -> FeatureBackend:
    """The backend ``spec.backend`` names: ``"auto"``, ``"torch"``, ``"onnxruntime"`` or
    ``"tensorrt"`` (``spec``: default :class:`FeatureBackendSpec`, RT-MDNet's defaults).

    ``"auto"`` takes TensorRT where it is usable and ``spec.export_dir`` has engines, else ONNX
    Runtime where ``spec.export_dir`` is given, else torch. ``extractor`` is reused by the torch
    backend (built from the spec otherwise); ``providers`` go to ONNX Runtime. Which backend was
    chosen (and, for auto, why) is logged, and printed to stderr if ``verbose``.
    """
    spec = FeatureBackendSpec() if spec is None else spec
    if not isinstance(spec, FeatureBackendSpec):
        raise TypeError(
            f"create_backend takes a FeatureBackendSpec (a tracker config's backend_spec()), "
            f"got {type(spec).__name__}"
        )
    name, export_dir = spec.backend, spec.export_dir
    if name not in BACKEND_NAMES:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")
    why = ""
    if name == "auto":
        usable, status = tensorrt_status()
        if export_dir is None:
            name, why = "torch", "no export folder given"
        elif usable and has_engines(export_dir):
            name, why = "tensorrt", status
        else:
            name = "onnxruntime"
            why = f"{status}" if not usable else f"no TensorRT engines in {export_dir}"
    elif name != "torch" and export_dir is None:
        raise ValueError(
            f"the {name} backend needs an export folder: make one with "
            f"python export/build_engine.py --backbone {spec.backbone} --out DIR"
        )

    check_precision(name, spec.precision, spec.device)
    backend: FeatureBackend
    if name == "torch":
        backend = TorchBackend(
            extractor if extractor is not None else torch_extractor(spec),
            half=spec.precision == "fp16",
        )
    elif name == "onnxruntime":
        assert export_dir is not None
        backend = OnnxRuntimeBackend(export_dir, spec, providers=providers)
    else:
        assert export_dir is not None
        backend = TensorRTBackend(export_dir, spec)
    # Why auto chose it, for whoever reports the choice (the CLI prints it unless --quiet).
    backend.chosen_because = f"auto: {why}" if why else "named"
    message = f"backend: {backend!r}" + (f" (auto: {why})" if why else "")
    logger.info(message)
    if verbose:
        print(message, file=sys.stderr)
    return backend


def use_backend(
    tracker: Any,
    name: str = "auto",
    *,
    export_dir: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    providers: list[str | tuple[str, dict[str, Any]]] | None = None,
    threads: int | None = None,
    verbose: bool = True,
) -> FeatureBackend:
    """Switch a tracker (before ``init``) to another backend; returns the backend.

    The tracker states what it needs (``tracker.backend_spec(data_dir, ...)``: its own config and
    weights folder); that spec, with this backend, export folder and threads, is what the export
    folder is checked against. The tracker's torch modules (``tracker.extractor``) are reused.
    """
    if not hasattr(tracker, "backend") or not isinstance(tracker, SpecSource):
        raise TypeError(f"{type(tracker).__name__} does not take a feature backend")
    changes: dict[str, Any] = {
        "backend": name,
        "export_dir": Path(export_dir) if export_dir is not None else None,
        "threads": threads,
    }
    backend = create_backend(
        tracker.backend_spec(data_dir, **changes),
        extractor=getattr(tracker, "extractor", None),
        providers=providers,
        verbose=verbose,
    )
    tracker.backend = backend
    return backend


__all__ = [
    "BACKEND_NAMES",
    "PRECISIONS",
    "FeatureBackend",
    "FeatureBackendSpec",
    "ManifestMismatchError",
    "OnnxRuntimeBackend",
    "TensorRTBackend",
    "TensorRTUnavailable",
    "TorchBackend",
    "check_precision",
    "create_backend",
    "has_engines",
    "torch_extractor",
    "tensorrt_status",
    "use_backend",
]
