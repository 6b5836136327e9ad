"""MLT (runtime/mlt, train/mlt.py): shapes, the meta-learner's input, tracking real frames,
kernel generation every T frames, the checkpoint's trunk hash, and the training tool."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from runtime.boxes import iou
from runtime.mlt import MLTConfig, MLTTracker
from runtime.mlt.checkpoint import MLTCheckpoint, MLTCheckpointError
from runtime.mlt.meta_learner import MetaLearner, conv5_gradient
from runtime.mlt.model import MatchingNet, label_map, response_side
from runtime.registry import TRACKER_NAMES, create_tracker
from tests.support import CROSSING, DATA, NANOTRACK, needs_data, needs_shipped_mlt


def _frames(n: int):
    from runtime.sequences import load_sequence
    from train.datasets import read_frame

    seq = load_sequence(CROSSING)
    return [read_frame(p) for p in seq.frame_paths[:n]], seq.ground_truth[:n]


def test_paper_trunk_gives_a_17x17_response_and_the_paper_shapes():
    torch.manual_seed(0)
    net = MatchingNet("paper").eval()
    assert response_side("paper", 127, 255) == 17
    z4 = net.features4(torch.rand(1, 3, 127, 127) * 255)
    x4 = net.features4(torch.rand(2, 3, 255, 255) * 255)
    assert z4.shape == (1, 256, 8, 8) and x4.shape == (2, 256, 24, 24)
    assert net.response(net.embed(z4), net.embed(x4)).shape == (2, 17, 17)
    # The meta-learner's input is the gradient w.r.t. conv5's 256 x 192 kernel ...
    labels = label_map(17, net.stride, torch.zeros(2, 2))
    grad = conv5_gradient(net, z4, x4, labels)
    assert grad.shape == (256, 192) and grad.abs().sum() > 0
    # ... and its output 32 new 1x1 kernels (256 x 32) and an attention for 224 channels.
    kernels, attention = MetaLearner().eval()(grad)
    assert kernels.shape == (256, 32) and attention.shape == (224,)
    assert bool(((attention > 0) & (attention < 1)).all())
    embedded = net.embed(x4, kernels=kernels, attention=attention)
    assert embedded.shape == (2, 224, 24, 24)
    assert torch.allclose(embedded.norm(dim=1), torch.ones(2, 24, 24), atol=1e-4)


def test_labels_are_positive_within_16px_of_the_target():
    labels = label_map(17, 8, torch.tensor([[0.0, 0.0], [16.0, -8.0]]))
    assert labels[0, 8, 8] == 1 and labels[0, 8, 10] == 1 and labels[0, 8, 11] == 0
    assert labels[1, 7, 10] == 1 and labels[1, 8, 8] == 0


@needs_data
def test_nanotrack_trunk_shapes_on_a_real_frame():
    from runtime.backbones import build_backbone
    from runtime.crop import exemplar_side, square_crop
    from runtime.mlt.model import to_tensor

    frames, gt = _frames(1)
    trunk = build_backbone("nanotrack", DATA / "weights")
    net = MatchingNet("nanotrack").eval()
    box = gt[0]
    center = box[:2] + box[2:] / 2
    z = square_crop(frames[0], center, exemplar_side(box, 0.5), 127, (0, 0, 0))
    x = square_crop(frames[0], center, exemplar_side(box, 0.5) * 255 / 127, 255, (0, 0, 0))
    with torch.no_grad():
        z4 = net.features4(trunk(to_tensor([z])))
        x4 = net.features4(trunk(to_tensor([x])))
        resp = net.response(net.embed(z4), net.embed(x4))
    assert z4.shape == (1, 256, 6, 6) and x4.shape == (1, 256, 14, 14)
    assert resp.shape == (1, 9, 9) == (1, *(2 * (response_side("nanotrack", 127, 255),)))


@needs_data
@needs_shipped_mlt
@pytest.mark.parametrize("name", ["mlt", "mlt[use_meta=False]"])
def test_tracks_ten_real_frames(name):
    frames, gt = _frames(11)
    tracker = create_tracker(name, data_dir=DATA)
    tracker.init(frames[0], gt[0])
    boxes = [tracker.update(f)[0] for f in frames[1:]]
    overlaps = iou(np.stack(boxes), gt[1:])
    assert np.nanmean(overlaps) > 0.5, overlaps
    assert len(tracker.memory) >= 2  # confident frames joined the memory


@needs_data
@needs_shipped_mlt
def test_kernels_are_generated_every_t_frames_and_ft_finetunes():
    frames, gt = _frames(9)
    tracker = create_tracker("mlt", data_dir=DATA, update_interval=4)
    tracker.init(frames[0], gt[0])
    assert tracker.kernels is None and tracker.attention is None
    template = tracker.z.clone()
    for i, frame in enumerate(frames[1:], start=1):
        tracker.update(frame)
        assert tracker.kernel_updates == i // 4
    assert tracker.kernels.shape == (256, 32) and tracker.attention.shape == (224,)
    assert tracker.z.shape[1] == 224 and template.shape[1] == 192

    ft = create_tracker(
        "mlt[use_meta=False;finetune=True]", data_dir=DATA, ft_interval=4, ft_steps=3
    )
    ft.init(frames[0], gt[0])
    for frame in frames[1:5]:
        ft.update(frame)
    assert ft.finetunes == 1 and ft.kernel_updates == 0
    assert not torch.equal(ft.conv5_weight, ft.net.conv5.weight)


@needs_data
def test_checkpoint_round_trip_and_a_mismatched_trunk_is_refused(tmp_path):
    from runtime.mlt.checkpoint import trunk_sha256

    torch.manual_seed(0)
    net, learner = MatchingNet("nanotrack").eval(), MetaLearner().eval()
    sha = trunk_sha256("nanotrack", DATA / "weights")
    path = tmp_path / "mlt.pt"
    MLTCheckpoint.from_models(net, learner, sha, {"step": 3}).to_file(path)
    back = MLTCheckpoint.from_file(path)
    assert back.info == {"step": 3} and back.trunk_sha256 == sha and len(back.sha256) == 64
    for key, value in net.state_dict().items():
        assert torch.allclose(back.matching_net().state_dict()[key], value, atol=1e-3), key
    back.check_trunk("nanotrack", DATA / "weights")
    tracker = MLTTracker(MLTConfig(checkpoint=str(path)), data_dir=DATA)
    assert tracker.learner is not None

    wrong = replace(back, trunk_sha256="0" * 64)
    wrong.to_file(tmp_path / "wrong.pt")
    with pytest.raises(MLTCheckpointError, match="trunk hash mismatch"):
        MLTTracker(MLTConfig(checkpoint=str(tmp_path / "wrong.pt")), data_dir=DATA)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(MLTCheckpointError, match="not a readable checkpoint"):
        MLTCheckpoint.from_file(tmp_path / "junk.pt")
    # A stage-1 checkpoint has no meta-learner: MLT refuses it, MLT-mt takes it.
    MLTCheckpoint.from_models(net, None, sha).to_file(tmp_path / "stage1.pt")
    with pytest.raises(MLTCheckpointError, match="no meta-learner"):
        MLTTracker(MLTConfig(checkpoint=str(tmp_path / "stage1.pt")), data_dir=DATA)
    MLTTracker(MLTConfig(checkpoint=str(tmp_path / "stage1.pt"), use_meta=False), data_dir=DATA)


def test_registry_names():
    assert "mlt" in TRACKER_NAMES
    with pytest.raises(ValueError, match="mlt"):
        create_tracker("mlt", meta="x.pt")


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


@needs_data
def test_training_tool_runs_two_steps_resumes_and_trains_the_meta_learner(tmp_path):
    from train.mlt.training import main

    small = ["--set", "batch=2", "--threads", "2", "--checkpoint-every", "1"]
    match = tmp_path / "match"
    assert main(["--stage", "match", "--steps", "2", "--out", str(match), *small]) == 0
    assert {"config.json", "log.csv", "training.png", "last.pt", "mlt.pt"} <= {
        p.name for p in match.iterdir()
    }
    assert main(["--stage", "match", "--steps", "3", "--out", str(match), "--resume", *small]) == 0
    assert [r["step"] for r in _rows(match)] == ["1", "2", "3"]
    with pytest.raises(SystemExit, match="different settings"):
        main(["--stage", "match", "--steps", "4", "--out", str(match), "--resume", "--lr", "1"])
    with pytest.raises(SystemExit, match="already holds a run"):
        main(["--stage", "match", "--steps", "2", "--out", str(match), *small])

    meta = tmp_path / "meta"
    args = ["--stage", "meta", "--steps", "1", "--out", str(meta), *small]
    assert main([*args, "--set", f"matching={match / 'mlt.pt'}", "--set", "m_loss=10"]) == 0
    ckpt = MLTCheckpoint.from_file(meta / "mlt.pt")
    assert ckpt.meta_learner is not None and ckpt.info["stage"] == "meta"
    assert float(_rows(meta)[0]["loss"]) > 0


@pytest.fixture(scope="module")
def onnx_export(tmp_path_factory):
    """The NanoTrack trunk exported as for MetaRTT (export/build_engine.py), fp32."""
    if not NANOTRACK.is_file():
        pytest.skip(f"needs {NANOTRACK}")
    from export.build_engine import build

    folder = tmp_path_factory.mktemp("export") / "nanotrack"
    build("nanotrack", "fp32", folder, log=lambda _: None)
    return folder


@needs_data
@pytest.mark.slow
def test_trunk_on_onnxruntime_matches_torch(onnx_export, tmp_path):
    from runtime.crop import exemplar_side, square_crop
    from runtime.mlt.checkpoint import trunk_sha256

    torch.manual_seed(0)
    path = tmp_path / "mlt.pt"
    sha = trunk_sha256("nanotrack", DATA / "weights")
    MLTCheckpoint.from_models(MatchingNet("nanotrack").eval(), MetaLearner(), sha).to_file(path)
    trackers = {
        name: MLTTracker(
            MLTConfig(checkpoint=str(path), backend=name, export_dir=str(onnx_export)), DATA
        )
        for name in ("torch", "onnxruntime")
    }
    assert trackers["onnxruntime"].backend.name == "onnxruntime"
    frames, gt = _frames(6)
    center = gt[0][:2] + gt[0][2:] / 2
    side = exemplar_side(gt[0], 0.5)
    crops = [square_crop(frames[0], center, side * k, 255, (0, 0, 0)) for k in (2.0, 2.3)]
    crops.append(square_crop(frames[0], center, side, 127, (0, 0, 0)))
    for crop in crops:
        got = trackers["onnxruntime"].features4([crop])
        want = trackers["torch"].features4([crop])
        assert float((got - want).abs().max() / want.abs().max()) < 1e-4
    boxes = {}
    for name, tracker in trackers.items():
        tracker.init(frames[0], gt[0])
        boxes[name] = np.stack([tracker.update(f)[0] for f in frames[1:]])
    assert np.abs(boxes["torch"] - boxes["onnxruntime"]).max() < 0.5
