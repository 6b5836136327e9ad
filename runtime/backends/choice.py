"""Which backend runs a tracker's fixed network: the one ``auto`` rule, and what it refuses.

Every tracker's backend is chosen here (:func:`choose_backend`), the RT-MDNet/MLT feature
backends and the Siamese ones alike, from what the tracker asks and the facts about its export
folder (:class:`BackendAsk`). ``backend="auto"`` takes, in this order:

1. TensorRT, where it is usable and the export folder holds engines;
2. ONNX Runtime on the given export folder;
3. torch, on a GPU device;
4. from the tracker's graph cache, where it has one (the Siamese trackers): OpenVINO in
   bfloat16 where the precision is ``auto``, OpenVINO is installed and the CPU has bfloat16
   units (AVX512-BF16 or AMX; on the AMD EPYC developer VM 1.2-1.3x the frames per second of
   ONNX Runtime fp32 at the same AUC over the 44 shared sequences, docs/speed.md), else ONNX
   Runtime in fp32;
5. torch.

Precision ``auto`` (the ``nanotrack`` family's default) is bf16 where rule 4 takes OpenVINO, and
fp32 everywhere else; a precision named is kept or refused, never changed.

A named backend that cannot run what is asked, and a precision it cannot run here, are refused
before anything is loaded. Nothing here imports a tracker package or loads a network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from runtime.backends.tensorrt_backend import tensorrt_status

BACKEND_NAMES = ("auto", "torch", "onnxruntime", "tensorrt", "openvino")
PRECISIONS = ("auto", "fp32", "fp16", "int8", "bf16")
NAMED = "named"  # the reason of a backend chosen by name, not by the auto rule
AUTO = "auto"  # the precision that lets the rule choose (bf16 where rule 4 takes OpenVINO)
OPENVINO_REASON = (
    "auto: bf16 on this CPU's bfloat16 units with OpenVINO, faster than ONNX Runtime fp32 "
    "(graph cache)"
)


@dataclass(frozen=True)
class BackendAsk:
    """What a tracker asks for, and the facts about where it could run."""

    backend: str = "auto"  # auto | torch | onnxruntime | tensorrt | openvino
    precision: str = "fp32"  # auto | fp32 | fp16 | int8 | bf16
    device: str = "cpu"  # of the torch modules
    export_dir: Path | None = None  # a folder from export/build_engine.py
    export_has_engines: bool = False  # the folder holds TensorRT engines this tracker can run
    # The tracker exports its graphs on first use into a cache ONNX Runtime runs on the CPU.
    graph_cache: bool = False
    # OpenVINO can run the tracker's graphs in bfloat16 on this CPU (installed, the CPU has the
    # units, and the tracker's graphs were measured there: the base Siamese search).
    openvino_bf16: bool = False
    # What export/build_engine.py needs to make this tracker's folder (for the refusals):
    # "--backbone nanotrack", "--tracker nanotrack".
    export_args: str = "--backbone nanotrack"

    def export_command(self, precision: str = "") -> str:
        """The command that makes an export folder this tracker can run."""
        extra = f" --precision {precision} --calib DIR" if precision else ""
        return f"python export/build_engine.py {self.export_args}{extra} --out DIR"


@dataclass(frozen=True)
class BackendChoice:
    """The backend chosen and why (``"named"``, or ``"auto: ..."``: what the CLI prints)."""

    name: str
    reason: str
    from_graph_cache: bool = False  # the graph cache, no export folder
    precision: str = "fp32"  # what the backend runs (``auto`` resolved)

    @property
    def by_auto(self) -> bool:
        return self.reason != NAMED


def cache_fallback() -> BackendChoice:
    """auto's choice when the graph cache it chose cannot be written or fails its check."""
    return BackendChoice("torch", "auto: graph cache unavailable")


def check_precision(backend: str, precision: str, device: str = "cpu") -> None:
    """Refuse, before anything is loaded, a precision this backend cannot run here."""
    if precision not in PRECISIONS or precision == AUTO:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    on_cpu = backend == "onnxruntime" or (backend == "torch" and device == "cpu")
    if precision == "fp16" and on_cpu:
        raise ValueError(
            f"fp16 is refused on the {backend} backend: it runs on the CPU here, which has no "
            f"fast fp16 arithmetic; use --precision fp32 (or int8 with an int8 export), or fp16 "
            f"on a GPU (the torch backend with device='cuda', or a TensorRT fp16 engine)"
        )
    if precision == "bf16" and backend != "openvino":
        raise ValueError(
            f"bf16 runs on the openvino backend (a CPU with AVX512-BF16 or AMX), not on {backend}"
        )
    if precision in ("fp16", "int8") and backend == "openvino":
        raise ValueError(
            f"the openvino backend runs bf16 or fp32, not {precision}; {precision} runs on "
            f"{'a GPU' if precision == 'fp16' else 'onnxruntime or tensorrt from an int8 export'}"
        )
    if precision == "int8" and backend == "torch":
        raise ValueError(
            "int8 runs from an int8 export (python export/build_engine.py --precision int8 "
            "--calib DIR) on --backend onnxruntime or tensorrt, not on the torch backend"
        )


def choose_backend(
    ask: BackendAsk, tensorrt: Callable[[], tuple[bool, str]] = tensorrt_status
) -> BackendChoice:
    """The backend that runs what ``ask`` asks (the module docstring's rule), or ValueError.

    ``tensorrt``: ``(usable, why)`` of TensorRT in this process, asked only when it matters.
    """
    if ask.backend not in BACKEND_NAMES:
        raise ValueError(
            f"unknown backend {ask.backend!r}; choose one of {', '.join(BACKEND_NAMES)}"
        )
    choice = _auto(ask, tensorrt) if ask.backend == "auto" else _named(ask)
    if ask.precision == AUTO:
        bf16 = choice.name == "openvino" and ask.openvino_bf16
        choice = replace(choice, precision="bf16" if bf16 else "fp32")
    else:
        choice = replace(choice, precision=ask.precision)
    check_precision(choice.name, choice.precision, ask.device)
    if ask.precision == "int8" and ask.export_dir is None:
        # Reached by the trackers with a graph cache: the cache holds FP32 graphs only.
        raise ValueError(
            f"int8 runs from an int8 export: {ask.export_command('int8')}, then --export-dir DIR"
        )
    return choice


def _auto(ask: BackendAsk, tensorrt: Callable[[], tuple[bool, str]]) -> BackendChoice:
    if ask.export_dir is not None:
        usable, status = tensorrt()
        if usable and ask.export_has_engines:
            return BackendChoice("tensorrt", f"auto: {status}")
        why = status if not usable else f"no TensorRT engines in {ask.export_dir}"
        return BackendChoice("onnxruntime", f"auto: {why}")
    if ask.device != "cpu":
        # The GPU machines carry the CPU build of ONNX Runtime: torch is what runs on the GPU.
        return BackendChoice("torch", f"auto: torch on {ask.device} (no export folder given)")
    if ask.graph_cache:
        if ask.openvino_bf16 and ask.precision in (AUTO, "bf16"):
            return BackendChoice("openvino", OPENVINO_REASON, from_graph_cache=True)
        return BackendChoice(
            "onnxruntime", "auto: fastest verified on this CPU (graph cache)", from_graph_cache=True
        )
    return BackendChoice("torch", "auto: no export folder given")


def _named(ask: BackendAsk) -> BackendChoice:
    if ask.backend == "openvino" and not ask.graph_cache:
        raise ValueError(
            "the openvino backend runs the Siamese trackers' graphs (nanotrack), not this one's"
        )
    if ask.export_dir is None:
        if ask.backend == "tensorrt":
            raise ValueError(
                f"the tensorrt backend needs an export folder with engines: make one with "
                f"{ask.export_command()} (on a GPU machine)"
            )
        if ask.backend == "onnxruntime" and not ask.graph_cache:
            raise ValueError(
                f"the onnxruntime backend needs an export folder: make one with "
                f"{ask.export_command()}"
            )
    from_cache = ask.backend in ("onnxruntime", "openvino") and ask.export_dir is None
    return BackendChoice(ask.backend, NAMED, from_graph_cache=from_cache)
