"""FP32 vs INT8 backbone on ONNX Runtime's CPU: latency on real crops and where the time goes.

    python -m bench.int8_cpu --export-dir outputs/export/rtmdnet-nanotrack-int8 \\
        --calib outputs/calib/train300 [--crops 30] [--rounds 3] [--threads 2] [--json OUT]

Three graphs of one export folder, run alternately crop by crop in one process (a busy machine
slows all alike): ``backbone.onnx`` (FP32), the INT8 graph as stored (symmetric int8
activations, TensorRT's form) and the INT8 graph as the ONNX Runtime backend runs it on a CPU
(activations re-encoded as uint8, :mod:`runtime.backends.qdq`). Sessions are made as the
backend makes them. Reported: median latency and the median per-crop ratio to FP32, the number
of convs ONNX Runtime fused into ``QLinearConv``, and ONNX Runtime's per-operator profile (kernel
time per crop, summed by operator type), which says where an INT8 graph loses or wins. Crops:
every 10th of the calibration set, starting with a held-out one. Timings belong here, never in
tests.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from calib.build import load
from calib.quantize import crop_feed
from runtime.backends.manifest import CROP, FEATURES, load_manifest
from runtime.backends.qdq import activations_to_uint8
from runtime.cli.program import program_name


def _options(threads: int, profile_prefix: str | None = None, saved: Path | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as the backend
    options.log_severity_level = 3
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    if saved:
        options.optimized_model_filepath = str(saved)
    return options


def graphs(export_dir: Path) -> dict[str, bytes]:
    manifest = load_manifest(export_dir)
    int8 = manifest.get("int8")
    if not int8:
        raise SystemExit(f"error: no INT8 graph in {export_dir} (build_engine.py --precision int8)")
    stored = (export_dir / int8["onnx"]).read_bytes()
    uint8 = onnx.load_from_string(stored)
    activations_to_uint8(uint8)
    return {
        "fp32": (export_dir / int8["fp32_onnx"]).read_bytes(),
        "int8 (stored, s8 activations)": stored,
        "int8 (as run on CPU, u8 activations)": uint8.SerializeToString(),
    }


def fused_convs(graph: bytes, threads: int) -> dict[str, int]:
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp) / "optimized.onnx"
        ort.InferenceSession(graph, _options(threads, saved=saved), ["CPUExecutionProvider"])
        ops = [n.op_type for n in onnx.load(str(saved)).graph.node]
    return {"QLinearConv": ops.count("QLinearConv"), "float Conv": ops.count("Conv")}


def latency(models: dict[str, bytes], crops, rounds: int, threads: int) -> dict[str, list[float]]:
    import onnxruntime as ort

    sessions = {
        name: ort.InferenceSession(graph, _options(threads), ["CPUExecutionProvider"])
        for name, graph in models.items()
    }
    feeds = [{CROP: crop_feed(c)} for c in crops]
    for session in sessions.values():  # warm-up: every crop size once
        for feed in feeds:
            session.run([FEATURES], feed)
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(rounds):
        for feed in feeds:
            for name, session in sessions.items():
                start = time.perf_counter()
                session.run([FEATURES], feed)
                times[name].append(time.perf_counter() - start)
    return times


def op_profile(graph: bytes, crops, threads: int) -> dict[str, float]:
    """Kernel milliseconds per crop, by operator type (ONNX Runtime's profiler)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = _options(threads, profile_prefix=str(Path(tmp) / "profile"))
        session = ort.InferenceSession(graph, options, ["CPUExecutionProvider"])
        for crop in crops:
            session.run([FEATURES], {CROP: crop_feed(crop)})
        events = json.loads(Path(session.end_profiling()).read_text())
    per_op: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"] / 1e3 / len(crops)
    return dict(sorted(per_op.items(), key=lambda kv: -kv[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=program_name("python -m bench.int8_cpu"), description=__doc__
    )
    parser.add_argument("--export-dir", type=Path, required=True)
    parser.add_argument("--calib", type=Path, required=True, help="calibration set (crops)")
    parser.add_argument("--crops", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=8, help="operators listed per graph")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if not (args.export_dir / "manifest.json").is_file():
        print(f"error: no export in {args.export_dir}", file=sys.stderr)
        return 2
    models = graphs(args.export_dir)
    calib = load(args.calib)
    crops = [calib.crops[i] for i in range(4, len(calib), 10)][: args.crops]
    times = latency(models, crops, args.rounds, args.threads)
    base = np.asarray(times["fp32"])
    pixels = np.median([c.shape[0] * c.shape[1] for c in crops])
    print(
        f"backbone alone, {len(crops)} real crops (median {pixels / 1e3:.0f}k pixels), "
        f"{args.rounds} rounds, {args.threads} threads"
    )
    report: dict[str, Any] = {"crops": len(crops), "threads": args.threads, "graphs": {}}
    for name, graph in models.items():
        runs = np.asarray(times[name])
        profile = op_profile(graph, crops, args.threads)
        entry = {
            "median_ms": float(np.median(runs) * 1e3),
            "ratio_to_fp32": float(np.median(runs / base)),
            "convs": fused_convs(graph, args.threads),
            "kernel_ms_per_crop": {op: round(ms, 3) for op, ms in profile.items()},
        }
        report["graphs"][name] = entry
        print(
            f"\n{name}: median {entry['median_ms']:.2f} ms, {entry['ratio_to_fp32']:.2f}x FP32; "
            f"convs fused: {entry['convs']['QLinearConv']} QLinearConv, "
            f"{entry['convs']['float Conv']} float Conv; kernel time "
            f"{sum(profile.values()):.2f} ms/crop"
        )
        for op, ms in list(profile.items())[: args.top]:
            print(f"    {op:20s} {ms:6.2f} ms")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
