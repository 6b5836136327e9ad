"""Candidate and training boxes around a target, as MDNet/RT-MDNet draw them.

All boxes are 0-based ``x, y, w, h``. Every draw takes a ``numpy.random.Generator`` so runs are
reproducible from one seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from runtime.boxes import iou

MIN_SIDE = 5.0  # MDNet keeps samples at least 5 px wide and 5 px inside the frame


@dataclass(frozen=True)
class SampleSpec:
    """How to perturb a box: translation in units of the target's mean side, scale as a power."""

    kind: Literal["gaussian", "uniform"]
    trans_f: float
    scale_f: float
    aspect_f: float | None = None
    keep_inside: bool = False  # clip centres so the whole box stays in the frame


def draw(
    spec: SampleSpec, box: np.ndarray, n: int, frame_wh: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """Draw ``n`` boxes around ``box`` (MDNet's SampleGenerator semantics)."""
    box = np.asarray(box, dtype=np.float64)
    frame = np.asarray(frame_wh, dtype=np.float64)
    centre_wh = np.array([box[0] + box[2] / 2, box[1] + box[3] / 2, box[2], box[3]])
    samples = np.tile(centre_wh, (n, 1))
    if spec.aspect_f is not None:
        ratio = rng.random((n, 1)) * 2 - 1
        samples[:, 2:] *= spec.aspect_f ** np.concatenate([ratio, -ratio], axis=1)
    mean_side = box[2:].mean()
    if spec.kind == "gaussian":
        samples[:, :2] += (
            spec.trans_f * mean_side * np.clip(0.5 * rng.standard_normal((n, 2)), -1, 1)
        )
        samples[:, 2:] *= spec.scale_f ** np.clip(0.5 * rng.standard_normal((n, 1)), -1, 1)
    else:
        samples[:, :2] += spec.trans_f * mean_side * (rng.random((n, 2)) * 2 - 1)
        samples[:, 2:] *= spec.scale_f ** (rng.random((n, 1)) * 2 - 1)
    samples[:, 2:] = np.clip(samples[:, 2:], MIN_SIDE, np.maximum(frame - MIN_SIDE, MIN_SIDE))
    if spec.keep_inside:
        low = samples[:, 2:] / 2
        high = np.maximum(frame - samples[:, 2:] / 2 - 1, low)
        samples[:, :2] = np.clip(samples[:, :2], low, high)
    else:
        samples[:, :2] = np.clip(samples[:, :2], 0, frame)
    samples[:, :2] -= samples[:, 2:] / 2
    return samples


def draw_filtered(
    spec: SampleSpec,
    box: np.ndarray,
    n: int,
    frame_wh: tuple[int, int],
    rng: np.random.Generator,
    overlap: tuple[float, float] | None = None,
    scale: tuple[float, float] | None = None,
) -> np.ndarray:
    """Draw up to ``n`` boxes whose IoU with ``box`` (and area ratio) fall in the given ranges.

    Over-draws in rounds (x2, x4, x8) like MDNet; may return fewer than ``n`` if the ranges are
    hard to hit, never more.
    """
    if overlap is None and scale is None:
        return draw(spec, box, n, frame_wh, rng)
    kept: list[np.ndarray] = []
    remaining, factor = n, 2
    area = float(np.prod(box[2:]))
    while remaining > 0 and factor < 16:
        cand = draw(spec, box, remaining * factor, frame_wh, rng)
        ok = np.ones(len(cand), dtype=bool)
        if overlap is not None:
            r = iou(cand, box[None, :])
            ok &= (r >= overlap[0]) & (r <= overlap[1])
        if scale is not None:
            s = cand[:, 2] * cand[:, 3] / area
            ok &= (s >= scale[0]) & (s <= scale[1])
        cand = cand[ok][:remaining]
        kept.append(cand)
        remaining -= len(cand)
        factor *= 2
    return np.concatenate(kept, axis=0) if kept else np.zeros((0, 4))
