"""One-pass evaluation end to end on a tiny synthetic OTB-layout sequence, with test doubles."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.ope import OPEError, markdown_table, resolve_sequences, run_ope, versus
from runtime.paths import PROJECT_ROOT
from runtime.sequences import Sequence, load_sequence, read_boxes_file
from tests.synthetic import (
    N_FRAMES,
    SEQ_NAME,
    StaticTracker,
    tracker_factory,
    write_sequence,
)


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    root = tmp_path / "sequences"
    write_sequence(root)
    return root


@pytest.fixture()
def sequence(data: Path) -> Sequence:
    return load_sequence(data / SEQ_NAME)


def test_run_ope_json_results_and_plots(tmp_path: Path, sequence: Sequence) -> None:
    out_json = tmp_path / "out" / "ope.json"
    summary = run_ope(
        ["oracle", "static"],
        [sequence],
        factory=tracker_factory(sequence),
        json_path=out_json,
        results_dir=tmp_path / "res",
        plots_dir=tmp_path / "plots",
        progress=False,
    )
    written = json.loads(out_json.read_text())
    assert written == json.loads(json.dumps(summary))

    # Exactly the documented shape, nothing more.
    assert list(written) == ["oracle", "static"]
    for entry in written.values():
        assert set(entry) == {
            "per_sequence",
            "mean_auc",
            "mean_precision",
            "median_fps",
            "excluded_from_means",
            "environment",
        }
        # Where and how it ran, for the report (issue 28.5): test doubles report no backend.
        environment = entry["environment"]
        assert set(environment) == {"cpu", "threads", "backend", "date"}
        assert environment["cpu"] and environment["threads"] >= 1
        assert environment["backend"] == "-"
        assert len(environment["date"]) == len("2025-01-31")
        assert entry["excluded_from_means"] == []
        assert list(entry["per_sequence"]) == [SEQ_NAME]
        per = entry["per_sequence"][SEQ_NAME]
        assert set(per) == {"auc", "precision", "norm_precision", "fps", "frames", "scored_frames"}
        assert isinstance(per["frames"], int) and per["frames"] == N_FRAMES
        assert isinstance(per["scored_frames"], int) and per["scored_frames"] == N_FRAMES
        assert all(isinstance(per[k], float) for k in ("auc", "precision", "norm_precision", "fps"))
        assert per["fps"] > 0
        assert entry["mean_auc"] == pytest.approx(per["auc"])
        assert entry["mean_precision"] == pytest.approx(per["precision"])
        assert entry["median_fps"] == pytest.approx(per["fps"])

    oracle = written["oracle"]["per_sequence"][SEQ_NAME]
    assert oracle["auc"] == pytest.approx(20 / 21, abs=1e-9)
    assert oracle["precision"] == 1.0 and oracle["norm_precision"] == 1.0

    # The static box drifts by (4, 2) px per frame: centre error <= 20 px for i <= 4 (of 12).
    static = written["static"]["per_sequence"][SEQ_NAME]
    assert static["precision"] == pytest.approx(5 / 12)
    assert static["auc"] < oracle["auc"]

    # Result files: one 1-based OTB row per frame; the oracle's equal the ground-truth file.
    gt_file = read_boxes_file(sequence.frame_paths[0].parent.parent / "groundtruth_rect.txt")
    oracle_rows = read_boxes_file(tmp_path / "res" / "oracle" / f"{SEQ_NAME}.txt")
    np.testing.assert_allclose(oracle_rows, gt_file)
    static_rows = read_boxes_file(tmp_path / "res" / "static" / f"{SEQ_NAME}.txt")
    assert static_rows.shape == (N_FRAMES, 4)
    np.testing.assert_allclose(static_rows, np.tile(gt_file[0], (N_FRAMES, 1)))
    assert gt_file[0, 0] == 11.0  # 1-based: the rectangle starts at pixel column 10

    for png in ("success.png", "precision.png", "norm_precision.png"):
        path = tmp_path / "plots" / png
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| oracle |" in (tmp_path / "plots" / "summary.md").read_text()


def test_max_frames_truncates(sequence: Sequence) -> None:
    summary = run_ope(
        ["static"], [sequence], factory=tracker_factory(sequence), max_frames=5, progress=False
    )
    assert summary["static"]["per_sequence"][SEQ_NAME]["frames"] == 5
    assert summary["static"]["per_sequence"][SEQ_NAME]["precision"] == 1.0


def test_fresh_tracker_per_sequence(tmp_path: Path) -> None:
    root = tmp_path / "seqs"
    write_sequence(root, "A")
    write_sequence(root, "B", n=6)
    built: list[str] = []

    def build(name: str) -> StaticTracker:
        built.append(name)
        return StaticTracker()

    sequences = resolve_sequences(root, [], None)
    summary = run_ope(["static"], sequences, factory=build, progress=False)
    assert built == ["static", "static"]
    assert list(summary["static"]["per_sequence"]) == ["A", "B"]


class PrunedStaticTracker(StaticTracker):
    """A static tracker that reports a per-video prune rate, as MetaRTT+Prune does."""

    def __init__(self, rate: float) -> None:
        self.rate = rate

    def run_stats(self) -> dict[str, float]:
        return {"prune_rate": self.rate}


def test_per_video_stats_reach_the_summary_and_the_table(tmp_path: Path) -> None:
    root = tmp_path / "seqs"
    write_sequence(root, "A")
    write_sequence(root, "B", n=6)
    rates = iter([0.4, 0.6])
    build = {"pruned": lambda: PrunedStaticTracker(next(rates)), "static": StaticTracker}
    sequences = resolve_sequences(root, [], None)
    summary = run_ope(["pruned", "static"], sequences, factory=lambda n: build[n](), progress=False)
    pruned = summary["pruned"]
    assert pruned["per_sequence"]["A"]["prune_rate"] == 0.4
    assert pruned["mean_prune_rate"] == pytest.approx(0.5)
    assert pruned["std_prune_rate"] == pytest.approx(0.1)
    assert "mean_prune_rate" not in summary["static"]
    table = markdown_table(summary).splitlines()
    assert table[0].endswith("prune rate |")
    assert table[2].endswith("50.0% ± 10.0% |") and table[3].endswith(" - |")


def test_unknown_tracker_in_run_ope(sequence: Sequence) -> None:
    with pytest.raises(OPEError, match="nope"):
        run_ope(["nope"], [sequence], factory=tracker_factory(sequence), progress=False)


def test_resolve_sequences_errors(data: Path, tmp_path: Path) -> None:
    with pytest.raises(OPEError, match="unknown sequence Nope"):
        resolve_sequences(data, ["Nope"], None)
    with pytest.raises(OPEError, match="not found"):
        resolve_sequences(tmp_path / "missing", [], None)
    (data / "splits.json").write_text(json.dumps({"val": [SEQ_NAME], "train": []}))
    assert [s.name for s in resolve_sequences(data, [], "val")] == [SEQ_NAME]
    with pytest.raises(OPEError, match="not in the 'train' split"):
        resolve_sequences(data, [SEQ_NAME], "train")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.ope", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_unknown_tracker_one_line(data: Path, tmp_path: Path) -> None:
    proc = _cli("--data", str(data), "--trackers", "cv2-kcf,nope", "--json", str(tmp_path / "o"))
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown tracker 'nope'" in lines[0], proc.stderr
    assert not (tmp_path / "o").exists()


def test_cli_missing_data_and_unknown_sequence(data: Path, tmp_path: Path) -> None:
    proc = _cli("--data", str(tmp_path / "absent"), "--trackers", "cv2-kcf", "--json", "x.json")
    assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1
    assert "data folder not found" in proc.stderr
    proc = _cli("--data", str(data), "--seqs", "Nope", "--trackers", "cv2-kcf", "--json", "x")
    assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1
    assert "unknown sequence Nope" in proc.stderr


def test_cli_runs_a_peer(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "ope.json"
    proc = _cli(
        "--data", str(data), "--trackers", "cv2-kcf", "--json", str(out), "--quiet",
        "--threads", "1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].startswith("| tracker | mean AUC")
    assert "| cv2-kcf |" in proc.stdout
    written = json.loads(out.read_text())
    assert written["cv2-kcf"]["per_sequence"][SEQ_NAME]["frames"] == N_FRAMES


def test_set_overrides_parse_values_and_words():
    from bench.ope import OPEError, parse_overrides

    assert parse_overrides(
        ["lr_init=0.001", "seed=3", "backbone=vggm", "init_jitter_scales=(1.0,)"]
    ) == {
        "lr_init": 0.001,
        "seed": 3,
        "backbone": "vggm",
        "init_jitter_scales": (1.0,),
    }
    with pytest.raises(OPEError, match="KEY=VALUE"):
        parse_overrides(["lr_init"])


def test_tracker_specs_carry_their_own_overrides():
    from bench.ope import OPEError, split_spec

    assert split_spec("rtmdnet") == ("rtmdnet", {})
    assert split_spec("rtmdnet[seed=2;backend=onnxruntime]") == (
        "rtmdnet",
        {"seed": 2, "backend": "onnxruntime"},
    )
    with pytest.raises(OPEError, match="NAME"):
        split_spec("rtmdnet[seed=2")


# ------------------------------------------------------------------ wins against a peer


def _entry(aucs: dict[str, float], excluded: tuple[str, ...] = ()) -> dict:
    per = {seq: {"auc": auc} for seq, auc in aucs.items()}
    return {"per_sequence": per, "mean_auc": 0.0, "excluded_from_means": list(excluded)}


def test_versus_counts_wins_losses_and_ties_per_sequence() -> None:
    peer = _entry({"A": 0.5, "B": 0.5, "C": 0.5, "D": 0.5, "E": 0.5, "F": 0.5})
    # B and D are exactly at the tie margin (0.005), E was never run, F is excluded.
    mine = _entry({"A": 0.6, "B": 0.505, "C": 0.4, "D": 0.495, "F": 0.9}, excluded=("F",))
    summary = {"peer": peer, "mine": mine}
    result = versus(summary, "peer")
    assert set(result) == {"mine"}
    counts = result["mine"]
    assert (counts["peer"], counts["wins"], counts["losses"], counts["ties"]) == ("peer", 1, 1, 2)
    assert counts["per_sequence"] == pytest.approx({"A": 0.1, "B": 0.005, "C": -0.1, "D": -0.005})


def test_run_ope_stores_versus_under_each_other_tracker(tmp_path: Path, sequence: Sequence):
    out = tmp_path / "ope.json"
    summary = run_ope(
        ["oracle", "static"], [sequence], factory=tracker_factory(sequence), json_path=out,
        progress=False, peer="static",
    )  # fmt: skip
    written = json.loads(out.read_text())
    assert "versus" not in written["static"]
    assert written["oracle"]["versus"]["wins"] == 1 and written["oracle"]["versus"]["ties"] == 0
    assert written["oracle"]["versus"]["peer"] == "static"
    table = markdown_table(summary)
    assert "W/L/T vs static" in table.splitlines()[0]
    assert "| 1/0/0 |" in table
    with pytest.raises(OPEError, match="--peer nope is not one of --trackers"):
        run_ope(["oracle"], [sequence], factory=tracker_factory(sequence), peer="nope",
                progress=False)  # fmt: skip


def test_cli_peer_table_json_and_where_it_wrote(data: Path, tmp_path: Path) -> None:
    out, report = tmp_path / "ope.json", tmp_path / "report"
    proc = _cli(
        "--data", str(data), "--trackers", "cv2-kcf,cv2-mil", "--peer", "cv2-kcf", "--json",
        str(out), "--report", str(report), "--quiet", "--threads", "1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "W/L/T vs cv2-kcf" in lines[0]
    versus_kcf = json.loads(out.read_text())["cv2-mil"]["versus"]
    assert versus_kcf["wins"] + versus_kcf["losses"] + versus_kcf["ties"] == 1
    assert set(versus_kcf["per_sequence"]) == {SEQ_NAME}
    # One line each says where the results went (issue 28.5).
    assert lines[-2:] == [f"wrote {out}", f"wrote {report / 'index.html'}"]
    proc = _cli("--data", str(data), "--trackers", "cv2-kcf", "--peer", "cv2-mil", "--json", "x")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "--peer cv2-mil is not one of --trackers" in proc.stderr
