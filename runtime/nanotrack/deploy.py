"""Where the ``nanotrack`` network runs: its backend spec and the graph cache behind the fast path.

``create_tracker("nanotrack")`` with no other option runs ONNX Runtime on the CPU (one session run
per frame) from graphs exported on first use into a cache folder, checked against torch before
they are used; later runs reuse them while their hashes (weights, graphs, and the source of the
code that defines them) match, and rebuild them when any differs. The cache folder is
``$TRACKER_CACHE`` if set, else ``$XDG_CACHE_HOME/realtime-tracker`` (``~/.cache/...``).

``backend="auto"`` is every tracker's one rule (``runtime.backends.choice``): TensorRT where it is
usable and ``export_dir`` holds engines; else, with an ``export_dir``, ONNX Runtime on it; else
torch on CUDA when ``device`` is a GPU (this project's GPU machines carry the CPU build of ONNX
Runtime); else ONNX Runtime from the cache, falling back to torch, saying why, if the cache
cannot be written or a graph fails its check. :func:`siamese_spec` hands the factory
(``runtime.backends.create_backend``) the network and the cache it cannot import.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from torch import nn

from runtime.backends import SiameseBackendSpec
from runtime.backends.manifest import ManifestMismatchError, checkpoint_record
from runtime.backends.siamese import SiameseExport, open_siamese_export, write_siamese_manifest
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
    return Path(base).expanduser() / "realtime-tracker"


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


def _torch_branches(spec: SiameseBackendSpec) -> tuple[nn.Module, nn.Module]:
    net = model.build_network(spec.weights_dir).to(spec.device)
    search = model.FeatureSearchBranch(net) if spec.features else model.SearchBranch(net)
    return model.TemplateBranch(net), search


def siamese_spec(
    config: NanoTrackConfig, data_dir: Path | None = None, features: bool = False
) -> SiameseBackendSpec:
    """What a ``nanotrack``-family tracker asks of its backend, for
    :func:`runtime.backends.create_backend` (which backend ``auto`` takes: the module docstring).

    ``features``: the search gives ``margins, boxes, features`` (``FeatureSearchBranch``, the
    graph cache's ``search_features.onnx``) for the trackers with a target layer.
    """
    return SiameseBackendSpec(
        weights_dir=data_root(data_dir) / "weights",
        torch_branches=_torch_branches,
        graph_cache=cached_export,
        tracker=TRACKER,
        backend=config.backend,
        precision=config.precision,
        device=config.device,
        export_dir=Path(config.export_dir) if config.export_dir is not None else None,
        threads=config.threads,
        features=features,
    )
