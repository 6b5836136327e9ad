"""INT8 of the nanotrack search graph: calibration pairs (calib.pairs), Q/DQ (calib.siamese).

Real data, small counts: 12 calibration pairs (2 held out) and ``--int8-count 2``, so the whole
file runs in a couple of minutes on a 2-core CPU.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from calib import pairs
from calib.build import build_calibration_set
from calib.build import load as load_rtmdnet_set
from calib.build import main as calib_main
from calib.build import save as save_rtmdnet_set
from calib.siamese import (
    compare_search,
    decide,
    dynamic_weight_ops,
    gate_convs,
    quantize_search_graph,
)
from calib.sources import CalibrationRefused, WrongTracker
from export.build_engine import main as build_main
from runtime.backends.manifest import MANIFEST_FILE
from runtime.backends.siamese import (
    KERNELS,
    SEARCH_ONNX,
    OnnxRuntimeSiameseBackend,
    open_siamese_export,
)
from runtime.nanotrack.config import NanoTrackConfig
from runtime.nanotrack.tracker import map_side
from runtime.sequences import sequence_names
from tests.support import DATA, NANOTRACK, SEQUENCES, WEIGHTS, needs_data

PAIRS = 12  # 10 calibrate, 2 are held out (every 5th)
INT8_COUNT = 2


@pytest.fixture(scope="module")
def pair_dir(tmp_path_factory):
    if not NANOTRACK.is_file() or not SEQUENCES.is_dir():
        pytest.skip(f"needs {NANOTRACK} and {SEQUENCES}")
    folder = tmp_path_factory.mktemp("pairs")
    assert calib_main(["--tracker", "nanotrack", "--out", str(folder), "--count", str(PAIRS)]) == 0
    return folder


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory, pair_dir):
    """``build_engine.py --tracker nanotrack --precision int8 --calib DIR --int8-count 2``."""
    folder = tmp_path_factory.mktemp("export") / "nanotrack-int8"
    args = ["--tracker", "nanotrack", "--precision", "int8", "--calib", str(pair_dir)]
    assert build_main([*args, "--int8-count", str(INT8_COUNT), "--out", str(folder)]) == 0
    return folder, json.loads((folder / MANIFEST_FILE).read_text())


@needs_data
def test_calibration_pairs_come_from_train_sequences_only(pair_dir, tmp_path):
    settings = json.loads((pair_dir / "settings.json").read_text())
    assert settings["tracker"] == "nanotrack" and settings["split"] == "train"
    val = set(sequence_names(SEQUENCES, "val"))
    allowed = set(sequence_names(SEQUENCES, "train")) | set(
        sequence_names(DATA / "train_extra") if (DATA / "train_extra").is_dir() else []
    )
    assert set(settings["sequences"]) <= allowed and not set(settings["sequences"]) & val
    used = {r["sequence"] for r in [*settings["pairs"], *settings["templates"]]}
    assert used <= set(settings["sequences"])
    pair_set = pairs.load(pair_dir)  # checks pairs.npz against the recorded sha256
    assert len(pair_set) == settings["count"] == PAIRS
    for template in pair_set.templates:
        assert template.shape == (127, 127, 3) and template.dtype == np.uint8
    for search, record in zip(pair_set.searches, settings["pairs"], strict=True):
        assert search.shape == (record["side"], record["side"], 3) and search.dtype == np.uint8
        assert record["frame"] > 0  # a later frame than the template's
        assert settings["templates"][record["template"]]["sequence"] == record["sequence"]
    # val is refused, by the function and by the command line, before anything is written
    with pytest.raises(CalibrationRefused):
        pairs.build_pair_set(2, split="val")
    out = tmp_path / "val"
    assert calib_main(["--tracker", "nanotrack", "--out", str(out), "--split", "val"]) == 2
    assert not out.exists()


@needs_data
def test_each_quantizer_refuses_the_other_trackers_calibration_set(pair_dir, tmp_path):
    rtmdnet_dir = tmp_path / "rtmdnet"
    save_rtmdnet_set(build_calibration_set(2, extra=False), rtmdnet_dir)
    assert json.loads((rtmdnet_dir / "settings.json").read_text())["tracker"] == "rtmdnet"
    with pytest.raises(WrongTracker, match="rtmdnet calibration set"):
        quantize_search_graph(tmp_path, None, rtmdnet_dir, log=lambda _: None)  # type: ignore[arg-type]
    with pytest.raises(WrongTracker, match="nanotrack calibration set"):
        load_rtmdnet_set(pair_dir)  # what calib.quantize reads its crops with


@needs_data
@pytest.mark.slow
def test_int8_count_makes_exactly_that_many_convs_int8_and_never_a_dynamic_weight_op(int8_export):
    folder, manifest = int8_export
    record = manifest["int8"]
    assert manifest["precision"] == "int8"
    assert len(record["int8_convs"]) == INT8_COUNT
    assert record["selection"]["count"] == INT8_COUNT
    model = onnx.load(str(folder / SEARCH_ONNX))
    dequantized = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    int8 = [n.name for n in model.graph.node if n.op_type == "Conv" and n.input[1] in dequantized]
    assert sorted(int8) == sorted(record["int8_convs"])
    # the correlations with the template's kernels stay float, and so do the attention gates
    dynamic = record["float_by_design"]["dynamic_weight_ops"]
    assert sorted(dynamic) == sorted(dynamic_weight_ops(model))
    assert {n.op_type for n in model.graph.node if n.name in dynamic} == {"Conv", "MatMul"}
    assert len(dynamic) == 4 and len(record["float_by_design"]["gate_convs"]) == 4
    assert sorted(gate_convs(model)) == sorted(record["float_by_design"]["gate_convs"])
    assert not set(record["int8_convs"]) & (set(dynamic) | set(gate_convs(model)))
    for node in model.graph.node:
        if node.name in dynamic:
            assert not set(node.input) & dequantized, node.name


@needs_data
@pytest.mark.slow
def test_the_record_says_what_was_chosen_on_what(int8_export, pair_dir):
    folder, manifest = int8_export
    record = manifest["int8"]
    for field in (
        "method", "candidates", "selection", "int8_convs", "convs_total", "held_out",
        "held_out_uncorrected", "bias_correction", "calibration", "selection_plot",
        "cpu_backend_check",
    ):  # fmt: skip
        assert field in record, field
    assert set(record["candidates"]) == {"entropy", "percentile"}
    assert record["method"] in record["candidates"]
    assert record["convs_total"] == 69 and record["convs_candidates"] == 63
    assert len(record["selection"]["sensitivity"]) == record["convs_candidates"]
    for scores in (record["held_out"], record["held_out_uncorrected"]):
        assert scores["pairs"] == PAIRS // 5
        assert 0.0 <= scores["top1_agreement"] <= 1.0 and scores["estimate_iou_median"] >= 0.0
        assert scores["score_rel_error_median"] >= 0.0
    settings = json.loads((pair_dir / "settings.json").read_text())
    assert record["calibration"]["pairs_sha256"] == settings["pairs_sha256"]
    assert record["calibration"]["tracker"] == "nanotrack"
    assert (folder / record["selection_plot"]).is_file()
    assert record["sha256"] == manifest["graphs"]["search"]["sha256"]
    assert record["fp32_sha256"] != record["sha256"]
    json.dumps(record)  # JSON-serialisable (the manifest holds it)


@needs_data
@pytest.mark.slow
def test_the_int8_search_graph_keeps_its_names_and_shapes_and_runs_on_the_cpu_backend(int8_export):
    folder, _ = int8_export
    model = onnx.load(str(folder / SEARCH_ONNX))
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["crop", *KERNELS]
    assert [o.name for o in model.graph.output] == ["scores", "boxes"]
    crop_dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in crop_dims[:2]] == [1, 3]
    assert all(d.dim_param for d in crop_dims[2:])  # the search side stays dynamic
    template_out = onnx.load(str(folder / "template.onnx"))
    assert not any(n.op_type == "QuantizeLinear" for n in template_out.graph.node)  # float32
    # No FP32 features graph beside an INT8 search: the target-layer trackers use the cache.
    assert set(json.loads((folder / MANIFEST_FILE).read_text())["graphs"]) == {"template", "search"}
    backend = OnnxRuntimeSiameseBackend(open_siamese_export(folder, WEIGHTS, "int8"), threads=1)
    rng = np.random.default_rng(0)
    kernels = backend.template(torch.from_numpy(rng.uniform(0, 255, (1, 3, 127, 127))).float())
    for side in (255, 383):
        crop = torch.from_numpy(rng.uniform(0, 255, (1, 3, side, side))).float()
        scores, boxes = backend.search(crop, kernels)
        n = map_side(side)
        assert scores.shape == (1, n, n) and boxes.shape == (1, 4, n, n)
        assert torch.isfinite(scores).all() and torch.isfinite(boxes).all()
        assert float(scores.min()) >= 0.0 and float(scores.max()) <= 1.0


def _outputs(peak: int, side: int = 15) -> tuple[np.ndarray, np.ndarray]:
    scores = np.full((1, side, side), 0.05, np.float32)
    scores.reshape(-1)[peak] = 0.9
    return scores, np.full((1, 4, side, side), 20.0, np.float32)


def test_agreement_is_the_cell_the_tracker_picks_and_the_box_there():
    config = NanoTrackConfig()
    centre = 7 * 15 + 7
    same = compare_search([_outputs(centre)], [_outputs(centre)], config)
    assert same["top1_agreement"] == same["argmax_agreement"] == 1.0
    assert same["estimate_iou_median"] == pytest.approx(1.0)
    assert same["score_rel_error_median"] == same["output_rel_error_median"] == 0.0
    moved = compare_search([_outputs(centre)], [_outputs(centre + 2)], config)
    assert moved["top1_agreement"] == 0.0 and moved["estimate_iou_median"] < 0.5
    # the cosine window decides between a far corner peak and a near-centre one, as the tracker
    corner = _outputs(0)[0]
    corner.reshape(-1)[centre] = 0.85
    assert decide(corner, _outputs(0)[1], config).cell == centre
    assert decide(corner, _outputs(0)[1], config).raw_cell == 0
    box = decide(*_outputs(centre), config).box  # 20 px to each edge from the centre cell
    np.testing.assert_allclose(box, [-20.0, -20.0, 40.0, 40.0])
