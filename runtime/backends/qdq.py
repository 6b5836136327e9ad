"""Symmetric int8 activations re-encoded as uint8 for ONNX Runtime's CPU kernels (lossless).

The INT8 backbone (``calib.quantize``) carries symmetric int8 activations, zero point 0, as
TensorRT's explicit quantization requires. ONNX Runtime's CPU graph optimizer fuses
``DequantizeLinear -> Conv -> QuantizeLinear`` into ``QLinearConv`` for uint8 activations, but
with int8 ones only for some convs (measured on the shipped graph with ORT 1.32: 5 of 14; none of
the depthwise convs), running the rest as dequantize -> float conv -> quantize, slower than either
precision alone. An int8 value ``q`` with zero point 0 and the uint8 value ``q + 128`` with zero
point 128 stand for the same real number ``scale * q``, and QuantizeLinear rounds and saturates to
the same grid point in both encodings, so moving every activation Q/DQ pair to uint8 changes no
quantized value. Weights (int8, per channel) and biases (int32) are left as they are (ORT's
u8s8 kernels). The file on disk stays int8 for TensorRT; this is applied when the CPU session is
built (:class:`~runtime.backends.onnxruntime_backend.OnnxRuntimeBackend`).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

UINT8_ZERO_POINT = 128


def activations_to_uint8(model: onnx.ModelProto) -> int:
    """Re-encode ``model``'s int8 activation Q/DQ pairs as uint8 in place; returns how many nodes.

    An activation Q/DQ node is a QuantizeLinear, or a DequantizeLinear whose input is not an
    initializer (a constant DequantizeLinear holds a weight or a bias). Only symmetric ones
    (int8 zero point, all 0) are touched; any other zero point is left alone.
    """
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    shifted: dict[str, str] = {}  # int8 zero-point initializer -> its uint8 twin
    changed_tensors: set[str] = set()
    count = 0
    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        if node.op_type == "DequantizeLinear" and node.input[0] in initializers:
            continue  # a weight or bias
        zero_point = initializers.get(node.input[2])
        if zero_point is None or zero_point.data_type != TensorProto.INT8:
            continue
        values = numpy_helper.to_array(zero_point)
        if np.any(values != 0):
            continue
        if zero_point.name not in shifted:
            twin = numpy_helper.from_array(
                np.full(values.shape, UINT8_ZERO_POINT, dtype=np.uint8), zero_point.name + "_u8"
            )
            graph.initializer.append(twin)
            shifted[zero_point.name] = twin.name
        node.input[2] = shifted[zero_point.name]
        if node.op_type == "QuantizeLinear":
            changed_tensors.add(node.output[0])
        count += 1
    # Shapes and types recorded for the quantized tensors would now be wrong: let ORT infer them.
    for value in [v for v in graph.value_info if v.name in changed_tensors]:
        graph.value_info.remove(value)
    used = {name for node in graph.node for name in node.input}
    for name in shifted:
        if name not in used:
            graph.initializer.remove(initializers[name])
    return count
