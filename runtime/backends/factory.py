"""The one factory: a tracker's spec in, the backend :mod:`runtime.backends.choice` picks out.

:func:`create_backend` takes a :class:`FeatureBackendSpec` (RT-MDNet, MLT: backbone + RoIAlign)
or a :class:`SiameseBackendSpec` (NanoTrack: template and search), asks the one rule which
backend runs it, builds that backend, and records on it why it was chosen (``chosen_because``).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, overload

from runtime.backbones import build_backbone
from runtime.backends.base import FeatureBackend
from runtime.backends.choice import BackendAsk, BackendChoice, cache_fallback, choose_backend
from runtime.backends.manifest import ManifestMismatchError, load_manifest
from runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from runtime.backends.openvino_backend import OpenVinoSiameseBackend, openvino_status
from runtime.backends.siamese import (
    OnnxRuntimeFeatureBackend,
    OnnxRuntimeSiameseBackend,
    SiameseBackend,
    SiameseExport,
    TensorRTSiameseBackend,
    TorchSiameseBackend,
    open_siamese_export,
)
from runtime.backends.siamese_spec import Notify, SiameseBackendSpec
from runtime.backends.spec import FeatureBackendSpec, SpecSource
from runtime.backends.tensorrt_backend import TensorRTBackend
from runtime.backends.torch_backend import TorchBackend
from runtime.roi_features import RoIFeatureExtractor

Providers = list[str | tuple[str, dict[str, Any]]]
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


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


@overload
def create_backend(
    spec: FeatureBackendSpec | None = None,
    *,
    extractor: RoIFeatureExtractor | None = None,
    providers: Providers | None = None,
    notify: Notify = _stderr,
    verbose: bool = True,
) -> FeatureBackend: ...


@overload
def create_backend(
    spec: SiameseBackendSpec,
    *,
    extractor: None = None,
    providers: Providers | None = None,
    notify: Notify = _stderr,
    verbose: bool = True,
) -> SiameseBackend: ...


def create_backend(
    spec: FeatureBackendSpec | SiameseBackendSpec | None = None,
    *,
    extractor: RoIFeatureExtractor | None = None,
    providers: Providers | None = None,
    notify: Notify = _stderr,
    verbose: bool = True,
) -> FeatureBackend | SiameseBackend:
    """The backend ``spec.backend`` names (``"auto"``: :func:`runtime.backends.choice
    .choose_backend`'s rule) for a tracker's spec (None: :class:`FeatureBackendSpec`'s defaults,
    RT-MDNet's).

    ``extractor``: the torch modules a feature spec's torch backend reuses (built from the spec
    otherwise); ``providers`` go to ONNX Runtime. ``notify`` hears what takes time or changes the
    plan (a Siamese graph cache's one-time export, a fallback to torch): stderr by default, since
    a silent 35 s pause looks like a hang. The choice (and, for auto, why) is logged, and told to
    ``notify`` if ``verbose``; the backend's ``chosen_because`` keeps the why.
    """
    spec = FeatureBackendSpec() if spec is None else spec
    backend: FeatureBackend | SiameseBackend
    if isinstance(spec, FeatureBackendSpec):
        backend, choice = _feature_backend(spec, extractor, providers)
    elif isinstance(spec, SiameseBackendSpec):
        if extractor is not None:
            raise TypeError("extractor is for a FeatureBackendSpec; a Siamese spec builds its own")
        backend, choice = _siamese_backend(spec, providers, notify)
    else:
        raise TypeError(
            f"create_backend takes a FeatureBackendSpec (a tracker config's backend_spec()) or a "
            f"SiameseBackendSpec, got {type(spec).__name__}"
        )
    # Why it was chosen, for whoever reports the choice (the CLI prints it unless --quiet).
    backend.chosen_because = choice.reason  # type: ignore[union-attr]
    message = f"backend: {backend!r}" + (f" ({choice.reason})" if choice.by_auto else "")
    logger.info(message)
    if verbose:
        notify(message)
    return backend


def _feature_backend(
    spec: FeatureBackendSpec,
    extractor: RoIFeatureExtractor | None,
    providers: Providers | None,
) -> tuple[FeatureBackend, BackendChoice]:
    export_dir = spec.export_dir
    choice = choose_backend(
        BackendAsk(
            backend=spec.backend,
            precision=spec.precision,
            device=spec.device,
            export_dir=export_dir,
            export_has_engines=export_dir is not None and has_engines(export_dir),
            export_args=f"--backbone {spec.backbone}",
        )
    )
    spec = spec.replace(precision=choice.precision)  # auto resolved
    if choice.name == "torch":
        extractor = extractor if extractor is not None else torch_extractor(spec)
        return TorchBackend(extractor, half=spec.precision == "fp16"), choice
    assert export_dir is not None  # choose_backend refuses the exported backends without one
    if choice.name == "onnxruntime":
        return OnnxRuntimeBackend(export_dir, spec, providers=providers), choice
    return TensorRTBackend(export_dir, spec), choice


def _siamese_backend(
    spec: SiameseBackendSpec, providers: Providers | None, notify: Notify
) -> tuple[SiameseBackend, BackendChoice]:
    if spec.features and spec.backend == "tensorrt":
        raise ValueError(
            "the trackers with a target layer have no TensorRT engine (it would need the "
            "classification features as an output); use backend onnxruntime or torch"
        )
    if spec.features and spec.backend == "openvino":
        raise ValueError(
            "the trackers with a target layer run on onnxruntime or torch, not openvino (only "
            "the base tracker's search was measured there)"
        )
    if spec.backend == "openvino" or spec.precision == "bf16":
        usable, why = openvino_status("bf16" if spec.precision == "bf16" else "fp32")
        if not usable:
            raise ValueError(f"the openvino backend cannot run here: {why}")
    export = (
        open_siamese_export(spec.export_dir, spec.weights_dir, _export_precision(spec.precision))
        if spec.export_dir is not None
        else None
    )
    choice = choose_backend(
        BackendAsk(
            backend=spec.backend,
            precision=spec.precision,
            device=spec.device,
            export_dir=spec.export_dir,
            # The engines compute scores and boxes, not the features a target layer needs.
            export_has_engines=export is not None
            and not spec.features
            and bool(export.manifest.get("engines")),
            graph_cache=spec.graph_cache is not None,
            openvino_bf16=not spec.features
            and spec.device == "cpu"
            and spec.precision in ("auto", "bf16")
            and openvino_status("bf16")[0],
            export_args=f"--tracker {spec.tracker}",
        )
    )
    if choice.name == "torch":
        return _torch_siamese(spec, choice.precision), choice
    if choice.name == "tensorrt":
        assert export is not None  # choose_backend refuses tensorrt without an export folder
        return TensorRTSiameseBackend(export), choice
    if choice.from_graph_cache:
        assert spec.graph_cache is not None  # choose_backend takes the cache only where it is
        try:
            export = spec.graph_cache(spec.weights_dir, notify)
        except (OSError, RuntimeError) as exc:  # no disk, no exporter, a failed parity check
            if not choice.by_auto:
                raise
            notify(f"{spec.tracker}: no graph cache ({exc}); running torch instead")
            return _torch_siamese(spec, "fp32"), cache_fallback()
    assert isinstance(export, SiameseExport)
    if choice.name == "openvino":
        return OpenVinoSiameseBackend(export, spec.threads, choice.precision), choice
    session = OnnxRuntimeFeatureBackend if spec.features else OnnxRuntimeSiameseBackend
    return session(export, threads=spec.threads, providers=providers), choice


def _export_precision(precision: str) -> str:
    """The precision an export folder must hold: ``auto`` takes an FP32 one."""
    return "fp32" if precision == "auto" else precision


def _torch_siamese(spec: SiameseBackendSpec, precision: str) -> TorchSiameseBackend:
    template, search = spec.torch_branches(spec)
    return TorchSiameseBackend(template, search, half=precision == "fp16")


def use_backend(
    tracker: Any,
    name: str = "auto",
    *,
    export_dir: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    providers: Providers | None = None,
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
