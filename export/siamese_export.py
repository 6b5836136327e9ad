"""Export of the ``nanotrack`` tracker: template and search graphs, checks, manifest, engines.

Called by ``python export/build_engine.py --tracker nanotrack``. The graphs are written by the
same code the runtime's first-use cache runs (:mod:`runtime.nanotrack.graphs`); here they are
also checked against TensorRT 10's ONNX operator list and, in ONNX Runtime, against torch on
real crops cut by the tracker's own crop code from the shared sequences, and TensorRT engines are
built where TensorRT and a GPU exist.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from calib.graph_checks import ExportError, check_graph, graph_ops
from calib.quantize import SELECTION_PNG
from export.onnx_export import PARITY_SEQUENCES
from export.trt_engine import build_trt_engine
from runtime.backends.manifest import MANIFEST_FILE
from runtime.backends.siamese import (
    CROP,
    KERNELS,
    OnnxRuntimeSiameseBackend,
    SiameseExport,
    TensorRTSiameseBackend,
    open_siamese_export,
    write_siamese_manifest,
)
from runtime.backends.tensorrt_backend import require_tensorrt, tensorrt_status
from runtime.nanotrack import graphs, model
from runtime.nanotrack.config import NanoTrackConfig
from runtime.nanotrack.deploy import TRACKER, graph_source_sha256
from runtime.nanotrack.tracker import frame_fill, search_crop, template_crop
from runtime.sequences import load_sequence

# Search crops of the real-crop check: the normal side and two widened (lost-target) ones.
PARITY_SIDES = (255, 287, 383)
PARITY_SHIFTS = ((0.0, 0.0), (0.3, -0.2), (-0.5, 0.4))  # target offset, in target sizes
ENGINE_TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2, "int8": 5e-2}


def real_crop_pairs(
    data_dir: Path, config: NanoTrackConfig | None = None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(template, search) crops from real sequences, cut with the tracker's own functions.

    Template: frame 1 at its ground truth. Search: frame 10 around the ground truth shifted by a
    fraction of the target size (the target off-centre, as while tracking), at each side of
    :data:`PARITY_SIDES`.
    """
    config = config or NanoTrackConfig()
    templates, searches = [], []
    for name in PARITY_SEQUENCES:
        sequence = load_sequence(data_dir / "sequences" / name)
        first = cv2.imread(str(sequence.frame_paths[0]))
        box = sequence.ground_truth[0]
        fill = frame_fill(first)
        later = min(9, len(sequence) - 1)
        frame, target = cv2.imread(str(sequence.frame_paths[later])), sequence.ground_truth[later]
        for side, shift in zip(PARITY_SIDES, PARITY_SHIFTS, strict=True):
            center = target[:2] + target[2:] / 2.0 + np.asarray(shift) * target[2:]
            templates.append(template_crop(first, box, config, fill))
            searches.append(search_crop(frame, center, target[2:], side, config, fill))
    return templates, searches


def _engine_shapes() -> dict[str, dict[str, dict[str, list[int]]]]:
    kernel_shapes = {"dw_cls": [1, 96, 4, 4], "dw_reg": [1, 96, 4, 4]}
    kernel_shapes |= {"pw_cls": [1, 64, 96], "pw_reg": [1, 64, 96]}
    fixed = {name: {"min": s, "opt": s, "max": s} for name, s in kernel_shapes.items()}
    lo, hi = graphs.MIN_SEARCH_SIDE, graphs.MAX_SEARCH_SIDE
    search = {"min": [1, 3, lo, lo], "opt": [1, 3, 255, 255], "max": [1, 3, hi, hi]}
    template = {"min": [1, 3, 127, 127], "opt": [1, 3, 127, 127], "max": [1, 3, 127, 127]}
    return {"template": {CROP: template}, "search": {CROP: search, **fixed}}


def build_siamese_engines(
    folder: Path, onnx_names: dict[str, str], precision: str, log: Callable[[str], None]
) -> dict[str, Any]:
    """TensorRT 10 engines of both graphs (written against the API; not run on these machines)."""
    trt = require_tensorrt()
    cache = folder / "timing.cache"
    engines: dict[str, Any] = {
        "precision": precision,
        "tensorrt": trt.__version__,
        "device": torch.cuda.get_device_name(),
        "timing_cache": cache.name,
    }
    for name, shapes in _engine_shapes().items():
        started = time.perf_counter()
        plan = build_trt_engine(trt, folder / onnx_names[name], shapes, precision, cache)
        engine = f"{name}.{precision}.engine"
        (folder / engine).write_bytes(plan)
        engines[name] = engine
        log(f"[trt] {engine}: {len(plan) / 1e6:.1f} MB in {time.perf_counter() - started:.0f}s")
    return engines


def check_siamese_engines(
    net: model.NanoTrackNet, export: SiameseExport, crops: tuple[list, list], precision: str
) -> dict[str, Any]:
    """The engines against torch (fp32/fp16) or the Q/DQ graph in ONNX Runtime (int8)."""
    engine = TensorRTSiameseBackend(export)
    reference = OnnxRuntimeSiameseBackend(export, threads=1) if precision == "int8" else None
    worst = 0.0
    for z, x in zip(*crops, strict=True):
        zt, xt = (
            torch.from_numpy(np.ascontiguousarray(c.transpose(2, 0, 1))[None]).float()
            for c in (z, x)
        )
        with torch.no_grad():
            kernels = tuple(net.template(zt))
            want = (
                reference.search(xt, kernels)
                if reference is not None
                else model.SearchBranch(net)(xt, *kernels)
            )
        got = engine.search(xt.cuda(), tuple(k.cuda() for k in kernels))
        for g, w in zip(got, want, strict=True):
            worst = max(worst, graphs.relative_error(g.cpu().numpy(), w.cpu().numpy()))
    tolerance = ENGINE_TOLERANCE[precision]
    if not worst <= tolerance:
        raise ExportError(f"TensorRT {precision} engines differ by {worst:.2e} > {tolerance:g}")
    return {"tolerance": tolerance, "max_relative_error": worst}


def build_siamese(
    out: Path,
    weights_dir: Path,
    data_dir: Path,
    precision: str,
    log: Callable[[str], None],
    versions: dict[str, str | None],
    quantize: Callable[[Path, model.NanoTrackNet], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Write, check and bind the two graphs (and engines where possible); returns the manifest.

    ``quantize(out, net)``, for int8, replaces ``search.onnx`` by its Q/DQ form and returns its
    record (which convs, calibration, held-out agreement); the file names stay the same.
    """
    log(f"[export] nanotrack -> {out}")
    out.mkdir(parents=True, exist_ok=True)
    for stale in (*out.glob("*.engine"), out / MANIFEST_FILE, out / SELECTION_PNG):
        stale.unlink(missing_ok=True)  # never leave files from an earlier export looking valid
    net = model.build_network(weights_dir)
    paths = graphs.write_graphs(net, out)
    if precision != "int8":  # an INT8 folder's features graph would be FP32 beside an INT8 search
        # The search with the classification features as an output (the target-layer trackers).
        paths["search_features"] = graphs.write_feature_graph(net, out)
    ops = {name: graph_ops(check_graph(path)) for name, path in paths.items()}
    crops = real_crop_pairs(data_dir)
    unverified = SiameseExport(out, {"graphs": {n: {"onnx": p.name} for n, p in paths.items()}})
    parity = {
        "onnxruntime_cpu_real_crops": graphs.check_parity(net, unverified, *crops),
        "real_crops": f"{len(crops[0])} pairs from {', '.join(PARITY_SEQUENCES)}",
    }
    log(
        f"[export] ONNX Runtime vs torch, {len(crops[0])} real crop pairs: max relative error "
        f"{max(parity['onnxruntime_cpu_real_crops'].values()):.1e}"
    )
    int8 = None
    if precision == "int8":
        assert quantize is not None
        int8 = quantize(out, net)
        ops["search"] = graph_ops(check_graph(paths["search"]))
    extra: dict[str, Any] = {
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "opset": graphs.OPSET,
        "graph_source_sha256": graph_source_sha256(),
        "config": {
            "exemplar_size": 127,
            "search_sides": [graphs.MIN_SEARCH_SIDE, graphs.MAX_SEARCH_SIDE],
        },
        "inputs": {"template": [CROP], "search": [CROP, *KERNELS]},
        "ops": ops,
        "parity": parity,
        "int8": int8,
        "versions": versions,
        "engines": None,
    }

    def manifest() -> dict[str, Any]:
        write_siamese_manifest(
            out, tracker=TRACKER, weights_dir=weights_dir, graphs=paths, precision=precision,
            extra=extra,
        )  # fmt: skip
        return open_siamese_export(out, weights_dir, precision).manifest

    written = manifest()
    usable, why = tensorrt_status()
    if not usable:
        log(f"[trt] engines not built: {why} (the ONNX files are ready for ONNX Runtime)")
        return written
    names = {name: path.name for name, path in paths.items()}
    extra["engines"] = build_siamese_engines(out, names, precision, log)
    export = SiameseExport(out, manifest())
    extra["parity"][f"tensorrt_{precision}"] = check_siamese_engines(net, export, crops, precision)
    return manifest()
