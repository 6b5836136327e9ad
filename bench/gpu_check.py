"""One command for a machine with a GPU: the GPU tests, then the trackers' speed on it, one table.

    python -m bench.gpu_check --json OUT [--split val] [--max-frames N] [--skip-tests]

Written for the machines this project is sometimes lent (one NVIDIA GPU, CUDA PyTorch, ONNX
Runtime's CPU build, no TensorRT): on a machine without a CUDA device it refuses in one line
before doing anything. On one with a device it

1. runs the test suite's GPU tests (``pytest -k "cuda or gpu or tensorrt"``: each skips with
   its reason where TensorRT is missing) and records their outcome;
2. runs ``bench.ope`` on ``--split`` with, side by side in one process: ``nanotrack`` (v3 on the
   GPU in torch, NanoTrack v2 beside it on the CPU), the same in fp16 autocast, v3 alone in fp32
   and fp16, and the CPU default (ONNX Runtime) as the reference row; with ``--tensorrt DIR`` (an
   export folder with engines, ``python export/build_engine.py --tracker nanotrack --out DIR``
   on this machine) v3 on TensorRT too, with and without v2;
3. writes ``--json`` (the device, torch and CUDA versions, the tests' result, and per tracker
   its mean AUC, precision and median FPS) and prints the table.

Timings are this run's, on this machine: compare rows, not machines.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

from runtime.atomic import write_atomic
from runtime.cli.program import program_name
from runtime.paths import PROJECT_ROOT

GPU_TESTS = "cuda or gpu or tensorrt"
CPU_REFERENCE = "nanotrack"
GPU_TRACKERS = (
    "nanotrack[device=cuda;backend=torch]",
    "nanotrack[device=cuda;backend=torch;precision=fp16]",
    "nanotrack[device=cuda;backend=torch;fusion_weight=0]",
    "nanotrack[device=cuda;backend=torch;precision=fp16;fusion_weight=0]",
)


class NoGPU(RuntimeError):
    """No CUDA device here: the check has nothing to measure."""


def require_cuda() -> str:
    """The device's name, or :class:`NoGPU` saying what this torch is."""
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU only"
        raise NoGPU(
            f"no CUDA device (torch {torch.__version__}, {build} build): run this on a machine "
            f"with an NVIDIA GPU and CUDA PyTorch"
        )
    return torch.cuda.get_device_name(0)


def trackers(tensorrt: Path | None) -> list[str]:
    rows = [CPU_REFERENCE, *GPU_TRACKERS]
    if tensorrt is not None:
        rows.append(f"nanotrack[backend=tensorrt;export_dir={tensorrt}]")
        rows.append(f"nanotrack[backend=tensorrt;export_dir={tensorrt};fusion_weight=0]")
    return rows


def run_tests() -> dict[str, object]:
    command = [sys.executable, "-m", "pytest", "-q", "-k", GPU_TESTS, "tests"]
    done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True)
    last = (done.stdout.strip().splitlines() or [""])[-1]
    return {"command": " ".join(command[1:]), "exit_code": done.returncode, "summary": last}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=program_name("python -m bench.gpu_check"),
        description="GPU tests and speed on a machine with a CUDA device, one table.",
    )
    parser.add_argument("--json", type=Path, required=True, help="where to write the results")
    parser.add_argument("--split", default="val", help="a split of <data>/sequences")
    parser.add_argument("--max-frames", type=int, default=None, help="first N frames only")
    parser.add_argument("--tensorrt", type=Path, default=None, help="export folder with engines")
    parser.add_argument("--skip-tests", action="store_true", help="only the speed table")
    args = parser.parse_args(argv)
    try:
        device = require_cuda()
    except NoGPU as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from bench.ope import main as ope_main  # after the refusal: it loads every tracker

    result: dict[str, object] = {
        "device": device,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "tests": None if args.skip_tests else run_tests(),
    }
    ope_json = args.json.with_name(args.json.stem + ".ope.json")
    ope_args = ["--split", args.split, "--trackers", ",".join(trackers(args.tensorrt))]
    ope_args += ["--json", str(ope_json), "--peer", CPU_REFERENCE, "--quiet"]
    if args.max_frames is not None:
        ope_args += ["--max-frames", str(args.max_frames)]
    code = ope_main(ope_args)
    if code != 0:
        return code
    summary = json.loads(ope_json.read_text())
    result["trackers"] = {
        name: {k: entry.get(k) for k in ("mean_auc", "mean_precision", "median_fps")}
        for name, entry in summary.items()
    }
    write_atomic(args.json, (json.dumps(result, indent=1) + "\n").encode())
    if result["tests"] is not None:
        print(f"GPU tests: {result['tests']['summary']}")  # type: ignore[index]
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
