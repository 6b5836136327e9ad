"""The CLI's typed request (runtime.cli.request): defaults, options, early checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.cli.parser import build_parser
from runtime.cli.request import (
    DEFAULT_TRACKER,
    FALLBACK_TRACKER,
    META_TRACKER,
    TrackRequest,
    UsageError,
)
from runtime.rtmdnet.prune import SHIPPED_PRUNE


def _request(*argv: str, check_name: bool = True) -> TrackRequest:
    return TrackRequest.from_args(build_parser().parse_args(list(argv)), check_name=check_name)


def test_no_flags_is_the_default_tracker_with_no_options_and_a_fallback():
    choice = _request("clip.mp4").tracker
    assert (choice.name, choice.named, choice.options()) == (DEFAULT_TRACKER, False, {})
    fallback = choice.fallback()
    assert fallback is not None and fallback.name == FALLBACK_TRACKER


def test_checkpoints_without_tracker_mean_metartt_and_the_fallback_drops_them(tmp_path):
    meta = tmp_path / "m.pt"
    choice = _request("clip.mp4", "--meta", str(meta), "--prune").tracker
    assert choice.name == META_TRACKER
    assert choice.options() == {"meta": str(meta), "prune": str(SHIPPED_PRUNE)}
    fallback = choice.fallback()
    assert fallback is not None and fallback.options() == {}


def test_a_named_tracker_keeps_its_flags_and_never_falls_back(tmp_path):
    argv = ["v.mp4", "--tracker", "rtmdnet", "--backend", "onnxruntime"]
    choice = _request(*argv, "--export-dir", str(tmp_path), "--precision", "int8").tracker
    assert choice.named and choice.fallback() is None
    assert choice.options() == {
        "backend": "onnxruntime",
        "export_dir": str(tmp_path),
        "precision": "int8",
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tracker", "nosuch"], "unknown tracker 'nosuch'"),
        (["--max-frames", "0"], "--max-frames must be at least 1"),
        (["--threads", "0"], "--threads must be at least 1"),
        (["--prune", "missing.pt"], "no pruning checkpoint at missing.pt"),
    ],
)
def test_values_that_cannot_work_fail_before_anything_loads(argv, message):
    with pytest.raises(UsageError, match=message):
        _request("clip.mp4", *argv)


def test_an_injected_factory_decides_about_names_itself():
    assert _request("clip.mp4", "--tracker", "double", check_name=False).tracker.name == "double"
    assert _request("--output", "o.mp4").output == Path("o.mp4")


def test_prune_on_the_nanotrack_base_means_the_heads_pruning_network(tmp_path):
    assert _request("v.mp4", "--tracker", "metartt-nano", "--prune").tracker.options() == {
        "prune": "shipped"
    }
    mine = tmp_path / "metartt_nano_prune.pt"
    mine.write_bytes(b"checked when the tracker loads it")
    choice = _request("v.mp4", "--tracker", "metartt-nano", "--prune", str(mine)).tracker
    assert choice.options() == {"prune": str(mine)}
    with pytest.raises(UsageError, match="--prune fit is MetaRTT's"):
        _request("v.mp4", "--tracker", "metartt-nano", "--prune", "fit")
    with pytest.raises(UsageError, match="no head-pruning checkpoint at"):
        _request("v.mp4", "--tracker", "metartt-nano", "--prune", str(tmp_path / "none.pt"))


def test_prune_fit_on_rtmdnet_nanotrack_is_metartts_fit():
    # rtmdnet[backbone=nanotrack] is the RT-MDNet head on NanoTrack's backbone, not the Siamese
    # base: its spec holds "nano", which made --prune fit refused (issue 28.6).
    assert (
        _request(
            "v.mp4", "--tracker", "rtmdnet[backbone=nanotrack]", "--prune", "fit"
        ).tracker.options()["prune"]
        == "fit"
    )
