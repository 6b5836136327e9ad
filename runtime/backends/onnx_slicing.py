"""Channel pruning on exported graphs: cut output channels out of ``backbone.onnx`` in memory.

MetaRTT predicts its masks per video, so the ONNX Runtime backend cannot ship one pruned file: at
a video's first frame it slices the two graphs of the export folder and builds sessions from the
bytes (:meth:`OnnxRuntimeBackend.keep_channels`). The backbone's output Conv loses the filters
(weights and biases) of the pruned channels; the RoI pooling graph takes the narrower feature map
and its final Reshape gives ``kept * roi * roi`` features. Every other node is untouched.
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


def slice_backbone(model: onnx.ModelProto, output: str, keep: Sequence[int]) -> onnx.ModelProto:
    """A copy of ``model`` whose output ``output`` (N, C, h, w) has only channels ``keep``.

    The node producing ``output`` must be a plain Conv (group 1) with constant weights: the
    export makes the backbone end that way (its ``output_conv``).
    """
    sliced, conv = _copy_and_producer(model, output, "Conv")
    graph = sliced.graph
    group = next((a.i for a in conv.attribute if a.name == "group"), 1)
    if group != 1:
        raise ValueError(f"the output Conv has group={group}; cannot slice its channels")
    index = np.asarray(keep, dtype=np.int64)
    tensors = _initializers(graph)
    for name in conv.input[1:]:  # weight (C, ...) and bias (C,)
        if name not in tensors:
            raise ValueError(f"the output Conv's {name!r} is not a constant; cannot slice it")
        array = numpy_helper.to_array(tensors[name])
        tensors[name].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(array[index]), name))
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
