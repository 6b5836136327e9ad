"""Empirical bias correction of the int8 convs (Nagel et al., "Data-Free Quantization", sec. 4.2).

Quantization moves a conv's output mean: rounded weights times inputs whose mean is not zero
(after ReLU / HardSwish), clipped activation ranges. Per output channel that shift is the mean,
over calibration crops and positions, of ``fp32 output - int8 output``; adding it to the conv's
float bias removes it. The convs are corrected in graph order, each measured on the graph with
the earlier ones already corrected, so a conv also absorbs the mean shift its input brings.
Only the biases change (float initializers; ONNX Runtime and TensorRT take them as they are);
the Q/DQ scales and int8 weights stay, so the graph is still the same explicit quantization.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from runtime.backends.manifest import CROP


def _int8_convs(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Conv nodes whose weight comes through a DequantizeLinear, in graph order."""
    dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return [n for n in model.graph.node if n.op_type == "Conv" and n.input[1] in dequantized]


def _with_outputs(model: onnx.ModelProto, names: Sequence[str]) -> bytes:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    have = {o.name for o in copy.graph.output}
    for name in names:
        if name not in have:
            copy.graph.output.add().name = name
    return copy.SerializeToString()


def _channel_means(session, names: Sequence[str], feeds) -> dict[str, np.ndarray]:
    """Per-channel mean of each tensor ``names`` over all crops and positions."""
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for feed in feeds:
        for name, value in zip(names, session.run(list(names), feed), strict=True):
            sums[name] = sums.get(name, 0) + value.sum(axis=(0, 2, 3), dtype=np.float64)
            counts[name] = counts.get(name, 0) + value.shape[0] * value.shape[2] * value.shape[3]
    return {name: sums[name] / counts[name] for name in names}


def _add_to_bias(
    model: onnx.ModelProto,
    conv: onnx.NodeProto,
    shift: np.ndarray,
    initializers: dict[str, onnx.TensorProto],
) -> None:
    """Add ``shift`` to ``conv``'s bias: a float initializer, or int32 through a
    DequantizeLinear (one scale per channel, ``s_in * s_w``; zero point 0), re-rounded."""
    if len(conv.input) < 3 or not conv.input[2]:
        raise ValueError(f"{conv.name}: no bias to correct")
    name = conv.input[2]
    if name in initializers:
        bias = initializers[name]
        value = numpy_helper.to_array(bias).astype(np.float64) + shift
        bias.CopyFrom(numpy_helper.from_array(value.astype(np.float32), bias.name))
        return
    producer = next((n for n in model.graph.node if name in n.output), None)
    if producer is None or producer.op_type != "DequantizeLinear":
        raise ValueError(f"{conv.name}: bias {name} is neither an initializer nor dequantized")
    quantized, scale = (initializers[i] for i in producer.input[:2])
    q = numpy_helper.to_array(quantized).astype(np.float64)
    step = numpy_helper.to_array(scale).astype(np.float64)
    if quantized.data_type != onnx.TensorProto.INT32:
        raise ValueError(f"{conv.name}: quantized bias {quantized.name} is not int32")
    value = np.round(q + shift / step)
    info = np.iinfo(np.int32)
    quantized.CopyFrom(
        numpy_helper.from_array(np.clip(value, info.min, info.max).astype(np.int32), quantized.name)
    )


def _inputs(fed: np.ndarray | dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return fed if isinstance(fed, dict) else {CROP: fed}


def correct_biases(
    fp32: onnx.ModelProto,
    int8: onnx.ModelProto,
    crops: Sequence[np.ndarray],
    session: Callable[[bytes], Any],
    feed: Callable[[Any], np.ndarray | dict[str, np.ndarray]],
) -> list[dict[str, Any]]:
    """Correct ``int8``'s conv biases in place against ``fp32`` on ``crops``; returns per conv
    the mean absolute shift removed (relative to the output's mean magnitude).

    ``session(graph_bytes)`` makes an ONNX Runtime session; ``feed(crop)`` the input array of
    a one-input graph (its ``crop``), or all of a graph's inputs by name (a dict).
    """
    convs = _int8_convs(int8)
    names = [c.output[0] for c in convs]
    feeds = [_inputs(feed(c)) for c in crops]
    reference = _channel_means(session(_with_outputs(fp32, names)), names, feeds)
    initializers = {t.name: t for t in int8.graph.initializer}
    record = []
    for conv, name in zip(convs, names, strict=True):
        got = _channel_means(session(_with_outputs(int8, [name])), [name], feeds)[name]
        shift = reference[name] - got
        _add_to_bias(int8, conv, shift, initializers)
        record.append(
            {
                "conv": conv.name,
                "mean_abs_shift": float(np.abs(shift).mean()),
                "max_abs_shift": float(np.abs(shift).max()),
            }
        )
    return record
