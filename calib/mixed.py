"""Which convs run in INT8: per-layer sensitivity, then the most int8 layers that keep the ranking.

A conv's *sensitivity* is measured by quantizing it alone (its input, weights and output; every
other op float) and comparing the backbone's feature map with the FP32 one on held-out crops
(median relative error). The convs are then made int8 in order of rising sensitivity, and the
longest such prefix is kept whose held-out top-1 candidate agreement with FP32 (the MetaRTT head
over each crop's 256 candidates, :func:`calib.quantize.compare`) stays at or above
``min_top1``. A residual ``Add`` is int8 when both of its inputs come from int8 ops (else a Q/DQ
pair would sit on a float sum for nothing).

All candidates share one set of activation ranges (ONNX Runtime's calibration cache), so the scan
costs one calibration pass plus a quantize-and-compare per step.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import onnx

from runtime.atomic import write_atomic


def conv_names(model: onnx.ModelProto) -> list[str]:
    """The Conv nodes' names in graph order."""
    return [node.name for node in model.graph.node if node.op_type == "Conv"]


def float_nodes(model: onnx.ModelProto, int8_convs: Sequence[str]) -> list[str]:
    """``nodes_to_exclude`` for ORT's quantizer so that exactly ``int8_convs`` are int8.

    Convs not named stay float; an ``Add`` stays float unless both inputs come from int8 nodes.
    """
    int8 = set(int8_convs)
    unknown = int8 - set(conv_names(model))
    if unknown:
        raise ValueError(f"not Conv nodes of this graph: {sorted(unknown)}")
    producer = {out: node for node in model.graph.node for out in node.output}
    excluded = []
    for node in model.graph.node:  # graph order: an Add's producers are decided before it
        if node.op_type == "Conv" and node.name not in int8:
            excluded.append(node.name)
        elif node.op_type == "Add":
            sources = [producer.get(name) for name in node.input]
            if all(s is not None and s.name in int8 for s in sources):
                int8.add(node.name)
            else:
                excluded.append(node.name)
    return excluded


def choose_int8_convs(
    quantize: Callable[[Sequence[str], Path], dict[str, Any]],
    score: Callable[[Path], dict[str, Any]],
    convs: Sequence[str],
    min_top1: float,
    count: int | None = None,
    log: Callable[[str], None] = print,
    error_key: str = "feature_map_rel_error_median",
) -> dict[str, Any]:
    """Scan ``convs`` one at a time, then grow the int8 set in order of rising sensitivity.

    ``quantize(int8_convs, out)`` writes a graph with those convs int8; ``score(path)`` returns
    :func:`calib.quantize.compare`'s numbers for it on held-out crops (or any dict with
    ``top1_agreement``, ``estimate_iou_median`` and ``error_key``, the error that measures
    sensitivity; it is recorded as ``feature_error``). The set grows while its
    top-1 agreement stays at or above ``min_top1``; with ``count``, it is the ``count`` least
    sensitive convs whatever their agreement. Returns the per-layer sensitivities, every prefix
    tried and the chosen set (possibly empty: no conv keeps the ranking at ``min_top1``).
    """
    if count is not None and not 0 < count <= len(convs):
        raise ValueError(f"count must be in 1..{len(convs)}, not {count}")
    layers = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "candidate.onnx"
        for i, name in enumerate(convs):
            quantize([name], path)
            result = score(path)
            layers.append(
                {
                    "conv": name,
                    "index": i,
                    "feature_error": result[error_key],
                    "top1_agreement": result["top1_agreement"],
                }
            )
            log(
                f"[int8] sensitivity {i + 1}/{len(convs)} {name}: feature error "
                f"{layers[-1]['feature_error']:.4f}, top-1 {layers[-1]['top1_agreement']:.3f}"
            )
        order = [layer["conv"] for layer in sorted(layers, key=lambda x: x["feature_error"])]
        prefixes = []
        chosen: list[str] = []
        for k in [count] if count is not None else range(1, len(order) + 1):
            quantize(order[:k], path)
            result = score(path)
            prefixes.append(
                {
                    "int8_convs": k,
                    "top1_agreement": result["top1_agreement"],
                    "feature_error": result[error_key],
                    "estimate_iou_median": result["estimate_iou_median"],
                }
            )
            log(
                f"[int8] {k} least sensitive convs int8: top-1 {result['top1_agreement']:.3f}, "
                f"feature error {result[error_key]:.4f}"
            )
            if count is None and result["top1_agreement"] < min_top1:
                break  # the next layers are more sensitive still
            chosen = order[:k]
    return {
        "min_top1": None if count is not None else min_top1,
        "count": count,
        "sensitivity": layers,
        "order": order,
        "prefixes": prefixes,
        "int8_convs": chosen,
    }


def plot_selection(
    selection: dict[str, Any],
    path: str | Path,
    error_label: str = "feature-map rel. error",
    held_out: str = "held-out crops",
) -> Path:
    """Two panels: each conv's sensitivity (graph order; int8 ones filled) and, per number of
    least sensitive convs made int8, the held-out top-1 agreement and feature error.

    ``error_label`` names the sensitivity error, ``held_out`` what it was measured on."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    layers = selection["sensitivity"]
    chosen = set(selection["int8_convs"])
    fig = Figure(figsize=(10, 4), dpi=110)
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    errors = [layer["feature_error"] for layer in layers]
    colours = ["tab:blue" if layer["conv"] in chosen else "0.75" for layer in layers]
    left.bar(range(len(layers)), errors, color=colours)
    left.set_yscale("log")
    left.set_xlabel("conv (graph order; blue: int8 in this graph)")
    left.set_ylabel(f"{error_label}, this conv alone int8")
    left.set_title("per-conv sensitivity")
    left.grid(True, axis="y", alpha=0.3)

    prefixes = selection["prefixes"]
    k = [p["int8_convs"] for p in prefixes]
    right.plot(k, [p["top1_agreement"] for p in prefixes], "o-", label="top-1 agreement")
    right.plot(k, [p["feature_error"] for p in prefixes], "s-", label=error_label)
    if selection.get("min_top1") is not None:
        right.axhline(selection["min_top1"], color="0.5", linestyle="--", linewidth=1)
    right.set_xlim(0, len(layers) + 1)
    right.set_ylim(0, 1.01)
    right.set_xlabel("least sensitive convs int8")
    right.set_title(f"{held_out} vs FP32")
    right.grid(True, alpha=0.3)
    right.legend(loc="center left", fontsize="small")
    fig.tight_layout()
    image = io.BytesIO()
    fig.savefig(image, format="png")
    path = Path(path)
    write_atomic(path, image.getvalue())
    return path
