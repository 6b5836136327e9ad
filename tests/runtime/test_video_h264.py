"""The annotated video is H.264 in fragmented MP4 (issue 28, item 2): browsers play it, and a run
killed outright leaves a ``.partial.mp4`` that plays too.

The file is written with PyAV (its bundled FFmpeg and libx264) and read back with OpenCV's own
FFmpeg build, a different decoder. ``tests/runtime/test_browser_playback.py`` plays it in Chromium.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.io.demo_clip import render_frames
from runtime.io.overlay import TargetMark
from runtime.io.video_writer import AnnotatedVideoWriter, AtomicVideoWriter, even_size
from runtime.paths import PROJECT_ROOT

FPS = 25.0


def decode_all(path: Path) -> tuple[str, list[np.ndarray]]:
    """The codec OpenCV reports (its FOURCC) and every frame it decodes."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    assert cap.isOpened(), f"OpenCV cannot open {path}"
    fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode("ascii", "replace")
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return fourcc, frames


def top_level_boxes(path: Path) -> list[str]:
    """The types of an MP4's top-level boxes, in file order (ISO/IEC 14496-12 box headers)."""
    data = path.read_bytes()
    kinds, offset = [], 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size == 1:  # a 64-bit size follows the type
            size = struct.unpack(">Q", data[offset + 8 : offset + 16])[0]
        elif size == 0:  # the box runs to the end of the file
            size = len(data) - offset
        kinds.append(kind.decode("ascii", "replace"))
        if size < 8:
            break
        offset += size
    return kinds


def test_mp4_output_is_h264_that_another_decoder_reads(tmp_path: Path) -> None:
    frames = render_frames(30, (176, 144), seed=7)
    target = tmp_path / "tracked.mp4"
    with AnnotatedVideoWriter(target, FPS, (176, 144)) as writer:
        for i, frame in enumerate(frames):
            writer.write(frame, i, [TargetMark(np.array([10.0 + i, 12.0, 30.0, 20.0]), 0.5)])
    fourcc, decoded = decode_all(target)
    assert fourcc.lower() in {"avc1", "h264"}, f"codec {fourcc!r}, not H.264"
    assert len(decoded) == 30
    assert decoded[0].shape == (144, 176, 3)
    # The colours survive (BGR in, BGR out): the last frame, away from the drawn labels.
    plain = AtomicVideoWriter(tmp_path / "plain.mp4", FPS, (176, 144))
    with plain:
        for frame in frames:
            plain.write(frame)
    _, back = decode_all(plain.path)
    error = np.abs(back[-1].astype(np.float64) - frames[-1].astype(np.float64)).mean()
    assert error < 8.0, f"mean error {error:.1f} per pixel"
    # The index comes before the frames: a browser starts playing before the file is all read.
    boxes = top_level_boxes(target)
    assert boxes[:2] == ["ftyp", "moov"], boxes
    assert "moof" in boxes, "fragmented: a killed run keeps its whole fragments"


def test_odd_frame_size_is_padded_to_even_and_said(tmp_path: Path) -> None:
    assert even_size((427, 241)) == (428, 242)
    notes: list[str] = []
    frames = render_frames(5, (427, 240), seed=1)
    with AtomicVideoWriter(tmp_path / "odd.mp4", FPS, (427, 240), notify=notes.append) as writer:
        for frame in frames:
            writer.write(frame)
    assert len(notes) == 1 and "428x240" in notes[0], notes
    fourcc, decoded = decode_all(tmp_path / "odd.mp4")
    assert fourcc.lower() in {"avc1", "h264"}
    assert len(decoded) == 5
    assert decoded[0].shape == (240, 428, 3)
    # The added column repeats the last one; the frame itself is all there.
    error = np.abs(decoded[-1][:, :427].astype(np.float64) - frames[-1]).mean()
    assert error < 8.0
    assert np.abs(decoded[-1][:, 427].astype(np.float64) - frames[-1][:, 426]).mean() < 8.0


_KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from runtime.io.demo_clip import render_frames
from runtime.io.video_writer import AtomicVideoWriter

writer = AtomicVideoWriter(Path(sys.argv[1]), 25.0, (160, 120))
for frame in render_frames(60, (160, 120), seed=3):
    writer.write(frame)
os.kill(os.getpid(), signal.SIGKILL)  # no close, no flush: as a kill -9 or a power cut
"""


def run_killed_writer(target: Path) -> Path:
    """Write 60 frames (2.4 s at 25 fps) to ``target`` in a process that then SIGKILLs itself;
    returns the partial file it left."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, str(target)],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    return target.with_name(f"{target.stem}.partial{target.suffix}")


def test_a_killed_writer_leaves_a_partial_mp4_that_plays(tmp_path: Path) -> None:
    partial = run_killed_writer(tmp_path / "v.mp4")
    assert not (tmp_path / "v.mp4").exists(), "a killed run never looks finished"
    fourcc, decoded = decode_all(partial)
    assert fourcc.lower() in {"avc1", "h264"}
    # A keyframe a second: the fragments of the first two seconds (50 frames) are on disk.
    assert 50 <= len(decoded) <= 60, len(decoded)


@pytest.mark.parametrize("suffix", [".avi", ".mkv"])
def test_other_containers_keep_opencv_codecs(tmp_path: Path, suffix: str) -> None:
    with AtomicVideoWriter(tmp_path / f"v{suffix}", FPS, (64, 48)) as writer:
        writer.write(np.zeros((48, 64, 3), np.uint8))
    assert writer.fourcc == "mp4v"
    assert len(decode_all(writer.path)[1]) == 1
