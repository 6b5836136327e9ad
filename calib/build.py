"""A calibration set of real search crops, cut the way the tracker cuts them (train data only).

``python -m calib.build --out DIR [--tracker rtmdnet|nanotrack] [--count 300] [--data DIR]
[--seed 0] [--no-extra]``

``--tracker rtmdnet`` (the default) writes the RT-MDNet backbone's crops described below;
``--tracker nanotrack`` writes (template, search) crop pairs for the nanotrack search graph
(:mod:`calib.pairs`). Either way ``settings.json`` names the tracker, and each quantizer refuses
the other's set.

Each crop comes from a frame of a *training* sequence: the ``train`` split of ``sequences/``
(``splits.json``) plus, unless ``--no-extra``, the all-training ``train_extra/`` folder. The
``val`` split is refused, and a sequence listed under ``val`` is never read. The crop is made by
the runtime's own code, :func:`runtime.rtmdnet.geometry.tracker_crop` (shared with the export's
parity crops): :func:`runtime.rtmdnet.geometry.search_window` (scale from the target's size,
window rounded to the backbone stride), :func:`runtime.crop.cut` (bilinear, the first
frame's mean colour as fill, as the tracker's ``_fill``), around a target box jittered the way a
tracker's estimate strays from the ground truth. Two kinds, as the tracker cuts them:

- ``update``: the per-frame search crop; the window covers the frame's 256 candidates and the
  update negatives (as :meth:`RTMDNetTracker.update`).
- ``init``: the first frame's crop at one of ``init_jitter_scales``; the window covers the
  first-frame negatives (as :meth:`RTMDNetTracker.init`).

Written to ``DIR``: ``crops.npz`` (``crop_00000`` ... ``H x W x 3`` uint8 BGR, and
``rois_00000`` ... the crop's 256 candidate RoIs, ``x1, y1, x2, y2`` crop pixels, padded as the
tracker pads them) and ``settings.json`` (split, sources, every crop's sequence, frame, boxes and
window, the seed, the tracker config fields used, ``"tracker": "rtmdnet"``, and the sha256 of
``crops.npz``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from calib import pairs
from calib.sources import (
    SETTINGS_FILE,
    SPLIT,
    TRACKERS,
    CalibrationRefused,
    calibration_sequences,
    check_tracker,
    jittered,
    per_sequence_counts,
    read_settings,
)
from runtime.cli.program import program_name
from runtime.hashing import sha256_file
from runtime.rtmdnet.config import RTMDNetConfig
from runtime.rtmdnet.geometry import tracker_crop
from runtime.sequences import load_sequence

CROPS_FILE = "crops.npz"
SETTINGS_FORMAT = 1
TRACKER = "rtmdnet"
STRIDE = 16  # the nanotrack / mobilenet_v2 backbones' stride (window sides are multiples of it)
INIT_SHARE = 0.15  # share of init-style crops (first frames), the rest are per-frame crops
# How far the tracker's estimate strays from the ground truth: centre shift in target sides and
# a scale factor, both Gaussian (sigma). The crop follows the estimate, not the ground truth.
JITTER_SHIFT = 0.1
JITTER_SCALE = 1.05
# Tracker config fields that shape a crop (recorded in settings.json).
CROP_FIELDS = (
    "target_px",
    "max_crop_side",
    "roi_padding",
    "n_samples",
    "trans_f",
    "scale_f",
    "init_jitter_scales",
    "n_neg_init",
)


@dataclasses.dataclass
class CalibrationSet:
    crops: list[np.ndarray]  # H x W x 3 uint8 BGR
    rois: list[np.ndarray]  # (n_samples, 4) float32 x1, y1, x2, y2 crop pixels
    settings: dict[str, Any]

    def __len__(self) -> int:
        return len(self.crops)


def make_crop(
    frame: np.ndarray,
    target: np.ndarray,
    kind: str,
    config: RTMDNetConfig,
    rng: np.random.Generator,
    fill: tuple[float, float, float],
    stride: int = STRIDE,
    jitter: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One crop around ``target`` (0-based x, y, w, h) as the tracker cuts it, with its RoIs.

    ``kind`` is ``"update"`` (per-frame search crop) or ``"init"`` (first-frame crop at scale
    ``jitter``). Returns the crop, the ``n_samples`` candidate RoIs and the window's record.
    """
    made = tracker_crop(frame, target, kind, config, rng, fill, stride, jitter)
    window = made.window
    record = {
        "kind": kind,
        "target": [round(float(v), 3) for v in target],
        "window": {
            "x0": window.x0,
            "y0": window.y0,
            "scale": window.scale,
            "width": window.width,
            "height": window.height,
        },
        "init_jitter": jitter,
    }
    return made.crop, made.rois(made.candidates), record


def build_calibration_set(
    count: int = 300,
    data_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    split: str = SPLIT,
    extra: bool = True,
    config: RTMDNetConfig | None = None,
    exclude: dict[str, set[int]] | None = None,
) -> CalibrationSet:
    """``count`` crops spread evenly over the training sequences (see the module's docstring).

    ``exclude`` maps sequence names to frame indices (0-based) not to use (held-out test frames).
    """
    config = config or RTMDNetConfig()
    folders = calibration_sequences(data_dir, split, extra)
    if not folders:
        raise FileNotFoundError("no training sequences found")
    rng = np.random.default_rng(seed)
    exclude = exclude or {}
    per_sequence = per_sequence_counts(count, len(folders), rng)
    crops, rois, records = [], [], []
    for folder, n in zip(folders, per_sequence, strict=True):
        if n == 0:
            continue
        sequence = load_sequence(folder)
        gt = sequence.ground_truth
        first = cv2.imread(str(sequence.frame_paths[0]))
        fill = tuple(float(v) for v in first.reshape(-1, 3).mean(axis=0))  # tracker's _fill
        banned = exclude.get(sequence.name, set())
        usable = [
            i
            for i in range(1, len(sequence))
            if np.all(np.isfinite(gt[i])) and gt[i][2] >= 4 and gt[i][3] >= 4 and i not in banned
        ]
        n_init = int(0 not in banned and rng.random() < INIT_SHARE * n)  # one init crop at most
        frames = sorted(rng.choice(usable, size=min(n - n_init, len(usable)), replace=False))
        jobs = [(0, "init")] * n_init + [(int(i), "update") for i in frames]
        for index, kind in jobs:
            frame = first if index == 0 else cv2.imread(str(sequence.frame_paths[index]))
            if frame is None:
                raise FileNotFoundError(f"cannot read {sequence.frame_paths[index]}")
            frame_wh = (frame.shape[1], frame.shape[0])
            if kind == "init":  # the first frame's box is given, not estimated
                target = gt[0].copy()
                jitter = float(rng.choice(config.init_jitter_scales))
            else:
                estimate = jittered(gt[index], frame_wh, rng, JITTER_SHIFT, JITTER_SCALE)
                target, jitter = estimate, 1.0
            crop, cand, record = make_crop(frame, target, kind, config, rng, fill, jitter=jitter)
            crops.append(crop)
            rois.append(cand)
            records.append(
                {
                    "sequence": sequence.name,
                    "source": folder.parent.name,
                    "frame": index,
                    "ground_truth": [round(float(v), 3) for v in gt[index]],
                    "size": [int(crop.shape[1]), int(crop.shape[0])],
                    **record,
                }
            )
    full = dataclasses.asdict(config)
    settings = {
        "format": SETTINGS_FORMAT,
        "tracker": TRACKER,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "split": split,
        "sources": sorted({f.parent.name for f in folders}),
        "sequences": [f.name for f in folders],
        "count": len(crops),
        "seed": seed,
        "stride": STRIDE,
        "jitter": {"shift_sigma_sides": JITTER_SHIFT, "scale_sigma_factor": JITTER_SCALE},
        "init_share": INIT_SHARE,
        "crop_code": "runtime.rtmdnet.tracker.search_window + runtime.crop.cut",
        "layout": "crop_i: H x W x 3 uint8 BGR 0..255 (the backbone input is its (1,3,H,W) "
        "float32); rois_i: (n_samples, 4) float32 x1,y1,x2,y2 crop pixels (padded, unshifted)",
        "config": {field: full[field] for field in CROP_FIELDS},
        "crops": records,
    }
    return CalibrationSet(crops, rois, settings)


def save(calib: CalibrationSet, out_dir: str | os.PathLike[str]) -> Path:
    """Write ``crops.npz`` and ``settings.json`` (with the npz's sha256) into ``out_dir``."""
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    arrays = {f"crop_{i:05d}": c for i, c in enumerate(calib.crops)}
    arrays.update({f"rois_{i:05d}": r for i, r in enumerate(calib.rois)})
    np.savez_compressed(out / CROPS_FILE, **arrays)
    settings = dict(calib.settings, crops_sha256=sha256_file(out / CROPS_FILE))
    (out / SETTINGS_FILE).write_text(json.dumps(settings, indent=1) + "\n")
    return out


def load(calib_dir: str | os.PathLike[str]) -> CalibrationSet:
    """Read a folder written by :func:`save` (checks the npz against the recorded hash).

    Refuses a set cut for another tracker (:class:`WrongTracker`) or from another split.
    """
    folder = Path(calib_dir).expanduser()
    settings = read_settings(folder, f"python -m calib.build --out {folder}")
    check_tracker(settings, TRACKER, folder)
    settings_path, crops_path = folder / SETTINGS_FILE, folder / CROPS_FILE
    if not crops_path.is_file():
        raise FileNotFoundError(
            f"{crops_path} not found: not a calibration folder (make one with "
            f"python -m calib.build --out {folder})"
        )
    digest = sha256_file(crops_path)
    if settings.get("crops_sha256") != digest:
        raise ValueError(f"{crops_path} does not match the sha256 in {settings_path}; rebuild it")
    with np.load(crops_path) as data:
        n = settings["count"]
        crops = [data[f"crop_{i:05d}"] for i in range(n)]
        rois = [data[f"rois_{i:05d}"] for i in range(n)]
    return CalibrationSet(crops, rois, settings)


def _build_and_save(args: argparse.Namespace) -> str:
    """Build the set ``args.tracker`` names, write it, and say what was written."""
    if args.tracker == pairs.TRACKER:
        pair_set = pairs.build_pair_set(
            args.count, args.data, args.seed, args.split, extra=not args.no_extra
        )
        out = pairs.save(pair_set, args.out)
        sides = sorted({int(s.shape[0]) for s in pair_set.searches})
        return (
            f"[calib] nanotrack: {len(pair_set)} (template, search) pairs from "
            f"{len(pair_set.settings['sequences'])} training sequences (search sides "
            f"{', '.join(map(str, sides))}) -> {out}"
        )
    calib = build_calibration_set(
        args.count, args.data, args.seed, args.split, extra=not args.no_extra
    )
    out = save(calib, args.out)
    sizes = np.array([c.shape[:2] for c in calib.crops])
    return (
        f"[calib] {len(calib)} crops from {len(calib.settings['sequences'])} training sequences "
        f"(median {int(np.median(sizes[:, 1]))}x{int(np.median(sizes[:, 0]))}) -> {out}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=program_name("python -m calib.build"), description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (not in git)")
    parser.add_argument(
        "--tracker",
        default=TRACKER,
        choices=TRACKERS,
        help="rtmdnet (default): backbone search crops; nanotrack: (template, search) pairs",
    )
    parser.add_argument("--count", type=int, default=300, help="number of crops (pairs)")
    parser.add_argument("--data", type=Path, default=None, help="shared data folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default=SPLIT, help="only 'train' is accepted")
    parser.add_argument("--no-extra", action="store_true", help="sequences/ train split only")
    args = parser.parse_args(argv)
    try:
        print(_build_and_save(args))
    except (CalibrationRefused, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
