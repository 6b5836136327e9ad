"""Meta-training data: dataset loaders, the val guard, episode sampling, crops, pseudo-videos.

Each loader is checked on a tiny synthetic dataset written in that dataset's own layout and box
convention, with a bright rectangle drawn at a known place: the loaded box must match the pixels,
so an off-by-one between 1-based and 0-based files fails the test.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tests.support import DATA, needs_data, needs_weights
from train.datasets import (
    CONVENTIONS,
    ValLeakError,
    canonical_name,
    detect_layout,
    discover,
    is_aerial,
    load_got10k,
    load_imagenet_vid,
    load_lasot,
    load_otb_folder,
    to_internal,
    training_sequences,
    view_of,
)
from train.rtmdnet.episodes import (
    EpisodeConfig,
    EpisodeSampler,
    crop_features,
    draw_online_samples,
    iou_with,
    pseudo_video,
)

FRAME_WH = (64, 48)
# 0-based continuous boxes (pixel i covers [i, i+1)) of the drawn rectangle, one per frame.
TRUTH = np.array(
    [[10, 8, 20, 12], [12, 9, 20, 12], [14, 10, 18, 14], [16, 11, 18, 14], [18, 12, 16, 10]],
    dtype=np.float64,
)


def _frame(box: np.ndarray | None) -> np.ndarray:
    image = np.zeros((FRAME_WH[1], FRAME_WH[0], 3), np.uint8)
    if box is not None:
        x, y, w, h = (int(v) for v in box)
        image[y : y + h, x : x + w] = 255
    return image


def _measured(image: np.ndarray) -> np.ndarray:
    """The bright rectangle's extent in ``image`` as a 0-based ``x, y, w, h`` box."""
    ys, xs = np.nonzero(image[..., 0] > 127)
    return np.array([xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()], float)


def _write_frames(folder: Path, pattern: str, boxes: np.ndarray, ext: str = ".jpg") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, box in enumerate(boxes):
        # PNG-quality JPEG edges are soft; the test measures with a 127 threshold on a 0/255 box.
        cv2.imwrite(str(folder / (pattern.format(i + 1) + ext)), _frame(box))


def _xywh_lines(boxes: np.ndarray, origin: float) -> str:
    rows = []
    for b in boxes:
        if np.isnan(b).any():
            rows.append("NaN,NaN,NaN,NaN")
        else:
            rows.append(",".join(f"{v:g}" for v in (b[0] + origin, b[1] + origin, b[2], b[3])))
    return "\n".join(rows) + "\n"


def _assert_matches_pixels(sequence, rows: list[int]) -> None:
    for i in rows:
        image = cv2.imread(str(sequence.frame_paths[i]))
        np.testing.assert_allclose(sequence.ground_truth[i], _measured(image), atol=0.01)


# ------------------------------------------------------------------------------------------
# Box conventions
# ------------------------------------------------------------------------------------------
def test_conventions_convert_once():
    one_based = np.array([[11.0, 21.0, 30.0, 40.0]])
    expected = np.array([[10.0, 20.0, 30.0, 40.0]])
    for layout in ("otb", "got10k", "lasot"):
        np.testing.assert_allclose(to_internal(one_based, CONVENTIONS[layout]), expected)
    # VID: inclusive pixel indices, origin 0: xmin=10..xmax=39 is 30 px wide.
    vid = to_internal(np.array([[10.0, 20.0, 39.0, 59.0]]), CONVENTIONS["imagenet_vid"])
    np.testing.assert_allclose(vid, expected)
    assert np.isnan(to_internal(np.full((1, 4), np.nan), CONVENTIONS["otb"])).all()


# ------------------------------------------------------------------------------------------
# Loaders on synthetic data in each layout
# ------------------------------------------------------------------------------------------
def test_otb_loader_one_based_with_nan_and_flags(tmp_path):
    seq = tmp_path / "otb" / "Demo"
    boxes = TRUTH.copy()
    boxes[2] = np.nan
    _write_frames(seq / "img", "{:04d}", [None if np.isnan(b).any() else b for b in boxes])
    (seq / "groundtruth_rect.txt").write_text(_xywh_lines(boxes, origin=1.0))
    (seq / "out_of_view.txt").write_text("0,0,0,1,0\n")  # LaSOT-style flags blank frame 3

    assert detect_layout(tmp_path / "otb") == "otb"
    [loaded] = discover(tmp_path / "otb")
    assert loaded.name == "Demo" and len(loaded) == 5
    _assert_matches_pixels(loaded, [0, 1, 4])
    assert np.isnan(loaded.ground_truth[2]).all() and np.isnan(loaded.ground_truth[3]).all()


def test_got10k_loader_one_based_with_absence(tmp_path):
    root = tmp_path / "GOT-10k"
    seq = root / "train" / "GOT-10k_Train_000001"
    _write_frames(seq, "{:08d}", TRUTH)
    (seq / "groundtruth.txt").write_text(_xywh_lines(TRUTH, origin=1.0))
    (seq / "absence.label").write_text("0\n0\n1\n0\n0\n")
    (seq / "cover.label").write_text("8\n8\n0\n8\n0\n")  # cover 0 = fully occluded
    (root / "train" / "list.txt").write_text("GOT-10k_Train_000001\n")
    # A test-split sequence (only the first box) must not be picked up from train.
    test_seq = root / "test" / "GOT-10k_Test_000001"
    _write_frames(test_seq, "{:08d}", TRUTH)
    (test_seq / "groundtruth.txt").write_text(_xywh_lines(TRUTH[:1], origin=1.0))

    assert detect_layout(root) == "got10k"
    [loaded] = discover(root)
    assert loaded.name == "GOT-10k_Train_000001"
    _assert_matches_pixels(loaded, [0, 1, 3])
    assert np.isnan(loaded.ground_truth[2]).all() and np.isnan(loaded.ground_truth[4]).all()
    assert len(load_got10k(root / "train")) == 1
    with pytest.raises(ValueError, match="ground-truth rows"):
        load_got10k(root, split="test")


def test_lasot_loader_one_based_with_occlusion_and_out_of_view(tmp_path):
    root = tmp_path / "LaSOT"
    for n in (1, 2):
        seq = root / "airplane" / f"airplane-{n}"
        _write_frames(seq / "img", "{:08d}", TRUTH)
        (seq / "groundtruth.txt").write_text(_xywh_lines(TRUTH, origin=1.0))
        (seq / "full_occlusion.txt").write_text("0,1,0,0,0")
        (seq / "out_of_view.txt").write_text("0,0,0,0,1")
        (seq / "nlp.txt").write_text("white airplane")

    assert detect_layout(root) == "lasot"
    loaded = discover(root)
    assert [s.name for s in loaded] == ["airplane-1", "airplane-2"]
    _assert_matches_pixels(loaded[0], [0, 2, 3])
    assert np.isnan(loaded[0].ground_truth[[1, 4]]).all()
    assert [s.name for s in load_lasot(root / "airplane", names=["airplane-2"])] == ["airplane-2"]


def _vid_xml(objects: list[tuple[int, np.ndarray]]) -> str:
    parts = [f"<annotation><size><width>{FRAME_WH[0]}</width><height>{FRAME_WH[1]}</height></size>"]
    for track, b in objects:
        # 0-based inclusive pixel indices, as ImageNet VID writes them.
        x1, y1, x2, y2 = int(b[0]), int(b[1]), int(b[0] + b[2] - 1), int(b[1] + b[3] - 1)
        parts.append(
            f"<object><trackid>{track}</trackid><name>n02691156</name><bndbox><xmax>{x2}</xmax>"
            f"<xmin>{x1}</xmin><ymax>{y2}</ymax><ymin>{y1}</ymin></bndbox>"
            "<occluded>0</occluded><generated>0</generated></object>"
        )
    return "".join(parts) + "</annotation>"


def test_imagenet_vid_loader_picks_one_track(tmp_path):
    root = tmp_path / "ILSVRC2015"
    rel = Path("ILSVRC2015_VID_train_0000") / "ILSVRC2015_train_00000000"
    ann = root / "Annotations" / "VID" / "train" / rel
    data = root / "Data" / "VID" / "train" / rel
    ann.mkdir(parents=True)
    data.mkdir(parents=True)
    distractor = np.array([40.0, 30.0, 10.0, 10.0])
    # Track 1 is in frames 0-1 only; track 0 (the longer one) in frames 1, 2, 4 (gone in 3).
    present = {0: [1, 2, 4], 1: [0, 1]}
    for i in range(5):
        objects = [(t, TRUTH[i] if t == 0 else distractor) for t in (0, 1) if i in present[t]]
        (ann / f"{i:06d}.xml").write_text(_vid_xml(objects))
        cv2.imwrite(str(data / f"{i:06d}.JPEG"), _frame(TRUTH[i] if i in present[0] else None))

    assert detect_layout(tmp_path) == "imagenet_vid"
    [loaded] = discover(tmp_path)
    assert loaded.name == "ILSVRC2015_train_00000000"
    # Trimmed to track 0's first..last frame: source frames 1..4.
    assert [p.stem for p in loaded.frame_paths] == ["000001", "000002", "000003", "000004"]
    _assert_matches_pixels(loaded, [0, 1, 3])
    assert np.isnan(loaded.ground_truth[2]).all()
    assert len(load_imagenet_vid(root)) == 1


def test_unknown_layout_and_data_root_are_refused(tmp_path):
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ValueError, match="no known layout"):
        discover(tmp_path / "nothing")
    (tmp_path / "splits.json").write_text("{}")
    with pytest.raises(ValueError, match="training_sequences"):
        discover(tmp_path)


# ------------------------------------------------------------------------------------------
# The val guard and the aerial tag
# ------------------------------------------------------------------------------------------
def _otb_sequence(folder: Path) -> None:
    _write_frames(folder / "img", "{:04d}", TRUTH)
    (folder / "groundtruth_rect.txt").write_text(_xywh_lines(TRUTH, origin=1.0))


def test_training_sequences_refuses_val_names(tmp_path):
    (tmp_path / "splits.json").write_text(json.dumps({"train": ["A"], "val": ["Crossing"]}))
    for name in ("A", "Crossing"):
        _otb_sequence(tmp_path / "sequences" / name)
    assert [s.name for s in training_sequences(tmp_path)] == ["A"]
    # A renamed copy of a val sequence in train_extra is caught too.
    _otb_sequence(tmp_path / "train_extra" / "otb_Crossing")
    with pytest.raises(ValLeakError, match="otb_Crossing"):
        training_sequences(tmp_path)
    assert canonical_name("lasot_airplane-1_first500") == "airplane-1"


def test_training_sequences_refuses_a_split_overlap(tmp_path):
    (tmp_path / "splits.json").write_text(json.dumps({"train": ["A", "B"], "val": ["B"]}))
    _otb_sequence(tmp_path / "sequences" / "A")
    with pytest.raises(ValLeakError, match="both train and val"):
        training_sequences(tmp_path)


def test_view_tags():
    assert view_of("uav123_boat1") == "aerial" and is_aerial("dtb70_Gull1")
    assert is_aerial("uavdt_S0310") and is_aerial("uav_Biker_lowalt")
    assert view_of("otb_Basketball") == "ground" and not is_aerial("Gym")


@needs_data
def test_training_sequences_on_shared_data():
    splits = json.loads((DATA / "splits.json").read_text())
    sequences = training_sequences(DATA)
    names = {s.name for s in sequences}
    assert not names & set(splits["val"])
    assert set(splits["train"]) <= names
    extra = DATA / "train_extra"
    if extra.is_dir():
        extra_names = {p.name for p in extra.iterdir() if (p / "groundtruth_rect.txt").is_file()}
        assert extra_names and extra_names <= names
        # MANIFEST.md: 24 of the 31 train_extra sequences are aerial.
        assert sum(is_aerial(n) for n in extra_names) == 24
    for s in sequences:
        assert s.ground_truth.shape == (len(s), 4)
        ok = np.isfinite(s.ground_truth).all(axis=1)
        assert ok.any() and (s.ground_truth[ok, 2:] > 0).all()


# ------------------------------------------------------------------------------------------
# Episodes
# ------------------------------------------------------------------------------------------
@needs_data
def test_episode_from_real_data():
    sequences = training_sequences(DATA)
    config = EpisodeConfig(n_pos_init=100, n_neg_init=500)
    sampler = EpisodeSampler(sequences, config, seed=3)
    by_name = {s.name: s for s in sequences}
    for seed in range(3):
        episode = sampler.sample(np.random.default_rng(seed))
        idx = episode.indices
        assert len(episode.frames) == 6 and len(episode.online) == 4
        assert all(a < b for a, b in zip(idx, idx[1:], strict=False))
        assert idx[-1] - idx[0] < config.max_span
        truth = by_name[episode.sequence].ground_truth
        for f in episode.frames:
            assert np.isfinite(f.box).all()
            np.testing.assert_allclose(f.box, truth[f.index])
            assert f.image.dtype == np.uint8 and f.image.ndim == 3
        assert 0 < len(episode.init_pos) <= 100 and 0 < len(episode.init_neg) <= 500
        assert (iou_with(episode.init_pos, episode.init.box) >= 0.7).all()
        assert (iou_with(episode.init_neg, episode.init.box) <= 0.5).all()
        assert (iou_with(episode.test_pos, episode.test.box) >= 0.7).all()
        assert (iou_with(episode.test_neg, episode.test.box) <= 0.5).all()
        hard_names = [h.sequence for h in episode.hard]
        assert len(hard_names) == config.n_hard_videos == len(set(hard_names))
        assert episode.sequence not in hard_names
        for h in episode.hard:
            np.testing.assert_allclose(h.boxes[0], by_name[h.sequence].ground_truth[h.index])
        pos, neg = draw_online_samples(
            episode.online[0].box, episode.online[0].frame_wh, config, np.random.default_rng(0)
        )
        assert (iou_with(neg, episode.online[0].box) <= 0.3).all() and len(pos)


@needs_data
def test_sampler_balances_aerial_and_ground():
    sampler = EpisodeSampler(training_sequences(DATA), seed=0)
    rng = np.random.default_rng(0)
    picks = [sampler.choose_sequence(rng) for _ in range(4000)]
    aerial = np.mean([is_aerial(sampler.sequences[i]) for i in picks])
    assert abs(aerial - 0.5) < 0.03
    frames = sampler.choose_frames(picks[0], rng)
    assert len(frames) == 6 and (np.diff(frames) > 0).all()


def test_sampler_skips_nan_frames(tmp_path):
    truth = np.tile(TRUTH[:1], (12, 1))
    truth[1::2] = np.nan  # every other frame invisible
    for name in ("uav123_a", "b"):
        folder = tmp_path / name
        _write_frames(folder / "img", "{:04d}", [None if np.isnan(b).any() else b for b in truth])
        (folder / "groundtruth_rect.txt").write_text(_xywh_lines(truth, origin=1.0))
    sequences = load_otb_folder(tmp_path)
    config = EpisodeConfig(n_pos_init=20, n_neg_init=50, n_hard_videos=1, max_span=12)
    sampler = EpisodeSampler(sequences, config, seed=0)
    for seed in range(5):
        episode = sampler.sample(np.random.default_rng(seed))
        assert all(i % 2 == 0 for i in episode.indices)
        assert episode.hard[0].sequence != episode.sequence


# ------------------------------------------------------------------------------------------
# Pseudo-videos
# ------------------------------------------------------------------------------------------
def test_pseudo_video_box_follows_the_rectangle():
    image = np.full((160, 200, 3), 30, np.uint8)
    box = np.array([60.0, 50.0, 40.0, 30.0])  # covers pixels 60..99 x 50..79
    image[50:80, 60:100] = 255
    frames, boxes = pseudo_video(image, box, 6, np.random.default_rng(0))
    assert len(frames) == 6 and boxes.shape == (6, 4)
    np.testing.assert_allclose(boxes[0], box)
    assert np.abs(boxes[1:] - box).max() > 2.0  # it really moves
    for frame, b in zip(frames, boxes, strict=True):
        assert frame.shape == image.shape
        # Bilinear edges: half-intensity threshold puts the measured edge within ~1 px.
        ys, xs = np.nonzero(frame[..., 0] > (255 + 30) / 2)
        measured = np.array([xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()])
        np.testing.assert_allclose(measured, b, atol=1.0)


@needs_data
def test_pseudo_video_makes_an_episode():
    sampler = EpisodeSampler(training_sequences(DATA), EpisodeConfig(n_pos_init=50, n_neg_init=200))
    image = np.random.default_rng(1).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    frames, boxes = pseudo_video(
        image, np.array([120.0, 90.0, 60.0, 50.0]), 6, np.random.default_rng(2)
    )
    episode = sampler.episode_from_video("coco_0001", frames, boxes, np.random.default_rng(3))
    assert len(episode.frames) == 6 and len(episode.hard) == 8 and len(episode.init_pos)


# ------------------------------------------------------------------------------------------
# Features: identical to the tracker's
# ------------------------------------------------------------------------------------------
@needs_weights
@needs_data
def test_crop_features_match_the_tracker():
    from runtime.backbones import build_backbone
    from runtime.roi_features import RoIFeatureExtractor
    from runtime.rtmdnet import RTMDNetConfig, RTMDNetTracker
    from runtime.rtmdnet.geometry import covering_half_extent, search_window

    tracker_config = RTMDNetConfig()
    backbone = build_backbone("nanotrack", DATA / "weights")
    extractor = RoIFeatureExtractor(
        backbone, tracker_config.roi_size, tracker_config.roi_sampling_ratio
    ).eval()
    sampler = EpisodeSampler(
        training_sequences(DATA), EpisodeConfig(n_pos_init=32, n_neg_init=64), seed=0
    )
    episode = sampler.sample(np.random.default_rng(0))
    frame, target = episode.init.image, episode.init.box
    boxes = np.concatenate([episode.init_pos, episode.init_neg])
    feats = crop_features(extractor, frame, target, boxes, sampler.config)
    assert feats.shape == (len(boxes), 864) and torch.isfinite(feats).all()

    # The same window, crop and pooling through the tracker's own methods.
    tracker = RTMDNetTracker(tracker_config, extractor=extractor)
    tracker._fill = tuple(float(v) for v in frame.reshape(-1, 3).mean(axis=0))
    half = covering_half_extent(target, boxes, tracker_config.roi_padding)
    window = search_window(target, half, tracker_config, extractor.stride, 1.1)
    reference = tracker._pool(tracker._feature_map(frame, window), window, boxes)
    mine = crop_features(extractor, frame, target, boxes, tracker_config, jitter=1.1)
    torch.testing.assert_close(mine, reference)
