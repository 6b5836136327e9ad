"""runtime.stage_clock and bench.profile (issue 17): stage timers, their summary, the CLI.
The profiles themselves are benchmarks (docs/speed.md), not tests: nothing here checks a time."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.profile import main, profile_tracker, summarize
from runtime.sequences import Sequence
from runtime.stage_clock import OTHER, STAGES, StageClock
from runtime.tracker_api import TimesStages
from tests.support import needs_data


def test_a_disabled_clock_records_nothing_and_an_enabled_one_sums_repeated_stages():
    clock = StageClock()
    with clock.stage("crop"):
        pass
    assert clock.take() == {}
    clock.enabled = True
    for _ in range(3):
        with clock.stage("roi_pooling"):
            pass
    frame = clock.take()
    assert list(frame) == ["roi_pooling"] and frame["roi_pooling"] >= 0.0
    assert clock.take() == {}  # take() starts the next frame
    with pytest.raises(ValueError, match="unknown stage 'pooling'"):
        clock.stage("pooling")


def test_a_stage_that_raises_is_still_timed():
    clock = StageClock()
    clock.enabled = True
    with pytest.raises(RuntimeError), clock.stage("backbone"):
        raise RuntimeError("backend failed")
    assert "backbone" in clock.take()


class _Staged:
    """Test double: two stages on every frame, an online update on every other one."""

    name = "staged"

    def __init__(self) -> None:
        self.stage_clock = StageClock()
        self.frames = 0

    def init(self, frame: np.ndarray, box: np.ndarray) -> None:
        with self.stage_clock.stage("crop"):  # init's stages are not update's
            pass
        self.frames = 0

    def update(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        self.frames += 1
        with self.stage_clock.stage("crop"):
            pass
        with self.stage_clock.stage("backbone"):
            pass
        if self.frames % 2 == 0:
            with self.stage_clock.stage("online_update"):
                pass
        return np.array([1.0, 1.0, 4.0, 4.0]), 1.0


def _sequence(n: int) -> tuple[Sequence, list[np.ndarray]]:
    truth = np.tile([1.0, 1.0, 4.0, 4.0], (n, 1))
    return Sequence("s", [], truth), [np.zeros((8, 8, 3), np.uint8)] * n


def test_profile_rows_cover_every_update_and_their_parts_add_up_to_the_total():
    tracker = _Staged()
    assert isinstance(tracker, TimesStages)
    rows, inits = profile_tracker(tracker, [_sequence(5), _sequence(4)])
    assert len(rows) == 4 + 3 and len(inits) == 2
    assert not tracker.stage_clock.enabled  # left as it was found
    assert sum("online_update" in row for row in rows) == 2 + 1
    for row in rows:
        parts = sum(v for k, v in row.items() if k != "total")
        assert parts == pytest.approx(row["total"], abs=1e-6)


def test_summary_counts_absent_stages_as_zero_and_keeps_the_stage_order():
    rows = [
        {"backbone": 4.0, "crop": 1.0, OTHER: 1.0, "total": 6.0},
        {"backbone": 4.0, "crop": 1.0, "online_update": 30.0, OTHER: 1.0, "total": 36.0},
        {"backbone": 4.0, "crop": 1.0, OTHER: 1.0, "total": 6.0},
    ]
    profile = summarize("t", rows, [100.0, 200.0])
    assert list(profile.stages) == ["crop", "backbone", "online_update", OTHER, "total"]
    update = profile.stages["online_update"]
    assert update.median_ms == 0.0 and update.mean_ms == pytest.approx(10.0)
    assert update.share == pytest.approx(10.0 / 16.0)
    assert profile.first_frame_ms == 150.0
    assert profile.fps == pytest.approx(1000.0 / 16.0)


def test_every_stage_name_is_documented_in_the_clock():
    assert len(set(STAGES)) == len(STAGES) and OTHER not in STAGES


@needs_data
def test_the_cli_profiles_real_trackers_with_their_own_stages(tmp_path, capsys):
    out = tmp_path / "profile.json"
    code = main(
        [
            "--trackers",
            "nanotrack[backend=torch],rtmdnet[maxiter_init=2]",
            "--seqs",
            "Crossing",
            "--max-frames",
            "6",
            "--threads",
            "1",
            "--quiet",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    payload = json.loads(out.read_text())
    nano = payload["trackers"]["nanotrack[backend=torch]"]
    rtmdnet = payload["trackers"]["rtmdnet[maxiter_init=2]"]
    assert nano["frames"] == rtmdnet["frames"] == 5
    assert {"crop", "backbone", "candidate_scoring", "box_regression"} <= set(nano["stages"])
    assert {"sampling", "crop", "backbone", "roi_pooling", "candidate_scoring"} <= set(
        rtmdnet["stages"]
    )
    assert "| rtmdnet[maxiter_init=2] | **total** |" in capsys.readouterr().out


def test_the_cli_refuses_an_unknown_tracker_in_one_line(capsys):
    assert main(["--trackers", "nosuch", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown tracker 'nosuch'" in err[0]
