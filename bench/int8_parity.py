"""How well an INT8 graph ranks candidates like FP32, next to FP32 against itself with input noise.

    python -m bench.int8_parity --export-dir outputs/export/rtmdnet-nanotrack-int8-t95 \\
        --calib outputs/calib/train300 [--noise 0.25,0.5,1] [--json OUT]

On the calibration set's held-out crops (every 5th, never used to calibrate or choose): the
folder's INT8 backbone against its FP32 one (:func:`calib.quantize.compare`: top-1 agreement over
each crop's 256 candidates under the MetaRTT head, feature-map error, estimate IoU), and, as the
yardstick, the FP32 backbone against itself fed the same crop plus uniform noise of ``±a`` gray
levels (±0.5 is one uint8 rounding step): how much of the ranking any tiny change moves.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from calib.build import load
from calib.quantize import compare, split_indices
from runtime.backends.manifest import load_manifest
from runtime.cli.program import program_name

SUMMARY = ("top1_agreement", "feature_map_rel_error_median", "estimate_iou_median")


def noisy_copies(crops, amplitude: float, seed: int = 0) -> list[np.ndarray]:
    """The crops plus uniform noise in ``[-amplitude, amplitude]``, kept as float32 pixels."""
    rng = np.random.default_rng(seed)
    return [
        (c.astype(np.float32) + rng.uniform(-amplitude, amplitude, c.shape)).astype(np.float32)
        for c in crops
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=program_name("python -m bench.int8_parity"), description=__doc__
    )
    parser.add_argument("--export-dir", type=Path, required=True)
    parser.add_argument("--calib", type=Path, required=True)
    parser.add_argument("--noise", default="0.25,0.5,1", help="input noise amplitudes, gray levels")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if not (args.export_dir / "manifest.json").is_file():
        print(f"error: no export in {args.export_dir}", file=sys.stderr)
        return 2
    int8 = load_manifest(args.export_dir).get("int8")
    if not int8:
        print(f"error: no INT8 graph in {args.export_dir}", file=sys.stderr)
        return 2
    calib = load(args.calib)
    _, held = split_indices(len(calib))
    crops = [calib.crops[i] for i in held]
    rois = [calib.rois[i] for i in held]
    fp32 = args.export_dir / int8["fp32_onnx"]
    pool = args.export_dir / "roi_pool.onnx"
    count = len(int8["int8_convs"])
    rows = {
        f"int8 ({count} conv{'' if count == 1 else 's'})": compare(
            fp32, args.export_dir / int8["onnx"], pool, crops, rois
        )
    }
    for amplitude in (float(a) for a in args.noise.split(",") if a):
        rows[f"fp32 + noise ±{amplitude:g}"] = compare(
            fp32, fp32, pool, crops, rois, other_crops=noisy_copies(crops, amplitude)
        )
    print(f"{len(crops)} held-out crops; INT8 and noisy FP32 against FP32")
    print("| graph | top-1 agreement | feature-map rel. error | estimate IoU median |")
    print("| --- | ---: | ---: | ---: |")
    for name, result in rows.items():
        print(f"| {name} | " + " | ".join(f"{result[k]:.3f}" for k in SUMMARY) + " |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
