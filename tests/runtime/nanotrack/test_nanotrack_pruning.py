"""One-shot pruning of the NanoTrack v3 head's towers (issue 16, third part): the sliced head
computes the masked head, masks of 1 are the base, checkpoints are bound to the base, the
tracker prunes per video, and the training resumes exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from runtime.backends.manifest import checkpoint_record
from runtime.nanotrack.adaptive import AdaptiveNanoTrackConfig, AdaptiveNanoTracker
from runtime.nanotrack.model import build_network
from runtime.nanotrack.pruning import (
    SHIPPED_NANO_PRUNE,
    NanoPruneCheckpoint,
    NanoPruneCheckpointError,
    head_outputs,
    kept_channels,
    layer_names,
    layer_widths,
    predict_masks,
    prune_rate,
    relative_macs,
    slice_head,
)
from runtime.prune_net import PruneNet, PruneNetConfig
from tests.support import DATA, needs_data
from train.nanotrack.metartt_nano_prune import NanoPruneTrainConfig, train


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.fixture(scope="module")
def net():
    return build_network(DATA / "weights")


def _inputs(net, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    with torch.inference_mode():
        kernels = net.template(torch.rand(1, 3, 127, 127, generator=g) * 255)
        xf = net.backbone(torch.rand(2, 3, 255, 255, generator=g) * 255)
    kernels = type(kernels)(*(k.expand(2, *k.shape[1:]) for k in kernels))
    return kernels, xf


@needs_data
def test_the_sliced_head_computes_the_masked_head(net):
    kernels, xf = _inputs(net)
    g = torch.Generator().manual_seed(1)
    masks = {
        name: (torch.rand(96, generator=g) < 0.5).float() * torch.rand(96, generator=g) * 2
        for name in layer_names()
    }
    masks["reg3"] = torch.zeros(96)  # a whole block cut: one zero channel is kept, folded to 0
    sliced = slice_head(net.head, masks)
    with torch.inference_mode():
        masked = head_outputs(net.head, kernels, xf, masks)
        logits, boxes = sliced(kernels, xf)
        features = sliced.classify_features(kernels, xf)
    assert _relative(logits, masked.logits) < 1e-5
    assert _relative(boxes, torch.exp(masked.box_logits)) < 1e-5
    assert _relative(features, masked.features) < 1e-5
    kept = int((masks["cls0"] > 0).sum())  # widths rounded up to multiples of 8, zero-mask pads
    assert sliced.cls_tower[2].in_channels == -(-kept // 8) * 8 == len(kept_channels(masks["cls0"]))
    assert sliced.bbox_tower[9].in_channels == 1 and sliced.bbox_tower[-1].out_channels == 96
    assert 0.45 < prune_rate(masks) < 0.6 and relative_macs(masks) < 0.5
    # the unmasked head is the network's own head
    with torch.inference_mode():
        full = head_outputs(net.head, kernels, xf, {})
        want_logits, want_boxes = net.head(kernels, xf)
    torch.testing.assert_close(full.logits, want_logits)
    torch.testing.assert_close(torch.exp(full.box_logits), want_boxes)


@needs_data
def test_an_untrained_pruning_network_keeps_every_channel(net):
    prune_net = PruneNet(layer_widths(net.head)).eval()
    kernels, xf = _inputs(net, 2)
    with torch.inference_mode():
        described = head_outputs(net.head, kernels, xf, {})
    masks = predict_masks(prune_net, described.activations)
    assert list(masks) == list(layer_names())
    assert all(torch.equal(m, torch.ones(96)) for m in masks.values())
    assert prune_rate(masks) == 0.0 and relative_macs(masks) == 1.0


def test_a_checkpoint_round_trips_and_refuses_other_base_weights(tmp_path):
    widths = {name: 96 for name in layer_names()}
    prune_net = PruneNet(widths, PruneNetConfig(hidden_fraction=0.25))
    state = prune_net.state_dict()
    path = tmp_path / "prune.pt"
    sha = NanoPruneCheckpoint(state, widths, prune_net.config, {"step": 3}).to_file(path, "a" * 64)
    loaded = NanoPruneCheckpoint.from_file(path, "a" * 64)
    assert loaded.sha256 == sha and loaded.info == {"step": 3}
    assert loaded.config.hidden_fraction == 0.25 and loaded.widths == widths
    for name, tensor in loaded.build().state_dict().items():
        torch.testing.assert_close(tensor, state[name])
    with pytest.raises(NanoPruneCheckpointError, match="trained for NanoTrack v3 weights"):
        NanoPruneCheckpoint.from_file(path, "b" * 64)
    path.write_bytes(b"junk")
    with pytest.raises(NanoPruneCheckpointError, match="not a readable checkpoint"):
        NanoPruneCheckpoint.from_file(path, "a" * 64)


def _trained_checkpoint(path) -> str:
    """A pruning network whose output biases cut every other channel of each block."""
    base = checkpoint_record("nanotrack", DATA / "weights")["sha256"]
    widths = {name: 96 for name in layer_names(("cls",))}
    prune_net = PruneNet(widths)
    state = prune_net.state_dict()
    for name in widths:
        state[f"mlps.{name}.3.bias"] = torch.tensor([1.0, -1.0] * 48)
    NanoPruneCheckpoint(state, widths, prune_net.config).to_file(path, base)
    return str(path)


def _untrained_checkpoint(path) -> str:
    base = checkpoint_record("nanotrack", DATA / "weights")["sha256"]
    widths = {name: 96 for name in layer_names()}
    prune_net = PruneNet(widths)
    NanoPruneCheckpoint(prune_net.state_dict(), widths, prune_net.config).to_file(path, base)
    return str(path)


@needs_data
def test_the_sliced_features_graph_computes_the_sliced_torch_head(tmp_path, crossing_frames):
    frames, gt = crossing_frames(2)
    keep_some = _trained_checkpoint(tmp_path / "some.pt")
    on_torch = AdaptiveNanoTracker(AdaptiveNanoTrackConfig(backend="torch", prune=keep_some))
    on_ort = AdaptiveNanoTracker(AdaptiveNanoTrackConfig(backend="onnxruntime", prune=keep_some))
    for tracker in (on_torch, on_ort):
        tracker.init(frames[0], gt[0])
    assert on_ort.backend.name == "onnxruntime" and on_ort.backend is not on_ort.full_backend
    masks = on_torch.masks
    assert masks.keys() == on_ort.masks.keys() and 0.0 < prune_rate(masks) < 1.0
    crop = torch.rand(1, 3, 255, 255, generator=torch.Generator().manual_seed(3)) * 255
    got = on_ort.backend.search(crop, on_ort.kernels)
    want = on_torch.backend.search(crop, on_torch.kernels)
    for g, w in zip(got, want, strict=True):
        assert _relative(g, w) < 1e-4


@needs_data
def test_pruning_that_keeps_everything_tracks_as_the_unpruned_tracker(tmp_path, crossing_frames):
    frames, gt = crossing_frames(12)
    keep_all = _untrained_checkpoint(tmp_path / "keep.pt")
    plain = AdaptiveNanoTracker(AdaptiveNanoTrackConfig())
    pruned = AdaptiveNanoTracker(AdaptiveNanoTrackConfig(prune=keep_all))
    for tracker in (plain, pruned):
        tracker.init(frames[0], gt[0])
    assert pruned.backend is not pruned.full_backend  # it sliced (and kept every channel)
    for frame in frames[1:]:
        (box_a, score_a), (box_b, score_b) = plain.update(frame), pruned.update(frame)
        np.testing.assert_allclose(box_b, box_a, rtol=1e-4, atol=1e-3)
        assert score_b == pytest.approx(score_a, abs=1e-4)
    assert pruned.run_stats()["prune_rate"] == 0.0


@needs_data
@pytest.mark.skipif(not SHIPPED_NANO_PRUNE.is_file(), reason="no shipped head-pruning checkpoint")
def test_the_shipped_pruning_network_cuts_channels_once_per_video(crossing_frames):
    frames, gt = crossing_frames(6)
    tracker = AdaptiveNanoTracker(AdaptiveNanoTrackConfig(prune="shipped"))
    tracker.init(frames[0], gt[0])
    first = tracker.backend
    stats = [tracker.update(f) for f in frames[1:]]
    assert tracker.backend is first and np.all(np.isfinite([b for b, _ in stats]))
    rate = tracker.run_stats()["prune_rate"]
    assert 0.0 < rate < 1.0 and tracker.run_stats()["tower_macs"] < 1.0
    tracker.init(frames[3], gt[3])  # a new video: masks predicted again, from the full head
    assert tracker.backend is not first


@needs_data
def test_pruning_training_resumes_to_what_an_uninterrupted_run_learns(tmp_path):
    tiny = {"frames_per_video": 3, "test_crops": 2, "episodes_per_step": 2}
    once = train(NanoPruneTrainConfig(steps=3, checkpoint_every=3, **tiny), DATA, tmp_path / "a")
    train(NanoPruneTrainConfig(steps=2, checkpoint_every=2, **tiny), DATA, tmp_path / "b")
    again = NanoPruneTrainConfig(steps=3, checkpoint_every=3, **tiny)
    twice = train(again, DATA, tmp_path / "b", True)
    base = checkpoint_record("nanotrack", DATA / "weights")["sha256"]
    a = NanoPruneCheckpoint.from_file(once, base).state
    b = NanoPruneCheckpoint.from_file(twice, base).state
    for name in a:
        torch.testing.assert_close(a[name], b[name])
    untrained = PruneNet({n: 96 for n in layer_names()}).state_dict()
    assert not torch.equal(a["mlps.cls0.3.bias"], untrained["mlps.cls0.3.bias"])
