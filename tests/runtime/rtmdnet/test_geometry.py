"""The RT-MDNet crop geometry (runtime.rtmdnet.geometry): the window covers what it must, the
tracker cuts its windows with it, and calibration and export cut their crops with one function."""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import cv2
import numpy as np
import pytest

import calib.build
import export.onnx_export
from runtime.paths import PROJECT_ROOT
from runtime.rtmdnet import RTMDNetConfig, RTMDNetTracker, geometry
from runtime.rtmdnet.geometry import (
    BBREG_SPEC,
    NEG_INIT,
    candidate_spec,
    covering_half_extent,
    neg_update_spec,
    search_window,
    tracker_crop,
    update_half_extent,
    update_reach,
)
from runtime.rtmdnet.tracker import init_examples
from runtime.sampling import draw, draw_filtered
from runtime.sequences import load_sequence
from tests.support import SEQUENCES, needs_data

SEQUENCE = SEQUENCES / "Vase"
FAST = {"n_neg_init": 500, "n_bbreg": 200, "maxiter_init": 5, "init_jitter_scales": (1.0, 1.1)}


def _inside(window, boxes: np.ndarray, padding: float) -> bool:
    rois = window.rois(boxes, padding)
    eps = 1e-6
    return bool(
        (rois[:, :2] >= -eps).all()
        and (rois[:, 2] <= window.width + eps).all()
        and (rois[:, 3] <= window.height + eps).all()
    )


@pytest.mark.parametrize("reach", [1.5, 0.6])  # the update negatives' reach
@pytest.mark.parametrize("max_side", [4000, 320])  # 320: the scale drops, nothing falls out
def test_window_covers_every_padded_box(max_side, reach):
    config = RTMDNetConfig(max_crop_side=max_side, neg_update_reach=reach)
    rng = np.random.default_rng(0)
    for _ in range(50):
        target = np.r_[rng.uniform(0, 500, 2), rng.uniform(8, 150, 2)]
        boxes = draw(NEG_INIT, target, 300, (640, 480), rng)
        half = covering_half_extent(target, boxes, config.roi_padding)
        for jitter in (1.0, 1.1**-2, 1.1**2):
            window = search_window(target, half, config, 16, jitter)
            assert window.width % 16 == 0 and window.height % 16 == 0
            # sides: max_side at most, then rounded up to the stride (float rounding can add one)
            assert max(window.width, window.height) <= max_side + 16
            assert _inside(window, boxes, config.roi_padding)
        # The per-frame window also holds every update negative (the samples' full reach).
        window = search_window(target, update_half_extent(target, boxes, config), config, 16)
        assert _inside(window, boxes, config.roi_padding)
        # not clipped by a frame:
        negatives = draw(neg_update_spec(config), target, 300, (10**5, 10**5), rng)
        assert np.all(update_half_extent(target, boxes, config) >= update_reach(target, config))
        assert _inside(window, negatives, config.roi_padding)


def test_covering_half_extent_is_tight():
    box = np.array([100.0, 100.0, 20.0, 10.0])  # centre (110, 105)
    boxes = np.array([[90.0, 100.0, 10.0, 10.0], [120.0, 95.0, 20.0, 30.0]])
    # padding 2: each box grows by half its side on every edge
    half = covering_half_extent(box, boxes, 2.0)
    np.testing.assert_allclose(half, [max(110 - 85, 150 - 110), max(105 - 80, 140 - 105)])


def test_tracker_crop_kinds():
    config = RTMDNetConfig(n_neg_init=100)
    frame = np.full((240, 320, 3), 7, np.uint8)
    target = np.array([100.0, 80.0, 40.0, 30.0])
    update = tracker_crop(frame, target, "update", config, np.random.default_rng(0), (1, 2, 3), 16)
    assert update.candidates.shape == (config.n_samples, 4) and len(update.negatives) == 0
    assert update.crop.shape == (update.window.height, update.window.width, 3)
    assert update.rois(update.candidates).dtype == np.float32
    init = tracker_crop(frame, target, "init", config, np.random.default_rng(0), (1, 2, 3), 16, 1.1)
    assert init.negatives.shape == (100, 4)
    assert _inside(
        init.window, np.concatenate([init.candidates, init.negatives]), config.roi_padding
    )
    only = tracker_crop(
        frame, target, "init", config, np.random.default_rng(0), (0, 0, 0), 16,
        n_candidates=0, n_negatives=50,
    )  # fmt: skip
    # no candidates drawn: the negatives are the first draw of the generator
    np.testing.assert_array_equal(
        only.negatives, draw(NEG_INIT, target, 50, (320, 240), np.random.default_rng(0))
    )
    with pytest.raises(ValueError, match="kind"):
        tracker_crop(frame, target, "other", config, np.random.default_rng(0), (0, 0, 0), 16)


@needs_data
def test_tracker_windows_are_the_public_functions():
    """Every window the tracker cuts (init: one per jitter scale; update) is the one the public
    geometry functions give for the samples it drew."""
    config = RTMDNetConfig(**FAST)
    tracker = RTMDNetTracker(config)
    windows = []
    feature_map = tracker._feature_map

    def spy(frame, window):
        windows.append(window)
        return feature_map(frame, window)

    tracker._feature_map = spy
    sequence = load_sequence(SEQUENCE)
    frames = [cv2.imread(str(p)) for p in sequence.frame_paths[:2]]
    box = sequence.ground_truth[0].astype(np.float64)
    frame_wh = (frames[0].shape[1], frames[0].shape[0])
    stride = tracker.extractor.stride

    tracker.init(frames[0], box)
    rng = np.random.default_rng(config.seed)  # what init drew, drawn again
    pos, neg = init_examples(box, frame_wh, config, rng)
    reg = draw_filtered(
        BBREG_SPEC, box, config.n_bbreg, frame_wh, rng, config.overlap_bbreg, config.scale_bbreg
    )
    half = covering_half_extent(box, np.concatenate([pos, neg, reg]), config.roi_padding)
    want = [search_window(box, half, config, stride, j) for j in config.init_jitter_scales]
    assert windows == want

    windows.clear()
    rng = copy.deepcopy(tracker._rng)
    target, trans_f = tracker._target.copy(), tracker._trans_f
    tracker.update(frames[1])
    samples = draw(candidate_spec(config, trans_f), target, config.n_samples, frame_wh, rng)
    assert windows == [
        search_window(target, update_half_extent(target, samples, config), config, stride)
    ]


def _calls(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            names.add(func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", ""))
    return names


def test_calib_and_export_share_one_crop_function():
    assert calib.build.tracker_crop is geometry.tracker_crop
    assert export.onnx_export.tracker_crop is geometry.tracker_crop
    # Neither repeats the window arithmetic (nor reaches into the tracker for it).
    own = {"window_around", "search_window", "covering_half_extent", "update_reach", "cut"}
    own |= {"_covering_half_extent", "_window"}
    for module in (calib.build, export.onnx_export):
        path = Path(module.__file__)
        assert not (_calls(path) & own), path
        assert "tracker_crop" in _calls(path), path
    train = PROJECT_ROOT / "train" / "rtmdnet" / "episodes.py"
    assert "RTMDNetTracker._covering_half_extent(" not in train.read_text()


def test_make_crop_is_tracker_crop():
    config = RTMDNetConfig(n_neg_init=200)
    frame = np.random.default_rng(1).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    target = np.array([120.0, 60.0, 30.0, 50.0])
    for kind, jitter in (("update", 1.0), ("init", 1.1)):
        crop, rois, record = calib.build.make_crop(
            frame, target, kind, config, np.random.default_rng(4), (9.0, 9.0, 9.0), 16, jitter
        )
        made = tracker_crop(
            frame, target, kind, config, np.random.default_rng(4), (9.0, 9.0, 9.0), 16, jitter
        )
        np.testing.assert_array_equal(crop, made.crop)
        np.testing.assert_array_equal(rois, made.rois(made.candidates))
        assert record["window"]["width"] == made.window.width
