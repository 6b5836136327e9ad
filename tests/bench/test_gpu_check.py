"""bench.gpu_check: its one-line refusal where there is no CUDA device (every machine of this
project but a lent GPU one), and rows every one of which the tracker's config takes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from bench.gpu_check import main, trackers
from bench.ope import split_spec
from runtime.nanotrack import NanoTrackConfig


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_refuses_without_a_gpu_in_one_line(tmp_path: Path, capsys):
    out = tmp_path / "gpu.json"
    assert main(["--json", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no CUDA device (torch ") and "\n" not in err
    assert not out.exists()


def test_every_row_is_a_valid_nanotrack_spec():
    fields = {f.name for f in dataclasses.fields(NanoTrackConfig)}
    rows = trackers(Path("engines"))
    assert len(rows) == len(set(rows)) == 7
    for spec in rows:
        name, options = split_spec(spec)
        assert name == "nanotrack" and set(options) <= fields, spec
        NanoTrackConfig(**options)  # values of the right kind
