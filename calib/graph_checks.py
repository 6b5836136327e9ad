"""The ONNX graph checks that export and calibration share.

Every graph either writes (``export/``: the FP32 graphs, the pruned ones; ``calib/``: the INT8
Q/DQ graphs) must pass ``onnx.checker`` (full check), use only operators the TensorRT 10 ONNX
parser supports (:data:`TENSORRT10_ONNX_OPS`) and hold the ops it is meant to
(:func:`check_graph`); a failure raises :class:`ExportError`.

They live in ``calib/`` because it is the lower of the two folders: ``export/`` imports
``calib/`` (to quantize what it exported), never the other way round. Not in ``runtime/``: the
runtime loads graphs that were checked when written (it checks their hashes,
:mod:`runtime.backends.manifest`) and never needs the TensorRT parser's operator list.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import onnx

# Operators the TensorRT 10 ONNX parser supports: every row marked "Y" in the operator support
# matrix of onnx/onnx-tensorrt, docs/operators.md at tag 10.1-GA (commit 96e7811, June 2024;
# "TensorRT 10.0 supports operators in the inclusive range of opset 9 to opset 20").
# https://github.com/onnx/onnx-tensorrt/blob/10.1-GA/docs/operators.md
# Per-operator restrictions of that table (types, initializer-only inputs) are not modelled here.
TENSORRT10_ONNX_OPS = frozenset(
    """
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization
    Cast CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh
    CumSum DeformConv DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand
    EyeLike Flatten Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool
    GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization GRU
    HardSigmoid HardSwish Hardmax Identity If ImageScaler InstanceNormalization IsInf IsNaN
    LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization
    LpPool MatMul Max MaxPool Mean MeanVarianceNormalization Min Mish Mod Mul Neg
    NonMaxSuppression NonZero Not OneHot Or Pad ParametricSoftplus Pow PRelu QuantizeLinear
    RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1
    ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
    ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign Round ScaledTanh Scan
    Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice
    Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu
    Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
    """.split()  # noqa: SIM905 (reads like the table it was copied from)
)


class ExportError(RuntimeError):
    """The export produced a graph that must not be used (checker, operators or parity)."""


class UnsupportedOpsError(ExportError):
    pass


# --- operators --------------------------------------------------------------------------------
def _nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for attr in node.attribute:  # If / Loop / Scan bodies
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from _nodes(sub)


def graph_ops(model: onnx.ModelProto) -> list[str]:
    """Sorted op types of a model (subgraphs included); ops outside ONNX's domain as ``dom::Op``.

    Functions the exporter leaves in the model are not inlined here: an op that names one counts
    as that (custom-domain) op, which TensorRT does not know.
    """
    ops = set()
    for node in _nodes(model.graph):
        domain = node.domain or ""
        ops.add(node.op_type if domain in ("", "ai.onnx") else f"{domain}::{node.op_type}")
    return sorted(ops)


def unsupported_ops(
    model: onnx.ModelProto, supported: Iterable[str] = TENSORRT10_ONNX_OPS
) -> list[str]:
    """The ops of ``model`` that are not in ``supported`` (default: the TensorRT 10 parser)."""
    allowed = set(supported)
    return [op for op in graph_ops(model) if op not in allowed]


def check_graph(path: str | os.PathLike[str], required_ops: Iterable[str] = ()) -> onnx.ModelProto:
    """``onnx.checker`` (full, with shape inference), TensorRT 10 operators, required ops."""
    model = onnx.load(str(path))
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as err:
        raise ExportError(f"{Path(path).name} fails onnx.checker: {err}") from err
    bad = unsupported_ops(model)
    if bad:
        raise UnsupportedOpsError(
            f"{Path(path).name} uses operators the TensorRT 10 ONNX parser does not support: "
            f"{', '.join(bad)}"
        )
    missing = [op for op in required_ops if op not in graph_ops(model)]
    if missing:
        raise ExportError(f"{Path(path).name} lacks the op(s) {', '.join(missing)}")
    return model
