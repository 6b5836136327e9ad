"""Result folders in other toolkits' layouts: ``bench.ope --results --format got10k`` writes them,
``bench.score`` reads them back (got10k, otb, pysot / pytracking) to the same scores, and bad
input is one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.ope import main as ope_main
from bench.ope import run_ope
from bench.score import main as score_main
from runtime.paths import PROJECT_ROOT
from runtime.sequences import load_sequence
from tests.synthetic import N_FRAMES, SEQ_NAME, tracker_factory, write_sequence


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    root = tmp_path / "sequences"
    write_sequence(root)
    return root


def _ope(data: Path, results: Path, fmt: str) -> dict:
    sequence = load_sequence(data / SEQ_NAME)
    return run_ope(
        ["oracle", "static"],
        [sequence],
        factory=tracker_factory(sequence),
        json_path=results.parent / f"{fmt}.json",
        results_dir=results,
        results_format=fmt,
        progress=False,
    )


def _score(capsys, *args: str) -> tuple[int, str, list[str]]:
    code = score_main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip().splitlines()


def test_got10k_results_read_back_to_the_same_scores(data: Path, tmp_path: Path, capsys) -> None:
    results = tmp_path / "got10k"
    ope = _ope(data, results, "got10k")
    folder = results / "static" / SEQ_NAME
    assert sorted(p.name for p in folder.iterdir()) == [
        f"{SEQ_NAME}_001.txt",
        f"{SEQ_NAME}_time.txt",
    ]
    rows = (folder / f"{SEQ_NAME}_001.txt").read_text().splitlines()
    assert len(rows) == N_FRAMES and rows[0] == "11.000,21.000,24.000,16.000"  # 1-based, %.3f
    times = np.loadtxt(folder / f"{SEQ_NAME}_time.txt")
    assert times.shape == (N_FRAMES,) and (times > 0).all()

    out = tmp_path / "score.json"
    code, table, err = _score(capsys, results, "--format", "got10k", "--data", data, "--json", out)
    assert code == 0, err
    scored = json.loads(out.read_text())
    assert list(scored) == ["oracle", "static"]
    for name in ("oracle", "static"):
        mine, theirs = scored[name]["per_sequence"][SEQ_NAME], ope[name]["per_sequence"][SEQ_NAME]
        for key in ("auc", "precision", "norm_precision", "frames", "scored_frames"):
            assert mine[key] == theirs[key], (name, key)
        assert mine["fps"] == pytest.approx(theirs["fps"], rel=0.05)  # times kept to 1e-8 s
    assert scored["oracle"]["mean_auc"] == pytest.approx(20 / 21)
    assert table.splitlines()[0] == (
        "| tracker | mean AUC | mean precision@20px | mean norm. precision | median FPS |"
    )
    assert table.splitlines()[2].startswith("| oracle | 0.952 | 1.000 | 1.000 | ")


def test_otb_results_score_the_same_without_times(data: Path, tmp_path: Path, capsys) -> None:
    results = tmp_path / "otb"
    ope = _ope(data, results, "otb")
    code, table, err = _score(capsys, results, "--data", data, "--json", tmp_path / "s.json")
    assert code == 0, err
    scored = json.loads((tmp_path / "s.json").read_text())
    assert scored["static"]["mean_auc"] == ope["static"]["mean_auc"]
    assert np.isnan(scored["static"]["median_fps"])  # OTB files hold no times
    assert table.splitlines()[3].endswith("| - |")
    # One tracker's folder given directly is that tracker.
    code, table, _ = _score(capsys, results / "static", "--data", data)
    assert code == 0 and table.splitlines()[2].startswith("| static | ")


@pytest.mark.parametrize("separator", [",", "\t", " "])
def test_pysot_and_pytracking_rows_with_any_separator(
    data: Path, tmp_path: Path, capsys, separator: str
) -> None:
    gt = (data / SEQ_NAME / "groundtruth_rect.txt").read_text().splitlines()
    tracker = tmp_path / "pysot" / "SiamRPN"
    tracker.mkdir(parents=True)
    rows = [separator.join(line.split(",")) for line in gt]
    (tracker / f"{SEQ_NAME}.txt").write_text("\n".join(rows) + "\n")
    code, table, err = _score(capsys, tmp_path / "pysot", "--format", "pysot", "--data", data)
    assert code == 0, err
    assert table.splitlines()[2].startswith("| SiamRPN | 0.952 | 1.000 | 1.000 | - |")


def _one_error(capsys, *args: object) -> str:
    code, out, err = _score(capsys, *args)
    assert code == 2 and out == "" and len(err) == 1, (code, out, err)
    assert err[0].startswith("bench.score: error: ")
    return err[0]


def test_bad_results_are_one_line_each(data: Path, tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no otb results in" in _one_error(capsys, empty, "--data", data)
    assert "no got10k results" in _one_error(capsys, empty, "--format", "got10k", "--data", data)
    assert "results folder not found" in _one_error(capsys, tmp_path / "absent", "--data", data)

    gt = (data / SEQ_NAME / "groundtruth_rect.txt").read_text().splitlines()
    res = tmp_path / "res" / "trk"
    res.mkdir(parents=True)
    short = res / f"{SEQ_NAME}.txt"
    short.write_text("\n".join(gt[:-2]) + "\n")
    line = _one_error(capsys, res.parent, "--data", data)
    assert str(short) in line and f"{N_FRAMES - 2} rows" in line and f"{N_FRAMES} frames" in line

    bad = gt.copy()
    bad[2] = "12,twenty,24,16"
    short.write_text("\n".join(bad) + "\n")
    assert f"{short}:3: " in _one_error(capsys, res.parent, "--data", data)
    bad[2] = "1,2,3"
    short.write_text("\n".join(bad) + "\n")
    assert f"{short}:3: expected 4 values" in _one_error(capsys, res.parent, "--data", data)

    short.write_text("\n".join(gt) + "\n")
    (res / "Nope.txt").write_text("\n".join(gt) + "\n")
    line = _one_error(capsys, res.parent, "--data", data)
    assert "Nope.txt" in line and "'Nope' has no ground truth" in line

    (res / "Nope.txt").unlink()
    other = res.parent / "other"
    other.mkdir()
    (other / "Elsewhere.txt").write_text("1,1,1,1\n")
    write_sequence(data, "Elsewhere", n=1)
    line = _one_error(capsys, res.parent, "--data", data)
    assert "tracker other has no results for Synth (that other trackers have)" in line


def test_split_needs_every_split_sequence(data: Path, tmp_path: Path, capsys) -> None:
    gt = (data / SEQ_NAME / "groundtruth_rect.txt").read_text()
    res = tmp_path / "res" / "trk"
    res.mkdir(parents=True)
    (res / f"{SEQ_NAME}.txt").write_text(gt)
    (res / "Unlabelled.txt").write_text(gt)  # outside the split: ignored
    write_sequence(data, "Second", n=4)
    (data / "splits.json").write_text(json.dumps({"val": [SEQ_NAME], "test": ["Second"]}))
    code, table, err = _score(capsys, res.parent, "--data", data, "--split", "val")
    assert code == 0, err
    assert "| trk | 0.952 |" in table
    line = _one_error(capsys, res.parent, "--data", data, "--split", "test")
    assert "tracker trk has no results for Second (of split 'test')" in line


def test_cli_has_no_traceback_and_ope_format_needs_results(data: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "bench.score", str(tmp_path / "empty"), "--data", str(data)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    code = ope_main(
        ["--data", str(data), "--trackers", "cv2-kcf", "--json", str(tmp_path / "o.json"),
         "--format", "got10k", "--quiet"]
    )  # fmt: skip
    assert code == 2 and not (tmp_path / "o.json").exists()
