"""Outputs that survive a run which ends badly (issue 19, items 3, 5 and 7).

``runtime.track`` writes its boxes and scores as it goes, checks its output paths before tracking,
finalises the video on Ctrl-C/SIGTERM and keeps the work done before a bad frame; ``bench.ope``
saves each finished run and resumes; sequences scored on frame 1 alone are left out of the means;
atomic writes clean up after killed writers. Fast: synthetic clips and test-double trackers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.ope import OPEError, markdown_table, run_ope, runs_dir_for
from bench.ope import main as ope_main
from runtime.atomic import LineFile, remove_stale_temporaries, write_atomic
from runtime.boxes import to_otb
from runtime.cli.main import EXIT_INCOMPLETE, EXIT_INTERRUPTED, main
from runtime.cli.signals import StopSignals
from runtime.evaluation.metrics import evaluate_sequence
from runtime.io.demo_clip import render_frames, synthesize_clip
from runtime.io.frames import FrameSizeError, UnreadableFrameError
from runtime.io.sources import open_source
from runtime.io.video_writer import AtomicVideoWriter
from runtime.paths import PROJECT_ROOT
from runtime.sequences import Sequence, load_sequence, read_boxes_file

SIZE = (160, 120)
INIT = "21,31,40,30"  # 1-based x,y,w,h inside 160x120
INIT_1BASED = np.array([21.0, 31.0, 40.0, 30.0])


class ShiftTracker:
    """The init box moved right by one pixel per frame, score 0.5."""

    def __init__(self) -> None:
        self.box = np.zeros(4)
        self.index = 0
        self.updates = 0

    def init(self, frame: np.ndarray, box: np.ndarray) -> None:
        self.box = np.asarray(box, dtype=np.float64).copy()
        self.index = 0

    def update(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        self.index += 1
        self.updates += 1
        return self.box + np.array([self.index, 0.0, 0.0, 0.0]), 0.5


def _factory(tracker: ShiftTracker) -> Callable[[str, Path | None], ShiftTracker]:
    return lambda name, data: tracker


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path, _ = synthesize_clip(tmp_path_factory.mktemp("robust") / "walk.mp4", 10, SIZE, seed=2)
    return path


def _rows(n: int) -> np.ndarray:
    rows = np.tile(INIT_1BASED, (n, 1))
    rows[:, 0] += np.arange(n)
    return rows


def _video_frames(path: Path) -> int:
    """Frames a plain cv2.VideoCapture decodes (what a player would show)."""
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"{path} does not open"
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    return count


def _scores_rows(boxes: Path) -> list[str]:
    lines = boxes.with_name(f"{boxes.stem}_scores.csv").read_text().splitlines()
    assert lines[0] == "frame,score,lost"
    return lines[1:]


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


# --------------------------------------------------------------------- boxes as they come


def test_boxes_and_scores_are_on_disk_as_each_frame_is_tracked(clip: Path, tmp_path: Path) -> None:
    boxes = tmp_path / "b.txt"
    seen: list[tuple[int, int]] = []

    class Peeking(ShiftTracker):
        def update(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
            # When frame k+1 is tracked, frames 1..k are already in both files.
            seen.append((len(read_boxes_file(boxes)), len(_scores_rows(boxes))))
            return super().update(frame)

    argv = [str(clip), "--init", INIT, "--boxes", str(boxes), "--quiet"]
    assert main(argv, tracker_factory=_factory(Peeking())) == 0
    assert seen == [(k, k) for k in range(1, 10)]
    np.testing.assert_allclose(read_boxes_file(boxes), _rows(10))
    assert _scores_rows(boxes)[:2] == ["1,,", "2,0.5000,"]


class _Terminated(Exception):
    """What the test's own SIGTERM handler raises if main does not install one."""


def test_sigterm_in_process_finalises_everything_and_restores_the_handler(
    clip: Path, tmp_path: Path
) -> None:
    class Terminating(ShiftTracker):
        def update(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
            if self.index == 3:
                os.kill(os.getpid(), signal.SIGTERM)
            return super().update(frame)

    def outer(signum: int, frame: object) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, outer)
    try:
        boxes, video = tmp_path / "b.txt", tmp_path / "v.mp4"
        argv = [str(clip), "--init", INIT, "--boxes", str(boxes), "--output", str(video)]
        assert main([*argv, "--quiet"], tracker_factory=_factory(Terminating())) == 130
        assert signal.getsignal(signal.SIGTERM) is outer, "the previous handler is back"
    finally:
        signal.signal(signal.SIGTERM, previous)
    np.testing.assert_allclose(read_boxes_file(boxes), _rows(4))
    assert len(_scores_rows(boxes)) == 4
    assert _video_frames(video) == 4
    assert not (tmp_path / "v.partial.mp4").exists()


def test_signals_inside_held_wait_for_the_block_to_end() -> None:
    stop = StopSignals()
    with stop:
        with pytest.raises(KeyboardInterrupt), stop.held():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)  # the handler runs here, but only records the signal
            reached = True
        assert reached
        with stop.held(raise_pending=False):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
        assert stop.pending == signal.SIGINT


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_stop_signals_handle_a_signal_the_process_inherited_as_ignored(signum: int) -> None:
    # A background job (`cmd &`, nohup, a CI runner) starts with SIGINT ignored; the CLI must
    # still stop cleanly on it (issue 28.7), and put the inherited disposition back afterwards.
    previous = signal.signal(signum, signal.SIG_IGN)
    try:
        with StopSignals(), pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signum)
            time.sleep(0.05)  # the handler runs here
        assert signal.getsignal(signum) == signal.SIG_IGN
    finally:
        signal.signal(signum, previous)


_CHILD = """
import sys, time
import numpy as np
from runtime.track import main

class Slow:
    def init(self, frame, box):
        self.box = np.asarray(box, dtype=np.float64).copy()
    def update(self, frame):
        time.sleep(0.03)
        self.box = self.box + [1.0, 0, 0, 0]
        return self.box.copy(), 0.5

sys.exit(main(sys.argv[1:], tracker_factory=lambda name, data: Slow()))
"""


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    return env


def _wait_for_rows(path: Path, rows: int, proc: subprocess.Popen, limit: float = 60.0) -> None:
    """Wait until ``path`` has ``rows`` lines while the run is still going."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended before {path} had {rows} rows"
        if path.is_file() and path.read_text().count("\n") >= rows:
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} did not reach {rows} rows")


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path, _ = synthesize_clip(tmp_path_factory.mktemp("long") / "long.mp4", 300, SIZE, seed=4)
    return path


@pytest.mark.parametrize("inherited", ["default", "ignored"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_killed_cli_leaves_boxes_and_a_playable_video(
    long_clip: Path, tmp_path: Path, signum: int, inherited: str
) -> None:
    boxes, video = tmp_path / "b.txt", tmp_path / "v.mp4"
    argv = [str(long_clip), "--init", INIT, "--boxes", str(boxes), "--output", str(video)]
    # The child's disposition is set either way, so the test does not depend on how pytest
    # itself was started (in the background SIGINT arrives ignored).
    restore = signal.SIG_IGN if inherited == "ignored" else signal.SIG_DFL
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, *argv, "--quiet"],
        cwd=tmp_path,
        env=_child_env(),
        preexec_fn=lambda: signal.signal(signum, restore),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_rows(boxes, 5, proc)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert "Traceback" not in err
    rows = read_boxes_file(boxes)
    assert 5 <= len(rows) < 300
    assert boxes.read_text().endswith("\n"), "no half row"
    assert len(_scores_rows(boxes)) == len(rows)
    assert _video_frames(video) == len(rows)
    assert not (tmp_path / "v.partial.mp4").exists()


def test_sigkill_still_leaves_whole_boxes_rows(long_clip: Path, tmp_path: Path) -> None:
    boxes = tmp_path / "b.txt"
    argv = [str(long_clip), "--init", INIT, "--boxes", str(boxes), "--quiet"]
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, *argv], cwd=tmp_path, env=_child_env(), text=True
    )
    _wait_for_rows(boxes, 5, proc)
    proc.kill()
    proc.wait(timeout=30)
    text = boxes.read_text()
    assert text.endswith("\n")
    rows = read_boxes_file(boxes)
    assert 5 <= len(rows) < 300
    np.testing.assert_allclose(rows, _rows(len(rows)))


def test_line_file_writes_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "lines.txt"
    with LineFile(path) as f:
        f.write_line("a,b")
        assert path.read_text() == "a,b\n"  # on disk before close
        with pytest.raises(ValueError, match="one line"):
            f.write_line("x\ny")
    assert path.read_text() == "a,b\n"


def test_interrupt_before_the_first_frame_leaves_no_files(clip: Path, tmp_path: Path) -> None:
    class NoStart(ShiftTracker):
        def init(self, frame: np.ndarray, box: np.ndarray) -> None:
            raise KeyboardInterrupt

    boxes, video = tmp_path / "b.txt", tmp_path / "v.mp4"
    argv = [str(clip), "--init", INIT, "--boxes", str(boxes), "--output", str(video), "--quiet"]
    assert main(argv, tracker_factory=_factory(NoStart())) == 130
    assert list(tmp_path.iterdir()) == []
    boxes.write_text("1,2,3,4\n")  # an earlier run's file is left as it was
    assert main(argv, tracker_factory=_factory(NoStart())) == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.txt"]
    assert boxes.read_text() == "1,2,3,4\n"


def test_a_tracker_error_keeps_the_frames_tracked_before_it(clip: Path, tmp_path: Path) -> None:
    class Failing(ShiftTracker):
        def update(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
            if self.index == 5:
                raise RuntimeError("tracker bug")
            return super().update(frame)

    boxes, video = tmp_path / "b.txt", tmp_path / "v.mp4"
    argv = [str(clip), "--init", INIT, "--boxes", str(boxes), "--output", str(video), "--quiet"]
    with pytest.raises(RuntimeError, match="tracker bug"):
        main(argv, tracker_factory=_factory(Failing()))
    np.testing.assert_allclose(read_boxes_file(boxes), _rows(6))
    assert _video_frames(video) == 6


# ------------------------------------------------------------------ output paths checked first


def _unwritable_folder(tmp_path: Path) -> Path:
    """A folder this process cannot create files in (a read-only sysfs for root)."""
    if os.geteuid() != 0:
        folder = tmp_path / "locked"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    folder = Path("/sys")
    try:
        (folder / ".probe_test").open("w").close()
    except OSError:
        return folder
    pytest.skip("no folder here refuses writes to root")


@pytest.mark.parametrize(
    ("case", "option"),
    [
        *((case, option) for case in ("folder", "unwritable", "read-only") for option in
          ("--boxes", "--output")),
        ("read-only scores", "--boxes"),  # the scores side file goes with --boxes
    ],
)  # fmt: skip
def test_unwritable_outputs_fail_before_tracking(
    clip: Path, tmp_path: Path, capsys, case: str, option: str
) -> None:
    name = "out.mp4" if option == "--output" else "out.txt"
    if case == "folder":
        target = tmp_path / name
        target.mkdir()
    elif case == "unwritable":
        target = _unwritable_folder(tmp_path) / name
    else:
        target = tmp_path / name
        protected = target if case == "read-only" else tmp_path / "out_scores.csv"
        protected.write_text("keep me\n")
        protected.chmod(0o444)
    tracker = ShiftTracker()
    built: list[str] = []

    def factory(name: str, data: Path | None) -> ShiftTracker:
        built.append(name)
        return tracker

    assert main([str(clip), "--init", INIT, option, str(target), "--quiet"], factory) == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "Traceback" not in lines[0]
    assert built == [] and tracker.updates == 0, "refused before any tracking"
    if case.startswith("read-only"):
        assert "read-only" in lines[0]
        assert protected.read_text() == "keep me\n"


def test_boxes_and_video_on_the_same_path_is_refused(clip: Path, tmp_path: Path, capsys) -> None:
    same = str(tmp_path / "same.mp4")
    assert main([str(clip), "--init", INIT, "--boxes", same, "--output", same], ShiftTracker) == 2
    assert "same file" in _error_lines(capsys.readouterr().err)[0]


# ------------------------------------------------------------------------- degraded input


def _folder(tmp_path: Path, n: int = 8, size: tuple[int, int] = (64, 48)) -> Path:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(render_frames(n, size, seed=1), start=1):
        cv2.imwrite(str(folder / f"{i:04d}.jpg"), frame)
    return folder


def test_corrupt_image_mid_folder_keeps_the_frames_before_it(tmp_path: Path, capsys) -> None:
    folder = _folder(tmp_path)
    bad = folder / "0005.jpg"
    bad.write_bytes(bad.read_bytes()[:40])  # a truncated JPEG: header only
    boxes, video = tmp_path / "b.txt", tmp_path / "v.mp4"
    argv = [str(folder), "--init", "5,6,20,10", "--boxes", str(boxes), "--output", str(video)]
    assert main([*argv, "--quiet"], _factory(ShiftTracker())) == EXIT_INCOMPLETE
    lines = _error_lines(capsys.readouterr().err)
    assert lines == [
        f"warning: frame 5 ({bad}) could not be read; stopping: outputs cover frames 1..4"
    ]
    assert len(read_boxes_file(boxes)) == 4
    assert len(_scores_rows(boxes)) == 4
    assert _video_frames(video) == 4


def test_frame_size_change_mid_folder_is_an_error_naming_both_sizes(tmp_path: Path, capsys) -> None:
    folder = _folder(tmp_path)
    odd = folder / "0004.jpg"
    cv2.imwrite(str(odd), np.zeros((60, 80, 3), np.uint8))
    boxes = tmp_path / "b.txt"
    argv = [str(folder), "--init", "5,6,20,10", "--boxes", str(boxes), "--quiet"]
    assert main(argv, _factory(ShiftTracker())) == EXIT_INCOMPLETE
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith("error: frame 4 ("), lines
    assert "80x60" in lines[0] and "64x48" in lines[0]
    assert lines[0].endswith("outputs cover frames 1..3")
    assert len(read_boxes_file(boxes)) == 3


def test_folder_source_raises_typed_errors(tmp_path: Path) -> None:
    folder = _folder(tmp_path, n=5)
    (folder / "0003.jpg").write_bytes(b"broken")
    with pytest.raises(UnreadableFrameError) as info:
        list(open_source(folder))
    assert info.value.index == 2 and info.value.path == folder / "0003.jpg"
    cv2.imwrite(str(folder / "0003.jpg"), np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(FrameSizeError, match="10x10 but the first frame is 64x48"):
        list(open_source(folder))


@pytest.fixture(scope="module")
def truncated_avi(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    folder = tmp_path_factory.mktemp("trunc")
    writer = AtomicVideoWriter(folder / "full.avi", 25.0, SIZE)
    with writer:
        for frame in render_frames(20, SIZE, seed=5):
            writer.write(frame)
    data = writer.path.read_bytes()
    cut = folder / "cut.avi"
    cut.write_bytes(data[: len(data) * 55 // 100])  # the header still declares 20 frames
    source = open_source(cut)
    assert source.frame_count == 20
    readable = len(list(source))
    assert 1 < readable < 20
    return cut, readable


def test_truncated_video_warns_how_many_of_how_many(
    truncated_avi: tuple[Path, int], tmp_path: Path, capsys
) -> None:
    cut, readable = truncated_avi
    boxes = tmp_path / "b.txt"
    argv = [str(cut), "--init", INIT, "--boxes", str(boxes), "--quiet"]
    assert main(argv, _factory(ShiftTracker())) == 0
    lines = [line for line in _error_lines(capsys.readouterr().err) if "warning" in line]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"warning: cut ended after {readable} of the 20 frames")
    assert len(read_boxes_file(boxes)) == readable


def test_complete_video_and_max_frames_do_not_warn(clip: Path, tmp_path: Path, capsys) -> None:
    for extra in ([], ["--max-frames", "4"]):
        argv = [str(clip), "--init", INIT, "--boxes", str(tmp_path / "b.txt"), "--quiet"]
        assert main([*argv, *extra], _factory(ShiftTracker())) == 0
    assert "warning" not in capsys.readouterr().err


# ------------------------------------------------------------------------------- bench.ope


def _write_sequence(root: Path, name: str, n: int = 8, blind_after_first: bool = False) -> None:
    folder = root / name
    (folder / "img").mkdir(parents=True)
    boxes = []
    for i in range(n):
        frame = np.full((64, 96, 3), 60, dtype=np.uint8)
        x, y, w, h = 10 + 3 * i, 12 + i, 20, 14
        cv2.rectangle(frame, (x, y), (x + w - 1, y + h - 1), (255, 255, 255), thickness=-1)
        cv2.imwrite(str(folder / "img" / f"{i + 1:04d}.png"), frame)
        boxes.append([x, y, w, h])
    rows = to_otb(np.asarray(boxes, dtype=np.float64))
    if blind_after_first:
        rows[1:] = np.nan
    text = "\n".join(",".join("NaN" if np.isnan(v) else f"{v:g}" for v in row) for row in rows)
    (folder / "groundtruth_rect.txt").write_text(text + "\n")


class Static:
    def init(self, frame: np.ndarray, box: np.ndarray) -> None:
        self.box = np.asarray(box, dtype=np.float64).copy()

    def update(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        return self.box.copy(), 0.5


@pytest.fixture()
def sequences(tmp_path: Path) -> list[Sequence]:
    root = tmp_path / "seqs"
    for name in ("A", "B", "C"):
        _write_sequence(root, name)
    return [load_sequence(root / name) for name in ("A", "B", "C")]


def _without_fps(summary: dict) -> dict:
    out = json.loads(json.dumps(summary))
    for entry in out.values():
        entry.pop("median_fps")
        entry.pop("environment", None)  # the date may turn between the two runs
        for per in entry["per_sequence"].values():
            per.pop("fps")
    return out


def test_ope_saves_each_run_and_resumes_where_it_stopped(
    tmp_path: Path, sequences: list[Sequence]
) -> None:
    out = tmp_path / "out" / "ope.json"
    inits: list[str] = []

    class Counting(Static):
        def init(self, frame: np.ndarray, box: np.ndarray) -> None:
            inits.append(f"{len(frame)}")
            super().init(frame, box)

    class Dying(Counting):
        def init(self, frame: np.ndarray, box: np.ndarray) -> None:
            if len(inits) == 2:  # the third run (static on B) is killed
                raise KeyboardInterrupt
            super().init(frame, box)

    with pytest.raises(KeyboardInterrupt):
        run_ope(["static", "other"], sequences, factory=lambda n: Dying(), json_path=out,
                progress=False)  # fmt: skip
    # A finished, the rest not: the JSON and the runs folder say so already.
    partial = json.loads(out.read_text())
    assert list(partial["static"]["per_sequence"]) == ["A"]
    assert list(partial["other"]["per_sequence"]) == ["A"]
    assert len(list(runs_dir_for(out).glob("*/*.npz"))) == 2

    inits.clear()
    resumed = run_ope(
        ["static", "other"], sequences, factory=lambda n: Counting(), json_path=out,
        progress=False, resume=True,
    )  # fmt: skip
    assert len(inits) == 4, "only B and C are run again, for both trackers"
    assert list(resumed["static"]["per_sequence"]) == ["A", "B", "C"]
    fresh = run_ope(["static", "other"], sequences, factory=lambda n: Counting(), progress=False)
    assert _without_fps(resumed) == _without_fps(fresh)
    assert _without_fps(json.loads(out.read_text())) == _without_fps(fresh)


def test_ope_results_files_appear_as_runs_finish(tmp_path: Path, sequences: list[Sequence]) -> None:
    results = tmp_path / "res"

    class DiesOnC(Static):
        def init(self, frame: np.ndarray, box: np.ndarray) -> None:
            if (results / "static" / "B.txt").exists():
                raise KeyboardInterrupt
            super().init(frame, box)

    with pytest.raises(KeyboardInterrupt):
        run_ope(["static"], sequences, factory=lambda n: DiesOnC(), json_path=tmp_path / "o.json",
                results_dir=results, progress=False)  # fmt: skip
    assert sorted(p.name for p in (results / "static").iterdir()) == ["A.txt", "B.txt"]


def test_ope_resume_refuses_another_tracker_list(tmp_path: Path, sequences: list[Sequence]) -> None:
    out = tmp_path / "ope.json"
    run_ope(["static"], sequences, factory=lambda n: Static(), json_path=out, progress=False)
    with pytest.raises(OPEError, match="--resume: .* --trackers static, this one has static,x"):
        run_ope(["static", "x"], sequences, factory=lambda n: Static(), json_path=out,
                progress=False, resume=True)  # fmt: skip
    with pytest.raises(OPEError, match="--max-frames"):
        run_ope(["static"], sequences, factory=lambda n: Static(), json_path=out,
                progress=False, resume=True, max_frames=3)  # fmt: skip


def test_ope_cli_resume_with_other_trackers_is_one_line(tmp_path: Path, capsys) -> None:
    data = tmp_path / "seqs"
    _write_sequence(data, "A", n=5)
    out = tmp_path / "ope.json"
    base = ["--data", str(data), "--json", str(out), "--quiet", "--threads", "1"]
    assert ope_main([*base, "--trackers", "cv2-kcf"]) == 0
    capsys.readouterr()
    assert ope_main([*base, "--trackers", "cv2-kcf", "--resume"]) == 0
    assert "1 of 1 runs already done" in capsys.readouterr().err
    assert ope_main([*base, "--trackers", "cv2-kcf,cv2-mil", "--resume"]) == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "--resume" in lines[0] and "cv2-kcf,cv2-mil" in lines[0], lines


def test_sequence_scored_on_frame_1_alone_is_left_out_of_the_means(tmp_path: Path) -> None:
    root = tmp_path / "seqs"
    _write_sequence(root, "Seen")
    _write_sequence(root, "Blind", blind_after_first=True)
    sequences = [load_sequence(root / "Seen"), load_sequence(root / "Blind")]
    warnings: list[str] = []
    summary = run_ope(
        ["static"], sequences, factory=lambda n: Static(), progress=False, warn=warnings.append
    )
    entry = summary["static"]
    assert entry["per_sequence"]["Blind"]["scored_frames"] == 1
    assert entry["per_sequence"]["Blind"]["auc"] == pytest.approx(20 / 21)  # the given box
    assert entry["per_sequence"]["Seen"]["scored_frames"] == 8
    assert entry["excluded_from_means"] == ["Blind"]
    assert entry["mean_auc"] == pytest.approx(entry["per_sequence"]["Seen"]["auc"])
    assert len(warnings) == 1 and "Blind" in warnings[0] and "left out" in warnings[0]
    assert "Means leave out Blind" in markdown_table(summary)


def test_metrics_say_how_many_frames_they_scored() -> None:
    gt = np.tile([[10.0, 10.0, 20.0, 20.0]], (6, 1))
    gt[1:] = np.nan
    result = evaluate_sequence(gt.copy(), gt)
    assert result.scored_frames == 1 and result.scored_after_first == 0
    assert not result.informative
    gt[4] = [10.0, 10.0, 20.0, 20.0]
    result = evaluate_sequence(gt.copy(), gt)
    assert result.scored_frames == 2 and result.scored_after_first == 1 and result.informative


# ------------------------------------------------------------------------- atomic writes


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_write_atomic_removes_temporaries_of_dead_writers(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    dead = tmp_path / f".x.json.tmp{_dead_pid()}"
    alive = tmp_path / f".x.json.tmp{os.getppid()}"  # our parent: alive, maybe mid-write
    other = tmp_path / f".y.json.tmp{_dead_pid()}"  # another target's: not this write's business
    for path in (dead, alive, other):
        path.write_text("half")
    write_atomic(target, "{}")
    assert target.read_text() == "{}"
    assert not dead.exists()
    assert alive.exists() and other.exists()
    assert remove_stale_temporaries(tmp_path / "y.json") == [other]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ope_stops_on_a_signal_it_inherited_as_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, signum: int
) -> None:
    # Like the tracking CLI (issue 28.7): started in the background, bench.ope still stops
    # cleanly (exit 130, finished runs kept) on SIGINT or SIGTERM.
    def signalled(_args: object) -> int:
        os.kill(os.getpid(), signum)
        time.sleep(0.05)  # the handler runs here
        return 0

    monkeypatch.setattr("bench.ope._main", signalled)
    previous = signal.signal(signum, signal.SIG_IGN)
    try:
        assert ope_main(["--trackers", "x", "--json", str(tmp_path / "o.json")]) == 130
        assert signal.getsignal(signum) == signal.SIG_IGN, "the inherited disposition is back"
    finally:
        signal.signal(signum, previous)
    assert "interrupted" in capsys.readouterr().err
