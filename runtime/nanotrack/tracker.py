"""The ``nanotrack`` tracker: NanoTrack v3 and v2 on the same crops, averaged; a lost state.

The procedure is NanoTrack v3's published tracker (``NanoTrack/nanotrack/tracker/nano_tracker.py``
in HonglinChu/SiamTrackers, read and rewritten here; values in :mod:`runtime.nanotrack.config`):

- init: a square template crop of side ``sqrt((w + p)(h + p))``, ``p = (w + h) / 2``, around the
  box, resized to 127, padded with the frame's mean colour; its kernels are computed once.
- update: a search crop of side ``s_x = s_z * 255 / 127`` around the last centre, resized to 255;
  the network gives a 15x15 map of target probabilities and, per cell, the distances from the
  cell's point (stride 16, centred on the crop's centre) to the box's four edges. Each cell's box
  is penalised by its change of scale and aspect ratio against the last box
  (``exp(-(r_c * s_c - 1) * k)``), blended with a cosine window, and the best cell wins; its
  centre is taken as is, its size smoothed with ``lr = penalty * score * LR``; the box is clipped
  to the frame (centre inside, sides 10 px to the frame's).

Where this differs from the reference, on purpose: the crop side is not rounded to whole pixels
(the reference rounds the crop but divides by the unrounded scale; here the two agree), and the
crop is cut with :func:`runtime.crop.square_crop` (continuous coordinates, area pre-filtering for
strong downscaling) like every other tracker in the project (each measured better on the 44
shared sequences: docs/nanotrack.md). And (ours) NanoTrack v2 scores the same 255 crop beside
v3 (:mod:`runtime.nanotrack.second_network`, ``fusion_weight``): the two networks' per-cell
probabilities and edge distances are averaged before the penalties.

Lost target (ours): after ``lost_patience`` frames in a row whose best probability is under
``lost_threshold`` the tracker reports ``lost``; a frame at ``recover_threshold`` or more ends it.
With ``recovery`` (off by default) the search crop grows by ``search_growth`` pixels a frame
while lost, at the same scale, up to ``max_instance_size`` (the map grows from 15x15 to at most
23x23 cells, v3 alone), and the box keeps its size. ``update`` returns the calibrated
P(IoU > 0) of the chosen cell (``calibrate``), ``raw_score`` its probability.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from runtime.backends import create_backend
from runtime.backends.openvino_backend import OpenVinoSiameseBackend
from runtime.backends.siamese import SiameseBackend
from runtime.confidence import Calibration, calibration_for
from runtime.crop import exemplar_side, square_crop
from runtime.nanotrack.config import NanoTrackConfig
from runtime.nanotrack.deploy import siamese_spec
from runtime.nanotrack.second_network import MIN_SEARCH_SIDE, SecondNetwork
from runtime.stage_clock import StageClock
from runtime.tracker_api import Tracker, check_frame, check_init, check_update, require_init


def map_side(instance_size: int, stride: int = 16) -> int:
    """Score-map side for a search crop: ``ceil(S / 16)`` feature cells, minus 1 (correlation)."""
    return math.ceil(instance_size / stride) - 1


def check_compact_side(config: NanoTrackConfig) -> None:
    """ValueError unless ``compact_instance_size`` is 0 (off) or a smaller crop whose map has
    a centre cell, as the full crop's does (``ceil(S / 16)`` even: 159, 191, 223 ...)."""
    side = config.compact_instance_size
    cells = math.ceil(side / config.stride)
    if side and not (MIN_SEARCH_SIDE < side < config.instance_size and cells % 2 == 0):
        raise ValueError(
            f"compact_instance_size={side}: 0 (off) or a side above {MIN_SEARCH_SIDE} and "
            f"below instance_size={config.instance_size} giving an odd map "
            f"(ceil(S / {config.stride}) - 1 cells a side), such as 159, 191 or 223"
        )


def cell_points(side: int, stride: int) -> np.ndarray:
    """``(2, side*side)`` x, y of each map cell in crop pixels from the crop's centre."""
    offsets = (np.arange(side) - side // 2) * stride
    x, y = np.meshgrid(offsets, offsets)
    return np.stack([x.ravel(), y.ravel()]).astype(np.float64)


def frame_fill(frame: np.ndarray) -> tuple[float, float, float]:
    """The colour outside the frame in every crop: the first frame's mean (the reference's)."""
    return tuple(float(v) for v in frame.reshape(-1, 3).mean(axis=0))  # type: ignore[return-value]


def template_crop(
    frame: np.ndarray, box: np.ndarray, config: NanoTrackConfig, fill: tuple[float, float, float]
) -> np.ndarray:
    """The 127 x 127 template crop of ``box`` (0-based x, y, w, h), as the tracker cuts it."""
    box = np.asarray(box, dtype=np.float64)
    side = round(exemplar_side(box, config.context_amount))  # the reference rounds s_z here
    return square_crop(frame, box[:2] + box[2:] / 2.0, side, config.exemplar_size, fill)


def search_scale(size: np.ndarray, config: NanoTrackConfig) -> float:
    """Crop pixels per frame pixel of every search crop for a target of ``size`` (w, h)."""
    return config.exemplar_size / exemplar_side(np.array([0.0, 0.0, *size]), config.context_amount)


def search_crop(
    frame: np.ndarray,
    center: np.ndarray,
    size: np.ndarray,
    instance_size: int,
    config: NanoTrackConfig,
    fill: tuple[float, float, float],
) -> np.ndarray:
    """The ``instance_size`` square search crop around ``center``, as the tracker cuts it."""
    scale = search_scale(size, config)
    return square_crop(frame, center, instance_size / scale, instance_size, fill)


def cosine_window(side: int) -> np.ndarray:
    hann = np.hanning(side)
    return np.outer(hann, hann).ravel()


def _change(r: np.ndarray) -> np.ndarray:
    return np.maximum(r, 1.0 / r)


def _padded_side(w: np.ndarray | float, h: np.ndarray | float) -> np.ndarray:
    pad = (w + h) * 0.5
    return np.sqrt((w + pad) * (h + pad))


@dataclass
class TrackState:
    """Everything ``update`` reads and writes besides the template (one target's state)."""

    center: np.ndarray  # frame pixels, 0-based continuous
    size: np.ndarray  # w, h frame pixels
    instance_size: int  # search crop side now (grows while lost)
    low_streak: int = 0  # consecutive frames under lost_threshold
    sure_streak: int = 0  # consecutive frames at compact_min_score or more
    lost: bool = False
    lost_frames: int = 0  # frames reported lost since init
    raw_score: float = float("nan")  # the last chosen cell's target probability

    def copy(self) -> TrackState:
        return replace(self, center=self.center.copy(), size=self.size.copy())


class NanoTracker:
    name = "nanotrack"

    def __init__(
        self,
        config: NanoTrackConfig | None = None,
        data_dir: Path | None = None,
        backend: SiameseBackend | None = None,
        second: SecondNetwork | None = None,
    ) -> None:
        self.config = c = config or NanoTrackConfig()
        check_compact_side(c)
        self.data_dir = data_dir
        fusing = c.fusion_weight > 0.0
        # Fusing, v2 runs beside v3 on its own thread (second_network.py says why always) and
        # v3 keeps the other threads, at least one.
        total = int(c.threads or torch.get_num_threads())
        v3_config = replace(c, threads=max(1, total - 1)) if fusing else c
        # verbose=False: the CLI reports the choice (runtime.track), unless --quiet
        self.backend = backend or create_backend(siamese_spec(v3_config, data_dir), verbose=False)
        # v2 runs where v3 does: on OpenVINO at its precision with it, else on ONNX Runtime.
        engine, precision, cache = "onnxruntime", "fp32", None
        if isinstance(self.backend, OpenVinoSiameseBackend):
            engine, precision, cache = "openvino", self.backend.precision, self.backend.cache_dir
        if fusing:
            self.second = second or SecondNetwork(data_dir, 1, engine, precision, cache)
        else:
            self.second = None
        if isinstance(self.backend, OpenVinoSiameseBackend):
            # the crop sizes this tracker feeds, compiled now rather than on their first frame
            sides = sorted({c.instance_size, c.compact_instance_size} - {0})
            self.backend.prepare(sides)
            if self.second is not None:
                self.second.prepare(sides)
        self.second_template: np.ndarray | None = None
        # Looked up by the family's name, not self.name: a preset's name is not a calibration.
        self.calibration: Calibration | None = (
            calibration_for("nanotrack", "logit") if c.calibrate else None
        )
        self.device = torch.device(c.device if self.backend.name != "onnxruntime" else "cpu")
        self._maps: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.state: TrackState | None = None
        self.stage_clock = StageClock()

    @property
    def lost(self) -> bool:
        """Whether the target is reported lost after the last ``update``."""
        return self.state is not None and self.state.lost

    @property
    def raw_score(self) -> float:
        """The last chosen cell's target probability, before calibration (``nan`` before one)."""
        return float("nan") if self.state is None else self.state.raw_score

    # -- geometry ------------------------------------------------------------------------------
    def _map(self, instance_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Cell points and cosine window for a search crop side (cached per side)."""
        if instance_size not in self._maps:
            side = map_side(instance_size, self.config.stride)
            self._maps[instance_size] = (
                cell_points(side, self.config.stride),
                cosine_window(side),
            )
        return self._maps[instance_size]

    def _tensor(self, crop: np.ndarray) -> torch.Tensor:
        # Converted by numpy, not by a torch op: a torch op wakes torch's OpenMP workers, whose
        # spin-wait then holds the other core while ONNX Runtime (and v2 beside it) run; with
        # both networks that took a frame's search from 3.5 to 6.3 ms on 2 cores.
        array = np.ascontiguousarray(crop.transpose(2, 0, 1)[None], dtype=np.float32)
        tensor = torch.from_numpy(array)
        return tensor if self.device.type == "cpu" else tensor.to(self.device)

    # -- tracking ------------------------------------------------------------------------------
    def init(self, frame: np.ndarray, box: np.ndarray) -> None:
        frame, box = check_init(frame, box)
        c = self.config
        self.frame_hw = frame.shape[:2]
        self.fill = frame_fill(frame)
        crop = self._tensor(template_crop(frame, box, c, self.fill))
        self.kernels = self.backend.template(crop)
        if self.second is not None:
            self.second_template = self.second.template(crop.cpu().numpy())
        self.state = TrackState(box[:2] + box[2:] / 2.0, box[2:].copy(), c.instance_size)

    def follow(self, other: NanoTracker) -> None:
        """Take ``other``'s per-frame state, keeping this tracker's own template (lockstep)."""
        assert other.state is not None, "follow() a tracker that was init()-ed"
        self.state = other.state.copy()

    def update(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        frame = check_update(frame, self.state is not None, self.name)
        with self.stage_clock.stage("crop"):
            crop = self._search_crop(frame)
        with self.stage_clock.stage("backbone"):
            score, delta = self._search(crop)
        return self._conclude(score, delta)

    def _search_crop(self, frame: np.ndarray) -> torch.Tensor:
        """This frame's search crop around the last centre, ``(1, 3, S, S)``."""
        st = self.state
        patch = search_crop(frame, st.center, st.size, st.instance_size, self.config, self.fill)
        return self._tensor(patch)

    def _conclude(self, score: np.ndarray, delta: np.ndarray) -> tuple[np.ndarray, float]:
        """The best cell of the search's scores and edge distances -> the new box and score."""
        c, st, clock = self.config, self.state, self.stage_clock
        scale_z = search_scale(st.size, c)  # crop pixels per frame pixel, any crop side
        with clock.stage("candidate_scoring"):
            points, window = self._map(st.instance_size)
            x1, y1 = points[0] - delta[0], points[1] - delta[1]
            x2, y2 = points[0] + delta[2], points[1] + delta[3]
            cx, cy, w, h = (x1 + x2) / 2.0, (y1 + y2) / 2.0, x2 - x1, y2 - y1
            scale_change = _change(_padded_side(w, h) / _padded_side(*(st.size * scale_z)))
            ratio_change = _change((st.size[0] / st.size[1]) / (w / h))
            penalty = np.exp(-(ratio_change * scale_change - 1.0) * c.penalty_k)
            pscore = penalty * score * (1.0 - c.window_influence) + window * c.window_influence
            best = int(np.argmax(pscore))
            best_score = float(score[best])

        with clock.stage("box_regression"):
            st.raw_score = best_score
            self._update_lost_state(st, best_score)
            st.instance_size = self._next_search_side(st, math.hypot(cx[best], cy[best]))
            lr = 0.0 if st.lost and c.recovery else penalty[best] * best_score * c.lr
            center = st.center + np.array([cx[best], cy[best]]) / scale_z
            size = st.size * (1.0 - lr) + np.array([w[best], h[best]]) / scale_z * lr
            height, width = self.frame_hw
            st.center = np.clip(center, 0.0, [width, height])
            st.size = np.clip(size, c.min_side, [max(width, c.min_side), max(height, c.min_side)])
        confidence = best_score if self.calibration is None else self.calibration(best_score)
        return np.concatenate([st.center - st.size / 2.0, st.size]), confidence

    # -- several targets -------------------------------------------------------------------------
    def sibling(self) -> NanoTracker:
        """A tracker with no target yet on this one's network: the backend shared, not
        reloaded (a subclass, which owns more than the backend, builds its own)."""
        if type(self) is NanoTracker:
            sibling = NanoTracker(self.config, self.data_dir, self.backend, self.second)
        else:
            sibling = type(self)(self.config, self.data_dir)
        sibling.name = self.name
        return sibling

    @property
    def can_batch(self) -> bool:
        """Whether :meth:`update_targets` batches: a backend that takes several crops a call
        (torch; the exported graphs take one), this class's own scoring (not a subclass's), and
        one network (the second one runs a crop at a time). Both networks' searches spread over
        two worker threads instead measured no faster than one target after another on this
        2-core CPU (docs/speed.md, "Several targets")."""
        return (
            type(self) is NanoTracker
            and self.second is None
            and bool(getattr(self.backend, "batches", False))
        )

    def update_targets(
        self, targets: Sequence[Tracker], frame: np.ndarray
    ) -> list[tuple[np.ndarray, float]] | None:
        """Update ``targets`` (this tracker and its siblings) on one frame, their search crops
        of equal side stacked into one backend call; ``None`` where that cannot be done (a
        backend that runs one crop at a time, a subclass, another network): each updates alone.
        """
        if not self.can_batch or not all(
            type(t) is NanoTracker and t.backend is self.backend for t in targets
        ):
            return None
        group: list[NanoTracker] = list(targets)  # type: ignore[arg-type]  (checked above)
        for tracker in group:
            require_init(tracker.state is not None, tracker.name)
        frame = check_frame(frame)
        results: list[tuple[np.ndarray, float] | None] = [None] * len(group)
        by_side: dict[int, list[int]] = {}
        for i, tracker in enumerate(group):
            by_side.setdefault(tracker.state.instance_size, []).append(i)
        for members in by_side.values():
            crops = torch.cat([group[i]._search_crop(frame) for i in members])
            stacked = zip(*(group[i].kernels for i in members), strict=True)
            kernels = [torch.cat(parts) for parts in stacked]
            scores_t, boxes_t = self.backend.search(crops, kernels)
            scores = scores_t.detach().cpu().numpy().astype(np.float64)
            boxes = boxes_t.detach().cpu().numpy().astype(np.float64)
            for row, i in enumerate(members):
                score, delta = scores[row].reshape(-1), boxes[row].reshape(4, -1)
                results[i] = group[i]._conclude(score, delta)
        return results  # type: ignore[return-value]  (every index filled)

    def _v3_search(
        self, crop: torch.Tensor, kernels: Sequence[torch.Tensor]
    ) -> tuple[np.ndarray, np.ndarray]:
        """v3's per-cell target probabilities ``(n,)`` and edge distances ``(4, n)``."""
        scores_t, boxes_t = self.backend.search(crop, kernels)
        score = scores_t.detach().cpu().numpy().reshape(-1).astype(np.float64)
        delta = boxes_t.detach().cpu().numpy().reshape(4, -1).astype(np.float64)
        return score, delta

    def _fuse(
        self,
        v3: tuple[np.ndarray, np.ndarray],
        v2: tuple[np.ndarray, np.ndarray] | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """v3's cells, averaged with v2's where v2 scored the crop (``fusion_weight``)."""
        if v2 is None:
            return v3
        w = self.config.fusion_weight
        return (1.0 - w) * v3[0] + w * v2[0], (1.0 - w) * v3[1] + w * v2[1]

    def _search(self, crop: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """One search crop -> per-cell target probability ``(n,)`` and edge distances ``(4, n)``
        in crop pixels (a subclass may score the cells its own way: runtime.nanotrack.adaptive).

        With the second network (crops up to 255: :meth:`SecondNetwork.scores`), both networks
        run at once, v2 on its worker thread, and their cells are averaged."""
        pending = None
        if self.second is not None and self.second.scores(crop.shape[-1]):
            pending = self.second.start_search(crop.cpu().numpy(), self.second_template)
        v3 = self._v3_search(crop, self.kernels)
        return self._fuse(v3, None if pending is None else pending.result())

    def _update_lost_state(self, st: TrackState, best_score: float) -> None:
        """Lost after a streak of low scores; widen the search while lost, shrink on recovery."""
        c = self.config
        st.low_streak = st.low_streak + 1 if best_score < c.lost_threshold else 0
        if not st.lost and st.low_streak >= c.lost_patience:
            st.lost = True
        elif st.lost and best_score >= c.recover_threshold:
            st.lost = False
        st.lost_frames += int(st.lost)

    def _next_search_side(self, st: TrackState, motion: float) -> int:
        """The next frame's search crop side: widened while lost (with ``recovery``), compact
        while the target has been sure for ``compact_patience`` frames in a row, is slow and
        inside the frame (``compact_instance_size``), else the full 255.

        ``motion``: how far the chosen cell moved the centre this frame, in crop pixels. A box
        closer to the frame's edge than ``compact_edge_margin`` times its own width (height)
        gets the full crop: a target leaving the frame may come back anywhere along that edge
        (tld_pedestrian3, docs/speed.md)."""
        c = self.config
        if c.recovery and st.lost:
            return min(st.instance_size + c.search_growth, c.max_instance_size)
        height, width = self.frame_hw
        reach = (0.5 + c.compact_edge_margin) * st.size
        low, high = st.center - reach, st.center + reach
        inside = bool(np.all(low >= 0.0) and high[0] <= width and high[1] <= height)
        st.sure_streak = st.sure_streak + 1 if st.raw_score >= c.compact_min_score else 0
        sure = st.sure_streak >= max(1, c.compact_patience)
        if c.compact_instance_size and sure and motion <= c.compact_max_motion and inside:
            return c.compact_instance_size
        return c.instance_size

    def run_stats(self) -> dict[str, float]:
        """Per-video numbers for the CLI summary and bench.ope."""
        return {"lost_frames": float(self.state.lost_frames if self.state else 0)}

    def __repr__(self) -> str:
        return f"NanoTracker({self.backend!r})"
