"""Choosing the int8 convs: the Q/DQ exclusions and the sensitivity-ordered selection."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from calib.mixed import choose_int8_convs, conv_names, float_nodes
from export.build_engine import main as build_main


def _residual_graph() -> onnx.ModelProto:
    """x -> a -> b, c = x + b, d -> e, f = c + e: two residual Adds over four convs."""

    def conv(name, src, dst):
        return helper.make_node("Conv", [src, "w"], [dst], name=name, pads=[1, 1, 1, 1])

    nodes = [
        conv("a", "x", "ya"),
        conv("b", "ya", "yb"),
        helper.make_node("Add", ["ya", "yb"], ["yc"], name="add1"),
        conv("d", "yc", "yd"),
        conv("e", "yd", "ye"),
        helper.make_node("Add", ["yc", "ye"], ["yf"], name="add2"),
    ]
    graph = helper.make_graph(
        nodes,
        "residual",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info("yf", TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor("w", TensorProto.FLOAT, [2, 2, 3, 3], [0.1] * 36)],
    )
    return helper.make_model(graph)


def test_an_add_is_int8_only_when_both_inputs_are():
    model = _residual_graph()
    assert conv_names(model) == ["a", "b", "d", "e"]
    assert float_nodes(model, ["a", "b", "d", "e"]) == []
    assert float_nodes(model, ["a", "b"]) == ["d", "e", "add2"]
    # add2 reads add1 (int8) and e (int8): int8 only while add1 is
    assert float_nodes(model, ["a", "b", "e"]) == ["d"]
    assert float_nodes(model, ["b", "d", "e"]) == ["a", "add1", "add2"]
    with pytest.raises(ValueError, match="not Conv nodes"):
        float_nodes(model, ["add1"])


def _fakes(error: dict[str, float]):
    """quantize/score doubles: a graph's error is the sum of its convs' errors; top-1 falls
    with it. Records every set quantized."""
    calls: list[list[str]] = []
    current: dict[str, list[str]] = {}

    def quantize(convs, path: Path):
        calls.append(list(convs))
        current["convs"] = list(convs)
        return {}

    def score(path: Path):
        total = sum(error[c] for c in current["convs"])
        return {
            "feature_map_rel_error_median": total,
            "top1_agreement": 1.0 - total,
            "estimate_iou_median": 1.0,
        }

    return quantize, score, calls


def test_convs_go_int8_least_sensitive_first_while_the_ranking_holds():
    error = {"c0": 0.30, "c1": 0.01, "c2": 0.02, "c3": 0.05}
    quantize, score, calls = _fakes(error)
    result = choose_int8_convs(quantize, score, list(error), min_top1=0.95, log=lambda _: None)
    assert calls[:4] == [["c0"], ["c1"], ["c2"], ["c3"]]  # one at a time first
    assert result["order"] == ["c1", "c2", "c3", "c0"]
    # c1 (0.99), c1+c2 (0.97) hold; + c3 (0.92) does not, and the scan stops there
    assert result["int8_convs"] == ["c1", "c2"]
    assert [p["int8_convs"] for p in result["prefixes"]] == [1, 2, 3]
    assert result["prefixes"][-1]["top1_agreement"] == pytest.approx(0.92)


def test_a_count_takes_that_many_whatever_the_ranking_and_an_impossible_bar_takes_none():
    error = {"c0": 0.30, "c1": 0.01, "c2": 0.02}
    quantize, score, _ = _fakes(error)
    taken = choose_int8_convs(quantize, score, list(error), 0.95, count=3, log=lambda _: None)
    assert taken["int8_convs"] == ["c1", "c2", "c0"] and len(taken["prefixes"]) == 1
    none = choose_int8_convs(quantize, score, list(error), 0.999, log=lambda _: None)
    assert none["int8_convs"] == []
    with pytest.raises(ValueError, match="count"):
        choose_int8_convs(quantize, score, list(error), 0.95, count=4)


def test_int8_choice_flags_are_refused_without_int8(tmp_path):
    assert build_main(["--int8-count", "3", "--out", str(tmp_path / "a")]) == 2
    assert (
        build_main(
            [
                "--precision",
                "int8",
                "--calib",
                str(tmp_path),
                "--int8-count",
                "3",
                "--int8-min-top1",
                "0.9",
                "--out",
                str(tmp_path / "b"),
            ]
        )
        == 2
    )
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
