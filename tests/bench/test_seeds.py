"""bench.seeds: grouping bench.ope runs by spec without the seed, spread and paired differences."""

from __future__ import annotations

import json

import pytest

from bench.seeds import group_runs, main, summarize, without_seed


def test_the_seed_comes_out_of_the_spec_wherever_it_is():
    assert without_seed("metartt[backend=torch;seed=2]") == ("metartt[backend=torch]", 2)
    assert without_seed("metartt[seed=3;precision=int8]") == ("metartt[precision=int8]", 3)
    assert without_seed("metartt[seed=1]") == ("metartt", 1)
    assert without_seed("metartt[backend=torch]") == ("metartt[backend=torch]", 0)


def _run(auc: dict[str, float]) -> dict:
    return {spec: {"mean_auc": a, "mean_precision": a + 0.2} for spec, a in auc.items()}


def test_paired_differences_against_the_baseline_of_the_same_tracker(tmp_path, capsys):
    runs = [
        _run({"m[p=fp32;seed=0]": 0.50, "m[p=int8;seed=0]": 0.52, "r[p=fp32;seed=0]": 0.3}),
        _run({"m[p=fp32;seed=1]": 0.40, "m[p=int8;seed=1]": 0.39, "r[p=int8;seed=1]": 0.2}),
    ]
    table = summarize(group_runs(runs), baseline="p=fp32")
    int8 = table["m[p=int8]"]
    assert int8["seeds"] == [0, 1] and int8["auc_mean"] == pytest.approx(0.455)
    assert int8["vs"] == "m[p=fp32]"
    assert int8["auc_diffs"] == pytest.approx([0.02, -0.01])
    assert int8["auc_diff_mean"] == pytest.approx(0.005)
    assert "vs" not in table["m[p=fp32]"]  # the baseline itself
    assert table["r[p=int8]"]["auc_diff_mean"] is None  # no seed in common with r's baseline
    files = []
    for i, run in enumerate(runs):
        files.append(tmp_path / f"run{i}.json")
        files[-1].write_text(json.dumps(run))
    assert main([*map(str, files), "--baseline", "p=fp32", "--json", str(tmp_path / "o.json")]) == 0
    assert "| m[p=int8] | 2 | 0.455 ± 0.092 |" in capsys.readouterr().out
    assert json.loads((tmp_path / "o.json").read_text())["m[p=int8]"]["seeds"] == [0, 1]
    assert main([str(tmp_path / "missing.json")]) == 2
