"""The export folder's contract: file names, tensor names, ``manifest.json``, checkpoint hashes.

``export/build_engine.py`` writes a folder::

    backbone.onnx      crop (1, 3, H, W) float32 BGR 0..255  ->  features (1, C, h, w)
    roi_pool.onnx      features, rois (N, 4) x1,y1,x2,y2 crop px, batch_indices (N,) int64
                       ->  roi_features (N, C * roi * roi)   (RoI shift added inside)
    manifest.json      checkpoint hash, tracker config, precision, opset, tool versions, ...
    *.engine           TensorRT engines, only where TensorRT and a CUDA GPU were present

The runtime reads it back through :func:`load_manifest` and refuses, with
:class:`ManifestMismatchError`, a folder made from other weights or for another backbone
(:func:`check_manifest`). Nothing here imports the export code: ``export/`` depends on
``runtime/``, never the other way round.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

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

# Config fields baked into the graphs: a tracker whose config differs here cannot use the folder.
GRAPH_CONFIG_FIELDS = ("backbone", "roi_size", "roi_sampling_ratio")


class ManifestMismatchError(ValueError):
    """An export folder does not belong to the weights or config it is about to be used with."""


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_files(backbone: str, weights_dir: str | os.PathLike[str]) -> list[Path]:
    """The weight file(s) a backbone is built from (``[]`` for VGG-M: fixed-seed random init)."""
    from runtime.backbones.mobilenet_v2 import MOBILENET_NPZ
    from runtime.backbones.nanotrack import NANOTRACK_NPZ

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


def check_tracker_checkpoints(manifest: dict[str, Any], config: Any, folder: Any) -> None:
    """Refuse a tracker whose meta or pruning checkpoint is not the one the folder was built for.

    An export made with ``--ckpt``/``--prune`` records those files' hashes (the pruned engines'
    fixed widths were measured with them); one made without serves any head.
    """
    bound = manifest.get("tracker_checkpoints") or {}
    for field, flag in (("meta", "--ckpt"), ("prune", "--prune")):
        record = bound.get(field)
        value = getattr(config, field, None)
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


def load_manifest(folder: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(folder).expanduser() / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: not an export folder (make one with "
            f"python export/build_engine.py --backbone NAME --out {Path(folder)})"
        )
    manifest = json.loads(path.read_text())
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ManifestMismatchError(
            f"{path}: manifest format {manifest.get('format')!r}, this runtime reads "
            f"{MANIFEST_FORMAT}; re-export the folder"
        )
    return manifest


def check_manifest(
    manifest: dict[str, Any],
    config: Any,
    weights_dir: str | os.PathLike[str],
    folder: str | os.PathLike[str] = "the export folder",
) -> None:
    """Raise :class:`ManifestMismatchError` unless the folder fits ``config`` and the weights.

    ``config`` is the tracker's config (an ``RTMDNetConfig``); ``weights_dir`` the folder the
    tracker would load its backbone weights from.
    """
    exported = manifest.get("config", {})
    redo = f"re-export: python export/build_engine.py --backbone {config.backbone} --out {folder}"
    for field in GRAPH_CONFIG_FIELDS:
        if exported.get(field) != getattr(config, field):
            raise ManifestMismatchError(
                f"{folder} was exported with {field}={exported.get(field)!r} but the tracker's "
                f"config has {field}={getattr(config, field)!r}; {redo}"
            )
    precision = getattr(config, "precision", "fp32")
    if manifest.get("precision", "fp32") != precision:
        raise ManifestMismatchError(
            f"{folder} holds {manifest.get('precision')} graphs but the tracker asks for "
            f"{precision}; use --precision {manifest.get('precision')}, or export "
            f"python export/build_engine.py --precision {precision} --out DIR"
        )
    check_tracker_checkpoints(manifest, config, folder)
    recorded = manifest.get("checkpoint", {}).get("sha256")
    current = checkpoint_record(config.backbone, weights_dir)["sha256"]
    if recorded != current:
        names = ", ".join(str(p) for p in checkpoint_files(config.backbone, weights_dir))
        raise ManifestMismatchError(
            f"checkpoint hash mismatch: {folder} was exported from weights with sha256 "
            f"{recorded}, but {names or 'the weights'} has sha256 {current}; {redo}"
        )
