"""bench.long_video: the forward-and-back clip, the loop drift, the summary (issue 19 item 2).
The long runs themselves are a benchmark (docs/metartt.md, "Long videos"), not a test."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from bench.long_video import PingPongClip, loop_drift, main, run_long, summarize


def _clip(n: int = 5) -> PingPongClip:
    frames = [np.full((48, 64, 3), 10 * i, np.uint8) for i in range(n)]
    truth = np.array([[4.0 + 2 * i, 6.0, 10.0, 12.0] for i in range(n)])
    return PingPongClip(frames, truth[0].copy(), truth)


class _Oracle:
    """Test double: the clip's ground truth for the image it is shown (its brightness / 10)."""

    name = "oracle"

    def __init__(self, clip: PingPongClip, shrink: float = 1.0) -> None:
        self.clip, self.shrink, self.scale = clip, shrink, 1.0

    def init(self, frame: np.ndarray, box: np.ndarray) -> None:
        self.scale = 1.0

    def update(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        box = self.clip.ground_truth[int(frame[0, 0, 0]) // 10].copy()
        self.scale *= self.shrink
        centre = box[:2] + box[2:] / 2
        size = box[2:] * self.scale
        return np.concatenate([centre - size / 2, size]), 1.0


def test_the_clip_plays_forward_and_back_with_period_2n_minus_2():
    clip = _clip(5)
    assert clip.period == 8
    assert [clip.index(k) for k in range(12)] == [0, 1, 2, 3, 4, 3, 2, 1, 0, 1, 2, 3]
    assert PingPongClip([clip.frames[0]], clip.init_box).index(7) == 0


def test_a_tracker_on_target_has_no_loop_drift_and_full_overlap():
    clip = _clip()
    run = run_long(_Oracle(clip), clip, 40, "oracle")
    summary = summarize(run, clip.period, clip.truth(40))
    assert summary.drift_max == 0.0 and summary.iou_last_loop == pytest.approx(1.0)
    assert summary.min_w == 10.0 and summary.rss_end_mib > 0


def test_a_shrinking_box_shows_in_the_minimum_size_and_the_last_loop_overlap():
    clip = _clip()
    run = run_long(_Oracle(clip, shrink=0.95), clip, 40, "shrinking")
    summary = summarize(run, clip.period, clip.truth(40))
    assert summary.min_w == pytest.approx(10.0 * 0.95**39)
    assert summary.iou_last_loop < 0.3 < summary.iou_first_loop
    assert summary.drift_max < 1e-9  # the centre stays: drift alone would not show it


def test_loop_drift_measures_against_the_same_image_in_the_first_loop():
    boxes = np.array([[0, 0, 2, 2], [1, 0, 2, 2], [0, 0, 2, 2], [4, 0, 2, 2]], float)
    np.testing.assert_allclose(loop_drift(boxes, 2), [0, 0, 0, 3])


def test_bad_arguments_are_one_line(tmp_path, capsys):
    assert main(["--trackers", "nosuch", "--frames", "10", "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("bench.long_video: error: unknown tracker 'nosuch'") and err.count("\n") == 1
    )
    assert main(["--trackers", "cv2-csrt", "--frames", "1"]) == 2
    assert "--frames must be at least 2" in capsys.readouterr().err


def test_an_opencv_tracker_runs_end_to_end_on_a_video_clip(tmp_path, capsys):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(6):
        frame = np.zeros((48, 64, 3), np.uint8)
        frame[10:30, 10 + i : 30 + i] = 255
        writer.write(frame)
    writer.release()
    out = tmp_path / "long.json"
    argv = ["--trackers", "cv2-csrt", "--frames", "25", "--clip", str(video), "--size", "native"]
    assert main([*argv, "--init", "11,11,20,20", "--json", str(out), "--quiet"]) == 0
    figures = json.loads(out.read_text())
    assert figures["period"] == 10 and figures["trackers"]["cv2-csrt"]["frames"] == 25
    assert "| cv2-csrt | 25 |" in capsys.readouterr().out
