"""ONNX export of the fixed part of the RT-MDNet network: the backbone and the RoI pooling.

Two graphs, because the tracker pools several RoI sets (candidates, update samples, ...) from one
feature map per frame::

    backbone.onnx   crop (1, 3, H, W) float32 BGR 0..255            -> features (1, C, h, w)
    roi_pool.onnx   feature_map (1, C, h, w), rois (N, 4) x1,y1,x2,y2 crop pixels,
                    batch_indices (N,) int64  -> roi_features (N, C * roi * roi)

``roi_pool.onnx`` holds the native ``RoiAlign`` op (see :mod:`runtime.roi_align`) plus the
extractor's RoI shift (an ``Add``) and the flatten. Opset 18; H, W, h, w and N are dynamic.

Right after export each graph must pass ``onnx.checker`` (full check), use only operators the
TensorRT 10 ONNX parser supports (both: :func:`calib.graph_checks.check_graph`, shared with the
INT8 quantizer) and agree with PyTorch, in ONNX Runtime, on real crops cut from the shared
sequences exactly as the tracker cuts them (:func:`runtime.rtmdnet.geometry.tracker_crop`); any
failure raises :class:`ExportError` (nothing half-checked is left looking usable).
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import torch
from torch import nn

from calib.graph_checks import ExportError, check_graph, graph_ops
from runtime.backends.manifest import (
    BACKBONE_ONNX,
    BATCH_INDICES,
    CROP,
    FEATURE_MAP,
    FEATURES,
    ROI_FEATURES,
    ROI_POOL_ONNX,
    ROIS,
)
from runtime.paths import data_root
from runtime.roi_align import onnx_translation
from runtime.roi_features import RoIFeatureExtractor, crop_to_tensor
from runtime.rtmdnet.config import RTMDNetConfig
from runtime.rtmdnet.geometry import tracker_crop
from runtime.sequences import load_sequence

OPSET = 18
PARITY_TOLERANCE = 1e-4  # max |onnxruntime - torch| / max |torch|, per graph
MAX_ROIS = 6000  # RoI count the TensorRT profile covers (the tracker pools <= ~1000 at a time)
PARITY_SEQUENCES = ("Crossing", "Vase", "vot2015_bag")
INIT_NEGATIVES = 1000  # first-frame negatives per parity init crop (their RoIs are pooled)


class ParityError(ExportError):
    """ONNX Runtime and PyTorch disagree on the real crops."""


def describe_io(model: onnx.ModelProto) -> dict[str, list[dict[str, Any]]]:
    """Names, element types and shapes (ints or symbolic names) of a model's inputs/outputs."""

    def one(value: onnx.ValueInfoProto) -> dict[str, Any]:
        tensor = value.type.tensor_type
        dims = [d.dim_param if d.dim_param else d.dim_value for d in tensor.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
        return {"name": value.name, "dtype": dtype, "shape": dims}

    return {
        "inputs": [one(v) for v in model.graph.input],
        "outputs": [one(v) for v in model.graph.output],
    }


# --- the graphs -------------------------------------------------------------------------------
class BackboneGraph(nn.Module):
    def __init__(self, extractor: RoIFeatureExtractor) -> None:
        super().__init__()
        self.extractor = extractor

    def forward(self, crop: torch.Tensor) -> torch.Tensor:
        return self.extractor.feature_map(crop)


class RoIPoolGraph(nn.Module):
    """RoI shift + RoIAlign + flatten, exactly :meth:`RoIFeatureExtractor.pool`."""

    def __init__(self, extractor: RoIFeatureExtractor) -> None:
        super().__init__()
        self.extractor = extractor

    def forward(
        self, feature_map: torch.Tensor, rois: torch.Tensor, batch_indices: torch.Tensor
    ) -> torch.Tensor:
        return self.extractor.pool(feature_map, rois, batch_indices)


def _round_up(value: float, multiple: int) -> int:
    return int(np.ceil(value / multiple) * multiple)


@torch.no_grad()
def shape_profile(extractor: RoIFeatureExtractor, config: RTMDNetConfig) -> dict[str, Any]:
    """min / opt / max input shapes of both graphs (what a TensorRT optimization profile needs).

    Crop sides: from ``max(16, backbone.min_input_size)`` up to ``config.max_crop_side``, both
    rounded up to the stride (``runtime.crop.window_around`` never cuts larger; tracker crops
    in practice stay well above the minimum, as they cover the padded target). Feature-map sizes
    are measured on the backbone itself. RoIs: 1 .. :data:`MAX_ROIS`, optimum ``n_samples``.
    """
    stride = extractor.stride
    low = _round_up(max(16, getattr(extractor.backbone, "min_input_size", 16)), stride)
    high = _round_up(config.max_crop_side, stride)
    opt = min(max(_round_up(480, stride), low), high)
    device = next(extractor.parameters()).device

    def fmap(side: int) -> list[int]:
        crop = torch.zeros(1, 3, side, side, device=device)
        return list(extractor.feature_map(crop).shape)

    n_opt = min(max(config.n_samples, 1), MAX_ROIS)
    return {
        CROP: {"min": [1, 3, low, low], "opt": [1, 3, opt, opt], "max": [1, 3, high, high]},
        FEATURE_MAP: {"min": fmap(low), "opt": fmap(opt), "max": fmap(high)},
        ROIS: {"min": [1, 4], "opt": [n_opt, 4], "max": [MAX_ROIS, 4]},
        BATCH_INDICES: {"min": [1], "opt": [n_opt], "max": [MAX_ROIS]},
    }


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's notices that say nothing about our graphs (torchvision not being
    installed: RoIAlign is ours; a pytree deprecation; the shared RoI-count axis name)."""
    log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            warnings.filterwarnings("ignore", message="# The axis name", category=UserWarning)
            yield
    finally:
        log.setLevel(level)


def _add_metadata(path: Path, metadata: dict[str, str]) -> None:
    if not metadata:
        return
    model = onnx.load(str(path))
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    onnx.save(model, str(path))


def export_graphs(
    extractor: RoIFeatureExtractor,
    out_dir: str | os.PathLike[str],
    profile: dict[str, Any],
    opset: int = OPSET,
    metadata: dict[str, str] | None = None,
) -> tuple[Path, Path]:
    """Write ``backbone.onnx`` and ``roi_pool.onnx`` into ``out_dir`` (no checks)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    extractor = extractor.eval()
    device = next(extractor.parameters()).device
    opt_crop = profile[CROP]["opt"]
    crop = torch.rand(*opt_crop, generator=torch.Generator().manual_seed(0)).to(device) * 255
    min_side = profile[CROP]["min"][2]
    height, width = (
        torch.export.Dim("height", min=min_side),
        torch.export.Dim("width", min=min_side),
    )
    backbone_path, pool_path = out / BACKBONE_ONNX, out / ROI_POOL_ONNX
    with _quiet_exporter(), torch.no_grad():
        torch.onnx.export(
            BackboneGraph(extractor).eval(),
            (crop,),
            str(backbone_path),
            input_names=[CROP],
            output_names=[FEATURES],
            opset_version=opset,
            dynamo=True,
            external_data=False,
            dynamic_shapes={"crop": {2: height, 3: width}},
            verbose=False,
        )
        fmap = extractor.feature_map(crop)
        rois = torch.tensor([[10.0, 20.0, 120.0, 140.0], [-8.0, 0.0, 60.0, 50.0]], device=device)
        batch = torch.zeros(len(rois), dtype=torch.int64, device=device)
        num = torch.export.Dim("num_rois", min=1)
        fh, fw = torch.export.Dim("feat_height", min=1), torch.export.Dim("feat_width", min=1)
        torch.onnx.export(
            RoIPoolGraph(extractor).eval(),
            (fmap, rois, batch),
            str(pool_path),
            input_names=[FEATURE_MAP, ROIS, BATCH_INDICES],
            output_names=[ROI_FEATURES],
            opset_version=opset,
            dynamo=True,
            external_data=False,
            custom_translation_table=onnx_translation(),
            dynamic_shapes={
                "feature_map": {2: fh, 3: fw},
                "rois": {0: num},
                "batch_indices": {0: num},
            },
            verbose=False,
        )
    for path in (backbone_path, pool_path):
        _add_metadata(path, metadata or {})
    return backbone_path, pool_path


# --- real crops, cut as the tracker cuts them -------------------------------------------------
@dataclass
class RealSample:
    where: str  # "<sequence> frame <i> (<init|update> crop)"
    crop: torch.Tensor  # (1, 3, H, W) float32 BGR 0..255
    rois: torch.Tensor  # (N, 4) float32 x1, y1, x2, y2 crop pixels
    batch_indices: torch.Tensor  # (N,) int64


def real_samples(
    config: RTMDNetConfig,
    stride: int,
    data_dir: str | os.PathLike[str] | None = None,
    sequences: Iterable[str] = PARITY_SEQUENCES,
    seed: int = 0,
) -> list[RealSample]:
    """Crops and RoIs from real frames, made the way :class:`RTMDNetTracker` makes them.

    Per sequence: frame 0 cut like an ``init`` crop (the window covers the first-frame negatives,
    largest jitter scale) and the middle frame cut like an ``update`` crop (the window covers the
    candidates and the update negatives), each with the RoIs of its samples. Raises
    :class:`ExportError` if none of ``sequences`` is found under the data folder.
    """
    root = data_root(data_dir) / "sequences"
    names = [name for name in sequences if (root / name).is_dir()]
    if not names:
        raise ExportError(
            f"no real sequences ({', '.join(sequences)}) under {root} to check the export on; "
            f"point --data (or $TRACKER_DATA) at the shared data folder"
        )
    rng = np.random.default_rng(seed)
    out = []
    for name in names:
        sequence = load_sequence(root / name)
        for index, kind in ((0, "init"), (len(sequence) // 2, "update")):
            box = sequence.ground_truth[index]
            if not np.all(np.isfinite(box)):
                continue
            frame = cv2.imread(str(sequence.frame_paths[index]))
            if frame is None:
                raise ExportError(f"cannot read {sequence.frame_paths[index]}")
            fill = tuple(float(v) for v in frame.reshape(-1, 3).mean(axis=0))
            if kind == "init":  # the window covers the negatives, largest jitter scale
                made = tracker_crop(
                    frame, box, kind, config, rng, fill, stride, max(config.init_jitter_scales),
                    n_candidates=0, n_negatives=INIT_NEGATIVES,
                )  # fmt: skip
                boxes = made.negatives
            else:  # the window covers the candidates and the update negatives
                made = tracker_crop(frame, box, kind, config, rng, fill, stride)
                boxes = made.candidates
            crop = made.crop
            rois = torch.from_numpy(made.rois(boxes))
            out.append(
                RealSample(
                    f"{name} frame {index} ({kind} crop {crop.shape[1]}x{crop.shape[0]})",
                    crop_to_tensor(crop),
                    rois,
                    torch.zeros(len(rois), dtype=torch.int64),
                )
            )
    return out


# --- parity -----------------------------------------------------------------------------------
def relative_error(got: np.ndarray | torch.Tensor, want: np.ndarray | torch.Tensor) -> float:
    """``max |got - want| / max |want|`` (0 for empty arrays)."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise ExportError(f"shape {got.shape} where {want.shape} was expected")
    if want.size == 0:
        return 0.0
    return float(np.abs(got - want).max() / max(float(np.abs(want).max()), 1e-30))


@torch.no_grad()
def check_parity(
    extractor: RoIFeatureExtractor,
    backbone_path: str | os.PathLike[str],
    pool_path: str | os.PathLike[str],
    samples: list[RealSample],
    tolerance: float = PARITY_TOLERANCE,
) -> dict[str, Any]:
    """Run both graphs in ONNX Runtime (CPU) on ``samples`` against PyTorch; raise past tolerance.

    Checked per crop: the feature map, the pooled features of the pooling graph fed PyTorch's
    feature map (the pooling graph alone), and both graphs chained (what a backend runs).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    cpu = ["CPUExecutionProvider"]
    backbone = ort.InferenceSession(str(backbone_path), options, providers=cpu)
    pool = ort.InferenceSession(str(pool_path), options, providers=cpu)
    worst = {"backbone": 0.0, "roi_pool": 0.0, "end_to_end": 0.0}
    where = dict.fromkeys(worst, "")
    extractor = extractor.eval().cpu()
    for sample in samples:
        fmap = extractor.feature_map(sample.crop)
        feats = extractor.pool(fmap, sample.rois, sample.batch_indices)
        (ort_fmap,) = backbone.run([FEATURES], {CROP: sample.crop.numpy()})
        rois, batch = sample.rois.numpy(), sample.batch_indices.numpy()
        (ort_feats,) = pool.run(
            [ROI_FEATURES], {FEATURE_MAP: fmap.numpy(), ROIS: rois, BATCH_INDICES: batch}
        )
        (chained,) = pool.run(
            [ROI_FEATURES], {FEATURE_MAP: ort_fmap, ROIS: rois, BATCH_INDICES: batch}
        )
        errors = {
            "backbone": relative_error(ort_fmap, fmap),
            "roi_pool": relative_error(ort_feats, feats),
            "end_to_end": relative_error(chained, feats),
        }
        for key, value in errors.items():
            if value >= worst[key]:
                worst[key], where[key] = value, sample.where
    for key, value in worst.items():
        if not value <= tolerance:  # also catches NaN
            raise ParityError(
                f"ONNX Runtime disagrees with PyTorch on real crops: {key} relative error "
                f"{value:.2e} > {tolerance:.0e} (worst on {where[key]})"
            )
    return {
        "tolerance": tolerance,
        "max_relative_error": worst,
        "crops": [s.where for s in samples],
    }


# --- all of it --------------------------------------------------------------------------------
@dataclass
class ExportResult:
    backbone: Path
    roi_pool: Path
    io: dict[str, dict[str, list[dict[str, Any]]]]  # graph -> inputs/outputs
    ops: dict[str, list[str]]  # graph -> op types
    parity: dict[str, Any]


def export_onnx(
    extractor: RoIFeatureExtractor,
    out_dir: str | os.PathLike[str],
    profile: dict[str, Any],
    samples: list[RealSample],
    *,
    opset: int = OPSET,
    tolerance: float = PARITY_TOLERANCE,
    metadata: dict[str, str] | None = None,
    log: Callable[[str], None] = print,
) -> ExportResult:
    """Export both graphs, check them (checker, TensorRT 10 ops, RoiAlign present) and verify
    them in ONNX Runtime against PyTorch on ``samples``; raise :class:`ExportError` on failure.
    """
    extractor = extractor.eval().cpu()
    log(f"[export] torch -> ONNX opset {opset}")
    backbone_path, pool_path = export_graphs(extractor, out_dir, profile, opset, metadata)
    models = {
        "backbone": check_graph(backbone_path),
        "roi_pool": check_graph(pool_path, required_ops=("RoiAlign",)),
    }
    ops = {key: graph_ops(model) for key, model in models.items()}
    for key, path in (("backbone", backbone_path), ("roi_pool", pool_path)):
        log(f"[export] {path.name}: checker ok, {len(ops[key])} op types, all in TensorRT 10")
    parity = check_parity(extractor, backbone_path, pool_path, samples, tolerance)
    errors = ", ".join(f"{k} {v:.1e}" for k, v in parity["max_relative_error"].items())
    log(f"[export] onnxruntime vs torch, {len(samples)} real crops: {errors}")
    return ExportResult(
        backbone_path,
        pool_path,
        {key: describe_io(model) for key, model in models.items()},
        ops,
        parity,
    )
