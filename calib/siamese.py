"""INT8 of the nanotrack search graph: Q/DQ convs chosen by measured sensitivity on real pairs.

The method is the RT-MDNet backbone's (:mod:`calib.quantize`, docs/int8.md), applied to
``search.onnx`` (backbone + head, run once per frame) with the same functions: ONNX Runtime's
``quantize_static`` in QDQ format, symmetric int8 activations (one scale per tensor, zero point
0) and per-output-channel int8 weights; the calibration method (entropy or percentile) chosen on
held-out pairs with every candidate conv int8; each candidate's sensitivity (that conv alone
int8), then the longest least-sensitive-first prefix whose held-out top-1 agreement stays at or
above ``min_top1`` (:func:`calib.mixed.choose_int8_convs`); bias correction of the chosen graph
(:func:`calib.bias.correct_biases`). ``template.onnx`` stays float32: it runs once per target.

What differs, and why:

- Data: (template, search) crop pairs (:mod:`calib.pairs`); the graph's inputs are the search
  crop and the four template kernels, which ``net.template`` computes from each pair's template.
- Agreement = what the tracker decides: the cell it picks from ``scores`` after the cosine
  window (the scale/aspect penalties need the previous box and are left out), INT8 vs FP32; with
  it the IoU of the boxes decoded at the two chosen cells, and the scores' and boxes' relative
  errors. A conv's sensitivity is the worse of the two outputs' relative errors (median over
  the held-out pairs): a box-tower conv does not touch ``scores`` at all, so the score error
  alone would rank it harmless whatever it does to the boxes.
- Float by design, never candidates: ops whose weights are computed at run time, the
  depthwise-correlation convs (their kernel is the ``dw_*`` input) and the pixel-wise
  correlation MatMuls (``pw_*`` input); a per-channel weight scale cannot be fixed for them
  ahead of time, and TensorRT needs constant weights for its int8 convs. Also the channel-
  attention convs (1x1 convs on a globally pooled vector that gate whole maps), float for the
  same reason as the backbone's squeeze-excite blocks (docs/int8.md): negligible work, and an
  int8 error in a gate scales every position of the map.

:func:`quantize_search_graph` replaces ``search.onnx`` in its folder by the Q/DQ graph (same
file name, inputs and outputs) after checking it with ``onnx.checker`` and running it through
:class:`runtime.backends.siamese.OnnxRuntimeSiameseBackend` (uint8 re-encoding for the CPU) at
S = 255 and 383, and writes the selection plot ``int8_selection.png`` next to it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import torch

from calib.bias import correct_biases
from calib.mixed import choose_int8_convs, conv_names, plot_selection
from calib.pairs import PairSet, load
from calib.quantize import (
    BIAS_EVERY,
    METHODS,
    MIN_TOP1,
    SELECTION_PNG,
    QuantizationError,
    QuantizeSettings,
    _session,
    crop_feed,
    quantize_graph,
    split_indices,
)
from runtime.backends.siamese import (
    BOXES,
    CROP,
    KERNELS,
    SCORES,
    SEARCH_ONNX,
    TEMPLATE_ONNX,
    OnnxRuntimeSiameseBackend,
    SiameseExport,
)
from runtime.boxes import iou
from runtime.hashing import sha256_file
from runtime.nanotrack.config import NanoTrackConfig
from runtime.nanotrack.model import NanoTrackNet
from runtime.nanotrack.tracker import cell_points, cosine_window, map_side

SENSITIVITY_ERROR = "output_rel_error_median"  # the key choose_int8_convs ranks convs by
CHECK_SIDES = (255, 383)  # the normal search crop and the widest lost-target one
PARTIAL_ONNX = "search.int8.partial.onnx"  # the candidate, checked before it replaces search.onnx
CONSTANT_WEIGHT_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


@dataclass(frozen=True)
class SearchPair:
    """One search-graph input: a search crop and its template's kernels."""

    crop: np.ndarray  # S x S x 3 uint8 BGR
    kernels: dict[str, np.ndarray]  # KERNELS -> float32 arrays, shapes as template.onnx's outputs


def pair_feed(pair: SearchPair) -> dict[str, np.ndarray]:
    """The search graph's five inputs for ``pair``."""
    return {CROP: crop_feed(pair.crop), **pair.kernels}


@torch.no_grad()
def template_kernels(net: NanoTrackNet, templates: Sequence[np.ndarray]) -> list[dict[str, Any]]:
    """Each template crop's four kernels, computed by the FP32 network (what the template graph
    hands the search graph at run time)."""
    net = net.eval().cpu()
    out = []
    for crop in templates:
        kernels = net.template(torch.from_numpy(crop_feed(crop)))
        out.append(
            {name: k.numpy().astype(np.float32) for name, k in zip(KERNELS, kernels, strict=True)}
        )
    return out


def search_pairs(pair_set: PairSet, net: NanoTrackNet) -> list[SearchPair]:
    kernels = template_kernels(net, pair_set.templates)
    return [
        SearchPair(s, kernels[t])
        for s, t in zip(pair_set.searches, pair_set.template_of, strict=True)
    ]


# --- which ops may be int8 --------------------------------------------------------------------
def _constants(model: onnx.ModelProto) -> set[str]:
    names = {t.name for t in model.graph.initializer}
    return names | {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}


def _input_dependent(model: onnx.ModelProto) -> set[str]:
    """Tensors that change from run to run: the graph inputs and everything computed from them."""
    varying = {i.name for i in model.graph.input}
    for node in model.graph.node:  # topological order
        if any(name in varying for name in node.input):
            varying.update(node.output)
    return varying


def dynamic_weight_ops(model: onnx.ModelProto) -> list[str]:
    """Convs whose weight and MatMuls/Gemms whose both operands are computed at run time."""
    varying = _input_dependent(model)
    found = []
    for node in model.graph.node:
        if node.op_type not in CONSTANT_WEIGHT_OPS:
            continue
        operands = node.input[1:2] if node.op_type.startswith("Conv") else node.input[:2]
        if all(name in varying for name in operands):
            found.append(node.name)
    return found


def gate_convs(model: onnx.ModelProto) -> list[str]:
    """Convs on globally pooled vectors (channel attention): downstream of a ``ReduceMean`` or
    ``GlobalAveragePool`` through ops whose every non-constant input is pooled too."""
    constants = _constants(model)
    pooled: set[str] = set()
    gates = []
    for node in model.graph.node:
        inputs = [name for name in node.input if name and name not in constants]
        if node.op_type in ("ReduceMean", "GlobalAveragePool"):
            pooled.update(node.output)
        elif inputs and all(name in pooled for name in inputs):
            pooled.update(node.output)
            if node.op_type == "Conv":
                gates.append(node.name)
    return gates


def candidate_convs(model: onnx.ModelProto) -> list[str]:
    """The convs the sensitivity scan may make int8, in graph order."""
    fixed_float = set(dynamic_weight_ops(model)) | set(gate_convs(model))
    return [name for name in conv_names(model) if name not in fixed_float]


# --- agreement: what the tracker decides, INT8 vs FP32 ---------------------------------------
@dataclass(frozen=True)
class Decision:
    cell: int  # the cell the tracker picks (scores blended with the cosine window)
    raw_cell: int  # the plain argmax of scores
    box: np.ndarray  # x, y, w, h of the picked cell's box, crop pixels from the crop's centre


def decide(scores: np.ndarray, boxes: np.ndarray, config: NanoTrackConfig) -> Decision:
    """The tracker's pick from one search output (``NanoTracker.update`` without the penalties,
    which need the previous box): the cosine-window blend's argmax and its decoded box."""
    side = scores.shape[-1]
    flat = scores.reshape(-1).astype(np.float64)
    window = cosine_window(side)
    blended = flat * (1.0 - config.window_influence) + window * config.window_influence
    cell = int(np.argmax(blended))
    points = cell_points(side, config.stride)[:, cell]
    left, top, right, bottom = boxes.reshape(4, -1)[:, cell].astype(np.float64)
    x1, y1 = points[0] - left, points[1] - top
    box = np.array([x1, y1, left + right, top + bottom])
    return Decision(cell, int(np.argmax(flat)), box)


def _relative(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.linalg.norm(got - want) / max(float(np.linalg.norm(want)), 1e-12))


def run_search(graph: str | os.PathLike[str] | bytes, pairs: Sequence[SearchPair]) -> list:
    """``(scores, boxes)`` of ``graph`` on every pair (ONNX Runtime, CPU)."""
    session = _session(graph)
    return [tuple(session.run([SCORES, BOXES], pair_feed(p))) for p in pairs]


def compare_search(
    reference: Sequence[tuple[np.ndarray, np.ndarray]],
    outputs: Sequence[tuple[np.ndarray, np.ndarray]],
    config: NanoTrackConfig | None = None,
) -> dict[str, Any]:
    """INT8 (``outputs``) vs FP32 (``reference``) search outputs on the same pairs.

    ``top1_agreement``: the tracker picks the same cell (cosine window applied);
    ``argmax_agreement``: the same without the window; ``estimate_iou_*``: IoU of the boxes at
    the two picked cells; ``score_/boxes_rel_error_*``: ``|int8 - fp32| / |fp32|`` (L2) per pair;
    ``output_rel_error_median``: the median of the worse of the two, the sensitivity measure.
    """
    config = config or NanoTrackConfig()
    agree, raw, ious, score_err, boxes_err, worst = [], [], [], [], [], []
    for (s32, b32), (s8, b8) in zip(reference, outputs, strict=True):
        want, got = decide(s32, b32, config), decide(s8, b8, config)
        agree.append(want.cell == got.cell)
        raw.append(want.raw_cell == got.raw_cell)
        ious.append(float(iou(want.box, got.box)))
        score_err.append(_relative(s8, s32))
        boxes_err.append(_relative(b8, b32))
        worst.append(max(score_err[-1], boxes_err[-1]))
    return {
        "pairs": len(agree),
        "top1_agreement": float(np.mean(agree)),
        "argmax_agreement": float(np.mean(raw)),
        "estimate_iou_median": float(np.median(ious)),
        "estimate_iou_min": float(np.min(ious)),
        "estimate_iou_at_least_0.9": float(np.mean(np.asarray(ious) >= 0.9)),
        "score_rel_error_median": float(np.median(score_err)),
        "score_rel_error_max": float(np.max(score_err)),
        "boxes_rel_error_median": float(np.median(boxes_err)),
        SENSITIVITY_ERROR: float(np.median(worst)),
    }


# --- checks of the result ---------------------------------------------------------------------
def _signature(model: onnx.ModelProto) -> list[tuple[str, int, tuple[int | str, ...]]]:
    def dims(value: onnx.ValueInfoProto) -> tuple[int | str, ...]:
        return tuple(d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim)

    values = [*model.graph.input, *model.graph.output]
    return [(v.name, v.type.tensor_type.elem_type, dims(v)) for v in values]


def check_graph(int8: onnx.ModelProto, fp32: onnx.ModelProto, keep_float: Sequence[str]) -> None:
    """``onnx.checker`` (full), the FP32 graph's inputs and outputs (names, types, shapes), and
    ``keep_float`` still float: none of their operands dequantized."""
    onnx.checker.check_model(int8, full_check=True)
    if _signature(int8) != _signature(fp32):
        raise QuantizationError(
            f"the INT8 search graph's inputs/outputs {_signature(int8)} differ from FP32's "
            f"{_signature(fp32)}"
        )
    dequantized = {o for n in int8.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    nodes = {n.name: n for n in int8.graph.node}
    for name in keep_float:
        node = nodes.get(name)
        if node is None or any(i in dequantized for i in node.input):
            raise QuantizationError(f"{name} (dynamic weights) was quantized or removed")


def _crop_at(crop: np.ndarray, side: int) -> np.ndarray:
    """``crop`` at ``side`` (resized if it is not): the backend check needs a run, not a pair."""
    if crop.shape[0] == side:
        return crop
    return cv2.resize(crop, (side, side), interpolation=cv2.INTER_LINEAR)


def _tensor(crop: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(crop_feed(crop))


def check_cpu_backend(
    folder: Path, graph: Path, fp32_graph: Path, checks: dict[int, tuple[np.ndarray, np.ndarray]]
) -> dict[str, Any]:
    """Load ``graph`` with ``folder``'s template graph through the CPU Siamese backend (which
    re-encodes activations as uint8) and run it on each side's ``(template, search)`` crops of
    ``checks``: output shapes, finite values, and the relative error against FP32."""
    graphs = {"template": {"onnx": TEMPLATE_ONNX}, "search": {"onnx": graph.name}}
    export = SiameseExport(folder, {"graphs": graphs, "precision": "int8"})
    backend = OnnxRuntimeSiameseBackend(export, threads=torch.get_num_threads())
    fp32 = _session(fp32_graph)
    record: dict[str, Any] = {"backend": repr(backend)}
    for side, (template, crop) in checks.items():
        kernels = backend.template(_tensor(template))
        scores, boxes = (t.numpy() for t in backend.search(_tensor(crop), kernels))
        n = map_side(side)
        if scores.shape != (1, n, n) or boxes.shape != (1, 4, n, n):
            raise QuantizationError(f"S={side}: outputs {scores.shape}, {boxes.shape}")
        if not (np.isfinite(scores).all() and np.isfinite(boxes).all()):
            raise QuantizationError(f"S={side}: non-finite outputs from the INT8 search graph")
        feed = {
            CROP: crop_feed(crop),
            **{k: v.numpy() for k, v in zip(KERNELS, kernels, strict=True)},
        }
        want = fp32.run([SCORES, BOXES], feed)
        record[f"S{side}"] = {
            "scores_shape": list(scores.shape),
            "boxes_shape": list(boxes.shape),
            "score_rel_error": _relative(scores, want[0]),
            "boxes_rel_error": _relative(boxes, want[1]),
        }
    return record


# --- the whole choice -------------------------------------------------------------------------
@dataclass
class _Scan:
    """Everything one quantize-and-score step needs (shared by every step of the scan)."""

    fp32: Path
    calibration: list[SearchPair]
    held: list[SearchPair]
    reference: list[tuple[np.ndarray, np.ndarray]]
    keep_float: list[str]
    cache: dict[str, Path]

    def quantize(self, method: str, convs: Sequence[str], path: Path) -> dict[str, Any]:
        settings = QuantizeSettings(calibration_cache=self.cache[method]).but(
            method=method, int8_convs=convs, float_ops=self.keep_float,
            float_outputs=(SCORES, BOXES),
        )  # fmt: skip
        return quantize_graph(self.fp32, self.calibration, path, settings, pair_feed)

    def score(self, path: Path) -> dict[str, Any]:
        return compare_search(self.reference, run_search(path, self.held))


def _choose_method(
    scan: _Scan, convs: Sequence[str], methods: Sequence[str], tmp: Path, log: Callable
) -> tuple[str, dict[str, Any]]:
    """Each method with every candidate int8; the better held-out agreement wins (then the
    lower output error)."""
    results: dict[str, Any] = {}
    for method in methods:
        info = scan.quantize(method, convs, tmp / f"all.{method}.onnx")
        scores = scan.score(tmp / f"all.{method}.onnx")
        results[method] = {**info, "held_out": scores}
        log(
            f"[int8] search graph, {method}, all {len(convs)} candidate convs int8: top-1 "
            f"agreement {scores['top1_agreement']:.3f}, box IoU {scores['estimate_iou_median']:.3f}"
            f", output rel. error {scores[SENSITIVITY_ERROR]:.4f} ({scores['pairs']} held-out "
            f"pairs), {info['seconds']} s"
        )
    best = max(
        methods,
        key=lambda m: (
            results[m]["held_out"]["top1_agreement"],
            -results[m]["held_out"][SENSITIVITY_ERROR],
        ),
    )
    log(f"[int8] calibration: {best}")
    return best, results


def _no_conv_error(selection: dict[str, Any], min_top1: float) -> QuantizationError:
    tolerant = min(selection["sensitivity"], key=lambda x: x["feature_error"])
    return QuantizationError(
        f"no conv of the search graph keeps the held-out top-1 agreement at {min_top1}: the "
        f"least sensitive one alone ({tolerant['conv']}) gives "
        f"{selection['prefixes'][0]['top1_agreement']:.3f}; lower --int8-min-top1, set "
        f"--int8-count, or use fp32"
    )


def _calibration_record(pair_set: PairSet, folder: Path, train: list, held: list) -> dict:
    settings = pair_set.settings
    return {
        "folder": str(folder),
        "tracker": settings["tracker"],
        "pairs_sha256": settings["pairs_sha256"],
        "split": settings["split"],
        "count": len(pair_set),
        "calibration_pairs": len(train),
        "held_out_pairs": len(held),
        "seed": settings["seed"],
        "sequences": settings["sequences"],
        "config": settings["config"],
    }


def _check_pairs(pair_set: PairSet, held: Sequence[int]) -> dict[int, tuple]:
    """A held-out ``(template, search)`` pair per side of :data:`CHECK_SIDES` (a search crop
    resized to that side where no held-out pair has it: the check needs a run, not a pair)."""
    by_side = {int(pair_set.searches[i].shape[0]): i for i in reversed(held)}
    checks = {}
    for side in CHECK_SIDES:
        i = by_side.get(side, held[0])
        checks[side] = (
            pair_set.templates[pair_set.template_of[i]],
            _crop_at(pair_set.searches[i], side),
        )
    return checks


def quantize_search_graph(
    out: Path,
    net: NanoTrackNet,
    calib_dir: Path,
    log: Callable[[str], None] = print,
    min_top1: float | None = None,
    int8_count: int | None = None,
    methods: Sequence[str] = METHODS,
) -> dict[str, Any]:
    """Replace ``out/search.onnx`` by its INT8 Q/DQ form; returns the manifest's ``int8`` record.

    ``calib_dir``: a nanotrack calibration set (``python -m calib.build --tracker nanotrack``;
    another tracker's set is refused, :class:`calib.sources.WrongTracker`). ``min_top1``
    (default :data:`calib.quantize.MIN_TOP1`) or ``int8_count`` decide how many convs go int8
    (:func:`calib.mixed.choose_int8_convs`); ``methods``: the calibration methods to try.
    Raises :class:`QuantizationError` when no conv keeps ``min_top1`` or a check fails (the
    FP32 ``search.onnx`` is then left as it was).
    """
    if min_top1 is not None and int8_count is not None:
        raise ValueError("give min_top1 or int8_count, not both")
    bar = MIN_TOP1 if min_top1 is None else min_top1
    pair_set = load(calib_dir)
    out = Path(out)
    target = out / SEARCH_ONNX
    fp32_model = onnx.load(str(target))
    keep_float = dynamic_weight_ops(fp32_model)
    gates = gate_convs(fp32_model)
    convs = candidate_convs(fp32_model)
    pairs = search_pairs(pair_set, net)
    train, held = split_indices(len(pairs))
    partial = out / PARTIAL_ONNX
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        fp32 = tmp / "search.fp32.onnx"  # the reference, whatever happens to search.onnx
        shutil.copyfile(target, fp32)
        held_pairs = [pairs[i] for i in held]
        scan = _Scan(
            fp32, [pairs[i] for i in train], held_pairs, run_search(fp32, held_pairs),
            keep_float, {m: tmp / f"ranges.{m}.json" for m in methods},
        )  # fmt: skip
        best, candidates = _choose_method(scan, convs, methods, tmp, log)
        selection = choose_int8_convs(
            lambda chosen, path: scan.quantize(best, chosen, path), scan.score, convs, bar,
            count=int8_count, log=log, error_key=SENSITIVITY_ERROR,
        )  # fmt: skip
        int8_convs = selection["int8_convs"]
        if not int8_convs:
            raise _no_conv_error(selection, bar)
        try:
            info = scan.quantize(best, int8_convs, partial)
            uncorrected = scan.score(partial)
            model = onnx.load(str(partial))
            bias_pairs = [pairs[i] for i in train[::BIAS_EVERY]]
            bias = correct_biases(fp32_model, model, bias_pairs, _session, pair_feed)
            check_graph(model, fp32_model, keep_float)
            onnx.save(model, str(partial))
            final = scan.score(partial)
            backend = check_cpu_backend(out, partial, fp32, _check_pairs(pair_set, held))
            fp32_sha = sha256_file(fp32)
            os.replace(partial, target)  # same name, inputs and outputs: the manifest hashes it
        finally:
            partial.unlink(missing_ok=True)
    plot = plot_selection(selection, out / SELECTION_PNG, "output rel. error", "held-out pairs")
    total = len(conv_names(fp32_model))
    log(
        f"[int8] {len(int8_convs)} of {len(convs)} candidate convs int8 ({total} in the graph),"
        f" biases corrected -> {target}: top-1 agreement "
        f"{final['top1_agreement']:.3f} (uncorrected {uncorrected['top1_agreement']:.3f}), box "
        f"IoU {final['estimate_iou_median']:.3f}, score rel. error "
        f"{final['score_rel_error_median']:.4f}"
    )
    return {
        "graph": SEARCH_ONNX,
        "template": f"{TEMPLATE_ONNX} stays float32 (it runs once per target)",
        "method": best,
        "chosen_by": "top-1 agreement with FP32 (the cell the tracker picks: scores with the "
        "cosine window, no penalties) on held-out calibration pairs, every candidate conv int8, "
        "then lower output relative error",
        "sensitivity_measure": "feature_error = median over held-out pairs of the worse of the "
        "scores' and boxes' relative L2 errors, that conv alone int8",
        "candidates": candidates,
        "int8_convs": list(int8_convs),
        "convs_total": total,
        "convs_candidates": len(convs),
        "float_by_design": {"dynamic_weight_ops": keep_float, "gate_convs": gates},
        "float_nodes": info["float_nodes"],
        "qdq": info["qdq"],
        "selection": selection,
        "selection_plot": plot.name,
        "bias_correction": {"pairs": len(bias_pairs), "convs": bias},
        "held_out_uncorrected": uncorrected,
        "held_out": final,
        "cpu_backend_check": backend,
        "calibration": _calibration_record(pair_set, Path(calib_dir), train, held),
        "sha256": sha256_file(target),
        "fp32_sha256": fp32_sha,
        "format": "QDQ, symmetric int8 activations (per tensor) and weights (per output "
        "channel), zero points 0: TensorRT 10 explicit quantization",
    }
