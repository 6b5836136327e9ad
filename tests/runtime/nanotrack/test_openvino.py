"""The openvino backend (runtime/backends/openvino_backend.py) on nanotrack's graphs: fp32 computes
what ONNX Runtime computes; bf16, where the CPU has the units, stays close and tracks; v2 runs on
the same engine. Speed is bench.speed's, never asserted here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from runtime.backends import create_backend
from runtime.backends.openvino_backend import openvino_status
from runtime.boxes import iou
from runtime.nanotrack import NanoTrackConfig, NanoTracker
from runtime.nanotrack.deploy import siamese_spec
from tests.support import needs_data

pytestmark = pytest.mark.skipif(
    not openvino_status("fp32")[0], reason=f"no OpenVINO here: {openvino_status('fp32')[1]}"
)
needs_bf16 = pytest.mark.skipif(
    not openvino_status("bf16")[0], reason=f"no bf16 here: {openvino_status('bf16')[1]}"
)


def _crops(side: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(0)
    template = torch.from_numpy((rng.random((1, 3, 127, 127)) * 255).astype(np.float32))
    return template, torch.from_numpy((rng.random((1, 3, side, side)) * 255).astype(np.float32))


def _outputs(backend, side: int) -> list[np.ndarray]:
    template, search = _crops(side)
    return [t.numpy() for t in backend.search(search, backend.template(template))]


@needs_data
@pytest.mark.parametrize("side", [255, 191])
def test_openvino_fp32_computes_what_onnxruntime_does(side: int) -> None:
    reference = create_backend(siamese_spec(NanoTrackConfig(backend="onnxruntime")), verbose=False)
    openvino = create_backend(
        siamese_spec(NanoTrackConfig(backend="openvino", precision="fp32")), verbose=False
    )
    assert openvino.name == "openvino"
    for got, want in zip(_outputs(openvino, side), _outputs(reference, side), strict=True):
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


@needs_data
@needs_bf16
def test_openvino_bf16_stays_close_and_tracks(crossing_frames) -> None:
    reference = create_backend(siamese_spec(NanoTrackConfig(backend="onnxruntime")), verbose=False)
    bf16 = create_backend(
        siamese_spec(NanoTrackConfig(backend="openvino", precision="bf16")), verbose=False
    )
    (scores, boxes), (want_scores, want_boxes) = _outputs(bf16, 255), _outputs(reference, 255)
    assert np.abs(scores - want_scores).max() < 0.1  # probabilities: bf16 keeps 8 bits
    assert np.abs(boxes - want_boxes).max() < 0.1 * np.abs(want_boxes).max()
    frames, gt = crossing_frames(30)
    tracker = NanoTracker(NanoTrackConfig(backend="openvino", precision="bf16"))
    assert tracker.second is not None and tracker.second.engine == "openvino"
    tracker.init(frames[0], gt[0])
    tracked = np.stack([tracker.update(frame)[0] for frame in frames[1:]])
    assert iou(tracked, gt[1:]).mean() > 0.6


@needs_data
def test_openvino_refuses_the_target_layer_trackers_in_one_line() -> None:
    from runtime.registry import create_tracker

    with pytest.raises(ValueError, match="target layer run on onnxruntime or torch, not openvino"):
        create_tracker("metartt-nano[backend=openvino]")


SIGNAL_AFTER_OPENVINO = """
import gc, os, signal, sys
import numpy as np
from runtime.registry import create_tracker

frame = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
tracker = create_tracker("nanotrack[backend=openvino;precision=fp32]")
tracker.init(frame, np.array([140.0, 100.0, 40.0, 40.0]))
for _ in range(3):
    tracker.update(frame)
del tracker
gc.collect()  # OpenVINO's objects freed: a signal stack it left behind would be freed with them

def stop(signum, frame):
    raise KeyboardInterrupt

signal.signal(signal.SIGTERM, stop)
for _ in range(5):
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        signal.sigtimedwait([], 0.01) if hasattr(signal, "sigtimedwait") else None
    except KeyboardInterrupt:
        print("stopped", flush=True)
"""


@needs_data
def test_signals_after_openvino_ran_reach_python_and_do_not_crash() -> None:
    """OpenVINO leaves an alternate signal stack on a thread that compiles and starts threads
    of its own; both once turned a SIGTERM after a run into a segmentation fault
    (openvino_backend._signal_state_kept). In a child process: a crash must not kill pytest."""
    run = subprocess.run(
        [sys.executable, "-c", SIGNAL_AFTER_OPENVINO],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.count("stopped") == 5
