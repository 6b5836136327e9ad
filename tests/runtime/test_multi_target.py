"""Several targets at once: the Python API (runtime.multi_target), nanotrack's batched search, the
CLI's repeated --init, and --show's window (driven here by a scripted window; no display)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from bench.multi_target import main as bench_main
from bench.multi_target import target_boxes
from runtime.io.demo_clip import synthesize_clip
from runtime.io.overlay import TargetMark, draw_annotations, draw_targets, target_color
from runtime.io.viewer import Key
from runtime.multi_target import MultiTracker, create_multi_tracker
from runtime.registry import create_tracker
from runtime.sequences import read_boxes_file
from runtime.track import main
from tests.support import needs_data

N_FRAMES = 12
SIZE = (160, 120)
INITS = ("21,31,40,30", "91,61,30,40", "5,5,20,20")  # 1-based, inside the 160x120 frame


class StepTracker:
    """Moves its box right by ``step`` px a frame: each target's rows are checkable apart."""

    name = "step"

    def __init__(self, step: float = 1.0) -> None:
        self.step = step
        self.box: np.ndarray | None = None
        self.inits = 0
        self.lost = False

    def init(self, frame: np.ndarray, box: np.ndarray) -> None:
        self.box = np.asarray(box, dtype=np.float64).copy()
        self.inits += 1

    def update(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        assert self.box is not None
        self.box = self.box + [self.step, 0.0, 0.0, 0.0]
        self.lost = self.box[0] > 60  # drifted far enough: "lost", to see the flag per target
        return self.box.copy(), 0.5


class Siblings(StepTracker):
    """Offers siblings (each one step faster) and counts batched updates."""

    def __init__(self, step: float = 1.0, batch: bool = False) -> None:
        super().__init__(step)
        self.batch = batch
        self.batched_calls = 0

    @property
    def can_batch(self) -> bool:
        return self.batch

    def sibling(self) -> Siblings:
        return Siblings(self.step + 1.0, self.batch)

    def update_targets(
        self, targets: Sequence[StepTracker], frame: np.ndarray
    ) -> list[tuple[np.ndarray, float]] | None:
        assert self.batch, "update_targets called on a tracker that cannot batch"
        self.batched_calls += 1
        return [target.update(frame) for target in targets]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path, _ = synthesize_clip(tmp_path_factory.mktemp("multi") / "walk.mp4", N_FRAMES, SIZE, seed=3)
    return path


FRAME = np.zeros((120, 160, 3), np.uint8)
BOXES = [np.array([10.0, 10.0, 20.0, 20.0]), np.array([80.0, 50.0, 30.0, 30.0])]


# --------------------------------------------------------------------------------- the API


def test_every_target_keeps_its_own_state() -> None:
    made: list[StepTracker] = []

    def make() -> StepTracker:
        made.append(StepTracker(step=len(made) + 1.0))
        return made[-1]

    group = MultiTracker(make)
    group.init(FRAME, BOXES)
    for _ in range(3):
        results = group.update(FRAME)
    assert len(made) == 2 and [t.inits for t in made] == [1, 1]
    np.testing.assert_allclose(results[0][0], BOXES[0] + [3, 0, 0, 0])  # step 1
    np.testing.assert_allclose(results[1][0], BOXES[1] + [6, 0, 0, 0])  # step 2
    assert [score for _, score in results] == [0.5, 0.5]
    assert group.lost == [False, True]  # 86 > 60: only the second


def test_init_checks_every_box_and_says_which() -> None:
    group = MultiTracker(StepTracker)
    with pytest.raises(RuntimeError, match="before init"):
        group.update(FRAME)
    with pytest.raises(ValueError, match="at least one box"):
        group.init(FRAME, [])
    with pytest.raises(ValueError, match="target 2: .*"):
        group.init(FRAME, [BOXES[0], np.array([10.0, 10.0, 0.0, 5.0])])
    with pytest.raises(ValueError, match="target 1: .*outside"):
        group.init(FRAME, [np.array([500.0, 500.0, 10.0, 10.0])])
    with pytest.raises(ValueError, match="uint8"):
        group.init(FRAME.astype(np.float32), BOXES)


def test_siblings_are_used_and_a_later_init_reuses_the_trackers() -> None:
    group = MultiTracker(lambda: pytest.fail("siblings, not new trackers"), first=Siblings())
    group.init(FRAME, BOXES + [np.array([5.0, 80.0, 10.0, 10.0])])
    assert [t.step for t in group.targets] == [1.0, 2.0, 2.0]  # siblings of the first
    group.init(FRAME, BOXES[:1])  # fewer targets: the first tracker again, nothing made
    assert len(group.targets) == 1 and group.targets[0] is group.trackers[0]
    assert len(group.trackers) == 3 and group.trackers[0].inits == 2


@pytest.mark.parametrize("batch", [True, False])
def test_a_batching_tracker_updates_all_targets_in_one_call(batch: bool) -> None:
    first = Siblings(batch=batch)
    group = MultiTracker(Siblings, first=first)
    group.init(FRAME, BOXES)
    results = group.update(FRAME)
    assert first.batched_calls == int(batch)
    np.testing.assert_allclose(results[1][0], BOXES[1] + [2, 0, 0, 0])


@needs_data
def test_nanotrack_targets_share_one_network_and_match_single_runs(crossing_frames) -> None:
    """ONNX Runtime (one crop a call): each target's boxes are a single tracker's, exactly."""
    frames, gt = crossing_frames(8)
    boxes = [gt[0], gt[0] + [30.0, -10.0, 0.0, 0.0]]
    group = create_multi_tracker("nanotrack", backend="onnxruntime")
    group.init(frames[0], boxes)
    multi = [group.update(frame) for frame in frames[1:]]
    assert group.targets[1].backend is group.targets[0].backend
    for k, box in enumerate(boxes):
        single = create_tracker("nanotrack", backend="onnxruntime")
        single.init(frames[0], box)
        for step, frame in enumerate(frames[1:]):
            want_box, want_score = single.update(frame)
            np.testing.assert_array_equal(multi[step][k][0], want_box)
            assert multi[step][k][1] == want_score


@needs_data
def test_nanotrack_on_torch_batches_crops_of_one_side(crossing_frames) -> None:
    """One batched search call from the same state gives each target's single-crop result
    (to float rounding), also when the targets' crops differ in side (one widened: lost).
    v3 alone: with the second network the targets run one by one (its graph takes one crop)."""
    frames, gt = crossing_frames(3)
    boxes = [gt[0], gt[0] + [30.0, -10.0, 0.0, 0.0], gt[0] + [-20.0, 5.0, 0.0, 0.0]]
    group = create_multi_tracker("nanotrack", backend="torch", fusion_weight=0.0)
    group.init(frames[0], boxes)
    group.targets[2].state.instance_size = 287  # as if lost: its crop cannot join the others
    calls: list[int] = []
    backend = group.targets[0].backend
    search = backend.search
    backend.search = lambda crop, kernels: calls.append(crop.shape[0]) or search(crop, kernels)
    states = [t.state.copy() for t in group.targets]
    batched = group.update(frames[1])
    assert sorted(calls) == [1, 2]  # the two 255 crops in one call, the 287 crop alone
    for target, state, (box, score) in zip(group.targets, states, batched, strict=True):
        target.state = state
        want_box, want_score = target.update(frames[1])
        np.testing.assert_allclose(box, want_box, atol=1e-3)
        assert score == pytest.approx(want_score, abs=1e-5)


# ------------------------------------------------------------------------------------ drawing


def test_one_target_is_drawn_as_before_and_several_in_their_colours() -> None:
    frame = np.full((120, 160, 3), 40, np.uint8)
    one = draw_targets(frame, 0, [TargetMark(BOXES[0], 0.9)], fps=30.0)
    np.testing.assert_array_equal(one, draw_annotations(frame, 0, BOXES[0], score=0.9, fps=30.0))
    two = draw_targets(frame, 0, [TargetMark(BOXES[0], 0.9), TargetMark(BOXES[1], 0.4)])
    for box, number in zip(BOXES, (1, 2), strict=True):
        x, y, w, h = box.astype(int)
        edge = two[y + h - 3, x - 1 : x + 1].reshape(-1, 3)  # left edge, under the labels
        assert any(np.abs(px.astype(int) - target_color(number)).max() < 60 for px in edge)


# -------------------------------------------------------------------------------------- the CLI


class Trackers:
    """A factory handing out StepTrackers one step apart, keeping them for the test to read."""

    def __init__(self) -> None:
        self.made: list[StepTracker] = []

    def __call__(self, name: str, data_dir: Path | None) -> StepTracker:
        self.made.append(StepTracker(step=len(self.made) + 1.0))
        return self.made[-1]


def _argv(clip: Path, tmp_path: Path, inits: Sequence[str]) -> list[str]:
    argv = [str(clip), "--boxes", str(tmp_path / "boxes.txt"), "--output", str(tmp_path / "o.mp4")]
    for text in inits:
        argv += ["--init", text]
    return argv + ["--quiet"]


def test_cli_writes_one_boxes_file_per_target(clip: Path, tmp_path: Path) -> None:
    trackers = Trackers()
    assert main(_argv(clip, tmp_path, INITS), tracker_factory=trackers) == 0
    assert len(trackers.made) == 3
    for number, text in enumerate(INITS, start=1):
        rows = read_boxes_file(tmp_path / f"boxes_t{number}.txt")
        first = np.array([float(v) for v in text.split(",")])
        assert rows.shape == (N_FRAMES, 4)
        np.testing.assert_allclose(rows[0], first)  # 1-based on disk, as given
        np.testing.assert_allclose(rows[-1] - rows[0], [number * (N_FRAMES - 1), 0, 0, 0])
        scores = (tmp_path / f"boxes_t{number}_scores.csv").read_text().splitlines()
        assert scores[0] == "frame,score,lost" and len(scores) == N_FRAMES + 1
    assert not (tmp_path / "boxes.txt").exists()
    assert (tmp_path / "o.mp4").stat().st_size > 0


def test_cli_names_the_bad_box(clip: Path, tmp_path: Path, capsys) -> None:
    argv = _argv(clip, tmp_path, [INITS[0], "200,200,40,40"])
    assert main(argv, tracker_factory=Trackers()) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: bad first-frame box 2 (from --init)") and "\n" not in err
    assert not list(tmp_path.glob("boxes*"))


def test_cli_refuses_an_unwritable_second_target_file_before_tracking(
    clip: Path, tmp_path: Path, capsys
) -> None:
    (tmp_path / "boxes_t2.txt").mkdir()  # a folder where the second target's file should go
    trackers = Trackers()
    assert main(_argv(clip, tmp_path, INITS[:2]), tracker_factory=trackers) == 2
    assert "boxes_t2.txt is a folder" in capsys.readouterr().err
    assert trackers.made == []


# ------------------------------------------------------------------------------- the window


class ScriptedWindow:
    """Stands in for OpenCV's window: boxes to hand out when asked, keys to press by frame."""

    def __init__(self, drawn: list[list[np.ndarray]], keys: dict[int, Key]) -> None:
        self.drawn = drawn  # one list of 0-based boxes per pick_boxes call
        self.keys = keys  # 0-based frame shown -> key pressed
        self.shown = 0
        self.prompts: list[str] = []
        self.closed = False

    def show(self, image: np.ndarray) -> Key:
        assert image.ndim == 3
        key = self.keys.get(self.shown, Key.NONE)
        self.shown += 1
        return key

    def pick_boxes(self, image: np.ndarray, prompt: str) -> list[np.ndarray]:
        self.prompts.append(prompt)
        return self.drawn.pop(0) if self.drawn else []

    def close(self) -> None:
        self.closed = True


def _show_argv(clip: Path, tmp_path: Path) -> list[str]:
    return [str(clip), "--show", "--boxes", str(tmp_path / "b.txt"), "--quiet"]


def test_show_without_init_lets_the_user_draw_the_box(clip: Path, tmp_path: Path) -> None:
    window = ScriptedWindow([[np.array([20.0, 30.0, 40.0, 30.0])]], {})
    trackers = Trackers()
    assert main(_show_argv(clip, tmp_path), tracker_factory=trackers, window=window) == 0
    rows = read_boxes_file(tmp_path / "b.txt")
    np.testing.assert_allclose(rows[0], [21.0, 31.0, 40.0, 30.0])  # drawn 0-based, 1-based out
    assert rows.shape == (N_FRAMES, 4) and window.shown == N_FRAMES and window.closed


def test_r_redraws_and_starts_over_q_stops(clip: Path, tmp_path: Path) -> None:
    drawn = [[np.array([20.0, 30.0, 40.0, 30.0])], [np.array([100.0, 60.0, 20.0, 20.0])]]
    window = ScriptedWindow(drawn, {3: Key.REDRAW, 7: Key.QUIT})
    trackers = Trackers()
    assert main(_show_argv(clip, tmp_path), tracker_factory=trackers, window=window) == 0
    rows = read_boxes_file(tmp_path / "b.txt")
    assert rows.shape == (8, 4)  # frames 1..8: q on the 8th ends the run, its row kept
    assert trackers.made[0].inits == 2
    np.testing.assert_allclose(rows[3], [24.0, 31.0, 40.0, 30.0])  # frame 4: tracked as before
    np.testing.assert_allclose(rows[4], [102.0, 61.0, 20.0, 20.0])  # from the new box on
    assert "draw the 1 box(es) again" in window.prompts[1]


def test_a_redraw_with_the_wrong_count_changes_nothing(clip: Path, tmp_path: Path, capsys) -> None:
    two = [np.array([1.0, 1.0, 9.0, 9.0]), np.array([50.0, 50.0, 9.0, 9.0])]
    window = ScriptedWindow([[np.array([20.0, 30.0, 40.0, 30.0])], two], {2: Key.REDRAW})
    trackers = Trackers()
    assert main(_show_argv(clip, tmp_path), tracker_factory=trackers, window=window) == 0
    assert trackers.made[0].inits == 1
    assert "2 boxes drawn for 1 targets" in capsys.readouterr().err


def test_nothing_drawn_tracks_nothing(clip: Path, tmp_path: Path, capsys) -> None:
    window = ScriptedWindow([], {})
    assert main(_show_argv(clip, tmp_path), tracker_factory=Trackers(), window=window) == 2
    assert (
        capsys.readouterr().err.strip() == "error: no box drawn on the first frame; nothing tracked"
    )
    assert window.closed and not (tmp_path / "b.txt").exists()


def test_show_without_a_display_and_no_box_says_so_in_one_line(
    clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    trackers = Trackers()
    assert main([*_show_argv(clip, tmp_path)], tracker_factory=trackers) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --show: cannot open a window to draw the first box: no display")
    assert "--init" in err and "\n" not in err and trackers.made == []


def test_a_camera_without_a_box_points_to_show(tmp_path: Path, capsys) -> None:
    assert main(["7", "--boxes", str(tmp_path / "b.txt")], tracker_factory=Trackers()) == 2
    err = capsys.readouterr().err.strip()
    assert "give one with --init" in err and "--show" in err


# -------------------------------------------------------------------------------- the benchmark


def test_grid_boxes_stay_inside_the_frame() -> None:
    boxes = target_boxes(np.array([300.0, 200.0, 80.0, 60.0]), 8, (240, 360, 3))
    assert len(boxes) == 8 and np.array_equal(boxes[0], [300.0, 200.0, 80.0, 60.0])
    for x, y, w, h in boxes[1:]:
        assert x >= 0 and x + w <= 360 and y >= 0 and y + h <= 240
    assert len({(b[0], b[1]) for b in boxes}) == 8  # every target somewhere else


@needs_data
def test_bench_measures_both_ways_where_the_tracker_batches(tmp_path: Path, capsys) -> None:
    out = tmp_path / "multi.json"
    spec = "nanotrack[backend=torch;fusion_weight=0]"  # v3 alone batches (module docstring)
    argv = ["--trackers", spec, "--targets", "1,2", "--frames", "3"]
    assert bench_main([*argv, "--seq", "Crossing", "--threads", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["mode"], r["targets"]) for r in rows] == [
        ("batched", 2),
        ("one by one", 1),
        ("one by one", 2),
    ]
    assert all(r["fps"] > 0 for r in rows)
    assert [r["ms_per_target"] * r["targets"] for r in rows] == pytest.approx(
        [r["median_ms"] for r in rows]
    )
    assert f"| {spec} | batched | 2 |" in capsys.readouterr().out


def test_bench_refuses_an_unknown_sequence_in_one_line(tmp_path: Path, capsys) -> None:
    argv = ["--trackers", "nanotrack", "--seq", "NoSuchSeq", "--data-root", str(tmp_path)]
    assert bench_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bench.multi_target: error: no sequence 'NoSuchSeq'") and "\n" not in err
