"""RoIAlign against a straightforward per-bin reference, and against ONNX Runtime's native op."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from runtime.roi_align import RoIAlign, onnx_translation, roi_align


def _bilinear(fmap: np.ndarray, y: float, x: float) -> np.ndarray:
    """ONNX RoiAlign's bilinear read of one point of a (C, H, W) map."""
    _, height, width = fmap.shape
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return np.zeros(fmap.shape[0])
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_high = y_low = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_high = x_low = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    return (
        hy * hx * fmap[:, y_low, x_low]
        + hy * lx * fmap[:, y_low, x_high]
        + ly * hx * fmap[:, y_high, x_low]
        + ly * lx * fmap[:, y_high, x_high]
    )


def reference_roi_align(features, rois, batch_indices, out, scale, ratio):
    features = features.numpy().astype(np.float64)
    result = np.zeros((len(rois), features.shape[1], out, out))
    for r, (box, b) in enumerate(zip(rois.numpy(), batch_indices.numpy(), strict=True)):
        x1, y1, x2, y2 = (v * scale - 0.5 for v in box)
        bin_w, bin_h = (x2 - x1) / out, (y2 - y1) / out
        for ph in range(out):
            for pw in range(out):
                acc = np.zeros(features.shape[1])
                for iy in range(ratio):
                    for ix in range(ratio):
                        y = y1 + ph * bin_h + (iy + 0.5) * bin_h / ratio
                        x = x1 + pw * bin_w + (ix + 0.5) * bin_w / ratio
                        acc += _bilinear(features[b], y, x)
                result[r, :, ph, pw] = acc / ratio**2
    return result


@pytest.fixture
def case():
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(2, 5, 9, 12, generator=gen)
    rois = torch.tensor(
        [
            [10.0, 20.0, 100.0, 120.0],  # inside
            [-40.0, -30.0, 50.0, 40.0],  # hangs over the top-left corner
            [150.0, 100.0, 260.0, 200.0],  # partly beyond the bottom-right (map is 192x144 px)
            [30.0, 30.0, 31.0, 31.5],  # tiny
            [300.0, 300.0, 400.0, 380.0],  # entirely outside: zeros
        ]
    )
    batch = torch.tensor([0, 1, 0, 1, 0])
    return features, rois, batch


@pytest.mark.parametrize("ratio", [1, 2, 3])
def test_matches_reference(case, ratio):
    features, rois, batch = case
    ours = roi_align(features, rois, batch, (3, 3), 1 / 16, ratio).numpy()
    ref = reference_roi_align(features, rois, batch, 3, 1 / 16, ratio)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
    assert np.all(ours[4] == 0.0)


def test_gradient_flows_to_features(case):
    features, rois, batch = case
    features = features.clone().requires_grad_(True)
    roi_align(features, rois, batch, (3, 3), 1 / 16, 2).sum().backward()
    assert features.grad is not None and torch.isfinite(features.grad).all()
    assert features.grad.abs().sum() > 0


def test_exports_as_native_onnx_roialign(case, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    features, rois, batch = case

    class Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.roi = RoIAlign((3, 3), 1 / 16, 2)

        def forward(self, f, r, b):
            return self.roi(f, r, b)

    path = tmp_path / "roi.onnx"
    num = torch.export.Dim("num_rois")
    torch.onnx.export(
        Wrapper(), (features, rois, batch), path, dynamo=True, opset_version=18,
        custom_translation_table=onnx_translation(),
        dynamic_shapes={"f": {2: torch.export.Dim("h"), 3: torch.export.Dim("w")},
                        "r": {0: num}, "b": {0: num}},
    )  # fmt: skip
    model = onnx.load(path)
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node if n.op_type == "RoiAlign"] == ["RoiAlign"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    # A different map size and RoI count than the export example: the graph is dynamic.
    f2 = torch.randn(2, 5, 13, 7)
    got = session.run(
        None, dict(zip(names, (f2.numpy(), rois[:3].numpy(), batch[:3].numpy()), strict=True))
    )[0]
    want = roi_align(f2, rois[:3], batch[:3], (3, 3), 1 / 16, 2).numpy()
    scale = max(1.0, float(np.abs(want).max()))
    assert math.isclose(float(np.abs(got - want).max()) / scale, 0.0, abs_tol=1e-5)
