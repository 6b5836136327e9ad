"""The ``nanotrack`` network as two ONNX graphs, checked against PyTorch.

``template.onnx``: crop ``(1, 3, 127, 127)`` -> ``dw_cls, dw_reg (1, 96, 4, 4)``,
``pw_cls, pw_reg (1, 64, 96)``. ``search.onnx``: crop ``(1, 3, S, S)`` (S dynamic: the lost-target
search grows it) and the four kernels -> ``scores (1, n, n)``, ``boxes (1, 4, n, n)``,
``n = ceil(S / 16) - 1``. ``search_features.onnx`` (the graph cache and FP32 export folders):
the same inputs -> ``margins (1, n*n)``, ``boxes``, ``features (1, 96, n*n)``, for the trackers
that adapt a layer on the classification features (``metartt-nano``, ``mlt-nano``).

This is runtime code because the tracker exports its own graphs on first use
(:mod:`runtime.nanotrack.cache`); ``export/build_engine.py --tracker nanotrack`` calls the same
functions and adds the TensorRT operator check, engines and INT8.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
import torch

from runtime.backends.siamese import (
    BOXES,
    CROP,
    FEATURES,
    FEATURES_ONNX,
    KERNELS,
    MARGINS,
    SCORES,
    SEARCH_ONNX,
    TEMPLATE_ONNX,
    OnnxRuntimeFeatureBackend,
    OnnxRuntimeSiameseBackend,
    SiameseExport,
)
from runtime.nanotrack.model import (
    FeatureSearchBranch,
    NanoTrackNet,
    SearchBranch,
    TemplateBranch,
)

OPSET = 18
PARITY_TOLERANCE = 1e-4  # max |onnxruntime - torch| / max |torch| per output
EXPORT_SEARCH_SIDE = 255
MIN_SEARCH_SIDE = 127
MAX_SEARCH_SIDE = 511  # the TensorRT profile's top; the tracker grows its crop to 383 at most


class GraphParityError(RuntimeError):
    """An exported graph does not compute what the PyTorch network computes."""


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


def _example_inputs(net: NanoTrackNet) -> tuple[torch.Tensor, torch.Tensor, tuple]:
    rng = torch.Generator().manual_seed(0)
    template_crop = torch.rand(1, 3, 127, 127, generator=rng) * 255
    side = EXPORT_SEARCH_SIDE
    search_crop = torch.rand(1, 3, side, side, generator=rng) * 255
    with torch.no_grad():
        kernels = tuple(net.template(template_crop))
    return template_crop, search_crop, kernels


def _search_shapes() -> dict[str, object]:
    height = torch.export.Dim("height", min=MIN_SEARCH_SIDE, max=MAX_SEARCH_SIDE)
    width = torch.export.Dim("width", min=MIN_SEARCH_SIDE, max=MAX_SEARCH_SIDE)
    return {"crop": {2: height, 3: width}, **{k: None for k in KERNELS}}


def write_feature_graph(net: NanoTrackNet, folder: Path, opset: int = OPSET) -> Path:
    """Export ``search_features.onnx`` into ``folder``; ``onnx.checker`` (full)."""
    folder.mkdir(parents=True, exist_ok=True)
    net = net.eval().cpu()
    _, search_crop, kernels = _example_inputs(net)
    path = folder / FEATURES_ONNX
    with _quiet_exporter(), torch.no_grad():
        torch.onnx.export(
            FeatureSearchBranch(net).eval(),
            (search_crop, *kernels),
            str(path),
            input_names=[CROP, *KERNELS],
            output_names=[MARGINS, BOXES, FEATURES],
            opset_version=opset,
            dynamo=True,
            external_data=False,
            dynamic_shapes=_search_shapes(),
            verbose=False,
        )
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return path


def write_graphs(net: NanoTrackNet, folder: Path, opset: int = OPSET) -> dict[str, Path]:
    """Export ``template.onnx`` and ``search.onnx`` into ``folder``; ``onnx.checker`` (full)."""
    folder.mkdir(parents=True, exist_ok=True)
    net = net.eval().cpu()
    template_crop, search_crop, kernels = _example_inputs(net)
    paths = {"template": folder / TEMPLATE_ONNX, "search": folder / SEARCH_ONNX}
    with _quiet_exporter(), torch.no_grad():
        torch.onnx.export(
            TemplateBranch(net).eval(),
            (template_crop,),
            str(paths["template"]),
            input_names=[CROP],
            output_names=list(KERNELS),
            opset_version=opset,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
        torch.onnx.export(
            SearchBranch(net).eval(),
            (search_crop, *kernels),
            str(paths["search"]),
            input_names=[CROP, *KERNELS],
            output_names=[SCORES, BOXES],
            opset_version=opset,
            dynamo=True,
            external_data=False,
            dynamic_shapes=_search_shapes(),
            verbose=False,
        )
    for path in paths.values():
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return paths


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / max(float(np.abs(want).max()), 1e-12))


def check_parity(
    net: NanoTrackNet,
    export: SiameseExport,
    template_crops: Sequence[np.ndarray],
    search_crops: Sequence[np.ndarray],
    tolerance: float = PARITY_TOLERANCE,
) -> dict[str, float]:
    """Worst relative error of ONNX Runtime against torch per output, over pairs of crops.

    Crops are ``H x W x 3`` uint8 BGR, as the tracker cuts them; search crops may differ in
    side. Raises :class:`GraphParityError` above ``tolerance``.
    """
    session = OnnxRuntimeSiameseBackend(export, threads=1)
    worst = {name: 0.0 for name in (*KERNELS, SCORES, BOXES)}
    for z, x in zip(template_crops, search_crops, strict=True):
        zt, xt = (_crop_tensor(c) for c in (z, x))
        with torch.no_grad():
            want_k = tuple(net.template(zt))
            want = SearchBranch(net)(xt, *want_k)
        got_k = session.template(zt)
        got = session.search(xt, want_k)
        for name, g, w in zip(KERNELS, got_k, want_k, strict=True):
            worst[name] = max(worst[name], relative_error(g.numpy(), w.numpy()))
        for name, g, w in zip((SCORES, BOXES), got, want, strict=True):
            worst[name] = max(worst[name], relative_error(g.numpy(), w.numpy()))
    if "search_features" in export.manifest.get("graphs", {}):
        worst |= _feature_parity(net, export, template_crops, search_crops)
    _raise_beyond(export, worst, tolerance)
    return worst


def _raise_beyond(export: SiameseExport, worst: dict[str, float], tolerance: float) -> None:
    bad = {k: v for k, v in worst.items() if v > tolerance}
    if bad:
        raise GraphParityError(
            f"{export.folder}: ONNX Runtime differs from torch beyond {tolerance:g} (relative): "
            + ", ".join(f"{k} {v:.2e}" for k, v in bad.items())
        )


def _feature_parity(
    net: NanoTrackNet,
    export: SiameseExport,
    template_crops: Sequence[np.ndarray],
    search_crops: Sequence[np.ndarray],
) -> dict[str, float]:
    """Worst relative error of the features graph's three outputs (names prefixed)."""
    session = OnnxRuntimeFeatureBackend(export, threads=1)
    worst = {f"search_features.{n}": 0.0 for n in (MARGINS, BOXES, FEATURES)}
    for z, x in zip(template_crops, search_crops, strict=True):
        zt, xt = (_crop_tensor(c) for c in (z, x))
        with torch.no_grad():
            kernels = tuple(net.template(zt))
            want = FeatureSearchBranch(net)(xt, *kernels)
        got = session.search(xt, kernels)
        for name, g, w in zip(worst, got, want, strict=True):
            worst[name] = max(worst[name], relative_error(g.numpy(), w.numpy()))
    return worst


def _crop_tensor(crop: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1))[None]).float()


def synthetic_crops(count: int = 3, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Template and search crops for a parity check where no video is at hand (the cache).

    Smooth blobs on a gradient with noise: structured enough to excite the correlation, not
    constant. Search sides 255 and the widened 287 and 383 are all covered.
    """
    rng = np.random.default_rng(seed)
    sides = [255, 287, 383]
    templates, searches = [], []
    for i in range(count):
        for side, out in ((127, templates), (sides[i % len(sides)], searches)):
            yy, xx = np.mgrid[0:side, 0:side] / side
            base = 255 * np.stack([xx, yy, 1 - xx], axis=-1)
            cx, cy = rng.uniform(0.3, 0.7, 2)
            blob = 200 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.01)[..., None]
            noise = rng.normal(0, 20, (side, side, 3))
            out.append(np.clip(base * 0.5 + blob + noise, 0, 255).astype(np.uint8))
    return templates, searches
