"""Video input/output and the synthetic demo clip (fast, CPU, no shared data needed)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.boxes import from_otb
from runtime.io.demo_clip import demo_track, render_frames, synthesize_clip
from runtime.io.frames import FrameSource, InputError
from runtime.io.overlay import TargetMark, draw_annotations
from runtime.io.sources import open_source
from runtime.io.video_writer import AnnotatedVideoWriter, AtomicVideoWriter
from tests.support import CROSSING

N_FRAMES = 12
SIZE = (160, 120)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    return synthesize_clip(tmp_path_factory.mktemp("clip") / "demo.mp4", N_FRAMES, SIZE, seed=3)


def _frames(source: FrameSource) -> list[np.ndarray]:
    return list(source)


def _write_images(folder: Path, frames: list[np.ndarray], suffix: str = ".png") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames, start=1):
        assert cv2.imwrite(str(folder / f"{i:04d}{suffix}"), frame)


# ------------------------------------------------------------------------------------- sources


def test_open_video_file(clip: tuple[Path, np.ndarray]) -> None:
    path, _ = clip
    with open_source(str(path)) as source:
        assert source.name == "demo"
        assert source.size == SIZE
        assert source.fps == pytest.approx(25.0)
        assert source.frame_count == N_FRAMES
        frames = _frames(source)
        assert len(frames) == N_FRAMES
        assert all(f.shape == (SIZE[1], SIZE[0], 3) and f.dtype == np.uint8 for f in frames)
        assert np.array_equal(frames[0], source.first_frame)
        # A second pass reopens the file and sees the same frames.
        again = _frames(source)
        assert len(again) == N_FRAMES
        assert np.array_equal(again[-1], frames[-1])


def test_open_image_folder_reads_frames_losslessly(tmp_path: Path) -> None:
    frames = render_frames(4, (64, 48), seed=1)
    _write_images(tmp_path / "shots", frames)
    (tmp_path / "shots" / "notes.txt").write_text("not a frame")
    source = open_source(tmp_path / "shots")
    assert source.name == "shots"
    assert source.fps is None
    assert source.frame_count == 4
    assert source.size == (64, 48)
    got = _frames(source)
    assert len(got) == 4
    assert all(np.array_equal(a, b) for a, b in zip(got, frames, strict=True))


def test_open_otb_layout_folder_is_named_after_the_sequence(tmp_path: Path) -> None:
    _write_images(tmp_path / "MySeq" / "img", render_frames(3, (64, 48)), suffix=".jpg")
    for spec in (tmp_path / "MySeq", tmp_path / "MySeq" / "img"):
        source = open_source(spec)
        assert source.name == "MySeq"
        assert source.frame_count == 3


def test_grayscale_images_come_out_as_bgr(tmp_path: Path) -> None:
    folder = tmp_path / "gray"
    folder.mkdir()
    cv2.imwrite(str(folder / "0001.png"), np.full((20, 30), 77, np.uint8))
    frame = open_source(folder).first_frame
    assert frame.shape == (20, 30, 3)
    assert frame.dtype == np.uint8


def test_open_real_otb_sequence() -> None:
    folder = CROSSING
    if not (folder / "img").is_dir():
        pytest.skip(f"shared data not found at {folder}")
    source = open_source(str(folder))
    assert source.name == "Crossing"
    assert source.frame_count == 120
    assert source.size == (360, 240)
    first_three = [f for _, f in zip(range(3), source, strict=False)]
    assert len(first_three) == 3
    assert first_three[0].shape == (240, 360, 3)


def test_missing_path_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file or folder"):
        open_source(tmp_path / "absent.mp4")


def test_garbage_video_is_an_input_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(InputError, match="cannot read video"):
        open_source(bad)


def test_empty_folder_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        open_source(tmp_path / "empty")


def test_unreadable_first_image_is_an_input_error(tmp_path: Path) -> None:
    folder = tmp_path / "bad_images"
    folder.mkdir()
    (folder / "0001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match="cannot read image"):
        open_source(folder)


def test_camera_that_does_not_open_is_an_input_error() -> None:
    with pytest.raises(InputError, match="camera 97"):
        open_source("97")


def test_input_error_is_a_value_error() -> None:
    assert issubclass(InputError, ValueError)


# -------------------------------------------------------------------------------------- writing


def test_annotated_writer_produces_readable_video(tmp_path: Path) -> None:
    frames = render_frames(7, (96, 64), seed=2)
    target = tmp_path / "out" / "tracked.mp4"
    writer = AnnotatedVideoWriter(target, 20.0, (96, 64))
    for i, frame in enumerate(frames):
        box = np.array([10.0 + i, 12.0, 30.0, 20.0])
        writer.write(frame, i, [TargetMark(box, 0.5)], fps=99.0)
        # Until close, only the partial file exists: nothing half-written looks finished.
        assert not target.exists()
    assert writer.close() == target
    assert target.is_file()
    assert not any(p.name.startswith("tracked.partial") for p in target.parent.iterdir())
    source = open_source(target)
    assert source.size == (96, 64)
    assert len(_frames(source)) == 7
    assert source.fps == pytest.approx(20.0)


def test_writer_aborted_by_an_exception_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "failed.mp4"
    with pytest.raises(RuntimeError), AnnotatedVideoWriter(target, 25.0, (32, 32)) as writer:
        writer.write(np.zeros((32, 32, 3), np.uint8), 0, [TargetMark(np.full(4, np.nan), np.nan)])
        raise RuntimeError("tracking failed")
    assert list(tmp_path.iterdir()) == []


def test_writer_resizes_frames_of_another_size(tmp_path: Path) -> None:
    with AtomicVideoWriter(tmp_path / "r.mp4", 25.0, (64, 48)) as writer:
        writer.write(np.zeros((100, 80, 3), np.uint8))
        writer.write(np.zeros((48, 64, 3), np.uint8))
    assert len(_frames(open_source(tmp_path / "r.mp4"))) == 2


def test_writer_falls_back_to_mjpg_avi_and_says_so(tmp_path: Path) -> None:
    notes: list[str] = []
    # FFmpeg knows no container for ".xyz", so mp4v cannot open there.
    writer = AtomicVideoWriter(tmp_path / "odd.xyz", 25.0, (32, 32), notify=notes.append)
    writer.write(np.zeros((32, 32, 3), np.uint8))
    final = writer.close()
    assert final == tmp_path / "odd.avi"
    assert writer.fourcc == "MJPG"
    assert len(notes) == 1 and "MJPG" in notes[0]
    assert len(_frames(open_source(final))) == 1


def test_writer_without_fps_uses_a_default(tmp_path: Path) -> None:
    writer = AtomicVideoWriter(tmp_path / "nofps.mp4", None, (32, 32))
    assert writer.fps > 0
    writer.abort()


def test_draw_annotations_copies_and_handles_lost_boxes() -> None:
    frame = np.zeros((60, 80, 3), np.uint8)
    drawn = draw_annotations(frame, 0, np.array([10.0, 10.0, 20.0, 20.0]), score=0.9, fps=30.0)
    assert frame.max() == 0, "the input frame must stay untouched"
    assert drawn.max() > 0
    lost = draw_annotations(frame, 5, np.full(4, np.nan), ground_truth=np.array([1, 1, 5, 5.0]))
    assert lost.shape == frame.shape


# ------------------------------------------------------------------------------------ demo clip


def test_demo_frames_are_deterministic() -> None:
    a = render_frames(5, (96, 72), seed=4)
    b = render_frames(5, (96, 72), seed=4)
    c = render_frames(5, (96, 72), seed=5)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])


def test_synthesized_clip_is_deterministic_and_box_is_right(
    tmp_path: Path, clip: tuple[Path, np.ndarray]
) -> None:
    path, box_1based = clip
    other, other_box = synthesize_clip(tmp_path / "again.mp4", N_FRAMES, SIZE, seed=3)
    assert np.array_equal(box_1based, other_box)
    first = _frames(open_source(path))
    second = _frames(open_source(other))
    assert all(np.array_equal(x, y) for x, y in zip(first, second, strict=True))
    # The returned box is 1-based: converting it back gives the first row of the true track.
    track = demo_track(N_FRAMES, SIZE)
    assert np.array_equal(from_otb(box_1based), track[0])


def test_demo_object_stays_inside_and_moves() -> None:
    track = demo_track(120, (480, 360))
    x, y, w, h = track.T
    assert (x >= 0).all() and (y >= 0).all() and (x + w <= 480).all() and (y + h <= 360).all()
    assert w.max() > w.min(), "the object changes scale"
    steps = np.hypot(*np.diff(track[:, :2], axis=0).T)
    assert 0 < steps.max() < 15, "motion is smooth: a few pixels per frame"


def test_demo_object_is_where_its_box_says() -> None:
    size = (160, 120)
    frames = render_frames(3, size, seed=0)
    x, y, w, h = demo_track(3, size)[1].astype(int)
    hsv = cv2.cvtColor(frames[1], cv2.COLOR_BGR2HSV)
    inside = hsv[y + h // 4 : y + 3 * h // 4, x + w // 4 : x + 3 * w // 4, 1].mean()
    outside = np.median(hsv[..., 1])
    assert inside > outside + 40, "the saturated object sits inside its box"
