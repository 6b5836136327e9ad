"""bench.speed decides which backends can run, and says why the others cannot."""

from __future__ import annotations

import json

import pytest

from bench.speed import _runs, _skip_reason, main
from runtime.backends.manifest import MANIFEST_FORMAT
from tests.support import needs_data


@needs_data
def test_one_row_per_tracker_backend_and_export_folder(tmp_path, capsys):
    """Torch always runs; a folder without an export is skipped with the reason."""
    out = tmp_path / "speed.json"
    argv = ["--seqs", "Vase", "--max-frames", "3", "--trackers", "metartt", "--quiet"]
    argv += ["--backends", "torch,onnxruntime", "--export-dir", str(tmp_path), "--json", str(out)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "skipping onnxruntime" in captured.err and "no export" in captured.err
    assert "| metartt | torch | fp32 | none |" in captured.out
    assert list(json.loads(out.read_text())) == ["metartt / torch / fp32"]


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


def _export(folder, kind):
    folder.mkdir()
    manifest = {"format": MANIFEST_FORMAT, "kind": kind}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_each_tracker_runs_from_the_export_folders_of_its_declared_kind(tmp_path):
    # The kind comes from the registry entry, not the text: rtmdnet[backbone=nanotrack] (RT-MDNet
    # head on NanoTrack's backbone) runs from RT-MDNet folders although its spec holds "nano".
    siamese = _export(tmp_path / "s", "siamese")
    rtmdnet = _export(tmp_path / "r", "rtmdnet")
    folders = [siamese, rtmdnet]
    assert [run[1] for run in _runs("rtmdnet[backbone=nanotrack]", ["onnxruntime"], folders)] == [
        rtmdnet
    ]
    assert [run[1] for run in _runs("metartt-nano", ["onnxruntime"], folders)] == [siamese]
    assert [run[1] for run in _runs("mlt", ["onnxruntime"], folders)] == [rtmdnet]
