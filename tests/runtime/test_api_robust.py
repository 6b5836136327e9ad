"""What the API refuses or reports (issue 19), fast and on the CPU:

- export folders are integrity-checked: a changed, truncated or missing graph and a broken
  manifest are one ManifestMismatchError naming the file (and one CLI ``error:`` line, no
  fallback to another tracker); a folder from before graph hashes loads with one warning;
- every tracker (ours and OpenCV's) checks frames and boxes at ``init``/``update`` with the
  CLI's messages: NaN, zero-size and outside boxes, update before init, grey frames (taken),
  float frames (refused);
- a corrupt ``--meta``/``--prune`` file and an option a tracker does not take are one clear line;
- calibrated confidence (:mod:`runtime.confidence`, :mod:`bench.confidence`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from bench.trackers import make_tracker
from runtime.backends import ManifestMismatchError, OnnxRuntimeBackend
from runtime.backends.manifest import (
    MANIFEST_FILE,
    ExportFolderNotFound,
    UnverifiedExportWarning,
    checkpoint_record,
)
from runtime.boxes import validate_init_box
from runtime.confidence import (
    CALIBRATION_FILE,
    Calibration,
    LostState,
    ScoreCalibrator,
    fit_platt,
    load_calibrations,
)
from runtime.hashing import sha256_file
from runtime.opencv_peers import PEER_NAMES, nano_model_paths
from runtime.paths import PROJECT_ROOT
from runtime.registry import TRACKER_NAMES, create_tracker, preset_specs, tracker_family
from runtime.tracker_api import ReportsLost, check_frame
from tests.support import DATA, NANOTRACK, needs_weights


# --- export folders ------------------------------------------------------------------------------
def _identity_graph(path: Path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    weight = helper.make_tensor("w", TensorProto.FLOAT, [1, 4], np.arange(4.0).tolist())
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", [x], [y], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))


def _folder(root: Path, hashed: bool = True) -> Path:
    """A small export folder whose manifest passes every check but the one a test breaks."""
    folder = root / "export"
    folder.mkdir()
    graphs = {}
    for name in ("backbone", "roi_pool"):
        _identity_graph(folder / f"{name}.onnx")
        graphs[name] = {"onnx": f"{name}.onnx"}
        if hashed:
            graphs[name]["sha256"] = sha256_file(folder / f"{name}.onnx")
    manifest = {
        "format": 1,
        "backbone": "nanotrack",
        "checkpoint": checkpoint_record("nanotrack", DATA / "weights"),
        "config": {"backbone": "nanotrack", "roi_size": 3, "roi_sampling_ratio": 2},
        "precision": "fp32",
        "graphs": graphs,
        "pruned": None,
        "engines": None,
    }
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    return folder


def _flip_weight(path: Path) -> None:
    """One weight of the graph becomes -1.5e37: the file still parses."""
    data = bytearray(path.read_bytes())
    raw = np.arange(4.0, dtype=np.float32).tobytes()
    at = bytes(data).find(raw)
    assert at >= 0
    data[at + 4 : at + 8] = np.float32(-1.5e37).tobytes()
    path.write_bytes(bytes(data))
    onnx.load(str(path))  # still a valid graph


@needs_weights
def test_a_flipped_weight_byte_is_refused(tmp_path):
    folder = _folder(tmp_path)
    OnnxRuntimeBackend(folder)  # intact: loads
    _flip_weight(folder / "backbone.onnx")
    with pytest.raises(ManifestMismatchError, match=r"backbone\.onnx does not match the sha256"):
        OnnxRuntimeBackend(folder)


@needs_weights
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_truncated_or_corrupt_graph_is_one_error_not_invalid_protobuf(tmp_path, damage):
    folder = _folder(tmp_path)
    graph = folder / "roi_pool.onnx"
    data = graph.read_bytes()
    graph.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\xff" * 64)
    with pytest.raises(ManifestMismatchError) as error:
        OnnxRuntimeBackend(folder)
    message = str(error.value)
    assert "\n" not in message and str(graph) in message and "re-export it" in message


@needs_weights
def test_a_deleted_graph_and_a_broken_manifest_name_the_file(tmp_path):
    folder = _folder(tmp_path)
    (folder / "roi_pool.onnx").unlink()
    with pytest.raises(ManifestMismatchError, match=r"roi_pool\.onnx \(roi_pool graph\) is miss"):
        OnnxRuntimeBackend(folder)
    manifest = folder / MANIFEST_FILE
    manifest.write_text(manifest.read_text()[:-20])
    with pytest.raises(ManifestMismatchError, match=rf"{manifest}.*not valid JSON.*re-export"):
        OnnxRuntimeBackend(folder)
    manifest.unlink()
    with pytest.raises(ExportFolderNotFound, match="manifest.json") as error:
        OnnxRuntimeBackend(folder)
    assert isinstance(error.value, FileNotFoundError)  # still what it was before


@needs_weights
def test_a_folder_exported_before_graph_hashes_loads_with_one_warning(tmp_path):
    folder = _folder(tmp_path, hashed=False)
    with pytest.warns(UnverifiedExportWarning, match="before graph hashes were recorded"):
        OnnxRuntimeBackend(folder)
    # Damage such a folder's hash cannot catch is still one line, saying why it got this far.
    (folder / "backbone.onnx").write_bytes(b"\x08\x01garbage")
    with pytest.raises(ManifestMismatchError, match="predates graph hashes.*re-export it"):
        OnnxRuntimeBackend(folder)


def test_tensorrt_engines_are_checked_against_their_recorded_hashes(tmp_path):
    """The TensorRT backend's engine check (runs without TensorRT: files and hashes only)."""
    from runtime.backends.manifest import check_engine_files

    (tmp_path / "backbone.fp32.engine").write_bytes(b"plan")
    engines = {"backbone": "backbone.fp32.engine", "precision": "fp32"}
    manifest = {"backbone": "nanotrack", "engines": engines}
    check_engine_files(manifest, tmp_path)  # no hash recorded (older export): not checked
    engines["sha256"] = {"backbone": sha256_file(tmp_path / "backbone.fp32.engine")}
    check_engine_files(manifest, tmp_path)
    (tmp_path / "backbone.fp32.engine").write_bytes(b"plan!")
    with pytest.raises(ManifestMismatchError, match="backbone.fp32.engine does not match"):
        check_engine_files(manifest, tmp_path)
    (tmp_path / "backbone.fp32.engine").write_bytes(b"plan")
    engines["roi_pool"] = "roi_pool.fp32.engine"
    with pytest.raises(ManifestMismatchError, match=r"roi_pool.fp32.engine \(roi_pool engine\)"):
        check_engine_files(manifest, tmp_path)


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    from runtime.track import main

    code = main(argv)
    return code, capsys.readouterr().err


def _error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    from runtime.io.demo_clip import synthesize_clip

    path, _ = synthesize_clip(tmp_path_factory.mktemp("clip") / "walk.mp4", 6, (160, 120), seed=1)
    return path


@needs_weights
@pytest.mark.parametrize("damage", ["deleted", "flipped", "json"])
def test_cli_reports_a_damaged_export_folder_without_falling_back(tmp_path, clip, capsys, damage):
    from runtime.rtmdnet.meta import SHIPPED_CHECKPOINT

    folder = _folder(tmp_path)
    if damage == "deleted":
        (folder / "roi_pool.onnx").unlink()
    elif damage == "flipped":
        _flip_weight(folder / "backbone.onnx")
    else:
        (folder / MANIFEST_FILE).write_text("{")
    out = tmp_path / "boxes.txt"
    argv = [str(clip), "--init", "21,31,40,30", "--meta", str(SHIPPED_CHECKPOINT), "--quiet"]
    argv += ["--backend", "onnxruntime", "--export-dir", str(folder), "--boxes", str(out)]
    code, err = _cli(argv, capsys)
    line = _error_line(err)
    assert code == 2 and "vggm" not in err and "falling back" not in err
    assert str(folder) in line and "re-export" in line
    assert not out.exists()


# --- every tracker at the interface -------------------------------------------------------------
# Small first-frame work (the checks under test come before it); a smaller crop for VGG-M.
FAST_RTMDNET = {
    "maxiter_init": 5,
    "maxiter_update": 2,
    "n_neg_init": 500,
    "n_bbreg": 200,
    "init_jitter_scales": (1.0,),
    "target_px": 48.0,
    "prune_fit_steps": 5,
}
# Every registered name, every preset (a spec over one) and the OpenCV peers.
ALL_TRACKERS = [*TRACKER_NAMES, *preset_specs(), *PEER_NAMES]
FRAME_SIZE = (160, 120)
BOX = np.array([50.0, 40.0, 40.0, 30.0])


def _options(name: str) -> dict:
    if name in PEER_NAMES:
        return {}
    family = tracker_family(name)
    if family == "nanotrack":
        return {"backend": "torch"}  # no graph cache export in a unit test
    if family == "mlt":
        return {}
    return dict(FAST_RTMDNET)


def _build(name: str):
    try:
        if name == "cv2-nano":
            nano_model_paths(DATA)
        return make_tracker(name, **_options(name))
    except FileNotFoundError as exc:
        pytest.skip(f"{name}: weights missing ({exc})")


def _frame(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frame = (rng.random((FRAME_SIZE[1], FRAME_SIZE[0], 3)) * 80).astype(np.uint8)
    x, y, w, h = BOX.astype(int)
    frame[y : y + h, x : x + w] = (200, 60, 30)
    return frame


UNUSABLE_BOXES = {
    "nan": [np.nan, 40.0, 40.0, 30.0],
    "zero-size": [50.0, 40.0, 0.0, 30.0],
    "outside": [500.0, 40.0, 40.0, 30.0],
}


@pytest.mark.parametrize("name", ALL_TRACKERS)
def test_update_before_init_is_a_clear_runtime_error(name):
    tracker = _build(name)
    with pytest.raises(RuntimeError, match=r"update\(\) called before init\(\)"):
        tracker.update(_frame())


@pytest.mark.parametrize("name", ALL_TRACKERS)
def test_init_refuses_unusable_boxes_with_the_cli_message(name):
    tracker = _build(name)
    frame = _frame()
    for box in UNUSABLE_BOXES.values():
        with pytest.raises(ValueError) as want:
            validate_init_box(box, frame.shape)
        with pytest.raises(ValueError) as got:
            tracker.init(frame, np.array(box))
        assert str(got.value) == str(want.value)
    with pytest.raises(RuntimeError, match="before init"):  # a refused init starts nothing
        tracker.update(frame)


@pytest.mark.parametrize("name", ALL_TRACKERS)
def test_grey_frames_are_taken_and_float_frames_refused(name):
    tracker = _build(name)
    frame = _frame()
    grey = frame.mean(axis=2).astype(np.uint8)
    with pytest.raises(ValueError, match="pass uint8 0..255"):
        tracker.init(frame.astype(np.float32) / 255.0, BOX)
    tracker.init(grey, BOX)  # H x W
    for image in (grey, grey[:, :, None], np.dstack([frame, np.full(grey.shape, 255, np.uint8)])):
        box, score = tracker.update(image)
        assert np.asarray(box).shape == (4,) and np.isfinite(np.asarray(box)).all()
        assert np.isfinite(score)
    with pytest.raises(ValueError, match="float32 with values in .*pass uint8 0..255"):
        tracker.update(frame.astype(np.float32) / 255.0)
    with pytest.raises(ValueError, match="empty"):
        tracker.update(np.zeros((0, 10, 3), np.uint8))


def test_check_frame_converts_what_video_decoding_converts():
    frame = _frame()
    grey = frame[:, :, 0].copy()
    np.testing.assert_array_equal(check_frame(grey), np.dstack([grey] * 3))
    np.testing.assert_array_equal(check_frame(grey[:, :, None]), np.dstack([grey] * 3))
    bgra = np.dstack([frame, np.zeros(grey.shape, np.uint8)])
    np.testing.assert_array_equal(check_frame(bgra), frame)
    assert check_frame(frame) is frame  # already right: no copy
    for bad in (frame.astype(np.float64), frame.astype(np.uint16), frame[:, :, :2], [[1, 2]]):
        with pytest.raises(ValueError):
            check_frame(bad)


# --- checkpoints and options --------------------------------------------------------------------
@needs_weights
@pytest.mark.parametrize("flag", ["--meta", "--prune"])
def test_a_corrupt_checkpoint_is_one_line_without_unsafe_advice(tmp_path, clip, capsys, flag):
    bad = tmp_path / "bad.pt"
    torch.save({"format": "metartt-head/1", "hook": print}, bad)  # a global weights_only refuses
    code, err = _cli([str(clip), "--init", "21,31,40,30", flag, str(bad), "--quiet"], capsys)
    line = _error_line(err)
    assert code == 2 and "weights_only" not in err and "not one of this project's" in line


@needs_weights
@pytest.mark.parametrize(
    ("name", "option", "flag"),
    [("mlt", "meta", "--meta"), ("mlt", "prune", "--prune"), ("nanotrack", "meta", "--meta")],
)
def test_an_option_a_tracker_does_not_take_names_the_flag(name, option, flag):
    with pytest.raises(ValueError) as error:
        create_tracker(name, **{option: "x.pt"})
    assert str(error.value).startswith(f"{name} does not take {flag} (it is MetaRTT's: --tracker")
    with pytest.raises(ValueError, match="rtmdnet has no setting 'colour'"):
        create_tracker("rtmdnet", colour="red")


@needs_weights
def test_cli_says_which_tracker_takes_meta(clip, capsys):
    argv = [str(clip), "--init", "21,31,40,30", "--tracker", "mlt", "--meta", "x.pt", "--quiet"]
    code, err = _cli(argv, capsys)
    assert code == 2 and _error_line(err) == (
        "error: mlt does not take --meta (it is MetaRTT's: --tracker metartt)"
    )


# --- confidence ----------------------------------------------------------------------------------
def test_platt_fit_recovers_the_logistic_it_was_drawn_from():
    rng = np.random.default_rng(0)
    x = rng.normal(size=20000)
    y = rng.random(x.size) < 1.0 / (1.0 + np.exp(-(1.5 * x - 0.5)))
    a, b = fit_platt(x, y)
    assert abs(a - 1.5) < 0.1 and abs(b + 0.5) < 0.1
    p = 1.0 / (1.0 + np.exp(-(2.0 * np.log(0.3 / 0.7) + 1.0)))
    assert Calibration("t", 2.0, 1.0, "logit")(0.3) == pytest.approx(p)
    assert Calibration("t", 1.0, 0.0)(float("nan")) == 0.0
    with pytest.raises(ValueError, match="IoU > 0 and frames with IoU = 0"):
        fit_platt(x, np.ones(x.size, bool))


def test_lost_state_needs_a_streak_and_recovers_at_the_higher_threshold():
    state = LostState(lost_below=0.5, recover_at=0.7, patience=3)
    seen = [state.update(c) for c in (0.4, 0.4, 0.9, 0.4, 0.4, 0.4, 0.6, 0.4, 0.7, 0.1)]
    assert seen == [False, False, False, False, False, True, True, True, False, False]
    assert state.lost_frames == 3
    with pytest.raises(ValueError):
        LostState(lost_below=0.8, recover_at=0.6)


def test_the_shipped_calibration_was_fitted_on_train_only():
    from runtime.sequences import sequence_names

    table = load_calibrations()
    assert {"metartt", "mlt", "nanotrack"} <= set(table)
    fitted = json.loads(CALIBRATION_FILE.read_text())["fitted_on"]
    used = set(fitted["sequences"]) | set(fitted["train_extra"])
    if (DATA / "splits.json").is_file():
        assert not used & set(sequence_names(DATA / "sequences", "val"))
        assert set(fitted["sequences"]) == set(sequence_names(DATA / "sequences", "train"))
    for calibration in table.values():
        assert calibration.a > 0  # a higher raw score means a likelier overlap
    pyproject = (PROJECT_ROOT / "pyproject.toml").read_text()  # shipped with the package
    runtime_data = pyproject.split("[tool.setuptools.package-data]")[1].split("\n")[1]
    assert runtime_data.startswith("runtime = [") and '"checkpoints/*.json"' in runtime_data


def test_score_calibrator_falls_back_to_the_family_and_warns_once_without_any(tmp_path):
    table = {"format": "tracker-confidence/1", "trackers": {"mlt": {"a": 2.0, "b": -1.0}}}
    path = tmp_path / "c.json"
    path.write_text(json.dumps(table))
    scorer = ScoreCalibrator("mlt-variant", path=path)
    assert scorer.calibration.tracker == "mlt" and scorer(1.0) == pytest.approx(0.7310586)
    with pytest.warns(UserWarning, match="not calibrated"):
        raw = ScoreCalibrator("unknown-tracker", "raw", path=path)
    assert not raw.calibration.calibrated and raw(0.0) == 0.5


@needs_weights
def test_mlt_returns_the_calibrated_confidence_and_reports_lost(clip, tmp_path, capsys):
    tracker = create_tracker("mlt")
    assert isinstance(tracker, ReportsLost) and not tracker.lost
    frame = _frame()
    tracker.init(frame, BOX)
    _, score = tracker.update(frame)
    assert score == pytest.approx(tracker.scorer.calibration(tracker.raw_score))
    assert tracker.scorer.calibration.calibrated and 0.0 <= score <= 1.0
    black = np.zeros_like(frame)
    scores = [tracker.update(black)[1] for _ in range(4)]
    assert max(scores) < score  # nothing to track: lower than on the target
    # The CLI shows MLT's lost flag: the scores side file has a 0/1 lost column.
    boxes = tmp_path / "boxes.txt"
    argv = [str(clip), "--init", "21,31,40,30", "--tracker", "mlt", "--boxes", str(boxes)]
    code, _ = _cli([*argv, "--quiet"], capsys)
    assert code == 0
    rows = (tmp_path / "boxes_scores.csv").read_text().splitlines()
    assert rows[0] == "frame,score,lost" and all(r.split(",")[2] in "01" for r in rows[1:])


def test_confidence_tool_fits_on_train_and_measures_val(tmp_path):
    """bench.confidence end to end on a tiny data folder with a scripted tracker."""
    from bench import confidence

    data = tmp_path / "data"
    names = {"train": ["t1", "t2"], "val": ["v1"]}
    for name in [*names["train"], *names["val"], "x1"]:
        folder = data / ("train_extra" if name == "x1" else "sequences") / name
        (folder / "img").mkdir(parents=True)
        for i in range(12):
            (folder / "img" / f"{i + 1:04d}.jpg").write_bytes(b"")
        (folder / "groundtruth_rect.txt").write_text("11,11,20,20\n" * 12)
    (data / "splits.json").write_text(json.dumps(names))

    class Scripted:
        """Right on even frames (raw 2), off target on odd ones (raw -2), a little noise."""

        name = "scripted"

        def init(self, frame, box):
            self.box, self.i = np.asarray(box, float), 0
            self.rng = np.random.default_rng(0)

        def update(self, frame):
            self.i += 1
            off = self.i % 2 == 1
            score = (-2.0 if off else 2.0) + self.rng.normal() * 0.5
            return self.box + (100.0 if off else 0.0) * np.array([1, 0, 0, 0]), score

    seen: list[str] = []

    def decode(sequence):
        seen.append(sequence.name)
        return [np.zeros((60, 60, 3), np.uint8)] * len(sequence)

    out, measured = tmp_path / "confidence.json", tmp_path / "val.json"
    factory = lambda _name: Scripted()  # noqa: E731
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(confidence, "decode_frames", decode)
        argv = ["--fit", "--trackers", "scripted", "--out", str(out), "--data", str(data)]
        assert confidence.main([*argv, "--quiet"], factory=factory) == 0
        assert sorted(seen) == ["t1", "t2", "x1"]  # train and train_extra, never val
        table = load_calibrations(out)
        assert table["scripted"].a > 0 and table["scripted"].feature == "raw"
        argv = ["--split", "val", "--trackers", "scripted", "--calibration", str(out)]
        argv += ["--json", str(measured), "--data", str(data), "--quiet"]
        assert confidence.main(argv, factory=factory) == 0
    result = json.loads(measured.read_text())["trackers"]["scripted"]
    assert result["roc_auc"] > 0.99 and len(result["reliability"]) == 5
    assert result["frames"] == 11 and abs(result["positive_rate"] - 5 / 11) < 1e-9


def test_roc_auc_counts_ties_half():
    from bench.confidence import reliability, roc_auc

    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1], bool)) == 0.75
    assert roc_auc(np.array([0.5, 0.5]), np.array([0, 1], bool)) == 0.5
    table = reliability(np.array([0.1, 0.15, 0.9, 1.0]), np.array([0, 1, 1, 1], bool))
    assert [r["frames"] for r in table] == [2, 0, 0, 0, 2]
    assert table[0]["observed"] == 0.5 and table[4]["mean_predicted"] == pytest.approx(0.95)


def test_shutil_copy_of_an_intact_folder_still_loads(tmp_path):
    """Hashes are of the files, not of where they lie: a moved folder loads."""
    if not NANOTRACK.is_file():
        pytest.skip(f"needs {NANOTRACK}")
    folder = _folder(tmp_path)
    moved = tmp_path / "moved"
    shutil.copytree(folder, moved)
    OnnxRuntimeBackend(moved)
