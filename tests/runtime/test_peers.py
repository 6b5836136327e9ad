"""OpenCV peers behind the Tracker interface, on a synthetic moving textured square."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

from bench.trackers import available_names, make_tracker
from runtime.evaluation.metrics import overlaps
from runtime.opencv_peers import (
    NANO_BACKBONE,
    NANO_DIR,
    NANO_NECKHEAD,
    VIT_DIR,
    VIT_MODEL,
    from_cv_rect,
    to_cv_rect,
)
from runtime.paths import PROJECT_ROOT
from runtime.tracker_api import Tracker
from tests.support import DATA

N_FRAMES = 20
SIZE = 48


def _nano_missing() -> str | None:
    folder = DATA / NANO_DIR
    missing = [n for n in (NANO_BACKBONE, NANO_NECKHEAD) if not (folder / n).is_file()]
    return f"cv2-nano ONNX files not under {folder}: {', '.join(missing)}" if missing else None


def _vit_missing() -> str | None:
    path = DATA / VIT_DIR / VIT_MODEL
    return None if path.is_file() else f"cv2-vit ONNX file not at {path}"


MISSING = {"cv2-nano": _nano_missing, "cv2-vit": _vit_missing}


def _clip(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    noise = rng.uniform(0, 255, size=(*shape, 3)).astype(np.float32)
    return cv2.GaussianBlur(noise, (0, 0), sigma)


def _moving_square() -> tuple[list[np.ndarray], np.ndarray]:
    """A high-contrast textured square drifting over a low-contrast textured background."""
    rng = np.random.default_rng(7)
    height, width = 240, 320
    background = 90 + 0.3 * (_clip(rng, (height, width), 6.0) - 128)
    texture = _clip(rng, (SIZE, SIZE), 2.0)
    texture = (texture - texture.mean()) * 3.0 + 128
    frames, boxes = [], []
    for i in range(N_FRAMES):
        x, y = 60 + 4 * i, 70 + 2 * i + int(round(6 * np.sin(i / 3)))
        frame = background.copy()
        frame[y : y + SIZE, x : x + SIZE] = texture
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
        boxes.append([x, y, SIZE, SIZE])
    return frames, np.asarray(boxes, dtype=np.float64)


@pytest.mark.parametrize("name", ["cv2-csrt", "cv2-kcf", "cv2-mil", "cv2-nano", "cv2-vit"])
def test_peer_tracks_moving_square(name: str) -> None:
    if name in MISSING and (reason := MISSING[name]()):
        pytest.skip(reason)
    frames, gt = _moving_square()
    tracker = make_tracker(name, data_dir=None)
    assert isinstance(tracker, Tracker) and tracker.name == name
    tracker.init(frames[0], gt[0])
    boxes = [gt[0]]
    for frame in frames[1:]:
        box, score = tracker.update(frame)
        assert box.shape == (4,) and box.dtype == np.float64
        assert isinstance(score, float)
        boxes.append(box)
    ious = overlaps(np.asarray(boxes), gt)
    assert ious.mean() > 0.5, f"{name}: mean IoU {ious.mean():.2f}, per frame {ious.round(2)}"


def test_failure_keeps_last_box_with_zero_score() -> None:
    frames, gt = _moving_square()
    tracker = make_tracker("cv2-kcf")
    tracker.init(frames[0], gt[0])

    class Failing:
        def update(self, frame: np.ndarray) -> tuple[bool, tuple[int, int, int, int]]:
            return False, (0, 0, 0, 0)

    tracker._tracker = Failing()  # simulate OpenCV reporting a lost target
    box, score = tracker.update(frames[1])
    np.testing.assert_array_equal(box, gt[0])
    assert score == 0.0


def test_cv_rect_conversion_rounds_and_clips() -> None:
    assert to_cv_rect(np.array([10.4, 20.6, 30.2, 40.0]), (100, 100, 3)) == (10, 21, 31, 40)
    assert to_cv_rect(np.array([-5.0, 90.0, 20.0, 30.0]), (100, 100, 3)) == (0, 90, 15, 10)
    assert all(isinstance(v, int) for v in to_cv_rect(np.array([1.5, 2.5, 3.0, 4.0]), (9, 9)))
    np.testing.assert_array_equal(from_cv_rect((3, 4, 5, 6)), [3.0, 4.0, 5.0, 6.0])


def test_names_and_unknown_name() -> None:
    names = available_names()
    assert {"cv2-csrt", "cv2-kcf", "cv2-mil", "cv2-nano", "cv2-vit"} <= set(names)
    with pytest.raises(ValueError, match="unknown tracker"):
        make_tracker("cv2-nope")


def test_nano_missing_files_name_the_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=NANO_BACKBONE):
        make_tracker("cv2-nano", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=VIT_MODEL):
        make_tracker("cv2-vit", data_dir=tmp_path)


def test_peers_take_no_options_and_say_they_are_opencvs() -> None:
    with pytest.raises(ValueError, match="cv2-kcf is an OpenCV peer and takes no options"):
        make_tracker("cv2-kcf", backend="torch")


def test_runtime_does_not_import_bench() -> None:
    # The CLI and the API run OpenCV's peers from runtime/, which must stand alone (DESIGN.md).
    code = (
        "import sys, runtime.track, runtime.registry, runtime.multi_target; "
        "sys.exit(' '.join(m for m in sys.modules if m.split('.')[0] == 'bench') or None)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("name", ["cv2-csrt", "cv2-kcf", "cv2-mil"])
def test_peers_check_frames_and_boxes_as_our_trackers_do(name: str) -> None:
    """Issue 19: OpenCV took a box outside the frame (clipped to a 1-px rect) and a float frame
    silently; the peers now refuse them with our trackers' (and the CLI's) messages."""
    frames, gt = _moving_square()
    tracker = make_tracker(name)
    with pytest.raises(ValueError, match="lies outside the 320x240 frame"):
        tracker.init(frames[0], np.array([400.0, 10.0, 20.0, 20.0]))
    with pytest.raises(ValueError, match="pass uint8 0..255"):
        tracker.init(frames[0] / 255.0, gt[0])
    with pytest.raises(RuntimeError, match=rf"{name}: update\(\) called before init\(\)"):
        tracker.update(frames[1])
    tracker.init(cv2.cvtColor(frames[0], cv2.COLOR_BGR2GRAY), gt[0])  # grey: taken as BGR
    box, _ = tracker.update(cv2.cvtColor(frames[1], cv2.COLOR_BGR2GRAY))
    assert box.shape == (4,)
