"""Channel pruning on exported graphs: cut output channels out of ``backbone.onnx`` in memory.

MetaRTT predicts its masks per video, so the ONNX Runtime backend cannot ship one pruned file: at
a video's first frame it slices the two graphs of the export folder and builds sessions from the
bytes (:meth:`OnnxRuntimeBackend.keep_channels`). The backbone's output Conv loses the filters
(weights and biases) of the pruned channels; the RoI pooling graph takes the narrower feature map
and its final Reshape gives ``kept * roi * roi`` features. Every other node is untouched.

INT8 graphs (``calib.quantize``: Q/DQ, explicit quantization) slice the same way: the output
Conv's weight and bias then come from DequantizeLinear nodes over int8 / int32 initializers with
one scale (and zero point) per output channel along axis 0; those initializers lose the pruned
channels too. A per-tensor QuantizeLinear -> DequantizeLinear pair after the Conv is kept as it is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import numpy_helper


def _initializers(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    return {t.name: t for t in graph.initializer}


def _copy_and_producer(
    model: onnx.ModelProto, output: str, op_type: str
) -> tuple[onnx.ModelProto, onnx.NodeProto]:
    """A copy of ``model`` and, in it, the one ``op_type`` node that makes ``output``."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    producers = [n for n in copy.graph.node if output in n.output]
    if len(producers) != 1 or producers[0].op_type != op_type:
        raise ValueError(f"{output!r} is not made by one {op_type} node; cannot slice it")
    return copy, producers[0]


def _set_dim(value: onnx.ValueInfoProto, axis: int, size: int) -> None:
    dim = value.type.tensor_type.shape.dim[axis]
    dim.ClearField("dim_param")
    dim.dim_value = size


def _take(tensor: onnx.TensorProto, index: np.ndarray) -> None:
    """Keep entries ``index`` of ``tensor``'s first axis (in place)."""
    array = numpy_helper.to_array(tensor)
    tensor.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(array[index]), tensor.name))


def _slice_dequantize(
    node: onnx.NodeProto, tensors: dict[str, onnx.TensorProto], index: np.ndarray, kept: int
) -> None:
    """Slice a constant DequantizeLinear (int8 weight or int32 bias) to output channels ``index``.

    Its quantized input loses the channels along axis 0; per-channel scales and zero points
    (1-D, one per channel, ``axis`` 0) lose them too; per-tensor ones stay.
    """
    names = list(node.input)
    if any(name and name not in tensors for name in names):
        raise ValueError(f"{node.name or node.op_type}: a non-constant DequantizeLinear input")
    quantized = numpy_helper.to_array(tensors[names[0]])
    channels = quantized.shape[0]
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
    for position, name in enumerate(names):
        if not name:
            continue
        array = numpy_helper.to_array(tensors[name])
        if position == 0:
            _take(tensors[name], index)
        elif array.size > 1:  # per-channel parameters
            if array.ndim != 1 or len(array) != channels or axis % max(quantized.ndim, 1) != 0:
                raise ValueError(
                    f"{node.name}: per-channel parameters along axis {axis}, not the output "
                    f"channels (axis 0); cannot slice them"
                )
            _take(tensors[name], index)
    if numpy_helper.to_array(tensors[names[0]]).shape[0] != kept:
        raise ValueError(f"{node.name}: slicing left the wrong width")


def output_qdq_pair(
    graph: onnx.GraphProto, output: str
) -> tuple[onnx.NodeProto, onnx.NodeProto] | None:
    """The QuantizeLinear -> DequantizeLinear pair that makes ``output``, if one does."""
    producers = {out: node for node in graph.node for out in node.output}
    dq = producers.get(output)
    if dq is None or dq.op_type != "DequantizeLinear":
        return None
    q = producers.get(dq.input[0])
    if q is None or q.op_type != "QuantizeLinear":
        return None
    return q, dq


def _through_output_qdq(graph: onnx.GraphProto, output: str) -> str:
    """The tensor a per-tensor QuantizeLinear -> DequantizeLinear pair at ``output`` reads.

    ``output`` itself when no such pair ends there. A pair with per-channel parameters cannot be
    left unsliced and is refused.
    """
    pair = output_qdq_pair(graph, output)
    if pair is None:
        return output
    q, dq = pair
    tensors = _initializers(graph)
    for node in (q, dq):
        for name in node.input[1:]:
            if name and (name not in tensors or numpy_helper.to_array(tensors[name]).size > 1):
                raise ValueError(f"{node.name}: not a per-tensor constant Q/DQ; cannot slice it")
    return q.input[0]


def slice_backbone(model: onnx.ModelProto, output: str, keep: Sequence[int]) -> onnx.ModelProto:
    """A copy of ``model`` whose output ``output`` (N, C, h, w) has only channels ``keep``.

    The node producing ``output`` must be a plain Conv (group 1) with constant weights: the
    export makes the backbone end that way (its ``output_conv``). In an INT8 graph the weights
    may come through DequantizeLinear nodes, and a per-tensor Q/DQ pair may follow the Conv.
    """
    conv_output = _through_output_qdq(model.graph, output)
    sliced, conv = _copy_and_producer(model, conv_output, "Conv")
    graph = sliced.graph
    group = next((a.i for a in conv.attribute if a.name == "group"), 1)
    if group != 1:
        raise ValueError(f"the output Conv has group={group}; cannot slice its channels")
    index = np.asarray(keep, dtype=np.int64)
    tensors = _initializers(graph)
    producers = {out: node for node in graph.node for out in node.output}
    for name in conv.input[1:]:  # weight (C, ...) and bias (C,)
        if name in tensors:
            _take(tensors[name], index)
        elif name in producers and producers[name].op_type == "DequantizeLinear":
            _slice_dequantize(producers[name], tensors, index, len(keep))
        else:
            raise ValueError(f"the output Conv's {name!r} is not a constant; cannot slice it")
    for value in graph.output:
        if value.name == output:
            _set_dim(value, 1, len(index))
    del graph.value_info[:]  # recorded shapes may hold the old width; ORT infers them again
    return sliced


def slice_roi_pool(
    model: onnx.ModelProto, feature_input: str, features_output: str, channels: int, cells: int
) -> onnx.ModelProto:
    """A copy of the pooling graph for a ``channels``-channel feature map.

    Its last node is the Reshape to ``(N, C * cells)``; only that shape constant and the declared
    shapes change (RoiAlign works on any channel count).
    """
    sliced, reshape = _copy_and_producer(model, features_output, "Reshape")
    graph = sliced.graph
    shape_name = reshape.input[1]
    tensors = _initializers(graph)
    constants = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
    new_shape = numpy_helper.from_array(np.array([-1, channels * cells], np.int64), shape_name)
    if shape_name in tensors:
        tensors[shape_name].CopyFrom(new_shape)
    elif shape_name in constants:
        value = next(a for a in constants[shape_name].attribute if a.name == "value")
        value.t.CopyFrom(new_shape)
    else:
        raise ValueError(f"the Reshape's shape {shape_name!r} is not a constant")
    for value in graph.input:
        if value.name == feature_input:
            _set_dim(value, 1, channels)
    for value in graph.output:
        if value.name == features_output:
            _set_dim(value, 1, channels * cells)
    del graph.value_info[:]  # intermediate shapes still say the old width; ORT infers them
    return sliced
