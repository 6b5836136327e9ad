"""The default ``nanotrack``'s second network (runtime/nanotrack/second_network.py): NanoTrack v2
read from the peer's ONNX files, its cells lined up with v3's, and the fused tracker."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch

from runtime.backends import create_backend
from runtime.boxes import iou
from runtime.nanotrack import NanoTrackConfig, NanoTracker
from runtime.nanotrack.deploy import siamese_spec
from runtime.nanotrack.second_network import SecondNetwork, v2_files
from runtime.nanotrack.tracker import (
    cell_points,
    frame_fill,
    map_side,
    search_crop,
    template_crop,
)
from runtime.sequences import load_sequence
from tests.support import DATA, needs_data

SEQUENCES = ("Crossing", "Bird2", "vot2015_bag")


def _first_pair(name: str, side: int = 255) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frame 0's template crop and frame 1's search crop of ``side`` around frame 0's box,
    (1, 3, S, S)."""
    seq = load_sequence(DATA / "sequences" / name)
    f0, f1 = (cv2.imread(str(p)) for p in seq.frame_paths[:2])
    box, config = seq.ground_truth[0], NanoTrackConfig()
    fill = frame_fill(f0)
    z = template_crop(f0, box, config, fill)
    x = search_crop(f1, box[:2] + box[2:] / 2.0, box[2:], side, config, fill)
    return tuple(c.transpose(2, 0, 1)[None].astype(np.float32) for c in (z, x)) + (box,)


def _best_box(score: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """The best cell's box as centre x, y, w, h in crop pixels from the crop's centre."""
    points = cell_points(round(score.size**0.5), 16)
    i = int(np.argmax(score))
    x1, y1 = points[0, i] - delta[0, i], points[1, i] - delta[1, i]
    x2, y2 = points[0, i] + delta[2, i], points[1, i] + delta[3, i]
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])


@needs_data
def test_size_free_backbone_computes_what_the_file_does():
    _, x, _ = _first_pair("Crossing")
    rgb = np.ascontiguousarray(x[:, ::-1])
    as_shipped = ort.InferenceSession(str(v2_files()[0]), providers=["CPUExecutionProvider"])
    want = as_shipped.run(None, {"input": rgb})[0]
    got = SecondNetwork()._backbone({"input": rgb})[0]
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    # ... and it takes the 127 template crop the file's declared 255 input refuses.
    z, _, _ = _first_pair("Crossing")
    assert SecondNetwork().template(z).shape == (1, 48, 8, 8)


@needs_data
def test_shaped_head_computes_what_the_file_does():
    """At the 255 crop the rewritten head is the file's; at 191 it gives 12x12 cells."""
    z, x, _ = _first_pair("Bird2")
    v2 = SecondNetwork()
    feature = v2.template(z)
    search_feature = v2._backbone({"input": v2._rgb(x)})[0]
    as_shipped = ort.InferenceSession(str(v2_files()[1]), providers=["CPUExecutionProvider"])
    feeds = {"input1": feature, "input2": search_feature}
    for want, got in zip(as_shipped.run(None, feeds), v2._head(16)(feeds), strict=True):
        np.testing.assert_array_equal(got, want)
    _, small, _ = _first_pair("Bird2", 191)
    score, delta = v2.search(small, feature)
    assert score.shape == (121,) and delta.shape == (4, 121)
    with pytest.raises(ValueError, match="127 to 255"):
        v2.start_search(np.zeros((1, 3, 287, 287), np.float32), feature)


@needs_data
@pytest.mark.parametrize(("name", "side"), [(n, 255) for n in SEQUENCES] + [("Bird2", 191)])
def test_both_networks_put_the_target_in_the_same_place(name, side):
    """v2's cells 1..15 are v3's 0..14 (1..11 and 0..10 on the compact 191 crop): both
    networks' best boxes agree within half a cell (one cell off would move v2's box by 16 crop
    pixels)."""
    z, x, _ = _first_pair(name, side)
    v2 = SecondNetwork()
    score_v2, delta_v2 = v2.search(x, v2.template(z))
    v3 = create_backend(siamese_spec(NanoTrackConfig()), verbose=False)
    scores, boxes = v3.search(torch.from_numpy(x), v3.template(torch.from_numpy(z)))
    score_v3 = scores.numpy().reshape(-1).astype(np.float64)
    delta_v3 = boxes.numpy().reshape(4, -1).astype(np.float64)
    assert score_v2.shape == score_v3.shape == (map_side(side) ** 2,)
    a, b = _best_box(score_v2, delta_v2), _best_box(score_v3, delta_v3)
    assert np.abs(a[:2] - b[:2]).max() < 8.0, (a, b)
    assert np.all(np.abs(np.log(a[2:] / b[2:])) < np.log(1.3)), (a, b)


@needs_data
def test_fused_tracker_tracks_and_siblings_share_the_second_network():
    seq = load_sequence(DATA / "sequences" / "Crossing")
    frames = [cv2.imread(str(p)) for p in seq.frame_paths[:30]]
    tracker = NanoTracker(NanoTrackConfig())
    assert tracker.second is not None and not tracker.can_batch
    assert tracker.sibling().second is tracker.second
    tracker.init(frames[0], seq.ground_truth[0])
    boxes = np.stack([tracker.update(f)[0] for f in frames[1:]])
    assert iou(boxes, seq.ground_truth[1:30]).mean() > 0.6
    # Given one thread, v3 takes it and v2 still runs beside it: the same boxes.
    one = NanoTracker(NanoTrackConfig(threads=1))
    assert one.second is not None
    one.init(frames[0], seq.ground_truth[0])
    alone = np.stack([one.update(f)[0] for f in frames[1:]])
    np.testing.assert_allclose(alone, boxes, atol=1e-3)
    # Without the second network the tracker is v3 alone and builds no v2 sessions.
    assert NanoTracker(NanoTrackConfig(fusion_weight=0.0)).second is None


@needs_data
def test_missing_second_network_is_named(tmp_path: Path):
    (tmp_path / "weights").symlink_to(DATA / "weights")
    with pytest.raises(FileNotFoundError, match="NanoTrack v2 backbone"):
        NanoTracker(NanoTrackConfig(), data_dir=tmp_path)
    assert NanoTracker(NanoTrackConfig(fusion_weight=0.0), data_dir=tmp_path).second is None


@needs_data
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fused_tracker_on_cuda_matches_the_cpu():
    """v3 in torch on the GPU, v2 on the CPU beside it: the CPU default's boxes."""
    seq = load_sequence(DATA / "sequences" / "Crossing")
    frames = [cv2.imread(str(p)) for p in seq.frame_paths[:20]]
    runs = []
    for config in (NanoTrackConfig(), NanoTrackConfig(device="cuda", backend="torch")):
        tracker = NanoTracker(config)
        tracker.init(frames[0], seq.ground_truth[0])
        runs.append(np.stack([tracker.update(f)[0] for f in frames[1:]]))
    assert iou(runs[0], runs[1]).min() > 0.95
