"""Re-encoding symmetric int8 activations as uint8 for ONNX Runtime's CPU (runtime.backends.qdq)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from runtime.backends.qdq import activations_to_uint8


def _qdq_conv_model(seed: int = 0) -> onnx.ModelProto:
    """x -> Q/DQ (int8, zp 0) -> Conv (int8 per-channel weight via DQ) -> Q/DQ -> y."""
    rng = np.random.default_rng(seed)
    weight = rng.integers(-127, 128, size=(4, 3, 3, 3), dtype=np.int8)
    inits = [
        numpy_helper.from_array(np.array(0.05, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(0, np.int8), "x_zp"),
        numpy_helper.from_array(weight, "w_q"),
        numpy_helper.from_array(rng.uniform(0.001, 0.01, 4).astype(np.float32), "w_scale"),
        numpy_helper.from_array(np.zeros(4, np.int8), "w_zp"),
        numpy_helper.from_array(np.array(0.2, np.float32), "y_scale"),
        numpy_helper.from_array(np.array(0, np.int8), "y_zp"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["x_q"]),
        helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zp"], ["x_dq"]),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["w"], axis=0),
        helper.make_node("Conv", ["x_dq", "w"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("QuantizeLinear", ["conv", "y_scale", "y_zp"], ["y_q"]),
        helper.make_node("DequantizeLinear", ["y_q", "y_scale", "y_zp"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "qdq_conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    onnx.checker.check_model(model, full_check=True)
    return model


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, ["CPUExecutionProvider"])
    return session.run(["y"], {"x": x})[0]


def test_uint8_reencoding_changes_no_quantized_value():
    model = _qdq_conv_model()
    reencoded = onnx.ModelProto()
    reencoded.CopyFrom(model)
    assert activations_to_uint8(reencoded) == 4  # two Q and two activation DQ; not the weight
    inits = {t.name: numpy_helper.to_array(t) for t in reencoded.graph.initializer}
    assert inits["x_zp_u8"].dtype == np.uint8 and int(inits["x_zp_u8"]) == 128
    assert "x_zp" not in inits and inits["w_zp"].dtype == np.int8  # weights stay int8
    onnx.checker.check_model(reencoded, full_check=True)
    rng = np.random.default_rng(1)
    # inputs spanning the grid, past saturation on both sides and at rounding ties
    x = rng.normal(0, 4, (1, 3, 8, 8)).astype(np.float32)
    x.flat[:6] = [7.0, -7.0, 0.025, -0.025, 0.075, 6.35]
    np.testing.assert_array_equal(_run(reencoded, x), _run(model, x))


def test_asymmetric_or_float_graphs_are_left_alone():
    model = _qdq_conv_model()
    for tensor in model.graph.initializer:  # an asymmetric activation: zero point 3
        if tensor.name == "x_zp":
            tensor.CopyFrom(numpy_helper.from_array(np.array(3, np.int8), "x_zp"))
    before = model.SerializeToString()
    assert activations_to_uint8(model) == 2  # only the output pair (zp 0) moves
    assert {n.input[2] for n in model.graph.node if n.input[0] == "x"} == {"x_zp"}
    assert model.SerializeToString() != before
