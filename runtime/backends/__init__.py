"""Interchangeable backends for the fixed part of the network (backbone + RoIAlign).

One interface, :class:`FeatureBackend` (``name``, ``feature_map(crop)``, ``pool(fmap, rois,
batch_indices)``), three implementations:

- ``"torch"``: :class:`TorchBackend`, the PyTorch modules (the default; CPU or CUDA).
- ``"onnxruntime"``: :class:`OnnxRuntimeBackend`, the ONNX graphs of an export folder.
- ``"tensorrt"``: :class:`TensorRTBackend`, the TensorRT 10 engines of an export folder (written
  against the API, not run here: no TensorRT on these machines).

An export folder comes from ``python export/build_engine.py --backbone NAME --out DIR``; its
``manifest.json`` must match the tracker's config and weights, else the backend refuses.

Choosing one without touching configs or the registry (what a ``--backend`` flag needs)::

    tracker = create_tracker("rtmdnet", data_dir)
    use_backend(tracker, "auto", export_dir=DIR)   # tensorrt > onnxruntime (DIR given) > torch
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime.backends.base import FeatureBackend
from runtime.backends.manifest import ManifestMismatchError, load_manifest
from runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from runtime.backends.tensorrt_backend import (
    TensorRTBackend,
    TensorRTUnavailable,
    tensorrt_status,
)
from runtime.backends.torch_backend import TorchBackend

if TYPE_CHECKING:
    from runtime.rtmdnet.config import RTMDNetConfig
    from runtime.rtmdnet.features import RoIFeatureExtractor

BACKEND_NAMES = ("auto", "torch", "onnxruntime", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
logger = logging.getLogger(__name__)


def has_engines(export_dir: str | os.PathLike[str]) -> bool:
    """Whether ``export_dir`` holds TensorRT engines (per its manifest)."""
    try:
        return bool(load_manifest(export_dir).get("engines"))
    except (FileNotFoundError, ManifestMismatchError, ValueError):
        return False


def _torch_extractor(config: RTMDNetConfig, data_dir: str | os.PathLike[str] | None):
    from runtime.backbones import build_backbone
    from runtime.paths import data_root
    from runtime.rtmdnet.features import RoIFeatureExtractor

    backbone = build_backbone(config.backbone, data_root(data_dir) / "weights")
    extractor = RoIFeatureExtractor(backbone, config.roi_size, config.roi_sampling_ratio)
    return extractor.to(config.device).eval()


def check_precision(backend: str, config: RTMDNetConfig) -> None:
    """Refuse, before anything is loaded, a precision this backend cannot run here."""
    precision = config.precision
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    on_cpu = backend == "onnxruntime" or (backend == "torch" and config.device == "cpu")
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
    name: str = "auto",
    *,
    config: RTMDNetConfig | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    export_dir: str | os.PathLike[str] | None = None,
    extractor: RoIFeatureExtractor | None = None,
    providers: list[str | tuple[str, dict[str, Any]]] | None = None,
    threads: int | None = None,
    verbose: bool = True,
) -> FeatureBackend:
    """A backend by name: ``"auto"``, ``"torch"``, ``"onnxruntime"`` or ``"tensorrt"``.

    ``"auto"`` takes TensorRT where it is usable and ``export_dir`` has engines, else ONNX
    Runtime where ``export_dir`` is given, else torch. ``extractor`` is reused by the torch
    backend (built from ``config`` otherwise); ``providers``/``threads`` go to ONNX Runtime.
    Which backend was chosen (and, for auto, why) is logged, and printed to stderr if
    ``verbose``.
    """
    from runtime.rtmdnet.config import RTMDNetConfig

    if name not in BACKEND_NAMES:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")
    config = config or RTMDNetConfig()
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
            f"python export/build_engine.py --backbone {config.backbone} --out DIR"
        )

    check_precision(name, config)
    backend: FeatureBackend
    if name == "torch":
        backend = TorchBackend(
            extractor if extractor is not None else _torch_extractor(config, data_dir),
            half=config.precision == "fp16",
        )
    elif name == "onnxruntime":
        assert export_dir is not None
        backend = OnnxRuntimeBackend(
            export_dir, config, data_dir, providers=providers, threads=threads
        )
    else:
        assert export_dir is not None
        backend = TensorRTBackend(export_dir, config, data_dir)
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
    """Switch an RT-MDNet tracker (before ``init``) to another backend; returns the backend.

    The tracker's own config and weights folder are what the export folder is checked against.
    """
    if not hasattr(tracker, "backend") or not hasattr(tracker, "extractor"):
        raise TypeError(f"{type(tracker).__name__} does not take a feature backend")
    if data_dir is None:
        data_dir = getattr(tracker, "data_dir", None)
    backend = create_backend(
        name,
        config=tracker.config,
        data_dir=data_dir,
        export_dir=Path(export_dir) if export_dir is not None else None,
        extractor=tracker.extractor,
        providers=providers,
        threads=threads,
        verbose=verbose,
    )
    tracker.backend = backend
    return backend


__all__ = [
    "BACKEND_NAMES",
    "PRECISIONS",
    "FeatureBackend",
    "ManifestMismatchError",
    "OnnxRuntimeBackend",
    "TensorRTBackend",
    "TensorRTUnavailable",
    "TorchBackend",
    "check_precision",
    "create_backend",
    "has_engines",
    "tensorrt_status",
    "use_backend",
]
