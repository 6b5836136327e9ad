"""The export folder's contract: file names, tensor names, ``manifest.json``, checkpoint hashes.

``export/build_engine.py`` writes a folder::

    backbone.onnx      crop (1, 3, H, W) float32 BGR 0..255  ->  features (1, C, h, w)
    roi_pool.onnx      features, rois (N, 4) x1,y1,x2,y2 crop px, batch_indices (N,) int64
                       ->  roi_features (N, C * roi * roi)   (RoI shift added inside)
    manifest.json      checkpoint hash, tracker config, precision, opset, tool versions,
                       the sha256 of every graph (``graphs.<name>.sha256``, ``pruned.sha256``)
    *.engine           TensorRT engines, only where TensorRT and a CUDA GPU were present

The runtime reads it back through :func:`load_manifest` and refuses, with
:class:`ManifestMismatchError` (one line naming the file and how to re-export), a folder made from
other weights or for another backbone, a manifest that does not parse, and a graph that is missing
or whose bytes changed since export (:func:`check_manifest`, :func:`check_graphs`). A folder
exported before graph hashes were recorded still loads, with one warning
(:class:`UnverifiedExportWarning`). Nothing here imports the export code: ``export/`` depends on
``runtime/``, never the other way round.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

from runtime.backbones.mobilenet_v2 import MOBILENET_NPZ
from runtime.backbones.nanotrack import NANOTRACK_NPZ
from runtime.backends.spec import FeatureBackendSpec
from runtime.hashing import sha256_file

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = 1
BACKBONE_ONNX = "backbone.onnx"
ROI_POOL_ONNX = "roi_pool.onnx"

# Tensor names of the two graphs (ONNX inputs/outputs and TensorRT I/O tensors alike).
CROP = "crop"
FEATURES = "features"
FEATURE_MAP = "feature_map"
ROIS = "rois"
BATCH_INDICES = "batch_indices"
ROI_FEATURES = "roi_features"

# Spec fields baked into the graphs (the manifest's "config"): a tracker whose spec differs here
# cannot use the folder (a spec without RoI pooling, roi_* None, accepts any roi_* values).
GRAPH_CONFIG_FIELDS = ("backbone", "roi_size", "roi_sampling_ratio")


class ManifestMismatchError(ValueError):
    """An export folder does not belong to the weights or config it is about to be used with,
    or is damaged (manifest unreadable, a graph missing or changed since export)."""


class ExportFolderNotFound(ManifestMismatchError, FileNotFoundError):
    """No ``manifest.json`` where an export folder was named (a FileNotFoundError too)."""


class UnverifiedExportWarning(UserWarning):
    """An export folder from before graph hashes were recorded: its graphs cannot be checked."""


def checkpoint_files(backbone: str, weights_dir: str | os.PathLike[str]) -> list[Path]:
    """The weight file(s) a backbone is built from (``[]`` for VGG-M: fixed-seed random init)."""
    root = Path(weights_dir).expanduser()
    if backbone == "nanotrack":
        return [root.joinpath(*NANOTRACK_NPZ)]
    if backbone == "mobilenet_v2":
        return [root.joinpath(*MOBILENET_NPZ)]
    if backbone == "vggm":
        return []
    raise ValueError(f"no checkpoint file known for backbone {backbone!r}")


def checkpoint_record(backbone: str, weights_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """``{"sha256": ..., "files": [{"path", "sha256"}]}`` for the backbone's weight files.

    ``sha256`` is the file's own hash for one file, a hash over ``name:hash`` lines for several,
    and ``None`` where the weights come from a fixed-seed initialisation (no file).
    """
    root = Path(weights_dir).expanduser()
    files = []
    for path in checkpoint_files(backbone, root):
        if not path.is_file():
            raise FileNotFoundError(f"weight file for backbone {backbone!r} not found at {path}")
        files.append({"path": path.relative_to(root).as_posix(), "sha256": sha256_file(path)})
    if not files:
        combined = None
    elif len(files) == 1:
        combined = files[0]["sha256"]
    else:
        lines = "".join(f"{f['path']}:{f['sha256']}\n" for f in files)
        combined = hashlib.sha256(lines.encode()).hexdigest()
    return {"sha256": combined, "files": files}


def file_record(path: str | os.PathLike[str]) -> dict[str, str]:
    """``{"path", "sha256"}`` of a checkpoint file the export was made for."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    return {"path": path.name, "sha256": sha256_file(path)}


def check_tracker_checkpoints(
    manifest: dict[str, Any], spec: FeatureBackendSpec, folder: Any
) -> None:
    """Refuse a spec whose meta or pruning checkpoint is not the one the folder was built for.

    An export made with ``--ckpt``/``--prune`` records those files' hashes (the pruned engines'
    fixed widths were measured with them); one made without serves any head.
    """
    bound = manifest.get("tracker_checkpoints") or {}
    checkpoints = spec.bound_checkpoints()
    for field, flag in (("meta", "--ckpt"), ("prune", "--prune")):
        record = bound.get(field)
        value = checkpoints[field]
        if record is None or value is None or not Path(str(value)).expanduser().is_file():
            continue  # not bound, or the tracker has no such checkpoint file ("fit", none)
        current = sha256_file(Path(str(value)).expanduser())
        if current != record["sha256"]:
            raise ManifestMismatchError(
                f"{folder} was built for the {field} checkpoint {record['path']} (sha256 "
                f"{record['sha256'][:12]}...), but the tracker uses {value} (sha256 "
                f"{current[:12]}...); re-export: python export/build_engine.py {flag} {value} "
                f"--out {folder}"
            )


def reexport_hint(manifest: dict[str, Any] | None, folder: str | os.PathLike[str]) -> str:
    """``re-export it: python export/build_engine.py ...`` with the flags the folder was made with.

    Best effort from the manifest (``NAME`` / ``DIR`` / ``CKPT`` where it cannot know the value).
    """
    manifest = manifest if isinstance(manifest, dict) else {}
    config = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
    flags = [f"--backbone {manifest.get('backbone') or config.get('backbone') or 'NAME'}"]
    if manifest.get("precision") == "int8":
        flags.append("--precision int8 --calib DIR")
    bound = manifest.get("tracker_checkpoints") or {}
    bound = bound if isinstance(bound, dict) else {}
    if manifest.get("pruned"):
        flags.append("--prune [CKPT]")  # the flag alone: the shipped pruning network
    elif "meta" in bound:
        flags.append("--ckpt CKPT")
    return f"re-export it: python export/build_engine.py {' '.join(flags)} --out {folder}"


def load_manifest(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The folder's ``manifest.json`` as a dict; :class:`ManifestMismatchError` naming the file
    when it does not parse or is of another format, :class:`ExportFolderNotFound` when absent."""
    path = Path(folder).expanduser() / MANIFEST_FILE
    if not path.is_file():
        raise ExportFolderNotFound(
            f"{path} not found: not an export folder (make one with "
            f"python export/build_engine.py --backbone NAME --out {Path(folder)})"
        )
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestMismatchError(
            f"{path} is not valid JSON ({exc}); the export folder is damaged, "
            f"{reexport_hint(None, folder)}"
        ) from None
    if not isinstance(manifest, dict):
        raise ManifestMismatchError(
            f"{path} holds no manifest object; {reexport_hint(None, folder)}"
        )
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ManifestMismatchError(
            f"{path}: manifest format {manifest.get('format')!r}, this runtime reads "
            f"{MANIFEST_FORMAT}; {reexport_hint(manifest, folder)}"
        )
    return manifest


def graph_records(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every graph the folder's manifest lists: ``{name: {"onnx": file, "sha256": hex|None}}``.

    The full graphs (``graphs``; under int8 ``graphs.backbone`` is the Q/DQ backbone) and the
    fixed-width pruned ones (``pruned.graphs``, their hashes in ``pruned.sha256``).
    """
    graphs = manifest.get("graphs")
    if not isinstance(graphs, dict) or not graphs:
        raise KeyError("graphs")
    records = {
        name: {"onnx": str(record["onnx"]), "sha256": record.get("sha256")}
        for name, record in graphs.items()
    }
    pruned = manifest.get("pruned")
    if pruned:
        hashes = pruned.get("sha256") or {}
        for name, file in pruned["graphs"].items():
            records[f"{name}_pruned"] = {"onnx": str(file), "sha256": hashes.get(name)}
    return records


def graph_path(manifest: dict[str, Any], folder: str | os.PathLike[str], name: str) -> Path:
    """The file of graph ``name`` (``backbone``, ``roi_pool``, ``backbone_pruned``, ...)."""
    return Path(folder).expanduser() / graph_records(manifest)[name]["onnx"]


def check_graphs(manifest: dict[str, Any], folder: str | os.PathLike[str]) -> None:
    """Every listed graph exists and has the sha256 the manifest records for it.

    :class:`ManifestMismatchError` otherwise. Graphs with no recorded hash (folders exported
    before hashes were recorded) are not checked: one :class:`UnverifiedExportWarning` per folder.
    """
    folder = Path(folder).expanduser()
    redo = reexport_hint(manifest, folder)
    try:
        records = graph_records(manifest)
    except (AttributeError, KeyError, TypeError) as exc:
        raise ManifestMismatchError(
            f"{folder / MANIFEST_FILE} is malformed (no usable graph list: {exc!r}); {redo}"
        ) from None
    unverified = []
    for name, record in records.items():
        graph = folder / record["onnx"]
        if not graph.is_file():
            raise ManifestMismatchError(f"{graph} ({name} graph) is missing; {redo}")
        if record["sha256"] is None:
            unverified.append(graph.name)
        elif sha256_file(graph) != record["sha256"]:
            raise ManifestMismatchError(
                f"{graph} does not match the sha256 its manifest records (changed or corrupt "
                f"since export); {redo}"
            )
    if unverified:  # shown once per folder: Python's registry drops repeats of one message
        warnings.warn(
            f"{folder} was exported before graph hashes were recorded: "
            f"{', '.join(unverified)} cannot be checked for damage; {redo} to have them checked",
            UnverifiedExportWarning,
            stacklevel=2,
        )


def check_engine_files(manifest: dict[str, Any], folder: str | os.PathLike[str]) -> None:
    """The TensorRT engines exist and match ``engines.sha256`` (where the export recorded it)."""
    folder = Path(folder).expanduser()
    engines = manifest.get("engines") or {}
    hashes = engines.get("sha256") or {}
    for key in ("backbone", "roi_pool", "backbone_pruned", "roi_pool_pruned"):
        if key not in engines:
            continue
        engine = folder / engines[key]
        if not engine.is_file():
            raise ManifestMismatchError(
                f"{engine} ({key} engine) is missing; {reexport_hint(manifest, folder)}"
            )
        if key in hashes and sha256_file(engine) != hashes[key]:
            raise ManifestMismatchError(
                f"{engine} does not match the sha256 its manifest records (changed or corrupt "
                f"since export); {reexport_hint(manifest, folder)}"
            )


def unreadable_graph(
    graph: str | os.PathLike[str],
    manifest: dict[str, Any],
    folder: str | os.PathLike[str],
    exc: BaseException,
) -> ManifestMismatchError:
    """The error for a graph ONNX Runtime (or onnx) cannot parse: one line, how to re-export."""
    graph = Path(graph)
    hashed = any(r["onnx"] == graph.name and r["sha256"] for r in _safe_records(manifest).values())
    why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    legacy = "" if hashed else " (its manifest predates graph hashes: no hash could flag this)"
    return ManifestMismatchError(
        f"{graph} is not a readable ONNX graph: truncated or corrupt{legacy} ({why}); "
        f"{reexport_hint(manifest, folder)}"
    )


def _safe_records(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    try:
        return graph_records(manifest)
    except (AttributeError, KeyError, TypeError):
        return {}


def check_manifest(
    manifest: dict[str, Any],
    spec: FeatureBackendSpec,
    folder: str | os.PathLike[str] = "the export folder",
) -> None:
    """Raise :class:`ManifestMismatchError` unless the folder fits ``spec`` (backbone, RoI
    settings, precision, bound checkpoints, the weight file in ``spec.weights_dir``), and its
    graphs are the ones exported (:func:`check_graphs`).
    """
    try:
        _check_manifest(manifest, spec, folder)
    except (AttributeError, KeyError, TypeError) as exc:  # a field missing or of the wrong type
        raise ManifestMismatchError(
            f"{Path(folder) / MANIFEST_FILE} is malformed ({exc!r}); "
            f"{reexport_hint(manifest, folder)}"
        ) from None


def _check_manifest(
    manifest: dict[str, Any], spec: FeatureBackendSpec, folder: str | os.PathLike[str]
) -> None:
    exported = manifest.get("config", {})
    redo = f"re-export: python export/build_engine.py --backbone {spec.backbone} --out {folder}"
    for field in GRAPH_CONFIG_FIELDS:
        wanted = getattr(spec, field)
        if wanted is None and field != "backbone":
            continue  # the tracker pools no RoIs: the folder's RoI settings do not matter to it
        if exported.get(field) != wanted:
            raise ManifestMismatchError(
                f"{folder} was exported with {field}={exported.get(field)!r} but the tracker's "
                f"config has {field}={wanted!r}; {redo}"
            )
    precision = spec.precision
    if manifest.get("precision", "fp32") != precision:
        raise ManifestMismatchError(
            f"{folder} holds {manifest.get('precision')} graphs but the tracker asks for "
            f"{precision}; use --precision {manifest.get('precision')}, or export "
            f"python export/build_engine.py --precision {precision} --out DIR"
        )
    check_tracker_checkpoints(manifest, spec, folder)
    recorded = manifest.get("checkpoint", {}).get("sha256")
    current = checkpoint_record(spec.backbone, spec.weights_dir)["sha256"]
    if recorded != current:
        names = ", ".join(str(p) for p in checkpoint_files(spec.backbone, spec.weights_dir))
        raise ManifestMismatchError(
            f"checkpoint hash mismatch: {folder} was exported from weights with sha256 "
            f"{recorded}, but {names or 'the weights'} has sha256 {current}; {redo}"
        )
    check_graphs(manifest, folder)
