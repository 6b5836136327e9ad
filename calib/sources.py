"""What every calibration set shares: training data only, jittered estimates, a tracker tag.

Used by :mod:`calib.build` (RT-MDNet search crops) and :mod:`calib.pairs` (nanotrack template
and search crop pairs). Every set's ``settings.json`` names the tracker it was cut for
(``"tracker"``; sets written before the tag existed are RT-MDNet's), and each loader refuses a
set cut for another tracker: the crops differ in geometry, content and layout.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from runtime.paths import data_root
from runtime.sequences import sequence_names

SETTINGS_FILE = "settings.json"
SPLIT = "train"  # the only split a calibration set may come from
TRACKERS = ("rtmdnet", "nanotrack")
UNTAGGED_TRACKER = "rtmdnet"  # settings.json without a "tracker" field predates nanotrack


class CalibrationRefused(ValueError):
    """A calibration set was asked for from data it must not see (the ``val`` split)."""


class WrongTracker(ValueError):
    """A calibration set cut for one tracker was handed to another's quantizer."""


def calibration_sequences(
    data_dir: str | os.PathLike[str] | None = None, split: str = SPLIT, extra: bool = True
) -> list[Path]:
    """Folders of the training sequences; refuses ``val`` (or any split but ``train``)."""
    if split != SPLIT:
        raise CalibrationRefused(
            f"calibration data comes from the {SPLIT!r} split only, not {split!r}: calibrating "
            f"on validation frames would leak them into the INT8 graph that is then scored on them"
        )
    root = data_root(data_dir)
    seq_root = root / "sequences"
    if not seq_root.is_dir():
        raise FileNotFoundError(
            f"no sequences/ under {root}; point --data (or $TRACKER_DATA) at the shared data"
        )
    val = set(sequence_names(seq_root, "val"))
    folders = [seq_root / name for name in sequence_names(seq_root, SPLIT)]
    extra_root = root / "train_extra"
    if extra and extra_root.is_dir():
        folders += [extra_root / name for name in sequence_names(extra_root)]
    leaked = sorted(f.name for f in folders if f.name in val)
    if leaked:
        raise CalibrationRefused(f"{', '.join(leaked)} are val sequences; refusing to read them")
    return [f for f in folders if f.is_dir()]


def per_sequence_counts(count: int, sequences: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` spread evenly over ``sequences``; the remainder goes to random sequences."""
    counts = np.full(sequences, count // sequences)
    counts[rng.permutation(sequences)[: count % sequences]] += 1
    return counts


def jittered(
    box: np.ndarray,
    frame_wh: tuple[int, int],
    rng: np.random.Generator,
    shift: float,
    scale: float,
) -> np.ndarray:
    """``box`` moved and rescaled as a tracker's estimate would be (stays >= 5 px, in frame).

    The centre moves by a Gaussian of sigma ``shift`` target sides (the mean of w and h) per
    axis; the size is multiplied by ``scale ** N(0, 1)``.
    """
    out = np.asarray(box, dtype=np.float64).copy()
    factor = scale ** rng.standard_normal()
    centre = out[:2] + out[2:] / 2 + rng.standard_normal(2) * shift * out[2:].mean()
    centre = np.clip(centre, 0, np.asarray(frame_wh, dtype=np.float64) - 1)
    out[2:] = np.maximum(out[2:] * factor, 5.0)
    out[:2] = centre - out[2:] / 2
    return out


def read_settings(folder: Path, make: str) -> dict[str, Any]:
    """``folder/settings.json``, parsed; ``make`` is the command that writes one (for the error)."""
    path = folder / SETTINGS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: not a calibration folder (make one with {make})"
        )
    return json.loads(path.read_text())


def check_tracker(settings: dict[str, Any], want: str, folder: Path) -> None:
    """Refuse a set cut for another tracker than ``want``, and one not from the train split."""
    have = settings.get("tracker", UNTAGGED_TRACKER)
    if have != want:
        raise WrongTracker(
            f"{folder} is a {have} calibration set, not a {want} one (its crops are cut for "
            f"the {have} tracker's graphs); make one with python -m calib.build --tracker "
            f"{want} --out DIR"
        )
    if settings.get("split") != SPLIT:
        raise CalibrationRefused(f"{folder} was made from split {settings.get('split')!r}")
