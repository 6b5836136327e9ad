"""Backbones: reference parity, known answers, LRN, shapes, missing weights, ONNX export."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from runtime.backbones import (
    BACKBONE_NAMES,
    CrossChannelLRN,
    build_backbone,
    imagenet_labels,
    mobilenet_v2_classifier,
)
from runtime.backbones.mobilenet_v2 import MOBILENET_NPZ, TFSameConv2d, TFSamePad
from runtime.backbones.nanotrack import NANOTRACK_NPZ
from tests.support import AUTHORS_BACKBONE, CROSSING, WEIGHTS

NANO_ONNX = AUTHORS_BACKBONE
CAT = WEIGHTS / "mobilenet_v2_imagenet" / "test_cat.bmp"
FRAME = CROSSING / "img" / "0001.jpg"
NEEDS = {
    "nanotrack": WEIGHTS.joinpath(*NANOTRACK_NPZ),
    "mobilenet_v2": WEIGHTS.joinpath(*MOBILENET_NPZ),
    "vggm": None,
}


def _need(*paths) -> None:
    for p in paths:
        if p is not None and not p.is_file():
            pytest.skip(f"shared data file not found: {p} (set TRACKER_DATA)")


def _bgr_tensor(path, size: tuple[int, int], interpolation: int | None = None) -> torch.Tensor:
    cv2 = pytest.importorskip("cv2")
    img = cv2.imread(str(path))
    assert img is not None, path
    if interpolation is None:
        interpolation = cv2.INTER_LINEAR
    img = cv2.resize(img, size, interpolation=interpolation)
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)[None], dtype=np.float32))


def _rel_err(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(a - ref).max() / np.abs(ref).max())


@pytest.fixture(scope="module")
def backbones() -> dict[str, torch.nn.Module]:
    cache: dict[str, torch.nn.Module] = {}

    def get(name: str) -> torch.nn.Module:
        _need(NEEDS[name])
        if name not in cache:
            cache[name] = build_backbone(name)
        return cache[name]

    return get


# ---------------------------------------------------------------- reference parity / known answer


def test_nanotrack_matches_reference_onnx(backbones):
    ort = pytest.importorskip("onnxruntime")
    _need(NANO_ONNX, FRAME)
    model = backbones("nanotrack")
    x = _bgr_tensor(FRAME, (255, 255))
    sess = ort.InferenceSession(str(NANO_ONNX), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.inference_mode():
        out = model(x).numpy()
    assert out.shape == ref.shape == (1, 96, 16, 16)
    assert _rel_err(out, ref) < 1e-4


def test_mobilenet_v2_classifier_known_answer():
    cv2 = pytest.importorskip("cv2")
    _need(NEEDS["mobilenet_v2"], CAT)
    clf = mobilenet_v2_classifier()
    labels = imagenet_labels()
    assert len(labels) == 1001 and labels[0] == "background"
    x = _bgr_tensor(CAT, (224, 224), cv2.INTER_AREA)  # BGR in, like every backbone
    with torch.inference_mode():
        probs = clf(x)[0]
    assert probs.shape == (1001,)
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-4)
    top = int(probs.argmax())
    assert labels[top] == "Egyptian cat"
    assert 0.72 < float(probs[top]) < 0.85  # 0.78 in the uint8 TFLite model


def test_mobilenet_v2_stem_fold_is_exact_at_borders(backbones):
    """BGR->RGB and x/128-1 folded into the first conv == the explicit TF computation."""
    model = backbones("mobilenet_v2")
    w = np.load(WEIGHTS.joinpath(*MOBILENET_NPZ))["op00_CONV_2D_weight"]
    b = np.load(WEIGHTS.joinpath(*MOBILENET_NPZ))["op00_CONV_2D_bias"]
    weight = torch.from_numpy(w.transpose(0, 3, 1, 2).copy())
    torch.manual_seed(0)
    for h, wd in ((32, 32), (33, 40), (41, 37)):
        x = torch.rand(1, 3, h, wd) * 255
        rgb = x.flip(1) / 128.0 - 1.0
        pads = _tf_same_pads(wd, 3, 2) + _tf_same_pads(h, 3, 2)
        ref = F.relu6(F.conv2d(F.pad(rgb, pads), weight, torch.from_numpy(b), stride=2))
        with torch.inference_mode():
            out = model.features[0](x)
        assert out.shape == ref.shape
        assert _rel_err(out.numpy(), ref.numpy()) < 1e-5


def _tf_same_pads(n: int, k: int, s: int) -> tuple[int, int]:
    pad = max((math.ceil(n / s) - 1) * s + k - n, 0)
    return pad // 2, pad - pad // 2


@pytest.mark.parametrize("k", [3, 5, 7])
def test_tf_same_pad_matches_tensorflow_rule(k):
    pad = TFSamePad(k)
    for n in range(1, 40):
        x = torch.zeros(1, 1, n, n + 1)
        top, bottom = _tf_same_pads(n, k, 2)
        left, right = _tf_same_pads(n + 1, k, 2)
        y = pad(x)
        assert y.shape[-2:] == (n + top + bottom, n + 1 + left + right)
        marked = pad(torch.ones(1, 1, n, n + 1))
        assert marked[0, 0, top, left] == 1 and marked[0, 0, -1 - bottom, -1 - right] == 1


@pytest.mark.parametrize("k", [3, 5])
def test_tf_same_conv_eager_path_equals_padded_path(k):
    """The eager (grown-kernel) path and the export (explicit pad) path agree for all parities."""
    torch.manual_seed(0)
    conv = TFSameConv2d(4, 4, k, groups=4)
    for h, w in ((8, 8), (9, 9), (8, 11), (13, 10), (6, 7)):
        x = torch.randn(2, 4, h, w)
        ref = F.conv2d(conv.same_pad(x), conv.weight, conv.bias, stride=2, groups=4)
        out = conv(x)
        assert out.shape == ref.shape == (2, 4, math.ceil(h / 2), math.ceil(w / 2))
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- LRN


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_lrn_equals_torch_local_response_norm(size):
    torch.manual_seed(0)
    x = torch.randn(2, 16, 5, 7) * 100.0  # large enough for the denominator to matter
    lrn = CrossChannelLRN(16, size=size, alpha=1e-4, beta=0.75, k=2.0)
    # torch divides alpha by size; ours multiplies the plain sum of squares
    ref = F.local_response_norm(x, size, alpha=1e-4 * size, beta=0.75, k=2.0)
    torch.testing.assert_close(lrn(x), ref, rtol=1e-5, atol=1e-5)


def test_lrn_formula_by_hand():
    x = torch.randn(1, 6, 2, 3) * 50.0
    y = CrossChannelLRN(6)(x)  # n=5, alpha=1e-4, beta=0.75, k=2
    sq = F.pad(x * x, (0, 0, 0, 0, 2, 2))
    window = sum(sq[:, i : i + 6] for i in range(5))
    torch.testing.assert_close(y, x / (2.0 + 1e-4 * window) ** 0.75)


# ---------------------------------------------------------------- contract: shapes, stride, frozen


@pytest.mark.parametrize("name", BACKBONE_NAMES)
def test_output_shape_and_stride(backbones, name):
    model = backbones(name)
    assert not model.training
    assert all(not p.requires_grad for p in model.parameters())
    x = torch.rand(1, 3, 256, 320) * 255
    with torch.inference_mode():
        y = model(x)
    if name == "vggm":  # no padding: valid convolutions, 75-px receptive field
        expected = ((256 - 75) // 8 + 1, (320 - 75) // 8 + 1)
    else:  # "same" padding
        expected = (math.ceil(256 / model.stride), math.ceil(320 / model.stride))
    assert y.shape == (1, model.out_channels, *expected)
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all()
    assert {"nanotrack": 16, "mobilenet_v2": 16, "vggm": 8}[name] == model.stride


def test_mobilenet_v2_stride8_cut():
    _need(NEEDS["mobilenet_v2"])
    model = build_backbone("mobilenet_v2", cut="stride8")
    assert (model.stride, model.out_channels) == (8, 32)
    with torch.inference_mode():
        assert model(torch.rand(1, 3, 256, 320) * 255).shape == (1, 32, 32, 40)


@pytest.mark.parametrize("size", [400, 399, 402])
@pytest.mark.parametrize("cut", ["stride16", "stride8"])
def test_mobilenet_v2_feature_offset_is_receptive_field_centre(size, cut):
    """Linearize a copy (positive weights, no ReLU6): the input gradient of one cell is then
    nonzero exactly on its receptive field, whose midpoint must be the documented centre."""
    _need(NEEDS["mobilenet_v2"])
    model = build_backbone("mobilenet_v2", cut=cut)
    linear = build_backbone("mobilenet_v2", cut=cut)
    for seq in linear.modules():
        if isinstance(seq, torch.nn.Sequential):
            for i, child in enumerate(seq):
                if isinstance(child, torch.nn.ReLU6):
                    seq[i] = torch.nn.Identity()
    with torch.no_grad():
        for p in linear.parameters():
            p.copy_(p.abs() + 1e-3)
    x = torch.rand(1, 3, size, size, requires_grad=True)
    out = linear(x)
    cell = out.shape[-1] // 2
    out[0, :, cell, cell].sum().backward()
    support = x.grad[0].abs().sum(0) > 0
    rows = torch.nonzero(support.any(1)).flatten()
    cols = torch.nonzero(support.any(0)).flatten()
    assert rows.min() > 0 and rows.max() < size - 1  # receptive field not clipped by borders
    expected = model.feature_offset(size) + model.stride * cell
    assert float(rows.min() + rows.max()) / 2 == expected
    assert float(cols.min() + cols.max()) / 2 == expected


def test_feature_offsets():
    _need(NEEDS["nanotrack"], NEEDS["mobilenet_v2"])
    assert build_backbone("nanotrack").feature_offset(255) == 0.0
    assert build_backbone("vggm").feature_offset(107) == 37.0
    mnv2 = build_backbone("mobilenet_v2")
    assert (mnv2.feature_offset(256), mnv2.feature_offset(255), mnv2.feature_offset(320)) == (
        15.0,
        14.0,
        15.0,
    )


def test_unknown_backbone():
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("resnet50")
    assert BACKBONE_NAMES == ("nanotrack", "mobilenet_v2", "vggm")


# ---------------------------------------------------------------- weights files


@pytest.mark.parametrize("name", ["nanotrack", "mobilenet_v2"])
def test_missing_weights_raise_file_not_found(tmp_path, name):
    filename = {"nanotrack": NANOTRACK_NPZ[-1], "mobilenet_v2": MOBILENET_NPZ[-1]}[name]
    with pytest.raises(FileNotFoundError, match=filename):
        build_backbone(name, weights_dir=tmp_path)


def test_missing_classifier_files_raise_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match=MOBILENET_NPZ[-1]):
        mobilenet_v2_classifier(tmp_path)
    with pytest.raises(FileNotFoundError, match="imagenet_labels.txt"):
        imagenet_labels(tmp_path)


def test_vggm_missing_and_round_trip_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="vggm_trained.pt"):
        build_backbone("vggm", weights=tmp_path / "vggm_trained.pt")
    random_a = build_backbone("vggm", seed=3)
    assert random_a.pretrained is False
    x = torch.rand(1, 3, 96, 112) * 255
    with torch.inference_mode():
        ref = random_a(x)
        # same seed, same weights; another seed differs
        torch.testing.assert_close(build_backbone("vggm", seed=3)(x), ref)
        assert not torch.allclose(build_backbone("vggm", seed=4)(x), ref)
    state = random_a.state_dict()
    torch.save(state, tmp_path / "ours.pt")
    np.savez(tmp_path / "ours.npz", **{k: v.numpy() for k, v in state.items()})
    rtmdnet_layout = {
        "shared_layers": {k.replace(".", ".0.", 1): v.clone() for k, v in state.items()}
    }
    torch.save(rtmdnet_layout, tmp_path / "rtmdnet.pth")
    for f in ("ours.pt", "ours.npz", "rtmdnet.pth"):
        loaded = build_backbone("vggm", weights=tmp_path / f)
        assert loaded.pretrained is True
        with torch.inference_mode():
            torch.testing.assert_close(loaded(x), ref)


def test_vggm_is_trainable_when_unfrozen():
    from runtime.backbones import VGGMBackbone

    model = VGGMBackbone(seed=0).train()
    x = torch.rand(2, 3, 91, 99) * 255
    model(x).square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


# ---------------------------------------------------------------- ONNX export


def _export(model: torch.nn.Module, example: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    torch.onnx.export(
        model,
        (example,),
        buf,
        dynamo=False,
        opset_version=17,
        input_names=["crop"],
        output_names=["features"],
        dynamic_axes={"crop": {2: "height", 3: "width"}, "features": {2: "fh", 3: "fw"}},
    )
    return buf.getvalue()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("name", BACKBONE_NAMES)
def test_onnx_export_dynamic_hw(backbones, name):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model = backbones(name)
    graph = _export(model, torch.rand(1, 3, 128, 160) * 255)
    sess = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    torch.manual_seed(0)
    for h, w in ((256, 320), (255, 255), (97, 131)):  # even, odd and mixed sides
        x = torch.rand(1, 3, h, w) * 255
        with torch.inference_mode():
            ref = model(x).numpy()
        out = sess.run(None, {"crop": x.numpy()})[0]
        assert out.shape == ref.shape
        assert _rel_err(out, ref) < 1e-4
