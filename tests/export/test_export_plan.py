"""The export and quantization plans: flags resolved and refused before any work, frozen."""

from __future__ import annotations

import dataclasses

import pytest

from calib.quantize import QUANTIZED_OPS, QuantizeSettings
from export.build_engine import (
    BuildRefused,
    ExportPlan,
    build,
    default_out_dir,
    refuse_unbuildable,
)
from runtime.rtmdnet.meta import SHIPPED_CHECKPOINT
from runtime.rtmdnet.prune import SHIPPED_PRUNE


def test_plan_from_flags():
    plan = ExportPlan.from_flags("nanotrack", "fp32")
    assert plan.out == default_out_dir("nanotrack") and plan.meta is None and plan.prune is None
    assert plan.config.precision == "fp32" and plan.config.meta is None
    assert dict(plan.int8_choice) == {}
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.precision = "int8"  # type: ignore[misc]
    with pytest.raises(TypeError):
        plan.int8_choice["min_top1"] = 0.9  # type: ignore[index]


def test_plan_resolves_the_shipped_pruning(tmp_path):
    plan = ExportPlan.from_flags("nanotrack", out_dir=tmp_path, prune="shipped", keep_conv=64)
    assert plan.prune == SHIPPED_PRUNE and plan.meta == SHIPPED_CHECKPOINT
    assert plan.config.prune == str(SHIPPED_PRUNE) and plan.config.meta == str(SHIPPED_CHECKPOINT)
    assert plan.out == tmp_path and plan.keep_conv == 64


def test_plan_refuses_before_any_work(tmp_path):
    out = tmp_path / "never"
    with pytest.raises(BuildRefused, match="int8 needs a calibration set"):
        ExportPlan.from_flags(precision="int8", out_dir=out)
    with pytest.raises(BuildRefused, match="--calib is for --precision int8"):
        refuse_unbuildable("fp32", tmp_path)
    with pytest.raises(BuildRefused, match="unknown precision"):
        refuse_unbuildable("int4")
    with pytest.raises(BuildRefused, match="--ckpt"):
        ExportPlan.from_flags(meta=tmp_path / "missing.pt", out_dir=out)
    with pytest.raises(BuildRefused, match="unknown backbone"):
        build("resnet", out_dir=out, log=lambda _: None)
    assert not out.exists()
    with pytest.raises(TypeError, match="plan"):
        build(ExportPlan.from_flags(out_dir=out), "fp32")


def test_quantize_settings():
    settings = QuantizeSettings()
    assert settings.method == "entropy" and settings.op_types == QUANTIZED_OPS
    assert settings.int8_convs is None
    changed = settings.but(method="percentile", int8_convs=["a", "b"], float_ops=["c"])
    assert changed.int8_convs == ("a", "b") and changed.float_ops == ("c",)
    assert changed.method == "percentile" and settings.method == "entropy"
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.method = "percentile"  # type: ignore[misc]
