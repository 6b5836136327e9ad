"""The one ``auto`` rule (``runtime.backends.choice``) and the one factory's Siamese path, without
weights or TensorRT: the TensorRT status is faked, the network and graph cache are stand-ins."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from runtime.backends import (
    BackendAsk,
    SiameseBackendSpec,
    TorchSiameseBackend,
    choose_backend,
    create_backend,
)

EXPORT = Path("/nowhere/export")


def _trt(usable: bool) -> object:
    return lambda: (usable, "tensorrt 10 on a GPU" if usable else "tensorrt not installed")


ENGINES = BackendAsk(export_dir=EXPORT, export_has_engines=True)
RULE = [  # what is asked, TensorRT usable?, the backend, auto's reason
    (ENGINES, True, "tensorrt", "tensorrt 10 on a GPU"),
    (ENGINES, False, "onnxruntime", "tensorrt not installed"),
    (BackendAsk(export_dir=EXPORT), True, "onnxruntime", f"no TensorRT engines in {EXPORT}"),
    (BackendAsk(device="cuda", graph_cache=True), True, "torch", "torch on cuda (no export "),
    (BackendAsk(graph_cache=True), True, "onnxruntime", "fastest verified on this CPU (graph "),
    (BackendAsk(graph_cache=True, precision="auto"), True, "onnxruntime", "fastest verified on "),
    (BackendAsk(graph_cache=True, openvino_bf16=True), True, "onnxruntime", "fastest verified "),
    (BackendAsk(graph_cache=True, openvino_bf16=True, precision="auto"), True, "openvino", "bf16 "),
    (BackendAsk(), True, "torch", "no export folder given"),
]


@pytest.mark.parametrize(("ask", "usable", "name", "reason"), RULE)
def test_the_rule_in_its_order(ask, usable, name, reason):
    choice = choose_backend(ask, tensorrt=_trt(usable))
    assert choice.name == name and choice.reason.startswith(f"auto: {reason}")
    assert choice.from_graph_cache == (name != "torch" and ask.export_dir is None)
    # auto precision: bf16 only where the rule took OpenVINO; a named precision is kept
    want = "bf16" if name == "openvino" else ("fp32" if ask.precision == "auto" else ask.precision)
    assert choice.precision == want


def test_what_the_rule_refuses_before_anything_loads():
    assert choose_backend(BackendAsk(backend="torch", export_dir=EXPORT)).reason == "named"
    with pytest.raises(ValueError, match="unknown backend 'openvin'"):
        choose_backend(BackendAsk(backend="openvin"))
    with pytest.raises(ValueError, match="openvino backend runs the Siamese trackers' graphs"):
        choose_backend(BackendAsk(backend="openvino"))
    with pytest.raises(ValueError, match="bf16 runs on the openvino backend .* not on onnxruntime"):
        choose_backend(BackendAsk(backend="onnxruntime", precision="bf16", graph_cache=True))
    with pytest.raises(ValueError, match="openvino backend runs bf16 or fp32, not fp16"):
        choose_backend(BackendAsk(backend="openvino", precision="fp16", graph_cache=True))
    assert choose_backend(BackendAsk(backend="openvino", graph_cache=True)).from_graph_cache
    with pytest.raises(ValueError, match="onnxruntime backend needs an export folder.*--backbone"):
        choose_backend(BackendAsk(backend="onnxruntime"))
    with pytest.raises(ValueError, match="tensorrt backend needs an export folder with engines"):
        choose_backend(BackendAsk(backend="tensorrt", graph_cache=True))
    # A graph cache serves a named onnxruntime, but only in FP32.
    assert choose_backend(BackendAsk(backend="onnxruntime", graph_cache=True)).from_graph_cache
    with pytest.raises(ValueError, match="int8 runs from an int8 export: .*--tracker nanotrack"):
        choose_backend(
            BackendAsk(precision="int8", graph_cache=True, export_args="--tracker nanotrack")
        )
    with pytest.raises(ValueError, match="int8 runs from an int8 export .*not on the torch"):
        choose_backend(BackendAsk(precision="int8"))
    with pytest.raises(ValueError, match="fp16 is refused on the onnxruntime backend"):
        choose_backend(BackendAsk(precision="fp16", graph_cache=True))


class _Branch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(t * self.scale for t in tensors)


def _spec(graph_cache: object, **changes: object) -> SiameseBackendSpec:
    return SiameseBackendSpec(
        weights_dir=Path("/nowhere/weights"),
        torch_branches=lambda spec: (_Branch(), _Branch()),
        graph_cache=graph_cache,  # type: ignore[arg-type]
        **changes,  # type: ignore[arg-type]
    )


def test_the_factory_falls_back_to_torch_where_auto_took_a_graph_cache_that_fails():
    def no_disk(weights_dir: Path, notify: object) -> None:
        raise OSError("read-only file system")

    heard: list[str] = []
    backend = create_backend(_spec(no_disk), notify=heard.append)
    assert isinstance(backend, TorchSiameseBackend)
    assert backend.chosen_because == "auto: graph cache unavailable"
    assert heard[0] == "nanotrack: no graph cache (read-only file system); running torch instead"
    assert heard[1].startswith("backend: TorchSiameseBackend(on cpu) (auto: graph cache")
    # Named, the failure is the caller's to see.
    with pytest.raises(OSError, match="read-only"):
        create_backend(_spec(no_disk, backend="onnxruntime"), verbose=False)
    # A tracker with no graph cache runs torch on the CPU, as the feature trackers do.
    plain = create_backend(_spec(None), verbose=False)
    assert plain.chosen_because == "auto: no export folder given"
    with pytest.raises(TypeError, match="extractor is for a FeatureBackendSpec"):
        create_backend(_spec(None), extractor=object(), verbose=False)  # type: ignore[call-overload]
