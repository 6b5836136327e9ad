"""Network against procedure: NanoTrack v2 and v3 through our tracking procedure and OpenCV's.

    python -m bench.procedures --json OUT [--data DIR] [--variants NAME,...] [--list]

Our ``nanotrack`` and OpenCV's ``cv2.TrackerNano`` differ in the network (v3 against v2) and in
the procedure around it. This runs one procedure with each difference as an option, so each
one's cost is measured alone, on every sequence of ``<data>/sequences`` and
``<data>/train_extra`` (the networks are frozen and trained elsewhere: all 44 are fair
evaluation data). OpenCV's procedure is ``modules/video/src/tracking/tracker_nano.cpp``; the
options that reproduce it, each read there:

- ``crop="opencv"``: the window's corners from the integer part of the centre and of the side,
  cut with ``cv2.resize`` (bilinear, no pre-filter); ``crop="pysot"``: NanoTrack's own Python
  procedure (corners rounded, the side rounded); ``crop="ours"``: the product's
  :func:`runtime.crop.square_crop` (continuous corners, area pre-filter when shrinking a lot).
- ``penalty_k=0.055, lr=0.37``: OpenCV's values (v3's published ones are 0.138 and 0.348).
- ``opencv_scale_penalty``: OpenCV compares each cell's size with ``sizeCal(targetPos)``, the
  target's *position* (x, y), where the reference compares it with the target's scaled size.
- ``truncate``: the reported box as OpenCV returns it, ``int()`` of x, y, w and h.

``network="v2"`` runs NanoTrack v2 (on its 15 cells that line up with v3's, see
:mod:`runtime.nanotrack.second_network`; OpenCV also scores a 16th row and column, at the crop's
edge, where its cosine window is 0), ``"both"`` the product's average of the two. Every variant
runs without the lost state (v3's published procedure). Per (variant, sequence) the AUC is saved
to ``--json`` as it is made, and a rerun skips what is there (resumable). The table prints each
variant's mean AUC over all, ground-level and aerial sequences (:mod:`bench.scenes`) and its
wins, losses and ties against the first variant (``bench.ope``'s rule: a tie within 0.005).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from bench.ope import versus
from bench.scenes import scene_of
from runtime.atomic import write_atomic
from runtime.backends import create_backend
from runtime.cli.program import program_name
from runtime.crop import square_crop
from runtime.evaluation.metrics import evaluate_sequence
from runtime.nanotrack import NanoTrackConfig
from runtime.nanotrack.deploy import siamese_spec
from runtime.nanotrack.second_network import SecondNetwork
from runtime.nanotrack.tracker import cell_points, cosine_window, frame_fill
from runtime.paths import data_root
from runtime.sequences import load_sequence
from runtime.tracker_api import check_init

FOLDERS = ("sequences", "train_extra")


@dataclass(frozen=True)
class Procedure:
    network: str = "v3"  # v3 | v2 | both
    crop: str = "ours"  # ours | pysot | opencv
    penalty_k: float = 0.138
    lr: float = 0.348
    window_influence: float = 0.455
    opencv_scale_penalty: bool = False
    truncate: bool = False
    fusion_weight: float = 0.5  # v2's share with network="both"
    box_weight: float | None = None  # v2's share of the edges alone (None: fusion_weight)


OPENCV = Procedure("v2", "opencv", 0.055, 0.37, opencv_scale_penalty=True, truncate=True)
VARIANTS: dict[str, Procedure] = {
    "v3": Procedure(),
    "v3 + pysot crop": Procedure(crop="pysot"),
    "v3 + opencv crop": Procedure(crop="opencv"),
    "v3 + opencv values": Procedure(penalty_k=0.055, lr=0.37),
    "v3 + truncated box": Procedure(truncate=True),
    "v2": Procedure("v2"),
    "v2 + opencv values": Procedure("v2", penalty_k=0.055, lr=0.37),
    "v2 + opencv values + opencv scale penalty": Procedure(
        "v2", penalty_k=0.055, lr=0.37, opencv_scale_penalty=True
    ),
    "v2 + opencv values + opencv crop": Procedure("v2", "opencv", 0.055, 0.37),
    "v2 + opencv values + truncated box": Procedure("v2", penalty_k=0.055, lr=0.37, truncate=True),
    "v2 + opencv procedure": OPENCV,
    "both (the default)": Procedure("both"),
    "both (v3's boxes)": Procedure("both", box_weight=0.0),
    "both (v2's boxes)": Procedure("both", box_weight=1.0),
    "both (v2 share 0.2)": Procedure("both", fusion_weight=0.2),
    "both (v2 share 0.3)": Procedure("both", fusion_weight=0.3),
    "both (v2 share 0.4)": Procedure("both", fusion_weight=0.4),
    "both (v2 share 0.7)": Procedure("both", fusion_weight=0.7),
    # v3's published values around the average (a documented search: docs/nanotrack.md)
    "both (window 0.35)": Procedure("both", window_influence=0.35),
    "both (window 0.55)": Procedure("both", window_influence=0.55),
    "both (penalty_k 0.08)": Procedure("both", penalty_k=0.08),
    "both (penalty_k 0.2)": Procedure("both", penalty_k=0.2),
    "both (lr 0.25)": Procedure("both", lr=0.25),
    "both (lr 0.45)": Procedure("both", lr=0.45),
}


def integer_crop(
    frame: np.ndarray, center: np.ndarray, side: int, out: int, fill: tuple, opencv: bool
) -> np.ndarray:
    """A ``side`` square cut at integer corners, resized bilinearly (OpenCV's or pysot's)."""
    half = (side + 1) / 2
    if opencv:
        x0, y0 = int(center[0]) - int(half), int(center[1]) - int(half)
    else:
        x0, y0 = math.floor(center[0] - half + 0.5), math.floor(center[1] - half + 0.5)
    height, width = frame.shape[:2]
    pad = [max(0, -y0), max(0, y0 + side - height), max(0, -x0), max(0, x0 + side - width)]
    if any(pad):
        frame = cv2.copyMakeBorder(frame, *pad, cv2.BORDER_CONSTANT, value=fill)
    patch = frame[y0 + pad[0] : y0 + pad[0] + side, x0 + pad[2] : x0 + pad[2] + side]
    return cv2.resize(patch, (out, out)) if side != out else patch


def _padded_side(w: np.ndarray | float, h: np.ndarray | float) -> np.ndarray:
    pad = (w + h) * 0.5
    return np.sqrt((w + pad) * (h + pad))


class Networks:
    """v3 (the graph cache on ONNX Runtime) and v2, loaded once for every variant."""

    def __init__(self, data_dir: Path | None) -> None:
        config = NanoTrackConfig(backend="onnxruntime", threads=1)
        self.v3 = create_backend(siamese_spec(config, data_dir), verbose=False)
        self.v2 = SecondNetwork(data_dir)


class ProcedureTracker:
    """One variant: ``init`` and ``update`` as :class:`runtime.nanotrack.NanoTracker`'s, without
    the lost state."""

    def __init__(self, procedure: Procedure, networks: Networks) -> None:
        self.p, self.nets = procedure, networks
        self.points = cell_points(15, 16)
        self.window = cosine_window(15)

    def _crop(self, frame: np.ndarray, side: float, out: int) -> np.ndarray:
        if self.p.crop == "ours":
            crop = square_crop(frame, self.center, side, out, self.fill)
        else:
            whole = int(side) if self.p.crop == "opencv" else round(side)
            crop = integer_crop(frame, self.center, whole, out, self.fill, self.p.crop == "opencv")
        return np.ascontiguousarray(crop.transpose(2, 0, 1))[None].astype(np.float32)

    def init(self, frame: np.ndarray, box: np.ndarray) -> None:
        frame, box = check_init(frame, box)
        self.center, self.size = box[:2] + box[2:] / 2.0, box[2:].copy()
        self.fill = frame_fill(frame)
        side = float(_padded_side(*self.size))
        z = self._crop(frame, int(side) if self.p.crop == "opencv" else round(side), 127)
        self.kernels = self.nets.v3.template(torch.from_numpy(z))
        self.feature = self.nets.v2.template(z)

    def _cells(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outputs = []
        if self.p.network in ("v3", "both"):
            scores, boxes = self.nets.v3.search(torch.from_numpy(x), self.kernels)
            outputs.append((scores.numpy().reshape(-1), boxes.numpy().reshape(4, -1)))
        if self.p.network in ("v2", "both"):
            outputs.append(self.nets.v2.search(x, self.feature))
        if len(outputs) == 1:
            return outputs[0]
        (score_v3, delta_v3), (score_v2, delta_v2) = outputs
        w = self.p.fusion_weight
        wb = w if self.p.box_weight is None else self.p.box_weight
        return (1 - w) * score_v3 + w * score_v2, (1 - wb) * delta_v3 + wb * delta_v2

    def update(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        p, (w, h) = self.p, self.size
        if p.crop == "opencv":  # OpenCV truncates w + h before the context padding
            pad = int(w + h) * 0.5
            side = math.sqrt((w + pad) * (h + pad))
        else:
            side = float(_padded_side(w, h))
        scale = 127.0 / side
        score, delta = self._cells(self._crop(frame, side * 255.0 / 127.0, 255))
        x1, y1 = self.points[0] - delta[0], self.points[1] - delta[1]
        x2, y2 = self.points[0] + delta[2], self.points[1] + delta[3]
        cw, ch = x2 - x1, y2 - y1
        reference = (
            _padded_side(*self.center)
            if p.opencv_scale_penalty
            else _padded_side(w * scale, h * scale)
        )
        sides = _padded_side(cw, ch)
        scale_change = np.maximum(sides / reference, reference / sides)
        ratio = (w / h) / (cw / ch)
        penalty = np.exp(-(np.maximum(ratio, 1 / ratio) * scale_change - 1.0) * p.penalty_k)
        pscore = penalty * score * (1 - p.window_influence) + self.window * p.window_influence
        best = int(np.argmax(pscore))
        lr = penalty[best] * score[best] * p.lr
        center = self.center + np.array([x1[best] + x2[best], y1[best] + y2[best]]) / 2 / scale
        size = self.size * (1 - lr) + np.array([cw[best], ch[best]]) / scale * lr
        height, width = frame.shape[:2]
        self.center = np.clip(center, 0.0, [width, height])
        self.size = np.clip(size, 10.0, [width, height])
        box = np.concatenate([self.center - self.size / 2, self.size])
        return (np.trunc(box) if p.truncate else box), float(score[best])


def sequence_folders(data: Path) -> list[Path]:
    return [
        d
        for folder in FOLDERS
        if (data / folder).is_dir()
        for d in sorted((data / folder).iterdir())
        if (d / "groundtruth_rect.txt").is_file()
    ]


def run(variants: dict[str, Procedure], data: Path, out: Path, quiet: bool = False) -> dict:
    """Every variant on every sequence; AUCs saved to ``out`` after each sequence."""
    results: dict = json.loads(out.read_text()) if out.is_file() else {}
    nets = Networks(data)
    folders = sequence_folders(data)
    for folder in tqdm(folders, desc="sequences", disable=quiet):
        todo = [n for n in variants if folder.name not in results.get(n, {}).get("auc", {})]
        if not todo:
            continue
        sequence = load_sequence(folder)
        frames = [cv2.imread(str(p)) for p in sequence.frame_paths]
        for name in todo:
            tracker = ProcedureTracker(variants[name], nets)
            tracker.init(frames[0], sequence.ground_truth[0])
            boxes = [sequence.ground_truth[0]] + [tracker.update(f)[0] for f in frames[1:]]
            auc = evaluate_sequence(np.stack(boxes), sequence.ground_truth, folder.name).auc
            entry = results.setdefault(name, {"procedure": asdict(variants[name]), "auc": {}})
            entry["auc"][folder.name] = auc
            entry.setdefault("scene", {})[folder.name] = scene_of(folder)
        write_atomic(out, (json.dumps(results, indent=1) + "\n").encode())
    return results


def table(results: dict) -> str:
    names = list(results)
    # bench.ope's rule for wins, losses and ties, on the same shape of summary.
    summary = {
        name: {
            "per_sequence": {seq: {"auc": auc} for seq, auc in entry["auc"].items()},
            "excluded_from_means": [],
        }
        for name, entry in results.items()
    }
    against = versus(summary, names[0])
    lines = [
        f"| variant | mean AUC (n) | ground-level | aerial | vs {names[0]}: W/L/T |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for name in names:
        auc, scene = results[name]["auc"], results[name]["scene"]

        def mean(kind: str | None, auc: dict = auc, scene: dict = scene) -> float:
            values = [v for s, v in auc.items() if kind is None or scene[s] == kind]
            return float(np.mean(values)) if values else float("nan")

        vs = against[name] if name in against else {"wins": 0, "losses": 0, "ties": len(auc)}
        lines.append(
            f"| {name} | {mean(None):.3f} ({len(auc)}) | {mean('ground'):.3f} | "
            f"{mean('aerial'):.3f} | {vs['wins']}/{vs['losses']}/{vs['ties']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=program_name("python -m bench.procedures"),
        description="NanoTrack v2/v3 through our procedure and OpenCV's, one difference at a time.",
    )
    parser.add_argument("--json", type=Path, help="results (resumed if present); required")
    parser.add_argument("--data", type=Path, default=None, help="shared data folder")
    parser.add_argument("--variants", default=None, help="comma-separated names (default: all)")
    parser.add_argument("--list", action="store_true", help="list the variants and stop")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.list:
        for name, procedure in VARIANTS.items():
            print(f"{name}: {procedure}")
        return 0
    if args.json is None:
        parser.error("the following arguments are required: --json")
    names = [n.strip() for n in args.variants.split(",")] if args.variants else list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    data = data_root(args.data)
    if unknown:
        print(f"error: unknown variant(s) {', '.join(unknown)}; see --list", file=sys.stderr)
        return 2
    if not sequence_folders(data):
        print(f"error: no sequences under {data}/{{{','.join(FOLDERS)}}}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    results = run({n: VARIANTS[n] for n in names}, data, args.json, args.quiet)
    print(table({n: results[n] for n in names if n in results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
