"""The ``python -m runtime.track`` CLI, with a test-double tracker injected (no model is loaded)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.cli.request import DEFAULT_TRACKER, FALLBACK_TRACKER
from runtime.io.demo_clip import demo_track, render_frames, synthesize_clip
from runtime.io.sources import open_source
from runtime.paths import PROJECT_ROOT
from runtime.sequences import read_boxes_file
from runtime.track import main
from tests.support import needs_weights

N_FRAMES = 10
SIZE = (160, 120)
INIT = "21,31,40,30"  # 1-based x,y,w,h, inside the 160x120 frame
INIT_1BASED = np.array([21.0, 31.0, 40.0, 30.0])


class ShiftTracker:
    """Returns the init box moved right by the frame index: every row of the output is checkable."""

    name = "shift"

    def __init__(self) -> None:
        self.box = np.zeros(4)
        self.index = 0
        self.init_boxes: list[np.ndarray] = []

    def init(self, frame: np.ndarray, box: np.ndarray) -> None:
        assert frame.ndim == 3 and frame.dtype == np.uint8
        self.box = np.asarray(box, dtype=np.float64).copy()
        self.init_boxes.append(self.box.copy())
        self.index = 0

    def update(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        self.index += 1
        return self.box + np.array([self.index, 0.0, 0.0, 0.0]), 0.75


class Factory:
    """Records what main asked for and hands out ShiftTrackers."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Path | None]] = []
        self.trackers: list[ShiftTracker] = []

    def __call__(self, name: str, data_dir: Path | None) -> ShiftTracker:
        self.calls.append((name, data_dir))
        self.trackers.append(ShiftTracker())
        return self.trackers[-1]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path, _ = synthesize_clip(tmp_path_factory.mktemp("cli") / "walk.mp4", N_FRAMES, SIZE, seed=1)
    return path


@pytest.fixture()
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty folder: the CLI's default outputs go to ./outputs."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _expected_rows(init_1based: np.ndarray, n: int) -> np.ndarray:
    shifts = np.zeros((n, 4))
    shifts[:, 0] = np.arange(n)
    return init_1based + shifts


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got: {stderr!r}"
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


# ------------------------------------------------------------------------------------- success


def test_boxes_file_and_video(clip: Path, tmp_path: Path) -> None:
    boxes, video = tmp_path / "b" / "boxes.txt", tmp_path / "v" / "out.mp4"
    factory = Factory()
    argv = [str(clip), "--init", INIT, "--boxes", str(boxes), "--output", str(video), "--quiet"]
    assert main(argv, tracker_factory=factory) == 0
    assert factory.calls == [(DEFAULT_TRACKER, None)]
    # The tracker got the 0-based box; the file holds 1-based rows, the first being --init.
    assert np.array_equal(factory.trackers[0].init_boxes[0], INIT_1BASED - [1, 1, 0, 0])
    rows = read_boxes_file(boxes)
    assert rows.shape == (N_FRAMES, 4)
    np.testing.assert_allclose(rows, _expected_rows(INIT_1BASED, N_FRAMES))
    assert len(list(open_source(video))) == N_FRAMES


def test_default_outputs_go_to_outputs_folder(clip: Path, in_tmp: Path, capsys) -> None:
    assert main([str(clip), "--init", INIT], tracker_factory=Factory()) == 0
    boxes, video = in_tmp / "outputs" / "walk_boxes.txt", in_tmp / "outputs" / "walk_tracked.mp4"
    assert len(read_boxes_file(boxes)) == N_FRAMES
    assert video.is_file()
    summary = capsys.readouterr().out
    assert f"tracked {N_FRAMES} frames" in summary
    assert "median" in summary and "fps" in summary
    assert "outputs/walk_boxes.txt" in summary and "outputs/walk_tracked.mp4" in summary


def test_only_the_requested_output_is_written(clip: Path, in_tmp: Path) -> None:
    argv = [str(clip), "--init", INIT, "--boxes", "only.txt", "--quiet"]
    assert main(argv, tracker_factory=Factory()) == 0
    assert (in_tmp / "only.txt").is_file()
    assert not (in_tmp / "outputs").exists()


def test_max_frames(clip: Path, tmp_path: Path) -> None:
    boxes = tmp_path / "boxes.txt"
    argv = [str(clip), "--init", INIT, "--boxes", str(boxes), "--max-frames", "4", "--quiet"]
    assert main(argv, tracker_factory=Factory()) == 0
    np.testing.assert_allclose(read_boxes_file(boxes), _expected_rows(INIT_1BASED, 4))


def test_init_box_from_videos_json(clip: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "videos").mkdir(parents=True)
    listing = [{"file": clip.name, "init_box": [11, 21, 30, 40]}]
    (data / "videos" / "videos.json").write_text(json.dumps(listing))
    boxes = tmp_path / "boxes.txt"
    factory = Factory()
    argv = [str(clip), "--data", str(data), "--boxes", str(boxes), "--quiet"]
    assert main(argv, tracker_factory=factory) == 0
    np.testing.assert_allclose(read_boxes_file(boxes)[0], [11, 21, 30, 40])
    assert factory.calls == [(DEFAULT_TRACKER, data)]


def test_init_box_from_otb_folder(tmp_path: Path) -> None:
    folder = tmp_path / "Seq" / "img"
    folder.mkdir(parents=True)
    for i, frame in enumerate(render_frames(5, (64, 48)), start=1):
        cv2.imwrite(str(folder / f"{i:04d}.jpg"), frame)
    (tmp_path / "Seq" / "groundtruth_rect.txt").write_text("5,6,20,10\n" * 5)
    boxes = tmp_path / "boxes.txt"
    argv = [str(tmp_path / "Seq"), "--boxes", str(boxes), "--quiet"]
    assert main(argv, tracker_factory=Factory()) == 0
    np.testing.assert_allclose(read_boxes_file(boxes), _expected_rows(np.array([5, 6, 20, 10]), 5))


def test_no_data_falls_back_to_demo_clip(in_tmp: Path, capsys) -> None:
    argv = ["--data", str(in_tmp / "no_data_here"), "--max-frames", "3"]
    assert main(argv, tracker_factory=Factory()) == 0
    assert (in_tmp / "outputs" / "demo_clip.mp4").is_file()
    rows = read_boxes_file(in_tmp / "outputs" / "demo_clip_boxes.txt")
    np.testing.assert_allclose(rows[0], demo_track()[0] + [1, 1, 0, 0])  # 1-based on disk
    assert "synthesized demo clip" in capsys.readouterr().err


def test_show_without_display_warns_once_and_continues(
    clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    argv = [str(clip), "--init", INIT, "--boxes", str(tmp_path / "b.txt"), "--show", "--quiet"]
    assert main(argv, tracker_factory=Factory()) == 0
    err = capsys.readouterr().err
    assert err.count("--show") == 1


def test_interrupt_keeps_the_frames_tracked_so_far(clip: Path, tmp_path: Path) -> None:
    class Interrupting(ShiftTracker):
        def update(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
            if self.index == 3:
                raise KeyboardInterrupt
            return super().update(frame)

    boxes, video = tmp_path / "boxes.txt", tmp_path / "out.mp4"
    argv = [str(clip), "--init", INIT, "--boxes", str(boxes), "--output", str(video), "--quiet"]
    assert main(argv, tracker_factory=lambda name, data: Interrupting()) == 130
    assert len(read_boxes_file(boxes)) == 4
    assert len(list(open_source(video))) == 4


# -------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--init", "a,b"], "--init needs four numbers"),
        (["--init", "1,2,x,4"], "--init needs four numbers"),
        (["--init", "nan,1,2,3"], "not finite"),
        (["--init", "1,2,3"], "--init needs four numbers"),
        (["--init", "10,10,0,20"], "zero or negative size"),
        (["--init", "500,10,20,20"], "outside"),
        (["--init", "10,200,20,20"], "outside"),
        (["--init", INIT, "--max-frames", "0"], "--max-frames"),
        ([], "give one with --init"),
        (["--init", INIT, "--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    clip: Path, in_tmp: Path, capsys, extra: list[str], needle: str
) -> None:
    factory = Factory()
    assert main([str(clip), *extra], tracker_factory=factory) == 2
    assert needle in _one_error_line(capsys.readouterr().err)
    assert not (in_tmp / "outputs").exists(), "a failed run writes nothing"


def test_missing_file(in_tmp: Path, capsys) -> None:
    assert main(["nowhere.mp4", "--init", INIT], tracker_factory=Factory()) == 2
    assert "no such file or folder" in _one_error_line(capsys.readouterr().err)


def test_unknown_tracker_without_a_factory(clip: Path, in_tmp: Path, capsys) -> None:
    assert main([str(clip), "--init", INIT, "--tracker", "nope"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "unknown tracker 'nope'" in line and "rtmdnet" in line


def test_missing_weights_is_a_clear_error(clip: Path, in_tmp: Path, capsys) -> None:
    def no_weights(name: str, data: Path | None) -> ShiftTracker:
        raise FileNotFoundError("weights not found at /somewhere/model.pt")

    argv = [str(clip), "--init", INIT, "--tracker", "rtmdnet"]  # named: no fallback
    assert main(argv, tracker_factory=no_weights) == 2
    assert "weights not found" in _one_error_line(capsys.readouterr().err)


def _run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    env.pop("OPENCV_FFMPEG_LOGLEVEL", None)  # the CLI must quiet FFmpeg by itself
    return subprocess.run(
        [sys.executable, "-m", "runtime.track", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["missing.mp4", "--init", INIT], "no such file or folder"),
        (["garbage.mp4", "--init", INIT], "cannot read video"),
        (["CLIP", "--init", "1,2"], "--init needs four numbers"),
        (["CLIP", "--init", INIT, "--tracker", "nope"], "unknown tracker"),
    ],
)
def test_subprocess_errors_have_no_traceback(
    clip: Path, tmp_path: Path, args: list[str], needle: str
) -> None:
    (tmp_path / "garbage.mp4").write_bytes(os.urandom(4096))
    args = [str(clip) if a == "CLIP" else a for a in args]
    done = _run_cli(args, tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert needle in _one_error_line(done.stderr)
    assert done.stdout == ""


def test_default_tracker_falls_back_when_weights_are_missing(clip: Path, tmp_path: Path) -> None:
    calls: list[str] = []

    def factory(name: str, data_dir: Path | None) -> ShiftTracker:
        calls.append(name)
        if name == DEFAULT_TRACKER:
            raise FileNotFoundError("NanoTrack v3 state dict not found at /nowhere")
        return ShiftTracker()

    argv = [str(clip), "--init", INIT, "--boxes", str(tmp_path / "b.txt"), "--quiet"]
    assert main(argv, tracker_factory=factory) == 0
    assert calls == [DEFAULT_TRACKER, FALLBACK_TRACKER]


def test_meta_checkpoint_option(clip: Path, tmp_path: Path) -> None:
    seen: list[dict[str, object]] = []

    def factory(name: str, data_dir: Path | None, **options: object) -> ShiftTracker:
        seen.append(options)
        return ShiftTracker()

    ckpt = tmp_path / "m.pt"
    argv = [str(clip), "--init", INIT, "--meta", str(ckpt), "--boxes", str(tmp_path / "b.txt")]
    assert main([*argv, "--quiet"], tracker_factory=factory) == 0
    assert seen == [{"meta": str(ckpt)}]


@needs_weights  # a missing checkpoint is only reported once the weights load
def test_missing_meta_checkpoint_is_one_error_line(clip: Path, tmp_path: Path) -> None:
    done = _run_cli([str(clip), "--init", INIT, "--meta", "missing.pt"], tmp_path)
    assert done.returncode == 2
    assert "meta checkpoint not found: missing.pt" in _one_error_line(done.stderr)


def _expected_files(boxes: str | None, video: str | None, targets: int) -> set[str]:
    """What a run writes: per target a boxes file and its ``_scores.csv`` (``_t1``, ``_t2``, ...
    before the suffix when there are several), and the video."""
    names = {video} if video else set()
    if boxes:
        stem = boxes.removesuffix(".txt")
        tags = [""] if targets == 1 else [f"_t{k}" for k in range(1, targets + 1)]
        names |= {f"{stem}{tag}{end}" for tag in tags for end in (".txt", "_scores.csv")}
    return names


@pytest.mark.parametrize(
    ("flags", "boxes", "video"),
    [
        ([], "outputs/walk_boxes.txt", "outputs/walk_tracked.mp4"),
        (["--boxes", "b.txt"], "b.txt", None),
        (["--output", "o.mp4"], None, "o.mp4"),
        (["--boxes", "b.txt", "--output", "o.mp4"], "b.txt", "o.mp4"),
    ],
    ids=["neither", "boxes-only", "output-only", "both"],
)
@pytest.mark.parametrize("targets", [1, 2])
def test_every_combination_of_outputs(
    clip: Path,
    in_tmp: Path,
    flags: list[str],
    boxes: str | None,
    video: str | None,
    targets: int,
) -> None:
    # --output without --boxes crashed after the first frame (issue 28): every combination runs.
    inits = ["--init", INIT] + (["--init", "81,31,30,30"] if targets > 1 else [])
    argv = [str(clip), *inits, *flags, "--quiet"]
    assert main(argv, tracker_factory=Factory()) == 0
    expected = _expected_files(boxes, video, targets)
    assert {str(p.relative_to(in_tmp)) for p in in_tmp.rglob("*") if p.is_file()} == expected
    for name in expected:
        path = in_tmp / name
        if path.suffix == ".mp4":
            assert len(list(open_source(path))) == N_FRAMES
        elif path.name.endswith("_scores.csv"):
            assert len(path.read_text().splitlines()) == N_FRAMES + 1  # header + a row per frame
        else:
            assert len(read_boxes_file(path)) == N_FRAMES


# ----------------------------------------------------------------------------- OpenCV peers


def test_an_opencv_peer_runs_from_the_cli_labelled_as_one(clip: Path, in_tmp: Path, capsys) -> None:
    # The README compares against cv2-nano; the CLI refused the peers (issue 28.5).
    argv = [str(clip), "--init", INIT, "--tracker", "cv2-kcf", "--boxes", "b.txt", "--threads", "1"]
    assert main(argv) == 0
    assert len(read_boxes_file(in_tmp / "b.txt")) == N_FRAMES
    assert f"tracked {N_FRAMES} frames of walk with cv2-kcf (OpenCV peer)" in (
        capsys.readouterr().out
    )


def test_help_lists_the_opencv_peers_apart(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    peers = "cv2-csrt, cv2-kcf, cv2-mil, cv2-nano, cv2-vit"
    assert f"OpenCV peers (baselines, not ours): {peers}" in text


def test_an_opencv_peer_refuses_our_options(clip: Path, in_tmp: Path, capsys) -> None:
    argv = [str(clip), "--init", INIT, "--tracker", "cv2-kcf", "--backend", "torch"]
    assert main(argv) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "cv2-kcf is an OpenCV peer and takes no options (got --backend)" in line


def test_a_misspelt_tracker_gets_the_closest_name(clip: Path, in_tmp: Path, capsys) -> None:
    assert main([str(clip), "--init", INIT, "--tracker", "nanotrak"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith("error: unknown tracker 'nanotrak'; did you mean 'nanotrack'?")


# ------------------------------------------------------------------- messages about the box


def test_init_errors_echo_the_box_as_the_user_wrote_it(clip: Path, in_tmp: Path, capsys) -> None:
    # The user's numbers are 1-based; the message said x=499,y=9 (0-based) for 500,10 (issue 28.5).
    assert main([str(clip), "--init", "500,10,20,20"], tracker_factory=Factory()) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "x=500,y=10,w=20,h=20 (1-based) lies outside the 160x120 frame" in line


@pytest.mark.parametrize(("box", "warned"), [("21,31,1,1", True), ("21,31,2,2", True),
                                             ("21,31,3,20", True), ("21,31,4,4", False),
                                             ("21,31,10,10", False)])  # fmt: skip
def test_a_box_too_small_for_the_network_is_one_warning(
    clip: Path, in_tmp: Path, capsys, box: str, warned: bool
) -> None:
    assert main([str(clip), "--init", box, "--boxes", "b.txt", "--quiet"], Factory()) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    if warned:
        assert len(lines) == 1 and lines[0].startswith("warning: first-frame box "), lines
        assert "smaller than 4 px a side" in lines[0]
    else:
        assert lines == []
