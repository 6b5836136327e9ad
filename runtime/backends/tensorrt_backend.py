"""TensorRT backend, written against the TensorRT 10 Python API.

NOT RUN on this project's machines so far: TensorRT cannot be installed here (see DESIGN.md). The
module imports without ``tensorrt``; constructing :class:`TensorRTBackend` without it, or without
a CUDA GPU, raises :class:`TensorRTUnavailable` saying which is missing.

TensorRT 10 style throughout: engines deserialized with ``Runtime.deserialize_cuda_engine``, I/O
by tensor name (``num_io_tensors``, ``get_tensor_name``, ``get_tensor_mode``), dynamic shapes via
``set_input_shape``, buffers via ``set_tensor_address`` pointing at torch CUDA tensors, and
``execute_async_v3`` on torch's current CUDA stream, so the FC head (torch, same stream) reads
the engine's output without a host round trip or an explicit synchronisation.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from runtime.backends.manifest import (
    BATCH_INDICES,
    CROP,
    FEATURE_MAP,
    FEATURES,
    ROI_FEATURES,
    ROIS,
    check_engine_files,
    check_manifest,
    graph_path,
    load_manifest,
)
from runtime.backends.spec import FeatureBackendSpec, SpecSource, resolve_spec


class TensorRTUnavailable(RuntimeError):
    """``tensorrt`` is not importable, or there is no CUDA GPU, or the folder has no engines."""


def tensorrt_status() -> tuple[bool, str]:
    """``(usable, why)``: whether TensorRT engines can be built and run in this process."""
    try:
        import tensorrt  # lazy: optional, absent on these machines (DESIGN.md)
    except ImportError:
        return False, "tensorrt not installed"
    if not torch.cuda.is_available():
        return False, "no CUDA GPU"
    return True, f"tensorrt {tensorrt.__version__} on {torch.cuda.get_device_name()}"


def require_tensorrt() -> Any:
    """The ``tensorrt`` module, or :class:`TensorRTUnavailable` naming what is missing."""
    usable, why = tensorrt_status()
    if not usable:
        raise TensorRTUnavailable(f"the tensorrt backend cannot run here: {why}")
    import tensorrt  # lazy: optional (tensorrt_status just found it importable)

    return tensorrt


def _torch_dtype(trt: Any, dtype: Any) -> torch.dtype:
    table = {
        "FLOAT": torch.float32,
        "HALF": torch.float16,
        "BF16": torch.bfloat16,
        "INT8": torch.int8,
        "INT32": torch.int32,
        "INT64": torch.int64,
        "BOOL": torch.bool,
        "UINT8": torch.uint8,
    }
    for key, value in table.items():
        if hasattr(trt.DataType, key) and dtype == getattr(trt.DataType, key):
            return value
    raise TypeError(f"TensorRT tensor type {dtype} has no torch equivalent here")


class _Engine:
    """One deserialized engine and its execution context; I/O by tensor name."""

    def __init__(self, trt: Any, runtime: Any, path: Path) -> None:
        self.path = path
        self.engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise TensorRTUnavailable(
                f"could not deserialize {path}: an engine only runs on the TensorRT version and "
                f"GPU it was built with; rebuild it with python export/build_engine.py"
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.inputs = [n for n in names if is_input[n]]
        self.outputs = [n for n in names if not is_input[n]]
        self.dtypes = {n: _torch_dtype(trt, self.engine.get_tensor_dtype(n)) for n in names}

    def profile(self, name: str) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """``(min, opt, max)`` shapes of input ``name`` in optimization profile 0."""
        low, opt, high = self.engine.get_tensor_profile_shape(name, 0)
        return tuple(low), tuple(opt), tuple(high)

    def __call__(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        device = torch.device("cuda", torch.cuda.current_device())
        held = []  # keeps the input buffers alive until the call returns
        for name in self.inputs:
            tensor = inputs[name].to(device=device, dtype=self.dtypes[name]).contiguous()
            held.append(tensor)
            if not self.context.set_input_shape(name, tuple(tensor.shape)):
                low, _, high = self.profile(name)
                raise ValueError(
                    f"{self.path.name}: input {name} of shape {tuple(tensor.shape)} is outside "
                    f"the engine's profile {low}..{high}; rebuild with a wider profile"
                )
            self.context.set_tensor_address(name, tensor.data_ptr())
        outputs = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            out = torch.empty(shape, dtype=self.dtypes[name], device=device)
            self.context.set_tensor_address(name, out.data_ptr())
            outputs[name] = out
        # Same stream as torch: work queued after this (the FC head) is ordered after the engine,
        # and the caching allocator does not reuse `held` before the stream has consumed it.
        if not self.context.execute_async_v3(torch.cuda.current_stream(device).cuda_stream):
            raise RuntimeError(f"{self.path.name}: execute_async_v3 failed (see TensorRT's log)")
        return outputs


def full_conv_filters(onnx_path: Path, names: list[str]) -> dict[str, np.ndarray]:
    """The full graph's output-conv weight and bias: the source of every per-video refit."""
    tensors = {t.name: t for t in onnx.load(str(onnx_path)).graph.initializer}
    return {name: numpy_helper.to_array(tensors[name]) for name in names}


class TensorRTBackend:
    """The two engines of an export folder (``manifest.json`` ``"engines"``), on the GPU.

    Outputs are CUDA tensors when the inputs are (the tracker on ``device="cuda"``); inputs on
    the CPU are copied in and the results copied back, which works but costs a round trip.
    """

    name = "tensorrt"
    takes_batches = False  # the engines' profiles take one crop per call

    def __init__(
        self,
        export_dir: str | os.PathLike[str],
        spec: FeatureBackendSpec | SpecSource | None = None,
        data_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        """Load the engines of ``export_dir`` for ``spec`` (or a tracker config, with ``data_dir``:
        see :class:`~runtime.backends.onnxruntime_backend.OnnxRuntimeBackend`)."""
        trt = require_tensorrt()
        self.spec = spec = resolve_spec(spec, data_dir)
        self.export_dir = Path(export_dir).expanduser()
        self.manifest = load_manifest(self.export_dir)
        check_manifest(self.manifest, spec, self.export_dir)
        engines = self.manifest.get("engines")
        if not engines:
            raise TensorRTUnavailable(
                f"{self.export_dir} has no TensorRT engines (they are built only where tensorrt "
                f"and a CUDA GPU are present: python export/build_engine.py on that machine)"
            )
        check_engine_files(self.manifest, self.export_dir)  # graphs: check_manifest did
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)  # must outlive the engines
        self._backbone = _Engine(trt, self._runtime, self.export_dir / engines["backbone"])
        self._pool = _Engine(trt, self._runtime, self.export_dir / engines["roi_pool"])
        self.precision = engines.get("precision", "fp32")
        self.max_rois = self._pool.profile(ROIS)[2][0]
        # Per-video pruning: engines at a fixed conv width, refitted with each video's filters.
        pruned = self.manifest.get("pruned")
        self.channel_budget: int | None = None
        if pruned and engines.get("backbone_pruned"):
            self.channel_budget = int(pruned["conv_width"])
            self._pruned_engines = (
                _Engine(trt, self._runtime, self.export_dir / engines["backbone_pruned"]),
                _Engine(trt, self._runtime, self.export_dir / engines["roi_pool_pruned"]),
            )
            self._full_filters = full_conv_filters(
                graph_path(self.manifest, self.export_dir, "backbone"), pruned["refit_weights"]
            )

    def feature_map(self, crop: torch.Tensor) -> torch.Tensor:
        out = self._backbone(**{CROP: crop})[FEATURES].to(crop.device)
        return out if self._keep is None else out.index_select(1, self._keep.to(out.device))

    _keep: torch.Tensor | None = None

    def keep_channels(self, keep: torch.Tensor) -> TensorRTBackend:
        """Per-video pruning on TensorRT: refit the fixed-width engine with the kept filters.

        With ``build_engine.py --prune`` the folder holds engines at ``channel_budget`` output
        channels (built with REFIT); the tracker keeps exactly that many (top-k by mask) and the
        output conv's weights and biases of those channels are refitted in place (milliseconds,
        no rebuild). Without them, or for another count, the kept channels are selected from the
        full engine's output: the pruned network's scores, but only the FC head runs smaller.
        """
        index = torch.as_tensor(keep, dtype=torch.long).flatten()
        pruned = copy.copy(self)
        if self.channel_budget is not None and len(index) == self.channel_budget:
            self._refit(index.cpu().numpy())
            pruned._backbone, pruned._pool = self._pruned_engines
            pruned.max_rois = pruned._pool.profile(ROIS)[2][0]
        else:
            pruned._keep = index
        return pruned

    def _refit(self, keep: np.ndarray) -> None:
        trt = require_tensorrt()
        engine = self._pruned_engines[0].engine
        refitter = trt.Refitter(engine, self._logger)
        held = []  # TensorRT reads the host arrays during refit_cuda_engine
        for name, full in self._full_filters.items():
            held.append(np.ascontiguousarray(full[keep]))
            if not refitter.set_named_weights(name, trt.Weights(held[-1])):
                raise RuntimeError(f"TensorRT refused to refit {name!r} of {engine}")
        missing = refitter.get_missing_weights()
        if missing:
            raise RuntimeError(f"TensorRT refit needs weights not supplied: {missing}")
        if not refitter.refit_cuda_engine():
            raise RuntimeError("TensorRT refit_cuda_engine failed (see TensorRT's log)")

    def pool(
        self, feature_map: torch.Tensor, rois: torch.Tensor, batch_indices: torch.Tensor
    ) -> torch.Tensor:
        if len(rois) == 0:
            dim = int(feature_map.shape[1]) * int(self.manifest["config"]["roi_size"]) ** 2
            return torch.zeros(0, dim, dtype=torch.float32, device=feature_map.device)
        chunks = []
        for start in range(0, len(rois), self.max_rois):  # more RoIs than the profile: in slices
            stop = start + self.max_rois
            out = self._pool(
                **{
                    FEATURE_MAP: feature_map,
                    ROIS: rois[start:stop],
                    BATCH_INDICES: batch_indices[start:stop],
                }
            )[ROI_FEATURES]
            chunks.append(out)
        out = chunks[0] if len(chunks) == 1 else torch.cat(chunks)
        return out.to(feature_map.device)

    def __repr__(self) -> str:
        return f"TensorRTBackend({self.export_dir}, {self.precision})"
