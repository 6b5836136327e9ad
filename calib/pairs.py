"""A nanotrack calibration set: real (template, search) crop pairs from training sequences.

``python -m calib.build --tracker nanotrack --out DIR [--count 300] [--data DIR] [--seed 0]
[--no-extra]``

The nanotrack search graph (``search.onnx``) takes a search crop and the four template kernels,
so its calibration data is pairs. Each training sequence (the ``train`` split of ``sequences/``
plus ``train_extra/``; ``val`` is refused, :func:`calib.sources.calibration_sequences`) gives:

- one template: its first frame at the ground truth, cut by
  :func:`runtime.nanotrack.tracker.template_crop` (127 x 127) with
  :func:`~runtime.nanotrack.tracker.frame_fill` of that frame, as ``NanoTracker.init`` does;
- search crops at later frames, cut by :func:`~runtime.nanotrack.tracker.search_crop` around
  the ground truth jittered the way a tracker's estimate strays (the crop follows the estimate:
  its centre and its size, which sets the crop's scale), as ``NanoTracker.update`` does. Most
  are 255 x 255; a share are cut at the widened sides of the lost-target search (287, 383).

The kernels are not stored: they depend on the weights, and ``net.template`` recomputes them from
the template crops in well under a second. Written to ``DIR``: ``pairs.npz`` (``template_00000``
... 127 x 127 x 3 and ``search_00000`` ... S x S x 3, uint8 BGR) and ``settings.json``
(``"tracker": "nanotrack"``, split, sources, sequences, each template's and each pair's sequence,
frame, ground truth, estimate and side, the jitter, the config fields used, the seed and the
sha256 of ``pairs.npz``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from calib.sources import (
    SETTINGS_FILE,
    SPLIT,
    calibration_sequences,
    check_tracker,
    jittered,
    per_sequence_counts,
    read_settings,
)
from runtime.hashing import sha256_file
from runtime.nanotrack.config import NanoTrackConfig
from runtime.nanotrack.tracker import frame_fill, search_crop, template_crop
from runtime.sequences import Sequence, load_sequence

TRACKER = "nanotrack"
PAIRS_FILE = "pairs.npz"
SETTINGS_FORMAT = 1
# How a tracker's estimate strays from the ground truth between frames: centre shift, Gaussian
# with this sigma per axis in target sides (|shift| median 0.18, 10-90 % 0.07-0.32 sides), and
# a size factor 1.05 ** N(0, 1). The search crop is cut around the estimate.
JITTER_SHIFT = 0.15
JITTER_SCALE = 1.05
# Lost-target search crops (the tracker widens 255 by 32 px a frame up to 383): a few of each end.
WIDE_SIDES = (287, 383)
WIDE_SHARE = 0.15
MIN_TARGET_PX = 4  # frames whose ground-truth box is smaller are not used
CONFIG_FIELDS = ("exemplar_size", "instance_size", "context_amount", "stride", "window_influence")


@dataclasses.dataclass
class PairSet:
    templates: list[np.ndarray]  # 127 x 127 x 3 uint8 BGR, one per sequence
    searches: list[np.ndarray]  # S x S x 3 uint8 BGR
    template_of: list[int]  # each search crop's template (index into ``templates``)
    settings: dict[str, Any]

    def __len__(self) -> int:
        return len(self.searches)


def _read(path: Path) -> np.ndarray:
    frame = cv2.imread(str(path))
    if frame is None:
        raise FileNotFoundError(f"cannot read {path}")
    return frame


def _usable_frames(sequence: Sequence, banned: set[int]) -> list[int]:
    """Later frames (not the template's) with a visible target of a few pixels at least."""
    gt = sequence.ground_truth
    return [
        i
        for i in range(1, len(sequence))
        if np.all(np.isfinite(gt[i])) and np.all(gt[i][2:] >= MIN_TARGET_PX) and i not in banned
    ]


def _search_side(rng: np.random.Generator, config: NanoTrackConfig) -> int:
    if rng.random() < WIDE_SHARE:
        return int(rng.choice(WIDE_SIDES))
    return config.instance_size


def _round(values: np.ndarray) -> list[float]:
    return [round(float(v), 3) for v in values]


def _sequence_pairs(
    folder: Path,
    n: int,
    config: NanoTrackConfig,
    rng: np.random.Generator,
    banned: set[int],
) -> tuple[np.ndarray, dict[str, Any], list[np.ndarray], list[dict[str, Any]]]:
    """One sequence's template and ``n`` search crops (fewer if it has fewer usable frames)."""
    sequence = load_sequence(folder)
    gt = sequence.ground_truth
    first = _read(sequence.frame_paths[0])
    fill = frame_fill(first)  # the tracker's: the first frame's mean colour, for every crop
    template = template_crop(first, gt[0], config, fill)
    template_record = {
        "sequence": sequence.name,
        "source": folder.parent.name,
        "frame": 0,
        "ground_truth": _round(gt[0]),
    }
    usable = _usable_frames(sequence, banned)
    frames = sorted(rng.choice(usable, size=min(n, len(usable)), replace=False))
    searches, records = [], []
    for index in map(int, frames):
        frame = _read(sequence.frame_paths[index])
        frame_wh = (frame.shape[1], frame.shape[0])
        estimate = jittered(gt[index], frame_wh, rng, JITTER_SHIFT, JITTER_SCALE)
        centre, size = estimate[:2] + estimate[2:] / 2.0, estimate[2:]
        side = _search_side(rng, config)
        searches.append(search_crop(frame, centre, size, side, config, fill))
        records.append(
            {
                "sequence": sequence.name,
                "source": folder.parent.name,
                "frame": index,
                "ground_truth": _round(gt[index]),
                "estimate": _round(estimate),
                "side": side,
            }
        )
    return template, template_record, searches, records


def build_pair_set(
    count: int = 300,
    data_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    split: str = SPLIT,
    extra: bool = True,
    config: NanoTrackConfig | None = None,
    exclude: dict[str, set[int]] | None = None,
) -> PairSet:
    """``count`` pairs spread evenly over the training sequences (see the module's docstring).

    ``exclude`` maps sequence names to frame indices (0-based) not to use as search frames.
    """
    config = config or NanoTrackConfig()
    folders = calibration_sequences(data_dir, split, extra)
    if not folders:
        raise FileNotFoundError("no training sequences found")
    rng = np.random.default_rng(seed)
    exclude = exclude or {}
    templates, template_records, searches, records, template_of = [], [], [], [], []
    for folder, n in zip(folders, per_sequence_counts(count, len(folders), rng), strict=True):
        if n == 0:
            continue
        template, t_record, crops, crop_records = _sequence_pairs(
            folder, int(n), config, rng, exclude.get(folder.name, set())
        )
        if not crops:
            continue
        for record in crop_records:
            record["template"] = len(templates)
        template_of += [len(templates)] * len(crops)
        templates.append(template)
        template_records.append(t_record)
        searches += crops
        records += crop_records
    full = dataclasses.asdict(config)
    settings = {
        "format": SETTINGS_FORMAT,
        "tracker": TRACKER,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "split": split,
        "sources": sorted({f.parent.name for f in folders}),
        "sequences": [f.name for f in folders],
        "count": len(searches),
        "templates_count": len(templates),
        "seed": seed,
        "jitter": {"shift_sigma_sides": JITTER_SHIFT, "scale_sigma_factor": JITTER_SCALE},
        "wide_sides": list(WIDE_SIDES),
        "wide_share": WIDE_SHARE,
        "crop_code": "runtime.nanotrack.tracker.template_crop, search_crop, frame_fill",
        "layout": "template_i: 127 x 127 x 3 uint8 BGR (the template graph's crop); search_i: "
        "S x S x 3 uint8 BGR (the search graph's crop, (1,3,S,S) float32 0..255); pair i is "
        "search_i with template pairs[i].template; the kernels come from net.template",
        "config": {field: full[field] for field in CONFIG_FIELDS},
        "templates": template_records,
        "pairs": records,
    }
    return PairSet(templates, searches, template_of, settings)


def save(pair_set: PairSet, out_dir: str | os.PathLike[str]) -> Path:
    """Write ``pairs.npz`` and ``settings.json`` (with the npz's sha256) into ``out_dir``."""
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    arrays = {f"template_{i:05d}": t for i, t in enumerate(pair_set.templates)}
    arrays.update({f"search_{i:05d}": s for i, s in enumerate(pair_set.searches)})
    np.savez_compressed(out / PAIRS_FILE, **arrays)
    settings = dict(pair_set.settings, pairs_sha256=sha256_file(out / PAIRS_FILE))
    (out / SETTINGS_FILE).write_text(json.dumps(settings, indent=1) + "\n")
    return out


def load(calib_dir: str | os.PathLike[str]) -> PairSet:
    """Read a folder written by :func:`save`; refuses another tracker's set (``WrongTracker``),
    another split's, and a ``pairs.npz`` whose sha256 is not the recorded one."""
    folder = Path(calib_dir).expanduser()
    settings = read_settings(folder, f"python -m calib.build --tracker {TRACKER} --out {folder}")
    check_tracker(settings, TRACKER, folder)
    path = folder / PAIRS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; rebuild the set")
    if settings.get("pairs_sha256") != sha256_file(path):
        raise ValueError(f"{path} does not match the sha256 in {folder / SETTINGS_FILE}")
    with np.load(path) as data:
        templates = [data[f"template_{i:05d}"] for i in range(settings["templates_count"])]
        searches = [data[f"search_{i:05d}"] for i in range(settings["count"])]
    template_of = [int(record["template"]) for record in settings["pairs"]]
    return PairSet(templates, searches, template_of, settings)
