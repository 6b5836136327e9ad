"""ONNX Runtime backend: the two exported graphs (``backbone.onnx``, ``roi_pool.onnx``).

The folder's ``manifest.json`` must match the tracker's config and weight file (checkpoint hash)
and each graph file the sha256 recorded for it; otherwise, or when a graph does not parse, the
backend refuses to load (:class:`~runtime.backends.manifest.ManifestMismatchError`, one line).

An INT8 backbone (symmetric int8 Q/DQ, TensorRT's form) runs on the CPU with its activations
re-encoded as uint8, losslessly, so that ONNX Runtime fuses its convs (:mod:`runtime.backends.qdq`).

Tensors cross as numpy arrays: free on CPU. A CUDA tensor is copied to the host and the result
copied back (this project's GPU machines carry the CPU build of ONNX Runtime; with a CUDA build,
IO binding would avoid the round trip, which is not written yet).
"""

from __future__ import annotations

import copy
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from google.protobuf.message import DecodeError
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

from runtime.backends.manifest import (
    BATCH_INDICES,
    CROP,
    FEATURE_MAP,
    FEATURES,
    ROI_FEATURES,
    ROIS,
    check_manifest,
    graph_path,
    load_manifest,
    unreadable_graph,
)
from runtime.backends.onnx_slicing import slice_backbone, slice_roi_pool
from runtime.backends.qdq import activations_to_uint8
from runtime.backends.spec import FeatureBackendSpec, SpecSource, resolve_spec

GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def _provider_name(provider: str | tuple[str, dict[str, Any]]) -> str:
    return provider if isinstance(provider, str) else provider[0]


def session_options(threads: int) -> Any:
    """ONNX Runtime options every backend uses: ``threads`` intra-op threads, sequential."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # ORT's idle worker threads spin after each run by default; torch (the FC head, its
    # training) runs right after in the same process and lost up to 3x to them on 2 cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def start_session(
    graph: bytes | str, options: Any, providers: list[str | tuple[str, dict[str, Any]]]
) -> Any:
    """An ``InferenceSession``; warns where a requested GPU provider silently fell back."""
    session = ort.InferenceSession(graph, options, providers=providers)
    running = session.get_providers()
    wanted_gpu = [p for p in map(_provider_name, providers) if p in GPU_PROVIDERS]
    if wanted_gpu and not any(p in GPU_PROVIDERS for p in running):
        warnings.warn(
            f"onnxruntime: {', '.join(wanted_gpu)} was requested but the session runs on "
            f"{', '.join(running)} only (this onnxruntime offers "
            f"{', '.join(ort.get_available_providers())}); it fell back to the CPU silently",
            RuntimeWarning,
            stacklevel=3,
        )
    return session


def cpu_encoding(graph: bytes) -> bytes:
    """An INT8 graph with its activations re-encoded as uint8 (:mod:`runtime.backends.qdq`)."""
    if b"QuantizeLinear" not in graph:
        return graph  # float: nothing to do, no parse
    model = onnx.load_from_string(graph)
    return model.SerializeToString() if activations_to_uint8(model) else graph


class OnnxRuntimeBackend:
    name = "onnxruntime"
    channel_budget: int | None = None  # slices to any width (a session build per video)
    takes_batches = False  # the exported backbone takes one crop per call
    build_seconds = 0.0  # of the last session build for a pruned copy

    def __init__(
        self,
        export_dir: str | os.PathLike[str],
        spec: FeatureBackendSpec | SpecSource | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        providers: list[str | tuple[str, dict[str, Any]]] | None = None,
        threads: int | None = None,
    ) -> None:
        """Load ``export_dir`` for ``spec`` (what the tracker needs; default: RT-MDNet's).

        ``spec`` may also be a tracker config (its ``backend_spec(data_dir)`` is used; ``data_dir``
        is for that case only). ``providers`` go to ``onnxruntime.InferenceSession`` (default:
        CPU). ``threads`` (else ``spec.threads``, else ``torch.get_num_threads()``, so
        ``--threads`` means the same for every backend) sets ONNX Runtime's intra-op threads.
        """
        self.spec = spec = resolve_spec(spec, data_dir)
        self.export_dir = Path(export_dir).expanduser()
        self.manifest = load_manifest(self.export_dir)
        check_manifest(self.manifest, spec, self.export_dir)

        self._threads = int(threads or spec.threads or torch.get_num_threads())
        self._requested = list(providers or ["CPUExecutionProvider"])
        # Kept as bytes: per-video pruning slices them and builds new sessions (keep_channels).
        paths = [graph_path(self.manifest, self.export_dir, n) for n in ("backbone", "roi_pool")]
        backbone, roi_pool = (path.read_bytes() for path in paths)
        if all(_provider_name(p) == "CPUExecutionProvider" for p in self._requested):
            backbone = self._parsed(paths[0], cpu_encoding, backbone)  # once: slices start here
        self._graph_bytes = (backbone, roi_pool)
        # A spec that pools nothing (MLT) takes the folder's RoI side (only slices use it).
        roi_size = spec.roi_size if spec.pools else self.manifest["config"]["roi_size"]
        self._roi_cells = int(roi_size) ** 2
        self.kept_channels: int | None = None  # set on a pruned copy
        self._start_sessions(*self._graph_bytes, paths=paths)

    def _parsed(self, path: Path, fn: Any, *args: Any) -> Any:
        """``fn(*args)``; a graph that does not parse becomes one ManifestMismatchError line."""
        unreadable = (
            DecodeError,
            ort_errors.InvalidProtobuf,
            ort_errors.InvalidGraph,
            ort_errors.Fail,
            ort_errors.NoSuchFile,
        )
        try:
            return fn(*args)
        except unreadable as exc:
            raise unreadable_graph(path, self.manifest, self.export_dir, exc) from None

    def _start_sessions(
        self, backbone: bytes, roi_pool: bytes, paths: list[Path] | None = None
    ) -> None:
        options = session_options(self._threads)
        if paths is None:  # in-memory slices of graphs that parsed already
            self._backbone = start_session(backbone, options, self._requested)
            self._pool = start_session(roi_pool, options, self._requested)
        else:
            start = start_session
            self._backbone = self._parsed(paths[0], start, backbone, options, self._requested)
            self._pool = self._parsed(paths[1], start, roi_pool, options, self._requested)
        self.providers = self._backbone.get_providers()

    def keep_channels(self, keep: torch.Tensor) -> OnnxRuntimeBackend:
        """A backend on graphs sliced to output channels ``keep`` (sessions built in memory).

        Costs a session build per video (``build_seconds`` records it; docs/results.md).
        """
        start = time.perf_counter()
        index = [int(i) for i in torch.as_tensor(keep).flatten()]
        backbone = slice_backbone(onnx.load_from_string(self._graph_bytes[0]), FEATURES, index)
        roi_pool = slice_roi_pool(
            onnx.load_from_string(self._graph_bytes[1]),
            FEATURE_MAP,
            ROI_FEATURES,
            len(index),
            self._roi_cells,
        )
        pruned = copy.copy(self)
        pruned._start_sessions(backbone.SerializeToString(), roi_pool.SerializeToString())
        pruned.kept_channels = len(index)
        pruned.build_seconds = time.perf_counter() - start
        return pruned

    @staticmethod
    def _host(tensor: torch.Tensor, dtype: np.dtype) -> np.ndarray:
        return np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype=dtype)

    def feature_map(self, crop: torch.Tensor) -> torch.Tensor:
        (out,) = self._backbone.run([FEATURES], {CROP: self._host(crop, np.float32)})
        return torch.from_numpy(out).to(crop.device)

    def pool(
        self, feature_map: torch.Tensor, rois: torch.Tensor, batch_indices: torch.Tensor
    ) -> torch.Tensor:
        feeds = {
            FEATURE_MAP: self._host(feature_map, np.float32),
            ROIS: self._host(rois, np.float32),
            BATCH_INDICES: self._host(batch_indices, np.int64),
        }
        (out,) = self._pool.run([ROI_FEATURES], feeds)
        return torch.from_numpy(out).to(feature_map.device)

    def __repr__(self) -> str:
        pruned = f", {self.kept_channels} channels kept" if self.kept_channels else ""
        return f"OnnxRuntimeBackend({self.export_dir}, providers={self.providers}{pruned})"
