"""Export the fixed part of the tracker (backbone, RoI pooling) and build engines where possible.

    python export/build_engine.py --backbone nanotrack [--ckpt META] [--prune [CKPT]] \\
        [--keep-conv K] [--precision fp32|fp16|int8] [--calib DIR] [--out DIR] [--data DIR]

Writes into ``--out`` (default ``outputs/export/rtmdnet-<backbone>``):

- ``backbone.onnx``, ``roi_pool.onnx``: opset 18, dynamic crop size and RoI count, checked with
  ``onnx.checker``, against the TensorRT 10 operator list, and in ONNX Runtime against PyTorch on
  real crops (see :mod:`export.onnx_export`); any failure ends the export with an error.
- ``manifest.json``: checkpoint hash (sha256 of the weight file), tracker config, precision,
  opset, tool versions, tensor names and shapes, RoI shift, shape profile, parity numbers, and
  the sha256 of every graph written (``graphs.<name>.sha256``, ``pruned.sha256``) and engine
  (``engines.sha256``), which the runtime checks at load (a changed or corrupt file is refused).
- ``backbone.<precision>.engine``, ``roi_pool.<precision>.engine``, ``timing.cache``: TensorRT 10
  engines, only where ``tensorrt`` imports and a CUDA GPU is present; otherwise the script says
  that engines were not built and why, and still succeeds (the ONNX files serve ONNX Runtime).
- ``--ckpt``: the MetaRTT checkpoint the folder serves; its sha256 goes into the manifest and a
  tracker with another meta checkpoint is refused. ``--prune [CKPT]`` (no value: the shipped
  pruning network; implies the shipped ``--ckpt`` unless one is given) also writes
  ``backbone.pruned.onnx`` / ``roi_pool.pruned.onnx`` at a fixed conv width measured on the
  ``train`` split (``--keep-conv`` overrides it), checked against the full graphs on the kept
  channels, and their engines with REFIT, which the TensorRT backend refits per video (see
  :mod:`export.pruned_export`).

Precision: ``fp32`` everywhere; ``fp16`` needs a GPU TensorRT engine (refused without one);
``int8`` needs ``--calib DIR`` (``python -m calib.build --out DIR``): the backbone is quantized
with Q/DQ nodes (``backbone.int8.onnx``, :func:`calib.quantize.quantize_export`), which ONNX
Runtime runs on the CPU and TensorRT 10 builds as explicit quantization. Exit codes: 0 done,
1 the export failed its checks, 2 refused (bad arguments, missing data, unsupported precision).
The TensorRT path is written against the TensorRT 10 API but has NOT been run here (no TensorRT
on these machines).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch

from calib.graph_checks import ExportError
from calib.quantize import QuantizationError, quantize_export
from calib.siamese import quantize_search_graph
from export.onnx_export import (
    OPSET,
    RealSample,
    export_onnx,
    real_samples,
    relative_error,
    shape_profile,
)
from export.pruned_export import export_pruned, profile_at_width
from export.siamese_export import build_siamese
from export.trt_engine import build_trt_engine
from runtime.atomic import write_atomic
from runtime.backbones import BACKBONE_NAMES, build_backbone
from runtime.backends.manifest import (
    BATCH_INDICES,
    CROP,
    FEATURE_MAP,
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    ROIS,
    checkpoint_record,
    file_record,
)
from runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from runtime.backends.tensorrt_backend import TensorRTBackend, require_tensorrt, tensorrt_status
from runtime.cli.program import program_name
from runtime.hashing import sha256_file
from runtime.paths import PROJECT_ROOT, data_root
from runtime.roi_features import RoIFeatureExtractor
from runtime.rtmdnet.config import RTMDNetConfig
from runtime.rtmdnet.meta import SHIPPED_CHECKPOINT
from runtime.rtmdnet.prune import SHIPPED, SHIPPED_PRUNE

PRECISIONS = ("fp32", "fp16", "int8")
TRACKERS = ("rtmdnet", "nanotrack")
NANOTRACK_OUT = PROJECT_ROOT / "outputs" / "export" / "nanotrack"
# Engine vs PyTorch on the same real crops (max |diff| / max |torch|). TF32 is switched off for
# fp32 engines, so only kernel choice separates them; fp16 rounds every activation.
# int8: against the same Q/DQ graph in ONNX Runtime (not torch: int8 itself moves the features by
# ~20 %, docs/int8.md); only rounding at quantization boundaries separates the two.
ENGINE_TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2, "int8": 5e-2}


class BuildRefused(ValueError):
    """The request cannot be served here (precision, machine): nothing was written."""


def default_out_dir(backbone: str) -> Path:
    return PROJECT_ROOT / "outputs" / "export" / f"rtmdnet-{backbone}"


def tool_versions() -> dict[str, str | None]:
    import cv2
    import numpy
    import onnx
    import onnxruntime
    import onnxscript

    try:
        import tensorrt

        trt_version: str | None = tensorrt.__version__
    except ImportError:
        trt_version = None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "onnxscript": onnxscript.__version__,
        "numpy": numpy.__version__,
        "opencv": cv2.__version__,
        "tensorrt": trt_version,
    }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(data, indent=2) + "\n")


# --- TensorRT 10 (not run here) ---------------------------------------------------------------
def build_engines(
    out_dir: Path,
    profile: dict[str, Any],
    precision: str,
    log: Callable[[str], None],
    onnx_names: dict[str, str],
    pruned: dict[str, Any] | None = None,
) -> dict[str, Any]:
    trt = require_tensorrt()
    cache = out_dir / "timing.cache"
    engines: dict[str, Any] = {
        "precision": precision,
        "tensorrt": trt.__version__,
        "device": torch.cuda.get_device_name(),
        "timing_cache": cache.name,
        "refit": True,
        "sha256": {},  # of each engine file, checked by the TensorRT backend at load
    }
    graphs = [
        ("backbone", onnx_names["backbone"], (CROP,), profile),
        ("roi_pool", onnx_names["roi_pool"], (FEATURE_MAP, ROIS, BATCH_INDICES), profile),
    ]
    if pruned:  # the same at the fixed kept width; refitted with each video's filters
        narrow = profile_at_width(profile, pruned["conv_width"])
        graphs += [
            ("backbone_pruned", pruned["graphs"]["backbone"], (CROP,), narrow),
            ("roi_pool_pruned", pruned["graphs"]["roi_pool"], graphs[1][2], narrow),
        ]
    for key, onnx_name, inputs, shapes in graphs:
        started = time.perf_counter()
        plan = build_trt_engine(
            trt, out_dir / onnx_name, {n: shapes[n] for n in inputs}, precision, cache
        )
        name = f"{key}.{precision}.engine"
        (out_dir / name).write_bytes(plan)
        engines[key] = name
        engines["sha256"][key] = sha256_file(out_dir / name)
        log(f"[trt] {name}: {len(plan) / 1e6:.1f} MB in {time.perf_counter() - started:.0f}s")
    return engines


@torch.no_grad()
def check_engines(
    out_dir: Path,
    config: RTMDNetConfig,
    data_dir: str | os.PathLike[str] | None,
    extractor: RoIFeatureExtractor,
    samples: list,
    precision: str,
) -> dict[str, Any]:
    """The engines against PyTorch (CPU, float32) on the same real crops as the ONNX check.

    An int8 engine is checked against its Q/DQ graph run by ONNX Runtime on the CPU instead.
    """
    backend = TensorRTBackend(out_dir, config, data_dir)
    reference = OnnxRuntimeBackend(out_dir, config, data_dir) if precision == "int8" else None
    tolerance = ENGINE_TOLERANCE[precision]
    worst = {"backbone": 0.0, "end_to_end": 0.0}
    for sample in samples:
        if reference is None:
            fmap = extractor.feature_map(sample.crop)
            feats = extractor.pool(fmap, sample.rois, sample.batch_indices)
        else:
            fmap = reference.feature_map(sample.crop)
            feats = reference.pool(fmap, sample.rois, sample.batch_indices)
        trt_fmap = backend.feature_map(sample.crop.cuda())
        trt_feats = backend.pool(trt_fmap, sample.rois.cuda(), sample.batch_indices.cuda())
        worst["backbone"] = max(worst["backbone"], relative_error(trt_fmap.cpu(), fmap))
        worst["end_to_end"] = max(worst["end_to_end"], relative_error(trt_feats.cpu(), feats))
    for key, value in worst.items():
        if not value <= tolerance:
            raise ExportError(
                f"TensorRT {precision} engine disagrees with its reference: {key} relative error "
                f"{value:.2e} > {tolerance:.0e}"
            )
    return {"tolerance": tolerance, "max_relative_error": worst}


# --- the whole build --------------------------------------------------------------------------
def refuse_unbuildable(precision: str, calib: str | os.PathLike[str] | None = None) -> None:
    """Refuse a ``--precision``/``--calib`` request this machine cannot build, before any work.

    (Not :func:`runtime.backends.check_precision`, which refuses what a *backend* cannot run.)
    """
    if precision not in PRECISIONS:
        raise BuildRefused(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    if precision == "int8" and (calib is None or not (Path(calib) / "settings.json").is_file()):
        where = "no --calib given" if calib is None else f"no calibration set in {calib}"
        raise BuildRefused(
            f"int8 needs a calibration set ({where}): python -m calib.build --out DIR, then "
            f"--precision int8 --calib DIR"
        )
    if precision != "int8" and calib is not None:
        raise BuildRefused(f"--calib is for --precision int8, not {precision}")
    if precision == "fp16":
        usable, why = tensorrt_status()
        if not usable:
            raise BuildRefused(
                f"fp16 needs a GPU TensorRT engine, and there is none here ({why}); "
                f"use --precision fp32 (ONNX Runtime on the CPU runs fp32)"
            )


def resolve_checkpoints(
    meta: str | os.PathLike[str] | None, prune: str | os.PathLike[str] | None
) -> tuple[Path | None, Path | None]:
    """``--ckpt``/``--prune`` as files (``--prune`` alone: the shipped net and meta checkpoint)."""
    if prune is not None and str(prune) == SHIPPED:
        prune = SHIPPED_PRUNE
    if prune is not None and meta is None:
        meta = SHIPPED_CHECKPOINT
    paths = tuple(None if p is None else Path(p).expanduser() for p in (meta, prune))
    for flag, path in zip(("--ckpt", "--prune"), paths, strict=True):
        if path is not None and not path.is_file():
            raise BuildRefused(f"{flag} {path}: no such checkpoint file")
    return paths  # type: ignore[return-value]


# --- the whole build: a plan, then named steps over it ----------------------------------------
@dataclass(frozen=True)
class ExportPlan:
    """One rtmdnet export folder, resolved from the flags and checked before any work is done
    (:meth:`from_flags`); :func:`build` carries it out."""

    backbone: str
    precision: str
    out: Path
    data_dir: str | os.PathLike[str] | None
    config: RTMDNetConfig  # as the folder will serve it (precision, meta and prune set)
    meta: Path | None  # the MetaRTT checkpoint the folder serves (hashed into the manifest)
    prune: Path | None  # the pruning network: also write the fixed-width pruned graphs
    keep_conv: int | None = None  # the pruned graphs' conv width (default: measured)
    calib: str | os.PathLike[str] | None = None  # the calibration set (int8)
    # which convs go int8: min_top1, int8_count or int8_convs (calib.quantize.choose_and_quantize)
    int8_choice: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def from_flags(
        cls,
        backbone: str = "nanotrack",
        precision: str = "fp32",
        out_dir: str | os.PathLike[str] | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        config: RTMDNetConfig | None = None,
        meta: str | os.PathLike[str] | None = None,
        prune: str | os.PathLike[str] | None = None,
        keep_conv: int | None = None,
        calib: str | os.PathLike[str] | None = None,
        int8_choice: Mapping[str, Any] | None = None,
    ) -> ExportPlan:
        """The plan for these flags (``prune="shipped"``: the shipped pruning network and, unless
        ``meta`` is given, the shipped MetaRTT checkpoint); raises :class:`BuildRefused`."""
        refuse_unbuildable(precision, calib)
        config = config or RTMDNetConfig(backbone=backbone)
        meta, prune = resolve_checkpoints(meta, prune)
        config = dataclasses.replace(config, precision=precision)  # what the folder will serve
        if prune is not None:
            config = dataclasses.replace(config, meta=str(meta), prune=str(prune))
        elif meta is not None:
            config = dataclasses.replace(config, meta=str(meta))
        if config.backbone != backbone:
            raise BuildRefused(f"config.backbone={config.backbone!r} but --backbone {backbone!r}")
        if backbone not in BACKBONE_NAMES:
            raise BuildRefused(f"unknown backbone {backbone!r}; choose one of {BACKBONE_NAMES}")
        out = Path(out_dir).expanduser() if out_dir is not None else default_out_dir(backbone)
        choice = MappingProxyType(dict(int8_choice or {}))
        return cls(
            backbone, precision, out, data_dir, config, meta, prune, keep_conv, calib, choice
        )


@dataclass(frozen=True)
class ExportInputs:
    """What the steps after the plan work from: the network and the crops it is checked on."""

    extractor: RoIFeatureExtractor
    checkpoint: dict[str, Any]  # the weight file's record (sha256)
    profile: dict[str, Any]  # min/opt/max input shapes (shape_profile)
    samples: list[RealSample]  # real crops cut as the tracker cuts them (real_samples)


# Files an earlier export may have left: removed first, so none is left looking valid.
STALE_FILES = (
    "*.engine", "*.pruned.onnx", "*.int8.onnx", "int8.json", "int8_selection.png", MANIFEST_FILE,
)  # fmt: skip


def prepare(plan: ExportPlan, log: Callable[[str], None]) -> ExportInputs:
    """Load the network, clear the folder of an earlier export's files, cut the check crops."""
    weights_dir = data_root(plan.data_dir) / "weights"
    checkpoint = checkpoint_record(plan.backbone, weights_dir)
    config = plan.config
    extractor = RoIFeatureExtractor(
        build_backbone(plan.backbone, weights_dir), config.roi_size, config.roi_sampling_ratio
    ).eval()
    log(f"[export] {plan.backbone} -> {plan.out}")
    plan.out.mkdir(parents=True, exist_ok=True)
    for stale in (f for pattern in STALE_FILES for f in plan.out.glob(pattern)):
        stale.unlink(missing_ok=True)
    profile = shape_profile(extractor, config)
    samples = real_samples(config, extractor.stride, plan.data_dir)
    return ExportInputs(extractor, checkpoint, profile, samples)


def export_checked_graphs(
    plan: ExportPlan, inputs: ExportInputs, log: Callable[[str], None]
) -> dict[str, Any]:
    """Export the FP32 graphs, check them (:func:`export.onnx_export.export_onnx`); the manifest."""
    extractor, checkpoint = inputs.extractor, inputs.checkpoint
    metadata = {
        "checkpoint_sha256": str(checkpoint["sha256"]),
        "backbone": plan.backbone,
        "roi_shift": repr(extractor.roi_shift),
    }
    result = export_onnx(
        extractor, plan.out, inputs.profile, inputs.samples, opset=OPSET, metadata=metadata,
        log=log,
    )  # fmt: skip
    return {
        "format": MANIFEST_FORMAT,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "backbone": plan.backbone,
        "checkpoint": checkpoint,
        "config": dataclasses.asdict(plan.config),
        "precision": plan.precision,
        "opset": OPSET,
        "versions": tool_versions(),
        "stride": extractor.stride,
        "out_channels": int(extractor.backbone.out_channels),
        "feature_dim": extractor.feature_dim,
        "roi_shift": extractor.roi_shift,
        "roi_shift_note": "added to the RoIs inside roi_pool.onnx; pass unshifted crop pixels",
        "graphs": {
            "backbone": {"onnx": result.backbone.name, **result.io["backbone"]},
            "roi_pool": {"onnx": result.roi_pool.name, **result.io["roi_pool"]},
        },
        "ops": result.ops,
        "profile": inputs.profile,
        "parity": {"onnxruntime_cpu": result.parity},
        "tracker_checkpoints": {
            name: file_record(path)
            for name, path in (("meta", plan.meta), ("prune", plan.prune))
            if path is not None
        },
        "pruned": None,
        "int8": None,
        "engines": None,
    }


def quantize(plan: ExportPlan, manifest: dict[str, Any], log: Callable[[str], None]) -> None:
    """int8: the Q/DQ backbone (:func:`calib.quantize.quantize_export`) into the manifest."""
    assert plan.calib is not None
    record = quantize_export(plan.out, plan.calib, log, **plan.int8_choice)
    manifest["graphs"]["backbone"]["onnx"] = record["onnx"]  # same tensors, Q/DQ inside
    manifest["ops"]["backbone"] = record["ops"]
    manifest["parity"]["onnxruntime_cpu_int8"] = record["held_out"]
    manifest["int8"] = record


def export_pruned_graphs(
    plan: ExportPlan, inputs: ExportInputs, manifest: dict[str, Any], log: Callable[[str], None]
) -> None:
    """``--prune``: the pruned graphs at a fixed width (:mod:`export.pruned_export`)."""
    graphs = {key: graph["onnx"] for key, graph in manifest["graphs"].items()}
    channels = int(inputs.extractor.backbone.out_channels)
    manifest["pruned"] = export_pruned(
        plan.out, graphs, channels, plan.config, inputs.samples, plan.data_dir, plan.keep_conv, log
    )


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    """Hash every graph as written (int8: the Q/DQ backbone) and write ``manifest.json``."""
    for graph in manifest["graphs"].values():
        graph["sha256"] = sha256_file(out / graph["onnx"])
    _write_json(out / MANIFEST_FILE, manifest)


def add_engines(
    plan: ExportPlan, inputs: ExportInputs, manifest: dict[str, Any], log: Callable[[str], None]
) -> None:
    """TensorRT engines and their parity check where TensorRT and a GPU are present."""
    usable, why = tensorrt_status()
    if not usable:
        log(f"[trt] engines not built: {why} (the ONNX files are ready for ONNX Runtime)")
        return
    out, precision = plan.out, plan.precision
    names = {key: graph["onnx"] for key, graph in manifest["graphs"].items()}
    manifest["engines"] = build_engines(
        out, inputs.profile, precision, log, names, manifest["pruned"]
    )
    _write_json(out / MANIFEST_FILE, manifest)
    parity = check_engines(
        out, plan.config, plan.data_dir, inputs.extractor, inputs.samples, precision
    )
    manifest["parity"][f"tensorrt_{precision}"] = parity
    _write_json(out / MANIFEST_FILE, manifest)
    log(f"[trt] engines vs torch: {parity['max_relative_error']}")


def build(
    plan: ExportPlan | str = "nanotrack",
    *flags: Any,
    log: Callable[[str], None] = print,
    **options: Any,
) -> dict[str, Any]:
    """Export, check, write the manifest, build engines where possible; returns the manifest.

    ``plan``: an :class:`ExportPlan`, or the flags for :meth:`ExportPlan.from_flags`
    (``build("nanotrack", "fp32", out_dir, prune="shipped", ...)``).
    """
    if not isinstance(plan, ExportPlan):
        plan = ExportPlan.from_flags(plan, *flags, **options)
    elif flags or options:
        raise TypeError("build(plan) takes no other flags: they are the plan's")
    inputs = prepare(plan, log)
    manifest = export_checked_graphs(plan, inputs, log)
    if plan.precision == "int8":
        quantize(plan, manifest, log)
    if plan.prune is not None:
        export_pruned_graphs(plan, inputs, manifest, log)
    write_manifest(plan.out, manifest)
    add_engines(plan, inputs, manifest, log)
    log(f"[export] wrote {plan.out / MANIFEST_FILE}")
    return manifest


def build_nanotrack(
    precision: str = "fp32",
    out_dir: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] = print,
    calib: str | os.PathLike[str] | None = None,
    int8_choice: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``nanotrack`` tracker's template and search graphs (:mod:`export.siamese_export`)."""
    refuse_unbuildable(precision, calib)
    out = Path(out_dir).expanduser() if out_dir is not None else NANOTRACK_OUT
    data = data_root(data_dir)
    quantize = None
    if precision == "int8":
        assert calib is not None
        quantize = partial(
            quantize_search_graph, calib_dir=Path(calib), log=log, **(int8_choice or {})
        )
    return build_siamese(out, data / "weights", data, precision, log, tool_versions(), quantize)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=program_name("python export/build_engine.py"),
        description="Export the tracker's backbone and RoI pooling to ONNX (and TensorRT).",
    )
    parser.add_argument(
        "--tracker",
        default="rtmdnet",
        choices=TRACKERS,
        help="rtmdnet (default): backbone + RoI pooling of the RT-MDNet/MetaRTT/MLT trackers; "
        "nanotrack: the template and search graphs of the nanotrack tracker",
    )
    parser.add_argument("--backbone", default="nanotrack", choices=BACKBONE_NAMES)
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS)
    parser.add_argument("--out", type=Path, default=None, help="output folder")
    parser.add_argument("--data", type=Path, default=None, help="shared data folder")
    parser.add_argument(
        "--ckpt", type=Path, default=None, help="MetaRTT checkpoint the folder serves (hashed)"
    )
    parser.add_argument(
        "--prune",
        nargs="?",
        const="shipped",
        default=None,
        metavar="CKPT",
        help="also write fixed-width pruned graphs/engines for this pruning checkpoint "
        "(no value: the shipped one)",
    )
    parser.add_argument(
        "--keep-conv", type=int, default=None, help="fixed conv width of the pruned graphs"
    )
    parser.add_argument(
        "--calib", type=Path, default=None, help="calibration set (python -m calib.build) for int8"
    )
    parser.add_argument(
        "--int8-min-top1",
        type=float,
        default=None,
        metavar="T",
        help="int8: quantize the most convs (least sensitive first) that keep the held-out top-1 "
        "candidate agreement with FP32 at or above T (default 0.95; docs/int8.md)",
    )
    parser.add_argument(
        "--int8-count",
        type=int,
        default=None,
        metavar="N",
        help="int8: quantize exactly the N least sensitive convs instead",
    )
    args = parser.parse_args(argv)
    int8_choice: dict[str, Any] = {}
    if args.int8_min_top1 is not None:
        int8_choice["min_top1"] = args.int8_min_top1
    if args.int8_count is not None:
        int8_choice["int8_count"] = args.int8_count
    if int8_choice and args.precision != "int8":
        print("error: --int8-min-top1 / --int8-count are for --precision int8", file=sys.stderr)
        return 2
    if len(int8_choice) > 1:
        print("error: give --int8-min-top1 or --int8-count, not both", file=sys.stderr)
        return 2
    if args.tracker == "nanotrack":
        rtmdnet_only = {
            "--ckpt": args.ckpt, "--prune": args.prune, "--keep-conv": args.keep_conv,
            "--backbone": None if args.backbone == "nanotrack" else args.backbone,
        }  # fmt: skip
        given = [flag for flag, value in rtmdnet_only.items() if value is not None]
        if given:
            print(f"error: {', '.join(given)}: not for --tracker nanotrack", file=sys.stderr)
            return 2
    try:
        if args.tracker == "nanotrack":
            build_nanotrack(args.precision, args.out, args.data, calib=args.calib,
                            int8_choice=int8_choice)  # fmt: skip
            return 0
        plan = ExportPlan.from_flags(
            args.backbone,
            args.precision,
            args.out,
            args.data,
            meta=args.ckpt,
            prune=args.prune,
            keep_conv=args.keep_conv,
            calib=args.calib,
            int8_choice=int8_choice,
        )
        build(plan)
    except (ExportError, QuantizationError) as err:
        print(f"error: export failed: {err}", file=sys.stderr)
        return 1
    except (BuildRefused, FileNotFoundError, ValueError) as err:  # ValueError: a bad calib set
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
