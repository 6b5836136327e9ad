"""OTB one-pass evaluation metrics: success, precision and (LaSOT) normalized precision.

Boxes are the project's 0-based ``x, y, w, h`` floats (see :mod:`runtime.boxes`); both the
prediction and the ground truth must use the same convention, so the 1-based offset of OTB files
never matters here (IoU and centre distances are translation invariant).

Frames whose ground truth has a NaN (target not visible) are skipped: they count neither as a
success nor as a failure, and ``SequenceResult.frames`` (also ``scored_frames``) excludes them.
The first frame is the given box, always right: a sequence whose only scored frame is the first
(``scored_after_first == 0``, e.g. every later ground-truth row NaN) gets a "perfect" score that
says nothing about the tracker; :attr:`SequenceResult.informative` is False for it and callers
that average sequences should leave it out (``bench.ope`` does, and says so). A prediction with a
NaN on a frame that *is* evaluated counts as a failure: IoU 0 and an infinite centre error.

Definitions (OTB-2013 toolkit, LaSOT toolkit):

* **Success curve**: for each of the 21 IoU thresholds ``t`` in ``0, 0.05, ..., 1`` the fraction of
  frames with ``IoU > t`` (strictly greater, as the OTB toolkit). The **AUC** (success score) is
  the mean of that curve. Because ``IoU > 1`` never holds, a perfect tracker (ground truth scored
  against itself) gets ``20/21 = 0.952``, not 1.0; every OTB-style number shares this ceiling.
* **Precision curve**: for each centre-error threshold ``0, 1, ..., 50`` px the fraction of frames
  whose centre error is ``<= t``. The **precision** score is the curve's value at 20 px.
* **Normalized precision** (LaSOT, Fan et al. 2019): the centre error is normalized by the
  ground-truth box size per axis, ``sqrt((dx / w_gt)^2 + (dy / h_gt)^2)``; the curve is the fraction
  of frames with normalized error ``<= t`` for 51 thresholds ``t`` in ``0, 0.01, ..., 0.5``, and
  the reported value is the area under that curve over ``[0, 0.5]`` (the mean of the curve, as
  the LaSOT toolkit ranks trackers). Note that some toolkits (pytracking) instead report the
  curve's value at ``t = 0.2``; that number is :attr:`SequenceResult.norm_precision_at_020`.
* **Success rate** (GOT-10k's SR_0.5): the success curve at ``t = 0.5``, the fraction of frames
  with ``IoU > 0.5`` (:attr:`MeanCurves.success_rate` averages it over sequences).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from runtime.boxes import centers, iou

IOU_THRESHOLDS: np.ndarray = np.linspace(0.0, 1.0, 21)
CENTER_THRESHOLDS: np.ndarray = np.arange(0, 51, dtype=np.float64)  # pixels
NORM_THRESHOLDS: np.ndarray = np.linspace(0.0, 0.5, 51)  # fraction of the ground-truth size
PRECISION_AT_PX = 20.0
NORM_PRECISION_AT = 0.2
SUCCESS_RATE_AT = 0.5  # IoU threshold of the success rate


@dataclass(frozen=True)
class SequenceResult:
    """Curves and scalar scores of one tracker on one sequence."""

    name: str
    frames: int  # evaluated frames: those whose ground truth is not NaN
    success_curve: np.ndarray  # over IOU_THRESHOLDS
    precision_curve: np.ndarray  # over CENTER_THRESHOLDS
    norm_precision_curve: np.ndarray  # over NORM_THRESHOLDS
    # Scored frames after the first (the first is the given box). None: not known (built by hand).
    scored_after_first: int | None = None

    @property
    def scored_frames(self) -> int:
        """How many frames the scores are computed over (ground truth not NaN; frame 1 included)."""
        return self.frames

    @property
    def informative(self) -> bool:
        """False when no frame after the first was scored: the score is frame 1's given box."""
        return self.scored_after_first is None or self.scored_after_first > 0

    @property
    def auc(self) -> float:
        """Success score: mean of the success curve (ground truth vs itself: 20/21)."""
        return float(np.mean(self.success_curve))

    @property
    def precision(self) -> float:
        """Fraction of frames with centre error <= 20 px."""
        return _value_at(self.precision_curve, CENTER_THRESHOLDS, PRECISION_AT_PX)

    @property
    def norm_precision(self) -> float:
        """LaSOT normalized precision: area under the normalized precision curve on [0, 0.5]."""
        return float(np.mean(self.norm_precision_curve))

    @property
    def norm_precision_at_020(self) -> float:
        """The normalized precision curve at 0.2 (pytracking's variant), for reference."""
        return _value_at(self.norm_precision_curve, NORM_THRESHOLDS, NORM_PRECISION_AT)


def _value_at(curve: np.ndarray, thresholds: np.ndarray, at: float) -> float:
    index = int(np.argmin(np.abs(thresholds - at)))
    return float(curve[index])


def _check_shapes(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 4)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    if pred.shape != gt.shape:
        raise ValueError(f"{len(pred)} predicted boxes but {len(gt)} ground-truth boxes")
    return pred, gt


def valid_frames(gt: np.ndarray) -> np.ndarray:
    """Boolean mask of frames whose ground truth is fully known (no NaN)."""
    return ~np.isnan(np.asarray(gt, dtype=np.float64)).any(axis=-1)


def overlaps(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU per evaluated frame (NaN ground-truth frames dropped; NaN predictions give 0)."""
    pred, gt = _check_shapes(pred, gt)
    keep = valid_frames(gt)
    values = np.nan_to_num(iou(pred[keep], gt[keep]), nan=0.0)
    # With float boxes, (x + w) - x can round above w, giving an IoU a few ULPs over 1 that
    # would pass the t = 1 threshold; IoU cannot exceed 1, so the ceiling stays 20/21.
    return np.clip(values, 0.0, 1.0)


def center_errors(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Centre distance in pixels per evaluated frame (NaN predictions give +inf)."""
    pred, gt = _check_shapes(pred, gt)
    keep = valid_frames(gt)
    diff = centers(pred[keep]) - centers(gt[keep])
    errors = np.hypot(diff[:, 0], diff[:, 1])
    return np.nan_to_num(errors, nan=np.inf)


def normalized_center_errors(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Centre error normalized per axis by the ground-truth size (LaSOT), per evaluated frame.

    NaN predictions, and degenerate (zero-size) ground truth that would divide by zero, give +inf.
    """
    pred, gt = _check_shapes(pred, gt)
    keep = valid_frames(gt)
    gt_kept = gt[keep]
    diff = centers(pred[keep]) - centers(gt_kept)
    with np.errstate(divide="ignore", invalid="ignore"):
        errors = np.hypot(diff[:, 0] / gt_kept[:, 2], diff[:, 1] / gt_kept[:, 3])
    return np.nan_to_num(errors, nan=np.inf, posinf=np.inf)


def success_curve(ious: np.ndarray, thresholds: np.ndarray = IOU_THRESHOLDS) -> np.ndarray:
    """Fraction of frames with IoU strictly greater than each threshold (zeros if no frames)."""
    ious = np.asarray(ious, dtype=np.float64).reshape(-1)
    if ious.size == 0:
        return np.zeros(len(thresholds))
    return (ious[None, :] > thresholds[:, None]).mean(axis=1)


def precision_curve(errors: np.ndarray, thresholds: np.ndarray = CENTER_THRESHOLDS) -> np.ndarray:
    """Fraction of frames with error <= each threshold (zeros if no frames)."""
    errors = np.asarray(errors, dtype=np.float64).reshape(-1)
    if errors.size == 0:
        return np.zeros(len(thresholds))
    return (errors[None, :] <= thresholds[:, None]).mean(axis=1)


def evaluate_sequence(pred: np.ndarray, gt: np.ndarray, name: str = "") -> SequenceResult:
    """All curves for one sequence; ``pred`` and ``gt`` are (N, 4) 0-based boxes, frame-aligned.

    The first frame (the given initial box) is included, as the OTB toolkit does.
    """
    pred, gt = _check_shapes(pred, gt)
    valid = valid_frames(gt)
    return SequenceResult(
        name=name,
        frames=int(valid.sum()),
        success_curve=success_curve(overlaps(pred, gt)),
        precision_curve=precision_curve(center_errors(pred, gt)),
        norm_precision_curve=precision_curve(normalized_center_errors(pred, gt), NORM_THRESHOLDS),
        scored_after_first=int(valid[1:].sum()),
    )


@dataclass(frozen=True)
class MeanCurves:
    """Per-sequence curves averaged over sequences (each sequence weighs the same, as OTB)."""

    success: np.ndarray
    precision: np.ndarray
    norm_precision: np.ndarray

    @property
    def auc(self) -> float:
        return float(np.mean(self.success))

    @property
    def precision_at_20(self) -> float:
        return _value_at(self.precision, CENTER_THRESHOLDS, PRECISION_AT_PX)

    @property
    def norm_precision_auc(self) -> float:
        return float(np.mean(self.norm_precision))

    @property
    def success_rate(self) -> float:
        """Mean over sequences of the fraction of frames with IoU > 0.5 (SR_0.5)."""
        return _value_at(self.success, IOU_THRESHOLDS, SUCCESS_RATE_AT)


def mean_curves(results: Sequence[SequenceResult]) -> MeanCurves:
    """Average the curves of several sequences, so the mean curve's AUC is the mean AUC."""
    if not results:
        raise ValueError("no sequence results to average")
    return MeanCurves(
        success=np.mean([r.success_curve for r in results], axis=0),
        precision=np.mean([r.precision_curve for r in results], axis=0),
        norm_precision=np.mean([r.norm_precision_curve for r in results], axis=0),
    )
