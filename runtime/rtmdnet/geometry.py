"""Where the RT-MDNet family's search crops go: the sample reach, the window, the cut.

One place for the crop geometry, used by :class:`runtime.rtmdnet.tracker.RTMDNetTracker` itself
and by everything that must cut crops exactly as it does: meta-training episodes
(:mod:`train.episodes`), the INT8 calibration set (:mod:`calib.build`) and the export's parity
crops (:func:`export.onnx_export.real_samples`).

- :func:`covering_half_extent`: how far, around the target's centre, a window must reach to hold
  every given box padded by ``roi_padding``.
- :func:`update_reach` / :func:`update_half_extent`: the per-frame window also covers the
  update negatives drawn after scoring, so one backbone pass serves both.
- :func:`search_window`: the window itself (target at ``target_px``, sides rounded to the stride).
- :func:`tracker_crop`: the whole "crop as the tracker cuts it" for an init or an update frame
  (samples drawn, window covering them, the crop, the RoIs), for calibration and export.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runtime.crop import CropWindow, cut, window_around
from runtime.rtmdnet.config import RTMDNetConfig
from runtime.sampling import SampleSpec, draw

POS_SPEC = SampleSpec("gaussian", 0.1, 1.2)
NEG_INIT = SampleSpec("uniform", 1.0, 2.0, aspect_f=1.1)
BBREG_SPEC = SampleSpec("uniform", 0.3, 1.5, aspect_f=1.1)

KINDS = ("init", "update")


def candidate_spec(config: RTMDNetConfig, trans_f: float | None = None) -> SampleSpec:
    """The per-frame candidates' spec (``trans_f``: the tracker's current one, default the
    config's; the tracker widens it after a failure)."""
    return SampleSpec(
        "gaussian", config.trans_f if trans_f is None else trans_f, config.scale_f, keep_inside=True
    )


def neg_update_spec(config: RTMDNetConfig) -> SampleSpec:
    """How the online-update negatives are drawn: uniform within ``config.neg_update_reach``
    target sides, scale 1.2 (RT-MDNet). The per-frame window covers them, so one backbone pass
    serves the candidates and the update samples alike."""
    return SampleSpec("uniform", config.neg_update_reach, 1.2)


def covering_half_extent(box: np.ndarray, boxes: np.ndarray, padding: float) -> np.ndarray:
    """Half extent (x, y), around ``box``'s centre, that holds every box of ``boxes`` enlarged
    ``padding`` times about its own centre (as :meth:`runtime.crop.CropWindow.rois` pads)."""
    center = box[:2] + box[2:] / 2
    pad = boxes[:, 2:] * (padding - 1.0) / 2.0
    low = boxes[:, :2] - pad
    high = boxes[:, :2] + boxes[:, 2:] + pad
    return np.maximum(np.abs(low - center).max(axis=0), np.abs(high - center).max(axis=0))


def update_reach(target: np.ndarray, config: RTMDNetConfig) -> np.ndarray:
    """Half extent, around ``target``'s centre, that holds every padded update negative."""
    spec = neg_update_spec(config)
    return spec.trans_f * target[2:].mean() + target[2:] * spec.scale_f * (config.roi_padding / 2.0)


def update_half_extent(
    target: np.ndarray, candidates: np.ndarray, config: RTMDNetConfig
) -> np.ndarray:
    """The per-frame window's half extent: the padded candidates and the update negatives."""
    return np.maximum(
        update_reach(target, config), covering_half_extent(target, candidates, config.roi_padding)
    )


def search_window(
    box: np.ndarray,
    half_extent: np.ndarray,
    config: RTMDNetConfig,
    stride: int,
    jitter: float = 1.0,
) -> CropWindow:
    """The crop the tracker cuts around ``box``: the target at ``target_px`` (times ``jitter``),
    ``half_extent`` frame pixels either side of its centre, sides rounded up to ``stride``."""
    scale = config.target_px / float(np.sqrt(box[2] * box[3])) * jitter
    center = box[:2] + box[2:] / 2
    return window_around(center, half_extent, scale, config.max_crop_side, stride)


@dataclass(frozen=True)
class TrackerCrop:
    """One crop cut as the tracker cuts it, and the boxes drawn for it (frame ``x, y, w, h``)."""

    kind: str  # "init" or "update"
    crop: np.ndarray  # H x W x 3 uint8, the frame's channel order
    window: CropWindow
    candidates: np.ndarray  # (n, 4) the frame's candidates (empty if none were drawn)
    negatives: np.ndarray  # (m, 4) init: the first-frame negatives the window covers; update: none
    padding: float  # the RoIs' padding (config.roi_padding)

    def rois(self, boxes: np.ndarray) -> np.ndarray:
        """``(N, 4)`` float32 ``x1, y1, x2, y2`` crop-pixel RoIs of ``boxes``, padded."""
        return self.window.rois(boxes, self.padding).astype(np.float32)


def tracker_crop(
    frame: np.ndarray,
    target: np.ndarray,
    kind: str,
    config: RTMDNetConfig,
    rng: np.random.Generator,
    fill: tuple[float, float, float],
    stride: int,
    jitter: float = 1.0,
    *,
    n_candidates: int | None = None,
    n_negatives: int | None = None,
) -> TrackerCrop:
    """Draw a frame's samples around ``target`` (0-based ``x, y, w, h``) and cut the crop that
    covers them, as :class:`RTMDNetTracker` does.

    ``kind="update"``: ``n_candidates`` (default ``config.n_samples``) candidates; the window
    covers them and the update negatives (:func:`update_half_extent`), as ``update``.
    ``kind="init"``: the candidates, then ``n_negatives`` (default ``config.n_neg_init``)
    first-frame negatives (``NEG_INIT``); the window covers both, at scale ``jitter``, as
    ``init``. ``n_candidates=0`` draws none (nothing is taken from ``rng`` for them).
    ``fill``: the colour outside the frame (the tracker: the first frame's mean colour).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be 'update' or 'init', not {kind!r}")
    frame_wh = (frame.shape[1], frame.shape[0])
    n = config.n_samples if n_candidates is None else n_candidates
    candidates = draw(candidate_spec(config), target, n, frame_wh, rng) if n else np.zeros((0, 4))
    if kind == "update":
        negatives = np.zeros((0, 4))
        half = update_half_extent(target, candidates, config)
    else:
        m = config.n_neg_init if n_negatives is None else n_negatives
        negatives = draw(NEG_INIT, target, m, frame_wh, rng)
        covered = np.concatenate([candidates, negatives])
        half = covering_half_extent(target, covered, config.roi_padding)
    window = search_window(target, half, config, stride, jitter)
    crop = cut(frame, window, fill)
    return TrackerCrop(kind, crop, window, candidates, negatives, config.roi_padding)


__all__ = [
    "BBREG_SPEC",
    "KINDS",
    "NEG_INIT",
    "POS_SPEC",
    "TrackerCrop",
    "candidate_spec",
    "covering_half_extent",
    "neg_update_spec",
    "search_window",
    "tracker_crop",
    "update_half_extent",
    "update_reach",
]
