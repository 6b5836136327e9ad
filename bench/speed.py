"""Tracking speed per backend, in one run: ``python -m bench.speed``.

    python -m bench.speed [--split val] [--seqs A,B] [--backends torch,onnxruntime,tensorrt] \\
        [--export-dir DIR[,INT8_DIR]] [--trackers "rtmdnet,metartt,metartt[prune=shipped]"] \\
        [--json OUT] [--max-frames N] [--threads N]

Every tracker on every backend tracks the same decoded frames in the same process
(``bench.ope``), so the FPS figures compare; the table gives the median FPS over the sequences,
its ratio to the first row, the accuracy as a check that the backends agree, and the mean prune
rate of pruned trackers (their graphs are sliced per video: torch slices the tensors, ONNX
Runtime builds sessions from the sliced graphs in memory at the first frame). ONNX Runtime and
TensorRT need the folder written by ``python export/build_engine.py`` (default
``outputs/export/rtmdnet-<backbone>``). A backend that cannot run here is listed with the reason
and skipped. Timings belong here, never in tests.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.ope import run_ope, set_threads, split_list, split_spec, write_json
from bench.trackers import make_tracker
from runtime.backends.manifest import load_manifest
from runtime.backends.tensorrt_backend import tensorrt_status
from runtime.cli.program import program_name
from runtime.evaluation.one_pass import OPEError, resolve_sequences
from runtime.paths import data_root
from runtime.registry import export_kind
from runtime.rtmdnet import RTMDNetConfig

DEFAULT_EXPORT = Path("outputs/export")


def _precision(export_dir: Path) -> tuple[str, str]:
    """The folder's precision and its row label (an int8 folder says how many convs are int8)."""
    manifest = load_manifest(export_dir)
    precision = str(manifest.get("precision", "fp32"))
    int8 = manifest.get("int8") or {}
    if precision == "int8" and "int8_convs" in int8:
        total = f"/{int8['convs_total']}" if "convs_total" in int8 else ""
        return precision, f"int8 ({len(int8['int8_convs'])}{total} convs)"
    return precision, precision


def _skip_reason(backend: str, export_dir: Path) -> str | None:
    if not (export_dir / "manifest.json").is_file():
        return f"no export in {export_dir} (run python export/build_engine.py)"
    if backend == "tensorrt":
        usable, why = tensorrt_status()
        return None if usable else why
    return None


def _runs(
    tracker: str, backends: list[str], export_dirs: list[Path]
) -> list[tuple[str, Path | None, str, str]]:
    """``(backend, export folder, precision, row label)`` for each run of ``tracker``."""
    try:
        kind = export_kind(tracker)
    except ValueError as exc:  # an unknown name
        raise OPEError(str(exc)) from None
    if kind is None:
        raise OPEError(f"{tracker} is an OpenCV peer: no backends of ours to compare (bench.ope)")
    # A folder of the other kind is not this tracker's; one without a manifest is reported below.
    own = [d for d in export_dirs if _kind(d) in (kind, None)]
    runs: list[tuple[str, Path | None, str, str]] = []
    for backend in backends:
        folders: list[Path | None] = [None] if backend == "torch" else list(own)
        if backend == "onnxruntime" and kind == "siamese" and not any(_kind(d) for d in own):
            folders = [None]  # the graph cache
        for export_dir in folders:
            reason = _skip_reason(backend, export_dir) if export_dir else None
            if backend == "tensorrt" and export_dir is None:
                reason = f"no {kind} export folder given"
            if reason:
                print(f"skipping {backend} ({export_dir}) for {tracker}: {reason}", file=sys.stderr)
                continue
            precision, label = _precision(export_dir) if export_dir else ("fp32", "fp32")
            runs.append((backend, export_dir, precision, label))
    return runs


def _kind(export_dir: Path) -> str | None:
    try:
        return str(load_manifest(export_dir).get("kind", "rtmdnet"))
    except (FileNotFoundError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=program_name("python -m bench.speed"), description=__doc__
    )
    parser.add_argument("--data", type=Path, default=None, help="sequences folder")
    parser.add_argument("--data-root", type=Path, default=None, help="shared data folder")
    parser.add_argument("--seqs", default=None)
    parser.add_argument("--split", default="val")
    parser.add_argument(
        "--trackers", "--tracker", default="rtmdnet", help="comma-separated tracker names"
    )
    parser.add_argument("--backends", default="torch,onnxruntime,tensorrt")
    parser.add_argument(
        "--export-dir",
        default=None,
        help="comma-separated export folders (one row each per tracker and backend, at the "
        "folder's precision; e.g. an fp32 and an int8 export)",
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    try:
        root = data_root(args.data_root)
        sequences = resolve_sequences(
            args.data or root / "sequences", split_list(args.seqs), args.split
        )
        threads = set_threads(args.threads)
        backbone = RTMDNetConfig().backbone
        export_dirs = [Path(d) for d in split_list(args.export_dir)] or [
            DEFAULT_EXPORT / f"rtmdnet-{backbone}",
            DEFAULT_EXPORT / "nanotrack",
        ]
        # One row per tracker x backend x export folder of the tracker's kind (each at its own
        # precision: fp32, int8). nanotrack on ONNX Runtime without a folder of its own runs from
        # its first-use graph cache.
        specs: dict[tuple[str, str, str], str] = {}
        for tracker in split_list(args.trackers):
            for backend, export_dir, precision, label in _runs(
                tracker, split_list(args.backends), export_dirs
            ):
                extra = "" if export_dir is None else f";export_dir={export_dir}"
                if precision != "fp32":
                    extra += f";precision={precision}"
                if (tracker, backend, label) in specs:  # two folders alike: name the folder
                    label = f"{label} ({export_dir.name if export_dir else 'torch'})"
                specs[(tracker, backend, label)] = f"{tracker}[backend={backend}{extra}]"
        if not specs:
            raise OPEError("no backend can run here")

        def factory(spec: str):
            name, options = split_spec(spec)
            return make_tracker(name, data_dir=root, **options)

        summary = run_ope(
            list(specs.values()),
            sequences,
            factory=factory,
            max_frames=args.max_frames,
            progress=not args.quiet,
        )
    except OPEError as error:
        print(f"bench.speed: error: {error}", file=sys.stderr)
        return 2
    base = summary[specs[next(iter(specs))]]["median_fps"]
    rows = [
        "| tracker | backend | precision | pruning | median FPS | vs first | mean AUC "
        "| mean precision |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for (tracker, backend, precision), spec in specs.items():
        result = summary[spec]
        rate = result.get("mean_prune_rate")
        pruning = "none" if rate is None else f"{rate:.0%} ± {result['std_prune_rate']:.0%}"
        rows.append(
            f"| {tracker} | {backend} | {precision} | {pruning} | {result['median_fps']:.1f} | "
            f"{result['median_fps'] / base:.2f}x | {result['mean_auc']:.3f} | "
            f"{result['mean_precision']:.3f} |"
        )
    print(f"{len(sequences)} sequences, {threads} thread(s)")
    print("\n".join(rows))
    if args.json is not None:
        write_json({" / ".join(key): summary[spec] for key, spec in specs.items()}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
