"""A headless Chromium plays the annotated video (issue 28, item 2).

The CLI's ``--output`` video, and the ``.partial.mp4`` a killed run leaves, are served from a local
HTTP server on 127.0.0.1 to a page whose ``<video>`` element reports what it loaded (ready state,
size, duration, error) into the DOM, read back with ``--dump-dom``. An ``mp4v`` file (what the
CLI wrote before) is the control: Chromium refuses it. Needs Debian's ``chromium``, which
``.ci/run`` installs where it can; without it the test skips, saying so.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.io.demo_clip import render_frames
from runtime.track import main
from tests.helpers.local_http import serve_folder
from tests.runtime.test_video_h264 import run_killed_writer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium not installed (bash .ci/run installs Debian's; or apt-get install chromium)",
)

PAGE = """<!doctype html><html><body><pre id="out">pending</pre><script>
const out = document.getElementById('out');
const video = document.createElement('video');
video.muted = true;
video.preload = 'auto';
function report(event) {
  out.textContent = JSON.stringify({
    event: event, readyState: video.readyState, width: video.videoWidth,
    height: video.videoHeight, duration: video.duration, currentTime: video.currentTime,
    error: video.error ? video.error.code + ' ' + video.error.message : null});
}
// Decode the first frame, then seek near the end: later frames decode too.
video.addEventListener('loadeddata', () => {
  report('loadeddata');
  video.currentTime = isFinite(video.duration) ? video.duration * 0.9 : 1.0;
});
video.addEventListener('seeked', () => report('seeked'));
video.addEventListener('error', () => report('error'));
video.src = new URLSearchParams(location.search).get('src');
document.body.appendChild(video);
</script></body></html>
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on 127.0.0.1 (page.html in it), and its base URL."""
    (tmp_path / "page.html").write_text(PAGE)
    with serve_folder(tmp_path) as url:
        yield tmp_path, url


def play(base_url: str, name: str) -> dict[str, object]:
    """What Chromium's <video> made of ``name``: the page's last report."""
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",  # root in a container: the sandbox cannot start
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--virtual-time-budget=10000",  # virtual ms: loading and seeking are not timed
                "--dump-dom",
                f"{base_url}/page.html?src={name}",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    found = re.search(r'<pre id="out">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"no report from chromium (rc {proc.returncode}): {proc.stderr[-2000:]}"
    text = found.group(1)
    assert text != "pending", f"{name}: chromium reported nothing"
    return json.loads(text.replace("&quot;", '"').replace("&amp;", "&"))


class _Still:
    def init(self, frame: np.ndarray, box: np.ndarray) -> None:
        self.box = np.asarray(box, dtype=np.float64).copy()

    def update(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        return self.box.copy(), 0.5


def test_chromium_plays_the_cli_video_and_a_killed_runs_partial(
    served: tuple[Path, str],
) -> None:
    folder, url = served
    # An odd size (padded by one pixel for yuv420p), 40 frames at 25 fps (an image folder's
    # default rate): 1.6 s.
    clip = folder / "frames"
    clip.mkdir()
    for i, frame in enumerate(render_frames(40, (171, 97), seed=2), start=1):
        assert cv2.imwrite(str(clip / f"{i:04d}.png"), frame)
    outputs = ["--boxes", str(folder / "b.txt"), "--output", str(folder / "out.mp4")]
    argv = [str(clip), "--init", "40,30,30,20", *outputs, "--quiet"]
    assert main(argv, tracker_factory=lambda name, data: _Still()) == 0

    report = play(url, "out.mp4")
    assert report["error"] is None, report
    assert report["event"] == "seeked" and report["readyState"] >= 2, report
    assert (report["width"], report["height"]) == (172, 98)
    assert report["duration"] == pytest.approx(1.6, abs=0.05)

    run_killed_writer(folder / "killed.mp4")
    report = play(url, "killed.partial.mp4")
    assert report["error"] is None, report
    assert report["readyState"] >= 2 and report["width"] == 160, report

    # The control: MPEG-4 Part 2 (OpenCV's mp4v), what the CLI wrote before, does not play.
    writer = cv2.VideoWriter(
        str(folder / "mp4v.mp4"), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"mp4v"), 25, (160, 120)
    )
    for frame in render_frames(10, (160, 120), seed=1):
        writer.write(frame)
    writer.release()
    report = play(url, "mp4v.mp4")
    assert report["event"] == "error" and report["width"] == 0, report
