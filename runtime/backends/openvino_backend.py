"""OpenVINO on the CPU: the Siamese trackers' ONNX graphs in bfloat16 where the CPU has the units.

ONNX Runtime has no bfloat16 convolutions on the CPU; OpenVINO runs a graph's convolutions in
bfloat16 on CPUs with AVX512-BF16 or AMX (``INFERENCE_PRECISION_HINT``). Measured on the 2-core
AMD EPYC developer VM (AVX512-BF16, no AMX), one thread, NanoTrack v3's search graph at the 255
crop: ONNX Runtime fp32 3.28 ms, OpenVINO f32 3.49 ms, OpenVINO bf16 2.22 ms
(``python -m bench.graph_profile``, docs/speed.md). So OpenVINO is used for bf16 only: in f32 it
is no faster than ONNX Runtime here.

A graph with a free crop size is compiled once per size it is fed (OpenVINO is fastest on
static shapes; the tracker feeds two or three sizes). Nothing here imports a tracker package.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import os
import signal
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from runtime.backends.onnxruntime_backend import session_options, start_session
from runtime.backends.siamese import BOXES, CROP, KERNELS, SCORES, SiameseExport

OPENVINO_PRECISIONS = {"bf16": "bf16", "fp32": "f32"}  # ours -> OpenVINO's precision hint
Runner = Callable[[Mapping[str, np.ndarray]], list[np.ndarray]]  # feeds -> outputs


class _SignalStack(ctypes.Structure):  # stack_t of sigaltstack(2)
    _fields_ = [
        ("ss_sp", ctypes.c_void_p),
        ("ss_flags", ctypes.c_int),
        ("ss_size", ctypes.c_size_t),
    ]


def _fields(stack: _SignalStack) -> tuple[int, int, int]:
    return (stack.ss_sp or 0, stack.ss_flags, stack.ss_size)


@functools.cache
def _libc() -> Any:
    """The C library, loaded once (``sigaltstack`` has no Python binding)."""
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


@contextmanager
def _signal_state_kept() -> Iterator[None]:
    """This thread's signal state kept as it was while OpenVINO runs on it.

    Two things OpenVINO does to a thread broke Python's signal handling (a segmentation fault
    at ``os.kill(os.getpid(), SIGTERM)`` once an OpenVINO tracker had run in the process):

    - compiling a model installs an alternate signal stack on the calling thread (11 kB, found
      with sigaltstack(2)) and does not remove it; Python's handlers run on the alternate stack
      (SA_ONSTACK), so once that memory is freed the next Ctrl-C crashes. The thread's previous
      alternate stack (usually none) is put back after each call;
    - OpenVINO starts worker threads, which inherit the signal mask of the thread that starts
      them: SIGINT and SIGTERM are blocked during each call, so they reach a Python thread
      instead of one of OpenVINO's (a signal that arrives meanwhile waits a few milliseconds).
    """
    if not hasattr(signal, "pthread_sigmask"):  # not POSIX: nothing to keep
        yield
        return
    libc = _libc()
    stack = _SignalStack()
    kept = libc is not None and libc.sigaltstack(None, ctypes.byref(stack)) == 0
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        if kept:
            now = _SignalStack()
            libc.sigaltstack(None, ctypes.byref(now))
            if _fields(now) != _fields(stack):
                libc.sigaltstack(ctypes.byref(stack), None)
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def load_openvino() -> Any:
    """The ``openvino`` module, imported with SIGINT and SIGTERM held back: importing it starts
    two threads of its own, which must not be where a signal lands (:func:`_signal_state_kept`).
    Import it through here, first, in any process that handles signals."""
    with _signal_state_kept():
        import openvino

        openvino.Core()  # the CPU plugin's threads start with the first Core
    return openvino


def openvino_status(precision: str = "bf16") -> tuple[bool, str]:
    """``(usable, why)``: OpenVINO importable, and for bf16 a CPU with bfloat16 units."""
    if importlib.util.find_spec("openvino") is None:
        return False, "OpenVINO is not installed (pip install openvino)"
    ov = load_openvino()
    with _signal_state_kept():
        capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if precision == "bf16" and "BF16" not in capabilities:
        return False, "this CPU has no bfloat16 units (AVX512-BF16 or AMX) OpenVINO can use"
    return True, f"OpenVINO {ov.__version__}, CPU capabilities {', '.join(capabilities)}"


class OpenVinoGraph:
    """One ONNX graph on OpenVINO's CPU plugin: ``run(feeds)`` -> outputs in graph order, as
    fresh numpy arrays. Compiled on first use for each set of input shapes."""

    def __init__(
        self, graph: bytes, threads: int, precision: str, cache_dir: Path | None = None
    ) -> None:
        ov = load_openvino()
        if precision not in OPENVINO_PRECISIONS:
            raise ValueError(f"OpenVINO runs bf16 or fp32 here, not {precision!r}")
        with _signal_state_kept():
            self._core = ov.Core()
            self._model = self._core.read_model(graph)
        self._config = {
            "INFERENCE_NUM_THREADS": int(threads),
            "INFERENCE_PRECISION_HINT": OPENVINO_PRECISIONS[precision],
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
            # Unpinned: the other network of a frame runs on another thread beside this one.
            "ENABLE_CPU_PINNING": False,
        }
        if cache_dir is not None:
            # OpenVINO keeps each compiled shape there: ~0.2 s a shape the first time, then
            # read back (the benchmarks build a tracker per video).
            self._config["CACHE_DIR"] = str(cache_dir)
        self._requests: dict[tuple, tuple[Any, dict[str, Any]]] = {}

    def prepare(self, shapes: Mapping[str, Sequence[int]]) -> None:
        """Compile now for these input shapes (the others as the graph declares them), so the
        first frame of that size does not pay ~0.2 s."""
        declared = {value.get_any_name(): value.get_partial_shape() for value in self._model.inputs}
        full = {
            name: tuple(shapes[name]) if name in shapes else tuple(shape.to_shape())
            for name, shape in declared.items()
        }
        self._request_for(full)

    def _request_for(self, shapes: Mapping[str, tuple[int, ...]]) -> tuple[Any, dict[str, Any]]:
        key = tuple(sorted(shapes.items()))
        if key not in self._requests:
            model = self._model.clone()
            model.reshape({name: list(shape) for name, shape in shapes.items()})
            with _signal_state_kept():
                compiled = self._core.compile_model(model, "CPU", self._config)
                request = compiled.create_infer_request()
            outputs = {output.get_any_name(): output for output in compiled.outputs}
            self._requests[key] = (request, outputs)
        return self._requests[key]

    def run(
        self, feeds: Mapping[str, np.ndarray], names: Sequence[str] | None = None
    ) -> list[np.ndarray]:
        """The outputs ``names`` (all, in graph order, if None) for ``feeds``."""
        request, outputs = self._request_for({n: tuple(a.shape) for n, a in feeds.items()})
        with _signal_state_kept():
            results = request.infer(dict(feeds))  # copies (share_outputs=False): safe to keep
        wanted = list(outputs) if names is None else names
        return [np.asarray(results[outputs[name]]) for name in wanted]


def compiled_cache(folder: Path) -> Path | None:
    """``folder/openvino`` for OpenVINO's compiled shapes, None where it cannot be written."""
    cache = folder / "openvino"
    try:
        cache.mkdir(exist_ok=True)
    except OSError:
        return None
    return cache if os.access(cache, os.W_OK) else None


def graph_runner(
    graph: bytes,
    threads: int,
    engine: str,
    precision: str = "fp32",
    cache_dir: Path | None = None,
) -> Runner:
    """``run(feeds) -> outputs`` of ``graph`` on ONNX Runtime or OpenVINO (CPU; ``cache_dir``:
    where OpenVINO keeps compiled shapes)."""
    if engine == "openvino":
        return OpenVinoGraph(graph, threads, precision, cache_dir).run
    session = start_session(graph, session_options(threads), ["CPUExecutionProvider"])
    return lambda feeds: session.run(None, dict(feeds))


def _host(tensor: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype=np.float32)


class OpenVinoSiameseBackend:
    """The template and search graphs of an export folder (or the graph cache) on OpenVINO."""

    name = "openvino"
    batches = False  # the exported graphs take one crop a call

    def __init__(self, export: SiameseExport, threads: int | None, precision: str) -> None:
        self.export, self.precision = export, precision
        count = int(threads or torch.get_num_threads())
        self.cache_dir = compiled_cache(export.folder)
        self._template, self._search = (
            OpenVinoGraph(export.graph(name).read_bytes(), count, precision, self.cache_dir)
            for name in ("template", "search")
        )

    def prepare(self, sides: Sequence[int], template_side: int = 127) -> None:
        """Compile the template graph and the search graph for these crop sides now."""
        self._template.prepare({CROP: (1, 3, template_side, template_side)})
        for side in sides:
            self._search.prepare({CROP: (1, 3, side, side)})

    def template(self, crop: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = self._template.run({CROP: _host(crop)}, KERNELS)
        return tuple(torch.from_numpy(o) for o in outs)

    def search(
        self, crop: torch.Tensor, kernels: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        feeds = {CROP: _host(crop), **{n: _host(k) for n, k in zip(KERNELS, kernels, strict=True)}}
        scores, boxes = self._search.run(feeds, (SCORES, BOXES))
        return torch.from_numpy(scores), torch.from_numpy(boxes)

    def __repr__(self) -> str:
        return f"OpenVinoSiameseBackend({self.export.folder}, {self.precision})"
