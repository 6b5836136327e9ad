"""Simulated tracking episodes for MetaRTT meta-training (Jung et al., AAAI 2020, Algorithm 1).

One episode is a few frames of one video, in temporal order:

- frame 0 gives ``D_init``: positives (IoU >= 0.7) and negatives (IoU <= 0.5) drawn around the
  ground truth exactly as ``RTMDNetTracker.init`` draws them (same specs, same filters);
- the middle frames are for online adaptation on *estimated* targets: the trainer runs the
  adapted head on candidates (:func:`draw_candidates`) and then draws ``D_on`` around its own
  estimate (:func:`draw_online_samples`), both as ``RTMDNetTracker.update`` does;
- the last frame gives ``D_test^std``: positives and negatives around its ground truth;
- ``D_test^hard``: ground-truth boxes of ``K`` *other* videos (the target there), labelled
  negative here, to simulate distractors.

An :class:`Episode` carries decoded frames (BGR uint8) and boxes (0-based ``x, y, w, h``), never
features: the trainer cuts crops with :func:`crop_features`, which cuts one window the way the
tracker does, so training and tracking see identical features.

:func:`pseudo_video` makes a short video from a still image (the paper's "+COCO" variant), and
:meth:`EpisodeSampler.episode_from_video` turns such frames into an episode.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from runtime.boxes import iou
from runtime.crop import CropWindow, cut
from runtime.roi_features import RoIFeatureExtractor, crop_to_tensor
from runtime.rtmdnet.config import RTMDNetConfig
from runtime.rtmdnet.tracker import (
    POS_SPEC,
    covering_half_extent,
    init_examples,
    search_window,
    update_examples,
)
from runtime.sampling import SampleSpec, draw, draw_filtered
from runtime.sequences import Sequence
from train.datasets import annotated, is_aerial, read_frame


# ------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------
@dataclass
class EpisodeConfig:
    """How episodes are drawn. Sample specs and IoU ranges follow ``RTMDNetConfig``."""

    # --- frames --------------------------------------------------------------------------
    n_frames: int = 6  # init + 4 online + test, in temporal order, from one video
    max_span: int = 100  # all frames of an episode lie within this many consecutive frames
    # Frames whose ground-truth box lies less than this much inside the image are skipped like
    # NaN rows (train_extra/MANIFEST.md: "clip or skip ... out-of-frame boxes").
    min_visible_fraction: float = 0.5
    aerial_fraction: float = 0.5  # share of episodes from aerial videos (the rest ground-level)
    max_attempts: int = 50  # redraws before giving up on an unusable pick

    # IoU ranges and sample specs are the tracker's (``tracker`` below); only counts live here.
    # --- D_init (first frame, ground truth), as RTMDNetTracker.init --------------------------
    n_pos_init: int = 500  # RTMDNetConfig.n_pos_init; 32..500 are sensible for meta-training
    n_neg_init: int = 5000  # RTMDNetConfig.n_neg_init

    # --- D_on (middle frames, around the estimated target), as RTMDNetTracker.update ---------
    n_pos_online: int = 50
    n_neg_online: int = 200

    # --- D_test^std (last frame, ground truth): the D_init thresholds ------------------------
    n_pos_test: int = 50
    n_neg_test: int = 200

    # --- D_test^hard: targets of other videos, labelled negative -----------------------------
    # K is not given in the text we could check; 8 other videos per episode is our choice.
    n_hard_videos: int = 8
    n_hard_per_video: int = 1  # the ground-truth box, plus (n-1) positives (IoU >= 0.7) around it

    # --- crops: the tracker's own settings (target size, crop limit, RoI padding, candidates)
    tracker: RTMDNetConfig = field(default_factory=RTMDNetConfig)

    def __post_init__(self) -> None:
        if self.n_frames < 2:
            raise ValueError("an episode needs at least 2 frames (init and test)")
        if self.max_span < self.n_frames:
            raise ValueError(f"max_span {self.max_span} < n_frames {self.n_frames}")
        if not 0.0 <= self.aerial_fraction <= 1.0:
            raise ValueError("aerial_fraction must be in [0, 1]")
        for name in ("n_pos_init", "n_neg_init", "n_pos_test", "n_neg_test", "n_hard_per_video"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")


# ------------------------------------------------------------------------------------------
# Episodes
# ------------------------------------------------------------------------------------------
@dataclass
class EpisodeFrame:
    index: int  # frame index in its sequence
    image: np.ndarray  # H x W x 3 uint8 BGR (cv2.imread)
    box: np.ndarray  # (4,) ground truth, 0-based x, y, w, h

    @property
    def frame_wh(self) -> tuple[int, int]:
        return (self.image.shape[1], self.image.shape[0])


@dataclass
class HardExample:
    """A frame of another video; ``boxes`` (its target there) are negatives for this episode."""

    sequence: str
    index: int
    image: np.ndarray
    box: np.ndarray  # (4,) that video's ground truth: the window is cut around it
    boxes: np.ndarray  # (n, 4); boxes[0] is the ground truth itself


@dataclass
class Episode:
    sequence: str
    aerial: bool
    frames: list[EpisodeFrame]  # temporal order: [0] init, [1:-1] online, [-1] test
    init_pos: np.ndarray  # (n, 4) IoU >= 0.7 with frames[0].box
    init_neg: np.ndarray  # (n, 4) IoU <= 0.5
    test_pos: np.ndarray  # (n, 4) around frames[-1].box
    test_neg: np.ndarray
    hard: list[HardExample]

    @property
    def init(self) -> EpisodeFrame:
        return self.frames[0]

    @property
    def online(self) -> list[EpisodeFrame]:
        return self.frames[1:-1]

    @property
    def test(self) -> EpisodeFrame:
        return self.frames[-1]

    @property
    def indices(self) -> list[int]:
        return [f.index for f in self.frames]


def visible_fraction(box: np.ndarray, frame_wh: tuple[int, int]) -> float:
    """Share of ``box``'s area inside the frame (0 for NaN or empty boxes)."""
    box = np.asarray(box, dtype=np.float64)
    if not np.isfinite(box).all() or box[2] <= 0 or box[3] <= 0:
        return 0.0
    x1, y1 = max(box[0], 0.0), max(box[1], 0.0)
    x2, y2 = min(box[0] + box[2], frame_wh[0]), min(box[1] + box[3], frame_wh[1])
    inside = max(x2 - x1, 0.0) * max(y2 - y1, 0.0)
    return float(inside / (box[2] * box[3]))


def _window_starts(indices: np.ndarray, n_frames: int, max_span: int) -> np.ndarray:
    """Positions ``p`` in ``indices`` with ``n_frames`` annotated frames in [idx[p], +max_span)."""
    if len(indices) < n_frames:
        return np.zeros(0, dtype=np.int64)
    ends = np.searchsorted(indices, indices + max_span, side="left")
    return np.flatnonzero(ends - np.arange(len(indices)) >= n_frames)


# ------------------------------------------------------------------------------------------
# Sample draws shared with the trainer (exactly the tracker's specs)
# ------------------------------------------------------------------------------------------
def draw_init_samples(
    box: np.ndarray, frame_wh: tuple[int, int], config: EpisodeConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``D_init`` boxes: as ``RTMDNetTracker.init`` (POS_SPEC / NEG_INIT and the IoU filters)."""
    return init_examples(box, frame_wh, config.tracker, rng, config.n_pos_init, config.n_neg_init)


def draw_test_samples(
    box: np.ndarray, frame_wh: tuple[int, int], config: EpisodeConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``D_test^std`` boxes around the test frame's ground truth (the D_init specs)."""
    return init_examples(box, frame_wh, config.tracker, rng, config.n_pos_test, config.n_neg_test)


def draw_candidates(
    box: np.ndarray,
    frame_wh: tuple[int, int],
    config: EpisodeConfig,
    rng: np.random.Generator,
    expanded: bool = False,
) -> np.ndarray:
    """Candidates around the previous estimate, as ``RTMDNetTracker.update`` draws them.

    ``expanded`` widens the search as the tracker does after a failed frame.
    """
    c = config.tracker
    trans_f = c.trans_f_expand if expanded else c.trans_f
    spec = SampleSpec("gaussian", trans_f, c.scale_f, keep_inside=True)
    return draw(spec, box, c.n_samples, frame_wh, rng)


def draw_online_samples(
    estimate: np.ndarray,
    frame_wh: tuple[int, int],
    config: EpisodeConfig,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """``D_on`` boxes around the *estimated* target, as ``RTMDNetTracker.update`` draws them."""
    return update_examples(
        estimate, frame_wh, config.tracker, rng, config.n_pos_online, config.n_neg_online
    )


# ------------------------------------------------------------------------------------------
# The sampler
# ------------------------------------------------------------------------------------------
class EpisodeSampler:
    """Draws episodes from ``sequences``, half from aerial and half from ground-level videos.

    Within a view, every usable sequence is equally likely (as MDNet samples one video per
    iteration), so a long video does not dominate. A sequence is usable if it has
    ``n_frames`` annotated frames within some ``max_span`` window; the others only serve as
    sources of hard examples.
    """

    def __init__(
        self, sequences: list[Sequence], config: EpisodeConfig | None = None, seed: int = 0
    ) -> None:
        self.config = config or EpisodeConfig()
        self.sequences = list(sequences)
        if len(self.sequences) < 2:
            raise ValueError("need at least two sequences (hard examples come from other videos)")
        self.rng = np.random.default_rng(seed)
        c = self.config
        self._annotated = [annotated(s) for s in self.sequences]
        self._starts = [_window_starts(a, c.n_frames, c.max_span) for a in self._annotated]
        usable = [i for i, starts in enumerate(self._starts) if len(starts)]
        # Too short for an episode; such sequences still give hard examples.
        self.unusable = [
            s.name
            for s, starts in zip(self.sequences, self._starts, strict=True)
            if not len(starts)
        ]
        self.groups: dict[str, list[int]] = {
            "aerial": [i for i in usable if is_aerial(self.sequences[i])],
            "ground": [i for i in usable if not is_aerial(self.sequences[i])],
        }
        if not usable:
            raise ValueError(
                f"no sequence has {c.n_frames} annotated frames within {c.max_span} frames"
            )

    # --------------------------------------------------------------------------------------
    def choose_sequence(self, rng: np.random.Generator) -> int:
        """Index of the episode's video: aerial with ``aerial_fraction``, if both kinds exist."""
        aerial, ground = self.groups["aerial"], self.groups["ground"]
        if aerial and ground:
            group = aerial if rng.random() < self.config.aerial_fraction else ground
        else:
            group = aerial or ground
        return int(group[rng.integers(len(group))])

    def choose_frames(self, seq_index: int, rng: np.random.Generator) -> np.ndarray:
        """``n_frames`` annotated frame indices, increasing, within one ``max_span`` window."""
        c = self.config
        indices = self._annotated[seq_index]
        start = int(self._starts[seq_index][rng.integers(len(self._starts[seq_index]))])
        first = indices[start]
        window = indices[(indices > first) & (indices < first + c.max_span)]
        rest = rng.choice(window, size=c.n_frames - 1, replace=False)
        return np.concatenate([[first], np.sort(rest)]).astype(np.int64)

    # --------------------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator | None = None) -> Episode:
        """One episode (frames decoded). Redraws if a pick turns out unusable after decoding."""
        rng = self.rng if rng is None else rng
        c = self.config
        for _ in range(c.max_attempts):
            seq_index = self.choose_sequence(rng)
            sequence = self.sequences[seq_index]
            indices = self.choose_frames(seq_index, rng)
            images = [read_frame(sequence.frame_paths[i]) for i in indices]
            boxes = [sequence.ground_truth[i] for i in indices]
            episode = self._build(
                sequence.name, is_aerial(sequence), indices, images, boxes, rng, seq_index
            )
            if episode is not None:
                return episode
        raise RuntimeError(f"no usable episode in {c.max_attempts} attempts")

    def episode_from_video(
        self,
        name: str,
        images: list[np.ndarray],
        boxes: np.ndarray,
        rng: np.random.Generator | None = None,
        aerial: bool = False,
    ) -> Episode:
        """An episode from in-memory frames (e.g. :func:`pseudo_video`), all used in order.

        Hard examples still come from this sampler's sequences.
        """
        rng = self.rng if rng is None else rng
        if len(images) != self.config.n_frames or len(boxes) != self.config.n_frames:
            raise ValueError(f"need {self.config.n_frames} frames and boxes, got {len(images)}")
        episode = self._build(
            name, aerial, np.arange(len(images)), list(images), list(boxes), rng, None
        )
        if episode is None:
            raise ValueError(f"{name}: a box is NaN, out of frame, or yields no samples")
        return episode

    # --------------------------------------------------------------------------------------
    def _build(
        self,
        name: str,
        aerial: bool,
        indices: np.ndarray,
        images: list[np.ndarray],
        boxes: list[np.ndarray],
        rng: np.random.Generator,
        seq_index: int | None,
    ) -> Episode | None:
        c = self.config
        frames = [
            EpisodeFrame(int(i), img, np.asarray(b, dtype=np.float64).copy())
            for i, img, b in zip(indices, images, boxes, strict=True)
        ]
        if any(visible_fraction(f.box, f.frame_wh) < c.min_visible_fraction for f in frames):
            return None
        init_pos, init_neg = draw_init_samples(frames[0].box, frames[0].frame_wh, c, rng)
        test_pos, test_neg = draw_test_samples(frames[-1].box, frames[-1].frame_wh, c, rng)
        if not (len(init_pos) and len(init_neg) and len(test_pos) and len(test_neg)):
            return None
        hard = self._hard_examples(seq_index, rng)
        return Episode(name, aerial, frames, init_pos, init_neg, test_pos, test_neg, hard)

    def _hard_examples(self, exclude: int | None, rng: np.random.Generator) -> list[HardExample]:
        """Targets of ``n_hard_videos`` other videos, one random annotated frame each."""
        c = self.config
        others = [i for i in range(len(self.sequences)) if i != exclude and len(self._annotated[i])]
        chosen = rng.permutation(others)[: c.n_hard_videos]
        out: list[HardExample] = []
        for i in chosen:
            sequence = self.sequences[int(i)]
            for _ in range(c.max_attempts):
                index = int(self._annotated[i][rng.integers(len(self._annotated[i]))])
                image = read_frame(sequence.frame_paths[index])
                box = sequence.ground_truth[index].astype(np.float64)
                frame_wh = (image.shape[1], image.shape[0])
                if visible_fraction(box, frame_wh) >= c.min_visible_fraction:
                    break
            else:
                continue  # no visible target found in this video: leave it out
            extra = np.zeros((0, 4))
            if c.n_hard_per_video > 1:
                extra = draw_filtered(
                    POS_SPEC,
                    box,
                    c.n_hard_per_video - 1,
                    frame_wh,
                    rng,
                    c.tracker.overlap_pos_init,
                )
            out.append(HardExample(sequence.name, index, image, box, np.vstack([box, extra])))
        return out


# ------------------------------------------------------------------------------------------
# Features, cut exactly as the tracker cuts them
# ------------------------------------------------------------------------------------------
def crop_window(
    target_box: np.ndarray,
    boxes: np.ndarray,
    config: EpisodeConfig | RTMDNetConfig,
    stride: int,
    jitter: float = 1.0,
    min_half_extent: np.ndarray | None = None,
) -> CropWindow:
    """The window ``RTMDNetTracker`` would cut around ``target_box`` to pool ``boxes``.

    Scale ``target_px / sqrt(w*h)`` (times ``jitter``, as the first frame's extra crops), centred
    on the target, covering every box padded by ``roi_padding``; ``min_half_extent`` lets a caller
    reproduce ``update``'s window, which also covers its update negatives.
    """
    c = config.tracker if isinstance(config, EpisodeConfig) else config
    target = np.asarray(target_box, dtype=np.float64)
    half = covering_half_extent(
        target, np.asarray(boxes, dtype=np.float64).reshape(-1, 4), c.roi_padding
    )
    if min_half_extent is not None:
        half = np.maximum(half, np.asarray(min_half_extent, dtype=np.float64))
    return search_window(target, half, c, stride, jitter)


@dataclass
class WindowFeatures:
    """One window cut from a frame and its backbone feature map; pools any set of boxes."""

    extractor: RoIFeatureExtractor
    window: CropWindow
    feature_map: torch.Tensor
    roi_padding: float

    def pool(self, boxes: np.ndarray, requires_grad: bool = False) -> torch.Tensor:
        """``(N, D)`` RoI features of ``boxes`` (frame coordinates, 0-based)."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        device = self.feature_map.device
        rois = torch.from_numpy(self.window.rois(boxes, self.roi_padding)).float().to(device)
        batch = torch.zeros(len(rois), dtype=torch.int64, device=device)
        with torch.set_grad_enabled(requires_grad):
            return self.extractor.pool(self.feature_map, rois, batch)


def window_features(
    extractor: RoIFeatureExtractor,
    frame: np.ndarray,
    target_box: np.ndarray,
    boxes: np.ndarray,
    config: EpisodeConfig | RTMDNetConfig,
    *,
    jitter: float = 1.0,
    fill: tuple[float, float, float] | None = None,
    min_half_extent: np.ndarray | None = None,
    requires_grad: bool = False,
) -> WindowFeatures:
    """Cut ONE window around ``target_box`` covering ``boxes`` and run the backbone on it.

    Cut and backbone as ``RTMDNetTracker`` does (``search_window``, ``covering_half_extent``,
    ``_feature_map``). ``fill`` is the colour outside the frame; the tracker uses the *first*
    frame's mean colour for the whole video, so pass the init frame's
    ``frame.reshape(-1, 3).mean(0)`` for later frames to match it exactly (default: this frame's
    mean). Runs without autograd unless ``requires_grad``.
    """
    c = config.tracker if isinstance(config, EpisodeConfig) else config
    window = crop_window(target_box, boxes, c, extractor.stride, jitter, min_half_extent)
    if fill is None:
        fill = tuple(float(v) for v in frame.reshape(-1, 3).mean(axis=0))
    parameter = next(extractor.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    crop = cut(frame, window, fill)
    with torch.set_grad_enabled(requires_grad):
        fmap = extractor.feature_map(crop_to_tensor(crop, device))
    return WindowFeatures(extractor, window, fmap, c.roi_padding)


def crop_features(
    extractor: RoIFeatureExtractor,
    frame: np.ndarray,
    target_box: np.ndarray,
    boxes: np.ndarray,
    config: EpisodeConfig | RTMDNetConfig,
    *,
    requires_grad: bool = False,
    **window_options,
) -> torch.Tensor:
    """``(N, D)`` RoI features of ``boxes`` from ONE window around ``target_box``:
    :func:`window_features` (``jitter``, ``fill``, ``min_half_extent``), then its ``pool``."""
    view = window_features(
        extractor, frame, target_box, boxes, config, requires_grad=requires_grad, **window_options
    )
    return view.pool(boxes, requires_grad)


# ------------------------------------------------------------------------------------------
# "+COCO": pseudo-videos from still images
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PseudoVideoConfig:
    """Random motion for :func:`pseudo_video`: a random walk of zoom and shift per frame.

    The paper says only "random resize and shift"; these magnitudes are our choice, about what
    frames a few apart in a real video show.
    """

    scale_step: float = 1.1  # per-frame zoom factor drawn log-uniformly from [1/s, s]
    shift_step: float = 0.3  # per-frame shift, uniform, in units of the target's sqrt(w*h)
    scale_range: tuple[float, float] = (0.5, 2.0)  # limits of the accumulated zoom


def pseudo_video(
    image: np.ndarray,
    box: np.ndarray,
    n_frames: int,
    rng: np.random.Generator,
    config: PseudoVideoConfig | None = None,
) -> tuple[list[np.ndarray], np.ndarray]:
    """A short video from one still image: each frame an affine warp (zoom + shift) of it.

    Frame 0 is the image itself. Each later frame zooms about the current target centre and
    shifts, with the target centre kept inside the frame. Returns the frames (same size as
    ``image``) and their boxes ``(n_frames, 4)``, 0-based ``x, y, w, h``: the warp maps frame
    coordinates ``p -> s * p + t`` and the box goes with it.
    """
    config = config or PseudoVideoConfig()
    box = np.asarray(box, dtype=np.float64).reshape(4)
    if not np.isfinite(box).all() or box[2] <= 0 or box[3] <= 0:
        raise ValueError(f"pseudo_video needs a real box, got {box.tolist()}")
    if n_frames < 1:
        raise ValueError("n_frames must be >= 1")
    height, width = image.shape[:2]
    fill = tuple(
        float(v) for v in image.reshape(-1, image.shape[2] if image.ndim == 3 else 1).mean(0)
    )
    centre0 = box[:2] + box[2:] / 2
    side = float(np.sqrt(box[2] * box[3]))
    s, t = 1.0, np.zeros(2)
    frames: list[np.ndarray] = []
    boxes = np.zeros((n_frames, 4))
    for k in range(n_frames):
        if k > 0:
            zoom = float(np.exp(rng.uniform(-1.0, 1.0) * np.log(config.scale_step)))
            zoom = float(np.clip(s * zoom, *config.scale_range)) / s
            centre = s * centre0 + t
            shift = rng.uniform(-1.0, 1.0, size=2) * config.shift_step * side * s
            # Zoom about the target's current centre (so it does not fly off), then shift.
            s, t = s * zoom, zoom * (t - centre) + centre + shift
            # Keep the target centre inside the frame.
            new_centre = s * centre0 + t
            t += np.clip(new_centre, [0.0, 0.0], [width - 1.0, height - 1.0]) - new_centre
        boxes[k] = [s * box[0] + t[0], s * box[1] + t[1], s * box[2], s * box[3]]
        if k == 0:
            frames.append(image.copy())
            continue
        # Continuous frame coordinates (pixel i covers [i, i+1)) map p -> s p + t; OpenCV works
        # on pixel centres (index i sits at i + 0.5), hence the half-pixel terms.
        matrix = np.array(
            [[s, 0.0, t[0] + 0.5 * s - 0.5], [0.0, s, t[1] + 0.5 * s - 0.5]], dtype=np.float64
        )
        frames.append(
            cv2.warpAffine(
                image,
                matrix,
                (width, height),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=fill,
            )
        )
    return frames, boxes


def iou_with(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    """IoU of each of ``boxes`` with ``box`` (a convenience for checks and tests)."""
    return iou(np.asarray(boxes).reshape(-1, 4), np.asarray(box).reshape(1, 4))


__all__ = [
    "Episode",
    "EpisodeConfig",
    "EpisodeFrame",
    "EpisodeSampler",
    "HardExample",
    "PseudoVideoConfig",
    "annotated",
    "crop_features",
    "crop_window",
    "draw_candidates",
    "draw_init_samples",
    "draw_online_samples",
    "draw_test_samples",
    "iou_with",
    "pseudo_video",
    "read_frame",
    "visible_fraction",
    "window_features",
    "WindowFeatures",
]
