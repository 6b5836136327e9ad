"""What the test files import: where the shared data is, and the skips for when it is not there.

The data folder is ``runtime.paths.data_root()`` (``$TRACKER_DATA``, else ``../shared/data``);
file names come from the code that reads them. The skip markers are here, not in conftest.py,
because a decorator is evaluated when its file is imported: ``from tests.support import
needs_data``. The fixtures are in tests/conftest.py.
"""

from __future__ import annotations

import pytest

from runtime.backbones.nanotrack import NANOTRACK_NPZ
from runtime.mlt.checkpoint import SHIPPED_CHECKPOINT as SHIPPED_MLT
from runtime.nanotrack.second_network import V2_DIR
from runtime.paths import DATA_ENV_VAR, data_root

DATA = data_root()
WEIGHTS = DATA / "weights"
SEQUENCES = DATA / "sequences"
SPLITS = DATA / "splits.json"
CROSSING = SEQUENCES / "Crossing"
VIDEOS = DATA / "videos"
NANOTRACK = WEIGHTS.joinpath(*NANOTRACK_NPZ)  # NanoTrack v3: every tracker's trunk
NANOTRACK_DIR = NANOTRACK.parent
# The authors' ONNX files, which the port is checked against.
AUTHORS_BACKBONE = NANOTRACK_DIR / "nanotrack_backbone.onnx"
AUTHORS_HEAD = NANOTRACK_DIR / "nanotrack_head.onnx"
NANOTRACK_V2 = DATA / V2_DIR  # the peer whose network the default nanotrack averages with v3

_FILES = (NANOTRACK, AUTHORS_BACKBONE, AUTHORS_HEAD, SPLITS)
_FOLDERS = (CROSSING, NANOTRACK_V2)

needs_weights = pytest.mark.skipif(
    not NANOTRACK.is_file(),
    reason=f"needs the NanoTrack v3 weights at {NANOTRACK} (set {DATA_ENV_VAR})",
)
needs_data = pytest.mark.skipif(
    not (all(p.is_file() for p in _FILES) and all(p.is_dir() for p in _FOLDERS)),
    reason=f"needs the shared data at {DATA}: the NanoTrack v3 weights and ONNX files, the "
    f"NanoTrack v2 peer, sequences/ and splits.json (set {DATA_ENV_VAR})",
)
needs_shipped_mlt = pytest.mark.skipif(
    not SHIPPED_MLT.is_file(), reason=f"no shipped MLT checkpoint at {SHIPPED_MLT}"
)
