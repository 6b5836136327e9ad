"""INT8 by explicit quantization: Q/DQ nodes in the backbone graph, calibrated on real crops.

ONNX Runtime's static quantization (``quantize_static``, ``QuantFormat.QDQ``) inserts
QuantizeLinear/DequantizeLinear pairs: symmetric int8 activations (zero point 0, one scale per
tensor, from a calibration method run on :mod:`calib.build`'s crops) and symmetric int8 weights
with one scale per output channel. The result is an ordinary ONNX graph: ONNX Runtime runs it on
the CPU (fusing DQ -> Conv -> Q into ``QLinearConv``), and TensorRT 10 builds it as an explicitly
quantized INT8 engine (it takes the scales from the Q/DQ nodes and needs no calibrator).

Choices (docs/int8.md):

- ``Conv`` is quantized (inputs, weights, outputs), plus ``Add`` (the residual sums between
  quantized convs). The squeeze-excite blocks (``ReduceMean`` -> ``Gemm`` -> ``HardSigmoid`` ->
  ``Mul``) and ``HardSwish`` stay float: they are a tiny share of the work and their gates
  multiply whole feature maps, where an int8 error spreads everywhere.
- Which convs are int8 is measured, not guessed (:mod:`calib.mixed`): each conv's sensitivity
  (feature error with it alone int8), then the most convs, least sensitive first, that keep the
  held-out top-1 agreement with FP32 at ``min_top1`` (default :data:`MIN_TOP1`, the issue's 95%),
  or the ``int8_count`` least sensitive ones. On the shipped backbone a single conv alone moves
  the features by 1-48%; at 95% one conv of 27 qualifies (docs/int8.md).
- The chosen graph's conv biases absorb the mean shift int8 brings (:mod:`calib.bias`).
- The graph's output (``features``, the last Conv's output) is not quantized: RoIAlign
  (``roi_pool.onnx``) pools it in float32, so a Q/DQ pair there would only add rounding error.
  ``roi_pool.onnx`` stays float32 too: RoiAlign has no int8 kernel in ONNX Runtime nor int8
  support in TensorRT's ONNX parser, and bilinear pooling of ~256-6000 RoIs is a small part of a
  frame's time next to the backbone.
- The calibration method (entropy or percentile) is chosen by measured accuracy on held-out
  calibration crops (every 5th), all convs int8: top-1 agreement of MetaRTT head scores over
  each crop's 256 candidates, INT8 vs FP32, then the features' relative error
  (:func:`choose_and_quantize`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from calib.bias import correct_biases
from calib.build import CalibrationSet, load
from calib.graph_checks import check_graph, graph_ops
from calib.mixed import choose_int8_convs, conv_names, float_nodes, plot_selection
from runtime.backends.manifest import (
    BATCH_INDICES,
    CROP,
    FEATURE_MAP,
    FEATURES,
    ROI_FEATURES,
    ROIS,
)
from runtime.backends.onnx_slicing import output_qdq_pair
from runtime.boxes import iou
from runtime.hashing import sha256_file
from runtime.rtmdnet.config import RTMDNetConfig
from runtime.rtmdnet.meta import SHIPPED_CHECKPOINT, MetaCheckpoint

METHODS = ("entropy", "percentile")
PERCENTILE = 99.999
QUANTIZED_OPS = ("Conv", "Add")
MIN_TOP1 = 0.95  # default bar for the int8 convs: held-out top-1 agreement with FP32
HOLDOUT_EVERY = 5  # every 5th calibration crop is held out to score the methods
BIAS_EVERY = 6  # every 6th calibration crop measures the bias correction (40 of 240)
CALIB_CHUNK = 1  # crops per calibration pass: crops differ in size, ORT stacks a pass
INT8_BACKBONE_ONNX = "backbone.int8.onnx"
SELECTION_PNG = "int8_selection.png"
TOP_K = RTMDNetConfig().top_k  # the tracker's estimate: the mean of the 5 best candidates


class QuantizationError(RuntimeError):
    pass


# --- calibration data -----------------------------------------------------------------------
def crop_feed(crop: np.ndarray) -> np.ndarray:
    """``H x W x 3`` uint8 BGR -> ``(1, 3, H, W)`` float32 (as roi_features.crop_to_tensor)."""
    return np.ascontiguousarray(crop.transpose(2, 0, 1)[None], dtype=np.float32)


def split_indices(n: int, every: int = HOLDOUT_EVERY) -> tuple[list[int], list[int]]:
    """(calibration, held-out) indices: every ``every``-th crop is held out."""
    held = [i for i in range(n) if i % every == every - 1]
    return [i for i in range(n) if i % every != every - 1], held


def backbone_feed(crop: np.ndarray) -> dict[str, np.ndarray]:
    """The backbone graph's inputs for one calibration crop."""
    return {CROP: crop_feed(crop)}


def _reader(
    crops: Sequence[Any],
    feed: Callable[[Any], dict[str, np.ndarray]] = backbone_feed,
):
    """A calibration reader over ``crops``; ``feed(item)`` makes one item's graph inputs."""
    from onnxruntime.quantization import CalibrationDataReader

    class CropReader(CalibrationDataReader):
        """Feeds the crops one at a time; ``set_range`` lets ORT calibrate in chunks."""

        def __init__(self) -> None:
            self.start, self.end = 0, len(crops)
            self.rewind()

        def __len__(self) -> int:
            return len(crops)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.start, self.end = start_index, min(end_index, len(crops))
            self.rewind()

        def rewind(self) -> None:
            self._next = self.start

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self._next >= self.end:
                return None
            self._next += 1
            return feed(crops[self._next - 1])

    return CropReader()


# --- graph surgery ----------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet_root_logger():
    """ONNX Runtime's quantizer logs "consider pre-processing" advice on the root logger for any
    model, twice per method; the result is checked after (checker, TensorRT ops, accuracy)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _strip_output_qdq(model: onnx.ModelProto, output: str) -> bool:
    """Remove a QuantizeLinear -> DequantizeLinear pair that ends at graph output ``output``.

    The tensor before the pair is renamed ``output``; returns whether a pair was removed.
    """
    graph = model.graph
    pair = output_qdq_pair(graph, output)
    if pair is None:
        return False
    q, dq = pair
    consumers = [n for n in graph.node if q.output[0] in n.input]
    if len(consumers) != 1:
        return False
    source = q.input[0]
    if any(source in n.input for n in graph.node if n is not q):
        return False  # the float tensor also feeds others: keep it simple, leave it
    for node in graph.node:
        for i, name in enumerate(node.output):
            if name == source:
                node.output[i] = output
    graph.node.remove(q)
    graph.node.remove(dq)
    used = {name for node in graph.node for name in node.input}
    unused = [t for t in graph.initializer if t.name not in used]
    for tensor in unused:  # the pair's scale and zero point
        graph.initializer.remove(tensor)
    return True


def qdq_summary(model: onnx.ModelProto) -> dict[str, Any]:
    """Counts of Q/DQ nodes and what the int8 weights look like (for tests and the manifest)."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    ops = [n.op_type for n in model.graph.node]
    weights = []
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in inits:
            continue
        value = numpy_helper.to_array(inits[node.input[0]])
        scale = numpy_helper.to_array(inits[node.input[1]]) if node.input[1] in inits else None
        zp = (
            numpy_helper.to_array(inits[node.input[2]])
            if len(node.input) > 2 and node.input[2] in inits
            else np.zeros(1)
        )
        weights.append(
            {
                "dtype": str(value.dtype),
                "per_channel": scale is not None and scale.size > 1,
                "zero_points_zero": bool(np.all(zp == 0)),
            }
        )
    int8 = [w for w in weights if w["dtype"] == "int8"]
    return {
        "quantize_linear": ops.count("QuantizeLinear"),
        "dequantize_linear": ops.count("DequantizeLinear"),
        "int8_weights": len(int8),
        "int8_weights_per_channel": sum(w["per_channel"] for w in int8),
        "zero_points_all_zero": all(w["zero_points_zero"] for w in weights),
    }


# --- quantization ---------------------------------------------------------------------------
@dataclass(frozen=True)
class QuantizeSettings:
    """How :func:`quantize_graph` quantizes a graph (the defaults: the backbone's)."""

    method: str = "entropy"  # calibration method, one of METHODS
    percentile: float = PERCENTILE  # for method="percentile"
    op_types: tuple[str, ...] = QUANTIZED_OPS
    per_channel: bool = True  # per-output-channel weight scales
    conv_outputs: bool = True  # quantize the convs' outputs too
    int8_convs: tuple[str, ...] | None = None  # the convs made int8 (calib.mixed); None: all
    # A JSON file of activation ranges: written by the first call, read by later ones (the same
    # samples and method), which then skip the calibration pass.
    calibration_cache: Path | None = None
    float_ops: tuple[str, ...] = ()  # nodes that stay float whatever op_types says
    float_outputs: tuple[str, ...] = (FEATURES,)  # outputs read in float32: no trailing Q/DQ

    def but(self, **changes: Any) -> QuantizeSettings:
        """A copy with ``changes`` (sequences become tuples)."""
        for key in ("op_types", "int8_convs", "float_ops", "float_outputs"):
            if changes.get(key) is not None:
                changes[key] = tuple(changes[key])
        return dataclasses.replace(self, **changes)


def quantize_backbone(
    fp32_onnx: str | os.PathLike[str],
    calib_dir: str | os.PathLike[str] | CalibrationSet,
    out_onnx: str | os.PathLike[str],
    settings: QuantizeSettings = QuantizeSettings(),
    indices: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Write a Q/DQ INT8 copy of the backbone ``fp32_onnx`` to ``out_onnx``, as ``settings`` say.

    Symmetric int8 activations and weights (zero points 0), per-channel weight scales; calibrated
    on the crops ``indices`` of the calibration set (default: all but every 5th, see
    :func:`split_indices`). Returns what was done (method, crops used, Q/DQ counts, seconds).
    """
    calib = calib_dir if isinstance(calib_dir, CalibrationSet) else load(calib_dir)
    if indices is None:
        indices = split_indices(len(calib))[0]
    crops = [calib.crops[i] for i in indices]
    return quantize_graph(fp32_onnx, crops, out_onnx, settings, backbone_feed)


def quantize_graph(
    fp32_onnx: str | os.PathLike[str],
    samples: Sequence[Any],
    out_onnx: str | os.PathLike[str],
    settings: QuantizeSettings = QuantizeSettings(),
    feed: Callable[[Any], dict[str, np.ndarray]] = backbone_feed,
) -> dict[str, Any]:
    """:func:`quantize_backbone` for any graph: calibrated on ``samples``, ``feed(sample)``
    giving one sample's inputs. ``settings.float_ops`` stay float on top of
    :func:`calib.mixed.float_nodes`; ``settings.float_outputs`` lose their trailing Q/DQ pair."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    method, int8_convs = settings.method, settings.int8_convs
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    chunk = CALIB_CHUNK
    usable = len(samples) - len(samples) % chunk if len(samples) >= chunk else len(samples)
    crops = list(samples[:usable])
    if not crops:
        raise QuantizationError("no calibration crops")
    out = Path(out_onnx)
    out.parent.mkdir(parents=True, exist_ok=True)
    extra = {
        "ActivationSymmetric": True,
        "WeightSymmetric": True,
        "CalibStridedMinMax": min(chunk, len(crops)),  # any method: calibrate chunk by chunk
        "CalibPercentile": settings.percentile,
    }
    if not settings.conv_outputs:
        extra["OpTypesToExcludeOutputQuantization"] = ["Conv"]
    fp32_model = onnx.load(str(fp32_onnx))
    if int8_convs is None:
        int8_convs = conv_names(fp32_model)
    excluded = float_nodes(fp32_model, int8_convs)
    excluded += [name for name in settings.float_ops if name not in excluded]
    cache = settings.calibration_cache
    start = time.perf_counter()
    with (
        tempfile.TemporaryDirectory() as tmp,
        contextlib.redirect_stdout(io.StringIO()),
        _quiet_root_logger(),
    ):
        # ORT writes its augmented model next to the input; keep that out of the export folder.
        source = Path(tmp) / "fp32.onnx"
        shutil.copyfile(fp32_onnx, source)
        quantize_static(
            str(source),
            str(out),
            _reader(crops, feed),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method={
                "entropy": CalibrationMethod.Entropy,
                "percentile": CalibrationMethod.Percentile,
            }[method],
            op_types_to_quantize=list(settings.op_types),
            per_channel=settings.per_channel,
            nodes_to_exclude=excluded,
            extra_options=extra,
            calibration_cache_path=None if cache is None else str(cache),
        )
    model = onnx.load(str(out))
    stripped = [name for name in settings.float_outputs if _strip_output_qdq(model, name)]
    model.metadata_props.add(key="precision", value="int8")
    model.metadata_props.add(key="int8_calibration", value=method)
    onnx.save(model, str(out))
    return {
        "method": method,
        "percentile": settings.percentile if method == "percentile" else None,
        "calibration_crops": len(crops),
        "op_types": list(settings.op_types),
        "per_channel_weights": settings.per_channel,
        "conv_outputs_quantized": settings.conv_outputs,
        "int8_convs": list(int8_convs),
        "float_nodes": excluded,
        "symmetric": True,
        "output_qdq_removed": bool(stripped),
        "qdq": qdq_summary(model),
        "seconds": round(time.perf_counter() - start, 1),
    }


# --- accuracy: INT8 vs FP32 on held-out crops -------------------------------------------------
def _session(model: str | os.PathLike[str] | bytes, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def shipped_head():
    """The MetaRTT head as shipped (``theta_init^0``), the one that scores candidates."""
    head = MetaCheckpoint.from_file(SHIPPED_CHECKPOINT).build_head()
    return head.eval()


@torch.no_grad()
def compare(
    fp32_backbone: str | os.PathLike[str] | bytes,
    int8_backbone: str | os.PathLike[str] | bytes,
    roi_pool: str | os.PathLike[str] | bytes,
    crops: Sequence[np.ndarray],
    rois: Sequence[np.ndarray],
    head: torch.nn.Module | None = None,
    keep: Sequence[int] | None = None,
    other_crops: Sequence[np.ndarray] | None = None,
) -> dict[str, Any]:
    """INT8 vs FP32 on ``crops``: top-1 candidate agreement and feature errors.

    Each crop's candidates (``rois``) are pooled from both feature maps (FP32 RoI pooling) and
    scored by ``head`` (default: the shipped MetaRTT head, its input scale set from the FP32
    features as the tracker sets it at the first frame). ``keep``: the graphs are pruned to
    these channels (the head's input columns are cut to match). ``other_crops``: what the
    second graph is fed instead of ``crops`` (the same crops altered, e.g. with input noise).
    """
    head = head or shipped_head()
    sessions = [_session(m) for m in (fp32_backbone, int8_backbone)]
    pool = _session(roi_pool)
    columns = None
    if keep is not None:
        cells = RTMDNetConfig().roi_size ** 2
        columns = torch.tensor([c * cells + k for c in keep for k in range(cells)])
    agree, rel_map, rel_feat, corr, top1_iou, estimate_iou = [], [], [], [], [], []
    others = crops if other_crops is None else other_crops
    for crop, other, boxes in zip(crops, others, rois, strict=True):
        maps = [
            session.run([FEATURES], {CROP: crop_feed(c)})[0]
            for session, c in zip(sessions, (crop, other), strict=True)
        ]
        batch = np.zeros(len(boxes), np.int64)
        feats = [
            torch.from_numpy(
                pool.run(
                    [ROI_FEATURES],
                    {FEATURE_MAP: m, ROIS: boxes.astype(np.float32), BATCH_INDICES: batch},
                )[0]
            )
            for m in maps
        ]
        head.input_scale.fill_(1.0 / float(feats[0].std().clamp_min(1e-6)))
        scores = []
        for f in feats:
            if columns is not None:
                full = torch.zeros(len(f), head.fc4[0].in_features)
                full[:, columns] = f
                f = full
            scores.append(head(f)[:, 1].numpy())
        agree.append(int(np.argmax(scores[0]) == np.argmax(scores[1])))
        boxes_xywh = _unpadded(boxes)
        tops = [np.argsort(-sc)[:TOP_K] for sc in scores]
        top1_iou.append(_iou(boxes_xywh[tops[0][0]], boxes_xywh[tops[1][0]]))
        estimate_iou.append(
            _iou(boxes_xywh[tops[0]].mean(axis=0), boxes_xywh[tops[1]].mean(axis=0))
        )
        rel_map.append(float(np.linalg.norm(maps[1] - maps[0]) / np.linalg.norm(maps[0])))
        rel_feat.append(float((feats[1] - feats[0]).norm() / feats[0].norm()))
        corr.append(float(np.corrcoef(scores[0], scores[1])[0, 1]))
    return {
        "crops": len(agree),
        "top1_agreement": float(np.mean(agree)),
        "feature_map_rel_error_median": float(np.median(rel_map)),
        "feature_map_rel_error_max": float(np.max(rel_map)),
        "roi_feature_rel_error_median": float(np.median(rel_feat)),
        "score_correlation_median": float(np.median(corr)),
        # the boxes: IoU of the two top-1 candidates, and of the two estimates (the mean of the
        # top 5 candidates, as the tracker's estimate)
        "top1_iou_median": float(np.median(top1_iou)),
        "estimate_iou_median": float(np.median(estimate_iou)),
        "estimate_iou_min": float(np.min(estimate_iou)),
        "estimate_iou_at_least_0.7": float(np.mean(np.asarray(estimate_iou) >= 0.7)),
    }


def _unpadded(rois: np.ndarray, padding: float | None = None) -> np.ndarray:
    """``x1, y1, x2, y2`` RoIs (padded as the tracker pads them) -> the ``x, y, w, h`` boxes."""
    padding = padding or RTMDNetConfig().roi_padding
    rois = np.asarray(rois, dtype=np.float64)
    wh = (rois[:, 2:] - rois[:, :2]) / padding
    centre = (rois[:, 2:] + rois[:, :2]) / 2
    return np.concatenate([centre - wh / 2, wh], axis=1)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.asarray(iou(a[None], b[None])).ravel()[0])


@dataclass(frozen=True)
class BackboneScan:
    """What every quantize-and-score step of :func:`choose_and_quantize` shares."""

    fp32_onnx: Path
    roi_pool_onnx: Path
    calib: CalibrationSet
    convs: tuple[str, ...]  # the FP32 graph's convs, in graph order
    train: list[int]  # calibration crops
    held: list[int]  # held-out crops: every choice is scored on them
    head: torch.nn.Module  # scores the candidates (shipped_head)
    ranges: dict[str, Path]  # per method: its activation ranges (calibrated once, then reused)

    @classmethod
    def of(
        cls,
        fp32_onnx: str | os.PathLike[str],
        roi_pool_onnx: str | os.PathLike[str],
        calib: CalibrationSet,
        tmp: Path,
        methods: Sequence[str],
    ) -> BackboneScan:
        """The scan of ``calib``'s split (:func:`split_indices`), ranges kept under ``tmp``."""
        train, held = split_indices(len(calib))
        convs = tuple(conv_names(onnx.load(str(fp32_onnx))))
        ranges = {m: tmp / f"ranges.{m}.json" for m in methods}
        return cls(
            Path(fp32_onnx), Path(roi_pool_onnx), calib, convs, train, held, shipped_head(), ranges
        )

    def quantize(self, method: str, path: Path, int8_convs: Sequence[str] | None = None) -> dict:
        settings = QuantizeSettings(method=method, calibration_cache=self.ranges[method])
        settings = settings.but(int8_convs=int8_convs)
        return quantize_backbone(self.fp32_onnx, self.calib, path, settings, self.train)

    def score(self, graph: Path) -> dict[str, Any]:
        crops = [self.calib.crops[i] for i in self.held]
        rois = [self.calib.rois[i] for i in self.held]
        return compare(self.fp32_onnx, graph, self.roi_pool_onnx, crops, rois, self.head)


def _choose_method(
    scan: BackboneScan, methods: Sequence[str], tmp: Path, log: Callable
) -> tuple[str, dict[str, Any]]:
    """Each method with every conv int8; the better held-out top-1 agreement wins (then the
    lower median feature-map error)."""
    results: dict[str, Any] = {}
    candidate = tmp / "candidate.onnx"
    for method in methods:
        info = scan.quantize(method, candidate)
        scores = scan.score(candidate)
        results[method] = {**info, "held_out": scores}
        log(
            f"[int8] {method}, all {len(scan.convs)} convs int8: top-1 agreement "
            f"{scores['top1_agreement']:.3f}, feature-map rel. error "
            f"{scores['feature_map_rel_error_median']:.4f} (median of {scores['crops']} "
            f"held-out crops), {info['seconds']} s"
        )
    best = max(
        methods,
        key=lambda m: (
            results[m]["held_out"]["top1_agreement"],
            -results[m]["held_out"]["feature_map_rel_error_median"],
        ),
    )
    log(f"[int8] calibration: {best}")
    return best, results


def _choose_convs(
    scan: BackboneScan, method: str, min_top1: float, int8_count: int | None, log: Callable
) -> dict[str, Any]:
    """:func:`calib.mixed.choose_int8_convs` with ``method``'s ranges; refuses an empty choice."""
    selection = choose_int8_convs(
        lambda chosen, path: scan.quantize(method, path, chosen), scan.score, list(scan.convs),
        min_top1,
        count=int8_count, log=log,
    )  # fmt: skip
    if not selection["int8_convs"]:
        tolerant = min(selection["sensitivity"], key=lambda x: x["feature_error"])
        raise QuantizationError(
            f"no conv keeps the held-out top-1 agreement at {min_top1}: the least "
            f"sensitive one alone ({tolerant['conv']}) gives "
            f"{selection['prefixes'][0]['top1_agreement']:.3f}; lower --int8-min-top1, "
            f"set --int8-count, or use fp16"
        )
    return selection


def _write_corrected(
    scan: BackboneScan, method: str, int8_convs: Sequence[str], out: Path
) -> dict[str, Any]:
    """The chosen graph at ``out``, its biases corrected (:mod:`calib.bias`), scored before and
    after the correction."""
    info = scan.quantize(method, out, int8_convs)
    uncorrected = scan.score(out)
    model = onnx.load(str(out))
    bias_crops = [scan.calib.crops[i] for i in scan.train[::BIAS_EVERY]]
    bias = correct_biases(onnx.load(str(scan.fp32_onnx)), model, bias_crops, _session, crop_feed)
    onnx.save(model, str(out))
    return {"info": info, "uncorrected": uncorrected, "bias": bias, "final": scan.score(out)}


def choose_and_quantize(
    fp32_onnx: str | os.PathLike[str],
    roi_pool_onnx: str | os.PathLike[str],
    calib_dir: str | os.PathLike[str],
    out_onnx: str | os.PathLike[str],
    methods: Sequence[str] = METHODS,
    log: Callable[[str], None] = print,
    min_top1: float = MIN_TOP1,
    int8_count: int | None = None,
    int8_convs: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Choose the calibration method and the int8 convs on held-out crops; write the INT8 graph.

    1. Each of ``methods`` calibrates the activation ranges once and quantizes every conv; the
       one with the better top-1 agreement with FP32 (then lower median feature-map error) on
       the held-out crops is kept (:func:`_choose_method`).
    2. With its ranges, :func:`calib.mixed.choose_int8_convs` measures each conv's sensitivity
       and keeps the longest prefix of least sensitive convs whose held-out top-1 agreement stays
       at or above ``min_top1`` (or exactly the ``int8_count`` least sensitive ones).
       ``int8_convs`` names the convs outright and skips the scan.
    3. The chosen graph, its biases corrected (:func:`_write_corrected`).

    Raises :class:`QuantizationError` when no conv can be int8 at ``min_top1``. Returns every
    number measured and the choice (the manifest's ``int8`` record).
    """
    calib = load(calib_dir)
    out = Path(out_onnx)
    with tempfile.TemporaryDirectory() as tmp:
        scan = BackboneScan.of(fp32_onnx, roi_pool_onnx, calib, Path(tmp), methods)
        best, results = _choose_method(scan, methods, Path(tmp), log)
        selection = None
        if int8_convs is None:
            selection = _choose_convs(scan, best, min_top1, int8_count, log)
            int8_convs = selection["int8_convs"]
        graph = _write_corrected(scan, best, int8_convs, out)
    final, uncorrected = graph["final"], graph["uncorrected"]
    log(
        f"[int8] {len(int8_convs)} of {len(scan.convs)} convs int8, biases corrected -> {out}: "
        f"top-1 agreement {final['top1_agreement']:.3f} (uncorrected "
        f"{uncorrected['top1_agreement']:.3f}), feature-map rel. error "
        f"{final['feature_map_rel_error_median']:.4f} "
        f"({uncorrected['feature_map_rel_error_median']:.4f})"
    )
    return _int8_record(scan, Path(calib_dir), best, results, int8_convs, selection, graph)


def _int8_record(
    scan: BackboneScan, calib_dir: Path, best: str, results: dict[str, Any],
    int8_convs: Sequence[str], selection: dict[str, Any] | None, graph: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """The manifest's ``int8`` record of :func:`choose_and_quantize`."""
    settings = scan.calib.settings
    return {
        "method": best,
        "chosen_by": "top-1 candidate agreement with FP32 (MetaRTT head, 256 candidates per "
        "crop) on held-out calibration crops, all convs int8, then lower median feature-map "
        "relative error",
        "candidates": results,
        "int8_convs": list(int8_convs),
        "convs_total": len(scan.convs),
        "float_nodes": graph["info"]["float_nodes"],
        "qdq": graph["info"]["qdq"],
        "selection": selection,
        "bias_correction": {"crops": len(scan.train[::BIAS_EVERY]), "convs": graph["bias"]},
        "held_out_uncorrected": graph["uncorrected"],
        "held_out": graph["final"],
        "calibration": {
            "folder": str(calib_dir),
            "crops_sha256": settings["crops_sha256"],
            "split": settings["split"],
            "count": len(scan.calib),
            "calibration_crops": len(scan.train),
            "held_out_crops": len(scan.held),
            "seed": settings["seed"],
            "sequences": settings["sequences"],
            "config": settings["config"],
        },
    }


def quantize_export(
    export_dir: str | os.PathLike[str],
    calib_dir: str | os.PathLike[str],
    log: Callable[[str], None] = print,
    **choice: Any,
) -> dict[str, Any]:
    """Write ``backbone.int8.onnx`` into an export folder made by ``export/build_engine.py``.

    Reads the folder's ``backbone.onnx`` (FP32) and ``roi_pool.onnx`` (stays FP32), chooses the
    calibration method (:func:`choose_and_quantize`) and checks the result (``onnx.checker`` and
    the TensorRT 10 operator list). ``choice``: ``min_top1``, ``int8_count`` or ``int8_convs``
    for :func:`choose_and_quantize`. Returns the manifest's ``int8`` record; point
    ``graphs.backbone.onnx`` at ``result["onnx"]`` for the runtime to load it.
    """
    folder = Path(export_dir)
    fp32, pool = folder / "backbone.onnx", folder / "roi_pool.onnx"
    out = folder / INT8_BACKBONE_ONNX
    record = choose_and_quantize(fp32, pool, calib_dir, out, log=log, **choice)
    model = check_graph(out, required_ops=("QuantizeLinear", "DequantizeLinear"))
    record.update(
        {
            "onnx": out.name,
            "sha256": sha256_file(out),
            "fp32_onnx": fp32.name,
            "fp32_sha256": sha256_file(fp32),
            "roi_pool": "float32 (RoiAlign has no int8 kernel; the features stay float32)",
            "ops": graph_ops(model),
            "format": "QDQ, symmetric int8 activations (per tensor) and weights (per output "
            "channel), zero points 0: TensorRT 10 explicit quantization",
        }
    )
    if record["selection"] is not None:
        record["selection_plot"] = plot_selection(record["selection"], folder / SELECTION_PNG).name
    (folder / "int8.json").write_text(json.dumps(record, indent=1) + "\n")
    return record
