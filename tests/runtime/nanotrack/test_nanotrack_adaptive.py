"""The target layer on the NanoTrack v3 base (issue 16): labels, steps, checkpoints, the tracker
that adapts it, and the meta-training's resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from export.build_engine import main as build_main
from runtime.backends.manifest import MANIFEST_FILE, checkpoint_record
from runtime.nanotrack import NanoTrackConfig, NanoTracker
from runtime.nanotrack.adaptive import PLAIN, AdaptiveNanoTrackConfig, AdaptiveNanoTracker
from runtime.nanotrack.target_layer import (
    AdaptRule,
    CropSample,
    TargetLayerCheckpointError,
    adapt,
    balanced_loss,
    cell_labels,
    load_rule,
    save_rule,
)
from runtime.nanotrack.tracker import cell_points, map_side
from tests.support import DATA, needs_data
from train.nanotrack.metartt_nano import NanoMetaConfig, train


def test_cells_inside_the_central_half_are_target_outside_the_box_background():
    points = cell_points(map_side(255), 16)
    labels = cell_labels(points, (0.0, 0.0), (64.0, 64.0))
    at = {tuple(p): y for p, y in zip(points.T.tolist(), labels.tolist(), strict=True)}
    assert at[(0.0, 0.0)] == 1 and at[(16.0, 16.0)] == 1  # |d| <= 16 = side / 4
    assert at[(32.0, 0.0)] == -1  # between half and the edge: ignored
    assert at[(48.0, 0.0)] == 0 and at[(112.0, -112.0)] == 0
    tiny = cell_labels(points, (5.0, -3.0), (2.0, 2.0))
    assert int((tiny == 1).sum()) == 1 and tiny[int(np.argmin(points[0] ** 2 + points[1] ** 2))]


def _sample(seed: int = 0) -> CropSample:
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(96, 225, generator=g)
    labels = (torch.rand(225, generator=g) < 0.1).float()
    return CropSample(feats, torch.zeros(225), labels)


def test_plain_steps_lower_the_loss_and_zero_rates_change_nothing():
    sample = _sample()
    rule = AdaptRule.plain(5, 0, 1.0)
    w, b = adapt(rule.w0, rule.b0, [sample], rule.init_rates_w, rule.init_rates_b)
    assert float(balanced_loss(w, b, [sample])) < float(balanced_loss(rule.w0, rule.b0, [sample]))
    frozen = AdaptRule.plain(5, 0, 0.0)
    w0, b0 = adapt(frozen.w0, frozen.b0, [sample], frozen.init_rates_w, frozen.init_rates_b)
    assert torch.equal(w0, torch.zeros(96)) and float(b0) == 0.0


def test_second_order_steps_give_gradients_to_the_rule():
    rule = AdaptRule.plain(2, 0, 0.5)
    for tensor in rule.parameters():
        tensor.requires_grad_(True)
    w, b = adapt(rule.w0, rule.b0, [_sample(1)], rule.init_rates_w, rule.init_rates_b, True)
    balanced_loss(w, b, [_sample(2)]).backward()
    assert rule.init_rates_w.grad is not None and rule.init_rates_w.grad.abs().sum() > 0
    assert rule.w0.grad is not None and rule.w0.grad.abs().sum() > 0


def test_a_rule_checkpoint_round_trips_and_refuses_other_base_weights(tmp_path):
    rule = AdaptRule.plain(3, 2, 0.25)
    rule.w0 += 0.5
    path = tmp_path / "rule.pt"
    save_rule(path, rule, {"step": 1}, "a" * 64)
    loaded, info, sha = load_rule(path, "a" * 64)
    assert torch.equal(loaded.w0, rule.w0) and loaded.online_steps == 2 and info == {"step": 1}
    assert len(sha) == 64
    with pytest.raises(TargetLayerCheckpointError, match="trained for NanoTrack v3 weights"):
        load_rule(path, "b" * 64)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(TargetLayerCheckpointError, match="not a readable checkpoint"):
        load_rule(path, "a" * 64)


@needs_data
def test_a_layer_that_never_moves_tracks_exactly_as_the_base(crossing_frames):
    frames, gt = crossing_frames(12)
    # v3 alone on the full crop every frame, as theirs
    base = NanoTracker(NanoTrackConfig(backend="torch", fusion_weight=0.0, compact_instance_size=0))
    still = AdaptiveNanoTracker(
        AdaptiveNanoTrackConfig(rule=PLAIN, plain_rate=0.0, backend="torch")
    )
    for tracker in (base, still):
        tracker.init(frames[0], gt[0])
    for frame in frames[1:]:
        (box_a, score_a), (box_b, score_b) = base.update(frame), still.update(frame)
        np.testing.assert_allclose(box_b, box_a, rtol=1e-5, atol=1e-4)
        assert score_b == pytest.approx(score_a, abs=1e-5)
    assert still.updates == 1  # the online steps ran (at frame 10), with zero rates


@needs_data
def test_the_shipped_rule_is_bound_to_the_base_weights_and_adapts_online(crossing_frames):
    tracker = AdaptiveNanoTracker(AdaptiveNanoTrackConfig())
    assert tracker.rule_sha256 is not None and tracker.rule.init_steps == 5
    frames, gt = crossing_frames(22)
    tracker.init(frames[0], gt[0])
    boxes = [tracker.update(f)[0] for f in frames[1:]]
    assert tracker.updates == 2 and np.all(np.isfinite(boxes))
    with pytest.raises(ValueError, match="no TensorRT engine"):
        AdaptiveNanoTracker(AdaptiveNanoTrackConfig(backend="tensorrt", export_dir=None))


@needs_data
def test_the_features_graph_tracks_as_the_torch_branch(crossing_frames):
    """ONNX Runtime's search_features.onnx (the default on a CPU) against torch's
    FeatureSearchBranch, frame by frame from the same state: the same boxes within 0.05 px."""
    frames, gt = crossing_frames(12)
    on_torch = AdaptiveNanoTracker(AdaptiveNanoTrackConfig(backend="torch"))
    on_ort = AdaptiveNanoTracker(AdaptiveNanoTrackConfig())
    assert on_ort.backend.name == "onnxruntime" and on_torch.backend.name == "torch"
    for tracker in (on_torch, on_ort):
        tracker.init(frames[0], gt[0])
    for frame in frames[1:]:
        (box_a, score_a), (box_b, score_b) = on_torch.update(frame), on_ort.update(frame)
        np.testing.assert_allclose(box_b, box_a, atol=0.05)
        assert score_b == pytest.approx(score_a, abs=1e-3)


@needs_data
def test_meta_training_resumes_to_what_an_uninterrupted_run_learns(tmp_path):
    tiny = {"frames_per_video": 3, "test_frames": 1, "memory_frames": 1, "distractor_crops": 1}
    once = train(NanoMetaConfig(steps=3, checkpoint_every=3, **tiny), DATA, tmp_path / "a")
    train(NanoMetaConfig(steps=2, checkpoint_every=2, **tiny), DATA, tmp_path / "b")
    twice = train(NanoMetaConfig(steps=3, checkpoint_every=3, **tiny), DATA, tmp_path / "b", True)
    base = checkpoint_record("nanotrack", DATA / "weights")["sha256"]
    a, _, _ = load_rule(once, base)
    b, _, _ = load_rule(twice, base)
    for x, y in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(x, y)
    assert not torch.equal(a.init_rates_w, AdaptRule.plain(5, 5, 1.0).init_rates_w)


@needs_data
@pytest.mark.slow
def test_an_fp32_export_folder_serves_the_target_layer_trackers(tmp_path, crossing_frames):
    """``build_engine.py --tracker nanotrack`` writes the features graph too (checked against
    torch, hashed in the manifest), so ``--export-dir`` works for ``metartt-nano``."""
    folder = tmp_path / "nanotrack"
    assert build_main(["--tracker", "nanotrack", "--out", str(folder)]) == 0
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    assert set(manifest["graphs"]) == {"template", "search", "search_features"}
    assert "search_features.features" in manifest["parity"]["onnxruntime_cpu_real_crops"]
    frames, gt = crossing_frames(4)
    tracker = AdaptiveNanoTracker(AdaptiveNanoTrackConfig(export_dir=str(folder)))
    assert tracker.backend.name == "onnxruntime"
    tracker.init(frames[0], gt[0])
    assert all(np.isfinite(tracker.update(f)[0]).all() for f in frames[1:])
