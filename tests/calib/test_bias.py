"""Empirical bias correction of int8 convs (calib.bias) on a small Q/DQ graph."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from calib.bias import correct_biases

RNG = np.random.default_rng(0)
WEIGHT = RNG.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32)
BIAS = RNG.normal(0, 0.1, 4).astype(np.float32)
SCALE = np.abs(WEIGHT).reshape(4, -1).max(axis=1) / 7  # coarse: 4-bit-like steps, a clear shift


def _model(int8: bool, int32_bias: bool = False) -> onnx.ModelProto:
    """x -> Conv(w, b) -> y; the int8 version reads w (and optionally b) through DQ nodes."""
    inits, nodes = [], []
    weight, bias = "w", "b"
    if int8:
        q = np.clip(np.round(WEIGHT / SCALE[:, None, None, None]), -127, 127).astype(np.int8)
        inits += [
            numpy_helper.from_array(q, "w_q"),
            numpy_helper.from_array(SCALE.astype(np.float32), "w_s"),
            numpy_helper.from_array(np.zeros(4, np.int8), "w_z"),
        ]
        nodes.append(helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["w"], axis=0))
    else:
        inits.append(numpy_helper.from_array(WEIGHT, "w"))
    if int32_bias:
        step = (SCALE * 0.01).astype(np.float32)
        inits += [
            numpy_helper.from_array(np.round(BIAS / step).astype(np.int32), "b_q"),
            numpy_helper.from_array(step, "b_s"),
            numpy_helper.from_array(np.zeros(4, np.int32), "b_z"),
        ]
        nodes.append(helper.make_node("DequantizeLinear", ["b_q", "b_s", "b_z"], ["b"], axis=0))
    else:
        inits.append(numpy_helper.from_array(BIAS, "b"))
    nodes.append(helper.make_node("Conv", ["x", weight, bias], ["y"], name="conv", pads=[1] * 4))
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("crop", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        inits,
    )
    graph.node.insert(0, helper.make_node("Identity", ["crop"], ["x"]))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])


def _session(graph: bytes):
    return ort.InferenceSession(graph, providers=["CPUExecutionProvider"])


def _channel_means(model, crops):
    session = _session(model.SerializeToString())
    return np.mean([session.run(["y"], {"crop": c})[0].mean(axis=(0, 2, 3)) for c in crops], 0)


def test_bias_correction_removes_the_mean_shift_of_rounded_weights():
    # positive inputs with a non-zero mean (as after ReLU / HardSwish): rounding shifts the mean
    crops = [RNG.uniform(0, 2, (1, 3, 8, 8)).astype(np.float32) for _ in range(6)]
    want = _channel_means(_model(False), crops)
    for int32_bias in (False, True):
        model = _model(True, int32_bias)
        before = np.abs(_channel_means(model, crops) - want)
        record = correct_biases(_model(False), model, crops, _session, lambda c: c)
        after = np.abs(_channel_means(model, crops) - want)
        assert before.max() > 1e-2  # there was a shift to remove
        # exact up to float rounding, or half an int32 bias step once re-rounded
        tolerance = 0.5 * SCALE * 0.01 + 1e-5 if int32_bias else np.full(4, 1e-5)
        assert np.all(after <= tolerance), (after, tolerance)
        assert record[0]["conv"] == "conv" and record[0]["max_abs_shift"] > 1e-2
        onnx.checker.check_model(model, full_check=True)
