"""The default tracker's networks against this CPU's limit: operators, FLOPs, achieved GFLOP/s.

    python -m bench.graph_profile --json OUT [--runs N] [--threads 1,2] [--sides 255,191]
        [--engines onnxruntime,openvino-bf16] [--data DIR]

For NanoTrack v3's search graph (the graph cache's ``search.onnx``) and NanoTrack v2's backbone +
head (:mod:`runtime.nanotrack.second_network`) on each search crop side (the full 255 and the
compact 191 by default), on each engine (``--engines``): ONNX Runtime fp32 with the options every
backend uses; ONNX Runtime with every conv in int8 (a bound on int8's speed: calibrated on the
random crop, so its outputs mean nothing); OpenVINO fp32; OpenVINO bf16 where the CPU has
bfloat16 units (:mod:`runtime.backends.openvino_backend`, the default's engine there):

- **work**: multiply-accumulates per frame, counted from the graphs' own shapes (``Conv``:
  output elements x input channels per group x kernel area; ``MatMul`` / ``Gemm``: M x N x K);
  elementwise ops are left out (they are memory-bound, and small here);
- **time**: the median of ``--runs`` calls per engine and thread count, on the same crops;
- **achieved GFLOP/s** = 2 x MACs / time, against **this CPU's measured peak** for the number
  format: the median of a 2048 x 2048 matrix product in torch (oneDNN, the fastest kernel on the
  machine) with the same thread count, run in the same process, in bfloat16 for OpenVINO bf16 and
  in float32 for the others (int8 included: no int8 peak is measured);
- **per operator**: ONNX Runtime's own profiler (``enable_profiling``), the kernel time of every
  node summed over the runs, grouped by op type and the slowest nodes listed.

The CPU's model and its vector extensions are recorded beside the figures; the table says what
share of the peak each network reaches. Nothing here changes a tracker; it says where the
milliseconds of a frame are.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import shape_inference
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)

from bench.environment import CPUINFO, cpu_model
from runtime.atomic import write_atomic
from runtime.backends.onnxruntime_backend import session_options
from runtime.backends.openvino_backend import Runner, graph_runner, openvino_status
from runtime.cli.program import program_name
from runtime.nanotrack.deploy import cached_export
from runtime.nanotrack.second_network import (
    MIN_SEARCH_SIDE,
    SEARCH_SIDE,
    shaped_head,
    size_free_backbone,
    v2_cells,
    v2_files,
)
from runtime.paths import data_root

SIDE = 255  # the full search crop
# ONNX Runtime fp32 (the default's engine where the CPU has no bf16 units), every conv in int8 on
# ONNX Runtime (a speed bound), OpenVINO fp32 and bf16 (the default's engine where it has them).
ENGINES = ("onnxruntime", "onnxruntime-int8", "openvino-fp32", "openvino-bf16")


def available_engines() -> list[str]:
    """Every engine of :data:`ENGINES`, OpenVINO bf16 only where the CPU has bf16 units."""
    return list(ENGINES) if openvino_status("bf16")[0] else list(ENGINES[:3])


VECTOR_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8")


def cpu_flags() -> list[str]:
    """The vector extensions of :data:`VECTOR_FLAGS` this CPU reports."""
    try:
        for line in CPUINFO.read_text().splitlines():
            if line.startswith("flags"):
                present = set(line.partition(":")[2].split())
                return [f for f in VECTOR_FLAGS if f in present]
    except OSError:
        pass
    return []


def macs(model: onnx.ModelProto, inputs: dict[str, tuple[int, ...]]) -> dict[str, int]:
    """Multiply-accumulates per op type of ``model`` with ``inputs`` at the given shapes."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for value in fixed.graph.input:
        if value.name in inputs:
            dims = value.type.tensor_type.shape.dim
            for dim, size in zip(dims, inputs[value.name], strict=True):
                dim.Clear()
                dim.dim_value = size
    inferred = shape_inference.infer_shapes(fixed)
    shapes: dict[str, list[int]] = {}
    for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        shapes[value.name] = [d.dim_value for d in value.type.tensor_type.shape.dim]
    for init in inferred.graph.initializer:
        shapes[init.name] = list(init.dims)
    out: dict[str, int] = defaultdict(int)
    for node in inferred.graph.node:
        if node.op_type == "Conv":
            weight, output = shapes.get(node.input[1]), shapes.get(node.output[0])
            if weight and output:
                out["Conv"] += int(np.prod(output)) * int(np.prod(weight[1:]))
        elif node.op_type in ("MatMul", "Gemm"):
            a, b = shapes.get(node.input[0]), shapes.get(node.input[1])
            if a and b:
                transposed = node.op_type == "Gemm" and any(
                    attr.name == "transB" and attr.i for attr in node.attribute
                )
                n = b[-2] if transposed else b[-1]
                out[node.op_type] += int(np.prod(a)) * int(n)
    return dict(out)


def sgemm_peak(
    threads: int, runs: int = 20, size: int = 2048, dtype: torch.dtype = torch.float32
) -> float:
    """GFLOP/s of a ``size`` x ``size`` matrix product in torch on ``threads`` threads (float32,
    or bfloat16: oneDNN's kernel for the CPU's bf16 units where it has them)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        torch.mm(a, b)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            torch.mm(a, b)
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
    return 2.0 * size**3 / statistics.median(times) / 1e9


class Network:
    """One network's graphs and feeds: ``run()`` is one frame's search."""

    def __init__(self, name: str, graphs: list[bytes], feeds: list[dict], chain: bool) -> None:
        self.name, self.graphs, self.feeds, self.chain = name, graphs, feeds, chain

    def sessions(self, threads: int, profile_dir: Path | None = None) -> list[ort.InferenceSession]:
        out = []
        for i, graph in enumerate(self.graphs):
            options = session_options(threads)
            if profile_dir is not None:
                options.enable_profiling = True
                options.profile_file_prefix = str(profile_dir / f"{self.name}-{i}")
            out.append(ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"]))
        return out

    def runners(self, threads: int, engine: str) -> list[Runner]:
        """The graphs on ``engine`` (:data:`ENGINES`)."""
        if engine.startswith("openvino-"):
            precision = engine.partition("-")[2]
            return [graph_runner(g, threads, "openvino", precision) for g in self.graphs]
        graphs = self.graphs if engine == "onnxruntime" else self.int8_graphs
        return [graph_runner(g, threads, "onnxruntime") for g in graphs]

    def graph_feeds(self) -> list[dict]:
        """Each graph's own inputs for one frame (a chained graph's from the one before)."""
        feeds, feed = [], dict(self.feeds[0])
        for i, graph in enumerate(self.graphs):
            feeds.append(feed)
            if self.chain and i + 1 < len(self.graphs):
                session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
                feed = {**self.feeds[i + 1], "input2": session.run(None, feed)[0]}
        return feeds

    @functools.cached_property
    def int8_graphs(self) -> list[bytes]:
        """Every ``Conv`` of every graph in int8 (QOperator: uint8 activations, int8 weights
        per channel, ONNX Runtime's fastest x86 form), calibrated on this frame's own random
        inputs: a bound on int8's speed here, not a tracker (its accuracy is meaningless)."""
        out = []
        quantizer_log = logging.getLogger()  # it advises pre-processing on the root logger
        level = quantizer_log.level
        quantizer_log.setLevel(logging.ERROR)
        try:
            pairs = zip(self.graphs, self.graph_feeds(), strict=True)
            with tempfile.TemporaryDirectory() as folder:
                for i, (graph, feed) in enumerate(pairs):
                    model = onnx.load_from_string(graph)
                    for value in model.graph.input:  # the quantizer wants static shapes
                        dims = value.type.tensor_type.shape.dim
                        for dim, size in zip(dims, feed[value.name].shape, strict=True):
                            dim.Clear()
                            dim.dim_value = size
                    source, target = Path(folder) / f"{i}.onnx", Path(folder) / f"{i}-int8.onnx"
                    onnx.save(model, str(source))
                    quantize_static(
                        str(source),
                        str(target),
                        _OneFeed(feed),
                        quant_format=QuantFormat.QOperator,
                        activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8,
                        per_channel=True,
                        op_types_to_quantize=["Conv"],
                    )
                    out.append(target.read_bytes())
        finally:
            quantizer_log.setLevel(level)
        return out

    def run(self, runners: list[Runner]) -> None:
        feed = dict(self.feeds[0])
        for i, runner in enumerate(runners):
            outputs = runner(feed)
            if self.chain and i + 1 < len(runners):
                feed = {**self.feeds[i + 1], "input2": outputs[0]}


class _OneFeed(CalibrationDataReader):
    def __init__(self, feed: dict) -> None:
        self._feeds = iter([feed])

    def get_next(self) -> dict | None:
        return next(self._feeds, None)


def networks(
    data_dir: Path | None, side: int = SIDE
) -> tuple[list[Network], dict[str, dict[str, int]]]:
    """v3's search graph and v2's backbone + head on ``side`` crops (random), and their MACs."""
    rng = np.random.default_rng(0)
    crop = (rng.random((1, 3, side, side)) * 255).astype(np.float32)
    template = (rng.random((1, 3, 127, 127)) * 255).astype(np.float32)
    export = cached_export(data_root(data_dir) / "weights", lambda m: print(m, file=sys.stderr))
    template_graph = export.graph("template").read_bytes()
    search_graph = export.graph("search").read_bytes()
    template_session = ort.InferenceSession(template_graph, providers=["CPUExecutionProvider"])
    names = [o.name for o in template_session.get_outputs()]  # the search graph's kernel inputs
    kernels = template_session.run(None, {"crop": template})
    search = onnx.load_from_string(search_graph)
    v3_feed = {"crop": crop, **dict(zip(names, kernels, strict=True))}
    backbone_path, head_path = v2_files(data_dir)
    backbone = size_free_backbone(backbone_path)
    cells = v2_cells(side)
    head = shaped_head(head_path, cells)
    feature = ort.InferenceSession(backbone, providers=["CPUExecutionProvider"]).run(
        None, {"input": template}
    )[0]
    v3 = Network(f"v3 search, {side} crop", [search_graph], [v3_feed], chain=False)
    v2_feeds = [{"input": crop}, {"input1": feature}]
    v2 = Network(f"v2 backbone+head, {side} crop", [backbone, head], v2_feeds, chain=True)
    v2_backbone = macs(onnx.load_from_string(backbone), {"input": (1, 3, side, side)})
    v2_head = macs(onnx.load_from_string(head), {"input2": (1, 48, cells, cells)})
    work = {
        v3.name: macs(search, {"crop": (1, 3, side, side)}),
        v2.name: {
            op: v2_backbone.get(op, 0) + v2_head.get(op, 0) for op in {*v2_backbone, *v2_head}
        },
    }
    return [v3, v2], work


def timed(network: Network, threads: int, runs: int, engine: str = "onnxruntime") -> float:
    runners = network.runners(threads, engine)
    for _ in range(20):
        network.run(runners)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        network.run(runners)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def operator_profile(network: Network, runs: int) -> tuple[dict[str, float], list[dict]]:
    """Kernel milliseconds per frame by op type, and the ten slowest nodes (1 thread)."""
    by_type: dict[str, float] = defaultdict(float)
    by_node: dict[str, list] = {}
    with tempfile.TemporaryDirectory() as folder:
        sessions = network.sessions(1, Path(folder))
        for _ in range(runs):
            network.run([lambda feed, s=s: s.run(None, feed) for s in sessions])
        for session in sessions:
            trace = json.loads(Path(session.end_profiling()).read_text())
            for event in trace:
                args = event.get("args", {})
                if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
                    continue
                ms = event["dur"] / 1000.0 / runs
                by_type[args.get("op_name", "?")] += ms
                node = by_node.setdefault(
                    event["name"][: -len("_kernel_time")], [args.get("op_name"), 0.0]
                )
                node[1] += ms
    slowest = sorted(by_node.items(), key=lambda kv: -kv[1][1])[:10]
    return dict(sorted(by_type.items(), key=lambda kv: -kv[1])), [
        {"node": name, "op": op, "ms": ms} for name, (op, ms) in slowest
    ]


def profile(
    data_dir: Path | None,
    threads: list[int],
    runs: int,
    sides: list[int],
    engines: list[str] = ENGINES[:1],
) -> dict:
    """The figures of every network on every crop side and engine; the operator profile (ONNX
    Runtime's) on the first side. An engine's share of peak is against the peak of its number
    format: float32 SGEMM for onnxruntime, a bfloat16 matrix product for openvino-bf16."""
    nets: list[Network] = []
    work: dict[str, dict[str, int]] = {}
    for side in sides:
        side_nets, side_work = networks(data_dir, side)
        nets += side_nets
        work.update(side_work)
    result: dict = {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "onnxruntime": ort.__version__,
        "torch": torch.__version__,
        "sides": sides,
        "runs": runs,
        "engines": engines,
        "peak_sgemm_gflops": {str(t): sgemm_peak(t) for t in threads},
        "networks": {},
    }
    # int8 has no matching matrix-product peak measured here: its share is against float32's.
    peaks = {e: result["peak_sgemm_gflops"] for e in engines}
    if "openvino-bf16" in engines:
        result["peak_bf16_gemm_gflops"] = {
            str(t): sgemm_peak(t, dtype=torch.bfloat16) for t in threads
        }
        peaks["openvino-bf16"] = result["peak_bf16_gemm_gflops"]
    for net in nets:
        total_macs = sum(work[net.name].values())
        entry: dict = {"macs": work[net.name], "gflop": 2.0 * total_macs / 1e9, "runs": []}
        for engine in engines:
            for t in threads:
                seconds = timed(net, t, runs, engine)
                achieved = 2.0 * total_macs / seconds / 1e9
                entry["runs"].append(
                    {
                        "engine": engine,
                        "threads": t,
                        "median_ms": seconds * 1e3,
                        "gflops": achieved,
                        "peak_gflops": peaks[engine][str(t)],
                        "share_of_peak": achieved / peaks[engine][str(t)],
                    }
                )
        if net.name.endswith(f", {sides[0]} crop"):
            entry["ops_ms_1_thread"], entry["slowest_nodes_1_thread"] = operator_profile(net, runs)
        result["networks"][net.name] = entry
    return result


def markdown(result: dict) -> str:
    lines = [
        f"CPU: {result['cpu']} ({', '.join(result['cpu_flags']) or 'no vector flags found'}); "
        f"ONNX Runtime {result['onnxruntime']}; medians of "
        f"{result['runs']} calls.",
        "",
        "| network | GFLOP a frame | engine | threads | median ms | GFLOP/s | peak GFLOP/s "
        "| share of peak |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, entry in result["networks"].items():
        for row in entry["runs"]:
            lines.append(
                f"| {name} | {entry['gflop']:.3f} | {row['engine']} | {row['threads']} | "
                f"{row['median_ms']:.2f} | {row['gflops']:.1f} | {row['peak_gflops']:.1f} | "
                f"{100 * row['share_of_peak']:.1f} % |"
            )
    for name, entry in result["networks"].items():
        if "ops_ms_1_thread" not in entry:
            continue
        ops = ", ".join(f"{op} {ms:.2f}" for op, ms in list(entry["ops_ms_1_thread"].items())[:6])
        lines.append(f"\n{name}, kernel ms a frame by op type (1 thread): {ops}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=program_name("python -m bench.graph_profile"),
        description="The default tracker's networks against this CPU's limit.",
    )
    parser.add_argument("--json", type=Path, required=True, help="where to write the figures")
    parser.add_argument("--runs", type=int, default=500, help="calls per measurement")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument(
        "--sides",
        default="255,191",
        help="search crop sides, comma-separated: the full crop, the compact one (default)",
    )
    parser.add_argument(
        "--engines",
        default=",".join(available_engines()),
        help=f"comma-separated, of {', '.join(ENGINES)} (default: all this CPU can run)",
    )
    parser.add_argument("--data", type=Path, default=None, help="shared data folder")
    args = parser.parse_args(argv)
    try:
        threads = [int(t) for t in args.threads.split(",") if t.strip()]
        sides = [int(s) for s in args.sides.split(",") if s.strip()]
        if not threads or min(threads) < 1 or args.runs < 1:
            raise ValueError("--threads and --runs must be positive")
        if not sides or min(sides) < MIN_SEARCH_SIDE or max(sides) > SEARCH_SIDE:
            raise ValueError(f"--sides must lie between {MIN_SEARCH_SIDE} and {SEARCH_SIDE}")
        engines = [e for e in args.engines.split(",") if e.strip()]
        unknown = sorted(set(engines) - set(ENGINES))
        if unknown or not engines:
            raise ValueError(f"--engines takes {', '.join(ENGINES)}, not {', '.join(unknown)}")
        result = profile(args.data, threads, args.runs, sides, engines)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    write_atomic(args.json, (json.dumps(result, indent=1) + "\n").encode())
    print(markdown(result))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
