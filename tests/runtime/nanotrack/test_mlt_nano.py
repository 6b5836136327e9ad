"""MLT on the NanoTrack v3 base (issue 16): the kernel generator, its checkpoint, the trackers
``mlt-nano`` / ``mlt-nano[generator=adam]``, and the generator's training resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from runtime.backends.manifest import checkpoint_record
from runtime.nanotrack import NanoTrackConfig, NanoTracker
from runtime.nanotrack.kernel_generator import (
    KernelGenerator,
    KernelGeneratorCheckpointError,
    base_gradient,
    load_generator,
    save_generator,
)
from runtime.nanotrack.mlt_nano import FINETUNE, MLTNanoConfig, MLTNanoTracker
from runtime.nanotrack.target_layer import FEATURES, CropSample, balanced_loss
from runtime.registry import create_tracker
from tests.support import DATA, needs_data
from train.nanotrack.mlt_nano import MLTNanoTrainConfig, train


def _sample(seed: int = 0) -> CropSample:
    g = torch.Generator().manual_seed(seed)
    labels = (torch.rand(225, generator=g) < 0.1).float()
    feats = torch.randn(FEATURES, 225, generator=g)
    return CropSample(feats, torch.randn(225, generator=g), labels)


def test_an_untrained_generator_gives_the_base_exactly():
    generator = KernelGenerator(torch.randn(FEATURES))
    w, b = generator.generate([_sample(0), _sample(1)])
    assert torch.equal(w, torch.zeros(FEATURES)) and float(b) == 0.0


def test_the_attention_scales_the_base_direction_inside_the_generated_residual():
    direction = torch.randn(FEATURES)
    generator = KernelGenerator(direction)
    last = generator.net[-1]
    with torch.no_grad():
        last.bias[:FEATURES] = 0.5  # dw
        last.bias[FEATURES] = -0.25  # db
        last.bias[FEATURES + 1 :] = 10.0  # attention ~2: the base direction doubled
    w, b = generator.generate([_sample()])
    torch.testing.assert_close(w, 0.5 + (2.0 - 1.0) * direction, rtol=1e-4, atol=1e-4)
    assert float(b) == pytest.approx(-0.25)


def test_the_input_is_the_loss_gradient_at_the_base():
    samples = [_sample(0), _sample(1)]
    grad = base_gradient(samples)
    w = torch.zeros(FEATURES, requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    balanced_loss(w, b, samples).backward()
    torch.testing.assert_close(grad, torch.cat([w.grad, b.grad[None]]))


def test_checkpoints_round_trip_and_are_bound_to_the_base(tmp_path):
    generator = KernelGenerator(torch.randn(FEATURES), hidden=32)
    with torch.no_grad():
        generator.net[-1].bias.normal_()
    save_generator(tmp_path / "g.pt", generator, {"note": "test"}, "abc")
    loaded, info, sha = load_generator(tmp_path / "g.pt", "abc")
    gradient = base_gradient([_sample()])
    torch.testing.assert_close(loaded(gradient)[0], generator(gradient)[0])
    assert info["note"] == "test" and len(sha) == 64
    with pytest.raises(KernelGeneratorCheckpointError, match="retrain it"):
        load_generator(tmp_path / "g.pt", "other")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(KernelGeneratorCheckpointError):
        load_generator(tmp_path / "bad.pt", "abc")


@needs_data
def test_mlt_nano_with_an_untrained_generator_tracks_as_the_base(tmp_path, crossing_frames):
    frames, gt = crossing_frames(8)
    direction = torch.randn(FEATURES)
    base_sha = checkpoint_record("nanotrack", DATA / "weights")["sha256"]
    save_generator(tmp_path / "zero.pt", KernelGenerator(direction), {}, base_sha)
    # v3 alone on the full crop every frame, as theirs
    base = NanoTracker(NanoTrackConfig(backend="torch", fusion_weight=0.0, compact_instance_size=0))
    zero = str(tmp_path / "zero.pt")
    mlt = MLTNanoTracker(MLTNanoConfig(generator=zero, online_interval=3, backend="torch"))
    for tracker in (base, mlt):
        tracker.init(frames[0], gt[0])
    for frame in frames[1:]:
        (box_a, score_a), (box_b, score_b) = base.update(frame), mlt.update(frame)
        np.testing.assert_allclose(box_b, box_a, rtol=1e-5, atol=1e-4)
        assert score_b == pytest.approx(score_a, abs=1e-5)
    assert mlt.updates == 2  # generated at frames 3 and 6 (zero kernels)
    assert mlt.run_stats()["layer_updates"] == 2.0


@needs_data
def test_the_shipped_trackers_generate_or_fine_tune_on_schedule(crossing_frames):
    frames, gt = crossing_frames(8)
    generated = create_tracker("mlt-nano", online_interval=3)
    tuned = create_tracker("mlt-nano[generator=adam]", ft_interval=4, ft_steps=3)
    assert isinstance(tuned, MLTNanoTracker) and tuned.config.generator == FINETUNE
    for tracker in (generated, tuned):
        tracker.init(frames[0], gt[0])
        boxes = [tracker.update(f)[0] for f in frames[1:]]
        assert np.all(np.isfinite(boxes))
    assert generated.updates == 2 and tuned.updates == 1
    assert generated.generator_sha256 is not None
    assert float(generated.w.abs().sum()) > 0  # the shipped generator is not the base
    assert generated.backend.name == "onnxruntime"  # the graph cache's features graph
    with pytest.raises(ValueError, match="no TensorRT engine"):
        create_tracker("mlt-nano", backend="tensorrt")


@needs_data
def test_generator_training_resumes_to_what_an_uninterrupted_run_learns(tmp_path):
    tiny = {"frames_per_video": 3, "m_context": 2, "m_prime": 3, "distractor_crops": 1}
    tiny |= {"hidden": 16}
    once = train(MLTNanoTrainConfig(steps=3, checkpoint_every=3, **tiny), DATA, tmp_path / "a")
    train(MLTNanoTrainConfig(steps=2, checkpoint_every=2, **tiny), DATA, tmp_path / "b")
    again = train(
        MLTNanoTrainConfig(steps=3, checkpoint_every=3, **tiny), DATA, tmp_path / "b", True
    )
    base = checkpoint_record("nanotrack", DATA / "weights")["sha256"]
    a, _, _ = load_generator(once, base)
    b, _, _ = load_generator(again, base)
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, msg=name)
    assert float(a.net[-1].weight.abs().sum()) > 0  # it trained
