"""OpenCV's trackers as peers (baselines to compare against, not ours), behind
:class:`runtime.tracker_api.Tracker`.

Names: ``cv2-csrt``, ``cv2-kcf``, ``cv2-mil`` (opencv-contrib), ``cv2-nano`` (``cv2.TrackerNano``
running the NanoTrack v2 ONNX pair from ``<data>/peers/nanotrack_v2/``) and ``cv2-vit``
(``cv2.TrackerVit`` running OpenCV Zoo's VitTrack from ``<data>/peers/vittrack/``). They live in
``runtime/`` so that the CLI (``--tracker cv2-nano``) and the Python API can run them as well as
``bench/``, which must never be imported by ``runtime/``.

Box convention at this boundary: OpenCV's trackers take and return integer pixel rectangles
``(x, y, w, h)``, 0-based, the same origin as the project's 0-based float boxes. So the only
conversion is rounding on the way in (and clipping to the frame, which OpenCV's trackers need) and
int -> float on the way out; it happens in :func:`to_cv_rect` and :func:`from_cv_rect` only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from runtime.paths import data_root, require_file
from runtime.tracker_api import check_init, check_update

NANO_DIR = Path("peers") / "nanotrack_v2"
NANO_BACKBONE = "nanotrack_backbone_sim.onnx"
NANO_NECKHEAD = "nanotrack_head_sim.onnx"
VIT_DIR = Path("peers") / "vittrack"
VIT_MODEL = "object_tracking_vittrack_2023sep.onnx"

CvRect = tuple[int, int, int, int]


def to_cv_rect(box: np.ndarray, frame_shape: tuple[int, ...]) -> CvRect:
    """0-based float ``x, y, w, h`` -> OpenCV's 0-based integer rect, clipped to the frame.

    Rounding the corners (not x and w separately) keeps the rect's right/bottom edge where the
    float box has it. Clipping matters: CSRT/KCF/MIL fail or crash on rects leaving the image.
    """
    x, y, w, h = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
    height, width = frame_shape[:2]
    x0 = min(max(round(x), 0), width - 1)
    y0 = min(max(round(y), 0), height - 1)
    x1 = min(max(round(x + w), x0 + 1), width)
    y1 = min(max(round(y + h), y0 + 1), height)
    return int(x0), int(y0), int(x1 - x0), int(y1 - y0)


def from_cv_rect(rect: Any) -> np.ndarray:
    """OpenCV's 0-based integer rect -> the project's 0-based float box (same origin)."""
    return np.asarray(rect, dtype=np.float64).reshape(4)


class OpenCVTracker:
    """Adapter: one OpenCV tracker object per ``init`` (OpenCV trackers cannot be re-initialized
    reliably, so a fresh one is built each time)."""

    def __init__(self, name: str, factory: Callable[[], Any]) -> None:
        self.name = name
        self._factory = factory
        self._tracker: Any = None
        self._last_box = np.full(4, np.nan)

    def init(self, frame: np.ndarray, box: np.ndarray) -> None:
        # The same checks and messages as our trackers (runtime.tracker_api): a box OpenCV would
        # take and silently clip (NaN, zero size, outside the frame) is refused.
        frame, box = check_init(frame, box)
        self._tracker = self._factory()
        rect = to_cv_rect(box, frame.shape)
        self._tracker.init(frame, rect)
        # Report the given box until the first successful update, not its rounded rect.
        self._last_box = np.asarray(box, dtype=np.float64).reshape(4).copy()

    def update(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        frame = check_update(frame, self._tracker is not None, self.name)
        ok, rect = self._tracker.update(frame)
        if not ok:
            # OpenCV gives no usable box on failure: hold the last one, with zero confidence.
            return self._last_box.copy(), 0.0
        self._last_box = from_cv_rect(rect)
        return self._last_box.copy(), self._score()

    def _score(self) -> float:
        # Only TrackerNano and TrackerVit expose a confidence; the others only say ok / not ok.
        get_score = getattr(self._tracker, "getTrackingScore", None)
        return float(get_score()) if get_score is not None else 1.0


def nano_model_paths(data_dir: Path | None = None) -> tuple[Path, Path]:
    """The NanoTrack v2 backbone and neck/head ONNX files; FileNotFoundError names a missing one."""
    folder = data_root(data_dir) / NANO_DIR
    backbone = require_file(folder / NANO_BACKBONE, "cv2-nano backbone ONNX " + NANO_BACKBONE)
    neckhead = require_file(folder / NANO_NECKHEAD, "cv2-nano neck/head ONNX " + NANO_NECKHEAD)
    return backbone, neckhead


def _nano_factory(data_dir: Path | None) -> Callable[[], Any]:
    backbone, neckhead = nano_model_paths(data_dir)  # checked now, not at the first init

    def build() -> Any:
        params = cv2.TrackerNano_Params()
        params.backbone = str(backbone)
        params.neckhead = str(neckhead)
        return cv2.TrackerNano.create(params)

    return build


def vit_model_path(data_dir: Path | None = None) -> Path:
    """VitTrack's ONNX file; FileNotFoundError names it when missing."""
    path = data_root(data_dir) / VIT_DIR / VIT_MODEL
    return require_file(path, "cv2-vit model ONNX " + VIT_MODEL)


def _vit_factory(data_dir: Path | None) -> Callable[[], Any]:
    model = vit_model_path(data_dir)  # checked now, not at the first init

    def build() -> Any:
        params = cv2.TrackerVit_Params()
        params.net = str(model)
        return cv2.TrackerVit.create(params)

    return build


_FACTORIES: dict[str, Callable[[Path | None], Callable[[], Any]]] = {
    "cv2-csrt": lambda _data: cv2.TrackerCSRT.create,
    "cv2-kcf": lambda _data: cv2.TrackerKCF.create,
    "cv2-mil": lambda _data: cv2.TrackerMIL.create,
    "cv2-nano": _nano_factory,
    "cv2-vit": _vit_factory,
}

PEER_NAMES: tuple[str, ...] = tuple(_FACTORIES)


def make_peer(name: str, data_dir: Path | None = None) -> OpenCVTracker:
    """Build an OpenCV peer by name; ``data_dir`` is the shared data root (for cv2-nano)."""
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise ValueError(f"unknown peer {name!r}; peers are: {', '.join(PEER_NAMES)}") from None
    return OpenCVTracker(name, factory(data_dir))
