"""End-to-end agreement between backends: the same tracker's boxes on torch and on each other.

    python -m bench.parity --split val --trackers "metartt,metartt[prune=shipped]" \\
        --backends onnxruntime --export-dir outputs/export/rtmdnet-nanotrack [--json OUT]
    python -m bench.parity --split val --trackers nanotrack --export-dir outputs/export/nanotrack

For every tracker, sequence and backend, two measures of IoU against the torch backend's boxes:

- ``lockstep``: every frame starts from the torch tracker's state (head, optimizer, memories,
  RNG) and runs ``update`` once on the other backend; this isolates the backend: candidates,
  scores, top-5, box regression and any update step all run on its features.
- ``free``: two independent runs. Hard-negative mining and the top-5 candidates are discrete
  choices, so 1e-5 feature differences change which negatives train the head and free runs part
  ways by amounts unrelated to the backend (torch against torch with 1e-5 noise does the same).

Mean IoU is over all frames after the first, of all sequences together. The target (issue 5):
at least 0.98 per backend. Pruned trackers slice the other backend to the torch run's channels.
The Siamese ``nanotrack`` tracker's lockstep copies the torch tracker's centre, size and lost
state into the other before each frame; each keeps the template kernels of its own backend.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from bench.ope import set_threads, split_list
from runtime.backends import create_backend
from runtime.boxes import iou
from runtime.cli.program import program_name
from runtime.evaluation.one_pass import decode_frames, resolve_sequences, truncate
from runtime.nanotrack import NanoTracker
from runtime.paths import data_root
from runtime.registry import create_tracker
from runtime.rtmdnet import RTMDNetTracker
from runtime.sequences import Sequence
from runtime.tracker_api import Tracker

TARGET = 0.98


def lockstep_overlaps(
    tracker: RTMDNetTracker, backend_for: Callable[[RTMDNetTracker], object], frames, box
) -> np.ndarray:
    """IoU per frame between the torch ``update`` and a twin's on another backend."""
    tracker.init(frames[0], box)
    other = backend_for(tracker)
    overlaps = []
    for frame in frames[1:]:
        twin = tracker.twin(other)
        rng = torch.get_rng_state()  # dropout in update steps draws from torch's global RNG
        other_box, _ = twin.update(frame)
        torch.set_rng_state(rng)
        torch_box, _ = tracker.update(frame)
        overlaps.append(float(iou(torch_box[None], other_box[None])[0]))
    return np.array(overlaps)


def siamese_lockstep_overlaps(
    torch_tracker: NanoTracker, other: NanoTracker, frames, box
) -> np.ndarray:
    """The same for a Siamese tracker: each frame, ``other`` takes the torch tracker's state
    (centre, size, lost state) and keeps the template kernels its own backend computed."""
    torch_tracker.init(frames[0], box)
    other.init(frames[0], box)
    overlaps = []
    for frame in frames[1:]:
        other.follow(torch_tracker)
        other_box, _ = other.update(frame)
        torch_box, _ = torch_tracker.update(frame)
        overlaps.append(float(iou(torch_box[None], other_box[None])[0]))
    return np.array(overlaps)


def free_boxes(tracker: Tracker, frames, box) -> np.ndarray:
    tracker.init(frames[0], box)
    return np.array([tracker.update(f)[0] for f in frames[1:]])


def _lockstep(
    torch_tracker: Tracker, other: Tracker, backend: str, export_dir: Path, data_dir: Path | None
) -> Callable[[list[np.ndarray], np.ndarray], np.ndarray]:
    """``lockstep(frames, box) -> IoU per frame`` for this kind of tracker."""
    if isinstance(torch_tracker, NanoTracker) and isinstance(other, NanoTracker):
        return partial(siamese_lockstep_overlaps, torch_tracker, other)
    assert isinstance(torch_tracker, RTMDNetTracker) and isinstance(other, RTMDNetTracker)
    full = create_backend(
        other.config.backend_spec(data_dir, backend=backend, export_dir=export_dir), verbose=False
    )
    unpruned = torch_tracker.backend

    def backend_for(tracker: RTMDNetTracker):
        selection = tracker.selection
        if selection is not None and tracker.backend is not unpruned:
            return full.keep_channels(selection.keep["conv"])  # this video's pruned network
        return full

    return partial(lockstep_overlaps, torch_tracker, backend_for)


def compare(
    name: str,
    backend: str,
    sequences: list[Sequence],
    export_dir: Path,
    data_dir: Path | None,
    quiet: bool = False,
) -> dict:
    """Lockstep and free-running IoU of ``backend`` against torch for tracker ``name``."""
    torch_tracker = create_tracker(name, data_dir, backend="torch")
    other_tracker = create_tracker(name, data_dir, backend=backend, export_dir=str(export_dir))
    lockstep = _lockstep(torch_tracker, other_tracker, backend, export_dir, data_dir)
    per_sequence = {}
    for sequence in tqdm(sequences, desc=f"{name} {backend}", disable=quiet, leave=False):
        frames = decode_frames(sequence)
        box = sequence.init_box
        lock = lockstep(frames, box)
        free = iou(free_boxes(torch_tracker, frames, box), free_boxes(other_tracker, frames, box))
        per_sequence[sequence.name] = {
            "frames": len(lock),
            "lockstep_mean_iou": float(lock.mean()),
            "lockstep_min_iou": float(lock.min()),
            "free_mean_iou": float(np.mean(free)),
            "_lock": lock,
            "_free": np.asarray(free),
        }
    lock_all = np.concatenate([s.pop("_lock") for s in per_sequence.values()])
    free_all = np.concatenate([s.pop("_free") for s in per_sequence.values()])
    return {
        "tracker": name,
        "backend": backend,
        "frames": int(len(lock_all)),
        "lockstep_mean_iou": float(lock_all.mean()),
        "lockstep_frames_below_0.9": int((lock_all < 0.9).sum()),
        "free_mean_iou": float(free_all.mean()),
        "target": TARGET,
        "lockstep_meets_target": bool(lock_all.mean() >= TARGET),
        "sequences": per_sequence,
    }


def markdown(results: list[dict]) -> str:
    rows = [
        "| tracker | backend | frames | lockstep mean IoU | frames < 0.9 | free-running mean IoU |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        rows.append(
            f"| {r['tracker']} | {r['backend']} | {r['frames']} | {r['lockstep_mean_iou']:.4f} "
            f"| {r['lockstep_frames_below_0.9']} | {r['free_mean_iou']:.3f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=program_name("python -m bench.parity"), description=__doc__
    )
    parser.add_argument("--data", type=Path, default=None, help="sequences folder")
    parser.add_argument("--data-root", type=Path, default=None, help="shared data folder")
    parser.add_argument("--split", default="val")
    parser.add_argument("--seqs", default=None)
    parser.add_argument("--trackers", default="metartt,metartt[prune=shipped]")
    parser.add_argument("--backends", default="onnxruntime")
    parser.add_argument("--export-dir", type=Path, default=Path("outputs/export/rtmdnet-nanotrack"))
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    root = data_root(args.data_root)
    if not (args.export_dir / "manifest.json").is_file():
        print(
            f"error: no export in {args.export_dir} (run python export/build_engine.py)",
            file=sys.stderr,
        )
        return 2
    set_threads(args.threads)
    sequences = resolve_sequences(
        args.data or root / "sequences", split_list(args.seqs), None if args.seqs else args.split
    )
    sequences = [truncate(s, args.max_frames) for s in sequences]
    results = [
        compare(name, backend, sequences, args.export_dir, args.data_root, args.quiet)
        for name in split_list(args.trackers)
        for backend in split_list(args.backends)
    ]
    print(markdown(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(r["lockstep_meets_target"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
