"""Per-frame latency of the fixed part of the network (feature_map + pool) on each backend.

    python -m bench.backend_speed --export DIR [--backends torch,onnxruntime] [--side 480] \\
        [--rois 256] [--repeats 50] [--warmup 10] [--threads N] [--data DIR]

One real crop (``--side`` x ``--side`` pixels, cut around the first ground-truth box of
``--sequence`` at the tracker's scale) and ``--rois`` candidate RoIs drawn as the tracker draws
them. Backends run interleaved, one call each per round, so a busy machine slows all alike;
the median over ``--repeats`` rounds after ``--warmup`` is reported, with the ratio to the first
backend. ``--vary`` cycles through the crop sizes of a real tracking run instead of one size
(every new size makes oneDNN build new kernels for torch). Timings belong here, never in tests.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from runtime.backends import create_backend
from runtime.cli.program import program_name
from runtime.crop import CropWindow, cut
from runtime.paths import data_root
from runtime.roi_features import crop_to_tensor
from runtime.rtmdnet.config import RTMDNetConfig
from runtime.sampling import SampleSpec, draw
from runtime.sequences import load_sequence


def _crop_and_rois(config, frame, box, width, height, n_rois, rng):
    scale = config.target_px / float(np.sqrt(box[2] * box[3]))
    centre = box[:2] + box[2:] / 2
    window = CropWindow(
        centre[0] - width / (2 * scale), centre[1] - height / (2 * scale), scale, width, height
    )
    spec = SampleSpec("gaussian", config.trans_f, config.scale_f, keep_inside=True)
    boxes = draw(spec, box, n_rois, (frame.shape[1], frame.shape[0]), rng)
    fill = tuple(float(v) for v in frame.reshape(-1, 3).mean(axis=0))
    crop = crop_to_tensor(cut(frame, window, fill))
    rois = torch.from_numpy(window.rois(boxes, config.roi_padding)).float()
    return crop, rois, torch.zeros(n_rois, dtype=torch.int64)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog=program_name("python -m bench.backend_speed"), description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--export", type=Path, help="export folder (export/build_engine.py)")
    parser.add_argument("--backends", default="torch,onnxruntime")
    parser.add_argument("--side", type=int, default=480)
    parser.add_argument("--rois", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--sequence", default="Crossing")
    parser.add_argument("--vary", action="store_true", help="cycle through varying crop sizes")
    parser.add_argument("--data", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    config = RTMDNetConfig()
    sequence = load_sequence(data_root(args.data) / "sequences" / args.sequence)
    frame = cv2.imread(str(sequence.frame_paths[0]))
    rng = np.random.default_rng(0)
    sizes = [(args.side, args.side)]
    if args.vary:  # sides as the tracker's update crops take them (multiples of 16 near 480)
        sizes = [(args.side + 16 * dx, args.side + 16 * dy) for dx in (-1, 0, 1) for dy in (-1, 1)]
    inputs = [
        _crop_and_rois(config, frame, sequence.init_box, w, h, args.rois, rng) for w, h in sizes
    ]

    names = args.backends.split(",")
    backends = {
        n: create_backend(config.backend_spec(args.data, backend=n, export_dir=args.export))
        for n in names
    }
    times: dict[str, list[float]] = {n: [] for n in names}
    pool_times: dict[str, list[float]] = {n: [] for n in names}
    with torch.no_grad():
        for i in range(args.warmup + args.repeats):
            crop, rois, batch = inputs[i % len(inputs)]
            for name, backend in backends.items():
                started = time.perf_counter()
                fmap = backend.feature_map(crop)
                if fmap.is_cuda:
                    torch.cuda.synchronize()
                pooled = time.perf_counter()
                feats = backend.pool(fmap, rois, batch)
                if feats.is_cuda:
                    torch.cuda.synchronize()
                if i >= args.warmup:
                    times[name].append(time.perf_counter() - started)
                    pool_times[name].append(time.perf_counter() - pooled)
    base = statistics.median(times[names[0]])
    what = f"{len(sizes)} sizes around {args.side}" if args.vary else f"{args.side}x{args.side}"
    print(f"feature_map + pool, {what} crop, {args.rois} RoIs, {torch.get_num_threads()} threads")
    for name in names:
        med = statistics.median(times[name])
        pool = statistics.median(pool_times[name])
        print(
            f"{name:12s} median {med * 1e3:7.2f} ms  ({med / base:.2f}x {names[0]}); "
            f"pool alone {pool * 1e3:.2f} ms"
        )


if __name__ == "__main__":
    main()
