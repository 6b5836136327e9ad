"""Bounding-box regression fitted once, on the first frame (ridge regression, as MDNet)."""

from __future__ import annotations

import numpy as np

from runtime.boxes import iou


def _deltas(boxes: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Regression targets: centre offset in box units, log size ratio."""
    bc = boxes[:, :2] + boxes[:, 2:] / 2
    tc = target[:2] + target[2:] / 2
    return np.concatenate([(tc - bc) / boxes[:, 2:], np.log(target[2:] / boxes[:, 2:])], axis=1)


class BoxRegressor:
    def __init__(
        self,
        alpha: float = 1000.0,
        overlap: tuple[float, float] = (0.6, 1.0),
        scale: tuple[float, float] = (1.0, 2.0),
    ) -> None:
        self.alpha = alpha
        self.overlap = overlap
        self.scale = scale
        self.weights: np.ndarray | None = None  # (D + 1, 4), last row = intercept

    def fit(self, features: np.ndarray, boxes: np.ndarray, target: np.ndarray) -> None:
        """Ridge fit (intercept not penalised): features -> deltas from ``boxes`` to ``target``."""
        x = np.asarray(features, dtype=np.float64)
        y = _deltas(np.asarray(boxes, dtype=np.float64), np.asarray(target, dtype=np.float64))
        x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
        xc, yc = x - x_mean, y - y_mean
        d = x.shape[1]
        # Solve in whichever space is smaller (samples or features).
        if len(x) < d:
            coef = xc.T @ np.linalg.solve(xc @ xc.T + self.alpha * np.eye(len(x)), yc)
        else:
            coef = np.linalg.solve(xc.T @ xc + self.alpha * np.eye(d), xc.T @ yc)
        intercept = y_mean - x_mean @ coef
        self.weights = np.vstack([coef, intercept[None, :]])

    def predict(self, features: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Refined boxes; a refinement that moves a box implausibly far is discarded."""
        if self.weights is None:
            return np.asarray(boxes, dtype=np.float64)
        boxes = np.asarray(boxes, dtype=np.float64)
        delta = np.asarray(features, dtype=np.float64) @ self.weights[:-1] + self.weights[-1]
        centre = boxes[:, :2] + boxes[:, 2:] / 2 + delta[:, :2] * boxes[:, 2:]
        size = boxes[:, 2:] * np.exp(np.clip(delta[:, 2:], -1.0, 1.0))
        refined = np.concatenate([centre - size / 2, size], axis=1)
        r = iou(boxes, refined)
        s = np.prod(boxes[:, 2:], axis=1) / np.prod(refined[:, 2:], axis=1)
        plausible = (
            (r >= self.overlap[0])
            & (r <= self.overlap[1])
            & (s >= self.scale[0])
            & (s <= self.scale[1])
        )
        return np.where(plausible[:, None], refined, boxes)
