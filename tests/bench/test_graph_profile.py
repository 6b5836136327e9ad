"""bench.graph_profile: multiply-accumulates counted from a graph's shapes, and the CLI's
refusals (timings are the benchmark's, never asserted here)."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from bench.graph_profile import cpu_flags, macs, main


def _graph():
    """x (1,4,S,S) -> depthwise 3x3 conv (4 groups, pad 1) -> 1x1 conv to 8 -> flatten-ish
    MatMul (1, 8*S*S) x (8*S*S, 5) -> Gemm with transB (5 -> 3)."""
    dw = numpy_helper.from_array(np.zeros((4, 1, 3, 3), np.float32), "dw")
    pw = numpy_helper.from_array(np.zeros((8, 4, 1, 1), np.float32), "pw")
    shape = numpy_helper.from_array(np.array([1, -1], np.int64), "shape")
    fc = numpy_helper.from_array(np.zeros((8 * 6 * 6, 5), np.float32), "fc")
    gw = numpy_helper.from_array(np.zeros((3, 5), np.float32), "gw")
    nodes = [
        helper.make_node("Conv", ["x", "dw"], ["a"], group=4, pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["a", "pw"], ["b"]),
        helper.make_node("Reshape", ["b", "shape"], ["c"]),
        helper.make_node("MatMul", ["c", "fc"], ["d"]),
        helper.make_node("Gemm", ["d", "gw"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, "S", "S"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [dw, pw, shape, fc, gw],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_macs_count_convolutions_and_products_at_the_given_size():
    got = macs(_graph(), {"x": (1, 4, 6, 6)})
    assert got["Conv"] == 4 * 36 * 9 + 8 * 36 * 4  # depthwise: 1 input channel per group
    assert got["MatMul"] == 8 * 36 * 5
    assert got["Gemm"] == 5 * 3


def test_cpu_flags_are_a_subset_of_the_known_ones():
    assert set(cpu_flags()) <= {
        "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8",
    }  # fmt: skip


def test_cli_refuses_bad_counts_in_one_line(tmp_path, capsys):
    assert main(["--json", str(tmp_path / "p.json"), "--threads", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --threads and --runs must be positive") and "\n" not in err
    assert not (tmp_path / "p.json").exists()


def test_cli_refuses_a_side_v2_cannot_take_in_one_line(tmp_path, capsys):
    assert main(["--json", str(tmp_path / "p.json"), "--sides", "255,287"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --sides must lie between 127 and 255"
    assert not (tmp_path / "p.json").exists()


def test_cli_refuses_an_unknown_engine_in_one_line(tmp_path, capsys):
    assert main(["--json", str(tmp_path / "p.json"), "--engines", "onnxruntime,tvm"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --engines takes onnxruntime, onnxruntime-int8, ")
    assert err.endswith(", not tvm") and "\n" not in err
