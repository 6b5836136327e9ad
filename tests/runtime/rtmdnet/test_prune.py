"""One-shot channel pruning: sliced == masked on real crops, masks, checkpoints, the tracker."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from runtime.backbones import build_backbone
from runtime.backbones.common import keep_output_channels
from runtime.backends.torch_backend import TorchBackend
from runtime.crop import cut
from runtime.prune_net import PruneNet, PruneNetConfig
from runtime.roi_features import RoIFeatureExtractor, crop_to_tensor
from runtime.rtmdnet import RTMDNetConfig, RTMDNetTracker
from runtime.rtmdnet.geometry import search_window
from runtime.rtmdnet.meta import SHIPPED_CHECKPOINT, BatchSpec, MetaCheckpoint, adapt, forward_with
from runtime.rtmdnet.prune import (
    LAYERS,
    ChannelSelection,
    MaskedHead,
    PruneCheckpoint,
    PruneCheckpointError,
    channel_macs,
    descriptors,
    fit_masks,
    lasso_objective,
    layer_widths,
    mask_penalty,
    prune_setting,
)
from runtime.sequences import load_sequence
from tests.support import DATA, needs_weights

CELLS = 9
FAST = {"n_neg_init": 2000, "init_jitter_scales": (1.0, 1.1)}


def _relative(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).norm() / want.norm())


def _masks(seed: int = 0, widths=None) -> dict[str, torch.Tensor]:
    """About half of every layer zero, the rest scales in (0.2, 1.5): folding must matter."""
    gen = torch.Generator().manual_seed(seed)
    widths = widths or {"conv": 96, "fc4": 512, "fc5": 512}
    masks = {}
    for layer, n in widths.items():
        m = torch.rand(n, generator=gen) * 1.3 + 0.2
        m[torch.rand(n, generator=gen) < 0.5] = 0.0
        masks[layer] = m
    return masks


@pytest.fixture(scope="module")
def real_crop():
    """A search crop of a real frame cut the tracker's way, and 256 candidate RoIs in it."""
    sequence = load_sequence(DATA / "sequences" / "Gym")
    frame = cv2.imread(str(sequence.frame_paths[5]))
    tracker = RTMDNetTracker(RTMDNetConfig(**FAST))
    box = sequence.ground_truth[5]
    window = search_window(box, box[2:] * 2.0, tracker.config, tracker.extractor.stride)
    crop = cut(frame, window, (114.0, 114.0, 114.0))
    rng = np.random.default_rng(0)
    boxes = np.repeat(box[None], 256, axis=0)
    boxes[:, :2] += rng.normal(0, 0.3, (256, 2)) * box[2:]
    rois = torch.from_numpy(window.rois(boxes, tracker.config.roi_padding)).float()
    return crop, rois


@needs_weights
@pytest.mark.parametrize("conv_width", [None, 64])
def test_sliced_network_scores_like_the_masked_one_on_real_crops(real_crop, conv_width):
    """Also at a fixed conv width above the masks' count (a refitted engine's): zero-mask
    channels fill it up and change nothing."""
    crop, rois = real_crop
    extractor = RoIFeatureExtractor(build_backbone("nanotrack", DATA / "weights")).eval()
    meta = MetaCheckpoint.from_file(SHIPPED_CHECKPOINT)
    head = meta.build_head()
    batch = torch.zeros(len(rois), dtype=torch.int64)
    with torch.no_grad():
        full = extractor(crop_to_tensor(crop), rois, batch)
    head.input_scale.fill_(1.0 / float(full.std()))
    masks = _masks()
    selection = ChannelSelection.from_masks(masks, conv_width and {"conv": conv_width})
    if conv_width:
        assert len(selection.keep["conv"]) == conv_width > int((masks["conv"] > 0).sum())
    params = {n: p.detach() for n, p in head.named_parameters()}
    small_head = selection.slice_head(head, params, CELLS)
    small_extractor = extractor.keep_channels(selection.keep["conv"])
    with torch.no_grad():
        sliced = small_extractor(crop_to_tensor(crop), rois, batch)  # a smaller conv, for real
        want = MaskedHead(head, masks, CELLS)(full)
        got = small_head(sliced)
    assert small_extractor.backbone.output_conv().weight.shape[0] == len(selection.keep["conv"])
    assert sliced.shape[1] == len(selection.keep["conv"]) * CELLS
    assert small_head.fc4[0].weight.shape == (len(selection.keep["fc4"]), sliced.shape[1])
    assert small_head.fc5[1].weight.shape[0] == len(selection.keep["fc5"])
    assert _relative(got, want) < 1e-5
    # The masked network is really pruned: the unmasked one scores differently.
    assert _relative(head(full), want) > 1e-2


def test_learned_steps_on_the_sliced_head_equal_those_on_the_masked_head():
    meta = MetaCheckpoint.from_file(SHIPPED_CHECKPOINT)
    head = meta.build_head()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(600, head.fc4[0].in_features, generator=gen).relu()
    pos, neg = x[:100] + 0.5, x[100:]
    masks = _masks(1)
    selection = ChannelSelection.from_masks(masks)
    masked = MaskedHead(head, masks, CELLS)
    small = selection.slice_head(head, dict(head.named_parameters()), CELLS)
    cols = selection.feature_columns(CELLS)
    spec = BatchSpec()
    rates = meta.rates("on")
    after_masked = adapt(
        masked, dict(masked.named_parameters()), pos, neg, rates, spec, np.random.default_rng(2)
    )
    after_sliced = adapt(
        small,
        dict(small.named_parameters()),
        pos[:, cols],
        neg[:, cols],
        selection.slice_rates(rates, CELLS),
        spec,
        np.random.default_rng(2),
    )
    want = forward_with(masked, after_masked, x)
    assert _relative(forward_with(small, after_sliced, x[:, cols]), want) < 1e-5
    before = forward_with(masked, dict(masked.named_parameters()), x)
    assert _relative(before, want) > 1e-3  # the steps did move the scores


def test_selection_counts_and_an_all_zero_layer_keeps_one_channel():
    conv = torch.tensor([0.0, 1.0, 0.0, 2.0])
    masks = {"conv": conv, "fc4": torch.zeros(3), "fc5": torch.ones(2)}
    selection = ChannelSelection.from_masks(masks)
    assert selection.kept() == {"conv": 2, "fc4": 1, "fc5": 2}
    assert selection.prune_rate == pytest.approx(1 - 5 / 9)
    assert selection.feature_columns(2).tolist() == [2, 3, 6, 7]


def test_a_fixed_width_keeps_the_top_k_channels_by_mask():
    conv = torch.tensor([0.0, 0.3, 0.0, 2.0, 0.9, 0.0])
    masks = {"conv": conv, "fc4": torch.ones(3), "fc5": torch.ones(2)}
    assert ChannelSelection.from_masks(masks, {"conv": 2}).keep["conv"].tolist() == [3, 4]
    padded = ChannelSelection.from_masks(masks, {"conv": 5}).keep["conv"]
    assert len(padded) == 5 and {1, 3, 4} <= set(padded.tolist())
    assert padded.tolist() == sorted(padded.tolist())
    assert ChannelSelection.from_masks(masks, {"conv": 99}).kept()["conv"] == 6


def test_pruning_net_starts_unpruned_and_the_objective_trades_sparsity_for_error():
    widths = {"conv": 8, "fc4": 16, "fc5": 12}
    gen = torch.Generator().manual_seed(0)
    params = {
        "fc4.0.weight": torch.randn(16, 8 * CELLS, generator=gen) * 0.1,
        "fc4.0.bias": torch.zeros(16),
        "fc5.1.weight": torch.randn(12, 16, generator=gen) * 0.3,
        "fc5.1.bias": torch.zeros(12),
        "fc6.1.weight": torch.randn(2, 12, generator=gen) * 0.3,
        "fc6.1.bias": torch.zeros(2),
    }
    x = torch.randn(200, 8 * CELLS, generator=gen).relu()
    for static in (False, True):
        net = PruneNet(widths, PruneNetConfig(static=static)).eval()
        masks = net(descriptors(params, x, CELLS, np.random.default_rng(0)))
        assert all(torch.equal(masks[layer], torch.ones(widths[layer])) for layer in LAYERS)
        loss, parts = lasso_objective([params], x, masks, 0.5, CELLS)
        assert parts["recon"] == pytest.approx(0.0, abs=1e-10) and parts["l1"] == 1.0
    light = ChannelSelection.from_masks(fit_masks(params, x, widths, 0.02, 150, 0.05, CELLS))
    heavy = ChannelSelection.from_masks(fit_masks(params, x, widths, 1.0, 150, 0.05, CELLS))
    assert 0.0 <= light.prune_rate < heavy.prune_rate


def test_flop_weighted_penalty_is_the_kept_share_of_macs():
    widths = {"conv": 8, "fc4": 16, "fc5": 12}
    macs = channel_macs(widths, CELLS)
    # a conv channel feeds CELLS fc4 columns for every RoI: it costs more than an fc4 unit
    assert macs["conv"] > macs["fc4"] > macs["fc5"]
    ones = {layer: torch.ones(n) for layer, n in widths.items()}
    assert float(mask_penalty(ones, macs)) == pytest.approx(1.0)
    no_conv = {**ones, "conv": torch.zeros(8)}
    share = macs["conv"] * 8 / sum(macs[layer] * n for layer, n in widths.items())
    assert float(mask_penalty(no_conv, macs)) == pytest.approx(1.0 - share)
    assert float(mask_penalty(no_conv)) == pytest.approx(2 / 3)  # the paper's: mean of layers
    # the same number of channels cut costs the FLOP-weighted term more where they are dearer
    half_conv = {**ones, "conv": torch.tensor([1.0] * 4 + [0.0] * 4)}
    half_fc5 = {**ones, "fc5": torch.tensor([1.0] * 8 + [0.0] * 4)}
    assert mask_penalty(half_conv, macs) < mask_penalty(half_fc5, macs)


def test_checkpoint_round_trip_and_refusals(tmp_path):
    net = PruneNet({"conv": 8, "fc4": 16, "fc5": 12})
    with torch.no_grad():
        for p in net.parameters():
            p.uniform_(-1, 1)
    ckpt = PruneCheckpoint(net.state_dict(), net.widths, net.config, "ab" * 32, {"step": 3})
    sha = ckpt.to_file(tmp_path / "p.pt")
    loaded = PruneCheckpoint.from_file(tmp_path / "p.pt")
    assert loaded.sha256 == sha and loaded.info == {"step": 3}
    rebuilt = loaded.build()
    for name, p in net.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[name], p)
    loaded.check_compatible("ab" * 32)
    with pytest.raises(PruneCheckpointError, match="trained for meta checkpoint abab"):
        loaded.check_compatible("cd" * 32)
    with pytest.raises(PruneCheckpointError, match="no meta checkpoint"):
        loaded.check_compatible(None)
    with pytest.raises(PruneCheckpointError, match="not found"):
        PruneCheckpoint.from_file(tmp_path / "missing.pt")
    torch.save({"format": "metartt-head/1"}, tmp_path / "meta.pt")
    with pytest.raises(PruneCheckpointError, match="not a MetaRTT pruning checkpoint"):
        PruneCheckpoint.from_file(tmp_path / "meta.pt")
    assert prune_setting("fit") == "fit"
    with pytest.raises(PruneCheckpointError, match="no pruning checkpoint at nope.pt"):
        prune_setting("nope.pt")


@needs_weights
def test_backbones_without_a_sliceable_output_conv_say_so():
    backbone = build_backbone("mobilenet_v2", DATA / "weights")
    with pytest.raises(ValueError, match="cannot be sliced"):
        keep_output_channels(backbone, torch.arange(10))


@needs_weights
@pytest.mark.slow
def test_tracker_prunes_once_at_the_first_frame_and_runs_smaller(tmp_path):
    sequence = load_sequence(DATA / "sequences" / "Gym")
    frames = [cv2.imread(str(p)) for p in sequence.frame_paths[:12]]
    # A strong L1 weight, so the conv layer loses channels too and the backbone is sliced.
    config = RTMDNetConfig(
        meta=str(SHIPPED_CHECKPOINT), prune="fit", prune_fit_sparsity=0.5, **FAST
    )
    tracker = RTMDNetTracker(config)
    full_backend = tracker.backend
    tracker.init(frames[0], sequence.ground_truth[0])
    selection = tracker.selection
    assert selection is not None and 0.0 < selection.prune_rate < 1.0
    kept = selection.kept()
    assert kept["conv"] < 96
    assert tracker.head.fc4[0].weight.shape == (kept["fc4"], kept["conv"] * CELLS)
    assert tracker.backend is not full_backend
    widths = layer_widths(MetaCheckpoint.from_file(SHIPPED_CHECKPOINT).build_head(), CELLS)
    stats = tracker.run_stats()
    assert stats["prune_rate"] == selection.prune_rate
    assert stats["kept_conv"] == kept["conv"] / widths["conv"]
    for frame in frames[1:]:  # frame 10: a long-term update with the sliced rates
        box, score = tracker.update(frame)
        assert np.isfinite(box).all() and np.isfinite(score)
    # A new video starts from the unpruned network again.
    tracker.init(frames[0], sequence.ground_truth[0])
    assert tracker.selection is not selection
    # A backend built at a fixed conv width (a refittable TensorRT engine) gets exactly that.
    fixed = TorchBackend(tracker.extractor)
    fixed.channel_budget = 80
    tracker.backend = fixed
    tracker.init(frames[0], sequence.ground_truth[0])
    assert tracker.selection.kept()["conv"] == 80
    assert tracker.backend.feature_map(torch.zeros(1, 3, 128, 128)).shape[1] == 80


@needs_weights
def test_a_pruning_checkpoint_for_another_meta_checkpoint_is_refused(tmp_path):
    meta = MetaCheckpoint.from_file(SHIPPED_CHECKPOINT)
    widths = layer_widths(meta.build_head(), CELLS)
    net = PruneNet(widths)
    PruneCheckpoint(net.state_dict(), widths, net.config, "0" * 64).to_file(tmp_path / "p.pt")
    with pytest.raises(PruneCheckpointError, match="trained for meta checkpoint 000000000000"):
        RTMDNetTracker(RTMDNetConfig(meta=str(SHIPPED_CHECKPOINT), prune=str(tmp_path / "p.pt")))


@needs_weights
@pytest.mark.slow
def test_the_pruning_guard_keeps_the_whole_network_when_pruning_costs_first_frame_loss():
    sequence = load_sequence(DATA / "sequences" / "Gym")
    frame, box = cv2.imread(str(sequence.frame_paths[0])), sequence.ground_truth[0]
    strong = {"meta": str(SHIPPED_CHECKPOINT), "prune": "fit", "prune_fit_sparsity": 0.5, **FAST}
    pruned = RTMDNetTracker(RTMDNetConfig(**strong))
    pruned.init(frame, box)
    stats = pruned.run_stats()
    full, cut = stats["first_loss_unpruned"], stats["first_loss_pruned"]
    assert cut > full > 0.0  # half the channels gone: the first frame fits worse
    assert pruned.selection.prune_rate > 0.0
    # A guard looser than the loss ratio lets the same pruning through; a tighter one refuses.
    loose = RTMDNetTracker(RTMDNetConfig(prune_guard=cut / full, **strong))
    loose.init(frame, box)
    assert loose.selection.kept() == pruned.selection.kept()
    guarded = RTMDNetTracker(RTMDNetConfig(prune_guard=0.5 * (cut / full - 1.0), **strong))
    guarded.init(frame, box)
    assert guarded.selection.prune_rate == 0.0
    assert guarded.run_stats()["first_loss_pruned"] == pytest.approx(cut)  # what it tested
