"""bench.speed decides which backends can run, and says why the others cannot."""

from __future__ import annotations

import pytest

from bench.speed import _skip_reason


def test_torch_always_runs(tmp_path):
    assert _skip_reason("torch", tmp_path) is None


def test_exported_backends_need_an_export_folder(tmp_path):
    assert "no export" in _skip_reason("onnxruntime", tmp_path)
    (tmp_path / "manifest.json").write_text("{}")
    assert _skip_reason("onnxruntime", tmp_path) is None


def test_tensorrt_is_skipped_with_the_reason_where_missing(tmp_path):
    pytest.importorskip("torch")
    (tmp_path / "manifest.json").write_text("{}")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        assert _skip_reason("tensorrt", tmp_path) == "tensorrt not installed"
    else:
        pytest.skip("tensorrt is installed here; the skip path is not reachable")
