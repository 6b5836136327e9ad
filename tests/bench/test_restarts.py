"""The supervised (VOT-style) restart experiment: the loop and its scores on hand-made sequences
with a scripted test-double tracker, then ``bench.ope --restart`` (JSON, table, resume, errors)."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from bench.ope import OPEError, main, restart_table, run_ope
from runtime.evaluation.restarts import (
    FrameState,
    RestartSettings,
    score_restarts,
    track_with_restarts,
)
from runtime.sequences import load_sequence
from tests.synthetic import StaticTracker, write_sequence

SKIP, INIT, FAIL, TRACK = (int(s) for s in FrameState)


def _frames(n: int) -> list[np.ndarray]:
    """Frames that carry their own index, so the test double knows where it is."""
    return [np.full((2, 2, 3), i, dtype=np.int32) for i in range(n)]


def _moving(n: int) -> np.ndarray:
    """A 10 x 10 target at a different place on every frame (a re-init box says which frame)."""
    return np.asarray([[3.0 * i, 2.0 * i, 10.0, 10.0] for i in range(n)])


class Scripted:
    """Reports the ground truth shifted right by ``shift[frame]`` px (IoU (10 - s) / (10 + s)
    for a 10 px wide box; 10 px or more: IoU 0, a failure); logs every call."""

    name = "scripted"

    def __init__(self, ground_truth: np.ndarray, shift: dict[int, float] | None = None) -> None:
        self.gt = np.nan_to_num(ground_truth, nan=5.0)
        self.shift = shift or {}
        self.calls: list[tuple[str, int]] = []
        self.init_boxes: list[np.ndarray] = []

    def init(self, frame: np.ndarray, box: np.ndarray) -> None:
        self.calls.append(("init", int(frame[0, 0, 0])))
        self.init_boxes.append(np.asarray(box).copy())

    def update(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        index = int(frame[0, 0, 0])
        self.calls.append(("update", index))
        return self.gt[index] + [self.shift.get(index, 0.0), 0.0, 0.0, 0.0], 1.0


def _run(gt: np.ndarray, shift: dict[int, float], settings: RestartSettings | None = None):
    tracker = Scripted(gt, shift)
    run = track_with_restarts(tracker, _frames(len(gt)), gt, settings or RestartSettings())
    return tracker, run


def test_failures_counted_and_reinit_five_frames_later_from_the_ground_truth() -> None:
    gt = _moving(30)
    tracker, run = _run(gt, {7: 50.0, 20: 10.0})  # 10 px: touching edges, IoU exactly 0
    expected = [INIT] + [TRACK] * 6 + [FAIL] + [SKIP] * 4 + [INIT] + [TRACK] * 7 + [FAIL]
    expected += [SKIP] * 4 + [INIT] + [TRACK] * 4
    assert run.states.tolist() == expected
    assert run.failures == 2
    inits = [i for kind, i in tracker.calls if kind == "init"]
    assert inits == [0, 12, 25]  # failure on 7 -> re-init on 12, on 20 -> 25
    for index, box in zip(inits, tracker.init_boxes, strict=True):
        np.testing.assert_array_equal(box, gt[index])  # from the ground truth at that frame
    updates = [i for kind, i in tracker.calls if kind == "update"]
    assert updates == [*range(1, 8), *range(13, 21), *range(26, 30)]  # none while skipped
    np.testing.assert_array_equal(run.boxes[12], gt[12])
    assert np.isnan(run.boxes[8:12]).all()
    assert (run.frame_seconds[8:12] == 0).all() and run.calls == 30 - 8
    scores = score_restarts(run, gt)
    assert scores.failures == 2 and scores.frames == 30


def test_a_failure_in_the_last_frames_gets_no_reinit() -> None:
    gt = _moving(12)
    tracker, run = _run(gt, {9: 50.0})
    assert run.states.tolist() == [INIT] + [TRACK] * 8 + [FAIL, SKIP, SKIP]
    assert [c for c in tracker.calls if c[0] == "init"] == [("init", 0)]
    scores = score_restarts(run, gt, RestartSettings(burn_in=1))
    assert scores.failures == 1
    # Frames 1..11: 1..8 tracked exactly (IoU 1), 9 failed, 10 and 11 skipped (0).
    assert scores.average_overlap == pytest.approx(8 / 11) and scores.overlap_frames == 11
    assert scores.accuracy == pytest.approx(1.0) and scores.accuracy_frames == 8
    # A failure on the very last frame.
    _, run = _run(gt, {11: 50.0})
    assert run.states.tolist()[-2:] == [TRACK, FAIL] and run.failures == 1


def test_nan_ground_truth_never_fails_and_a_reinit_waits_for_visible_ground_truth() -> None:
    gt = _moving(25)
    gt[[4, 5]] = np.nan  # the tracker is far off there, but the target is not visible
    gt[15:17] = np.nan  # the re-init after the failure on 10 would fall on 15
    tracker, run = _run(gt, {4: 50.0, 5: 50.0, 10: 50.0})
    assert run.states[4] == TRACK and run.states[5] == TRACK  # updated, not failures
    assert run.states[10] == FAIL and run.failures == 1
    assert run.states[11:17].tolist() == [SKIP] * 6 and run.states[17] == INIT
    assert [i for kind, i in tracker.calls if kind == "init"] == [0, 17]
    scores = score_restarts(run, gt, RestartSettings(burn_in=1))
    # Accuracy: tracked frames with visible ground truth: 1-3, 6-9, 18-24 (14, all IoU 1).
    assert scores.accuracy_frames == 14 and scores.accuracy == pytest.approx(1.0)
    # Average overlap: visible frames after 0 (24 - 4 NaN = 20), zeros on 10-14 and 17.
    assert scores.overlap_frames == 20
    assert scores.average_overlap == pytest.approx(14 / 20)


def test_a_tracker_that_never_fails() -> None:
    gt = _moving(20)
    shift = {i: 5.0 for i in range(1, 20, 2)}  # odd frames: IoU 5 / 15 = 1/3; even frames: 1
    tracker, run = _run(gt, shift)
    assert run.failures == 0 and run.states.tolist() == [INIT] + [TRACK] * 19
    assert tracker.calls == [("init", 0)] + [("update", i) for i in range(1, 20)]
    scores = score_restarts(run, gt)
    # Accuracy after the 10-frame burn-in (frames 10..19: five at 1, five at 1/3).
    assert scores.accuracy_frames == 10
    assert scores.accuracy == pytest.approx((5 + 5 / 3) / 10)
    # Average overlap over frames 1..19: nine even at 1, ten odd at 1/3.
    assert scores.average_overlap == pytest.approx((9 + 10 / 3) / 19)


def test_accuracy_robustness_and_eao_by_hand() -> None:
    gt = np.tile([20.0, 20.0, 10.0, 10.0], (20, 1))  # a target that stands still
    shift = {i: 5.0 for i in range(1, 20)}  # IoU 1/3 everywhere ...
    shift[12] = 12.0  # ... but a failure on frame 12, a re-init on 17
    _, run = _run(gt, shift)
    assert run.states[12] == FAIL and run.states[17] == INIT
    scores = score_restarts(run, gt)  # burn-in 10
    # Accuracy: burn-in frames 0-9 and 17-26 out, 12 failed: frames 10 and 11 at 1/3.
    assert scores.accuracy_frames == 2 and scores.accuracy == pytest.approx(1 / 3)
    # EAO-style over frames 1..19: 1-11 and 18-19 at 1/3, 12-17 (failure to re-init) at 0.
    assert scores.average_overlap == pytest.approx((13 / 3) / 19)
    assert scores.calls == 20 - 4


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="skip"):
        RestartSettings(skip=0)
    with pytest.raises(ValueError, match="burn_in"):
        RestartSettings(burn_in=-1)


# ------------------------------------------------------------------ bench.ope --restart


class Jumpy(StaticTracker):
    """Stays on its init box, so on the synthetic clip (4 px per frame, 24 px wide) the IoU
    falls to 0 on the 6th frame after each init: a failure every 6 + 5 frames."""


run_restart = partial(run_ope, restart=RestartSettings())


def _sequences(root: Path, names: tuple[str, ...] = ("A", "B")) -> list:
    for name in names:
        write_sequence(root, name, n=20)
    return [load_sequence(root / name) for name in names]


def test_run_restart_json_table_and_hand_counts(tmp_path: Path) -> None:
    sequences = _sequences(tmp_path / "seqs")
    out = tmp_path / "restart.json"
    summary = run_restart(
        ["jumpy"], sequences, factory=lambda _: Jumpy(), json_path=out, progress=False
    )
    written = json.loads(out.read_text())
    assert list(written) == ["restart"]
    assert written["restart"]["skip_frames"] == 5 and written["restart"]["burn_in"] == 10
    entry = written["restart"]["trackers"]["jumpy"]
    assert json.dumps(entry) == json.dumps(summary["jumpy"])  # NaN != NaN: compare the text
    # The box stays put while the target moves 4 px right, 2 down: x-overlap 24 - 4k > 0 up to
    # k = 5, IoU 0 at k = 6. Init 0, failure 6, init 11, failure 17, no re-init after (20 frames).
    per = entry["per_sequence"]["A"]
    assert per["failures"] == 2 and per["frames"] == 20
    assert entry["failures"] == 4 and entry["frames"] == 40
    assert entry["robustness"] == pytest.approx(100 * 4 / 40)
    assert per["accuracy_frames"] == 0 and np.isnan(per["accuracy"])  # all inside the burn-in
    table = restart_table(summary, RestartSettings())
    assert table.splitlines()[0].startswith("| tracker | accuracy | robustness")
    assert "| jumpy | nan | 10.00 | 4 |" in table


def test_restart_resume_runs_only_what_is_missing(tmp_path: Path) -> None:
    sequences = _sequences(tmp_path / "seqs", ("A", "B", "C"))
    out = tmp_path / "restart.json"
    inits: list[int] = []

    class Dies(Jumpy):
        def init(self, frame: np.ndarray, box: np.ndarray) -> None:
            if len(inits) == 2:  # two inits per sequence: dies at the start of B
                raise KeyboardInterrupt
            inits.append(1)
            super().init(frame, box)

    with pytest.raises(KeyboardInterrupt):
        run_restart(["jumpy"], sequences, factory=lambda _: Dies(), json_path=out, progress=False)
    partial = json.loads(out.read_text())["restart"]["trackers"]["jumpy"]
    assert list(partial["per_sequence"]) == ["A"]
    inits.clear()
    resumed = run_restart(
        ["jumpy"], sequences, factory=lambda _: Jumpy(), json_path=out, progress=False, resume=True
    )
    fresh = run_restart(["jumpy"], sequences, factory=lambda _: Jumpy(), progress=False)
    for summary in (resumed, fresh):
        for per in summary["jumpy"]["per_sequence"].values():
            per.pop("fps")
        summary["jumpy"].pop("median_fps")
    assert json.dumps(resumed) == json.dumps(fresh)
    # A one-pass run saved there is not resumed as a restart run, nor the other way round.
    run_ope(["jumpy"], sequences, factory=lambda _: Jumpy(), json_path=out, progress=False)
    with pytest.raises(OPEError, match="--resume: .*--restart"):
        run_restart(
            ["jumpy"], sequences, factory=lambda _: Jumpy(), json_path=out, progress=False,
            resume=True,
        )  # fmt: skip


def test_cli_restart_prints_the_table_and_refuses_results(tmp_path: Path, capsys) -> None:
    data = tmp_path / "seqs"
    write_sequence(data, "A", n=8)
    base = ["--data", str(data), "--trackers", "cv2-kcf", "--quiet", "--threads", "1"]
    out = tmp_path / "r.json"
    assert main([*base, "--json", str(out), "--restart"]) == 0
    assert capsys.readouterr().out.startswith("| tracker | accuracy | robustness")
    assert json.loads(out.read_text())["restart"]["trackers"]["cv2-kcf"]["frames"] == 8
    assert main([*base, "--json", str(out), "--restart", "--resume"]) == 0
    assert "1 of 1 runs already done" in capsys.readouterr().err
    assert main([*base, "--json", str(out), "--restart", "--results", str(tmp_path / "r")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--restart" in lines[0] and "--results" in lines[0], lines
