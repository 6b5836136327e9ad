"""Scores users can act on: each tracker's raw score mapped to P(IoU > 0 | raw score).

A tracker's own score means different things per tracker: MetaRTT's is an unbounded logit (the
mean fc6 output of the top candidates), MLT's the peak of its response map (a sigmoid, which
stays high on frames with nothing to track), NanoTrack's a softmax probability. A
:class:`Calibration` turns one into the probability that the reported box overlaps the target
at all: a logistic (Platt) fit, two numbers per tracker, ``P = sigmoid(a * f(raw) + b)`` with
``f`` the identity for unbounded scores and the logit for scores that are already in (0, 1).

The numbers are fitted by ``python -m bench.confidence --fit`` on the ``train`` split and
``train_extra/`` of the shared data only (never ``val``, where ``python -m bench.confidence
--split val`` measures them) and shipped as ``runtime/checkpoints/confidence.json``.

:class:`LostState` says "lost" after ``patience`` consecutive frames whose calibrated confidence
is under ``lost_below`` and "found" again at the first frame at or above ``recover_at``.
:class:`ScoreCalibrator` is what a tracker holds: calibration, lost state and the last raw score;
``tracker.update`` returns ``scorer(raw)``, and the tracker exposes ``scorer.raw_score`` and
``scorer.lost`` as its own ``raw_score`` and ``lost`` (:class:`runtime.tracker_api.ReportsLost`).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CALIBRATION_FILE = Path(__file__).resolve().parent / "checkpoints" / "confidence.json"
FORMAT = "tracker-confidence/1"
FEATURES = ("raw", "logit")
_EPS = 1e-6  # probabilities are clipped to [eps, 1 - eps] before their logit


class CalibrationError(ValueError):
    """The calibration file is missing, unreadable or of another format."""


def feature(raw: np.ndarray | float, kind: str) -> np.ndarray:
    """What the logistic fit sees: the raw score itself, or the logit of a probability."""
    raw = np.asarray(raw, dtype=np.float64)
    if kind == "raw":
        return raw
    if kind == "logit":
        p = np.clip(raw, _EPS, 1.0 - _EPS)
        return np.log(p) - np.log1p(-p)
    raise ValueError(f"unknown calibration feature {kind!r}; one of {FEATURES}")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


@dataclass(frozen=True)
class Calibration:
    """``P(IoU > 0 | raw) = sigmoid(a * feature(raw) + b)`` for one tracker."""

    tracker: str
    a: float
    b: float
    feature: str = "raw"
    calibrated: bool = True  # False: the uncalibrated stand-in (a=1, b=0), see identity()
    info: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def identity(cls, tracker: str, feature_kind: str) -> Calibration:
        """No fit: sigmoid of a logit, or a probability as it is (``a = 1, b = 0``)."""
        return cls(tracker, 1.0, 0.0, feature_kind, calibrated=False)

    def predict(self, raw: np.ndarray) -> np.ndarray:
        return _sigmoid(self.a * feature(raw, self.feature) + self.b)

    def __call__(self, raw: float) -> float:
        value = float(self.predict(np.array(float(raw))))
        return 0.0 if math.isnan(value) else value  # a NaN score says nothing is there

    def to_json(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "feature": self.feature, **self.info}


def fit_platt(
    raw: np.ndarray, positive: np.ndarray, feature_kind: str = "raw", iterations: int = 100
) -> tuple[float, float]:
    """Platt's (1999) fit of ``sigmoid(a * f + b)`` to 0/1 labels: Newton on the log loss with
    his smoothed targets ``(N+ + 1) / (N+ + 2)`` and ``1 / (N- + 2)`` (no overconfident ends)."""
    x = feature(raw, feature_kind)
    y = np.asarray(positive, dtype=bool)
    keep = np.isfinite(x)
    x, y = x[keep], y[keep]
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            f"a calibration needs frames with IoU > 0 and frames with IoU = 0; got {n_pos} and "
            f"{n_neg}"
        )
    t = np.where(y, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
    scale = max(float(np.std(x)), 1e-12)  # fit on standardised x: a well-conditioned Newton
    z = (x - float(np.mean(x))) / scale
    a, b = 0.0, math.log((n_pos + 1.0) / (n_neg + 1.0))
    for _ in range(iterations):
        p = _sigmoid(a * z + b)
        w = np.maximum(p * (1.0 - p), 1e-12)
        g = np.array([np.sum((p - t) * z), np.sum(p - t)])
        h = np.array([[np.sum(w * z * z), np.sum(w * z)], [np.sum(w * z), np.sum(w)]])
        step = np.linalg.solve(h + 1e-9 * np.eye(2), g)
        a, b = a - float(step[0]), b - float(step[1])
        if float(np.abs(step).max()) < 1e-10:
            break
    # Back to the unstandardised feature: a * (x - m) / s + b.
    return a / scale, b - a * float(np.mean(x)) / scale


def load_calibrations(path: str | os.PathLike[str] | None = None) -> dict[str, Calibration]:
    """Every tracker's calibration in ``path`` (default: the shipped file)."""
    path = Path(path) if path is not None else CALIBRATION_FILE
    if not path.is_file():
        raise CalibrationError(
            f"{path} not found: fit one with python -m bench.confidence --fit --out {path}"
        )
    try:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            raise CalibrationError(f"{path} is not a confidence calibration (format {FORMAT!r})")
        return {
            name: Calibration(
                name,
                float(entry["a"]),
                float(entry["b"]),
                str(entry.get("feature", "raw")),
                info={k: v for k, v in entry.items() if k not in ("a", "b", "feature")},
            )
            for name, entry in data["trackers"].items()
        }
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, KeyError, TypeError) as exc:
        raise CalibrationError(
            f"{path} is not a readable confidence calibration ({exc!r}); fit one with "
            f"python -m bench.confidence --fit --out {path}"
        ) from None


def calibration_for(
    tracker: str,
    feature_kind: str = "raw",
    path: str | os.PathLike[str] | None = None,
) -> Calibration:
    """``tracker``'s calibration: its own, else its family's (``mlt-nano`` -> ``mlt``), else the
    uncalibrated stand-in with one warning (``feature_kind`` says what the raw score is)."""
    try:
        table = load_calibrations(path)
    except CalibrationError as exc:
        table, why = {}, str(exc)
    else:
        why = f"{path or CALIBRATION_FILE} has no entry for it"
    candidates = [tracker, tracker.split("-")[0]]
    for name in candidates:
        if name in table:
            return table[name]
    # Python's warning registry shows an identical message once per call site: no state here.
    warnings.warn(
        f"{tracker}: its score is not calibrated ({why}); confidence is the raw score "
        f"{'as it is' if feature_kind == 'logit' else 'through a sigmoid'}",
        stacklevel=2,
    )
    return Calibration.identity(tracker, feature_kind)


@dataclass
class LostState:
    """Lost after ``patience`` frames in a row under ``lost_below``; found at ``recover_at``."""

    lost_below: float = 0.5
    recover_at: float = 0.6
    patience: int = 3
    lost: bool = False
    streak: int = 0  # consecutive frames under lost_below
    lost_frames: int = 0  # frames reported lost since reset

    def __post_init__(self) -> None:
        if not 0.0 <= self.lost_below <= self.recover_at <= 1.0 or self.patience < 1:
            raise ValueError(
                f"LostState needs 0 <= lost_below <= recover_at <= 1 and patience >= 1; got "
                f"{self.lost_below}, {self.recover_at}, {self.patience}"
            )

    def reset(self) -> None:
        self.lost, self.streak, self.lost_frames = False, 0, 0

    def update(self, confidence: float) -> bool:
        """Take one frame's calibrated confidence; returns whether the target is lost now."""
        self.streak = self.streak + 1 if confidence < self.lost_below else 0
        if not self.lost and self.streak >= self.patience:
            self.lost = True
        elif self.lost and confidence >= self.recover_at:
            self.lost = False
        self.lost_frames += int(self.lost)
        return self.lost


class ScoreCalibrator:
    """One tracker's calibration, lost state and last raw score (see the module docstring)."""

    def __init__(
        self,
        tracker: str,
        feature_kind: str = "raw",
        path: str | os.PathLike[str] | None = None,
        lost: LostState | None = None,
    ) -> None:
        self.calibration = calibration_for(tracker, feature_kind, path)
        settings = self.calibration.info.get("lost") or {}
        self.state = lost or LostState(
            **{k: settings[k] for k in ("lost_below", "recover_at", "patience") if k in settings}
        )
        self.raw_score = float("nan")
        self.confidence = float("nan")

    @property
    def lost(self) -> bool:
        return self.state.lost

    def reset(self) -> None:
        """At ``init``: no score yet, not lost."""
        self.state.reset()
        self.raw_score = self.confidence = float("nan")

    def __call__(self, raw: float) -> float:
        """Take one frame's raw score; returns its calibrated confidence (and updates ``lost``)."""
        self.raw_score = float(raw)
        self.confidence = self.calibration(self.raw_score)
        self.state.update(self.confidence)
        return self.confidence


class CalibratedScore:
    """Mixin for a tracker holding a :class:`ScoreCalibrator` as ``self.scorer`` (set in
    ``init``): its ``raw_score`` and ``lost`` (``nan`` / ``False`` before the first ``init``, so
    the tracker is a :class:`runtime.tracker_api.ReportsLost` from construction on)."""

    @property
    def raw_score(self) -> float:
        scorer = getattr(self, "scorer", None)
        return float("nan") if scorer is None else scorer.raw_score

    @property
    def lost(self) -> bool:
        scorer = getattr(self, "scorer", None)
        return False if scorer is None else scorer.lost


def calibration_table(
    calibrations: dict[str, Calibration], extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The JSON document :func:`load_calibrations` reads."""
    return {
        "format": FORMAT,
        "meaning": "P(IoU > 0 | raw score) = sigmoid(a * f(raw) + b); f = raw or logit(raw)",
        **(extra or {}),
        "trackers": {name: c.to_json() for name, c in calibrations.items()},
    }


__all__ = [
    "CALIBRATION_FILE",
    "CalibratedScore",
    "Calibration",
    "CalibrationError",
    "LostState",
    "ScoreCalibrator",
    "calibration_for",
    "calibration_table",
    "feature",
    "fit_platt",
    "load_calibrations",
]
