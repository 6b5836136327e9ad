"""Crop geometry and candidate sampling."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.boxes import from_otb, iou, to_otb, validate_init_box
from runtime.crop import cut, window_around
from runtime.sampling import SampleSpec, draw, draw_filtered


@pytest.mark.parametrize("scale", [0.3, 1.0, 2.5])
def test_crop_maps_frame_boxes_to_crop_pixels(scale):
    frame = np.zeros((240, 320, 3), np.uint8)
    box = np.array([100.0, 60.0, 40.0, 30.0])  # 0-based: columns 100..139, rows 60..89
    frame[60:90, 100:140] = 255
    window = window_around(box[:2] + box[2:] / 2, np.array([60.0, 50.0]), scale, max_side=1000)
    crop = cut(frame, window, (0.0, 0.0, 0.0))
    assert crop.shape == (window.height, window.width, 3)
    x, y, w, h = window.boxes_to_crop(box[None])[0]
    bright = np.argwhere(crop[..., 0] > 127)
    (r0, c0), (r1, c1) = bright.min(axis=0), bright.max(axis=0) + 1
    tol = max(1.5, 1.0 / scale)
    assert abs(c0 - x) <= tol and abs(c1 - (x + w)) <= tol
    assert abs(r0 - y) <= tol and abs(r1 - (y + h)) <= tol


def test_window_caps_crop_size_by_lowering_scale():
    window = window_around(np.array([50.0, 50.0]), np.array([500.0, 100.0]), 2.0, max_side=400)
    assert max(window.width, window.height) <= 400
    assert window.scale == pytest.approx(0.4)


def test_draw_is_reproducible_and_respects_frame():
    box = np.array([50.0, 40.0, 30.0, 20.0])
    spec = SampleSpec("gaussian", 0.6, 1.05, keep_inside=True)
    a = draw(spec, box, 256, (200, 150), np.random.default_rng(3))
    b = draw(spec, box, 256, (200, 150), np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert np.all(a[:, 0] >= 0) and np.all(a[:, 0] + a[:, 2] <= 200)
    assert np.all(a[:, 2:] >= 5)


def test_draw_filtered_hits_overlap_range():
    box = np.array([80.0, 60.0, 40.0, 40.0])
    rng = np.random.default_rng(0)
    pos = draw_filtered(SampleSpec("gaussian", 0.1, 1.2), box, 200, (320, 240), rng, (0.7, 1.0))
    neg = draw_filtered(SampleSpec("uniform", 1.0, 2.0, 1.1), box, 500, (320, 240), rng, (0.0, 0.5))
    assert len(pos) == 200 and len(neg) == 500
    assert iou(pos, box[None]).min() >= 0.7
    assert iou(neg, box[None]).max() <= 0.5


def test_otb_conversion_round_trip_and_nan():
    rows = np.array([[1.0, 1.0, 10.0, 5.0], [np.nan] * 4])
    internal = from_otb(rows)
    assert internal[0, 0] == 0.0 and np.isnan(internal[1]).all()
    np.testing.assert_array_equal(to_otb(internal)[0], rows[0])


@pytest.mark.parametrize(
    "box, reason",
    [
        ([10, 10, 0, 5], "zero or negative size"),
        ([400, 10, 20, 20], "outside"),
        ([-50, -50, 20, 20], "outside"),
        ([1, 2, np.nan, 3], "non-finite"),
        ([1, 2, 3], "4 numbers"),
    ],
)
def test_bad_init_boxes_are_refused(box, reason):
    with pytest.raises(ValueError, match=reason):
        validate_init_box(box, (240, 320, 3))
