"""OTB one-pass metrics on hand-made boxes whose answers are known exactly."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.evaluation.metrics import (
    CENTER_THRESHOLDS,
    IOU_THRESHOLDS,
    NORM_THRESHOLDS,
    center_errors,
    evaluate_sequence,
    mean_curves,
    normalized_center_errors,
    overlaps,
)


def _gt(n: int = 30, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 200, size=(n, 2))
    wh = rng.uniform(10, 60, size=(n, 2))
    return np.hstack([xy, wh])


def test_thresholds_are_the_benchmarks() -> None:
    assert len(IOU_THRESHOLDS) == 21 and IOU_THRESHOLDS[1] == pytest.approx(0.05)
    assert (
        CENTER_THRESHOLDS[0] == 0 and CENTER_THRESHOLDS[-1] == 50 and len(CENTER_THRESHOLDS) == 51
    )
    assert len(NORM_THRESHOLDS) == 51 and NORM_THRESHOLDS[-1] == 0.5


def test_ground_truth_against_itself_scores_20_of_21() -> None:
    gt = _gt()
    result = evaluate_sequence(gt, gt, "self")
    # IoU = 1 passes every threshold except t = 1 (IoU > 1 never holds).
    assert result.auc == pytest.approx(20 / 21, abs=1e-9)
    assert result.auc == pytest.approx(0.952, abs=5e-4)
    assert result.precision == 1.0
    assert result.norm_precision == 1.0
    assert result.frames == len(gt)
    np.testing.assert_array_equal(result.success_curve[:-1], 1.0)
    assert result.success_curve[-1] == 0.0


def test_half_width_shift_gives_iou_one_third() -> None:
    gt = np.tile([[100.0, 50.0, 10.0, 10.0]], (8, 1))
    pred = gt + [5.0, 0.0, 0.0, 0.0]  # overlap 5x10 = 50, union 150
    np.testing.assert_allclose(overlaps(pred, gt), 1 / 3)
    result = evaluate_sequence(pred, gt)
    # IoU 1/3 > t for t in 0, 0.05, ..., 0.30 (7 thresholds), not for 0.35 and up.
    np.testing.assert_array_equal(result.success_curve, (np.arange(21) <= 6).astype(float))
    assert result.auc == pytest.approx(7 / 21, abs=1e-12)
    assert result.precision == 1.0  # 5 px centre error
    # Normalized error 5/10 = 0.5: passes only the last threshold (<= 0.5).
    assert result.norm_precision_curve[-1] == 1.0 and result.norm_precision_curve[-2] == 0.0
    assert result.norm_precision == pytest.approx(1 / 51, abs=1e-12)


def test_thirty_pixel_error_fails_precision() -> None:
    gt = np.tile([[100.0, 100.0, 20.0, 20.0]], (10, 1))
    pred = gt + [30.0, 0.0, 0.0, 0.0]  # no overlap, centre error exactly 30 px
    np.testing.assert_allclose(center_errors(pred, gt), 30.0)
    result = evaluate_sequence(pred, gt)
    assert result.precision == 0.0
    assert result.precision_curve[29] == 0.0 and result.precision_curve[30] == 1.0
    np.testing.assert_array_equal(result.precision_curve, (CENTER_THRESHOLDS >= 30).astype(float))
    assert result.auc == 0.0  # IoU 0 is not > 0
    np.testing.assert_allclose(normalized_center_errors(pred, gt), 1.5)  # 30 / 20
    assert result.norm_precision == 0.0


def test_half_the_frames_right() -> None:
    gt = np.tile([[10.0, 10.0, 40.0, 40.0]], (10, 1))
    pred = gt.copy()
    pred[5:, 0] += 100.0
    result = evaluate_sequence(pred, gt)
    assert result.precision == 0.5
    assert result.auc == pytest.approx(0.5 * 20 / 21)


def test_normalized_error_uses_each_axis_size() -> None:
    gt = np.array([[0.0, 0.0, 100.0, 10.0]])
    pred = np.array([[10.0, 1.0, 100.0, 10.0]])  # dx/w = 0.1, dy/h = 0.1
    np.testing.assert_allclose(normalized_center_errors(pred, gt), np.hypot(0.1, 0.1))


def test_nan_ground_truth_rows_are_skipped() -> None:
    gt = _gt(12)
    gt[[3, 7, 8]] = np.nan
    pred = _gt(12).copy()
    pred[[3, 7, 8]] = [999.0, 999.0, 5.0, 5.0]  # garbage on the skipped frames must not matter
    result = evaluate_sequence(pred, gt)
    assert result.frames == 9
    assert result.auc == pytest.approx(20 / 21, abs=1e-9)
    assert result.precision == 1.0
    assert len(overlaps(pred, gt)) == 9


def test_nan_predictions_count_as_failures() -> None:
    gt = _gt(10)
    pred = gt.copy()
    pred[:4] = np.nan
    np.testing.assert_array_equal(overlaps(pred, gt)[:4], 0.0)
    assert np.all(np.isinf(center_errors(pred, gt)[:4]))
    assert np.all(np.isinf(normalized_center_errors(pred, gt)[:4]))
    result = evaluate_sequence(pred, gt)
    assert result.frames == 10
    assert result.precision == pytest.approx(0.6)
    assert result.auc == pytest.approx(0.6 * 20 / 21)
    assert result.norm_precision == pytest.approx(0.6)


def test_all_ground_truth_nan_gives_zero_curves() -> None:
    gt = np.full((5, 4), np.nan)
    result = evaluate_sequence(gt.copy(), gt)
    assert result.frames == 0 and result.auc == 0.0 and result.precision == 0.0


def test_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="predicted boxes"):
        evaluate_sequence(_gt(5), _gt(6))


def test_mean_curves_average_the_scores() -> None:
    gt = np.tile([[100.0, 100.0, 20.0, 20.0]], (10, 1))
    perfect = evaluate_sequence(gt, gt)
    lost = evaluate_sequence(gt + [30.0, 0.0, 0.0, 0.0], gt)
    mean = mean_curves([perfect, lost])
    assert mean.auc == pytest.approx((perfect.auc + lost.auc) / 2)
    assert mean.precision_at_20 == pytest.approx(0.5)
    assert mean.norm_precision_auc == pytest.approx(0.5)
