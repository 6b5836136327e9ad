"""Backends for two-branch Siamese trackers (the ``nanotrack`` tracker): template and search.

One interface, :class:`SiameseBackend`, three implementations, all taking and returning torch
tensors (free views of numpy arrays on the CPU):

- :class:`TorchSiameseBackend`: the PyTorch modules (CPU, or CUDA with optional fp16 autocast).
- :class:`OnnxRuntimeSiameseBackend`: ``template.onnx`` once per target, ``search.onnx`` once
  per frame (one ``InferenceSession.run`` per frame).
- :class:`TensorRTSiameseBackend`: the same two graphs as TensorRT 10 engines (written against
  the API, **not run** here: no machine of this project has TensorRT).

Nothing here imports a tracker package: the torch backend is handed its two modules, the others
read an export folder whose ``manifest.json`` (kind ``"siamese"``) binds the graphs to the weight
file by sha256 and records each graph's own sha256, checked at load (a flipped byte is refused).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from runtime.atomic import write_atomic
from runtime.backends.manifest import (
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    ManifestMismatchError,
    checkpoint_record,
)
from runtime.backends.onnxruntime_backend import cpu_encoding, session_options, start_session
from runtime.backends.tensorrt_backend import TensorRTUnavailable, _Engine, require_tensorrt
from runtime.hashing import sha256_file

SIAMESE_KIND = "siamese"
TEMPLATE_ONNX = "template.onnx"
SEARCH_ONNX = "search.onnx"
# Tensor names (ONNX and TensorRT alike).
CROP = "crop"
KERNELS = ("dw_cls", "dw_reg", "pw_cls", "pw_reg")
SCORES = "scores"  # (1, n, n) target probability per map cell
BOXES = "boxes"  # (1, 4, n, n) distances to the left, top, right, bottom edges (crop pixels)
# The features graph (trackers that adapt a layer on the classification features):
FEATURES_ONNX = "search_features.onnx"
MARGINS = "margins"  # (1, n*n) target-minus-background logit per map cell
FEATURES = "features"  # (1, 96, n*n) the classification tower's output per map cell


@runtime_checkable
class SiameseBackend(Protocol):
    name: str

    def template(self, crop: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(1, 3, 127, 127)`` float32 BGR 0..255 -> the template's correlation kernels."""
        ...

    def search(
        self, crop: torch.Tensor, kernels: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(1, 3, S, S)`` crop + kernels -> ``scores (1, n, n)``, ``boxes (1, 4, n, n)``."""
        ...


class TorchSiameseBackend:
    """The PyTorch modules: ``template(crop) -> kernels``, ``search(crop, *kernels) -> ...``."""

    name = "torch"
    # search() takes B crops of one side with B templates' kernels (stacked on dim 0): the
    # modules are batch-agnostic. The exported graphs are not (batch 1), so the others run one.
    batches = True

    def __init__(self, template: nn.Module, search: nn.Module, half: bool = False) -> None:
        device = next(search.parameters()).device
        if half and device.type != "cuda":
            raise ValueError(
                f"fp16 on the torch backend needs a CUDA device, the network is on {device}; "
                f"use precision fp32 on a CPU"
            )
        self._template, self._search, self.half, self.device = template, search, half, device

    def _run(self, fn: Callable[..., Any], *args: torch.Tensor) -> Any:
        with torch.inference_mode():
            if not self.half:
                return fn(*args)
            with torch.autocast("cuda", dtype=torch.float16):
                return tuple(t.float() for t in fn(*args))

    def template(self, crop: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self._run(self._template, crop.to(self.device))

    def search(
        self, crop: torch.Tensor, kernels: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self._run(self._search, crop.to(self.device), *kernels)

    def __repr__(self) -> str:
        return f"TorchSiameseBackend(on {self.device}{', fp16' if self.half else ''})"


# -- export folders ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SiameseExport:
    """What a backend needs to know about an export folder, read from its manifest."""

    folder: Path
    manifest: dict[str, Any]

    @property
    def precision(self) -> str:
        return str(self.manifest.get("precision", "fp32"))

    def graph(self, name: str) -> Path:
        return self.folder / self.manifest["graphs"][name]["onnx"]

    def engine(self, name: str) -> Path | None:
        engines = self.manifest.get("engines") or {}
        return self.folder / engines[name] if name in engines else None


def write_siamese_manifest(
    folder: Path,
    *,
    tracker: str,
    weights_dir: Path,
    graphs: dict[str, Path],
    precision: str,
    extra: dict[str, Any],
) -> Path:
    """Write ``manifest.json`` (atomically): weight hash, every graph's hash, and ``extra``."""
    manifest = {
        "format": MANIFEST_FORMAT,
        "kind": SIAMESE_KIND,
        "tracker": tracker,
        "checkpoint": checkpoint_record("nanotrack", weights_dir),
        "precision": precision,
        "graphs": {
            name: {"onnx": path.name, "sha256": sha256_file(path)} for name, path in graphs.items()
        },
        **extra,
    }
    path = folder / MANIFEST_FILE
    write_atomic(path, json.dumps(manifest, indent=2) + "\n")
    return path


def open_siamese_export(
    folder: str | os.PathLike[str], weights_dir: Path, precision: str = "fp32"
) -> SiameseExport:
    """Read and check a Siamese export folder; :class:`ManifestMismatchError` says what is wrong.

    Checked: the manifest parses and is of this kind, the weight file's hash is the one the
    graphs were made from, each graph file's hash is the recorded one, the precision matches.
    """
    folder = Path(folder).expanduser()
    path = folder / MANIFEST_FILE
    redo = f"re-export: python export/build_engine.py --tracker nanotrack --out {folder}"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not an export folder ({redo})")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestMismatchError(f"{path} is not valid JSON ({exc}); {redo}") from None
    if not isinstance(manifest, dict):
        raise ManifestMismatchError(f"{path} holds no manifest object; {redo}")
    try:
        return _checked(SiameseExport(folder, manifest), weights_dir, precision, redo)
    except (AttributeError, KeyError, TypeError) as exc:  # a field missing or of the wrong type
        raise ManifestMismatchError(f"{path} is malformed ({exc!r}); {redo}") from None


def _checked(export: SiameseExport, weights_dir: Path, precision: str, redo: str) -> SiameseExport:
    folder, manifest = export.folder, export.manifest
    if manifest.get("format") != MANIFEST_FORMAT or manifest.get("kind") != SIAMESE_KIND:
        raise ManifestMismatchError(
            f"{folder} is not a Siamese (nanotrack) export folder (kind "
            f"{manifest.get('kind', 'rtmdnet')!r}, format {manifest.get('format')!r}); {redo}"
        )
    recorded = manifest.get("checkpoint", {}).get("sha256")
    current = checkpoint_record("nanotrack", weights_dir)["sha256"]
    if recorded != current:
        raise ManifestMismatchError(
            f"checkpoint hash mismatch: {folder} was exported from weights with sha256 "
            f"{recorded}, but the weights in {weights_dir} have sha256 {current}; {redo}"
        )
    for name, record in manifest.get("graphs", {}).items():
        graph = folder / record["onnx"]
        if not graph.is_file():
            raise ManifestMismatchError(f"{graph} ({name} graph) is missing; {redo}")
        if sha256_file(graph) != record["sha256"]:
            raise ManifestMismatchError(
                f"{graph} does not match the sha256 its manifest records (changed or corrupt "
                f"since export); {redo}"
            )
    if manifest.get("precision", "fp32") != precision:
        raise ManifestMismatchError(
            f"{folder} holds {manifest.get('precision')} graphs but the tracker asks for "
            f"{precision}; use --precision {manifest.get('precision')}, or export one: "
            f"python export/build_engine.py --tracker nanotrack --precision {precision} --out DIR"
        )
    return export


class OnnxRuntimeSiameseBackend:
    """The two graphs of an export folder in ONNX Runtime (CPU unless ``providers`` say else)."""

    name = "onnxruntime"
    search_graph = "search"  # the manifest's name of the per-frame graph, and its outputs:
    search_outputs: tuple[str, ...] = (SCORES, BOXES)

    def __init__(
        self,
        export: SiameseExport,
        threads: int | None = None,
        providers: list[str | tuple[str, dict[str, Any]]] | None = None,
    ) -> None:
        self.export = export
        requested = list(providers or ["CPUExecutionProvider"])
        options = session_options(int(threads or torch.get_num_threads()))
        if self.search_graph not in export.manifest.get("graphs", {}):
            raise ManifestMismatchError(
                f"{export.folder} has no {self.search_graph} graph (INT8 export folders and those "
                f"of earlier versions hold template and search only; without --export-dir the "
                f"graph cache has it, or re-export: python export/build_engine.py --tracker "
                f"nanotrack --out DIR)"
            )
        search = export.graph(self.search_graph).read_bytes()
        if requested == ["CPUExecutionProvider"]:
            search = cpu_encoding(search)  # an INT8 graph's activations as uint8 (fused convs)
        self.search_bytes = search  # what with_search_graph edits (a pruned head's graph)
        self._options, self._requested = options, requested
        self._template = start_session(export.graph("template").read_bytes(), options, requested)
        self._search = start_session(search, options, requested)
        self.providers = self._search.get_providers()

    def with_search_graph(self, graph: bytes) -> OnnxRuntimeSiameseBackend:
        """A backend sharing this one's template session, searching with ``graph`` (the same
        inputs and outputs; e.g. the features graph with a pruned head, once per video)."""
        other = copy.copy(self)
        other.search_bytes = graph
        other._search = start_session(graph, self._options, self._requested)
        return other

    def template(self, crop: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = self._template.run(list(KERNELS), {CROP: _host(crop)})
        return tuple(torch.from_numpy(o) for o in outs)

    def search(
        self, crop: torch.Tensor, kernels: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        feeds = {CROP: _host(crop), **{n: _host(k) for n, k in zip(KERNELS, kernels, strict=True)}}
        outs = self._search.run(list(self.search_outputs), feeds)
        return tuple(torch.from_numpy(o) for o in outs)  # type: ignore[return-value]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.export.folder}, {self.export.precision}, "
            f"providers={self.providers})"
        )


class OnnxRuntimeFeatureBackend(OnnxRuntimeSiameseBackend):
    """``template.onnx`` and ``search_features.onnx``: ``search`` gives ``margins, boxes,
    features`` (what ``runtime.nanotrack.model.FeatureSearchBranch`` computes)."""

    search_graph = "search_features"
    search_outputs = (MARGINS, BOXES, FEATURES)


def _host(tensor: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype=np.float32)


class TensorRTSiameseBackend:
    """The two graphs as TensorRT 10 engines (``manifest.json`` ``"engines"``), on the GPU.

    NOT RUN here (no TensorRT on this project's machines). Inputs and outputs are CUDA tensors on
    torch's current stream (see :class:`runtime.backends.tensorrt_backend._Engine`).
    """

    name = "tensorrt"

    def __init__(self, export: SiameseExport) -> None:
        trt = require_tensorrt()
        paths = {name: export.engine(name) for name in ("template", "search")}
        if any(p is None for p in paths.values()):
            raise TensorRTUnavailable(
                f"{export.folder} has no TensorRT engines (they are built only where tensorrt "
                f"and a CUDA GPU are present: python export/build_engine.py --tracker nanotrack)"
            )
        self.export = export
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)  # must outlive the engines
        self._template = _Engine(trt, self._runtime, paths["template"])  # type: ignore[arg-type]
        self._search = _Engine(trt, self._runtime, paths["search"])  # type: ignore[arg-type]

    def template(self, crop: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self._template(**{CROP: crop})
        return tuple(out[n] for n in KERNELS)

    def search(
        self, crop: torch.Tensor, kernels: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = self._search(**{CROP: crop, **dict(zip(KERNELS, kernels, strict=True))})
        return out[SCORES], out[BOXES]

    def __repr__(self) -> str:
        return f"TensorRTSiameseBackend({self.export.folder}, {self.export.precision})"
