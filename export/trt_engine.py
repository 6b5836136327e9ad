"""One TensorRT 10 engine from an ONNX file (written against the API; NOT run on these machines).

Shared by every tracker's export (``export/build_engine.py``, :mod:`export.siamese_export`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from calib.graph_checks import ExportError

WORKSPACE_BYTES = 1 << 30


def build_trt_engine(
    trt: Any,
    onnx_path: Path,
    shapes: dict[str, dict[str, list[int]]],
    precision: str,
    timing_cache: Path,
) -> bytes:
    """One serialized engine from an ONNX file, with one optimization profile over ``shapes``."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # Explicit batch: the only mode in TensorRT 10 (the flag is deprecated there and ignored).
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if precision == "int8":  # explicit quantization: the Q/DQ nodes and tensor types decide,
        # no precision flags (TensorRT 10's guidance for Q/DQ networks: strongly typed)
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT's ONNX parser rejected {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    config.set_flag(trt.BuilderFlag.REFIT)  # weights can be swapped in without a rebuild
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means fp32 (parity with torch/ORT)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    profile = builder.create_optimization_profile()
    for name, shape in shapes.items():
        profile.set_shape(name, shape["min"], shape["opt"], shape["max"])
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ExportError(f"TensorRT could not build an engine from {onnx_path.name}")
    timing_cache.write_bytes(memoryview(config.get_timing_cache().serialize()))
    return bytes(memoryview(plan))
