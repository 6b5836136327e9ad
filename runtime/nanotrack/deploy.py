"""Where the ``nanotrack`` network runs: backend choice and the graph cache behind the fast path.

``create_tracker("nanotrack")`` with no other option runs ONNX Runtime on the CPU (one session run
per frame) from graphs exported on first use into a cache folder, checked against torch before
they are used; later runs reuse them while their hashes (weights, graphs, and the source of the
code that defines them) match, and rebuild them when any differs. The cache folder is
``$TRACKER_CACHE`` if set, else ``$XDG_CACHE_HOME/metartt-tracker`` (``~/.cache/...``).

``backend="auto"``: TensorRT where it is usable and ``export_dir`` holds engines; else, with an
``export_dir``, ONNX Runtime on it; else torch on CUDA when ``device`` is a GPU (this project's
GPU machines carry the CPU build of ONNX Runtime); else ONNX Runtime from the cache, falling back
to torch, saying why, if the cache cannot be written or a graph fails its check.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from runtime.backends import BACKEND_NAMES, check_precision
from runtime.backends.manifest import ManifestMismatchError, checkpoint_record
from runtime.backends.siamese import (
    OnnxRuntimeFeatureBackend,
    OnnxRuntimeSiameseBackend,
    SiameseBackend,
    SiameseExport,
    TensorRTSiameseBackend,
    TorchSiameseBackend,
    open_siamese_export,
    write_siamese_manifest,
)
from runtime.backends.tensorrt_backend import tensorrt_status
from runtime.nanotrack import graphs, model
from runtime.nanotrack.config import NanoTrackConfig
from runtime.paths import PROJECT_ROOT, data_root

CACHE_ENV_VAR = "TRACKER_CACHE"
TRACKER = "nanotrack"
# The code that decides what the graphs compute: a change to any of it invalidates the cache.
_GRAPH_SOURCES = (
    "runtime/backbones/common.py",  # BatchNorm folding
    "runtime/backbones/nanotrack.py",
    "runtime/nanotrack/model.py",
    "runtime/nanotrack/graphs.py",
)


def cache_root() -> Path:
    explicit = os.environ.get(CACHE_ENV_VAR)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "metartt-tracker"


def graph_source_sha256() -> str:
    digest = hashlib.sha256()
    for rel in _GRAPH_SOURCES:
        digest.update(rel.encode() + b"\0" + (PROJECT_ROOT / rel).read_bytes())
    return digest.hexdigest()


def export_folder(
    folder: Path, weights_dir: Path, net: model.NanoTrackNet | None = None
) -> SiameseExport:
    """Export, check against torch and write the manifest of an FP32 cache folder (the template,
    search and features graphs); returns it open."""
    net = net or model.build_network(weights_dir)
    paths = graphs.write_graphs(net, folder)
    paths["search_features"] = graphs.write_feature_graph(net, folder)
    unverified = SiameseExport(folder, {"graphs": {n: {"onnx": p.name} for n, p in paths.items()}})
    parity = graphs.check_parity(net, unverified, *graphs.synthetic_crops())
    write_siamese_manifest(
        folder,
        tracker=TRACKER,
        weights_dir=weights_dir,
        graphs=paths,
        precision="fp32",
        extra={
            "opset": graphs.OPSET,
            "graph_source_sha256": graph_source_sha256(),
            "parity": {"synthetic_crops": parity},
        },
    )
    return open_siamese_export(folder, weights_dir)


def cached_export(weights_dir: Path, notify: Callable[[str], None]) -> SiameseExport:
    """The cache folder for these weights and this code, exported first if missing or stale."""
    weights_sha = checkpoint_record("nanotrack", weights_dir)["sha256"]
    source_sha = graph_source_sha256()
    folder = cache_root() / f"{TRACKER}-{weights_sha[:12]}-{source_sha[:12]}"
    try:
        export = open_siamese_export(folder, weights_dir)
        if export.manifest.get("graph_source_sha256") == source_sha:
            return export
    except (FileNotFoundError, ManifestMismatchError):
        pass
    notify(f"nanotrack: exporting its ONNX graphs once into {folder} (about 35 s)")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        export_folder(staging, weights_dir)
        if folder.exists():
            shutil.rmtree(folder)  # stale: other hashes than its name promises
        try:
            os.replace(staging, folder)  # atomic: readers see no folder or the whole new one
        except OSError:
            if not folder.exists():
                raise
            # Another process exported the same folder between our rmtree and replace: use it.
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return open_siamese_export(folder, weights_dir)


def _torch_backend(
    config: NanoTrackConfig, weights_dir: Path, features: bool = False
) -> TorchSiameseBackend:
    net = model.build_network(weights_dir).to(config.device)
    search = model.FeatureSearchBranch(net) if features else model.SearchBranch(net)
    return TorchSiameseBackend(model.TemplateBranch(net), search, half=config.precision == "fp16")


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def create_siamese_backend(
    config: NanoTrackConfig,
    data_dir: Path | None = None,
    notify: Callable[[str], None] = _stderr,
    features: bool = False,
) -> SiameseBackend:
    """The backend ``config.backend`` names (see the module docstring for ``auto``).

    ``notify`` hears of what takes time or changes the plan (the one-time graph export, a
    fallback to torch); stderr by default, since a silent 35 s pause looks like a hang.
    ``features``: the search gives ``margins, boxes, features`` (``FeatureSearchBranch``, the
    graph cache's ``search_features.onnx``) for the trackers with a target layer.
    """
    weights_dir = data_root(data_dir) / "weights"
    name, why = config.backend, "named"
    if name not in BACKEND_NAMES:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")
    if features and name == "tensorrt":
        raise ValueError(
            "the trackers with a target layer have no TensorRT engine (it would need the "
            "classification features as an output); use backend onnxruntime or torch"
        )
    export = (
        open_siamese_export(config.export_dir, weights_dir, config.precision)
        if config.export_dir is not None
        else None
    )
    if name == "auto":
        usable, status = tensorrt_status()
        if export is not None:
            has_engines = bool(export.manifest.get("engines"))
            name = "tensorrt" if usable and has_engines else "onnxruntime"
            why = f"auto: {status}" if name == "tensorrt" or not usable else "auto: no engines"
        elif config.device != "cpu":
            name, why = "torch", f"auto: torch on {config.device} (no export folder given)"
        else:
            name, why = "onnxruntime", "auto: fastest verified on this CPU (graph cache)"
    elif name == "tensorrt" and export is None:
        raise ValueError(
            "the tensorrt backend needs an export folder with engines: "
            "python export/build_engine.py --tracker nanotrack --out DIR (on a GPU machine)"
        )
    check_precision(name, config.precision, config.device)
    if config.precision == "int8" and export is None:
        raise ValueError(
            "int8 runs from an int8 export: python export/build_engine.py --tracker nanotrack "
            "--precision int8 --calib DIR --out DIR, then --export-dir DIR"
        )
    backend: SiameseBackend
    if name == "torch":
        backend = _torch_backend(config, weights_dir, features)
    elif name == "tensorrt":
        assert export is not None
        backend = TensorRTSiameseBackend(export)
    else:
        if export is None:
            try:
                export = cached_export(weights_dir, notify)
            except (OSError, RuntimeError) as exc:  # no disk, no exporter, a failed parity check
                if config.backend != "auto":
                    raise
                notify(f"nanotrack: no graph cache ({exc}); running torch instead")
                backend = _torch_backend(config, weights_dir, features)
                backend.chosen_because = "auto: graph cache unavailable"  # type: ignore[attr-defined]
                return backend
        session = OnnxRuntimeFeatureBackend if features else OnnxRuntimeSiameseBackend
        backend = session(export, threads=config.threads)
    backend.chosen_because = why  # type: ignore[attr-defined]
    return backend
