"""What the NanoTrack-base tests share: the data root, a skip without the weights, real frames."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from runtime.paths import data_root
from runtime.sequences import load_sequence

DATA = data_root()
NPZ = DATA / "weights" / "nanotrack_v3" / "nanotrackv3_state_dict.npz"
CROSSING = DATA / "sequences" / "Crossing"
needs_weights = pytest.mark.skipif(
    not (NPZ.is_file() and CROSSING.is_dir()),
    reason=f"needs the NanoTrack v3 weights at {NPZ} and {CROSSING} (set TRACKER_DATA)",
)


def crossing_frames(n: int) -> tuple[list[np.ndarray], np.ndarray]:
    """The first ``n`` frames of Crossing (BGR) and their ground truth."""
    seq = load_sequence(CROSSING)
    return [cv2.imread(str(p)) for p in seq.frame_paths[:n]], seq.ground_truth[:n]
