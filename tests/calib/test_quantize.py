"""INT8 calibration and Q/DQ quantization on real crops (calib/), and slicing the INT8 graph."""

from __future__ import annotations

import json

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from calib.build import (
    CROPS_FILE,
    SETTINGS_FILE,
    CalibrationRefused,
    build_calibration_set,
    load,
    main,
    save,
)
from calib.quantize import (
    INT8_BACKBONE_ONNX,
    choose_and_quantize,
    compare,
    crop_feed,
    qdq_summary,
)
from export.build_engine import build
from export.build_engine import main as build_main
from runtime.backends.manifest import FEATURE_MAP, FEATURES, ROI_FEATURES
from runtime.backends.onnx_slicing import slice_backbone, slice_roi_pool
from runtime.rtmdnet import RTMDNetConfig
from runtime.sequences import sequence_names
from tests.support import NANOTRACK, SEQUENCES, needs_data

CALIB_COUNT = 24  # 4 crops from each of the 6 train sequences: enough for a fast test
TEST_COUNT = 24
# The 14 least sensitive convs, in the order build_engine measured on outputs/calib/train300
# (entropy ranges; docs/int8.md); named outright so the fixture skips the scan (minutes).
SENSITIVITY_ORDER = [
    f"node_conv2d_{i}" for i in (23, 17, 14, 11, 20, 21, 8, 26, 24, 6, 18, 9, 7, 22)
]
# What build_engine chose at its default bar (top-1 >= 0.95 on 60 held-out crops): one conv.
AT_THE_BAR = SENSITIVITY_ORDER[:1]


def _frames(calib) -> dict[str, set[int]]:
    used: dict[str, set[int]] = {}
    for record in calib.settings["crops"]:
        used.setdefault(record["sequence"], set()).add(record["frame"])
    return used


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    if not NANOTRACK.is_file() or not SEQUENCES.is_dir():
        pytest.skip(f"needs {NANOTRACK} and {SEQUENCES}")
    folder = tmp_path_factory.mktemp("calib")
    save(build_calibration_set(CALIB_COUNT, seed=0, extra=False), folder)
    return folder


@pytest.fixture(scope="module")
def test_crops(calib_dir):
    """Crops cut the same way from train frames the calibration set did not use."""
    return build_calibration_set(TEST_COUNT, seed=1, extra=False, exclude=_frames(load(calib_dir)))


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory, calib_dir):
    """``build_engine.py --precision int8 --calib DIR --prune --keep-conv 64``: the manifest."""
    if not NANOTRACK.is_file():
        pytest.skip(f"needs {NANOTRACK}")
    folder = tmp_path_factory.mktemp("export") / "int8"
    manifest = build(
        "nanotrack", "int8", folder, log=lambda _: None, calib=calib_dir, prune="shipped",
        keep_conv=64, int8_choice={"int8_convs": SENSITIVITY_ORDER},
    )  # fmt: skip
    return folder, manifest


@pytest.fixture(scope="module")
def export_dir(int8_export):
    """FP32 graphs as build_engine writes them plus the INT8 backbone, and its record."""
    folder, manifest = int8_export
    return folder, manifest["int8"]


@needs_data
def test_calibration_set_comes_from_train_frames_only(calib_dir, tmp_path):
    train = set(sequence_names(SEQUENCES, "train"))
    val = set(sequence_names(SEQUENCES, "val"))
    settings = json.loads((calib_dir / SETTINGS_FILE).read_text())
    assert settings["split"] == "train" and settings["count"] == CALIB_COUNT
    assert set(settings["sequences"]) <= train and not set(settings["sequences"]) & val
    assert {r["sequence"] for r in settings["crops"]} <= train
    assert settings["seed"] == 0 and settings["config"]["target_px"] == 107.0
    assert {r["kind"] for r in settings["crops"]} == {"init", "update"}
    calib = load(calib_dir)  # checks the npz against the recorded sha256
    for crop, rois, record in zip(calib.crops, calib.rois, settings["crops"], strict=True):
        assert crop.dtype == np.uint8 and crop.shape[2] == 3
        assert crop.shape[0] % 16 == 0 and crop.shape[1] % 16 == 0  # the tracker's windows
        assert list(crop.shape[1::-1]) == record["size"]
        assert rois.shape == (256, 4)
    # val is refused, by the function and by the command line
    with pytest.raises(CalibrationRefused):
        build_calibration_set(4, split="val")
    assert main(["--out", str(tmp_path / "x"), "--split", "val"]) == 2
    assert not (tmp_path / "x" / CROPS_FILE).exists()


@needs_data
@pytest.mark.slow
def test_int8_graph_is_qdq_with_symmetric_per_channel_int8_weights(export_dir):
    folder, record = export_dir
    model = onnx.load(str(folder / INT8_BACKBONE_ONNX))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    summary = qdq_summary(model)
    assert summary["int8_weights_per_channel"] == summary["int8_weights"]
    assert summary["zero_points_all_zero"]
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:  # activations: int8, zero point 0 (symmetric)
        if node.op_type == "QuantizeLinear":
            zero_point = inits[node.input[2]]
            assert zero_point.dtype == np.int8 and np.all(zero_point == 0)
    # the manifest record: both methods measured, the better one chosen
    assert record["onnx"] == INT8_BACKBONE_ONNX
    assert set(record["candidates"]) == {"entropy", "percentile"}
    assert record["method"] in record["candidates"]
    assert record["int8_convs"] == SENSITIVITY_ORDER and record["selection"] is None
    assert [c["conv"] for c in record["bias_correction"]["convs"]] == [
        n.name for n in model.graph.node if n.name in SENSITIVITY_ORDER
    ]  # every int8 conv's bias corrected, in graph order
    assert summary["int8_weights"] == len(SENSITIVITY_ORDER)
    assert record["calibration"]["split"] == "train"
    assert (folder / "backbone.onnx").is_file()  # the FP32 graph stays next to it


def _parity(folder, int8_graph, test_crops):
    return compare(
        folder / "backbone.onnx", int8_graph, folder / "roi_pool.onnx", test_crops.crops,
        test_crops.rois,
    )  # fmt: skip


@needs_data
@pytest.mark.slow
def test_int8_at_the_default_bar_ranks_candidates_like_fp32_on_95_percent_of_real_crops(
    export_dir, calib_dir, test_crops, tmp_path
):
    """The issue's parity test, on train crops the calibration did not see.

    The graph is the one build_engine makes at its default bar (``--int8-min-top1 0.95``): the
    convs its sensitivity scan found to keep the ranking (one of 27 on this backbone).
    """
    folder, _ = export_dir
    graph = tmp_path / "at_the_bar.int8.onnx"
    record = choose_and_quantize(
        folder / "backbone.onnx", folder / "roi_pool.onnx", calib_dir, graph, ("entropy",),
        log=lambda _: None, int8_convs=AT_THE_BAR,
    )  # fmt: skip
    assert record["qdq"]["int8_weights"] == len(AT_THE_BAR)
    result = _parity(folder, graph, test_crops)
    assert result["crops"] == TEST_COUNT
    assert result["top1_agreement"] >= 0.95, result


@needs_data
@pytest.mark.slow
def test_int8_with_14_convs_still_picks_the_same_target_as_fp32(export_dir, test_crops):
    """14 of 27 convs int8: the top-1 of 256 candidates moves (0.82 measured), the estimate less.

    Regression bounds below what was measured on 60 held-out crops (docs/int8.md).
    """
    folder, _ = export_dir
    result = _parity(folder, folder / INT8_BACKBONE_ONNX, test_crops)
    assert result["crops"] == TEST_COUNT
    assert result["score_correlation_median"] >= 0.98, result
    assert result["estimate_iou_median"] >= 0.85, result
    assert result["estimate_iou_at_least_0.7"] >= 0.8, result
    assert result["feature_map_rel_error_median"] <= 0.2, result


@needs_data
@pytest.mark.slow
def test_build_engine_ties_calibration_quantization_and_pruning_together(int8_export, tmp_path):
    folder, manifest = int8_export
    assert manifest["precision"] == "int8" and manifest["config"]["precision"] == "int8"
    assert manifest["graphs"]["backbone"]["onnx"] == INT8_BACKBONE_ONNX
    assert manifest["parity"]["onnxruntime_cpu_int8"]["crops"] > 0
    # the fixed-width pruned graph is cut from the INT8 one: its refit names include the
    # quantized weights and their per-channel scales
    pruned = manifest["pruned"]
    graph = onnx.load(str(folder / pruned["graphs"]["backbone"])).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    assert {inits[name].shape[0] for name in pruned["refit_weights"]} == {64}
    assert any(inits[name].dtype == np.int8 for name in pruned["refit_weights"])
    # int8 without a calibration set, or --calib without int8: refused before any work
    assert build_main(["--precision", "int8", "--out", str(tmp_path / "a")]) == 2
    assert build_main(["--calib", str(folder), "--out", str(tmp_path / "b")]) == 2
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@needs_data
@pytest.mark.slow
def test_pruned_metartt_tracks_on_the_int8_export(int8_export):
    """MetaRTT + pruning on the INT8 graphs in ONNX Runtime: sliced per video, follows the GT."""
    from runtime.boxes import iou
    from runtime.rtmdnet import RTMDNetTracker
    from runtime.rtmdnet.meta import SHIPPED_CHECKPOINT
    from runtime.rtmdnet.prune import SHIPPED_PRUNE
    from runtime.sequences import load_sequence

    folder, _ = int8_export
    config = RTMDNetConfig(
        meta=str(SHIPPED_CHECKPOINT), prune=str(SHIPPED_PRUNE), backend="onnxruntime",
        export_dir=str(folder), precision="int8",
    )  # fmt: skip
    tracker = RTMDNetTracker(config)
    sequence = load_sequence(SEQUENCES / "Vase")
    frames = [cv2.imread(str(p)) for p in sequence.frame_paths[:10]]
    tracker.init(frames[0], sequence.init_box)
    assert tracker.backend.name == "onnxruntime" and tracker.selection is not None
    boxes = np.array([tracker.update(f)[0] for f in frames[1:]])
    assert float(np.mean(iou(boxes, sequence.ground_truth[1:10]))) >= 0.5


@needs_data
@pytest.mark.slow
def test_sliced_int8_graph_matches_the_unsliced_one_on_kept_channels(export_dir, test_crops):
    folder, _ = export_dir
    model = onnx.load(str(folder / INT8_BACKBONE_ONNX))
    keep = list(range(1, 96, 3))  # 32 of 96
    sliced = slice_backbone(model, FEATURES, keep)
    cpu = ["CPUExecutionProvider"]
    full = ort.InferenceSession(model.SerializeToString(), providers=cpu)
    small = ort.InferenceSession(sliced.SerializeToString(), providers=cpu)
    pool = onnx.load(str(folder / "roi_pool.onnx"))
    pool = slice_roi_pool(pool, FEATURE_MAP, ROI_FEATURES, 32, 9)
    small_pool = ort.InferenceSession(pool.SerializeToString(), providers=cpu)
    for crop, rois in list(zip(test_crops.crops, test_crops.rois, strict=True))[:4]:
        feed = {"crop": crop_feed(crop)}
        (want,) = full.run([FEATURES], feed)
        (got,) = small.run([FEATURES], feed)
        assert got.shape == (1, 32, *want.shape[2:])
        np.testing.assert_allclose(got, want[:, keep], rtol=1e-5, atol=1e-5)
        (feats,) = small_pool.run(
            [ROI_FEATURES],
            {FEATURE_MAP: got, "rois": rois, "batch_indices": np.zeros(len(rois), np.int64)},
        )
        assert feats.shape == (len(rois), 32 * 9)
    # the sliced graph is still Q/DQ: the output conv's int8 weight lost the pruned filters
    summary = qdq_summary(sliced)
    assert summary["int8_weights_per_channel"] == summary["int8_weights"]


@needs_data
@pytest.mark.slow
def test_cpu_session_runs_the_int8_graph_as_uint8_activations(export_dir, test_crops, tmp_path):
    """The backend's uint8 re-encoding keeps every value and lets ORT fuse more QLinearConv."""
    from runtime.backends.qdq import activations_to_uint8

    folder, _ = export_dir
    model = onnx.load(str(folder / INT8_BACKBONE_ONNX))
    uint8 = onnx.ModelProto()
    uint8.CopyFrom(model)
    assert activations_to_uint8(uint8) > 0

    def session(graph, level, saved=None):
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        options.log_severity_level = 3
        if saved:
            options.optimized_model_filepath = str(saved)
        return ort.InferenceSession(graph.SerializeToString(), options, ["CPUExecutionProvider"])

    plain = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    feed = {"crop": crop_feed(test_crops.crops[0])}
    (want,) = session(model, plain).run([FEATURES], feed)
    (got,) = session(uint8, plain).run([FEATURES], feed)
    np.testing.assert_array_equal(got, want)  # the same grid: bit-identical reference ops

    fused = {}
    for name, graph in (("int8", model), ("uint8", uint8)):
        saved = tmp_path / f"{name}.onnx"
        session(graph, ort.GraphOptimizationLevel.ORT_ENABLE_ALL, saved)
        fused[name] = [n.op_type for n in onnx.load(str(saved)).graph.node].count("QLinearConv")
    dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    int8_convs = [n for n in model.graph.node if n.op_type == "Conv" and n.input[1] in dequantized]
    # every int8 conv but the output one (its features stay float for RoIAlign) is fused
    assert fused["uint8"] == len(int8_convs) - 1 > fused["int8"], fused


@needs_data
@pytest.mark.slow
def test_compare_feeds_the_second_graph_the_altered_crops(export_dir, test_crops):
    """bench.int8_parity's yardstick: FP32 against itself, then fed noisy copies of the crops."""
    from bench.int8_parity import noisy_copies

    folder, _ = export_dir
    fp32, pool = folder / "backbone.onnx", folder / "roi_pool.onnx"
    crops, rois = test_crops.crops[:3], test_crops.rois[:3]
    same = compare(fp32, fp32, pool, crops, rois, other_crops=crops)
    assert same["top1_agreement"] == 1.0 and same["feature_map_rel_error_median"] == 0.0
    noisy = noisy_copies(crops, 0.5)
    for n, c in zip(noisy, crops, strict=True):
        assert n.dtype == np.float32 and n.shape == c.shape
        assert float(np.abs(n - c).max()) <= 0.5
    moved = compare(fp32, fp32, pool, crops, rois, other_crops=noisy)
    assert moved["feature_map_rel_error_median"] > 1e-3  # the backbone feels sub-gray-level noise
